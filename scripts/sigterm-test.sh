#!/usr/bin/env bash
# SIGTERM under load: TRIALS trials (default 20) of the real binary answering verifications from
# 32 keep-alive clients as fast as they go (on `/v1/verify`, then through the gateway), `kill -TERM`
# mid-stream; prints each trial and the number of requests written on a keep-alive connection that
# got no answer (goal: 0).
# Usage:
#   scripts/sigterm-test.sh [TRIALS]
# Environment: PROFILE=release to measure the optimised build (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
profile=()
[ "${PROFILE:-debug}" = release ] && profile=(--release)
KEYWARD_SIGTERM_TRIALS=$trials cargo test "${profile[@]}" --locked -p keyward --test shutdown \
  sigterm_under_load -- --nocapture 2>&1 | grep -E '^SIGTERM|test result|panicked'
