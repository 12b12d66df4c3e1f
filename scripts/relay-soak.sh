#!/usr/bin/env bash
# Soak run of the media relay: N streams (default 1000) for D seconds
# (default 600), verified by mediagate-load; samples the process's resident
# memory every 10 s and fails on any loss, corruption, relay drop, or memory
# growth above 10 % after the first minute.
#   scripts/relay-soak.sh [STREAMS] [SECONDS] [extra mediagate-load args...]
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-1000}; secs=${2:-600}; shift $(( $# > 2 ? 2 : $# )) || true
cargo build --release -q -p mediagate-load
out=$(mktemp -d)
echo "soak: $streams streams for $secs s (report and memory samples in $out)"
./target/release/mediagate-load --streams "$streams" --duration "$secs" --progress 10 --json "$@" \
    > "$out/report.json" 2> "$out/progress.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
: > "$out/rss.log"
while kill -0 $pid 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(date +%s) $rss" | tee -a "$out/rss.log" | awk '{printf "t=%s RSS %d KiB\n", $1, $2}'
    sleep 10
done
wait $pid || { echo "soak: mediagate-load failed"; cat "$out/progress.log"; exit 1; }
trap - EXIT
cat "$out/report.json"; echo
python3 - "$out/report.json" "$out/rss.log" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss = [int(l.split()[1]) for l in open(sys.argv[2]) if l.strip()]
base = rss[min(6, len(rss) - 1)] if rss else 0   # after the first minute
peak = max(rss) if rss else 0
drops = sum(r["relay_drops"].values())
print(f"sent {r['sent']} received {r['received']} lost {r['lost']} corrupt {r['corrupt']} relay drops {drops}")
print(f"relay CPU {r['relay_cpu_per_packet_us']:.2f} us/packet; RSS after 1 min {base} KiB, peak {peak} KiB")
ok = r["lost"] == 0 and r["corrupt"] == 0 and drops == 0 and peak <= base * 1.10
print("SOAK PASSED" if ok else "SOAK FAILED")
sys.exit(0 if ok else 1)
PY
