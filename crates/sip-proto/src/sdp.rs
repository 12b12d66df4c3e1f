//! SDP (RFC 4566) for a B2BUA: parse and serialize keeping every line it does not
//! understand, in order, and per-leg offer/answer rewriting with SDES keys (RFC 4568).
//!
//! A B2BUA call has two legs. Each leg has its own [`MediaLeg`]: the gateway's media address
//! for that leg, whether the leg is Secured (RTP/SAVP + `a=crypto`) and the SDES keys
//! negotiated on it. An SDP crossing the gateway is rewritten for the leg it leaves on:
//!
//! ```text
//!  leg A peer ──offer──▶ MediaLeg(A)::on_remote_offer   (A's keys, 488 if Secured w/o crypto)
//!                        MediaLeg(B)::local_offer ──offer──▶ leg B peer (our address, every suite)
//!  leg A peer ◀─answer── MediaLeg(A)::local_answer ◀── MediaLeg(B)::on_remote_answer ◀─answer──
//! ```
//!
//! What is rewritten: `o=` and `c=` addresses, `m=` ports and transport protocol
//! (`RTP/AVP` ↔ `RTP/SAVP`, `AVPF` ↔ `SAVPF`), `a=crypto` (stripped, then ours added on Secured
//! legs), `a=rtcp` (dropped: the gateway uses port+1 or rtcp-mux) and ICE attributes (they
//! name the peer's addresses). Everything else — codecs, `a=rtcp-mux`, direction attributes,
//! telephone-event `rtpmap`/`fmtp`, unknown lines — passes through unchanged and in order.
//!
//! Offer/answer rules (RFC 3264, 4568, 8643):
//! - The answer has as many `m=` lines as the offer. Each audio RTP stream with a port is
//!   anchored (its own relay ports, [`MediaLeg::set_local`]); every other stream, and every
//!   stream offered with port 0, is answered with port 0.
//! - A multicast or broadcast connection address is refused ([`SdpError::UnusableAddress`]);
//!   `0.0.0.0` means old-style hold and is never a media target.
//! - A leg without SRTP refuses an `RTP/SAVP(F)` offer ([`SdpError::SrtpNotAllowed`], 488):
//!   the dial plan's mode is the operator's statement, not silently upgraded. An `RTP/AVP`
//!   offer with `a=crypto` (opportunistic SRTP, RFC 8643) is answered plain there, and with the
//!   offer's profile plus a crypto line on a Secured leg.
//! - The answer's crypto line repeats the offered suite name.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use mediagate_media::sdes::{self, CryptoAttribute};
use mediagate_media::srtp::{MasterKey, SrtpProfile};

/// One `<type>=<value>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The type letter (`v`, `o`, `c`, `a`, ...).
    pub kind: char,
    /// Everything after the `=`.
    pub value: String,
}

impl Line {
    fn new(kind: char, value: impl Into<String>) -> Line {
        Line {
            kind,
            value: value.into(),
        }
    }
    /// The attribute name of an `a=` line (`rtpmap` for `a=rtpmap:0 PCMU/8000`).
    pub fn attribute(&self) -> Option<&str> {
        (self.kind == 'a').then(|| self.value.split(':').next().unwrap_or_default())
    }
    /// The value of an `a=name:value` line when its name is `name`.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        if self.kind != 'a' {
            return None;
        }
        let (n, v) = self.value.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v)
    }
}

/// One media description: the `m=` line and the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// Media type (`audio`).
    pub media: String,
    /// Transport port (0 = stream rejected/disabled).
    pub port: u16,
    /// `/<number of ports>` if written.
    pub port_count: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// Formats (payload types).
    pub formats: Vec<String>,
    /// The lines after `m=`, in order.
    pub lines: Vec<Line>,
}

