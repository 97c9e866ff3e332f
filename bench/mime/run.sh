#!/bin/sh
# Builds and runs the MIME benchmarks against build/libsmtpc.a.
#   bench/mime/run.sh            codec throughput + writer throughput
#   bench/mime/run.sh rss        1 GiB attachment: peak RSS (callback, then file)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${TMPDIR:-/tmp}/smtpc-bench-mime
mkdir -p "$out"
cmake --build "$root/build" --target smtpc_static >/dev/null
libs="$root/build/libsmtpc.a $(pkg-config --libs libidn2 openssl) -lpthread"
cc -O2 -std=c11 -D_DEFAULT_SOURCE -I"$root/include" -I"$root/src" -o "$out/bench_codec" "$root/bench/mime/bench_codec.c" $libs
cc -O2 -std=c11 -D_DEFAULT_SOURCE -I"$root/include" -o "$out/rss_1g" "$root/bench/mime/rss_1g.c" $libs
if [ "${1:-}" = rss ]; then
  echo "1 GiB from a callback (no spool):"; "$out/rss_1g"
  echo "1 GiB from a callback (spooled to a temp file):"; SPOOL=1 "$out/rss_1g"
  f="$out/1g.bin"; head -c 1073741824 /dev/urandom > "$f"
  echo "1 GiB from a file:"; "$out/rss_1g" "$f"; rm -f "$f"
else
  "$out/bench_codec"
fi
