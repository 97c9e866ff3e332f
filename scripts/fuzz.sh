#!/bin/sh
# A fuzzing campaign over the libFuzzer targets (tests/fuzz/fuzz_*.c), one
# target at a time in one process (no -jobs), at low priority (nice -n 15):
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET_REGEX]   run (default 600 s each)
#   scripts/fuzz.sh --merge [TARGET_REGEX]                minimise into tests/fuzz/corpus/
#   scripts/fuzz.sh --merge-edges [TARGET_REGEX]          the same, on new edges only
#   scripts/fuzz.sh --stats                               the totals so far
# Each target's corpus grows in build-fuzz/tests/corpus-<target>/ (kept
# between runs; seeded from tests/fuzz/corpus/<target>/). Every run appends
# a line to build-fuzz/fuzz-stats.tsv (date, commit, target, seconds,
# executions from libFuzzer's stat::number_of_executed_units, exec/s), and
# the summary gives the executions per target over all runs so far.
# --merge adds to tests/fuzz/corpus/<target>/ only the grown inputs that
# add coverage (libFuzzer -merge=1), so `make check` replays them;
# --merge-edges only those that add an edge (-use_counters=0): a merge on
# hit counts keeps hundreds of inputs more for the same edges once a
# target has run for hours, and `make check` replays every one.
# Crashes, leaks and timeouts are kept in build-fuzz/artifacts/ and make the
# run fail (add the minimised input to the seed corpus with the fix).
set -eu
cd "$(dirname "$0")/.."
B=build-fuzz
STATS=$B/fuzz-stats.tsv
mode=run
counters=1
case "${1:-}" in
--merge) mode=merge; shift ;;
--merge-edges) mode=merge; counters=0; shift ;;
--stats) mode=stats; shift ;;
esac

summary() {
    [ -f "$STATS" ] || { echo "no runs recorded yet ($STATS)"; return 0; }
    echo "== executions per target (all runs recorded in $STATS)"
    awk -F'\t' 'NR > 1 { e[$3] += $5; s[$3] += $4 }
        END { for (t in e) printf "%-20s %14d execs %8d s %8.0f exec/s\n", t, e[t], s[t], s[t] ? e[t] / s[t] : 0 }' \
        "$STATS" | sort
}

if [ "$mode" = stats ]; then
    summary
    exit 0
fi

if [ "$mode" = run ]; then
    secs=${1:-600}
    regex=${2:-.}
else
    secs=0
    regex=${1:-.}
fi

scripts/deps.sh test
cmake -S . -B $B -G Ninja -DSMTPC_FUZZ=ON -DCMAKE_C_COMPILER=clang >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//' | grep -E -- "$regex" || true)
[ -n "$targets" ] || { echo "no target matches $regex"; exit 2; }
# shellcheck disable=SC2086
nice -n 10 cmake --build $B -j 2 --target $targets
mkdir -p $B/artifacts
[ -f "$STATS" ] || printf 'date\tcommit\ttarget\tseconds\texecs\texec_per_s\n' >"$STATS"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
status=0
for t in $targets; do
    seeds=tests/fuzz/corpus/$t
    grown=$B/tests/corpus-$t
    mkdir -p "$seeds" "$grown"
    if [ "$mode" = merge ]; then
        before=$(ls "$seeds" | wc -l)
        ASAN_OPTIONS=detect_leaks=1 nice -n 15 "$B/tests/$t" -merge=1 -use_counters=$counters -rss_limit_mb=2048 -timeout=10 \
            "$seeds" "$grown" >"$B/artifacts/$t.merge.log" 2>&1 || { echo "$t: merge failed"; status=1; }
        echo "$t: $before -> $(ls "$seeds" | wc -l) seed inputs"
        continue
    fi
    # a log of this run only (two runs of one target at once, each on its
    # own core, must not read each other's count); the last one is $t.log
    log=$B/artifacts/$t.$$.log
    echo "== $t for $secs s"
    rc=0
    ASAN_OPTIONS=detect_leaks=1 nice -n 15 "$B/tests/$t" -max_total_time="$secs" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$B/artifacts/" \
        "$grown" "$seeds" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-0}
    rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN { printf "%.0f", s ? e / s : 0 }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$t" "$secs" "$execs" "$rate" >>"$STATS"
    echo "$t: $execs executions ($rate exec/s)"
    mv -f "$log" "$B/artifacts/$t.log"
    log=$B/artifacts/$t.log
    if [ "$rc" != 0 ]; then
        echo "$t: FAILED (exit $rc): see $log and $B/artifacts/"
        grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5 || true
        status=1
    fi
done
[ "$mode" = merge ] || summary
exit $status
