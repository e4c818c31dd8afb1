#!/usr/bin/env bash
# Every test: the cargo workspace (unit, property, store, HTTP, process, cluster, browser), then
# the suites outside cargo against the built binary (scripts/client-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
scripts/client-tests.sh
