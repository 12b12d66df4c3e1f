//! Sans-IO media sessions: a pair of legs, what each packet must become,
//! and where it must go.
//!
//! ```text
//!   peer A ──RTP/RTCP──► [leg A local port] ─┐                ┌─► [leg B local port] ──► peer B
//!                                            │  LegPair::      │
//!                                            └─ handle_packet ─┘
//!                      source check → inbound transform (decrypt) → latch → outbound transform (encrypt)
//! ```
//!
//! A [`LegPair`] is the media of one call: leg A faces the caller, leg B the
//! callee. Each leg has its own crypto (none, or SRTP with the peer's key for
//! what it sends us and our own key for what we send it; R-MEDIA-2), its
//! latched remote addresses, and its counters. The transform of each
//! direction ([`Transform`]) is decided when a leg is set, not per packet.
//!
//! Nothing here does I/O or reads the clock: the relay driver passes the
//! receive buffer, the source address and `now`, and gets an [`Action`]
//! back (send these bytes to that address from the other leg's socket, or
//! drop and count).

mod rtcp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use rtcp::ReportBlock;

use crate::error::SrtpError;
use crate::rtp::{RtpHeader, is_rtcp};
use crate::srtp::{MasterKey, SrtpConfig, SrtpContext};

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The leg facing the caller (inbound call leg).
    A,
    /// The leg facing the callee (outbound call leg).
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// Which local socket of a leg a packet arrived on (or leaves from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// The RTP port (also RTCP when rtcp-mux is negotiated).
    Rtp,
    /// The RTCP port (RTP port + 1).
    Rtcp,
}

/// SRTP keys of one leg: `rx` is the key the peer encrypts with (from its
/// `a=crypto`), `tx` is our own key for what we send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegKeys {
    /// The peer's key: decrypts what the peer sends.
    pub rx: MasterKey,
    /// Our key: encrypts what we send to the peer.
    pub tx: MasterKey,
}

/// How a leg learns its peer's address (symmetric RTP, R-MEDIA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Latching {
    /// Latch onto the first valid packet's source, then drop packets from
    /// any other source (RTP bleed / inject protection). The default, and
    /// the only behaviour of SRTP legs, where "valid" means authenticated.
    #[default]
    Strict,
    /// Follow the latest valid source (peers whose NAT binding changes).
    /// Only honoured for plain legs; SRTP legs stay strict.
    Follow,
    /// Never latch: send to the signalled address, accept any source.
    /// Only honoured for plain legs.
    Off,
}

/// What signaling tells the relay about one leg (initial answer or
/// re-INVITE).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegSpec {
    /// SRTP keys, or `None` for plain RTP.
    pub keys: Option<LegKeys>,
    /// The peer's RTP address from its SDP, used until a packet latches.
    pub remote_rtp: Option<SocketAddr>,
    /// The peer's RTCP address (default: RTP port + 1, or the RTP address
    /// with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// RTP and RTCP share the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Latching policy (plain legs only; SRTP legs are always strict).
    pub latching: Latching,
}

impl LegSpec {
    /// A plain-RTP leg whose peer said (in SDP) it receives at `remote_rtp`.
    pub fn plain(remote_rtp: Option<SocketAddr>) -> Self {
        Self {
            keys: None,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            latching: Latching::Strict,
        }
    }

    /// An SRTP leg.
    pub fn srtp(remote_rtp: Option<SocketAddr>, keys: LegKeys) -> Self {
        Self {
            keys: Some(keys),
            ..Self::plain(remote_rtp)
        }
    }

    /// Sets rtcp-mux.
    pub fn with_rtcp_mux(mut self, mux: bool) -> Self {
        self.rtcp_mux = mux;
        self
    }

    /// Sets the latching policy.
    pub fn with_latching(mut self, latching: Latching) -> Self {
        self.latching = latching;
        self
    }

    fn rtcp_addr(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.remote_rtp;
        }
        self.remote_rtcp.or_else(|| {
            self.remote_rtp.map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }
}

/// The per-packet work of one direction, chosen when the legs are set up
/// (the Rust form of rtpengine's `__sh_matrix[in][out]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Plain in, plain out.
    Forward,
    /// SRTP in, plain out.
    Decrypt,
    /// Plain in, SRTP out.
    Encrypt,
    /// SRTP in, SRTP out (different keys per leg).
    Recrypt,
}

