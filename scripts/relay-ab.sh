#!/usr/bin/env bash
# Before/after comparison of the relay's CPU per packet, in one run: two builds of the load tool
# (e.g. the previous commit's and this one's) alternate on the same cell of the relay matrix,
# ROUNDS times each, and the medians and their ratio are printed.
#
#   scripts/relay-ab.sh BEFORE_LOAD AFTER_LOAD [ROUNDS] [STREAMS] [SECONDS] [A] [B]
#
# Build the "before" tool from another checkout, e.g.:
#   git worktree add /tmp/before HEAD~1 && (cd /tmp/before && cargo build --release -p mediagate-load)
#   cargo build --release -p mediagate-load
#   scripts/relay-ab.sh /tmp/before/target/release/mediagate-load target/release/mediagate-load
# Defaults: 5 rounds, 1000 one-way streams plain -> AES_CM_128_HMAC_SHA1_80, 8 s per run.
set -euo pipefail
BEFORE=$1
AFTER=$2
ROUNDS=${3:-5}
STREAMS=${4:-1000}
SECS=${5:-8}
A=${6:-none}
B=${7:-AES_CM_128_HMAC_SHA1_80}

run() { # tool -> "cpu_us_per_packet loss_pct sent_pps"
    nice -n -15 "$1" --streams "$STREAMS" --duration "$SECS" --a "$A" --b "$B" --progress 0 --json |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["relay_cpu_per_packet_us"], r["loss_pct"], r["sent_pps"], sum(r["relay_drops"].values()))'
}

declare -a before after
echo "round | before µs/pkt (loss %, sent pkt/s, drops) | after µs/pkt (loss %, sent pkt/s, drops)"
for i in $(seq 1 "$ROUNDS"); do
    b=$(run "$BEFORE")
    a=$(run "$AFTER")
    before+=("${b%% *}")
    after+=("${a%% *}")
    echo "$i | $b | $a"
done
python3 - "${before[*]}" "${after[*]}" <<'EOF'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]
a = [float(x) for x in sys.argv[2].split()]
mb, ma = statistics.median(b), statistics.median(a)
print(f"median before {mb:.3f} µs/pkt, after {ma:.3f} µs/pkt, after/before {ma / mb:.3f}")
EOF
