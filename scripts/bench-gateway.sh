#!/usr/bin/env bash
# The gateway against nginx, in ONE run, loaded alternately (ratios are what count here):
#   (a) the upstream direct            (an nginx `return 200` server)
#   (b) nginx proxy_pass               (keep-alive to the upstream, no auth): the anchor
#   (c) the keyward gateway            (valid key, route with scope) → upstream
#   (d) nginx auth_request → keyward /v1/authorize, then proxy_pass → upstream
# Goal (issue 9): (c) ≥ 0.8 × (b) req/s and p99 within 1 ms of (b); (c) ≥ 2 × (d).
#
#   KW_BIN=target/release/keyward scripts/bench-gateway.sh
# Env: KW_BIN (required), BENCH (../shared/bench), REPEAT (2), CONNS ("64"), DURATION (10s),
#      KW_NKEYS (1000), BENCH_DIR (/tmp/keyward-bench-gateway). Loopback only, bounded, stopped by pid.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$HERE/../../shared/bench}
KW_BIN=$(realpath "${KW_BIN:?set KW_BIN to the keyward binary}")
REPEAT=${REPEAT:-2}; CONNS=${CONNS:-64}; DURATION=${DURATION:-10s}; KW_NKEYS=${KW_NKEYS:-1000}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/keyward-bench-gateway}; mkdir -p "$BENCH_DIR"
OUT=$BENCH_DIR/gateway-$(date +%Y%m%d-%H%M%S).tsv
command -v nginx >/dev/null || { echo "needs nginx (apt-get install -y nginx)" >&2; exit 1; }
work=$(mktemp -d); PIDS=""
stop() { for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1
  for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap stop EXIT
wait_up() { for _ in $(seq 1 150); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }
UP=18101; NGX=18102; AUTH=18103; KW=18104; GW=18105
TOKEN=kwop_bench_$(head -c12 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$work/keyward.toml" <<TOML
[gateway]
listen = "127.0.0.1:$GW"
upstream = "http://127.0.0.1:$UP"

[[gateway.routes]]
method = "GET"
path = "/v1/templates/{id}"
scopes = ["templates:read"]
TOML
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log warn;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  upstream platform { server 127.0.0.1:$UP; keepalive 64; }
  upstream keyward { server 127.0.0.1:$KW; keepalive 64; }
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://platform; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$AUTH;
    location / { auth_request /_keyward; proxy_pass http://platform; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /_keyward { internal; proxy_pass http://keyward/v1/authorize; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri; proxy_set_header X-Original-Method \$request_method; } }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' > "$BENCH_DIR/nginx.log" 2>&1 &
NPID=$!; PIDS="$PIDS $NPID"
KEYWARD_OPERATOR_TOKEN="$TOKEN" KEYWARD_MASTER_KEY="$(head -c32 /dev/urandom | base64)" KEYWARD_CONFIG="$work/keyward.toml" \
  "$KW_BIN" serve --listen "127.0.0.1:$KW" --database "sqlite://$work/k.db" > "$BENCH_DIR/keyward.log" 2>&1 &
KPID=$!; PIDS="$PIDS $KPID"
wait_up "http://127.0.0.1:$UP/"; wait_up "http://127.0.0.1:$KW/healthz"; wait_up "http://127.0.0.1:$GW/"
# Keys with templates:read (make_keys.py makes messages:send keys; this route needs another scope).
python3 - "$KW" "$TOKEN" "$KW_NKEYS" "$BENCH_DIR/keys.txt" <<'PY'
import json, sys, urllib.request
port, token, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
org = post("/v1/orgs", {"name": "bench"})["id"]
with open(out, "w") as f:
    for i in range(n):
        f.write(post(f"/v1/orgs/{org}/keys", {"name": f"k{i}", "scopes": ["templates:read"], "rate_limit": 1000})["secret"] + "\n")
print(f"{n} keys in {out}")
PY
load() { # label url pid [key mode]
  "$BENCH/lib/load.sh" --label "$1" --url "$2" --keys "$BENCH_DIR/keys.txt" --mode "${4:-none}" --prefix "Bearer " \
    --conns "$c" --duration "$DURATION" --out "$OUT" --server-pid "$3" >/dev/null
}
for rep in $(seq 1 "$REPEAT"); do
  for c in $CONNS; do
    load upstream "http://127.0.0.1:$UP/v1/templates/t1" "$NPID"
    load nginx/proxy_pass "http://127.0.0.1:$NGX/v1/templates/t1" "$NPID"
    load keyward/gateway "http://127.0.0.1:$GW/v1/templates/t1" "$KPID" header
    load nginx/auth_request "http://127.0.0.1:$AUTH/v1/templates/t1" "$KPID" header
  done
done
echo "== $OUT (server CPU of the nginx rows is nginx's; of the keyward rows keyward's) =="
python3 "$BENCH/lib/report.py" "$OUT" --ratio-to nginx/proxy_pass
