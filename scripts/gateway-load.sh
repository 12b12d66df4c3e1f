#!/usr/bin/env bash
# Calls with media through the real gateway binary (`mediagate run`), end to end:
#
#   SIPp UAC (TCP, G.711 from a pcap, 7 s per call) -> mediagate (B2BUA + relay, plain<->plain)
#     -> SIPp UAS (TCP, -rtp_echo) -> back through the relay to the UAC
#
# Reports the call setup rate and INVITE->200 times (SIPp), calls completed and failed, media
# packets relayed and dropped by reason (the gateway's /metrics), and the gateway's CPU time
# per relayed packet and per call (/proc). SIPp has no SRTP: the SRTP relay cost is measured
# with mediagate-load (BENCHMARKS.md).
#
#   scripts/gateway-load.sh                      # 20 calls/s for 30 s (about 140 concurrent)
#   RATE=40 SECONDS_=30 scripts/gateway-load.sh
#
# Needs sip-tester (sipp). Builds the release binary. Everything on 127.0.0.1, ports found free.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-20}
DURATION=${SECONDS_:-30}
command -v sipp >/dev/null || { echo "sipp not found: apt-get install -y sip-tester" >&2; exit 1; }

echo "== building mediagate (release)"
cargo build --release -q -p mediagate-gateway
BIN=$PWD/target/release/mediagate
WORK=$(mktemp -d /tmp/mg-gwload.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; echo "logs: $WORK"' EXIT

# A block of free ports (TCP and UDP) on 127.0.0.1.
base=$(python3 - <<'EOF'
import socket
for start in range(21000, 39000, 50):
    ok = True
    for p in range(start, start + 50):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if not ok:
            break
    if ok:
        print(start)
        break
EOF
)
SIP=$base; ADMIN=$((base + 2)); UAS=$((base + 10)); UAC=$((base + 12))
UAS_MEDIA=$((base + 20)); UAC_MEDIA=$((base + 30))
# Each call takes 4 media ports (two legs, RTP + RTCP); ports other processes hold are skipped.
MEDIA_MIN=${MEDIA_MIN:-40000}; MEDIA_MAX=${MEDIA_MAX:-47999}

cat > "$WORK/gateway.toml" <<EOF
[gateway]
data_dir = "$WORK/data"
[listen]
tcp = "127.0.0.1:$SIP"
[media]
address = "127.0.0.1"
port_min = $MEDIA_MIN
port_max = $MEDIA_MAX
[limits]
max_calls = 5000
[admin]
http = "127.0.0.1:$ADMIN"
[[dial_plan]]
name = "load"
voip_security = "Unsecured"
routes = [{ prefix = "", target = "uas" }]
[[peer]]
name = "uas"
address = "127.0.0.1"
port = $UAS
transport = "tcp"
dial_plan = "load"
EOF

echo "== gateway on 127.0.0.1:$SIP (admin $ADMIN), media $MEDIA_MIN-$MEDIA_MAX"
RUST_LOG=warn "$BIN" run --config "$WORK/gateway.toml" > "$WORK/gateway.out" 2> "$WORK/gateway.log" &
GW=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$ADMIN/health" >/dev/null || { cat "$WORK/gateway.log"; exit 1; }

CALLS=$((RATE * DURATION))
echo "== SIPp UAS (-rtp_echo) on $UAS; UAC: $CALLS calls at $RATE/s, 7 s of G.711 each"
(cd "$WORK" && exec timeout $((DURATION + 120)) sipp -sf "$OLDPWD/testdata/sipp/uas.xml" -t t1 \
    -i 127.0.0.1 -p "$UAS" -mi 127.0.0.1 -mp "$UAS_MEDIA" -rtp_echo -nostdin >/dev/null 2>&1) &
sleep 0.5

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$GW/stat"; }
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
cpu0=$(cpu); pk0=$(metric mediagate_relay_packets_total)

(cd "$WORK" && timeout $((DURATION + 120)) sipp "127.0.0.1:$SIP" -sf "$OLDPWD/testdata/sipp/uac_media.xml" \
    -t t1 -i 127.0.0.1 -p "$UAC" -mi 127.0.0.1 -mp "$UAC_MEDIA" -s 5000 \
    -r "$RATE" -m "$CALLS" -l $((RATE * 12)) -nostdin -timeout $((DURATION + 60))s \
    -trace_stat -stf uac_stat.csv -trace_rtt -rtt_freq 1 -trace_screen -screen_file uac_screen.log \
    >/dev/null 2>&1) &
UACPID=$!
while kill -0 $UACPID 2>/dev/null; do
    sleep 5
    printf '  ... %s calls active, %s packets relayed\n' "$(metric mediagate_calls_active)" \
        "$(metric mediagate_relay_packets_total)"
done
wait $UACPID || true
sleep 1
cpu1=$(cpu); pk1=$(metric mediagate_relay_packets_total)

ok=$(grep -m1 "Successful call" "$WORK/uac_screen.log" | awk '{print $(NF)}')
failed=$(grep -m1 "Failed call" "$WORK/uac_screen.log" | awk '{print $(NF)}')
rate=$(grep -m1 "Call Rate" "$WORK/uac_screen.log" | awk '{print $(NF-1)}')
packets=$((pk1 - pk0))
cpu_ms=$(( (cpu1 - cpu0) * 1000 / ticks ))
echo
echo "== result ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
echo "calls: $ok successful, $failed failed, cumulative call rate $rate calls/s"
python3 - "$WORK"/*_rtt.csv <<'EOF' || true
import csv, sys
vals = []
for path in sys.argv[1:]:
    with open(path) as f:
        for row in csv.reader(f, delimiter=';'):
            try:
                vals.append(float(row[2]))
            except (ValueError, IndexError):
                pass
vals.sort()
if vals:
    q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))]
    print("INVITE->200 (ms): p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (%d calls)" % (q(.5), q(.9), q(.99), vals[-1], len(vals)))
EOF
echo "media: $packets packets relayed; drops: $(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^mediagate_relay_drops_total/ && $2 != 0 {printf "%s ", $0}')"
if [ "$packets" -gt 0 ]; then
    python3 -c "print('gateway CPU: %d ms total, %.2f us per relayed packet, %.2f ms per call' % ($cpu_ms, $cpu_ms * 1000.0 / $packets, $cpu_ms / max(1, ${ok:-0})))"
fi
[ "${failed:-1}" = "0" ] || { echo "FAILED calls" >&2; exit 1; }
