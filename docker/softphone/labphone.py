#!/usr/bin/env python3
"""labphone: drives the lab's headless baresip (in its own container) and reports a call.

  labphone call URI [--seconds N] [--expect-tone HZ] [--expect-fail]
      Dials URI through baresip's ctrl_tcp, keeps the call up N seconds (default 5), hangs
      up, and reports the call: established or not (and why), SIP transport, SRTP suite, the
      SDP of both sides (address, port, profile, a=crypto keys), RTP packets sent and
      received, and what the phone heard (the strongest tone in the received audio).
  labphone report [--expect-tone HZ]
      The same report for the last call this phone took part in (the callee's side).
  labphone registered [--wait SECS]
      Exit 0 once every account that registers is registered ("OK" in /reginfo).

The report is one JSON object on stdout (--human: text; --save FILE also writes the JSON). With --expect-tone, --expect-fail
or a failed call the exit status says whether the expectation held (0 yes, 1 no); the
report is printed either way. Needs only the Python standard library.

Files (see phone.sh): the baresip log /out/$PHONE_NAME/baresip.log (SIP trace with -s, RTP
statistics), the received audio /out/$PHONE_NAME/audio/dump-*-dec.wav (baresip's sndfile).
"""
import argparse
import glob
import json
import math
import os
import re
import socket
import struct
import sys
import time
import wave

NAME = os.environ.get("PHONE_NAME", "phone")
MY_IP = os.environ.get("PHONE_IP", "")
OUT = os.path.join("/out", NAME)
LOG = os.path.join(OUT, "baresip.log")
CTRL = ("127.0.0.1", 4444)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---- ctrl_tcp (netstring-framed JSON) ---------------------------------------------------


