//! # mediagate-sip-proto: the sans-IO SIP core
//!
//! RFC 3261 message parsing and serialization, stream framing by Content-Length, the four
//! transaction state machines with timers A–K, transaction matching, the UAS 2xx
//! retransmission, and dialogs — as plain data structures that take bytes and `now` and return
//! bytes, events and the next deadline.
//!
//! ## What this crate does NOT do
//! - No I/O: it never opens a socket, reads a connection or resolves a name. The driver
//!   (`mediagate-sip`, tokio) does that and feeds the bytes in.
//! - No clock: it never calls `Instant::now()`; every input carries `now` (clippy enforces it).
//! - No TLS, no certificates, no peer policy (allow-list, dial plans): those live above and
//!   below it. SDP offer/answer rewriting is here ([`sdp`]); the B2BUA call model lives in
//!   `mediagate-sip`.
//! - No DNS/RFC 3263 target selection: a [`Remote`] is an already resolved address.
//!
//! ## Data flow
//! ```text
//!  socket/TLS ──bytes──▶ framing::check ──frame──▶ Endpoint::handle_input(now, remote, frame)
//!                            └──Error──▶ Endpoint::handle_frame_error → 400/413, Skip | Close
//!                                                      │  parse → match → transaction FSM
//!  socket/TLS ◀──Transmit── Endpoint::poll_output ◀────┤
//!  TU (B2BUA) ◀──Event───── Endpoint::poll_output ◀────┘
//!  TU ──send_request / send_response / send_stateless──▶ Endpoint
//!  timer ──handle_timeout(now) when now >= poll_timeout()──▶ Endpoint
//! ```
//!
//! ## The input/poll contract
//! After **any** `handle_*` or `send_*` call, drain [`Endpoint::poll_output`] until it returns
//! `None`, then (re)arm one timer at [`Endpoint::poll_timeout`]. When it fires, call
//! [`Endpoint::handle_timeout`] with the current time and drain again. Zero-length timers
//! (D/I/J/K on reliable transports) fire inside the call that started them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mediagate_sip_proto::{Config, Endpoint, Event, Output, Remote, TransportKind};
//! use mediagate_sip_proto::message::StatusCode;
//!
//! let mut ep = Endpoint::new(Config::default());
//! let remote = Remote { transport: TransportKind::Udp, addr: "192.0.2.1:5060".parse().unwrap() };
//! let start = Instant::now(); // in a driver: the clock; in tests: any fixed instant
//! let options = b"OPTIONS sip:gw.example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKprobe1\r\n\
//!     From: <sip:probe@example.com>;tag=1\r\nTo: <sip:gw.example.com>\r\n\
//!     Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! ep.handle_input(start, remote, options);
//! while let Some(out) = ep.poll_output() {
//!     match out {
//!         Output::Transmit(t) => { /* socket.send_to(&t.bytes, t.remote.addr) */ let _ = t; }
//!         Output::Event(Event::Request { id, request, .. }) => {
//!             let ok = request.response(StatusCode::OK);
//!             ep.send_response(start, id, ok).unwrap(); // queues more output: keep draining
//!         }
//!         Output::Event(_) => {}
//!     }
//! }
//! // Timer J keeps the transaction for 64*T1 on UDP to absorb retransmissions.
//! assert_eq!(ep.poll_timeout(), Some(start + Duration::from_secs(32)));
//! ```
//!
//! Design notes, the parser decision and the framing caps: `docs/signaling.md`.

pub mod config;
pub mod dialog;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod transaction;

pub use config::Config;
pub use dialog::{Dialog, DialogError, DialogId, DialogState};
pub use endpoint::{Endpoint, Event, Output, StreamAction, Transmit};
pub use error::ApiError;
pub use transaction::{Timer, TransactionId, TransactionState};

use std::net::SocketAddr;

/// The transport a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP (unreliable: retransmissions, non-zero D/I/J/K).
    Udp,
    /// TCP
    Tcp,
    /// TLS over TCP
    Tls,
}

impl TransportKind {
    /// The lower-case name used in configuration files, URI `transport=` parameters and logs
    /// (`udp`, `tcp`, `tls`).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The peer of a message: transport plus address. For streams the driver maps it to the
/// connection (responses go back on the connection the request came on). Displays as
/// `tls:192.0.2.1:5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    /// Transport.
    pub transport: TransportKind,
    /// Peer address (for an inbound stream: the connection's source address).
    pub addr: SocketAddr,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}
