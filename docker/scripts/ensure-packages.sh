#!/bin/sh
# ensure-packages PKG...: installs those of the Debian packages that are missing.
# FROM the lab's local base image (docker/base) everything is there already: nothing is
# downloaded and the image builds offline. FROM debian:bookworm-slim it installs them.
set -eu
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "ensure-packages: already installed: $*"
    exit 0
fi
echo "ensure-packages: installing$missing"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
apt-get clean
rm -rf /var/lib/apt/lists/*
