//! The seam between signaling and the media relay: [`MediaAnchor`]. The B2BUA reserves ports
//! for each call and tells the relay, per leg, where the peer's RTP goes and with which SRTP
//! keys. `mediagate-media`'s relay implements it; [`FakeMedia`] records calls for tests.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use mediagate_media::srtp::MasterKey;

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

/// What the B2BUA needs from the media relay. Implementations must be cheap and must not block
/// (they are called from the signaling loop).
pub trait MediaAnchor: Send + Sync + 'static {
    /// Reserves media ports for a new call; returns the local RTP socket address of leg A
    /// (caller side) and leg B (callee side).
    fn allocate(&self, call: CallKey) -> Result<(SocketAddr, SocketAddr), MediaError>;
    /// Sets or updates one leg (initial answer or re-INVITE): the peer's RTP address from its
    /// SDP, rtcp-mux, and SRTP keys (`None` = plain RTP; `Some((rx, tx))`: rx = the key the
    /// peer encrypts with (from its `a=crypto`), tx = our key for sending to it).
    fn set_leg(
        &self,
        call: CallKey,
        side: Side,
        remote_rtp: Option<SocketAddr>,
        rtcp_mux: bool,
        keys: Option<(MasterKey, MasterKey)>,
    ) -> Result<(), MediaError>;
    /// Frees the call's ports. Idempotent.
    fn release(&self, call: CallKey);
}

/// One recorded [`MediaAnchor::set_leg`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// The call.
    pub call: CallKey,
    /// The leg.
    pub side: Side,
    /// Peer RTP address.
    pub remote_rtp: Option<SocketAddr>,
    /// rtcp-mux.
    pub rtcp_mux: bool,
    /// Keys `(rx, tx)`.
    pub keys: Option<(MasterKey, MasterKey)>,
}

#[derive(Debug, Default)]
struct FakeState {
    next_port: u16,
    live: Vec<CallKey>,
    legs: Vec<LegRecord>,
    released: Vec<CallKey>,
}

/// An in-memory [`MediaAnchor`] for tests: hands out ports `base, base+2, ...` on `ip` (leg A
/// then leg B per call) without binding them, and records every call.
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

    /// Every released call.
    pub fn released(&self) -> Vec<CallKey> {
        self.with(|s| s.released.clone())
    }
}

impl MediaAnchor for FakeMedia {
    fn allocate(&self, call: CallKey) -> Result<(SocketAddr, SocketAddr), MediaError> {
        self.with(|s| {
            if s.live.len() >= self.max_calls {
                return Err(MediaError::NoPorts);
            }
            let a = self.base.wrapping_add(s.next_port);
            s.next_port = s.next_port.wrapping_add(4) % 20_000;
            s.live.push(call);
            Ok((
                SocketAddr::new(self.ip, a),
                SocketAddr::new(self.ip, a.wrapping_add(2)),
            ))
        })
    }

    fn set_leg(
        &self,
        call: CallKey,
        side: Side,
        remote_rtp: Option<SocketAddr>,
        rtcp_mux: bool,
        keys: Option<(MasterKey, MasterKey)>,
    ) -> Result<(), MediaError> {
        self.with(|s| {
            if !s.live.contains(&call) {
                return Err(MediaError::UnknownCall);
            }
            // Keep the record bounded under load tests.
            if s.legs.len() >= 10_000 {
                s.legs.clear();
            }
            s.legs.push(LegRecord {
                call,
                side,
                remote_rtp,
                rtcp_mux,
                keys,
            });
            Ok(())
        })
    }

    fn release(&self, call: CallKey) {
        self.with(|s| {
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

/// The media relay of `mediagate-media` behind the [`MediaAnchor`] seam: each call becomes a
/// relay leg pair; `set_leg` turns the SDP facts into a [`mediagate_media::session::LegSpec`].
pub struct RelayAnchor {
    relay: std::sync::Arc<mediagate_media::relay::Relay>,
    pairs: Mutex<std::collections::HashMap<CallKey, mediagate_media::relay::PairId>>,
}

impl RelayAnchor {
    /// Anchors calls on `relay`.
    pub fn new(relay: std::sync::Arc<mediagate_media::relay::Relay>) -> Self {
        Self {
            relay,
            pairs: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The relay pair of a live call (for statistics).
    pub fn pair(&self, call: CallKey) -> Option<mediagate_media::relay::PairId> {
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call)
            .copied()
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
    fn allocate(&self, call: CallKey) -> Result<(SocketAddr, SocketAddr), MediaError> {
        let ports = self.relay.allocate().map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrNotAvailable => MediaError::NoPorts,
            _ => MediaError::Other(e.to_string()),
        })?;
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, ports.id);
        Ok((ports.a_rtp, ports.b_rtp))
    }

    fn set_leg(
        &self,
        call: CallKey,
        side: Side,
        remote_rtp: Option<SocketAddr>,
        rtcp_mux: bool,
        keys: Option<(MasterKey, MasterKey)>,
    ) -> Result<(), MediaError> {
        use mediagate_media::session::{LegKeys, LegSpec};
        let id = self.pair(call).ok_or(MediaError::UnknownCall)?;
        let spec = match keys {
            Some((rx, tx)) => LegSpec::srtp(remote_rtp, LegKeys { rx, tx }),
            None => LegSpec::plain(remote_rtp),
        }
        .with_rtcp_mux(rtcp_mux);
        let side = match side {
            Side::A => mediagate_media::session::Side::A,
            Side::B => mediagate_media::session::Side::B,
        };
        self.relay
            .set_leg(id, side, spec)
            .map_err(|e| MediaError::Other(e.to_string()))
    }

    fn release(&self, call: CallKey) {
        if let Some(id) = self
            .pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&call)
        {
            let _ = self.relay.release(id);
        }
    }
}
