#!/usr/bin/env bash
# Instructions per verification over HTTP, keyward against the bare baseline of
# ../shared/bench (limit-server), counted by valgrind's callgrind: the count does not depend on
# what else the machine is doing, so before/after figures compare across runs.
#   KW_BIN=/path/to/keyward scripts/callgrind-verify.sh      (release build; ~2 minutes)
# Prints Ir per request for each server, then keyward's top functions (inclusive and self).
# Env: SECONDS_EACH (load per server, default 20), KW_NKEYS (500), KW_EXTRA (the verify body's other members),
# OUT (default /tmp/keyward-callgrind). Loopback only; both servers are stopped at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$HERE/../shared/bench}
KW_BIN=$(realpath "${KW_BIN:?set KW_BIN to a release keyward binary}")
SECONDS_EACH=${SECONDS_EACH:-20}; KW_NKEYS=${KW_NKEYS:-500}
KW_EXTRA=${KW_EXTRA:-'"scope":"messages:send","client_ip":"203.0.113.7"'}
OUT=${OUT:-/tmp/keyward-callgrind}; mkdir -p "$OUT"
work=$(mktemp -d); PIDS=()
# SQLite's fstat fails under valgrind 3.19 (SQLITE_IOERR_FSTAT), so keyward runs on a throw-away
# PostgreSQL database; cached verifications, which this counts, never reach the store anyway.
DB=keyward_callgrind_$$
PG="-h 127.0.0.1 -U postgres"
stop() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$work"
  dropdb $PG --if-exists "$DB" 2>/dev/null || true; }
trap stop EXIT
wait_up() { for _ in $(seq 1 300); do curl -fs -o /dev/null --max-time 2 "$1" && return 0; sleep 0.5; done; echo "$1 never answered" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$BENCH/limit/Cargo.toml" --target-dir "$OUT/limit-target"
# exec: the pid the caller keeps is valgrind's own, for callgrind_control.
grind() { exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$1.%p.out" "${@:2}"; }

# The requests: keys from a file in turn, in a JSON body; any answer but 200 is printed.
cat > "$work/count.lua" <<'LUA'
local keys, body_extra, header, n = {}, os.getenv("EXTRA") or "", os.getenv("HEADER"), 0
for line in io.lines(os.getenv("KEYS")) do keys[#keys + 1] = line end
wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
if header ~= nil and header ~= "" then wrk.headers["Authorization"] = header end
request = function()
  n = n + 1
  local sep = body_extra ~= "" and "," or ""
  return wrk.format(nil, nil, nil, '{"key":"' .. keys[(n % #keys) + 1] .. '"' .. sep .. body_extra .. '}')
end
response = function(status) if status ~= 200 then print("status " .. status) end end
LUA
load() { # url keys header extra
  KEYS=$2 HEADER=$3 EXTRA=$4 wrk -t1 -c4 -d"${SECONDS_EACH}s" -s "$work/count.lua" "$1" | grep -E "requests in|status" | head -3; }
measure() { # name pid url keys header extra
  load "$3" "$4" "$5" "$6" >/dev/null   # warm up (caches, connections) before counting
  callgrind_control -i on "$2" >/dev/null
  local requests; requests=$(load "$3" "$4" "$5" "$6" | awk '/requests in/ {print $1}')
  callgrind_control -d "$2" >/dev/null
  # valgrind takes the command when the server next runs: poke it until the dump is written.
  local file=""
  for _ in $(seq 1 60); do
    file=$(ls -t "$OUT/$1".*.out* 2>/dev/null | head -1) && [ -n "$file" ] && break
    curl -s -o /dev/null --max-time 2 "${3%/v1/*}/healthz" || true; sleep 0.5
  done
  callgrind_control -i off "$2" >/dev/null
  local total; total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$1: $requests requests, $((total / requests)) instructions per request ($file)"
}

grind limit "$OUT/limit-target/release/limit-server" --addr 127.0.0.1:18090 --keys 1000 --write-keys "$work/limit-keys.txt" \
  > "$OUT/limit.log" 2>&1 & PIDS+=($!)
createdb $PG "$DB"
TOKEN=kwop_cg_$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export KEYWARD_OPERATOR_TOKEN=$TOKEN KEYWARD_MASTER_KEY; KEYWARD_MASTER_KEY=$(head -c32 /dev/urandom | base64)
grind keyward "$KW_BIN" serve --listen 127.0.0.1:18092 --database "postgres://postgres@127.0.0.1:5432/$DB" > "$OUT/keyward.log" 2>&1 & PIDS+=($!)
wait_up http://127.0.0.1:18090/healthz; wait_up http://127.0.0.1:18092/healthz
python3 "$BENCH/make_keys.py" 18092 "$TOKEN" "$KW_NKEYS" "$work/keyward-keys.txt" >/dev/null
rm -f "$OUT"/limit.*.out* "$OUT"/keyward.*.out*
measure limit "${PIDS[0]}" http://127.0.0.1:18090/v1/keys/verify "$work/limit-keys.txt" "" ""
measure keyward "${PIDS[1]}" http://127.0.0.1:18092/v1/verify "$work/keyward-keys.txt" "Bearer $TOKEN" "$KW_EXTRA"
file=$(ls -t "$OUT"/keyward.*.out* | head -1)
echo "== keyward, inclusive"; callgrind_annotate --inclusive=yes "$file" 2>/dev/null | sed -n '/Ir/,$p' | sed -n 3,40p | cut -c1-180
echo "== keyward, self"; callgrind_annotate "$file" 2>/dev/null | sed -n '/Ir/,$p' | sed -n 3,40p | cut -c1-180