/// Why a packet was dropped. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The leg is not set up yet (no answer from signaling).
    NotReady,
    /// Not a valid RTP/RTCP packet.
    Malformed,
    /// From a source other than the latched peer (RTP bleed / inject).
    WrongSource,
    /// SRTP authentication failed.
    SrtpAuth,
    /// SRTP replay or too old.
    SrtpReplay,
    /// SRTCP authentication failed (counted apart: never ends a call).
    SrtcpAuth,
    /// SRTCP replay.
    SrtcpReplay,
    /// Other SRTP failure (unknown MKI, key lifetime, buffer room).
    SrtpOther,
    /// The other leg has no address to send to yet.
    NoDestination,
    /// The kernel refused the send (counted by the relay driver).
    SendFailed,
}

impl DropReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = 10;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::NotReady,
        Self::Malformed,
        Self::WrongSource,
        Self::SrtpAuth,
        Self::SrtpReplay,
        Self::SrtcpAuth,
        Self::SrtcpReplay,
        Self::SrtpOther,
        Self::NoDestination,
        Self::SendFailed,
    ];

    /// Stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReady => "not_ready",
            Self::Malformed => "malformed",
            Self::WrongSource => "wrong_source",
            Self::SrtpAuth => "srtp_auth",
            Self::SrtpReplay => "srtp_replay",
            Self::SrtcpAuth => "srtcp_auth",
            Self::SrtcpReplay => "srtcp_replay",
            Self::SrtpOther => "srtp_other",
            Self::NoDestination => "no_destination",
            Self::SendFailed => "send_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_srtp(e: SrtpError, rtcp: bool) -> Self {
        match (e, rtcp) {
            (SrtpError::Malformed(_), _) => Self::Malformed,
            (SrtpError::AuthenticationFailed, false) => Self::SrtpAuth,
            (SrtpError::AuthenticationFailed, true) => Self::SrtcpAuth,
            (SrtpError::Replayed, false) => Self::SrtpReplay,
            (SrtpError::Replayed, true) => Self::SrtcpReplay,
            _ => Self::SrtpOther,
        }
    }
}

/// Counters of one leg. "In" is what the leg's peer sent us, "out" what we
/// sent to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegStats {
    /// RTP packets accepted from the peer.
    pub rtp_in: u64,
    /// RTCP packets accepted from the peer.
    pub rtcp_in: u64,
    /// Octets accepted from the peer (as received).
    pub bytes_in: u64,
    /// RTP packets sent to the peer.
    pub rtp_out: u64,
    /// RTCP packets sent to the peer.
    pub rtcp_out: u64,
    /// Octets sent to the peer.
    pub bytes_out: u64,
    /// Packets received on this leg and dropped, by reason
    /// ([`DropReason::ALL`] order).
    pub drops: [u64; DropReason::COUNT],
    /// How often the peer's SSRC changed.
    pub ssrc_changes: u64,
    /// The peer's current SSRC.
    pub ssrc: Option<u32>,
    /// The latest RTCP report block the peer sent about the stream we send
    /// it: its view of loss and jitter.
    pub peer_report: Option<ReportBlock>,
    /// The address the leg latched onto.
    pub latched: Option<SocketAddr>,
}

impl LegStats {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// What the driver must do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `buf[..len]` to `to` from the `via` socket of the `leg` side.
    Forward {
        /// The side whose socket sends it (the other leg).
        leg: Side,
        /// Which of that leg's sockets.
        via: PacketKind,
        /// Destination.
        to: SocketAddr,
        /// Bytes to send.
        len: usize,
    },
    /// Drop it; already counted.
    Drop(DropReason),
}

/// Reported once when a leg's peer has sent nothing for the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleEvent {
    /// The silent leg.
    pub side: Side,
    /// For how long.
    pub idle_for: Duration,
}

/// Tunables shared by the legs of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// SRTP context settings (replay window, SSRCs per context).
    pub srtp: SrtpConfig,
    /// Authenticated packets after a key-keeping re-INVITE during which a
    /// peer's ROC reset is tolerated (R-MEDIA-6). Default 500 (10 s of
    /// 20 ms audio).
    pub roc_reset_window: u32,
    /// Silence after which [`LegPair::poll_idle`] reports a leg.
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            srtp: SrtpConfig::default(),
            roc_reset_window: 500,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Leg {
    spec: Option<LegSpec>,
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    latched_rtp: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    stats: LegStats,
    /// Last packet accepted from the peer, or when the leg was set.
    last_rx: Option<Instant>,
    idle_reported: bool,
}

