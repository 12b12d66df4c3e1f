#!/usr/bin/env bash
# Same verified load through mediagate's relay and through Sipwise rtpengine
# (Debian rtpengine-daemon, userspace forwarding --table=-1), back to back.
#   scripts/compare-rtpengine.sh [STREAMS] [SECONDS]
# Needs root (apt-get install rtpengine-daemon if missing). Prints one JSON
# report per run, prefixed with the relay name and the case.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${1:-1000}; secs=${2:-8}
command -v rtpengine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rtpengine-daemon
cargo build --release -q -p mediagate-load
ng=127.0.0.1:22223
rtpe_pid=
stop_rtpe() { [ -n "$rtpe_pid" ] && kill "$rtpe_pid" 2>/dev/null || true; wait "$rtpe_pid" 2>/dev/null || true; rtpe_pid=; }
trap stop_rtpe EXIT
for legs in "none none" "none AES_CM_128_HMAC_SHA1_80"; do
  set -- $legs
  for tw in "" "--two-way"; do
    m=$(./target/release/mediagate-load --progress 0 --json --streams "$streams" --duration "$secs" --a "$1" --b "$2" $tw)
    echo "mediagate $streams ${tw:-one} $1 $2 $m"
    timeout $((secs + 60)) rtpengine --table=-1 --interface=127.0.0.1 --listen-ng=$ng \
        --port-min=50000 --port-max=59999 --foreground --log-stderr --num-threads=2 --log-level=3 \
        2>/dev/null &
    rtpe_pid=$!
    for _ in $(seq 50); do ss -lun | grep -q ":${ng##*:} " && break; sleep 0.1; done
    r=$(./target/release/mediagate-load --rtpengine $ng --progress 0 --json --streams "$streams" --duration "$secs" --a "$1" --b "$2" $tw)
    echo "rtpengine $streams ${tw:-one} $1 $2 $r"
    stop_rtpe
  done
done
