//! The SRTP protection profiles (crypto suites) mediagate supports, as one
//! table of constants (the Rust form of rtpengine's `struct crypto_suite`).

use std::fmt;
use std::str::FromStr;

/// An SRTP crypto suite (RFC 4568 §6.2, RFC 6188, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SrtpProfile {
    /// AES-128 counter mode, HMAC-SHA1 truncated to 80 bits (RFC 3711). The
    /// suite every SDES peer must support (R-MEDIA-2).
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 truncated to 32 bits for SRTP (SRTCP
    /// keeps 80 bits).
    AesCm128HmacSha1_32,
    /// AES-256 counter mode, HMAC-SHA1/80 (RFC 6188).
    AesCm256HmacSha1_80,
    /// AES-256 counter mode, HMAC-SHA1/32 (RFC 6188).
    AesCm256HmacSha1_32,
    /// AES-128-GCM with a 16-octet tag (RFC 7714).
    AeadAes128Gcm,
    /// AES-256-GCM with a 16-octet tag (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Every supported profile, strongest first: the order in which the
    /// gateway offers them and picks an answer (R-MEDIA-7). AEAD and longer
    /// keys rank first; 32-bit tags last because they weaken authentication.
    pub const ALL: [SrtpProfile; 6] = [
        Self::AeadAes256Gcm,
        Self::AesCm256HmacSha1_80,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm256HmacSha1_32,
        Self::AesCm128HmacSha1_32,
    ];

    /// Master (and session encryption) key length in octets.
    pub const fn key_len(self) -> usize {
        match self {
            Self::AesCm128HmacSha1_80 | Self::AesCm128HmacSha1_32 | Self::AeadAes128Gcm => 16,
            Self::AesCm256HmacSha1_80 | Self::AesCm256HmacSha1_32 | Self::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length in octets: 112 bits for counter
    /// mode, 96 bits for GCM.
    pub const fn salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// Length of the SDES `inline:` key material (master key || master salt).
    pub const fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Whether this is an AEAD (GCM) profile.
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }

    /// Authentication tag length appended to SRTP packets.
    pub const fn rtp_tag_len(self) -> usize {
        match self {
            Self::AesCm128HmacSha1_80 | Self::AesCm256HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 | Self::AesCm256HmacSha1_32 => 4,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 16,
        }
    }

    /// Authentication tag length appended to SRTCP packets (80 bits for all
    /// HMAC suites, RFC 3711 §5.2 and RFC 4568 §6.2).
    pub const fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 10 }
    }

    /// The SDES suite name (RFC 4568 / RFC 6188 / RFC 7714 spelling).
    pub const fn sdes_name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Self::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Self::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Parses an SDES suite name, accepting both spellings of the AES-256
    /// counter-mode suites (`AES_256_CM_…` from RFC 6188 and the
    /// `AES_CM_256_…` spelling some PBXs send).
    pub fn from_sdes_name(name: &str) -> Option<Self> {
        Some(match name {
            "AES_CM_128_HMAC_SHA1_80" => Self::AesCm128HmacSha1_80,
            "AES_CM_128_HMAC_SHA1_32" => Self::AesCm128HmacSha1_32,
            "AES_256_CM_HMAC_SHA1_80" | "AES_CM_256_HMAC_SHA1_80" => Self::AesCm256HmacSha1_80,
            "AES_256_CM_HMAC_SHA1_32" | "AES_CM_256_HMAC_SHA1_32" => Self::AesCm256HmacSha1_32,
            "AEAD_AES_128_GCM" => Self::AeadAes128Gcm,
            "AEAD_AES_256_GCM" => Self::AeadAes256Gcm,
            _ => return None,
        })
    }

    /// The spelling of `name` to repeat in an answer (RFC 4568 §5.1.2: the
    /// answer names the offered suite): `name` itself when it is one of
    /// this profile's spellings, else [`Self::sdes_name`].
    pub fn sdes_spelling(self, name: &str) -> &'static str {
        match (self, name) {
            (Self::AesCm256HmacSha1_80, "AES_CM_256_HMAC_SHA1_80") => "AES_CM_256_HMAC_SHA1_80",
            (Self::AesCm256HmacSha1_32, "AES_CM_256_HMAC_SHA1_32") => "AES_CM_256_HMAC_SHA1_32",
            _ => self.sdes_name(),
        }
    }

    /// Rank for answer selection: lower is stronger (index in [`Self::ALL`]).
    pub fn strength_rank(self) -> usize {
        Self::ALL
            .iter()
            .position(|p| *p == self)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdes_name())
    }
}

/// Error for [`SrtpProfile::from_str`]: the name is not a supported suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownProfile;

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown SRTP crypto suite")
    }
}

impl std::error::Error for UnknownProfile {}

impl FromStr for SrtpProfile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_sdes_name(s).ok_or(UnknownProfile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for p in SrtpProfile::ALL {
            assert_eq!(SrtpProfile::from_sdes_name(p.sdes_name()), Some(p));
            assert_eq!(p.master_len(), p.key_len() + p.salt_len());
        }
        assert_eq!(
            "AES_CM_256_HMAC_SHA1_80".parse::<SrtpProfile>(),
            Ok(SrtpProfile::AesCm256HmacSha1_80)
        );
        assert_eq!(
            "F8_128_HMAC_SHA1_80".parse::<SrtpProfile>(),
            Err(UnknownProfile)
        );
        assert_eq!(SrtpProfile::AeadAes128Gcm.master_len(), 28);
        assert_eq!(SrtpProfile::AesCm128HmacSha1_80.master_len(), 30);
        assert_eq!(SrtpProfile::AesCm256HmacSha1_80.master_len(), 46);
    }
}