impl Leg {
    fn new() -> Self {
        Self {
            spec: None,
            rx: None,
            tx: None,
            latched_rtp: None,
            latched_rtcp: None,
            stats: LegStats::default(),
            last_rx: None,
            idle_reported: false,
        }
    }

    fn strict(&self) -> Latching {
        match &self.spec {
            Some(s) if s.keys.is_some() => Latching::Strict,
            Some(s) => s.latching,
            None => Latching::Strict,
        }
    }

    fn drop(&mut self, reason: DropReason) -> Action {
        self.stats.drops[reason.index()] += 1;
        Action::Drop(reason)
    }
}

/// The media of one call: two legs and the transforms between them.
#[derive(Debug)]
pub struct LegPair {
    legs: [Leg; 2],
    config: SessionConfig,
}

impl LegPair {
    /// A pair whose legs are not set yet: packets are dropped as
    /// [`DropReason::NotReady`] until [`LegPair::set_leg`] is called for
    /// both sides.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            legs: [Leg::new(), Leg::new()],
            config,
        }
    }

    /// Sets up or updates one leg (initial answer, or re-INVITE).
    ///
    /// SRTP state follows R-MEDIA-6: a key that is unchanged keeps its
    /// context (ROC, replay window, per-SSRC state) and a peer's ROC reset is
    /// tolerated for a while; a new key starts fresh state. A changed remote
    /// address unlatches the leg so it latches anew.
    pub fn set_leg(&mut self, now: Instant, side: Side, spec: LegSpec) {
        let cfg = self.config.clone();
        let leg = &mut self.legs[side.index()];
        let old = leg.spec.take();
        let old_keys = old.as_ref().and_then(|s| s.keys.as_ref());
        match &spec.keys {
            None => {
                leg.rx = None;
                leg.tx = None;
            }
            Some(k) => {
                let same_rx = old_keys.is_some_and(|o| o.rx == k.rx) && leg.rx.is_some();
                if same_rx {
                    if let Some(rx) = leg.rx.as_mut() {
                        rx.allow_restart(cfg.roc_reset_window);
                    }
                } else {
                    leg.rx = Some(SrtpContext::new(&k.rx, cfg.srtp.clone()));
                }
                let same_tx = old_keys.is_some_and(|o| o.tx == k.tx) && leg.tx.is_some();
                if !same_tx {
                    leg.tx = Some(SrtpContext::new(&k.tx, cfg.srtp.clone()));
                }
            }
        }
        let moved = old.as_ref().is_none_or(|o| o.remote_rtp != spec.remote_rtp);
        let security_changed = old
            .as_ref()
            .is_none_or(|o| o.keys.is_some() != spec.keys.is_some());
        if moved || security_changed {
            leg.latched_rtp = None;
            leg.latched_rtcp = None;
            leg.stats.latched = None;
        }
        leg.spec = Some(spec);
        leg.last_rx = Some(now);
        leg.idle_reported = false;
    }

    /// The transform applied to packets received on `from` and sent out of
    /// the other leg, or `None` while either leg is not set.
    pub fn transform(&self, from: Side) -> Option<Transform> {
        let i = self.legs[from.index()].spec.as_ref()?;
        let o = self.legs[from.other().index()].spec.as_ref()?;
        Some(match (i.keys.is_some(), o.keys.is_some()) {
            (false, false) => Transform::Forward,
            (true, false) => Transform::Decrypt,
            (false, true) => Transform::Encrypt,
            (true, true) => Transform::Recrypt,
        })
    }

    /// Counters of one leg.
    pub fn stats(&self, side: Side) -> &LegStats {
        &self.legs[side.index()].stats
    }

    /// Counts a packet the driver could not send (kernel refused it) against
    /// the leg it was received on.
    pub fn count_send_failure(&mut self, received_on: Side) {
        let leg = &mut self.legs[received_on.index()];
        leg.stats.drops[DropReason::SendFailed.index()] += 1;
    }

    /// Processes one packet received on `side`'s `kind` socket from `src`,
    /// in `buf[..len]`, transforming it in place.
    ///
    /// `buf` must have room after `len` for the SRTP/SRTCP overhead of the
    /// other leg (64 octets is always enough). The packet's fate is counted
    /// on the receiving leg.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        side: Side,
        kind: PacketKind,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Action {
        let [a, b] = &mut self.legs;
        let (inb, out) = match side {
            Side::A => (a, b),
            Side::B => (b, a),
        };
        let Some(in_mux) = inb.spec.as_ref().map(|s| s.rtcp_mux) else {
            return inb.drop(DropReason::NotReady);
        };
        let rtcp = match kind {
            PacketKind::Rtcp => true,
            PacketKind::Rtp => in_mux && is_rtcp(&buf[..len.min(buf.len())]),
        };
        if len > buf.len() {
            return inb.drop(DropReason::Malformed);
        }

        // 1. Source check against the latched address.
        let latched = if rtcp {
            inb.latched_rtcp
        } else {
            inb.latched_rtp
        };
        let policy = inb.strict();
        if let Some(l) = latched
            && l != src
            && policy == Latching::Strict
        {
            return inb.drop(DropReason::WrongSource);
        }

        // 2. Inbound transform: authenticate and decrypt.
        let n = match (inb.rx.as_mut(), rtcp) {
            (Some(ctx), false) => match ctx.unprotect_rtp(buf, len) {
                Ok(n) => n,
                Err(e) => return inb.drop(DropReason::from_srtp(e, false)),
            },
            (Some(ctx), true) => match ctx.unprotect_rtcp(buf, len) {
                Ok(n) => n,
                Err(e) => return inb.drop(DropReason::from_srtp(e, true)),
            },
            (None, false) => match RtpHeader::parse(&buf[..len]) {
                Ok(_) => len,
                Err(_) => return inb.drop(DropReason::Malformed),
            },
            (None, true) => match crate::rtp::RtcpHeader::parse(&buf[..len]) {
                Ok(_) => len,
                Err(_) => return inb.drop(DropReason::Malformed),
            },
        };

        // 3. Latch (only now: for SRTP legs the packet has authenticated).
        if policy != Latching::Off && latched != Some(src) {
            if rtcp {
                inb.latched_rtcp = Some(src);
            } else {
                inb.latched_rtp = Some(src);
                inb.stats.latched = Some(src);
                if in_mux {
                    inb.latched_rtcp = Some(src);
                }
            }
        }
        inb.last_rx = Some(now);
        inb.idle_reported = false;
        inb.stats.bytes_in += len as u64;
        if rtcp {
            inb.stats.rtcp_in += 1;
            if let Some(rb) = rtcp::last_report_block(&buf[..n]) {
                inb.stats.peer_report = Some(rb);
            }
        } else {
            inb.stats.rtp_in += 1;
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if inb.stats.ssrc != Some(ssrc) {
                if inb.stats.ssrc.is_some() {
                    inb.stats.ssrc_changes += 1;
                }
                inb.stats.ssrc = Some(ssrc);
            }
        }

        // 4. Where it goes: the other leg's latched or signalled address.
        let Some(out_spec) = out.spec.as_ref() else {
            return inb.drop(DropReason::NotReady);
        };
        let (to, via) = if rtcp {
            let to = out.latched_rtcp.or_else(|| out_spec.rtcp_addr());
            (
                to,
                if out_spec.rtcp_mux {
                    PacketKind::Rtp
                } else {
                    PacketKind::Rtcp
                },
            )
        } else {
            (out.latched_rtp.or(out_spec.remote_rtp), PacketKind::Rtp)
        };
        let Some(to) = to else {
            return inb.drop(DropReason::NoDestination);
        };

        // 5. Outbound transform: encrypt with the other leg's own key.
        let m = match (out.tx.as_mut(), rtcp) {
            (Some(ctx), false) => ctx.protect_rtp(buf, n),
            (Some(ctx), true) => ctx.protect_rtcp(buf, n),
            (None, _) => Ok(n),
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => return inb.drop(DropReason::from_srtp(e, rtcp)),
        };
        out.stats.bytes_out += m as u64;
        if rtcp {
            out.stats.rtcp_out += 1;
        } else {
            out.stats.rtp_out += 1;
        }
        Action::Forward {
            leg: side.other(),
            via,
            to,
            len: m,
        }
    }

    /// Reports, once per silence, a leg whose peer has sent nothing for the
    /// idle timeout. The pair is kept: signaling decides what to do
    /// (R-MEDIA: never drop a call silently).
    pub fn poll_idle(&mut self, now: Instant) -> Option<IdleEvent> {
        let timeout = self.config.idle_timeout;
        for side in [Side::A, Side::B] {
            let leg = &mut self.legs[side.index()];
            if leg.spec.is_none() || leg.idle_reported {
                continue;
            }
            if let Some(last) = leg.last_rx {
                let idle = now.saturating_duration_since(last);
                if idle >= timeout {
                    leg.idle_reported = true;
                    return Some(IdleEvent {
                        side,
                        idle_for: idle,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
