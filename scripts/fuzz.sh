#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each (default 60), one after another, one job, and
# prints a line per target. New inputs go to a scratch corpus outside the clone; the committed
# seeds in fuzz/corpus/<target>/ are only read. A crash leaves its input in fuzz/artifacts/<target>/:
# fix it, then commit the input as fuzz/corpus/<target>/regression-<what> so `cargo test` replays it.
#
#   scripts/fuzz.sh [seconds] [target…]
#   FUZZ_SANITIZER=address scripts/fuzz.sh 600 phone    # ASan is off by default: keyward forbids unsafe code
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
export PATH="/work/ci-cache/bin:$HOME/.cargo/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --root /work/ci-cache cargo-fuzz --locked
fi
target_dir="${FUZZ_TARGET_DIR:-/work/fuzz-target}"
work="${FUZZ_WORK_DIR:-/work/fuzz-work}"
sanitizer="${FUZZ_SANITIZER:-none}"
# Debug assertions and overflow checks stay on (cargo-fuzz's default with optimisations).
build=(+nightly fuzz build --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir")

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo "${build[@]}"

failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  log="$work/$target.log"
  started=$(date +%s)
  # CPU seconds as well as wall time: on a shared machine they differ.
  timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%U %S' -o "$work/$target.cpu")
  if "${timer[@]}" cargo +nightly fuzz run --sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir" "$target" \
      "$work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$work/$target.cpu" 2>/dev/null || echo '?')
  echo "$target: $status after $(( $(date +%s) - started )) s ($cpu s CPU), $runs runs, coverage $cov, corpus $(ls "$work/$target" | wc -l) (log: $log)"
  if [ "$status" = CRASH ]; then
    grep -E 'panicked at|^SUMMARY|Test unit written to' "$log" | head -5 | sed 's/^/    /'
  fi
done
exit "$failed"
