//! Drives Sipwise rtpengine through its NG control protocol (bencode over
//! UDP), so the same verified load runs against it for a side-by-side
//! comparison (BENCHMARKS.md). Userspace forwarding only (`--table=-1`).
//!
//! Per call: `offer` with peer A's SDP (plain or SDES) asking rtpengine to
//! offer `RTP/AVP` or `RTP/SAVP` to peer B; peer B picks the requested suite
//! from rtpengine's `a=crypto` lines and answers with its own key; `answer`
//! returns the SDP towards A. The keys each side sends with are the ones in
//! its own SDP (RFC 4568).

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mediagate_media::relay::{PairId, PairPorts};
use mediagate_media::sdes::CryptoAttribute;
use mediagate_media::session::LegKeys;
use mediagate_media::srtp::SrtpProfile;

/// A bencode value (just what NG needs).
enum B {
    S(String),
    L(Vec<String>),
}

fn encode(dict: &[(&str, B)]) -> String {
    let mut out = String::from("d");
    for (k, v) in dict {
        let _ = write!(out, "{}:{}", k.len(), k);
        match v {
            B::S(s) => {
                let _ = write!(out, "{}:{}", s.len(), s);
            }
            B::L(items) => {
                out.push('l');
                for s in items {
                    let _ = write!(out, "{}:{}", s.len(), s);
                }
                out.push('e');
            }
        }
    }
    out.push('e');
    out
}

/// Finds the string value of `key` in a flat bencoded dictionary reply.
fn lookup(reply: &[u8], key: &str) -> Option<String> {
    let mut i = 1; // skip 'd'
    while i < reply.len() && reply[i] != b'e' {
        let (k, next) = read_str(reply, i)?;
        i = next;
        match reply.get(i)? {
            b'0'..=b'9' => {
                let (v, next) = read_str(reply, i)?;
                if k == key.as_bytes() {
                    return Some(String::from_utf8_lossy(v).into_owned());
                }
                i = next;
            }
            _ => i = skip(reply, i)?,
        }
    }
    None
}

fn read_str(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let colon = i + b[i..].iter().position(|c| *c == b':')?;
    let n: usize = std::str::from_utf8(&b[i..colon]).ok()?.parse().ok()?;
    Some((b.get(colon + 1..colon + 1 + n)?, colon + 1 + n))
}

fn skip(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'i' => Some(i + b[i..].iter().position(|c| *c == b'e')? + 1),
        b'l' | b'd' => {
            let mut j = i + 1;
            while *b.get(j)? != b'e' {
                j = if b[j].is_ascii_digit() {
                    read_str(b, j)?.1
                } else {
                    skip(b, j)?
                };
            }
            Some(j + 1)
        }
        b'0'..=b'9' => Some(read_str(b, i)?.1),
        _ => None,
    }
}

/// A connection to rtpengine's NG control port.
pub(crate) struct Rtpengine {
    sock: UdpSocket,
    cookie: u64,
}

/// What one call through rtpengine looks like to the load tool.
pub(crate) struct Leg {
    pub(crate) ports: PairPorts,
    pub(crate) a_keys: Option<LegKeys>,
    pub(crate) b_keys: Option<LegKeys>,
}

fn sdp(addr: SocketAddr, crypto: Option<&CryptoAttribute>) -> String {
    let proto = if crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    );
    if let Some(c) = crypto {
        let _ = write!(s, "a=crypto:{c}\r\n");
    }
    s
}

/// The media address and the `a=crypto` values of an SDP body.
fn parse_sdp(sdp: &str) -> Option<(SocketAddr, Vec<String>)> {
    let mut ip = None;
    let mut port = None;
    let mut crypto = Vec::new();
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse().ok();
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        } else if let Some(c) = line.strip_prefix("a=crypto:") {
            crypto.push(c.trim().to_string());
        }
    }
    Some((SocketAddr::new(ip?, port?), crypto))
}

