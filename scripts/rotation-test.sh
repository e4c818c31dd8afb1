#!/usr/bin/env bash
# Master-key rotation under load: the real binary answering RATE verifications a second (default
# 5000, half of them signed) from 16 keep-alive clients, and `keyward master-key rotate` run beside
# it a third of the way into SECONDS (default 20, at most 60). Prints the verifications that did
# not answer VALID (goal: 0), how long the server took to switch to the new key, and what was left
# under the old version at the end.
# Usage:
#   scripts/rotation-test.sh [RATE] [SECONDS]
# Environment: PROFILE=debug to measure the debug build (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000}
seconds=${2:-20}
if [ "$seconds" -gt 60 ]; then
  echo "rotation-test.sh: at most 60 seconds of load" >&2
  exit 2
fi
profile=(--release)
[ "${PROFILE:-release}" = debug ] && profile=()
KEYWARD_ROTATION_RATE=$rate KEYWARD_ROTATION_SECONDS=$seconds cargo test "${profile[@]}" --locked -p keyward \
  --test rotation verifications_under_load -- --nocapture 2>&1 | grep -E '^ROTATION|test result|panicked'
