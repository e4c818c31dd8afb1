#!/usr/bin/env bash
# Contract fuzzing: schemathesis against the real server's /openapi.json, every check, a bounded
# number of examples per operation. Passes only with 0 server errors and 0 schema mismatches.
#
#   KEYWARD_BIN=target/debug/keyward PYTHON=/work/ci-cache/venv/bin/python scripts/contract-test.sh
#
# EXAMPLES (default 25) bounds the cases per operation; SCHEMATHESIS_SEED fixes the run.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYWARD_BIN="${KEYWARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/keyward}"
PYTHON="${PYTHON:-python3}"
EXAMPLES="${EXAMPLES:-25}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export KEYWARD_OPERATOR_TOKEN="kwop_contract_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export KEYWARD_LOG_FORMAT=json
"$KEYWARD_BIN" --database "sqlite://$work/keyward.db" serve --listen 127.0.0.1:0 2>"$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 100); do
  address="$(grep -o '"address":"[^"]*"' "$work/server.log" | head -1 | cut -d'"' -f4 || true)"
  [ -n "$address" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { echo "keyward did not start" >&2; cat "$work/server.log" >&2; exit 1; }
api="http://$address"

call() { # method path body → the answer's JSON
  curl -sf -X "$1" "$api$2" -H "Authorization: Bearer $KEYWARD_OPERATOR_TOKEN" \
    -H 'Content-Type: application/json' ${3:+-d "$3"}
}
field() { "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# A real org with numbers, channels and a key, so generated requests reach real data.
export KW_ORG="$(call POST /v1/orgs '{"name": "Contract"}' | field id)"
export KW_PHONES="+14155550100,+14155550101,+442071838750"
export KW_CHANNELS="marketing,alerts"
for number in ${KW_PHONES//,/ }; do call POST "/v1/orgs/$KW_ORG/phone-numbers" "{\"number\": \"$number\"}" >/dev/null; done
for slug in ${KW_CHANNELS//,/ }; do call POST "/v1/orgs/$KW_ORG/channels" "{\"slug\": \"$slug\", \"name\": \"$slug\"}" >/dev/null; done
call POST "/v1/orgs/$KW_ORG/keys" '{"name": "contract key", "scopes": ["messages:send"]}' >/dev/null

PYTHONPATH="scripts/contract${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
  "$PYTHON" -m schemathesis.cli --config-file scripts/contract/schemathesis.toml run "$api/openapi.json" \
  --checks all --max-examples "$EXAMPLES" --workers 1 --no-color \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  -H "Authorization: Bearer $KEYWARD_OPERATOR_TOKEN" \
  --report junit --report-dir "$work/report"
