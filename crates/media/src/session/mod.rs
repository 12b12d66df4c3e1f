//! Sans-IO media sessions: a pair of legs, what each packet must become,
//! and where it must go.
//!
//! ```text
//!   peer A ──RTP/RTCP──► [leg A local port] ─┐                ┌─► [leg B local port] ──► peer B
//!                                            │  LegPair::      │
//!                                            └─ handle_packet ─┘
//!              STUN? → source check → inbound transform (decrypt) → latch → outbound transform (encrypt)
//! ```
//!
//! **Where packets may come from** (R-MEDIA-1, no RTP bleed). Before a leg
//! has latched, a plain leg accepts packets only from the address its peer
//! signalled in SDP ([`SourceFilter::Signalled`], the default), or — for
//! peers behind NAT, configured per peer — also from the admitted peer's
//! own IP address with any port ([`SourceFilter::PeerAddress`]); never from
//! an unrelated address. Anything else is dropped as
//! [`DropReason::UnsignalledSource`]. An SRTP leg accepts a first packet from
//! anywhere, because only a packet that authenticates under the peer's key
//! can latch it. After latching, [`Latching::Strict`] accepts only the
//! latched address; [`Latching::Follow`] (plain legs) re-latches, but only to
//! a source the filter allows.
//!
//! **Dead calls** (no media for [`SessionConfig::timeout`], or
//! [`SessionConfig::hold_timeout`] while a leg is on hold) are reported once
//! by [`LegPair::poll_timeout`]; signaling ends the call.
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
    /// Follow the latest valid source that the leg's [`SourceFilter`]
    /// allows (a peer whose NAT binding changes port). Only honoured for
    /// plain legs; SRTP legs stay strict.
    Follow,
    /// Never latch: send to the signalled address, accept packets from any
    /// source the [`SourceFilter`] allows. Only honoured for plain legs.
    Off,
}

/// Which sources a leg accepts before it has latched (and, with
/// [`Latching::Follow`], re-latches to). Applies to plain legs; an SRTP
/// leg's first packet must authenticate instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SourceFilter {
    /// Only the address signalled in SDP: RTP from the `c=`/`m=` address,
    /// RTCP from the `a=rtcp` address (or RTP port + 1, or the RTP address
    /// with rtcp-mux). Like rtpengine's `strict source` from the first
    /// packet. The default.
    #[default]
    Signalled,
    /// The signalled address, or any port on this IP address: the admitted
    /// peer's own signaling address, for peers behind NAT whose SDP names a
    /// private address.
    PeerAddress(std::net::IpAddr),
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
    /// Sources accepted before latching (plain legs only).
    pub source: SourceFilter,
    /// The peer said it sends media on this leg (`sendrecv` or `sendonly`):
    /// its silence counts towards the media timeout.
    pub peer_sends: bool,
    /// The leg is on hold (a direction other than `sendrecv`, or no media
    /// address): the pair's timeout is [`SessionConfig::hold_timeout`].
    pub on_hold: bool,
}

