#!/usr/bin/env bash
# Builds the lab's base image without any container registry:
#   debootstrap --variant=minbase bookworm  ->  the lab's Debian packages installed in the
#   rootfs with chroot + apt-get  ->  `docker import`.
#
# Usage: build-base-image.sh [TAG]          (default TAG: mediagate-lab/base:bookworm)
#
# Environment:
#   LAB_DEBIAN_MIRROR  the Debian mirror for debootstrap (default: the one this host's apt
#                      uses for Debian, else http://deb.debian.org/debian)
#   TMPDIR             where the rootfs is assembled (default /var/tmp; needs ~700 MB)
#
# Needs root, debootstrap and a running Docker engine. The image it makes has every package
# any lab service needs, so the service Dockerfiles (FROM this image) install nothing and
# build offline. Takes 1-3 minutes on 2 cores with a fast mirror.
set -euo pipefail

TAG=${1:-mediagate-lab/base:bookworm}
# The image is labelled with this script's hash: docker/lab rebuilds it when the recipe
# (e.g. the package list) changes, and reuses it otherwise.
RECIPE=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
SUITE=bookworm
# Everything the lab's images run (docker/*/Dockerfile list the subset each one needs).
PACKAGES=(
    ca-certificates openssl iproute2 procps python3   # common
    kamailio kamailio-tls-modules                      # pbx
    baresip-core                                       # softphone, farend, intruder
    sip-tester tcpdump python3-pylibsrtp               # tools: load, capture, SRTP check
)

say() { printf '[base] %s\n' "$*" >&2; }
die() { printf '[base] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
command -v docker >/dev/null || die "docker is missing"
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"

# The mirror this host's apt uses for Debian (deb822 .sources or one-line sources.list).
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f"
    done | head -n1
    if [[ -f /etc/apt/sources.list ]]; then
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' \
            /etc/apt/sources.list | head -n1
    fi
}
MIRROR=${LAB_DEBIAN_MIRROR:-$(host_mirror | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/mediagate-lab-rootfs.XXXXXX")
ROOTFS=$WORK/rootfs

# Unmounts everything below ROOTFS (deepest first), then removes WORK without ever leaving
# this file system (a forgotten bind mount must not take the host's files with it).
cleanup() {
    local m
    if [[ -d $ROOTFS ]]; then
        for m in $(awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
say "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
timeout 900 debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
say "debootstrap done in $(($(date +%s) - START)) s"

# apt inside the rootfs: the host's Debian sources when the host is bookworm itself (the
# mirror apt already uses, with its security suite), else the chosen mirror.
rm -f "$ROOTFS/etc/apt/sources.list"
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release && [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$ROOTFS/etc/apt/sources.list.d/debian.sources"
else
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
        >"$ROOTFS/etc/apt/sources.list.d/debian.list"
fi
# Host apt settings the mirror needs (snapshot mirrors: Check-Valid-Until; proxies).
apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
    >"$ROOTFS/etc/apt/apt.conf.d/99lab-host" || true
cat >"$ROOTFS/etc/apt/apt.conf.d/99lab-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"

say "apt-get install ${PACKAGES[*]}"
T=$(date +%s)
{
    chroot "$ROOTFS" apt-get update &&
        DEBIAN_FRONTEND=noninteractive chroot "$ROOTFS" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
} >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "package installation failed"; }
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/apt/* \
    "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/bootstrap.log
# The container engine provides these at run time.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
umount "$ROOTFS/proc"
say "packages installed in $(($(date +%s) - T)) s ($(du -sm --one-file-system "$ROOTFS" | cut -f1) MB)"

say "docker import -> $TAG"
T=$(date +%s)
tar --numeric-owner -C "$ROOTFS" -c . |
    timeout 600 docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.mediagate.lab=base org.mediagate.lab.base-recipe=$RECIPE" \
        --message "debootstrap --variant=minbase $SUITE + lab packages (mediagate docker/base)" \
        - "$TAG" >/dev/null
say "imported in $(($(date +%s) - T)) s; $TAG built in $(($(date +%s) - START)) s"
