#!/bin/sh
# Installs the Debian packages listed in scripts/deps/<set>.txt files.
# Usage: scripts/deps.sh build|test|all
# Idempotent and quiet when everything is already installed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
set_name=${1:-build}
case "$set_name" in
  build) lists="$here/deps/build.txt" ;;
  test|all) lists=$(ls "$here"/deps/*.txt) ;;
  *) echo "usage: $0 build|test|all" >&2; exit 64 ;;
esac
want=$(cat $lists | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "smtpc: missing packages:$missing — install them as root (apt-get install$missing)" >&2
  exit 1
fi
echo "smtpc: installing:$missing" >&2
# Postfix asks debconf questions: answer "No configuration" so the system
# instance stays unconfigured; tests run private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends $missing >/tmp/smtpc-apt.log 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends $missing >/tmp/smtpc-apt.log 2>&1 || {
    cat /tmp/smtpc-apt.log >&2; exit 1; }
fi
# Package installs must not leave system daemons holding ports or running.
for svc in postfix tinyproxy danted stunnel4 dovecot; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
  service "$svc" stop >/dev/null 2>&1 || true
done