impl MediaSection {
    /// The media-level `c=` address, if any.
    pub fn connection(&self) -> Option<IpAddr> {
        self.lines
            .iter()
            .find(|l| l.kind == 'c')
            .and_then(|l| connection_addr(&l.value))
    }
    /// True when `a=rtcp-mux` is present.
    pub fn rtcp_mux(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.kind == 'a' && l.value.eq_ignore_ascii_case("rtcp-mux"))
    }
    /// The values of the `a=crypto` lines.
    pub fn crypto_lines(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter_map(|l| l.attribute_value("crypto"))
    }
    /// True for a secure RTP profile (`RTP/SAVP`, `RTP/SAVPF`).
    pub fn is_savp(&self) -> bool {
        self.proto.to_ascii_uppercase().contains("SAVP")
    }

    /// True for an RTP profile (`RTP/AVP`, `RTP/SAVP`, `RTP/AVPF`, `RTP/SAVPF`).
    pub fn is_rtp(&self) -> bool {
        self.proto.to_ascii_uppercase().starts_with("RTP/")
    }

    /// The media-level direction attribute, if any.
    pub fn direction_attribute(&self) -> Option<Direction> {
        direction_in(&self.lines)
    }

    /// The `a=rtcp` port and address (RFC 3605), if present.
    pub fn rtcp_attribute(&self) -> Option<(u16, Option<IpAddr>)> {
        let v = self.lines.iter().find_map(|l| l.attribute_value("rtcp"))?;
        let mut f = v.split_ascii_whitespace();
        let port = f.next()?.parse().ok()?;
        let addr = match (f.next(), f.next(), f.next()) {
            (Some(_net), Some(_kind), Some(a)) => a.parse().ok(),
            _ => None,
        };
        Some((port, addr))
    }
}

/// The direction of a media stream (RFC 4566 §6, RFC 3264 §5.1), as its sender means it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    #[default]
    SendRecv,
    /// `a=sendonly`: the author sends and does not receive (hold).
    SendOnly,
    /// `a=recvonly`: the author receives only.
    RecvOnly,
    /// `a=inactive`: neither.
    Inactive,
}

impl Direction {
    /// The direction an answer gives to an offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// True when the author of the SDP sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True when the author of the SDP receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name (`sendrecv`, ...).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(name: &str) -> Option<Direction> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

fn direction_in(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .filter(|l| l.kind == 'a')
        .find_map(|l| Direction::parse(l.value.trim()))
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Session-level lines (before the first `m=`), in order.
    pub session: Vec<Line>,
    /// Media descriptions, in order.
    pub media: Vec<MediaSection>,
}

/// Why an SDP could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not UTF-8 or a line without `x=` (the peer's fault).
    #[error("malformed SDP line {0}")]
    Malformed(usize),
    /// No `v=` line first.
    #[error("SDP does not start with v=")]
    NoVersion,
    /// An `m=` line that does not parse.
    #[error("malformed m= line")]
    BadMediaLine,
    /// A Secured leg offered or answered no acceptable `a=crypto` line (R-MODE-3: 488).
    #[error("no acceptable a=crypto line on a Secured leg")]
    NoAcceptableCrypto,
    /// The system random generator failed while making keys.
    #[error("random generator failed")]
    Random,
    /// The answer has a different number of media sections than our offer.
    #[error("answer does not match the offer's media sections")]
    AnswerMismatch,
    /// A media stream's connection address is multicast or broadcast: the gateway relays
    /// unicast only (488).
    #[error("media address {0} is not unicast")]
    UnusableAddress(IpAddr),
    /// `RTP/SAVP` offered on a leg whose dial plan does not use SRTP (488).
    #[error("RTP/SAVP offered, but this dial plan does not use SRTP")]
    SrtpNotAllowed,
}

/// True for an address media may be sent to: unicast and not unspecified.
fn usable_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_multicast() && !v6.is_unspecified(),
    }
}

fn connection_addr(value: &str) -> Option<IpAddr> {
    // c=IN IP4 192.0.2.1[/ttl]
    let mut f = value.split_ascii_whitespace();
    let _net = f.next()?;
    let _kind = f.next()?;
    let addr = f.next()?.split('/').next()?;
    addr.parse().ok()
}