impl LegSpec {
    /// A plain-RTP leg whose peer said (in SDP) it receives at `remote_rtp`
    /// and sends from there too (`sendrecv`).
    pub fn plain(remote_rtp: Option<SocketAddr>) -> Self {
        Self {
            keys: None,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            latching: Latching::Strict,
            source: SourceFilter::Signalled,
            peer_sends: true,
            on_hold: remote_rtp.is_none(),
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

    /// Sets the sources accepted before latching.
    pub fn with_source(mut self, source: SourceFilter) -> Self {
        self.source = source;
        self
    }

    /// Sets the peer's RTCP address (SDP `a=rtcp`).
    pub fn with_remote_rtcp(mut self, rtcp: Option<SocketAddr>) -> Self {
        self.remote_rtcp = rtcp;
        self
    }

    /// Sets what the peer's SDP direction says: whether it sends, and
    /// whether the leg is on hold.
    pub fn with_direction(mut self, peer_sends: bool, on_hold: bool) -> Self {
        self.peer_sends = peer_sends;
        self.on_hold = on_hold;
        self
    }

    /// True when `src` may send this leg's RTP (`rtcp` false) or RTCP before
    /// it has latched.
    fn allows(&self, src: SocketAddr, rtcp: bool) -> bool {
        let signalled = if rtcp {
            self.rtcp_addr()
        } else {
            self.remote_rtp
        };
        if signalled == Some(src) {
            return true;
        }
        match self.source {
            SourceFilter::Signalled => false,
            SourceFilter::PeerAddress(ip) => src.ip() == ip,
        }
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
    /// Before the leg latched, from an address the peer did not signal (a
    /// stranger: RTP bleed / hijack attempt, or a peer behind NAT whose
    /// configuration lacks `media_source = "peer-address"`).
    UnsignalledSource,
    /// A STUN message (RFC 5389 magic cookie), e.g. an ICE connectivity
    /// check from a WebRTC-capable phone; not answered, counted apart.
    Stun,
}

impl DropReason {
    /// Number of reasons (size of the counter array).
    pub const COUNT: usize = 12;
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
        Self::UnsignalledSource,
        Self::Stun,
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
            Self::UnsignalledSource => "unsignalled_source",
            Self::Stun => "stun",
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

/// Reported once when a call's media is dead: a leg whose peer should be
/// sending has sent nothing valid (RTP or RTCP) for the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutEvent {
    /// The silent leg.
    pub side: Side,
    /// For how long.
    pub idle_for: Duration,
    /// The pair was on hold (the hold timeout applied).
    pub on_hold: bool,
}

/// Tunables shared by the legs of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// SRTP context settings (replay window, SSRCs per context, restart
    /// memory).
    pub srtp: SrtpConfig,
    /// Authenticated packets after a key-keeping re-INVITE during which a
    /// peer may restart its SRTP stream (R-MEDIA-6,
    /// [`SrtpContext::allow_restart`]). Default 500 (10 s of 20 ms audio).
    pub restart_packets: u32,
    /// Time after a key-keeping re-INVITE during which a restart is allowed
    /// (whichever of this and [`Self::restart_packets`] ends first).
    /// Default 30 s.
    pub restart_time: Duration,
    /// Silence after which a call's media is reported dead
    /// ([`LegPair::poll_timeout`]). Default 60 s, like rtpengine's
    /// `timeout`.
    pub timeout: Duration,
    /// The same while a leg is on hold (`sendonly`, `recvonly`, `inactive`,
    /// or no media address). Default one hour, like rtpengine's
    /// `silent-timeout`.
    pub hold_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            srtp: SrtpConfig::default(),
            restart_packets: 500,
            restart_time: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(3600),
        }
    }
}

/// Renumbering of one SSRC we encrypt towards an SRTP leg (see
/// [`LegPair::handle_packet`]).
#[derive(Debug, Clone, Copy, Default)]
struct Renumber {
    ssrc: u32,
    /// Added to the sender's sequence numbers.
    offset: u16,
    /// Highest sequence number sent (after the offset).
    last_out: u16,
    used: u64,
    valid: bool,
}

/// SSRCs whose renumbering a leg remembers.
const RENUMBERED: usize = 4;

#[derive(Debug)]
struct Leg {
    spec: Option<LegSpec>,
    rx: Option<SrtpContext>,
    tx: Option<SrtpContext>,
    latched_rtp: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    stats: LegStats,
    /// Last valid packet from the peer, or when the leg was set.
    last_rx: Option<Instant>,
    /// When the restart window of the rx context closes.
    restart_until: Option<Instant>,
    renumber: [Renumber; RENUMBERED],
    renumber_tick: u64,
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
            restart_until: None,
            renumber: [Renumber::default(); RENUMBERED],
            renumber_tick: 0,
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

    /// The index of the renumbering slot of `ssrc` (the least recently used one is reset for
    /// a new SSRC).
    #[inline]
    fn renumber_slot(&mut self, ssrc: u32, seq: u16) -> usize {
        self.renumber_tick += 1;
        let tick = self.renumber_tick;
        let i = match self.renumber.iter().position(|r| r.valid && r.ssrc == ssrc) {
            Some(i) => i,
            None => {
                let (i, _) = self
                    .renumber
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| (r.valid, r.used))
                    .unwrap_or((0, &self.renumber[0]));
                self.renumber[i] = Renumber {
                    ssrc,
                    offset: 0,
                    last_out: seq.wrapping_sub(1),
                    used: tick,
                    valid: true,
                };
                i
            }
        };
        self.renumber[i].used = tick;
        i
    }
}