class Ctrl:
    def __init__(self, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.create_connection(CTRL, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("labphone: baresip's ctrl_tcp (%s:%d) does not answer" % CTRL)
                time.sleep(0.2)
        self.buf = b""
        self.events = []
        self.token = 0

    def _read(self, timeout):
        self.s.settimeout(max(timeout, 0.01))
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            return []
        if not data:
            raise SystemExit("labphone: baresip closed the control connection")
        self.buf += data
        msgs = []
        while b":" in self.buf:
            n, rest = self.buf.split(b":", 1)
            n = int(n)
            if len(rest) < n + 1:
                break
            msgs.append(json.loads(rest[:n].decode("utf-8", "replace")))
            self.buf = rest[n + 1:]
        return msgs

    def command(self, cmd, params=None, timeout=5.0):
        self.token += 1
        tok = str(self.token)
        msg = {"command": cmd, "token": tok}
        if params is not None:
            msg["params"] = params
        raw = json.dumps(msg).encode()
        self.s.sendall(str(len(raw)).encode() + b":" + raw + b",")
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self._read(deadline - time.time()):
                if m.get("response") and m.get("token") == tok:
                    return m
                if m.get("event"):
                    self.events.append(m)
        raise SystemExit("labphone: no answer from baresip to %r" % cmd)

    def wait_event(self, types, timeout):
        """The first event of one of `types` (already received or arriving within timeout)."""
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("type") in types:
                    return self.events.pop(i)
            left = deadline - time.time()
            if left <= 0:
                return None
            for m in self._read(min(left, 0.5)):
                if m.get("event"):
                    self.events.append(m)


# ---- the log: SIP messages, SDP, statistics ---------------------------------------------


def read_log(offset=0):
    try:
        with open(LOG, "rb") as f:
            f.seek(offset)
            return ANSI.sub("", f.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        return ""


def log_size():
    try:
        return os.path.getsize(LOG)
    except OSError:
        return 0


TRACE_HEAD = re.compile(r"^(UDP|TCP|TLS) (\S+):(\d+) -> (\S+):(\d+)$")


def sip_messages(text):
    """The SIP messages of baresip's -s trace, in order: dicts with transport, src, sport,
    dst, dport, start (line), cseq, to_tag (bool), body (the SDP, if any) and pos (offset of
    the message in text). A traced message is a line "#", a line "PROTO SRC -> DST", the
    headers up to a blank line, then the body, which ends at the next blank line."""
    out = []
    lines = text.split("\n")
    offsets = []
    pos = 0
    for l in lines:
        offsets.append(pos)
        pos += len(l) + 1
    i = 0
    while i + 1 < len(lines):
        m = TRACE_HEAD.match(lines[i + 1].strip()) if lines[i].strip() == "#" else None
        if not m:
            i += 1
            continue
        j = i + 2
        head = []
        while j < len(lines) and lines[j].strip() != "":
            head.append(lines[j].strip())
            j += 1
        hdr = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            hdr.setdefault(k.strip().lower(), v.strip())
        body = []
        if hdr.get("content-length", "0") not in ("", "0"):
            j += 1
            while j < len(lines) and lines[j].strip() != "":
                body.append(lines[j].strip())
                j += 1
        out.append({
            "transport": m.group(1),
            "src": m.group(2), "sport": int(m.group(3)),
            "dst": m.group(4), "dport": int(m.group(5)),
            "start": head[0] if head else "",
            "cseq": hdr.get("cseq", ""),
            "to_tag": ";tag=" in hdr.get("to", ""),
            "body": "\n".join(body),
            "pos": offsets[i],
        })
        i = j
    return out


def parse_sdp(body):
    sdp = {"address": None, "port": None, "proto": None, "crypto": []}
    for line in body.split("\n"):
        line = line.strip()
        if line.startswith("c=IN IP4 "):
            sdp["address"] = line.split()[2]
        elif line.startswith("m=audio "):
            f = line.split()
            sdp["port"], sdp["proto"] = int(f[1]), f[2]
        elif line.startswith("a=crypto:"):
            f = line[len("a=crypto:"):].split()
            if len(f) >= 3 and f[2].startswith("inline:"):
                sdp["crypto"].append({"tag": f[0], "suite": f[1],
                                      "key": f[2][len("inline:"):].split("|")[0]})
    return sdp if sdp["port"] is not None else None


def stats(text):
    """(tx, rx) packets from baresip's last 'audio Transmit: Receive:' table in text."""
    tx = rx = None
    lines = text.split("\n")
    for i, l in enumerate(lines):
        if l.strip().startswith("audio") and "Transmit:" in l and "Receive:" in l:
            for l2 in lines[i + 1:i + 4]:
                t = l2.strip()
                if t.startswith("packets:"):
                    v = [int(x) for x in t.split()[1:3]]
                    tx, rx = v[0], v[1]
    return tx, rx


def last_call_segment(text):
    """The log from the last initial INVITE (sent or received) to the end, and its messages."""
    msgs = sip_messages(text)
    initial = [m for m in msgs if m["start"].startswith("INVITE ") and not m["to_tag"]]
    if not initial:
        return text, msgs
    seg = text[initial[-1]["pos"]:]
    return seg, sip_messages(seg)


def describe(seg, msgs):
    """The call report parts that come from the log segment of one call."""
    rep = {"transport": None, "local_sdp": None, "remote_sdp": None, "srtp": None,
           "tx_packets": None, "rx_packets": None, "final": None}
    invite = next((m for m in msgs if m["start"].startswith("INVITE ")), None)
    if invite:
        rep["transport"] = invite["transport"]
        rep["direction"] = "outgoing" if invite["src"] == MY_IP else "incoming"
        rep["sip_peer"] = "%s:%d" % ((invite["dst"], invite["dport"]) if rep["direction"] == "outgoing"
                                     else (invite["src"], invite["sport"]))
    for m in msgs:
        if not m["cseq"].endswith("INVITE"):
            continue
        if m["start"].startswith("SIP/2.0 ") and not m["start"].startswith("SIP/2.0 1"):
            rep["final"] = m["start"][len("SIP/2.0 "):]
        sdp = parse_sdp(m["body"]) if m["body"] else None
        if sdp:
            key = "local_sdp" if m["src"] == MY_IP else "remote_sdp"
            rep[key] = sdp
    # The suite both sides agreed on: the answer's line; each side's key from its own SDP.
    loc, rem = rep["local_sdp"], rep["remote_sdp"]
    if loc and rem and loc["crypto"] and rem["crypto"]:
        answer = rem if rep.get("direction") == "outgoing" else loc
        chosen = answer["crypto"][0]
        for s in (loc, rem):
            same = [c for c in s["crypto"] if c["tag"] == chosen["tag"] and c["suite"] == chosen["suite"]]
            s["crypto"] = same or s["crypto"][:1]
        rep["srtp"] = chosen["suite"]
    m = re.findall(r"SRTP is Enabled \(cryptosuite=([A-Z0-9_]+)\)", seg)
    if m:
        rep["srtp_enabled"] = m[-1]
    rep["tx_packets"], rep["rx_packets"] = stats(seg)
    return rep


# ---- what the phone heard ---------------------------------------------------------------


def goertzel_power(samples, rate, freq):
    k = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x + k * s1 - s2
        s2, s1 = s1, s0
    return s1 * s1 + s2 * s2 - k * s1 * s2


def heard(since):
    """The strongest tone in the audio the phone decoded in its last call (sndfile dump)."""
    files = [f for f in glob.glob(os.path.join(OUT, "audio", "dump-*-dec.wav"))
             if os.path.getmtime(f) >= since - 1]
    if not files:
        return {"file": None, "seconds": 0.0, "tone_hz": None, "rms": 0.0}
    path = max(files, key=os.path.getmtime)
    with wave.open(path, "rb") as w:
        rate, n = w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    samples = struct.unpack("<%dh" % (len(raw) // 2), raw[:len(raw) // 2 * 2])
    res = {"file": path, "seconds": round(len(samples) / float(rate), 2), "tone_hz": None, "rms": 0.0}
    # One second from the middle (after the jitter buffer filled, before the hangup).
    if len(samples) < rate:
        window = samples
    else:
        mid = len(samples) // 2
        window = samples[mid - rate // 2: mid + rate // 2]
    if not window:
        return res
    res["rms"] = round(math.sqrt(sum(x * x for x in window) / len(window)), 1)
    if res["rms"] < 50:
        return res
    coarse = max(range(100, 3000, 20), key=lambda f: goertzel_power(window, rate, f))
    fine = max(range(coarse - 20, coarse + 21, 2), key=lambda f: goertzel_power(window, rate, f))
    total = sum(x * x for x in window) * len(window) / 2.0
    res["tone_hz"] = fine
    res["tone_share"] = round(min(1.0, goertzel_power(window, rate, fine) / total), 3) if total else 0.0
    return res


# ---- commands ---------------------------------------------------------------------------


def human(rep):
    out = []
    who = rep.get("peer") or ("from %s" % rep["sip_peer"] if rep.get("sip_peer") else "")
    if rep.get("established"):
        out.append("%s: call %s established over %s%s" % (NAME, who, rep.get("transport"),
                   ", SRTP %s" % rep["srtp"] if rep.get("srtp") else ", plain RTP"))
    else:
        out.append("%s: call %s NOT established: %s" % (NAME, who, rep.get("closed") or rep.get("final")))
    for k in ("local_sdp", "remote_sdp"):
        s = rep.get(k)
        if s:
            out.append("  %-10s %s:%s %s%s" % ("ours" if k == "local_sdp" else "theirs", s["address"], s["port"],
                       s["proto"], "".join(" %s inline:%s" % (c["suite"], c["key"]) for c in s["crypto"])))
    if rep.get("tx_packets") is not None:
        out.append("  RTP packets: sent %s, received %s" % (rep["tx_packets"], rep["rx_packets"]))
    h = rep.get("heard")
    if h and h.get("file"):
        out.append("  heard: %s s of audio, strongest tone %s Hz (share %s), level %s RMS"
                   % (h["seconds"], h["tone_hz"], h.get("tone_share"), h["rms"]))
    for p in rep.get("problems", []):
        out.append("  PROBLEM: " + p)
    return "\n".join(out)


def check(rep, expect_tone):
    problems = []
    if not rep.get("established"):
        problems.append("the call was not established")
    else:
        if not rep.get("tx_packets") or not rep.get("rx_packets"):
            problems.append("no RTP statistics in the log")
        if expect_tone:
            h = rep.get("heard") or {}
            if h.get("tone_hz") is None or abs(h["tone_hz"] - expect_tone) > 6:
                problems.append("expected to hear %d Hz, heard %s" % (expect_tone, h.get("tone_hz")))
    return problems


def cmd_call(a):
    ctrl = Ctrl()
    start_off, start_t = log_size(), time.time()
    rep = {"phone": NAME, "peer": a.uri, "established": False}
    ctrl.command("dial", a.uri)
    ev = ctrl.wait_event({"CALL_ESTABLISHED", "CALL_CLOSED"}, a.timeout)
    if ev is None:
        ctrl.command("hangup")
        rep["closed"] = "no answer within %ds" % a.timeout
        ctrl.wait_event({"CALL_CLOSED"}, 5)
    elif ev["type"] == "CALL_CLOSED":
        rep["closed"] = ev.get("param")
    else:
        rep["established"] = True
        time.sleep(a.seconds)
        ctrl.command("hangup")
        ev = ctrl.wait_event({"CALL_CLOSED"}, 10)
        rep["closed"] = ev.get("param") if ev else "no CALL_CLOSED after hangup"
    # The statistics table follows the close in the log.
    deadline = time.time() + 5
    while time.time() < deadline:
        seg = read_log(start_off)
        if not rep["established"] or stats(seg)[0] is not None:
            break
        time.sleep(0.2)
    seg = read_log(start_off)
    rep.update(describe(seg, sip_messages(seg)))
    rep["heard"] = heard(start_t) if rep["established"] else None
    return finish(rep, a)


def cmd_report(a):
    text = read_log()
    seg, msgs = last_call_segment(text)
    rep = {"phone": NAME, "established": "Call established" in seg or (stats(seg)[0] or 0) > 0}
    rep.update(describe(seg, msgs))
    rep["heard"] = heard(0)
    return finish(rep, a)


def finish(rep, a):
    expect_fail = getattr(a, "expect_fail", False)
    if expect_fail:
        rep["problems"] = ["the call was established, but it must be refused"] if rep["established"] else []
    else:
        rep["problems"] = check(rep, a.expect_tone)
    if getattr(a, "save", None):
        os.makedirs(os.path.dirname(a.save) or ".", exist_ok=True)
        with open(a.save, "w") as f:
            json.dump(rep, f, indent=1, sort_keys=True)
    print(human(rep) if a.human else json.dumps(rep, indent=1, sort_keys=True))
    return 1 if rep["problems"] else 0


def cmd_registered(a):
    deadline = time.time() + a.wait
    ctrl = Ctrl(timeout=a.wait)
    while True:
        data = ctrl.command("reginfo").get("data", "")
        lines = [ANSI.sub("", l) for l in data.split("\n") if "sip:" in l]
        if lines and all(" OK " in l or l.rstrip().endswith(" OK") or "OK" in l.split() for l in lines):
            print("\n".join(l.strip() for l in lines))
            return 0
        if time.time() > deadline:
            print("labphone: not registered after %ds:\n%s" % (a.wait, data.strip()), file=sys.stderr)
            return 1
        time.sleep(0.5)


def main():
    p = argparse.ArgumentParser(prog="labphone", description=__doc__.split("\n")[0])
    p.add_argument("--human", action="store_true", help="text instead of JSON")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("call")
    c.add_argument("uri")
    c.add_argument("--seconds", type=float, default=5.0)
    c.add_argument("--timeout", type=int, default=20)
    c.add_argument("--expect-tone", type=int)
    c.add_argument("--expect-fail", action="store_true")
    c.add_argument("--save", help="also write the JSON report to this file")
    r = sub.add_parser("report")
    r.add_argument("--expect-tone", type=int)
    r.add_argument("--save", help="also write the JSON report to this file")
    g = sub.add_parser("registered")
    g.add_argument("--wait", type=int, default=20)
    a = p.parse_args()
    return {"call": cmd_call, "report": cmd_report, "registered": cmd_registered}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