impl Sdp {
    /// Parses a body. Lines may end in CRLF or LF; blank lines are skipped.
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed(0))?;
        let mut session = Vec::new();
        let mut media: Vec<MediaSection> = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() {
                continue;
            }
            let mut chars = raw.chars();
            let kind = chars.next().ok_or(SdpError::Malformed(n + 1))?;
            if chars.next() != Some('=') || !kind.is_ascii_alphabetic() {
                return Err(SdpError::Malformed(n + 1));
            }
            let value = &raw[2..];
            if session.is_empty() && media.is_empty() && kind != 'v' {
                return Err(SdpError::NoVersion);
            }
            if kind == 'm' {
                media.push(parse_m(value)?);
            } else if let Some(m) = media.last_mut() {
                m.lines.push(Line::new(kind, value));
            } else {
                session.push(Line::new(kind, value));
            }
        }
        if session.is_empty() {
            return Err(SdpError::NoVersion);
        }
        Ok(Sdp { session, media })
    }

    /// Serializes with CRLF line ends.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The session-level `c=` address.
    pub fn session_connection(&self) -> Option<IpAddr> {
        self.session
            .iter()
            .find(|l| l.kind == 'c')
            .and_then(|l| connection_addr(&l.value))
    }

    /// The RTP address of media section `i`: its `c=` (or the session's) and port; `None` when
    /// the port is 0 or the address is not a unicast target (hold with `c=0.0.0.0`, multicast,
    /// broadcast).
    pub fn rtp_address(&self, i: usize) -> Option<SocketAddr> {
        let m = self.media.get(i)?;
        let ip = m.connection().or_else(|| self.session_connection())?;
        (m.port != 0 && usable_target(ip)).then_some(SocketAddr::new(ip, m.port))
    }

    /// Like [`Sdp::rtp_address`], but a multicast or broadcast address is an error (the peer
    /// asks for something the gateway cannot do) rather than "no target".
    pub fn media_target(&self, i: usize) -> Result<Option<SocketAddr>, SdpError> {
        let Some(m) = self.media.get(i) else {
            return Ok(None);
        };
        let Some(ip) = m.connection().or_else(|| self.session_connection()) else {
            return Ok(None);
        };
        if m.port == 0 || ip.is_unspecified() {
            return Ok(None);
        }
        if !usable_target(ip) {
            return Err(SdpError::UnusableAddress(ip));
        }
        Ok(Some(SocketAddr::new(ip, m.port)))
    }

    /// The RTCP address of media section `i`: `a=rtcp` (RFC 3605) when present, else `None`
    /// (RTP port + 1, or the RTP address with rtcp-mux).
    pub fn rtcp_address(&self, i: usize) -> Option<SocketAddr> {
        let rtp = self.rtp_address(i)?;
        let (port, ip) = self.media.get(i)?.rtcp_attribute()?;
        let ip = ip.unwrap_or(rtp.ip());
        (port != 0 && usable_target(ip)).then_some(SocketAddr::new(ip, port))
    }

    /// The direction of media section `i`: its own attribute, else the session's, else
    /// `sendrecv`.
    pub fn direction(&self, i: usize) -> Direction {
        self.media
            .get(i)
            .and_then(MediaSection::direction_attribute)
            .or_else(|| direction_in(&self.session))
            .unwrap_or_default()
    }

    /// True when media section `i` is an audio RTP stream with a port: one the gateway
    /// anchors. Other streams are answered with port 0.
    pub fn is_anchorable(&self, i: usize) -> bool {
        self.media
            .get(i)
            .is_some_and(|m| m.media.eq_ignore_ascii_case("audio") && m.is_rtp() && m.port != 0)
    }
}

fn parse_m(value: &str) -> Result<MediaSection, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let media = f.next().ok_or(SdpError::BadMediaLine)?.to_owned();
    let ports = f.next().ok_or(SdpError::BadMediaLine)?;
    let (port, port_count) = match ports.split_once('/') {
        Some((p, c)) => (p, Some(c.parse().map_err(|_| SdpError::BadMediaLine)?)),
        None => (ports, None),
    };
    let port = port.parse().map_err(|_| SdpError::BadMediaLine)?;
    let proto = f.next().ok_or(SdpError::BadMediaLine)?.to_owned();
    Ok(MediaSection {
        media,
        port,
        port_count,
        proto,
        formats: f.map(str::to_owned).collect(),
        lines: Vec::new(),
    })
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.session {
            write!(f, "{}={}\r\n", l.kind, l.value)?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(c) = m.port_count {
                write!(f, "/{c}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt_ in &m.formats {
                write!(f, " {fmt_}")?;
            }
            f.write_str("\r\n")?;
            for l in &m.lines {
                write!(f, "{}={}\r\n", l.kind, l.value)?;
            }
        }
        Ok(())
    }
}

