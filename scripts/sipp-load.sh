#!/usr/bin/env bash
# Call-rate load through the B2BUA over TCP: SIPp UAC -> mediagate-sip (in process, fake media)
# -> SIPp UAS, at increasing rates until a step has a failed call. Prints the highest rate with
# zero failed calls and the caller's INVITE->200 response-time percentiles per step.
#
#   scripts/sipp-load.sh                         # default steps 500..6000 calls/s, 5 s each
#   LOAD_RATES=800,1000,1200 LOAD_SECONDS=10 scripts/sipp-load.sh
#
# Needs the Debian package sip-tester (sipp). Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "sipp not found: apt-get install -y sip-tester" >&2; exit 1; }
exec cargo test --release -p mediagate-sip --test load -- --ignored --nocapture "$@"
