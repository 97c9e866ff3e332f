#!/bin/bash
# Runs the whole test suite three ways and prints one summary line:
#   1. normal build      (all tests)
#   2. ASan+UBSan build  (all tests; fuzz targets excluded, they run in 3)
#   3. libFuzzer targets (clang), each for FUZZ_SECONDS
# and first builds Release with gcc and with clang (a failed build counts as
# a failure). Warnings are errors in all of these.
set -u
cd "$(dirname "$0")/.."
make=${MAKE:-make}
total_pass=0; total_fail=0; status=0
run() {
  local label=$1; shift
  echo "==== $label"
  local log; log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    local failed total
    failed=$(sed -E 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    total_pass=$((total_pass + total - failed)); total_fail=$((total_fail + failed))
  elif [ "$rc" -ne 0 ]; then
    total_fail=$((total_fail + 1))   # the build itself failed
  fi
  [ "$rc" -eq 0 ] || status=1
  rm -f "$log"
}
run "Release builds (gcc, clang)" $make --no-print-directory check-release
run "tests (normal build)" $make --no-print-directory check-fast
run "tests (ASan+UBSan build)" $make --no-print-directory check-asan
run "fuzz targets (${FUZZ_SECONDS:-30}s each)" $make --no-print-directory check-fuzz
echo
echo "${total_pass} passed, ${total_fail} failed"
exit $status
