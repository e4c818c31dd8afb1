#!/usr/bin/env bash
# Builds the image and checks that a container answers /healthz and reports healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="keyward-test:$$"
docker build -f packaging/Dockerfile -t "$tag" .
id="$(docker run -d -P "$tag")"
trap 'docker rm -f "$id" >/dev/null; docker rmi "$tag" >/dev/null' EXIT
port="$(docker port "$id" 8080/tcp | head -1 | sed 's/.*://')"
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] && break
  sleep 1
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]
[ "$(curl -fsS "http://127.0.0.1:$port/healthz")" = ok ]
[ "$(docker exec "$id" id -u)" = 10001 ]
echo "docker image: healthy, /healthz ok, runs as uid 10001"
