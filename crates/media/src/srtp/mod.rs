//! SRTP and SRTCP (RFC 3711, RFC 6188, RFC 7714) in place on the caller's
//! buffer.
//!
//! ```text
//!           master key (SDES inline:)          per SSRC: ROC, s_l, replay window
//!                  │                                      │
//!            kdf::derive (§4.3)                           │
//!                  ▼                                      ▼
//!   SessionKeys { AES-CM + HMAC-SHA1 | AES-GCM } ──► SrtpContext::protect_rtp(buf, len)
//!                                                  SrtpContext::unprotect_rtp(buf, len)
//!                                                  … protect_rtcp / unprotect_rtcp
//! ```
//!
//! The profile is fixed when the context is built, so per packet there is a
//! single `match` on the session keys; no allocation, no copy of the packet
//! (the tag is written into spare room after the payload).

mod cipher;
mod context;
mod history;
mod kdf;
mod key;
mod profile;
mod replay;

pub use context::{MAX_FORGOTTEN, SrtpConfig, SrtpContext};
pub use key::{KeyLengthError, MAX_MKI_LEN, MasterKey, Mki, RandomError};
pub use profile::{SrtpProfile, UnknownProfile};
pub use replay::{DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW, MIN_REPLAY_WINDOW};

#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod tests;
