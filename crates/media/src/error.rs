//! Hot-path error types: small, `Copy`, no allocation, one variant per cause so
//! the relay can map each to its own drop counter.

use std::fmt;

/// Why an SRTP or SRTCP packet was refused by [`crate::srtp::SrtpContext`].
///
/// Authentication failures, replays and malformed packets are distinct so that
/// a relay counts them apart (R-MEDIA-4) and never forwards any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpError {
    /// The packet could not be parsed as RTP/RTCP (peer's fault).
    Malformed(Malformed),
    /// The authentication tag (HMAC or AEAD tag) did not verify (peer's fault
    /// or an attack; also the symptom of a wrong key).
    AuthenticationFailed,
    /// The packet index was already received, or is older than the replay
    /// window (RFC 3711 §3.3.2).
    Replayed,
    /// The packet carried an MKI that does not name the context's master key.
    UnknownMki,
    /// The master key reached its lifetime (RFC 3711 §9.2); re-key before
    /// sending or receiving more.
    KeyExpired,
    /// The caller's buffer has no room for the tag/MKI/SRTCP index (caller's
    /// fault): `protect` needs `len + overhead` bytes of buffer.
    BufferTooSmall,
    /// A new SSRC arrived but the context already tracks its maximum number of
    /// streams (configurable, see [`crate::srtp::SrtpConfig::max_streams`]).
    TooManyStreams,
}

/// What was wrong with a malformed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than the fixed header, or than the header plus tag.
    TooShort,
    /// RTP/RTCP version field is not 2.
    BadVersion,
    /// The CSRC list or header extension runs past the end of the packet.
    BadHeaderLength,
    /// The padding count is zero or larger than the payload.
    BadPadding,
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed packet: {m}"),
            Self::AuthenticationFailed => f.write_str("authentication failed"),
            Self::Replayed => f.write_str("replayed or too old packet"),
            Self::UnknownMki => f.write_str("unknown MKI"),
            Self::KeyExpired => f.write_str("master key lifetime exhausted"),
            Self::BufferTooSmall => f.write_str("buffer too small for SRTP overhead"),
            Self::TooManyStreams => f.write_str("too many SSRCs in one SRTP context"),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooShort => "too short",
            Self::BadVersion => "version is not 2",
            Self::BadHeaderLength => "header extends past the packet",
            Self::BadPadding => "bad padding length",
        })
    }
}

impl std::error::Error for SrtpError {}
impl std::error::Error for Malformed {}

impl From<Malformed> for SrtpError {
    fn from(m: Malformed) -> Self {
        Self::Malformed(m)
    }
}
