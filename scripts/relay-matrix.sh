#!/usr/bin/env bash
# The relay-under-load matrix of BENCHMARKS.md: 200, 1000 and 2000 streams, one-way and two-way,
# plain -> plain and plain -> SRTP, plus 2000 two-way SRTP -> SRTP; every packet verified by
# mediagate-load. Prints one Markdown table row per cell.
#
#   scripts/relay-matrix.sh [SECONDS] [--empty-netns]
#
# --empty-netns runs every cell in a new network namespace with no netfilter rules (root; the
# namespace is removed on exit), which takes the host's firewall/NAT rules (e.g. Docker's) out of
# the per-packet cost. Run it on an otherwise idle machine; it takes about 15 x (SECONDS + 3) s.
set -euo pipefail

SECS=${1:-8}
NETNS=""
[ "${2:-}" = "--empty-netns" ] && NETNS=mgmatrix
cd "$(dirname "$0")/.."
cargo build --release -q -p mediagate-load
LOAD=target/release/mediagate-load

pre=()
if [ -n "$NETNS" ]; then
    [ "$(id -u)" = 0 ] || { echo "relay-matrix: --empty-netns needs root" >&2; exit 2; }
    trap 'ip netns del "$NETNS" 2>/dev/null || true' EXIT
    ip netns del "$NETNS" 2>/dev/null || true
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    pre=(ip netns exec "$NETNS")
fi

SRTP=AES_CM_128_HMAC_SHA1_80
echo "| streams | direction | leg A → leg B | offered pkt/s | sent pkt/s | loss | relay CPU µs/pkt | load tool CPU µs/pkt | jitter mean µs | latency p99 µs | relay drops |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
cell() { # streams direction a b
    local tw=()
    [ "$2" = two-way ] && tw=(--two-way)
    nice -n -15 "${pre[@]}" "$LOAD" --streams "$1" --duration "$SECS" --a "$3" --b "$4" \
        --progress 0 --json "${tw[@]}" |
        python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
n, d, a, b = sys.argv[1:5]
drops = sum(r["relay_drops"].values())
tool = r["load_cpu_ns"] / max(r["sent"], 1) / 1000
mark = " (behind)" if r["fell_behind"] else ""
cols = [n, d, a + " → " + b, "%.0f" % r["offered_pps"], "%.0f%s" % (r["sent_pps"], mark),
        "%.4f %%" % r["loss_pct"], "%.2f" % r["relay_cpu_per_packet_us"], "%.2f" % tool,
        "%.0f" % r["jitter_mean_us"], "%.0f" % r["latency_p99_us"], str(drops)]
print("| " + " | ".join(cols) + " |")
' "$1" "$2" "$3" "$4"
}
for n in 200 1000 2000; do
    for dir in one-way two-way; do
        cell "$n" "$dir" none none
        cell "$n" "$dir" none "$SRTP"
    done
done
cell 2000 two-way "$SRTP" "$SRTP"
