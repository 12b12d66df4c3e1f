//! The seam between signaling and the media relay: [`MediaAnchor`]. The B2BUA reserves ports
//! for each call and tells the relay, per leg, where the peer's RTP goes and with which SRTP
//! keys. `mediagate-media`'s relay implements it; [`FakeMedia`] records calls for tests.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use mediagate_media::srtp::MasterKey;

use crate::policy::{MediaLatching, MediaSource};

/// Identifies one call across signaling and media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// A leg of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's leg (the inbound INVITE).
    A,
    /// The callee's leg (our outbound INVITE).
    B,
}

impl Side {
    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `"A"` or `"B"`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }

    /// `"caller"` or `"callee"`, for messages.
    pub fn role(self) -> &'static str {
        match self {
            Side::A => "caller",
            Side::B => "callee",
        }
    }
}

/// Why the media layer could not serve a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The port range is exhausted (the call gets 503).
    #[error("no free media ports")]
    NoPorts,
    /// The call is not known to the relay.
    #[error("unknown call")]
    UnknownCall,
    /// Anything else, described.
    #[error("media: {0}")]
    Other(String),
}

/// What signaling tells the media layer about one stream of one leg (initial answer or
/// re-INVITE): the SDP facts of the peer, its keys, and how its media may arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegMedia {
    /// The peer's RTP address from its SDP (`None`: hold with 0.0.0.0, or no target).
    pub remote_rtp: Option<SocketAddr>,
    /// The peer's RTCP address from `a=rtcp`, if any (else RTP port + 1, or rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// The peer uses rtcp-mux.
    pub rtcp_mux: bool,
    /// SRTP keys (`None` = plain RTP): rx = the key the peer encrypts with (its `a=crypto`),
    /// tx = our key for sending to it.
    pub keys: Option<(MasterKey, MasterKey)>,
    /// Where the peer's plain RTP may come from before latching.
    pub source: MediaSource,
    /// The peer's own signaling IP (for [`MediaSource::PeerAddress`]).
    pub peer_ip: Option<IpAddr>,
    /// Whether a plain leg follows a moving source.
    pub latching: MediaLatching,
    /// The peer's SDP says it sends on this stream (`sendrecv`/`sendonly`).
    pub peer_sends: bool,
    /// The stream is on hold (not `sendrecv`, or no media address).
    pub on_hold: bool,
}

impl LegMedia {
    /// A plain `sendrecv` leg towards `remote_rtp`, with the default source rules.
    pub fn plain(remote_rtp: Option<SocketAddr>) -> LegMedia {
        LegMedia {
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: false,
            keys: None,
            source: MediaSource::Sdp,
            peer_ip: None,
            latching: MediaLatching::Strict,
            peer_sends: true,
            on_hold: remote_rtp.is_none(),
        }
    }
}

/// What the B2BUA needs from the media relay. Implementations must be cheap and must not block
/// (they are called from the signaling loop). A call has one relay pair per anchored media
/// stream (`stream` is the index of its `m=` line).
pub trait MediaAnchor: Send + Sync + 'static {
    /// Reserves media ports for stream `stream` of a call; returns the local RTP socket
    /// address of leg A (caller side) and leg B (callee side).
    fn allocate(
        &self,
        call: CallKey,
        stream: usize,
    ) -> Result<(SocketAddr, SocketAddr), MediaError>;
    /// Sets or updates one leg of one stream (initial answer or re-INVITE).
    fn set_leg(
        &self,
        call: CallKey,
        stream: usize,
        side: Side,
        media: &LegMedia,
    ) -> Result<(), MediaError>;
    /// Frees all of the call's ports. Idempotent.
    fn release(&self, call: CallKey);
    /// The call's media counters, leg A then leg B, summed over its streams, as of the last
    /// second (for the call's end line). `None` when unknown. Must not block.
    fn summary(&self, call: CallKey) -> Option<[LegSummary; 2]> {
        let _ = call;
        None
    }
}

/// One leg's media counters for a call's end line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegSummary {
    /// Packets (RTP and RTCP) accepted from the leg's peer.
    pub packets_in: u64,
    /// Packets sent to the leg's peer.
    pub packets_out: u64,
    /// Packets the peer reported lost (RTCP cumulative loss) of what we sent it.
    pub lost: i64,
}