/// What a leg negotiated for one media section; what the media anchor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamParams {
    /// The stream is anchored (an audio RTP stream with a port); `false` for streams answered
    /// with port 0.
    pub anchored: bool,
    /// The peer's RTP address (`None` on hold with 0.0.0.0 or a rejected stream).
    pub remote_rtp: Option<SocketAddr>,
    /// The peer's RTCP address from `a=rtcp`, if it gave one.
    pub remote_rtcp: Option<SocketAddr>,
    /// The direction the peer's SDP gives the stream (from the peer's point of view).
    pub direction: Direction,
    /// The peer uses `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// SRTP keys on a Secured leg: `(rx, tx)`, rx = the key the peer encrypts with (its
    /// `a=crypto`), tx = our key for sending to it. `None` = plain RTP.
    pub keys: Option<(MasterKey, MasterKey)>,
    /// On an offer: the peer's key differs from the one in effect (first offer, or re-key in a
    /// re-INVITE). The other leg then gets fresh keys too (R-MEDIA-6).
    pub key_changed: bool,
}

#[derive(Debug, Clone, Default)]
struct StreamKeys {
    /// What we offered on this leg (a line per suite).
    offered: Vec<CryptoAttribute>,
    /// Our key in effect (we encrypt towards the peer with it).
    local: Option<CryptoAttribute>,
    /// The peer's `a=crypto` value in effect, as written (change detection).
    remote_line: Option<String>,
    /// The peer's key in effect.
    remote: Option<CryptoAttribute>,
    /// The peer offered SRTP under `RTP/AVP` (RFC 8643): answer with its profile.
    osrtp: bool,
}

/// SDP state of one leg of a call. See the module documentation.
#[derive(Debug, Clone)]
pub struct MediaLeg {
    ip: IpAddr,
    /// Our RTP port per media section; `None`: not anchored (answered with port 0).
    ports: Vec<Option<u16>>,
    secure: bool,
    streams: Vec<StreamKeys>,
}

const ICE_ATTRIBUTES: [&str; 6] = [
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "end-of-candidates",
    "remote-candidates",
];

impl MediaLeg {
    /// A leg whose media the gateway anchors at `local`; `secure` for a Secured dial plan
    /// (RTP/SAVP with SDES), otherwise plain RTP/AVP and never any `a=crypto`.
    /// `local` is the first stream's address; more streams get theirs from
    /// [`MediaLeg::set_local`].
    pub fn new(local: SocketAddr, secure: bool) -> MediaLeg {
        MediaLeg {
            ip: local.ip(),
            ports: vec![Some(local.port())],
            secure,
            streams: Vec::new(),
        }
    }

