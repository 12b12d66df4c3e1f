//! # mediagate-sip: SIP transports, dial-plan policy and the B2BUA
//!
//! The I/O half of mediagate's signaling, on tokio and rustls, around the sans-IO core
//! `mediagate-sip-proto`:
//!
//! - [`transport`]: UDP, TCP and mutual-TLS listeners all at once (R-MODE-1), per-connection
//!   drivers with bounded work per wake-up, TLS handshake timeout and connection caps
//!   (R-SIP-5), outbound connections to peers (reused), and the single task that owns the
//!   B2BUA and the clock.
//! - [`policy`]: dial plans with a VoIP security mode, peers, validation (R-PEER-3) and
//!   request admission (R-PEER-2, R-MODE-2), swapped atomically for new calls (R-MODE-4).
//! - [`b2bua`]: the call model, sans-IO: inbound leg ↔ outbound leg with their own dialogs,
//!   SDP rewritten per leg (`sip_proto::sdp`), CANCEL/BYE/re-INVITE/UPDATE/PRACK/OPTIONS.
//! - [`media`]: the [`media::MediaAnchor`] seam to the media relay, and a fake for tests.
//! - [`echo`]: the built-in `echo` endpoint (a [`b2bua::LocalEndpoint`]) with RTCP RTT.
//!
//! ## What this crate does NOT do
//! - It does not relay media: the relay (in `mediagate-media`) implements [`media::MediaAnchor`].
//! - It does not load configuration files: the gateway binary builds a [`policy::Policy`].
//! - No DNS SRV/NAPTR (RFC 3263): peers are an FQDN or IP plus port; FQDNs resolve with the
//!   system resolver (or static host entries) when a policy is installed.
//!
//! Design notes: `docs/signaling.md`.

pub mod b2bua;
mod clock;
pub mod echo;
pub mod lograte;
pub mod media;
pub mod metrics;
pub mod policy;
pub mod transport;

pub use b2bua::{B2bua, B2buaConfig, LocalEndpoint};
pub use echo::EchoEndpoint;
pub use media::{
    CallKey, FakeMedia, LegMedia, LegSummary, MediaAnchor, MediaError, RelayAnchor, Side,
};
pub use metrics::SipMetrics;
pub use policy::{
    DialPlan, MediaLatching, MediaSource, Peer, PeerAddress, Policy, PolicyError, PolicyHandle,
    PolicyOptions, Refusal, Route, Target, VoipSecurity,
};
