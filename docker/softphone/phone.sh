#!/usr/bin/env bash
# Starts one headless baresip softphone from environment variables (docker/compose.yml):
#   PHONE_NAME      name: its files go to /out/NAME/ (baresip.log, audio/)
#   PHONE_IP        its address on the lab network (SIP and RTP bind here)
#   PHONE_ACCOUNTS  baresip account lines, one per line
#   PHONE_CERT      optional: certificate + key in one PEM (TLS client and server cert)
#   PHONE_CA        optional: CA file (baresip does not verify servers with it; see PEERS)
#   PHONE_TONE_HZ   the tone it sends (default 440): a call's far end can tell what it heard
#   PHONE_RTP_PORTS its RTP port range (default 20000-20099)
# No sound card: the source is a generated tone (aufile), there is no player, and what the
# phone receives is recorded by the sndfile module (/out/NAME/audio/dump-*-dec.wav).
# Control: ctrl_tcp on 127.0.0.1:4444 inside the container (the `labphone` tool).
set -euo pipefail
: "${PHONE_NAME:?}" "${PHONE_IP:?}" "${PHONE_ACCOUNTS:?}"
TONE_HZ=${PHONE_TONE_HZ:-440}
RTP=${PHONE_RTP_PORTS:-20000-20099}
DIR=/run/phone
OUT=/out/$PHONE_NAME
mkdir -p "$DIR" "$OUT/audio"
rm -f "$OUT"/audio/dump-*.wav

# Two minutes of the tone, 8 kHz mono 16-bit (each call starts it again).
python3 - "$DIR/tone.wav" "$TONE_HZ" <<'EOF'
import math, struct, sys, wave
path, hz = sys.argv[1], float(sys.argv[2])
w = wave.open(path, "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / 8000)))
                       for i in range(8000 * 120)))
w.close()
EOF

{
    cat <<EOF
poll_method       epoll
sip_listen        $PHONE_IP:5060
net_interface     $PHONE_IP
audio_source      aufile,$DIR/tone.wav
rtp_ports         $RTP
rtcp_mux          no
rtp_stats         yes
module_path       /usr/lib/baresip/modules
module            g711.so
module            aufile.so
module            sndfile.so
module            srtp.so
module_tmp        account.so
module_app        menu.so
module_app        ctrl_tcp.so
ctrl_tcp_listen   127.0.0.1:4444
snd_path          $OUT/audio
EOF
    [[ -n ${PHONE_CERT:-} ]] && echo "sip_certificate   $PHONE_CERT"
    [[ -n ${PHONE_CA:-} ]] && echo "sip_cafile        $PHONE_CA"
    true
} >"$DIR/config"
printf '%s\n' "$PHONE_ACCOUNTS" | sed '/^[[:space:]]*$/d' >"$DIR/accounts"
: >"$DIR/contacts"

echo "phone $PHONE_NAME on $PHONE_IP (tone $TONE_HZ Hz, RTP $RTP), accounts:"
sed 's/^/  /' "$DIR/accounts"
# -s: SIP trace (with SDP), -v: verbose (RTP statistics at the end of each call). Line
# buffered so that the log file is current; also on stdout for `docker logs`.
exec stdbuf -oL -eL baresip -f "$DIR" -s -v > >(tee "$OUT/baresip.log") 2>&1