    /// The gateway's media address of the first stream on this leg.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.ports.first().copied().flatten().unwrap_or(0))
    }

    /// Our media address of stream `i` (`None`: not anchored).
    pub fn local_of(&self, i: usize) -> Option<SocketAddr> {
        self.ports
            .get(i)
            .copied()
            .flatten()
            .map(|p| SocketAddr::new(self.ip, p))
    }

    /// Sets our media address of stream `i` (`None`: answered with port 0).
    pub fn set_local(&mut self, i: usize, local: Option<SocketAddr>) {
        if self.ports.len() <= i {
            self.ports.resize(i + 1, None);
        }
        self.ports[i] = local.map(|a| a.port());
        if let Some(a) = local {
            self.ip = a.ip();
        }
    }

    /// True for a Secured leg.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    fn stream(&mut self, i: usize) -> &mut StreamKeys {
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, StreamKeys::default);
        }
        &mut self.streams[i]
    }

    /// The peer on this leg sent an offer (initial INVITE, re-INVITE or UPDATE). On a Secured
    /// leg each active stream must carry an acceptable `a=crypto` line
    /// ([`SdpError::NoAcceptableCrypto`] → answer 488); our answer key is kept when the peer's
    /// line is unchanged and regenerated when it changed (R-MEDIA-6).
    pub fn on_remote_offer(&mut self, offer: &Sdp) -> Result<Vec<StreamParams>, SdpError> {
        let secure = self.secure;
        let mut out = Vec::with_capacity(offer.media.len());
        for (i, m) in offer.media.iter().enumerate() {
            let mut p = stream_params(offer, i)?;
            if !p.anchored {
                out.push(p);
                continue;
            }
            if !secure {
                if m.is_savp() {
                    return Err(SdpError::SrtpNotAllowed);
                }
                // RTP/AVP with a=crypto (RFC 8643) is answered plain here.
                self.stream(i).osrtp = false;
                out.push(p);
                continue;
            }
            let chosen = sdes::select(m.crypto_lines(), &SrtpProfile::ALL)
                .ok_or(SdpError::NoAcceptableCrypto)?;
            // The exact line of the chosen tag, for change detection.
            let line = m
                .crypto_lines()
                .find(|l| CryptoAttribute::parse(l).is_ok_and(|c| c == chosen))
                .map(str::to_owned);
            let s = self.stream(i);
            s.osrtp = !m.is_savp();
            let changed = s.remote_line != line || s.local.is_none();
            if changed {
                s.local = Some(sdes::answer(&chosen).map_err(|_| SdpError::Random)?);
                s.remote_line = line;
                s.remote = Some(chosen);
            }
            p.keys = keys_of(s);
            p.key_changed = changed;
            out.push(p);
        }
        Ok(out)
    }

    /// Our offer on this leg, made from the other leg's offer `template`. On a Secured leg
    /// every suite in [`SrtpProfile::ALL`] is offered, with the keys of the previous offer
    /// unless `renew_keys` (the other leg's peer changed its key, or this is the first offer).
    pub fn local_offer(&mut self, template: &Sdp, renew_keys: bool) -> Result<Sdp, SdpError> {
        let mut sdp = self.rewrite(template);
        for (i, m) in sdp.media.iter_mut().enumerate() {
            if !self.secure || m.port == 0 || !m.is_rtp() {
                continue;
            }
            let s = self.stream(i);
            if renew_keys || s.offered.is_empty() {
                s.offered = sdes::offer(&SrtpProfile::ALL).map_err(|_| SdpError::Random)?;
            }
            for c in &s.offered {
                m.lines.push(Line::new('a', format!("crypto:{c}")));
            }
        }
        Ok(sdp)
    }

    /// The peer on this leg answered our [`MediaLeg::local_offer`]. On a Secured leg each
    /// active stream must accept one of our lines (same tag and suite).
    pub fn on_remote_answer(&mut self, answer: &Sdp) -> Result<Vec<StreamParams>, SdpError> {
        let secure = self.secure;
        let mut out = Vec::with_capacity(answer.media.len());
        for (i, m) in answer.media.iter().enumerate() {
            let mut p = stream_params(answer, i)?;
            if !secure || !p.anchored {
                out.push(p);
                continue;
            }
            let s = self.stream(i);
            let (ours, theirs) = sdes::match_answer(&s.offered, m.crypto_lines())
                .map(|(o, t)| (o.clone(), t))
                .ok_or(SdpError::NoAcceptableCrypto)?;
            let changed = s.remote.as_ref() != Some(&theirs) || s.local.as_ref() != Some(&ours);
            s.local = Some(ours);
            s.remote = Some(theirs);
            s.remote_line = None;
            s.osrtp = false;
            p.keys = keys_of(s);
            p.key_changed = changed;
            out.push(p);
        }
        Ok(out)
    }

    /// Our answer on this leg to the offer last passed to [`MediaLeg::on_remote_offer`],
    /// made from the other leg's answer `template`.
    pub fn local_answer(&mut self, template: &Sdp) -> Sdp {
        let mut sdp = self.rewrite(template);
        for (i, m) in sdp.media.iter_mut().enumerate() {
            if !self.secure || m.port == 0 || !m.is_rtp() {
                continue;
            }
            let Some(s) = self.streams.get(i) else {
                continue;
            };
            if s.osrtp {
                // RFC 8643: the answer keeps the offer's RTP/AVP(F) profile.
                m.proto = leg_proto(&m.proto, false);
            }
            if let Some(c) = s.local.as_ref() {
                m.lines.push(Line::new('a', format!("crypto:{c}")));
            }
        }
        sdp
    }

    /// Copy of `template` with our address, ports and profile; crypto and ICE removed.
    fn rewrite(&self, template: &Sdp) -> Sdp {
        let ip = self.ip;
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut sdp = template.clone();
        for l in &mut sdp.session {
            match l.kind {
                'c' => l.value = format!("IN {family} {ip}"),
                'o' => l.value = rewrite_origin(&l.value, family, ip),
                _ => {}
            }
        }
        sdp.session
            .retain(|l| !l.attribute().is_some_and(|a| ICE_ATTRIBUTES.contains(&a)));
        let session_has_c = sdp.session.iter().any(|l| l.kind == 'c');
        for (i, m) in sdp.media.iter_mut().enumerate() {
            if m.port != 0 {
                // Anchored streams get our port; any other stream is refused with port 0.
                let anchorable = m.media.eq_ignore_ascii_case("audio") && m.is_rtp();
                m.port = if anchorable {
                    self.ports.get(i).copied().flatten().unwrap_or(0)
                } else {
                    0
                };
                m.port_count = None;
            }
            m.proto = leg_proto(&m.proto, self.secure);
            m.lines.retain(|l| {
                !l.attribute().is_some_and(|a| {
                    a.eq_ignore_ascii_case("crypto")
                        || a.eq_ignore_ascii_case("rtcp")
                        || ICE_ATTRIBUTES.contains(&a)
                })
            });
            let mut has_c = false;
            for l in &mut m.lines {
                if l.kind == 'c' {
                    // Hold with c=0.0.0.0 keeps meaning hold.
                    let hold = connection_addr(&l.value).is_some_and(|a| a.is_unspecified());
                    if !hold {
                        l.value = format!("IN {family} {ip}");
                    }
                    has_c = true;
                }
            }
            if !has_c && !session_has_c {
                m.lines
                    .insert(0, Line::new('c', format!("IN {family} {ip}")));
            }
        }
        sdp
    }
}

