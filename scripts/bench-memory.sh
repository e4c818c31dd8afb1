#!/usr/bin/env bash
# Bounded memory and quiet logs under load, on one node with its default settings (SQLite):
#   1. steady: full-rate POST /v1/verify for STEADY seconds with nobody scraping /metrics;
#      prints RSS after the first minute and at the end (goal: end ≤ first minute + 10 %), and
#      log bytes per million verifications (goal: < 1 MB);
#   2. flood: a legitimate key's latency (16 connections) alone, then again while random
#      well-formed unknown keys (valid checksum) arrive at full rate for FLOOD seconds; prints
#      RSS growth (goal: < 100 MB) and the legitimate key's p99 ratio (goal: < 2×).
#
#   KW_BIN=target/release/keyward scripts/bench-memory.sh               # 10 min + 60 s
#   KW_BIN=… STEADY=120 FLOOD=20 scripts/bench-memory.sh                 # a quick look
#   KW_BIN=… STEADY=0 scripts/bench-memory.sh                            # the flood only
#
# Env: KW_BIN (required), BENCH (../shared/bench), STEADY (600), FLOOD (60), CONNS (64),
#      KW_NKEYS (10000), UNKNOWN (2000000 unknown keys), BENCH_DIR (/tmp/keyward-bench-memory),
#      MISS_SHARE (cache_miss_share_percent for the run; unset: keyward's default, 10).
# Loopback only; every run is bounded by wrk -d and timeout; the server is stopped by pid.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$HERE/../../shared/bench}
KW_BIN=$(realpath "${KW_BIN:?set KW_BIN to the keyward binary}")
STEADY=${STEADY:-600}; FLOOD=${FLOOD:-60}; CONNS=${CONNS:-64}; KW_NKEYS=${KW_NKEYS:-10000}
UNKNOWN=${UNKNOWN:-2000000}; MISS_SHARE=${MISS_SHARE:-}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/keyward-bench-memory}; mkdir -p "$BENCH_DIR"
PORT=18095
work=$(mktemp -d); KPID=""
stop() { [ -n "$KPID" ] && kill -TERM "$KPID" 2>/dev/null; sleep 1; [ -n "$KPID" ] && kill -KILL "$KPID" 2>/dev/null; rm -rf "$work"; }
trap stop EXIT
wait_up() { for _ in $(seq 1 150); do curl -fs -o /dev/null --max-time 1 "$1" && return 0; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$KPID/status"; }
EXTRA='"scope":"messages:send","client_ip":"203.0.113.7"'

# load.sh appends to its TSV files: start each run with none, so the report is this run's.
rm -f "$BENCH_DIR/runs.tsv" "$BENCH_DIR/flood.tsv" "$BENCH_DIR/flood-unknown.tsv"
if [ -n "$MISS_SHARE" ]; then echo "cache_miss_share_percent = $MISS_SHARE"; fi > "$work/keyward.toml"
TOKEN=kwop_bench_$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')
env KEYWARD_OPERATOR_TOKEN="$TOKEN" KEYWARD_MASTER_KEY="$(head -c32 /dev/urandom | base64)" \
  "$KW_BIN" serve --config "$work/keyward.toml" --listen "127.0.0.1:$PORT" --database "sqlite://$work/k.db" > "$BENCH_DIR/keyward.log" 2>&1 &
KPID=$!
wait_up "http://127.0.0.1:$PORT/healthz"
python3 "$BENCH/make_keys.py" "$PORT" "$TOKEN" "$KW_NKEYS" "$BENCH_DIR/keys.txt" >/dev/null
# One key, written once per wrk thread (load.sh splits the file between its two threads).
head -1 "$BENCH_DIR/keys.txt" > "$BENCH_DIR/one-key.txt"; head -1 "$BENCH_DIR/keys.txt" >> "$BENCH_DIR/one-key.txt"
# Unknown keys that pass the checksum, so each one costs a cache miss and a database read.
[ "$({ wc -l < "$BENCH_DIR/unknown-keys.txt"; } 2>/dev/null || echo 0)" -ge "$UNKNOWN" ] || python3 - "$UNKNOWN" "$BENCH_DIR/unknown-keys.txt" <<'EOF'
import secrets, sys, zlib
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def fixed(value, n):
    out = []
    for _ in range(n):
        out.append(ALPHABET[value % 62]); value //= 62
    return "".join(reversed(out))
with open(sys.argv[2], "w") as f:
    for _ in range(int(sys.argv[1])):
        body = "kw_live_" + "".join(secrets.choice(ALPHABET) for _ in range(32))
        f.write(body + fixed(zlib.crc32(body.encode()), 6) + "\n")
EOF
load() { # label keys-file conns seconds [out]
  "$BENCH/lib/load.sh" --label "$1" --url "http://127.0.0.1:$PORT/v1/verify" --mode json --keys "$2" \
    --json-extra "$EXTRA" --extra-header "Authorization: Bearer $TOKEN" --conns "$3" --duration "${4}s" \
    --out "${5:-$BENCH_DIR/runs.tsv}" --server-pid "$KPID" --pause 0 >/dev/null
}
verified() { curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^keyward_verifications_total/ {n += $2} END {print n + 0}'; }

if [ "$STEADY" -gt 60 ]; then
echo "== steady: ${STEADY}s at full rate, no scrape =="
log_before=$(stat -c %s "$BENCH_DIR/keyward.log")
load steady-first-minute "$BENCH_DIR/keys.txt" "$CONNS" 60
rss_minute=$(rss_kib)
load steady-rest "$BENCH_DIR/keys.txt" "$CONNS" $((STEADY - 60))
rss_end=$(rss_kib)
log_after=$(stat -c %s "$BENCH_DIR/keyward.log")
n=$(verified) # the scrape comes after the runs, so the runs had none
python3 - "$rss_minute" "$rss_end" "$n" "$((log_after - log_before))" <<'EOF'
import sys
minute, end, n, log = (int(x) for x in sys.argv[1:])
print(f"RSS after 1 min {minute/1024:.1f} MiB, at the end {end/1024:.1f} MiB: {end/minute:.3f}x (goal <= 1.10)")
print(f"{n} verifications, {log} log bytes: {log / max(n, 1) * 1e6 / 1e6:.3f} MB per million (goal < 1)")
EOF
fi

echo "== flood: a legitimate key alone, then beside ${FLOOD}s of unknown keys =="
load legit-alone "$BENCH_DIR/one-key.txt" 16 20 "$BENCH_DIR/flood.tsv"
rss_before=$(rss_kib)
load unknown-flood "$BENCH_DIR/unknown-keys.txt" "$CONNS" "$FLOOD" "$BENCH_DIR/flood-unknown.tsv" &
flood=$!
sleep 5
load legit-in-flood "$BENCH_DIR/one-key.txt" 16 $((FLOOD - 10)) "$BENCH_DIR/flood.tsv"
wait "$flood"
rss_after=$(rss_kib)
echo "RSS before the flood $((rss_before / 1024)) MiB, after $((rss_after / 1024)) MiB: +$(((rss_after - rss_before) / 1024)) MiB (goal < 100)"
python3 "$BENCH/lib/report.py" "$BENCH_DIR/flood.tsv" --ratio-to legit-alone
python3 "$BENCH/lib/report.py" "$BENCH_DIR/flood-unknown.tsv"
