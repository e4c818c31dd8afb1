#!/usr/bin/env bash
# kill -9 under concurrent writers: each cycle runs WRITERS keep-alive clients creating keys for a
# random 0.3–1.5 s, kills keyward with SIGKILL mid-stream, restarts it on the same SQLite file,
# then checks that every acknowledged write (a 201 read in full) is in the database and that
# `keyward audit verify` passes. Prints one line per cycle and a total; exits 1 on any loss.
# Usage:
#   scripts/crash-test.sh [CYCLES]      # default 50
# Environment (all optional):
#   WRITERS      concurrent writers, default 16
#   KEYWARD_BIN  default: $CARGO_TARGET_DIR/debug/keyward (built when missing)
#   MAX_SECONDS  stop early (after the cycle running) once this much time has passed; default 900
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=${1:-50}
writers=${WRITERS:-16}
max_seconds=${MAX_SECONDS:-900}
bin=${KEYWARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/keyward}
if [ ! -x "$bin" ]; then
  echo "building $bin …" >&2
  cargo build -p keyward --locked
fi
command -v python3 >/dev/null || { echo "python3 is needed for the writers" >&2; exit 2; }

dir=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

export KEYWARD_OPERATOR_TOKEN="kwop_crash_test_$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
export KEYWARD_DATABASE_URL="sqlite://$dir/k.db"
export KEYWARD_LOG=info
unset KEYWARD_CONFIG KEYWARD_MASTER_KEY KEYWARD_LISTEN
address=""

start_server() {
  : > "$dir/server.log"
  "$bin" serve --listen 127.0.0.1:0 2>"$dir/server.log" >/dev/null &
  server_pid=$!
  for _ in $(seq 1 300); do
    address=$(grep -o 'address=[0-9.:]*' "$dir/server.log" | head -1 | cut -d= -f2 || true)
    if [ -n "$address" ] && python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$address/readyz', timeout=1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "keyward did not start:" >&2
  cat "$dir/server.log" >&2
  exit 1
}

# The writers: each thread creates keys on one keep-alive connection (reconnecting after an
# error) until the server refuses connections; an id is recorded only once its 201 is read in full.
cat > "$dir/writers.py" <<'PY'
import http.client, json, os, sys, threading
address, token, org, acked_path, writers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
host, port = address.rsplit(":", 1)
acked = os.open(acked_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
headers = {"authorization": "Bearer " + token, "content-type": "application/json"}
def writer(n):
    i = 0
    while True:
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=15)
            conn.connect()
        except OSError:
            return  # the server is gone
        try:
            while True:
                i += 1
                body = json.dumps({"name": "w%d-%d" % (n, i), "hmac_required": i % 2 == 0})
                conn.request("POST", "/v1/orgs/%s/keys" % org, body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status == 201:
                    os.write(acked, (json.loads(data)["key"]["id"] + "\n").encode())
                elif response.status != 503:
                    print("unexpected answer %d: %s" % (response.status, data[:200]), file=sys.stderr)
        except (OSError, http.client.HTTPException):
            continue
threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
for t in threads: t.start()
for t in threads: t.join()
PY

start_server
org=$(python3 - "$address" <<'PY'
import json, os, sys, urllib.request
request = urllib.request.Request("http://%s/v1/orgs" % sys.argv[1], data=json.dumps({"name": "Crash test"}).encode(),
    headers={"authorization": "Bearer " + os.environ["KEYWARD_OPERATOR_TOKEN"], "content-type": "application/json"})
print(json.load(urllib.request.urlopen(request))["id"])
PY
)

total_acked=0
total_lost=0
audit_failures=0
started=$SECONDS
done_cycles=0
for cycle in $(seq 1 "$cycles"); do
  acked="$dir/acked-$cycle"
  : > "$acked"
  python3 "$dir/writers.py" "$address" "$KEYWARD_OPERATOR_TOKEN" "$org" "$acked" "$writers" &
  writers_pid=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.5), 2))')"
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  wait "$writers_pid" || true
  start_server
  # Every acknowledged id must be in the database after the restart.
  lost=$(python3 - "$dir/k.db" "$acked" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
stored = {row[0] for row in db.execute("SELECT id FROM api_keys")}
acked = [line.strip() for line in open(sys.argv[2]) if line.strip()]
print(sum(1 for key in acked if key not in stored))
PY
)
  count=$(wc -l < "$acked")
  if verify=$("$bin" audit verify 2>&1); then audit="ok"; else audit="FAILED: $verify"; audit_failures=$((audit_failures + 1)); fi
  total_acked=$((total_acked + count))
  total_lost=$((total_lost + lost))
  done_cycles=$cycle
  echo "cycle $cycle: $count acknowledged, $lost lost; audit verify: $audit"
  if [ $((SECONDS - started)) -ge "$max_seconds" ]; then
    echo "stopping early: MAX_SECONDS=$max_seconds reached" >&2
    break
  fi
done
echo "kill -9: $done_cycles cycles, $writers writers: $total_acked acknowledged writes, $total_lost lost, audit verify failed $audit_failures times"
[ "$total_lost" -eq 0 ] && [ "$audit_failures" -eq 0 ]