/// The stream facts of media section `i` (keys are filled in by the caller).
fn stream_params(sdp: &Sdp, i: usize) -> Result<StreamParams, SdpError> {
    let anchored = sdp.is_anchorable(i);
    let m = &sdp.media[i];
    Ok(StreamParams {
        anchored,
        remote_rtp: if anchored { sdp.media_target(i)? } else { None },
        remote_rtcp: if anchored { sdp.rtcp_address(i) } else { None },
        direction: sdp.direction(i),
        rtcp_mux: m.rtcp_mux(),
        keys: None,
        key_changed: false,
    })
}

fn keys_of(s: &StreamKeys) -> Option<(MasterKey, MasterKey)> {
    Some((
        s.remote.as_ref()?.key.clone(),
        s.local.as_ref()?.key.clone(),
    ))
}

fn rewrite_origin(value: &str, family: &str, ip: IpAddr) -> String {
    // o=<username> <sess-id> <sess-version> IN IP4 <address>
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    if f.len() >= 6 {
        format!("{} {} {} IN {family} {ip}", f[0], f[1], f[2])
    } else {
        value.to_owned()
    }
}

fn leg_proto(proto: &str, secure: bool) -> String {
    let upper = proto.to_ascii_uppercase();
    if !upper.starts_with("RTP/") {
        return proto.to_owned();
    }
    let feedback = upper.ends_with('F');
    match (secure, feedback) {
        (true, false) => "RTP/SAVP",
        (true, true) => "RTP/SAVPF",
        (false, false) => "RTP/AVP",
        (false, true) => "RTP/AVPF",
    }
    .to_owned()
}

#[cfg(test)]
mod tests;
