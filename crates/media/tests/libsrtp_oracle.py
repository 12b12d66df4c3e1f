"""libsrtp (through pylibsrtp) as an independent SRTP oracle for mediagate's tests.

Reads one JSON object on stdin:
  {"profile": "AES_CM_128_HMAC_SHA1_80", "key": "<base64 key||salt>",
   "srtp": [hex...], "srtcp": [hex...],        # protected by mediagate: unprotect them
   "rtp": [hex...], "rtcp": [hex...]}           # plaintext: protect them with libsrtp
Writes one JSON object on stdout:
  {"rtp_from_srtp": [hex or null...], "rtcp_from_srtcp": [...],
   "srtp": [hex...], "srtcp": [hex...]}
A packet libsrtp refuses comes back as null, so the caller can assert on it.
Run with /usr/bin/python3 (Debian's python3-pylibsrtp lives in dist-packages).
"""
import base64
import json
import sys

import pylibsrtp

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


def session(key, profile, direction):
    policy = pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=PROFILES[profile])
    return pylibsrtp.Session(policy=policy)


def main():
    req = json.load(sys.stdin)
    if req.get("list_profiles"):
        json.dump({"profiles": sorted(PROFILES)}, sys.stdout)
        return
    key = base64.b64decode(req["key"])
    profile = req["profile"]
    rx = session(key, profile, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    tx = session(key, profile, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)

    def attempt(fn, data):
        try:
            return fn(bytes.fromhex(data)).hex()
        except pylibsrtp.Error:
            return None

    out = {
        "rtp_from_srtp": [attempt(rx.unprotect, p) for p in req.get("srtp", [])],
        "rtcp_from_srtcp": [attempt(rx.unprotect_rtcp, p) for p in req.get("srtcp", [])],
        "srtp": [tx.protect(bytes.fromhex(p)).hex() for p in req.get("rtp", [])],
        "srtcp": [tx.protect_rtcp(bytes.fromhex(p)).hex() for p in req.get("rtcp", [])],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
