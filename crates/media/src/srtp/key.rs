//! Master key material: what SDES carries (`inline:key||salt|lifetime|MKI`).

use std::fmt;

use super::profile::SrtpProfile;

const MAX_MASTER_LEN: usize = 32 + 14;
/// Longest MKI mediagate accepts, in octets (RFC 4568 allows up to 128, but
/// real peers use 1–4; 8 leaves room without carrying a big buffer per key).
pub const MAX_MKI_LEN: usize = 8;

/// Master key identifier: the value a peer puts on the wire after the
/// encrypted portion to name the master key (RFC 3711 §3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mki {
    bytes: [u8; MAX_MKI_LEN],
    len: u8,
}

impl Mki {
    /// An MKI with integer `value` encoded big-endian in `len` octets.
    ///
    /// Returns `None` when `len` is 0 or above [`MAX_MKI_LEN`], or `value`
    /// does not fit in `len` octets.
    pub fn new(value: u64, len: usize) -> Option<Self> {
        if len == 0 || len > MAX_MKI_LEN || (len < 8 && value >> (8 * len) != 0) {
            return None;
        }
        let mut bytes = [0u8; MAX_MKI_LEN];
        bytes[..len].copy_from_slice(&value.to_be_bytes()[8 - len..]);
        Some(Self {
            bytes,
            len: len as u8,
        })
    }

    /// The integer value of the MKI.
    pub fn value(&self) -> u64 {
        self.as_bytes()
            .iter()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b))
    }

    /// The MKI as it appears on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length on the wire in octets.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: an MKI has at least one octet.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The master key length did not match the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLengthError {
    /// Octets the profile needs (key || salt).
    pub expected: usize,
    /// Octets that were given.
    pub got: usize,
}

impl fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "master key||salt must be {} octets, got {}",
            self.expected, self.got
        )
    }
}

impl std::error::Error for KeyLengthError {}

/// The operating system's random number generator failed; no key was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random number generator failed")
    }
}

impl std::error::Error for RandomError {}

/// An SRTP master key and salt for one profile, with optional MKI and
/// lifetime: everything needed to build an [`super::SrtpContext`].
///
/// The key bytes are wiped when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    profile: SrtpProfile,
    material: [u8; MAX_MASTER_LEN],
    mki: Option<Mki>,
    lifetime: Option<u64>,
}

impl MasterKey {
    /// Builds a master key from `key || salt` as SDES carries it.
    pub fn new(profile: SrtpProfile, key_and_salt: &[u8]) -> Result<Self, KeyLengthError> {
        let expected = profile.master_len();
        if key_and_salt.len() != expected {
            return Err(KeyLengthError {
                expected,
                got: key_and_salt.len(),
            });
        }
        let mut material = [0u8; MAX_MASTER_LEN];
        material[..expected].copy_from_slice(key_and_salt);
        Ok(Self {
            profile,
            material,
            mki: None,
            lifetime: None,
        })
    }

    /// Builds a master key from separate key and salt.
    pub fn from_parts(
        profile: SrtpProfile,
        key: &[u8],
        salt: &[u8],
    ) -> Result<Self, KeyLengthError> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return Err(KeyLengthError {
                expected: profile.master_len(),
                got: key.len() + salt.len(),
            });
        }
        let mut material = [0u8; MAX_MASTER_LEN];
        material[..key.len()].copy_from_slice(key);
        material[key.len()..profile.master_len()].copy_from_slice(salt);
        Ok(Self {
            profile,
            material,
            mki: None,
            lifetime: None,
        })
    }

    /// A fresh random key from the operating system's CSPRNG (`getrandom`
    /// through ring). Each leg gets its own (R-MEDIA-2).
    pub fn generate(profile: SrtpProfile) -> Result<Self, RandomError> {
        use ring::rand::SecureRandom as _;
        let mut material = [0u8; MAX_MASTER_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut material[..profile.master_len()])
            .map_err(|_| RandomError)?;
        Ok(Self {
            profile,
            material,
            mki: None,
            lifetime: None,
        })
    }

    /// Sets the MKI this key is sent and recognized with.
    pub fn with_mki(mut self, mki: Option<Mki>) -> Self {
        self.mki = mki;
        self
    }

    /// Sets the key lifetime in packets (SRTP and SRTCP together).
    pub fn with_lifetime(mut self, packets: Option<u64>) -> Self {
        self.lifetime = packets;
        self
    }

    /// The profile this key is for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.material[..self.profile.key_len()]
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        &self.material[self.profile.key_len()..self.profile.master_len()]
    }

    /// `key || salt`, the SDES `inline:` material.
    pub fn key_and_salt(&self) -> &[u8] {
        &self.material[..self.profile.master_len()]
    }

    /// The MKI, if any.
    pub fn mki(&self) -> Option<Mki> {
        self.mki
    }

    /// The lifetime in packets, if limited.
    pub fn lifetime(&self) -> Option<u64> {
        self.lifetime
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .field("mki", &self.mki)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort: volatile-free wipe; the compiler may elide it, which
        // is acceptable for a defence-in-depth measure.
        self.material.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mki_encoding() {
        let m = Mki::new(0x0102, 4).unwrap();
        assert_eq!(m.as_bytes(), &[0, 0, 1, 2]);
        assert_eq!(m.value(), 0x0102);
        assert!(Mki::new(256, 1).is_none());
        assert!(Mki::new(1, 0).is_none());
        assert!(Mki::new(1, 9).is_none());
        assert_eq!(Mki::new(u64::MAX, 8).unwrap().value(), u64::MAX);
    }

    #[test]
    fn key_lengths_checked() {
        let p = SrtpProfile::AeadAes128Gcm;
        assert_eq!(
            MasterKey::new(p, &[0; 30]).unwrap_err(),
            KeyLengthError {
                expected: 28,
                got: 30
            }
        );
        let k = MasterKey::generate(p).unwrap();
        assert_eq!(k.key().len(), 16);
        assert_eq!(k.salt().len(), 12);
        assert_ne!(k.key_and_salt(), &[0u8; 28][..]);
        assert!(!format!("{k:?}").contains("material"));
    }
}
