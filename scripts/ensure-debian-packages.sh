#!/bin/sh
# Install the named Debian packages that are missing, when we can (root and
# apt-get available). One mechanism for every system package `make test`
# needs (chromium + chromium-driver for the Control UI's browser tests,
# redis-server, ...). Usage: scripts/ensure-debian-packages.sh PKG...
set -eu
missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
    exit 0
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # one word per package
apt-get install -y -qq --no-install-recommends $missing
