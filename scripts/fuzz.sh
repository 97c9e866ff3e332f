#!/bin/sh
# Runs every libFuzzer target for longer than `make check` does (30 s each).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET_REGEX]
# Corpora grow in build-fuzz/tests/corpus-<target>/ (seeded from
# tests/fuzz/corpus/); crashes are written to the current directory as
# crash-*/leak-*/timeout-* files and make the run fail.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-600}
regex=${2:-.}
scripts/deps.sh test
cmake -S . -B build-fuzz -G Ninja -DSMTPC_FUZZ=ON -DCMAKE_C_COMPILER=clang \
      -DSMTPC_FUZZ_SECONDS="$secs" >/dev/null
cmake --build build-fuzz -j "$(nproc)"
cd build-fuzz
ctest --output-on-failure -R "^fuzz\..*($regex)" --timeout $((secs + 120))