impl Rtpengine {
    pub(crate) fn connect(ng: SocketAddr) -> Result<Self, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.connect(ng).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut me = Self { sock, cookie: 0 };
        let pong = me.request(&[("command", B::S("ping".into()))])?;
        if lookup(&pong, "result").as_deref() != Some("pong") {
            return Err(format!("rtpengine at {ng} did not answer ping"));
        }
        Ok(me)
    }

    fn request(&mut self, dict: &[(&str, B)]) -> Result<Vec<u8>, String> {
        self.cookie += 1;
        let msg = format!("{} {}", self.cookie, encode(dict));
        self.sock
            .send(msg.as_bytes())
            .map_err(|e| format!("rtpengine NG: {e}"))?;
        let mut buf = vec![0u8; 65_536];
        let n = self
            .sock
            .recv(&mut buf)
            .map_err(|e| format!("rtpengine NG reply: {e}"))?;
        let reply = &buf[..n];
        let sp = reply
            .iter()
            .position(|c| *c == b' ')
            .ok_or("NG reply without cookie")?;
        let body = reply[sp + 1..].to_vec();
        if lookup(&body, "result").as_deref() == Some("error") {
            return Err(format!(
                "rtpengine: {}",
                lookup(&body, "error-reason").unwrap_or_default()
            ));
        }
        Ok(body)
    }

    /// Sets up call `i`: peer A at `a`, peer B at `b`, with the given crypto per leg.
    pub(crate) fn setup(
        &mut self,
        i: u32,
        a: SocketAddr,
        b: SocketAddr,
        a_suite: Option<SrtpProfile>,
        b_suite: Option<SrtpProfile>,
    ) -> Result<Leg, String> {
        let call_id = format!("mg-load-{i}");
        let a_offer = a_suite
            .map(|p| CryptoAttribute::generate(1, p))
            .transpose()
            .map_err(|e| e.to_string())?;
        let proto = if b_suite.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let offer = self.request(&[
            ("command", B::S("offer".into())),
            ("call-id", B::S(call_id.clone())),
            ("from-tag", B::S(format!("a{i}"))),
            ("sdp", B::S(sdp(a, a_offer.as_ref()))),
            ("transport-protocol", B::S(proto.into())),
            (
                "replace",
                B::L(vec!["origin".into(), "session-connection".into()]),
            ),
            ("ICE", B::S("remove".into())),
        ])?;
        let to_b = lookup(&offer, "sdp").ok_or("offer reply without sdp")?;
        let (engine_b, lines) = parse_sdp(&to_b).ok_or("cannot parse rtpengine's offer SDP")?;
        // Peer B accepts the requested suite and answers with its own key.
        let (b_keys, b_answer) = match b_suite {
            Some(p) => {
                let theirs = lines
                    .iter()
                    .filter_map(|l| CryptoAttribute::parse(l).ok())
                    .find(|c| c.profile() == p)
                    .ok_or_else(|| format!("rtpengine did not offer {p}"))?;
                let ours = CryptoAttribute::generate(theirs.tag, p).map_err(|e| e.to_string())?;
                (
                    Some(LegKeys {
                        rx: ours.key.clone(),
                        tx: theirs.key.clone(),
                    }),
                    Some(ours),
                )
            }
            None => (None, None),
        };
        let answer = self.request(&[
            ("command", B::S("answer".into())),
            ("call-id", B::S(call_id)),
            ("from-tag", B::S(format!("a{i}"))),
            ("to-tag", B::S(format!("b{i}"))),
            ("sdp", B::S(sdp(b, b_answer.as_ref()))),
            (
                "replace",
                B::L(vec!["origin".into(), "session-connection".into()]),
            ),
        ])?;
        let to_a = lookup(&answer, "sdp").ok_or("answer reply without sdp")?;
        let (engine_a, lines) = parse_sdp(&to_a).ok_or("cannot parse rtpengine's answer SDP")?;
        let a_keys = match (a_offer, a_suite) {
            (Some(mine), Some(p)) => {
                let theirs = lines
                    .iter()
                    .filter_map(|l| CryptoAttribute::parse(l).ok())
                    .find(|c| c.profile() == p)
                    .ok_or("rtpengine's answer to A has no matching crypto")?;
                Some(LegKeys {
                    rx: mine.key,
                    tx: theirs.key,
                })
            }
            _ => None,
        };
        Ok(Leg {
            ports: PairPorts {
                id: PairId(u64::from(i)),
                a_rtp: engine_a,
                b_rtp: engine_b,
            },
            a_keys,
            b_keys,
        })
    }
}

/// CPU time (ns) of the process whose command name is `rtpengine`, from
/// `/proc/PID/stat` (utime + stime of all its threads, 10 ms ticks).
pub(crate) fn process_cpu_ns(name: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            return Some(ticks * 10_000_000);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip_of_what_ng_uses() {
        let m = encode(&[
            ("command", B::S("ping".into())),
            ("replace", B::L(vec!["origin".into()])),
        ]);
        assert_eq!(m, "d7:command4:ping7:replacel6:originee");
        let reply = b"d3:sdp5:v=0\r\n6:result2:ok8:warningsl1:xee";
        assert_eq!(lookup(reply, "result").as_deref(), Some("ok"));
        assert_eq!(lookup(reply, "sdp").as_deref(), Some("v=0\r\n"));
        assert_eq!(lookup(reply, "missing"), None);
    }
}
