#!/usr/bin/env bash
# The kernel floor under the relay's CPU per packet, measured in one run next to the relay itself
# (BENCHMARKS.md, "What the kernel charges per packet").
#
#   sudo scripts/kernel-floor.sh [STREAMS] [SECONDS]      (defaults: 1000 streams, 8 s)
#
# Runs, in this order:
#   1. kernel_floor in the current network namespace, over loopback (with whatever netfilter
#      rules the host has; Docker installs some);
#   2. kernel_floor in a new, empty network namespace, over its loopback (no netfilter rules);
#   3. kernel_floor across a veth pair into a second namespace, incl. AF_XDP copy-mode TX;
#   4. mediagate-load, STREAMS one-way plain -> AES_CM_128_HMAC_SHA1_80 streams through the relay,
#      in the current namespace and in the empty one (default 500 µs wake-up coalescing), and in
#      the empty one with 2000 µs.
# Needs root (network namespaces, AF_XDP) and iproute2. Only namespaces it creates are touched;
# they are removed on exit.
set -euo pipefail

STREAMS=${1:-1000}
SECONDS_=${2:-8}
NS_A=mgfloor-a
NS_B=mgfloor-b
ADDR_A=10.199.77.1
ADDR_B=10.199.77.2

cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "kernel-floor: needs root (network namespaces, AF_XDP)" >&2; exit 2; }
command -v ip >/dev/null || { echo "kernel-floor: needs iproute2 (apt-get install iproute2)" >&2; exit 2; }

cleanup() {
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT
cleanup

echo "== building (release)"
cargo build --release -q -p mediagate-load --bin mediagate-load --example kernel_floor
FLOOR=target/release/examples/kernel_floor
LOAD=target/release/mediagate-load

ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add mgf-a type veth peer name mgf-b
ip link set mgf-a netns "$NS_A"
ip link set mgf-b netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev mgf-a
ip -n "$NS_B" addr add "$ADDR_B/24" dev mgf-b
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set mgf-a up
ip -n "$NS_B" link set mgf-b up
MAC_A=$(ip netns exec "$NS_A" cat /sys/class/net/mgf-a/address)
MAC_B=$(ip netns exec "$NS_B" cat /sys/class/net/mgf-b/address)

run() { nice -n -15 "$@"; }

echo "== 1. loopback, current namespace ($(uname -r), $(nproc) CPUs)"
run "$FLOOR"
echo "== 2. loopback, empty namespace (no netfilter rules)"
run ip netns exec "$NS_A" "$FLOOR"
echo "== 3. veth into another namespace (receiver drains without blocking)"
ip netns exec "$NS_B" "$FLOOR" drain --bind "$ADDR_B:30000" --seconds 60 &
DRAIN=$!
sleep 0.5
run ip netns exec "$NS_A" "$FLOOR" --dest "$ADDR_B:30000" --bind "$ADDR_A:0" \
    --xsk mgf-a --src-mac "$MAC_A" --dst-mac "$MAC_B"
kill -INT "$DRAIN" 2>/dev/null || true
wait "$DRAIN" 2>/dev/null || true

echo "== 4. relay: $STREAMS one-way none -> AES_CM_128_HMAC_SHA1_80 streams, ${SECONDS_} s"
for cell in current:500 empty:500 empty:2000; do
    where=${cell%%:*}
    coalesce=${cell##*:}
    if [ "$where" = current ]; then pre=(); else pre=(ip netns exec "$NS_A"); fi
    echo "-- $where namespace, wake-up coalescing $coalesce µs"
    run "${pre[@]}" "$LOAD" --streams "$STREAMS" --duration "$SECONDS_" --a none \
        --b AES_CM_128_HMAC_SHA1_80 --progress 0 --coalesce-us "$coalesce" |
        grep -E "^(sent|jitter|relay|load generator)" || true
done
