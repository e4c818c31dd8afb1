#!/usr/bin/env bash
# Starts N keyward nodes on 127.0.0.1 against one PostgreSQL and one Redis, to try several nodes
# (and for tests). Usage:
#   scripts/cluster.sh start [N]     # default 3 nodes, on ports 8081…808N
#   scripts/cluster.sh status
#   scripts/cluster.sh stop
# Environment (all optional):
#   KEYWARD_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/keyward_cluster (created if missing)
#   KEYWARD_REDIS_URL     default redis://127.0.0.1:6379
#   KEYWARD_BIN           default: target/release/keyward (built when missing)
#   CLUSTER_DIR           default .cluster (master key, operator token, config, logs, pids)
#   CLUSTER_BASE_PORT     default 8080 (node i listens on BASE + i)
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${CLUSTER_DIR:-.cluster}
database_url=${KEYWARD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/keyward_cluster}
redis_url=${KEYWARD_REDIS_URL:-redis://127.0.0.1:6379}
base_port=${CLUSTER_BASE_PORT:-8080}
bin=${KEYWARD_BIN:-${CARGO_TARGET_DIR:-target}/release/keyward}

start() {
  local nodes=${1:-3}
  mkdir -p "$dir"
  if [ ! -x "$bin" ]; then
    echo "building $bin …" >&2
    cargo build --release --locked
  fi
  # Every node must share the master key (hash pepper, signing-secret encryption).
  [ -f "$dir/master-key" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$dir/master-key")
  [ -f "$dir/operator-token" ] || (umask 077; echo "kwop_cluster_$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" > "$dir/operator-token")
  cat > "$dir/keyward.toml" <<TOML
nodes = $nodes
cache_max_staleness_seconds = 2
replay_fallback = "refuse"
TOML
  # The database, when it is missing (the URL's last path segment names it).
  local name=${database_url##*/}; name=${name%%\?*}
  local admin=${database_url%/*}/postgres
  if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$admin" -qc "CREATE DATABASE \"$name\""
  fi
  # Migrate once, before the nodes start (each node would also migrate safely on start).
  KEYWARD_MASTER_KEY_FILE="$dir/master-key" "$bin" --database "$database_url" migrate
  for i in $(seq 1 "$nodes"); do
    local port=$((base_port + i))
    KEYWARD_MASTER_KEY_FILE="$dir/master-key" \
    KEYWARD_OPERATOR_TOKEN_FILE="$dir/operator-token" \
    KEYWARD_DATABASE_URL="$database_url" \
    KEYWARD_REDIS_URL="$redis_url" \
    KEYWARD_CONFIG="$dir/keyward.toml" \
    KEYWARD_NODE_ID="node-$i" \
      nohup "$bin" serve --listen "127.0.0.1:$port" > "$dir/node-$i.log" 2>&1 &
    echo $! > "$dir/node-$i.pid"
  done
  for i in $(seq 1 "$nodes"); do
    local port=$((base_port + i))
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    echo "node-$i  http://127.0.0.1:$port  $(curl -sS "http://127.0.0.1:$port/readyz" || echo 'not ready: see '"$dir/node-$i.log")"
  done
  echo "operator token: $(cat "$dir/operator-token")"
}

status() {
  for pidfile in "$dir"/node-*.pid; do
    [ -f "$pidfile" ] || continue
    local name; name=$(basename "$pidfile" .pid)
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$name running (pid $(cat "$pidfile"))"; else echo "$name stopped"; fi
  done
}

stop() {
  for pidfile in "$dir"/node-*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

case "${1:-start}" in
  start) start "${2:-3}" ;;
  status) status ;;
  stop) stop ;;
  *) echo "usage: $0 start [N] | status | stop" >&2; exit 2 ;;
esac
