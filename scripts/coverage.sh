#!/bin/sh
# Line coverage of the library under the fuzz corpora (clang source-based
# coverage, llvm-cov):
#   scripts/coverage.sh [DIR_REGEX]     default: src/(engine|mime)/
# Builds the fuzz targets in build-cov/ with -fprofile-instr-generate
# -fcoverage-mapping, replays every input of tests/fuzz/corpus/<target>/ and
# of the grown build-fuzz/tests/corpus-<target>/ (scripts/fuzz.sh) once
# (-runs=0: no new inputs), merges the profiles and prints llvm-cov's report
# for the files matching DIR_REGEX, then one total line per directory.
# The HTML report is in build-cov/html/ (index.html).
set -eu
cd "$(dirname "$0")/.."
B=build-cov
regex=${1:-src/(engine|mime)/}
scripts/deps.sh test
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSMTPC_FUZZ=ON -DCMAKE_C_COMPILER=clang \
      -DCMAKE_C_FLAGS="-fprofile-instr-generate -fcoverage-mapping" \
      -DCMAKE_EXE_LINKER_FLAGS="-fprofile-instr-generate" >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
# shellcheck disable=SC2086
nice -n 10 cmake --build $B -j 2 --target $targets
rm -rf $B/prof && mkdir -p $B/prof
objects=""
for t in $targets; do
    dirs=tests/fuzz/corpus/$t
    [ -d build-fuzz/tests/corpus-$t ] && dirs="$dirs build-fuzz/tests/corpus-$t"
    # shellcheck disable=SC2086
    LLVM_PROFILE_FILE="$B/prof/$t-%p.profraw" ASAN_OPTIONS=detect_leaks=0 \
        nice -n 10 "$B/tests/$t" -runs=0 -rss_limit_mb=2048 -timeout=30 $dirs >"$B/prof/$t.log" 2>&1 ||
        echo "$t: replay failed (see $B/prof/$t.log)"
    objects="$objects -object $B/tests/$t"
done
llvm-profdata merge -sparse $B/prof/*.profraw -o $B/prof/all.profdata
first=$(echo "$targets" | head -1)
files=$(find src -name '*.c' | grep -E -- "$regex" | sort)
# shellcheck disable=SC2086
llvm-cov report "$B/tests/$first" $objects -instr-profile=$B/prof/all.profdata $files | tee $B/coverage.txt
# shellcheck disable=SC2086
llvm-cov show "$B/tests/$first" $objects -instr-profile=$B/prof/all.profdata -format=html \
    -output-dir=$B/html $files >/dev/null
echo
echo "== line coverage per directory"
# columns of llvm-cov report: File Regions Missed Cover Functions Missed Cover Lines Missed Cover ...
# (file names relative to their common directory: the first part is the module)
awk '$1 ~ /\.c$/ { split($1, p, "/"); d = "src/" p[1] "/"; l[d] += $8; m[d] += $9 }
     END { for (d in l) printf "%-22s %6d lines %6d missed %6.1f %%\n", d, l[d], m[d], l[d] ? 100 * (l[d] - m[d]) / l[d] : 0 }' \
    $B/coverage.txt | sort