/// True for a STUN message (RFC 5389 §6): the two top bits zero and the
/// magic cookie at octets 4–7. RTP and RTCP have version 2 in those bits.
fn is_stun(pkt: &[u8]) -> bool {
    pkt.len() >= 20 && pkt[0] & 0xc0 == 0 && pkt[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// The media of one call: two legs and the transforms between them.
#[derive(Debug)]
pub struct LegPair {
    legs: [Leg; 2],
    config: SessionConfig,
    /// The media timeout was reported (once).
    timed_out: bool,
}

impl LegPair {
    /// A pair whose legs are not set yet: packets are dropped as
    /// [`DropReason::NotReady`] until [`LegPair::set_leg`] is called for
    /// both sides.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            legs: [Leg::new(), Leg::new()],
            config,
            timed_out: false,
        }
    }

    /// Sets up or updates one leg (initial answer, or re-INVITE).
    ///
    /// SRTP state follows R-MEDIA-6: a key that is unchanged keeps its
    /// context (ROC, replay window, per-SSRC state) and the peer may restart
    /// its stream for a while ([`SessionConfig::restart_packets`] packets and
    /// [`SessionConfig::restart_time`], see [`SrtpContext::allow_restart`]);
    /// a new key starts fresh state. A changed remote address unlatches the
    /// leg so it latches anew.
    pub fn set_leg(&mut self, now: Instant, side: Side, spec: LegSpec) {
        let cfg = self.config.clone();
        let leg = &mut self.legs[side.index()];
        let old = leg.spec.take();
        let old_keys = old.as_ref().and_then(|s| s.keys.as_ref());
        match &spec.keys {
            None => {
                leg.rx = None;
                leg.tx = None;
                leg.restart_until = None;
            }
            Some(k) => {
                let same_rx = old_keys.is_some_and(|o| o.rx == k.rx) && leg.rx.is_some();
                if same_rx {
                    if let Some(rx) = leg.rx.as_mut() {
                        rx.allow_restart(cfg.restart_packets);
                        leg.restart_until = Some(now + cfg.restart_time);
                    }
                } else {
                    leg.rx = Some(SrtpContext::new(&k.rx, cfg.srtp.clone()));
                    leg.restart_until = None;
                }
                let same_tx = old_keys.is_some_and(|o| o.tx == k.tx) && leg.tx.is_some();
                if !same_tx {
                    leg.tx = Some(SrtpContext::new(&k.tx, cfg.srtp.clone()));
                    leg.renumber = [Renumber::default(); RENUMBERED];
                }
            }
        }
        let moved = old
            .as_ref()
            .is_none_or(|o| o.remote_rtp != spec.remote_rtp || o.rtcp_addr() != spec.rtcp_addr());
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
        self.timed_out = false;
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
    ///
    /// RTP encrypted towards an SRTP leg keeps a continuous sequence per
    /// SSRC: when the sender restarts its sequence numbers under the same
    /// SSRC (a plain phone after hold, or an SRTP peer whose restart was
    /// accepted), the outgoing numbers are shifted to go on from the last
    /// one sent, since re-using them would re-use keystream and the
    /// receiving phone would drop them as replays.
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
        if len > buf.len() {
            return inb.drop(DropReason::Malformed);
        }
        if is_stun(&buf[..len]) {
            return inb.drop(DropReason::Stun);
        }
        let rtcp = match kind {
            PacketKind::Rtcp => true,
            PacketKind::Rtp => in_mux && is_rtcp(&buf[..len]),
        };

        // 1. Source check: the latched address, or before latching the
        //    addresses the peer signalled (plain legs).
        let latched = if rtcp {
            inb.latched_rtcp
        } else {
            inb.latched_rtp
        };
        let policy = inb.strict();
        let srtp_in = inb.rx.is_some();
        let allowed = srtp_in || inb.spec.as_ref().is_some_and(|s| s.allows(src, rtcp));
        match latched {
            Some(l) if l == src => {}
            Some(_) if policy == Latching::Strict => {
                return inb.drop(DropReason::WrongSource);
            }
            Some(_) if !allowed => return inb.drop(DropReason::WrongSource),
            None if !allowed => return inb.drop(DropReason::UnsignalledSource),
            _ => {}
        }

        // 2. Inbound transform: authenticate and decrypt.
        if let Some(until) = inb.restart_until
            && now >= until
        {
            if let Some(rx) = inb.rx.as_mut() {
                rx.allow_restart(0);
            }
            inb.restart_until = None;
        }
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
        let m = if rtcp {
            match out.tx.as_mut() {
                Some(ctx) => ctx.protect_rtcp(buf, n),
                None => Ok(n),
            }
        } else if out.tx.is_some() {
            protect_renumbered(out, buf, n)
        } else {
            Ok(n)
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

    /// Reports, once, that the call's media is dead: both legs are set and
    /// a leg whose peer should be sending (its SDP says `sendrecv` or
    /// `sendonly`) has sent nothing valid for [`SessionConfig::timeout`] —
    /// or for [`SessionConfig::hold_timeout`] while either leg is on hold.
    /// When no peer should be sending (both `inactive`), the hold timeout
    /// applies to the pair's last packet. Packets that fail authentication,
    /// come from strangers or are malformed never count as activity, and
    /// never end a call by themselves either. The pair keeps relaying until
    /// signaling releases it.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<TimeoutEvent> {
        if self.timed_out {
            return None;
        }
        let (Some(a), Some(b)) = (&self.legs[0].spec, &self.legs[1].spec) else {
            return None;
        };
        let on_hold = a.on_hold || b.on_hold;
        let limit = if on_hold {
            self.config.hold_timeout
        } else {
            self.config.timeout
        };
        let idle = |leg: &Leg| {
            leg.last_rx
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
        };
        let mut worst: Option<(Side, Duration)> = None;
        let mut anyone_sends = false;
        for side in [Side::A, Side::B] {
            let leg = &self.legs[side.index()];
            if !leg.spec.as_ref().is_some_and(|s| s.peer_sends) {
                continue;
            }
            anyone_sends = true;
            let d = idle(leg);
            if d >= limit && worst.is_none_or(|(_, w)| d > w) {
                worst = Some((side, d));
            }
        }
        if !anyone_sends {
            // Both inactive: the whole pair's silence counts.
            let (da, db) = (idle(&self.legs[0]), idle(&self.legs[1]));
            let (side, d) = if da <= db {
                (Side::A, da)
            } else {
                (Side::B, db)
            };
            if d >= self.config.hold_timeout {
                worst = Some((side, d));
            }
        }
        let (side, idle_for) = worst?;
        self.timed_out = true;
        Some(TimeoutEvent {
            side,
            idle_for,
            on_hold,
        })
    }
}

/// Encrypts the RTP packet `buf[..n]` for `out`, keeping its sequence
/// continuous per SSRC (see [`LegPair::handle_packet`]).
fn protect_renumbered(out: &mut Leg, buf: &mut [u8], n: usize) -> Result<usize, SrtpError> {
    if n < 12 {
        return Err(SrtpError::Malformed(crate::error::Malformed::TooShort));
    }
    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let seq_in = u16::from_be_bytes([buf[2], buf[3]]);
    let k = out.renumber_slot(ssrc, seq_in);
    let r = out.renumber[k];
    let mut seq_out = seq_in.wrapping_add(r.offset);
    if r.offset != 0 {
        buf[2..4].copy_from_slice(&seq_out.to_be_bytes());
    }
    let Some(ctx) = out.tx.as_mut() else {
        return Ok(n);
    };
    let res = match ctx.protect_rtp(buf, n) {
        Err(SrtpError::Replayed) => {
            // The sender went back (restart, or a duplicate): go on from the last number sent
            // instead of re-using keystream.
            seq_out = r.last_out.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq_out.to_be_bytes());
            let res = ctx.protect_rtp(buf, n);
            if res.is_ok() {
                out.renumber[k].offset = seq_out.wrapping_sub(seq_in);
            }
            res
        }
        other => other,
    };
    let slot = &mut out.renumber[k];
    if res.is_ok() && seq_out.wrapping_sub(slot.last_out) < 0x8000 {
        slot.last_out = seq_out;
    }
    res
}

#[cfg(test)]
mod tests;
