"""Checks a tcpdump capture of a call through mediagate with libsrtp (pylibsrtp) as the oracle.

Usage (run with /usr/bin/python3, where Debian's python3-pylibsrtp lives):
  srtp_pcap_check.py CAPTURE.pcap [--srtp-from PORT SUITE KEY]... [--plain-to PORT]...

--srtp-from PORT SUITE KEY   UDP packets sent FROM port PORT (RTP) and PORT+1 (RTCP) are
                             SRTP/SRTCP protected by their sender with the SDES key KEY
                             (base64 key||salt from that sender's own a=crypto) and SUITE.
--plain-to PORT              UDP packets sent TO port PORT (RTP) must be plain RTP.

Prints one JSON object:
  {"srtp": {"<port>": {"rtp": n, "rtp_ok": n, "rtp_plaintext_differs": n,
                       "rtcp": n, "rtcp_ok": n}},
   "plain": {"<port>": {"rtp": n, "rtp_v2": n, "payload_seen_in_srtp": n,
                        "decrypts_as_srtp": n}}}
"payload_seen_in_srtp" counts plain packets whose payload equals the decrypted payload of
some SRTP packet (the same audio crossed the gateway); "decrypts_as_srtp" counts plain
packets that would authenticate as SRTP under any given key (must be 0).
Exit status 0 when the capture could be read; the caller asserts on the counts.
"""
import base64
import json
import struct
import sys

import pylibsrtp

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


def packets(path):
    """Yields (src_port, dst_port, payload) of the IPv4/UDP packets of a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise SystemExit("not a pcap file: %s" % path)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0}.get(linktype)
    if link_len is None:
        raise SystemExit("unsupported link type %d" % linktype)
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        ip = frame[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        if len(udp) < 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        yield sport, dport, bytes(udp[8:ulen])


def session(key_b64, suite):
    policy = pylibsrtp.Policy(
        key=base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4)),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=PROFILES[suite],
    )
    return pylibsrtp.Session(policy=policy)


def rtp_payload(pkt):
    if len(pkt) < 12:
        return None
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10 and len(pkt) >= off + 4:
        off += 4 + 4 * struct.unpack("!H", pkt[off + 2:off + 4])[0]
    end = len(pkt)
    if pkt[0] & 0x20 and end > off:
        end -= pkt[-1]
    return pkt[off:end]


def main(argv):
    path = argv[0]
    srtp_specs = {}
    plain_ports = []
    i = 1
    while i < len(argv):
        if argv[i] == "--srtp-from":
            srtp_specs[int(argv[i + 1])] = (argv[i + 2], argv[i + 3])
            i += 4
        elif argv[i] == "--plain-to":
            plain_ports.append(int(argv[i + 1]))
            i += 2
        else:
            raise SystemExit("unknown argument %s" % argv[i])
    sessions = {p: session(k, s) for p, (s, k) in srtp_specs.items()}
    probe = {p: (s, k) for p, (s, k) in srtp_specs.items()}
    report = {"srtp": {}, "plain": {}}
    for p in srtp_specs:
        report["srtp"][str(p)] = dict(rtp=0, rtp_ok=0, rtp_plaintext_differs=0, rtcp=0, rtcp_ok=0)
    for p in plain_ports:
        report["plain"][str(p)] = dict(rtp=0, rtp_v2=0, payload_seen_in_srtp=0, decrypts_as_srtp=0)
    decrypted_payloads = set()
    plain_packets = []
    for sport, dport, payload in packets(path):
        if sport in sessions:
            r = report["srtp"][str(sport)]
            r["rtp"] += 1
            try:
                clear = sessions[sport].unprotect(payload)
            except pylibsrtp.Error:
                continue
            r["rtp_ok"] += 1
            pl = rtp_payload(clear)
            if pl is not None and pl != rtp_payload(payload):
                r["rtp_plaintext_differs"] += 1
            if pl:
                decrypted_payloads.add(pl)
        elif sport - 1 in sessions:
            r = report["srtp"][str(sport - 1)]
            r["rtcp"] += 1
            try:
                sessions[sport - 1].unprotect_rtcp(payload)
                r["rtcp_ok"] += 1
            except pylibsrtp.Error:
                pass
        if dport in plain_ports:
            plain_packets.append((dport, payload))
    for dport, payload in plain_packets:
        r = report["plain"][str(dport)]
        r["rtp"] += 1
        if len(payload) >= 12 and payload[0] >> 6 == 2:
            r["rtp_v2"] += 1
        if rtp_payload(payload) in decrypted_payloads:
            r["payload_seen_in_srtp"] += 1
        for suite, key in probe.values():
            try:
                session(key, suite).unprotect(payload)
                r["decrypts_as_srtp"] += 1
            except pylibsrtp.Error:
                pass
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
