//! Certificates, trust and mutual TLS for mediagate (SPEC §3, R-CERT-1..8).
//!
//! What this crate does:
//! - reads the **certificate store** (a directory of PEM chains and keys), checks every
//!   candidate and ranks the usable ones ([`store`]);
//! - **generates** a self-signed certificate when nothing is usable, and keys + CSRs for the
//!   admin commands ([`generate`]);
//! - describes certificates the way administrators compare them ([`facts`]);
//! - decides when to warn about **expiry** ([`expiry`], a pure function of time);
//! - loads the **trust store** and names the reason a peer was refused ([`trust`]);
//! - builds rustls **server and client configs** for mutual TLS whose certificate and trust
//!   anchors are swapped atomically while the gateway runs ([`tls`]);
//! - extracts a peer's verified FQDNs for the allow-list ([`identity`]);
//! - keeps it all current: reloads, expiry checks and a directory watcher ([`reload`]).
//!
//! What it does **not** do: open sockets, run handshakes (tokio-rustls in the SIP transport
//! does), read the clock (every function takes `now`, long-lived objects hold a [`Clock`]), or
//! decide which peers are allowed (the dial-plan configuration does, with [`PeerIdentity`]).
//!
//! ```text
//!   cert dir ──scan(now)──▶ StoreScan ──best──▶ CertResolver ◀─┐
//!   trust dir ──load──▶ TrustStore ──▶ TrustAnchors ◀──────────┤ swap on change
//!        ▲                                  │                  │
//!        └── notify (dir watch, debounce) ──┴──── Reloader ────┘
//!                                           │
//!           ServerConfig / ClientConfig ◀───┘ (built once; read the swapped
//!                                              material at each handshake)
//! ```
//!
//! Run-loop shape of a gateway:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use mediagate_pki::{Reloader, Identity, tls, reload, Clock};
//! # fn demo(clock: Arc<dyn Clock>) -> Result<(), Box<dyn std::error::Error>> {
//! let me = Identity::new("gw.example.com");
//! let reloader = Arc::new(Reloader::start(
//!     "data/certs".as_ref(), "data/trust".as_ref(), Some(&me), clock.now())?);
//! let server = tls::server_config(reloader.certs(), reloader.trust(), clock.clone())?;
//! let client = tls::client_config(reloader.certs(), reloader.trust(), clock.clone())?;
//! let _watch = reload::watch(reloader.clone(), clock, reload::WatchConfig::default())?;
//! // hand `server` to the TLS listener and `client` to the connector; keep `_watch` alive.
//! # let _ = (server, client); Ok(()) }
//! ```

pub mod clock;
pub mod events;
pub mod expiry;
pub mod facts;
pub mod files;
pub mod generate;
pub mod identity;
pub mod pem;
pub mod reload;
pub mod store;
#[cfg(any(test, feature = "test-pki"))]
pub mod testpki;
pub mod tls;
pub mod trust;

pub use clock::{Clock, FixedClock};
pub use expiry::ExpiryEvent;
pub use facts::CertFacts;
pub use generate::Identity;
pub use identity::{IdentityOptions, PeerIdentity};
pub use reload::Reloader;
pub use store::{Candidate, StoreScan, Unusable};
pub use trust::{RefusalReason, TrustStore};
