//! The crypto seam: session keys derived from a master key, and the three
//! primitives the hot path uses, each chosen by measurement (BENCHMARKS.md):
//!
//! - AES counter mode: RustCrypto `aes` (AES-NI when the CPU has it) driven
//!   through `ctr`, keystream applied in place;
//! - HMAC-SHA1 (RFC 2104) built on the `sha1` crate's compression function
//!   (SHA-NI when present): the inner and outer pad blocks are hashed once
//!   per session key, full packet blocks are compressed where they lie, and
//!   only the tail, ROC and padding are assembled on the stack;
//! - AES-GCM: `ring` (BoringSSL's AES-NI/CLMUL/AVX assembly behind a thin
//!   wrapper), sealed and opened in place.

use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit, consts::U16, generic_array::GenericArray};
use aes::{Aes128, Aes256};
use ring::aead::{AES_128_GCM, AES_256_GCM, LessSafeKey, UnboundKey};

use super::kdf::{Label, derive};
use super::profile::SrtpProfile;

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
        // Always a full batch: eight pipelined AES-NI blocks cost less than
        // two blocks encrypted one after the other.
        for (i, b) in blocks.iter_mut().enumerate() {
            *b = GenericArray::from(base.wrapping_add(counter + i as u128).to_be_bytes());
        }
        cipher.encrypt_blocks(&mut blocks);
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
            let auth = HmacSha1::new(&auth_key);
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
                auth: HmacSha1::new(auth),
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

/// HMAC-SHA1 (RFC 2104) with the pad blocks pre-hashed.
#[derive(Clone)]
pub(crate) struct HmacSha1 {
    /// SHA-1 state after compressing `key XOR ipad`.
    inner: [u32; 5],
    /// SHA-1 state after compressing `key XOR opad`.
    outer: [u32; 5],
}

const SHA1_H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

#[inline]
fn compress(state: &mut [u32; 5], blocks: &[[u8; 64]]) {
    sha1::block_api::compress(state, blocks);
}

fn state_bytes(state: &[u32; 5]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

impl HmacSha1 {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            use sha1::Digest as _;
            k[..20].copy_from_slice(&sha1::Sha1::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(&k) {
            *i ^= k;
            *o ^= k;
        }
        let (mut inner, mut outer) = (SHA1_H0, SHA1_H0);
        compress(&mut inner, &[ipad]);
        compress(&mut outer, &[opad]);
        k.fill(0);
        Self { inner, outer }
    }

    /// HMAC-SHA1 over `data || extra` (`extra` at most 8 octets: the ROC).
    #[inline]
    pub(crate) fn mac(&self, data: &[u8], extra: &[u8]) -> [u8; 20] {
        debug_assert!(extra.len() <= 8);
        let mut st = self.inner;
        // Full blocks straight from the packet, in one call (SHA-NI keeps
        // the state in registers across them).
        let (blocks, tail) = data.as_chunks::<64>();
        compress(&mut st, blocks);
        // Tail, extra, 0x80, zeros, 64-bit length (the ipad block counts).
        let mut last = [0u8; 128];
        let n = tail.len() + extra.len();
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()..n].copy_from_slice(extra);
        last[n] = 0x80;
        let end = if n + 9 <= 64 { 64 } else { 128 };
        let bits = ((64 + data.len() + extra.len()) as u64) * 8;
        last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        compress(&mut st, last[..end].as_chunks::<64>().0);
        let mut block = [0u8; 64];
        block[..20].copy_from_slice(&state_bytes(&st));
        block[20] = 0x80;
        block[56..].copy_from_slice(&((64u64 + 20) * 8).to_be_bytes());
        let mut out = self.outer;
        compress(&mut out, &[block]);
        state_bytes(&out)
    }
}

/// HMAC-SHA1 over `data || extra`, the full 20-octet MAC.
#[inline]
pub(crate) fn hmac_sha1(auth: &HmacSha1, data: &[u8], extra: &[u8]) -> [u8; 20] {
    auth.mac(data, extra)
}

/// Compares two tags of at most 16 octets in constant time (one 128-bit
/// XOR, no early exit).
#[inline]
pub(crate) fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.len() > 16 {
        return false;
    }
    let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
    x[..a.len()].copy_from_slice(a);
    y[..b.len()].copy_from_slice(b);
    std::hint::black_box(u128::from_ne_bytes(x) ^ u128::from_ne_bytes(y)) == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{KeyInit as _, Mac as _};
    use proptest::prelude::*;

    //= https://www.rfc-editor.org/rfc/rfc2202#section-3
    #[test]
    fn rfc2202_hmac_sha1() {
        let cases: [(&[u8], &[u8], &str); 7] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                &[0xaa; 20],
                &[0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                &[
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                    23, 24, 25,
                ],
                &[0xcd; 50],
                "4c9007f4026250c6bc8414f9bf50c86c2d7235da",
            ),
            (
                &[0x0c; 20],
                b"Test With Truncation",
                "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04",
            ),
            (
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for (key, data, expect) in cases {
            assert_eq!(hex::encode(HmacSha1::new(key).mac(data, &[])), expect);
        }
    }

    proptest! {
        // Every length boundary of the one/two final blocks, against the
        // RustCrypto `hmac` crate.
        #[test]
        fn matches_the_hmac_crate(key in proptest::collection::vec(any::<u8>(), 0..100),
                                  data in proptest::collection::vec(any::<u8>(), 0..300),
                                  extra in proptest::collection::vec(any::<u8>(), 0..=8)) {
            let ours = HmacSha1::new(&key).mac(&data, &extra);
            let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
            m.update(&data);
            m.update(&extra);
            prop_assert_eq!(&ours[..], &m.finalize().into_bytes()[..]);
        }
    }

    #[test]
    fn tag_compare() {
        assert!(tags_equal(&[1, 2, 3], &[1, 2, 3]));
        assert!(!tags_equal(&[1, 2, 3], &[1, 2, 4]));
        assert!(!tags_equal(&[1, 2, 3], &[1, 2]));
        assert!(tags_equal(&[9; 16], &[9; 16]));
        assert!(!tags_equal(&[9; 17], &[9; 17]));
    }
}
