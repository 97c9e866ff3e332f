#!/bin/sh
# Installs what the benchmarks need: the Debian packages of bench/deps.txt
# (apt-get, when missing) and nodemailer into bench/node/node_modules (npm ci,
# from bench/node/package-lock.json). Not part of CI. Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
missing=""
for p in $(grep -v '^#' "$here/deps.txt"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
# node and npm may come from elsewhere than Debian's packages: accept them on PATH.
for p in nodejs npm; do
    case " $missing " in *" $p "*)
        cmd=$p; [ "$p" = nodejs ] && cmd=node
        command -v "$cmd" >/dev/null 2>&1 && missing=$(echo "$missing" | sed "s/ $p\b//") ;;
    esac
done
if [ -n "$missing" ]; then
    echo "bench/setup.sh: installing$missing" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y --no-install-recommends $missing
fi
if [ ! -d "$here/node/node_modules/nodemailer" ]; then
    (cd "$here/node" && npm ci --no-audit --no-fund --silent)
fi
echo "bench/setup.sh: ok (node $(node --version), nodemailer $(node -p "require('$here/node/node_modules/nodemailer/package.json').version"))" >&2
