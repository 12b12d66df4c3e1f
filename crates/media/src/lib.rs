//! mediagate's media hot path: SRTP/SRTCP that works in place on the
//! caller's buffer, SDES key negotiation, and zero-copy RTP/RTCP header views.
//!
//! # What this crate does not do
//! It performs no I/O and reads no clock: packets and (later) time come in,
//! transformed packets and decisions go out. Sockets live in the relay
//! module's driver, which is the only place allowed to touch the network.
//!
//! # Hot-path contract
//! - `protect_*`/`unprotect_*` take `&mut [u8]` plus the used length and
//!   return the new length; they never allocate (tested with a counting
//!   global allocator) and never panic on any input (fuzzed).
//! - Errors are small `Copy` values ([`SrtpError`]) that a relay maps to
//!   drop counters; authentication failures, replays and malformed packets
//!   are distinct.
//!
//! ```
//! use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
//!
//! let key = MasterKey::generate(SrtpProfile::AesCm128HmacSha1_80).unwrap();
//! let mut tx = SrtpContext::new(&key, SrtpConfig::default());
//! let mut rx = SrtpContext::new(&key, SrtpConfig::default());
//!
//! let mut buf = [0u8; 1500];
//! let rtp = [0x80, 0, 0, 1, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3, 4];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let n = tx.protect_rtp(&mut buf, rtp.len()).unwrap();
//! assert_eq!(n, rtp.len() + 10);
//! let m = rx.unprotect_rtp(&mut buf, n).unwrap();
//! assert_eq!(&buf[..m], &rtp);
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod relay;
pub mod rtp;
pub mod sdes;
pub mod session;
pub mod srtp;

pub use error::{Malformed, SrtpError};
