#!/usr/bin/env python3
"""labcheck: judges one lab call from both phones' reports and a capture of the gateway.

  labcheck --pcap P --caller C.json --callee E.json [--secured-leg caller] [--min-packets N]

C.json / E.json are `labphone call|report --save` reports of the two ends of one call that
crossed the gateway: the caller (alice, Secured dial plan: SRTP) and the callee (the far end,
plain RTP). P is a tcpdump capture taken in the gateway's network namespace during the call.

It runs srtp_pcap_check.py (the SRTP oracle of the e2e tests: libsrtp through pylibsrtp) with
the keys from the SDP each side sent and checks:
  - both phones: established, audio both ways (RTP packet counts), each heard the other's tone;
  - the Secured leg (caller <-> gateway): every RTP packet in both directions is SRTP that
    authenticates and decrypts with the sender's SDP key, and its payload on the wire is not
    the plaintext;
  - the other leg (gateway <-> callee): RTP version 2, no SDES keys in its SDP, nothing in it
    decrypts as SRTP under the secured leg's keys, and it carries the same audio (payloads
    equal to the decrypted SRTP payloads).
Prints one line per check (PASS/FAIL) and exits 1 if any failed.
"""
import argparse
import json
import subprocess
import sys

CHECKER = "/usr/local/lib/mediagate-lab/srtp_pcap_check.py"


class Checks:
    def __init__(self, title):
        self.title = title
        self.failed = 0
        self.passed = 0

    def check(self, ok, what, detail=""):
        print("  %s %s%s" % ("PASS" if ok else "FAIL", what, (": " + detail) if detail else ""))
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pcap", required=True)
    p.add_argument("--caller", required=True)
    p.add_argument("--callee", required=True)
    p.add_argument("--caller-tone", type=int, required=True)
    p.add_argument("--callee-tone", type=int, required=True)
    p.add_argument("--callee-transport", default=None, help="UDP, TCP or TLS: the far leg's SIP")
    p.add_argument("--min-packets", type=int, default=100)
    p.add_argument("--title", default="call")
    a = p.parse_args()
    caller, callee = load(a.caller), load(a.callee)
    c = Checks(a.title)
    print("%s:" % a.title)
    n = a.min_packets

    # The two ends.
    for who, rep, tone in (("caller", caller, a.callee_tone), ("callee", callee, a.caller_tone)):
        name = rep.get("phone")
        c.check(rep.get("established"), "%s %s: call established" % (who, name),
                "" if rep.get("established") else str(rep.get("closed") or rep.get("final")))
        tx, rx = rep.get("tx_packets") or 0, rep.get("rx_packets") or 0
        c.check(tx >= n and rx >= n, "%s %s: audio both ways" % (who, name),
                "sent %d, received %d RTP packets (at least %d each)" % (tx, rx, n))
        h = rep.get("heard") or {}
        c.check(h.get("tone_hz") is not None and abs(h["tone_hz"] - tone) <= 6,
                "%s %s: heard the other end's %d Hz tone" % (who, name, tone),
                "strongest tone %s Hz at %s RMS in %s s of received audio"
                % (h.get("tone_hz"), h.get("rms"), h.get("seconds")))
    c.check(caller.get("transport") == "TLS", "caller's SIP to the PBX is TLS",
            str(caller.get("transport")))
    if a.callee_transport:
        c.check(callee.get("transport") == a.callee_transport,
                "gateway's SIP to the callee is %s" % a.callee_transport, str(callee.get("transport")))

    # Ports and keys from the SDP each side sent.
    cl, cr = caller.get("local_sdp") or {}, caller.get("remote_sdp") or {}
    el, er = callee.get("local_sdp") or {}, callee.get("remote_sdp") or {}
    secured = (cl.get("proto") == "RTP/SAVP" and cr.get("proto") == "RTP/SAVP"
               and cl.get("crypto") and cr.get("crypto"))
    c.check(bool(secured), "secured leg negotiated RTP/SAVP with SDES keys",
            "caller %s %s, gateway %s %s" % (cl.get("proto"), [x["suite"] for x in cl.get("crypto", [])],
                                             cr.get("proto"), [x["suite"] for x in cr.get("crypto", [])]))
    plain = el.get("proto") == "RTP/AVP" and er.get("proto") == "RTP/AVP" \
        and not el.get("crypto") and not er.get("crypto")
    c.check(plain, "far leg negotiated plain RTP/AVP without keys",
            "callee %s, gateway %s" % (el.get("proto"), er.get("proto")))
    if not secured or not el.get("port") or not er.get("port"):
        print("  (no SDP to check the capture with)")
        return summary(c)

    ck, gk = cl["crypto"][0], cr["crypto"][0]
    args = ["/usr/bin/python3", CHECKER, a.pcap,
            "--srtp-from", str(cl["port"]), ck["suite"], ck["key"],
            "--srtp-from", str(cr["port"]), gk["suite"], gk["key"],
            "--plain-to", str(el["port"]), "--plain-to", str(er["port"])]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        c.check(False, "the capture could be read", (out.stdout + out.stderr).strip())
        return summary(c)
    rep = json.loads(out.stdout)
    print("  srtp_pcap_check: " + json.dumps(rep, sort_keys=True))

    for label, port in (("caller -> gateway", cl["port"]), ("gateway -> caller", cr["port"])):
        s = rep["srtp"][str(port)]
        c.check(s["rtp"] >= n and s["rtp_ok"] == s["rtp"],
                "secured leg %s: every packet is SRTP that decrypts with the SDP key (%s)"
                % (label, ck["suite"] if port == cl["port"] else gk["suite"]),
                "%d of %d packets authenticated and decrypted" % (s["rtp_ok"], s["rtp"]))
        c.check(s["rtp"] >= n and s["rtp_plaintext_differs"] == s["rtp"],
                "secured leg %s: no packet carries its plaintext on the wire" % label,
                "%d of %d packets differ from their decryption" % (s["rtp_plaintext_differs"], s["rtp"]))
        if port == cr["port"] and s["rtcp"]:
            # The gateway's SRTCP. (baresip's own RTCP is not judged: it sends an RTCP APP
            # "PINGPONG" in the clear when a call starts, before its SRTCP.)
            c.check(s["rtcp_ok"] == s["rtcp"], "secured leg %s: every RTCP packet is SRTCP that decrypts" % label,
                    "%d of %d" % (s["rtcp_ok"], s["rtcp"]))
        else:
            print("  info secured leg %s: SRTCP %d of %d packets decrypt" % (label, s["rtcp_ok"], s["rtcp"]))
    for label, port in (("gateway -> callee", el["port"]), ("callee -> gateway", er["port"])):
        s = rep["plain"][str(port)]
        c.check(s["rtp"] >= n and s["rtp_v2"] == s["rtp"] and s["decrypts_as_srtp"] == 0,
                "far leg %s: plain RTP" % label,
                "%d packets, %d RTPv2, %d decrypt as SRTP" % (s["rtp"], s["rtp_v2"], s["decrypts_as_srtp"]))
        c.check(s["rtp"] > 0 and s["payload_seen_in_srtp"] * 10 >= s["rtp"] * 9,
                "far leg %s: the same audio as the secured leg" % label,
                "%d of %d payloads equal a decrypted SRTP payload" % (s["payload_seen_in_srtp"], s["rtp"]))
    return summary(c)


def summary(c):
    print("  %s: %d passed, %d failed" % (c.title, c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
