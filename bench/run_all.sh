#!/bin/sh
# Runs every table of bench/README.md's "Results" section, one after the other,
# and keeps each script's output in bench/results/<time>/ (gitignored): NAME.md
# (the table), NAME.log (each run) and, for the charted tables, NAME.json (the
# same figures for bench/plot.py: `bench/plot.py bench/results/<time>` updates
# bench/results.json and the charts from them).
#   bench/run_all.sh [RUNS]      (default 3 interleaved runs per table)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-3}
out="$here/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
py=/usr/bin/python3
run() { name=$1; shift; echo "== $name: $*" >&2; "$@" >"$out/$name.md" 2>"$out/$name.log"; cat "$out/$name.md"; }
run throughput $py "$here/bench.py" --json "$out/throughput.json" --n 10000 --runs "$runs" \
    --clients smtpc-1,smtpc-client-1,smtpc-batch-1,bulk-1,smtp-source-1,smtplib-1,nodemailer-1,bulk-8,smtp-source-8,smtp-source-16,smtplib-8,nodemailer-8
run tls $py "$here/bench.py" --json "$out/tls.json" --tls --n 10000 --runs "$runs" \
    --clients smtpc-1,smtpc-client-1,smtpc-batch-1,bulk-1,smtplib-1,nodemailer-1,bulk-8,smtplib-8,nodemailer-8
run oneshot $py "$here/oneshot.py" --json "$out/oneshot.json" --m 200 --runs "$runs"
run oneshot-tls $py "$here/oneshot.py" --json "$out/oneshot-tls.json" --tls --m 100 --runs "$runs" --clients true,smtpc-send,smtpc-sendmail,curl,msmtp
run big $py "$here/big.py" --json "$out/big.json" --mib 100 --runs "$runs"
run instructions $py "$here/instructions.py" --base 1 --extra 1000 --clients bulk-1,smtpc-client-1,smtpc-batch-1,smtpc-1,smtp-source-1
echo "results in $out (charts: bench/plot.py $out)" >&2
