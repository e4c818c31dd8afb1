#!/usr/bin/env bash
# Signed against unsigned verifications over HTTP, in one run: keyward's `POST /v1/verify` with
# keys that require signatures (each request carries a fresh signature and `body_sha256`, so the
# key's HMAC and the replay store work on every one) and with keys that do not, loaded in turn.
#   KW_BIN=target/release/keyward scripts/bench-signed.sh       (~1 minute)
# Env: CONNS (64), DURATION (8, seconds per load), REPEAT (2), KEYS (256 of each kind: each allows 1000/s), BODIES
# (signed bodies made per load: each signature is accepted once, so every request needs its own).
# Prints req/s and server CPU µs per request of each, the signed ÷ unsigned ratio, and how many
# answers were not VALID (must be 0). Loopback only; the server is stopped at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
KW_BIN=$(realpath "${KW_BIN:?set KW_BIN to a release keyward binary}")
CONNS=${CONNS:-64}; DURATION=${DURATION:-8}; REPEAT=${REPEAT:-2}; KEYS=${KEYS:-256}; BODIES=${BODIES:-1200000}
work=$(mktemp -d); KPID=""
stop() { [ -n "$KPID" ] && kill -TERM "$KPID" 2>/dev/null; sleep 1; [ -n "$KPID" ] && kill -KILL "$KPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap stop EXIT
PORT=18094
TOKEN=kwop_signed_$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')
KEYWARD_OPERATOR_TOKEN=$TOKEN KEYWARD_MASTER_KEY=$(head -c32 /dev/urandom | base64) \
  "$KW_BIN" serve --listen "127.0.0.1:$PORT" --database "sqlite://$work/k.db" > "$work/keyward.log" 2>&1 &
KPID=$!
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done

# Keys of both kinds; then, before each signed load, bodies signed a moment ago (±300 s holds).
python3 - "$PORT" "$TOKEN" "$KEYS" "$work" <<'PY'
import json, sys, urllib.request
port, token, n, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def post(path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))
org = post("/v1/orgs", {"name": "signed bench"})["id"]
common = {"scopes": ["messages:send"], "rate_limit": 1000}
with open(f"{work}/unsigned.txt", "w") as out:
    for i in range(n):
        key = post(f"/v1/orgs/{org}/keys", {"name": f"unsigned {i}", **common})["secret"]
        out.write(json.dumps({"key": key, "scope": "messages:send", "client_ip": "203.0.113.7"}) + "\n")
with open(f"{work}/signing.json", "w") as out:
    keys = [post(f"/v1/orgs/{org}/keys", {"name": f"signed {i}", "hmac_required": True, **common}) for i in range(n)]
    json.dump([(k["secret"], k["signing_secret"]) for k in keys], out)
PY
make_signed() {
  # The Python client's signing module alone (stdlib only; the package also needs httpx).
  python3 - "$work" "$BODIES" "$HERE/clients/python/src/keyward/signing.py" <<'PY'
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("signing", sys.argv[3])
signing = sys.modules["signing"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(signing)
body_sha256, sign = signing.body_sha256, signing.sign
work, count = sys.argv[1], int(sys.argv[2])
keys = json.load(open(f"{work}/signing.json"))
now, digest = int(time.time()), body_sha256('{"to":"+14155550100","text":"hi"}')
with open(f"{work}/signed.txt", "w") as out:
    for i in range(count):
        key, secret = keys[i % len(keys)]
        path = f"/v1/messages?n={i}"
        signature = sign(secret, "POST", path, '{"to":"+14155550100","text":"hi"}', now)
        out.write(json.dumps({"key": key, "scope": "messages:send", "client_ip": "203.0.113.7", "request": {
            "method": "POST", "path": path, "timestamp": signature.timestamp,
            "signature": signature.signature, "body_sha256": digest}}) + "\n")
PY
}
cat > "$work/bodies.lua" <<'LUA'
-- Each thread sends every nthreads-th body of BODIES once, in order, and counts answers that are not VALID.
local file, nthreads, next_tid, threads = os.getenv("BODIES"), 2, 0, {}
function setup(thread) thread:set("tid", next_tid); next_tid = next_tid + 1; table.insert(threads, thread) end
local bodies, n, i = {}, 0, 0
bad = 0
function init()
  wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
  local line_no = 0
  for line in io.lines(file) do
    if line_no % nthreads == tid then n = n + 1; bodies[n] = line end
    line_no = line_no + 1
  end
end
function request() i = i + 1; return wrk.format(nil, nil, nil, bodies[(i - 1) % n + 1]) end
function response(status, headers, body) if not body:find('"valid":true', 1, true) then bad = bad + 1 end end
function done(summary)
  local total = 0
  for _, t in ipairs(threads) do total = total + (tonumber(t:get("bad")) or 0) end
  io.write(string.format("RESULT %d %.1f %d\n", summary.requests, summary.requests / (summary.duration / 1e6), total))
end
LUA
cpu_ticks() { awk '{print $14 + $15}' "/proc/$KPID/stat"; }
load() { # label bodies-file
  local before after; before=$(cpu_ticks)
  local out; out=$(BODIES=$2 TOKEN=$TOKEN wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$work/bodies.lua" "http://127.0.0.1:$PORT/v1/verify" | grep RESULT)
  after=$(cpu_ticks)
  read -r _ requests rps bad <<< "$out"
  local hz; hz=$(getconf CLK_TCK)
  awk -v l="$1" -v r="$requests" -v rps="$rps" -v bad="$bad" -v t=$((after - before)) -v hz="$hz" \
    'BEGIN { printf "%-9s %8.0f req/s  %6.1f µs CPU/req  not VALID: %d of %d\n", l, rps, t / hz * 1e6 / r, bad, r }'
  echo "$1 $rps" >> "$work/rates"
  # Past the last body the load sends replays: those refusals are the bench's, not the server's.
  if [ "$1" = signed ] && [ "$requests" -gt "$BODIES" ]; then
    echo "signed: $requests requests for $BODIES bodies: the rest were replays; raise BODIES" >&2
  fi
}
for _ in $(seq 1 "$REPEAT"); do
  load unsigned "$work/unsigned.txt"
  make_signed; load signed "$work/signed.txt"
done
awk '{ sum[$1] += $2; n[$1]++ } END { printf "signed ÷ unsigned req/s: %.2f\n", (sum["signed"] / n["signed"]) / (sum["unsigned"] / n["unsigned"]) }' "$work/rates"
