#!/usr/bin/env bash
# One node's POST /v1/verify in three set-ups, loaded alternately in ONE run (ratios are what
# count on a shared machine): SQLite with in-process limits, PostgreSQL with in-process limits,
# PostgreSQL with Redis-shared limits and replays. Uses ../shared/bench (wrk, load.sh, report.py).
#
#   KW_BIN=target/release/keyward scripts/bench-nodes.sh
#   KW_BIN=… REPEAT=3 CONNS="16 64 256" DURATION=10s KW_NKEYS=10000 scripts/bench-nodes.sh
#
# Env: KW_BIN (required), BENCH (../shared/bench), POSTGRES (postgres://postgres@127.0.0.1:5432),
#      REDIS (redis://127.0.0.1:6379), REPEAT (2), CONNS ("64"), DURATION (10s), KW_NKEYS (10000),
#      BENCH_DIR (/tmp/keyward-bench-nodes). Loopback only; every run is bounded; servers stopped by pid.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$HERE/../../shared/bench}
KW_BIN=$(realpath "${KW_BIN:?set KW_BIN to the keyward binary}")
POSTGRES=${POSTGRES:-postgres://postgres@127.0.0.1:5432}
REDIS=${REDIS:-redis://127.0.0.1:6379}
REPEAT=${REPEAT:-2}; CONNS=${CONNS:-64}; DURATION=${DURATION:-10s}; KW_NKEYS=${KW_NKEYS:-10000}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/keyward-bench-nodes}; mkdir -p "$BENCH_DIR"
OUT=$BENCH_DIR/nodes-$(date +%Y%m%d-%H%M%S).tsv
EXTRA='"scope":"messages:send","client_ip":"203.0.113.7"'
work=$(mktemp -d); PIDS=""; DB=keyward_bench_$$
stop() { for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1
  for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
  psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true; rm -rf "$work"; }
trap stop EXIT
wait_up() { for _ in $(seq 1 150); do curl -fs -o /dev/null --max-time 1 "$1" && return 0; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }
psql "$POSTGRES/postgres" -qc "CREATE DATABASE $DB"
TOKEN=kwop_bench_$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')
MASTER=$(head -c32 /dev/urandom | base64)
start() { # port database [redis]; sets STARTED to the server's pid
  env KEYWARD_OPERATOR_TOKEN="$TOKEN" KEYWARD_MASTER_KEY="$MASTER" ${3:+KEYWARD_REDIS_URL=$3} \
    "$KW_BIN" serve --listen "127.0.0.1:$1" --database "$2" > "$BENCH_DIR/keyward-$1.log" 2>&1 &
  STARTED=$!; PIDS="$PIDS $STARTED"
}
for port in 18091 18092 18093; do
  if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then echo "port $port is taken" >&2; exit 1; fi
done
start 18091 "sqlite://$work/k.db"; SQ=$STARTED
start 18092 "$POSTGRES/$DB"; PL=$STARTED
wait_up http://127.0.0.1:18092/healthz   # migrated before the second node on the database starts
start 18093 "$POSTGRES/$DB" "$REDIS"; PR=$STARTED
for port in 18091 18092 18093; do wait_up "http://127.0.0.1:$port/healthz"; done
python3 "$BENCH/make_keys.py" 18091 "$TOKEN" "$KW_NKEYS" "$BENCH_DIR/sqlite-keys.txt"
python3 "$BENCH/make_keys.py" 18092 "$TOKEN" "$KW_NKEYS" "$BENCH_DIR/pg-keys.txt"
load() { # label port keys pid conns
  "$BENCH/lib/load.sh" --label "$1" --url "http://127.0.0.1:$2/v1/verify" --mode json --keys "$3" \
    --json-extra "$EXTRA" --extra-header "Authorization: Bearer $TOKEN" --conns "$5" --duration "$DURATION" \
    --out "$OUT" --server-pid "$4" >/dev/null
}
for rep in $(seq 1 "$REPEAT"); do
  for c in $CONNS; do
    load sqlite/local 18091 "$BENCH_DIR/sqlite-keys.txt" "$SQ" "$c"
    load postgres/local 18092 "$BENCH_DIR/pg-keys.txt" "$PL" "$c"
    load postgres/redis 18093 "$BENCH_DIR/pg-keys.txt" "$PR" "$c"
  done
done
"$BENCH/lib/load.sh" --label postgres/redis-checked --url http://127.0.0.1:18093/v1/verify --mode json \
  --keys "$BENCH_DIR/pg-keys.txt" --json-extra "$EXTRA" --extra-header "Authorization: Bearer $TOKEN" \
  --conns 16 --duration 3s --check-body '"valid":true' --out "$OUT.check" --server-pid "$PR" >/dev/null
echo "== $OUT =="
python3 "$BENCH/lib/report.py" "$OUT" --ratio-to sqlite/local
echo "== correctness pass through Redis (bad_bodies must be 0) =="
cut -f1,4,17 "$OUT.check"