/// One recorded [`MediaAnchor::set_leg`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// The call.
    pub call: CallKey,
    /// The stream (`m=` line index).
    pub stream: usize,
    /// The leg.
    pub side: Side,
    /// Peer RTP address.
    pub remote_rtp: Option<SocketAddr>,
    /// rtcp-mux.
    pub rtcp_mux: bool,
    /// Keys `(rx, tx)`.
    pub keys: Option<(MasterKey, MasterKey)>,
    /// Everything that was set.
    pub media: LegMedia,
}

#[derive(Debug, Default)]
struct FakeState {
    next_port: u16,
    live: Vec<CallKey>,
    streams: Vec<(CallKey, usize)>,
    legs: Vec<LegRecord>,
    released: Vec<CallKey>,
}

/// An in-memory [`MediaAnchor`] for tests: hands out ports `base, base+2, ...` on `ip` (leg A
/// then leg B per stream) without binding them, and records every call.
#[derive(Debug)]
pub struct FakeMedia {
    ip: IpAddr,
    base: u16,
    max_calls: usize,
    state: Mutex<FakeState>,
}

impl FakeMedia {
    /// Ports from `base` upwards on `ip`; at most `max_calls` live calls.
    pub fn new(ip: IpAddr, base: u16, max_calls: usize) -> FakeMedia {
        FakeMedia {
            ip,
            base,
            max_calls,
            state: Mutex::new(FakeState::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Every `set_leg` so far.
    pub fn legs(&self) -> Vec<LegRecord> {
        self.with(|s| s.legs.clone())
    }

    /// Calls currently allocated.
    pub fn live(&self) -> Vec<CallKey> {
        self.with(|s| s.live.clone())
    }

    /// Streams currently allocated, `(call, stream)`.
    pub fn streams(&self) -> Vec<(CallKey, usize)> {
        self.with(|s| s.streams.clone())
    }

    /// Every released call.
    pub fn released(&self) -> Vec<CallKey> {
        self.with(|s| s.released.clone())
    }
}

impl MediaAnchor for FakeMedia {
    fn allocate(
        &self,
        call: CallKey,
        stream: usize,
    ) -> Result<(SocketAddr, SocketAddr), MediaError> {
        self.with(|s| {
            if !s.live.contains(&call) {
                if s.live.len() >= self.max_calls {
                    return Err(MediaError::NoPorts);
                }
                s.live.push(call);
            }
            let a = self.base.wrapping_add(s.next_port);
            s.next_port = s.next_port.wrapping_add(4) % 20_000;
            s.streams.push((call, stream));
            Ok((
                SocketAddr::new(self.ip, a),
                SocketAddr::new(self.ip, a.wrapping_add(2)),
            ))
        })
    }

    fn set_leg(
        &self,
        call: CallKey,
        stream: usize,
        side: Side,
        media: &LegMedia,
    ) -> Result<(), MediaError> {
        self.with(|s| {
            if !s.streams.contains(&(call, stream)) {
                return Err(MediaError::UnknownCall);
            }
            // Keep the record bounded under load tests.
            if s.legs.len() >= 10_000 {
                s.legs.clear();
            }
            s.legs.push(LegRecord {
                call,
                stream,
                side,
                remote_rtp: media.remote_rtp,
                rtcp_mux: media.rtcp_mux,
                keys: media.keys.clone(),
                media: media.clone(),
            });
            Ok(())
        })
    }

    fn release(&self, call: CallKey) {
        self.with(|s| {
            s.streams.retain(|(c, _)| *c != call);
            if let Some(i) = s.live.iter().position(|c| *c == call) {
                s.live.swap_remove(i);
                if s.released.len() >= 10_000 {
                    s.released.clear();
                }
                s.released.push(call);
            }
        });
    }
}

/// The media relay of `mediagate-media` behind the [`MediaAnchor`] seam: each anchored stream
/// of a call becomes a relay leg pair; `set_leg` turns the SDP facts into a
/// [`mediagate_media::session::LegSpec`].
pub struct RelayAnchor {
    relay: std::sync::Arc<mediagate_media::relay::Relay>,
    pairs: Mutex<Pairs>,
}

#[derive(Default)]
struct Pairs {
    by_call: std::collections::HashMap<CallKey, Vec<(usize, mediagate_media::relay::PairId)>>,
    by_pair: std::collections::HashMap<mediagate_media::relay::PairId, CallKey>,
}

impl RelayAnchor {
    /// Anchors calls on `relay`.
    pub fn new(relay: std::sync::Arc<mediagate_media::relay::Relay>) -> Self {
        Self {
            relay,
            pairs: Mutex::new(Pairs::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pairs> {
        self.pairs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The relay pair of a live call's first stream (for statistics).
    pub fn pair(&self, call: CallKey) -> Option<mediagate_media::relay::PairId> {
        self.pair_of(call, 0)
    }

    /// The relay pair of stream `stream` of a live call.
    pub fn pair_of(&self, call: CallKey, stream: usize) -> Option<mediagate_media::relay::PairId> {
        self.lock()
            .by_call
            .get(&call)?
            .iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, p)| *p)
    }

    /// The call a relay pair belongs to (relay events name pairs).
    pub fn call_of(&self, pair: mediagate_media::relay::PairId) -> Option<CallKey> {
        self.lock().by_pair.get(&pair).copied()
    }

    /// The relay.
    pub fn relay(&self) -> &std::sync::Arc<mediagate_media::relay::Relay> {
        &self.relay
    }
}

impl fmt::Debug for RelayAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayAnchor").finish_non_exhaustive()
    }
}

impl MediaAnchor for RelayAnchor {
    fn allocate(
        &self,
        call: CallKey,
        stream: usize,
    ) -> Result<(SocketAddr, SocketAddr), MediaError> {
        let ports = self.relay.allocate().map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrNotAvailable => MediaError::NoPorts,
            _ => MediaError::Other(e.to_string()),
        })?;
        let mut p = self.lock();
        p.by_call.entry(call).or_default().push((stream, ports.id));
        p.by_pair.insert(ports.id, call);
        Ok((ports.a_rtp, ports.b_rtp))
    }

    fn set_leg(
        &self,
        call: CallKey,
        stream: usize,
        side: Side,
        media: &LegMedia,
    ) -> Result<(), MediaError> {
        use mediagate_media::session::{Latching, LegKeys, LegSpec, SourceFilter};
        let id = self.pair_of(call, stream).ok_or(MediaError::UnknownCall)?;
        let spec = match &media.keys {
            Some((rx, tx)) => LegSpec::srtp(
                media.remote_rtp,
                LegKeys {
                    rx: rx.clone(),
                    tx: tx.clone(),
                },
            ),
            None => LegSpec::plain(media.remote_rtp),
        };
        let source = match (media.source, media.peer_ip) {
            (MediaSource::PeerAddress, Some(ip)) => SourceFilter::PeerAddress(ip),
            _ => SourceFilter::Signalled,
        };
        let latching = match media.latching {
            MediaLatching::Strict => Latching::Strict,
            MediaLatching::Follow => Latching::Follow,
        };
        let spec = spec
            .with_rtcp_mux(media.rtcp_mux)
            .with_remote_rtcp(media.remote_rtcp)
            .with_source(source)
            .with_latching(latching)
            .with_direction(media.peer_sends, media.on_hold);
        let side = match side {
            Side::A => mediagate_media::session::Side::A,
            Side::B => mediagate_media::session::Side::B,
        };
        self.relay
            .set_leg(id, side, spec)
            .map_err(|e| MediaError::Other(e.to_string()))
    }

    fn summary(&self, call: CallKey) -> Option<[LegSummary; 2]> {
        let pairs: Vec<_> = self.lock().by_call.get(&call)?.clone();
        let mut out = [LegSummary::default(); 2];
        for (_, id) in pairs {
            let Some(stats) = self.relay.stats_snapshot(id) else {
                continue;
            };
            for (o, s) in out.iter_mut().zip(stats.iter()) {
                o.packets_in += s.rtp_in + s.rtcp_in;
                o.packets_out += s.rtp_out + s.rtcp_out;
                o.lost += s.peer_report.map_or(0, |r| i64::from(r.cumulative_lost));
            }
        }
        Some(out)
    }

    fn release(&self, call: CallKey) {
        let pairs = {
            let mut p = self.lock();
            let pairs = p.by_call.remove(&call).unwrap_or_default();
            for (_, id) in &pairs {
                p.by_pair.remove(id);
            }
            pairs
        };
        for (_, id) in pairs {
            let _ = self.relay.release(id);
        }
    }
}
