#!/usr/bin/env bash
# The AF_XDP relay prototype (crates/load/examples/xdp_relay.rs): plain RTP in, SRTP out, through
# AF_XDP instead of the kernel's UDP stack, between two network namespaces joined by a veth pair.
# A measurement for BENCHMARKS.md ("A kernel-bypass prototype"), not the product's relay.
#
#   sudo scripts/xdp-relay.sh [STREAMS] [SECONDS] [--threaded-napi]
#
# --threaded-napi moves each veth end's receive work into its own kthread (needs ethtool for the
# generator side's GRO): the relay side's kthread is the relay host's receive cost, the other
# side's is the far host's. Without it, both are charged to whichever thread sends.
# Needs root. Only the namespaces it creates are touched; they are removed on exit.
set -euo pipefail

STREAMS=${1:-1000}
SECS=${2:-10}
THREADED=${3:-}
NS_A=mgxdp-a   # the relay
NS_B=mgxdp-b   # generator and sink
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "xdp-relay: needs root (namespaces, XDP, AF_XDP)" >&2; exit 2; }

cleanup() {
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
cargo build --release -q -p mediagate-load --example xdp_relay
BIN=target/release/examples/xdp_relay

ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add mgx-a type veth peer name mgx-b
ip link set mgx-a netns "$NS_A"
ip link set mgx-b netns "$NS_B"
ip -n "$NS_A" addr add 10.199.78.1/24 dev mgx-a
ip -n "$NS_B" addr add 10.199.78.2/24 dev mgx-b
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set mgx-a up
ip -n "$NS_B" link set mgx-b up

ip netns exec "$NS_A" nice -n -15 "$BIN" relay --streams "$STREAMS" --seconds $((SECS + 3)) \
    --iface mgx-a > /tmp/xdp-relay.$$ 2>&1 &
RELAY=$!
for _ in $(seq 50); do ip -n "$NS_A" link show mgx-a | grep -q 'prog/xdp' && break; sleep 0.1; done
ip -n "$NS_A" link show mgx-a | grep -q 'prog/xdp' || { cat /tmp/xdp-relay.$$; exit 1; }
if [ "$THREADED" = --threaded-napi ]; then
    ip netns exec "$NS_A" sh -c 'echo 1 > /sys/class/net/mgx-a/threaded'
    ip netns exec "$NS_B" ethtool -K mgx-b gro on >/dev/null
    ip netns exec "$NS_B" sh -c 'echo 1 > /sys/class/net/mgx-b/threaded'
fi
ip netns exec "$NS_B" "$BIN" sink --streams "$STREAMS" --seconds $((SECS + 2)) &
SINK=$!
sleep 0.3
ip netns exec "$NS_B" nice -n -15 "$BIN" gen --streams "$STREAMS" --seconds "$SECS"
wait "$SINK"
wait "$RELAY" || true
cat /tmp/xdp-relay.$$
rm -f /tmp/xdp-relay.$$
echo "veth drops (RX dropped on the relay's side: its receive ring was full):"
ip -n "$NS_A" -s link show mgx-a | awk 'NR==4 {print "  mgx-a RX packets " $2 ", dropped " $4}'
ip -n "$NS_B" -s link show mgx-b | awk 'NR==4 {print "  mgx-b RX packets " $2 ", dropped " $4}'
