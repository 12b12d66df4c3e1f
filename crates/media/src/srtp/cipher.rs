//! The crypto seam: session keys derived from a master key, and the three
//! primitives the hot path uses, each chosen by measurement (BENCHMARKS.md):
//!
//! - AES counter mode: RustCrypto `aes` (AES-NI when the CPU has it) driven
//!   through `ctr`, keystream applied in place;
//! - HMAC-SHA1: RustCrypto `hmac` + `sha1` (SHA-NI when present), with the
//!   inner and outer pads hashed once per session key and cloned per packet;
//! - AES-GCM: aws-lc (`aws-lc-rs`), sealed and opened in place.

use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit, consts::U16, generic_array::GenericArray};
use aes::{Aes128, Aes256};
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, LessSafeKey, UnboundKey};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::kdf::{Label, derive};
use super::profile::SrtpProfile;

type HmacSha1 = Hmac<Sha1>;

/// AES in counter mode with a key schedule expanded once.
///
/// The keystream is produced by encrypting up to eight counter blocks at a
/// time on the stack (AES-NI pipelines them) and XORed into the data, so no
/// per-packet copy of the (large) key schedule is made.
#[allow(clippy::large_enum_variant)] // built once per session, never moved per packet
pub(crate) enum AesCtr {
    A128(Aes128),
    A256(Aes256),
}

impl AesCtr {
    pub(crate) fn new(key: &[u8]) -> Self {
        if key.len() == 32 {
            Self::A256(Aes256::new(GenericArray::from_slice(key)))
        } else {
            Self::A128(Aes128::new(GenericArray::from_slice(key)))
        }
    }

    /// XORs the keystream starting at counter block `iv` into `data`.
    #[inline]
    pub(crate) fn apply(&self, iv: &[u8; 16], data: &mut [u8]) {
        match self {
            Self::A128(k) => ctr_xor(k, iv, data),
            Self::A256(k) => ctr_xor(k, iv, data),
        }
    }
}

const PAR_BLOCKS: usize = 8;

#[inline]
fn ctr_xor<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>>(
    cipher: &C,
    iv: &[u8; 16],
    data: &mut [u8],
) {
    let base = u128::from_be_bytes(*iv);
    let mut counter = 0u128;
    let mut blocks = [GenericArray::<u8, U16>::default(); PAR_BLOCKS];
    for chunk in data.chunks_mut(16 * PAR_BLOCKS) {
        let n = chunk.len().div_ceil(16);
        for (i, b) in blocks[..n].iter_mut().enumerate() {
            *b = GenericArray::from(base.wrapping_add(counter + i as u128).to_be_bytes());
        }
        cipher.encrypt_blocks(&mut blocks[..n]);
        counter += n as u128;
        for (d, k) in chunk.chunks_mut(16).zip(&blocks[..n]) {
            if let Ok(d16) = <&mut [u8; 16]>::try_from(&mut *d) {
                let x = u128::from_ne_bytes(*d16)
                    ^ u128::from_ne_bytes(k.as_slice().try_into().unwrap_or([0; 16]));
                *d16 = x.to_ne_bytes();
            } else {
                for (a, b) in d.iter_mut().zip(k.iter()) {
                    *a ^= b;
                }
            }
        }
    }
}

/// Session keys for one direction of one stream kind (SRTP or SRTCP).
#[allow(clippy::large_enum_variant)] // built once per session, never moved per packet
pub(crate) enum SessionKeys {
    /// AES-CM + HMAC-SHA1 (RFC 3711, RFC 6188).
    Cm {
        aes: AesCtr,
        salt: [u8; 14],
        auth: HmacSha1,
    },
    /// AES-GCM (RFC 7714).
    Gcm { aead: LessSafeKey, salt: [u8; 12] },
}

impl SessionKeys {
    /// Derives the SRTP (`rtcp == false`) or SRTCP session keys.
    pub(crate) fn derive(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        rtcp: bool,
    ) -> Self {
        let (enc_label, auth_label, salt_label) = if rtcp {
            (
                Label::RtcpEncryption,
                Label::RtcpAuthentication,
                Label::RtcpSalt,
            )
        } else {
            (
                Label::RtpEncryption,
                Label::RtpAuthentication,
                Label::RtpSalt,
            )
        };
        let mut enc = [0u8; 32];
        let enc = &mut enc[..profile.key_len()];
        derive(master_key, master_salt, enc_label, enc);
        let keys = if profile.is_aead() {
            let mut salt = [0u8; 12];
            derive(master_key, master_salt, salt_label, &mut salt);
            let alg = if enc.len() == 32 {
                &AES_256_GCM
            } else {
                &AES_128_GCM
            };
            #[allow(clippy::expect_used)]
            let key = UnboundKey::new(alg, enc).expect("AES-GCM key length matches the algorithm");
            Self::Gcm {
                aead: LessSafeKey::new(key),
                salt,
            }
        } else {
            let mut salt = [0u8; 14];
            derive(master_key, master_salt, salt_label, &mut salt);
            let mut auth_key = [0u8; 20];
            derive(master_key, master_salt, auth_label, &mut auth_key);
            #[allow(clippy::expect_used)]
            let auth =
                <HmacSha1 as Mac>::new_from_slice(&auth_key).expect("HMAC accepts any key length");
            auth_key.fill(0);
            Self::Cm {
                aes: AesCtr::new(enc),
                salt,
                auth,
            }
        };
        enc.fill(0);
        keys
    }
}

#[cfg(test)]
impl SessionKeys {
    /// Session keys given directly (test vectors state them that way).
    pub(crate) fn from_session(profile: SrtpProfile, enc: &[u8], salt: &[u8], auth: &[u8]) -> Self {
        if profile.is_aead() {
            let alg = if enc.len() == 32 {
                &AES_256_GCM
            } else {
                &AES_128_GCM
            };
            let mut s = [0u8; 12];
            s.copy_from_slice(salt);
            Self::Gcm {
                aead: LessSafeKey::new(UnboundKey::new(alg, enc).unwrap()),
                salt: s,
            }
        } else {
            let mut s = [0u8; 14];
            s.copy_from_slice(salt);
            Self::Cm {
                aes: AesCtr::new(enc),
                salt: s,
                auth: <HmacSha1 as Mac>::new_from_slice(auth).unwrap(),
            }
        }
    }
}

/// AES-CM IV (RFC 3711 §4.1.1): `(salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16)`.
#[inline]
pub(crate) fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *d ^= s;
    }
    for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *d ^= s;
    }
    iv
}

/// HMAC-SHA1 over `data || extra`, the full 20-octet MAC.
#[inline]
pub(crate) fn hmac_sha1(auth: &HmacSha1, data: &[u8], extra: &[u8]) -> [u8; 20] {
    let mut mac = auth.clone();
    mac.update(data);
    mac.update(extra);
    mac.finalize().into_bytes().into()
}

/// GCM IV for SRTP (RFC 7714 §8.1): `00 00 || SSRC || ROC || SEQ` XOR salt.
#[inline]
pub(crate) fn gcm_rtp_iv(salt: &[u8; 12], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (d, s) in iv.iter_mut().zip(salt) {
        *d ^= s;
    }
    iv
}

/// GCM IV for SRTCP (RFC 7714 §9.1): `00 00 || SSRC || 00 00 || 0 || index` XOR salt.
#[inline]
pub(crate) fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    for (d, s) in iv.iter_mut().zip(salt) {
        *d ^= s;
    }
    iv
}
