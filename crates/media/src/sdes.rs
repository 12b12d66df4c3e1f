//! SDES: the SDP `a=crypto` attribute (RFC 4568) that carries SRTP master
//! keys in the offer/answer, and the negotiation rules of R-MEDIA-7.
//!
//! ```text
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 WSH=64
//!          │ │                       │      │                                        │    │   └ session params
//!          │ │                       │      │                                        │    └ MKI value:length
//!          │ │                       │      │                                        └ lifetime
//!          │ │                       │      └ base64(master key || master salt)
//!          │ │                       └ key method
//!          │ └ crypto suite
//!          └ tag
//! ```
//!
//! Parsing is liberal (R-MEDIA-7): both spellings of the AES-256 suites,
//! base64 with or without padding, unknown session parameters skipped.
//! A line is refused — and the caller moves on to the next `a=crypto` line —
//! when it names an unknown suite or asks for something that would weaken
//! or change the protection silently (`UNENCRYPTED_SRTP`, `UNENCRYPTED_SRTCP`,
//! `UNAUTHENTICATED_SRTP`, a non-zero `KDR`).

use std::fmt;

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::srtp::{MAX_MKI_LEN, MasterKey, Mki, RandomError, SrtpProfile};

/// Standard base64 that also accepts a missing padding (some phones omit it).
const B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an `a=crypto` attribute was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdesError {
    /// The tag is missing or not a 1–9 digit decimal number.
    BadTag,
    /// The crypto suite is not one mediagate supports (skip the line).
    UnknownSuite,
    /// No `inline:` key parameter.
    MissingKey,
    /// A key method other than `inline`.
    UnsupportedKeyMethod,
    /// The key is not valid base64.
    BadBase64,
    /// The decoded key||salt has the wrong length for the suite.
    BadKeyLength,
    /// The lifetime is not `2^N` or a decimal number.
    BadLifetime,
    /// The MKI is not `value:length` with a supported length.
    BadMki,
    /// A session parameter mediagate refuses (it would disable encryption or
    /// authentication, or needs a non-zero key derivation rate).
    UnsupportedSessionParam,
}

impl fmt::Display for SdesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadTag => "bad or missing crypto tag",
            Self::UnknownSuite => "unsupported crypto suite",
            Self::MissingKey => "no inline key",
            Self::UnsupportedKeyMethod => "key method is not inline",
            Self::BadBase64 => "key is not valid base64",
            Self::BadKeyLength => "key length does not match the crypto suite",
            Self::BadLifetime => "bad key lifetime",
            Self::BadMki => "bad MKI",
            Self::UnsupportedSessionParam => "unsupported session parameter",
        })
    }
}

impl std::error::Error for SdesError {}

/// One parsed `a=crypto` attribute.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag that pairs an answer with the offer line it accepts.
    pub tag: u32,
    /// The master key (with suite, MKI and lifetime).
    pub key: MasterKey,
    /// `WSH=` window size hint (RFC 4568 §6.3.7), if the peer sent one.
    pub window_size_hint: Option<u32>,
    /// The suite name as written (some PBXs spell the AES-256 suites
    /// `AES_CM_256_…`); an answer repeats it.
    pub suite: &'static str,
}

impl CryptoAttribute {
    /// A new attribute with a freshly generated random key for `profile`.
    pub fn generate(tag: u32, profile: SrtpProfile) -> Result<Self, RandomError> {
        Ok(Self {
            tag,
            key: MasterKey::generate(profile)?,
            window_size_hint: None,
            suite: profile.sdes_name(),
        })
    }

    /// The suite of this attribute.
    pub fn profile(&self) -> SrtpProfile {
        self.key.profile()
    }

    /// Parses an attribute value (`1 AES_CM_128_HMAC_SHA1_80 inline:...`);
    /// a leading `a=crypto:` or `crypto:` is accepted too.
    pub fn parse(value: &str) -> Result<Self, SdesError> {
        let value = value.trim();
        let value = value
            .strip_prefix("a=crypto:")
            .or_else(|| value.strip_prefix("crypto:"))
            .unwrap_or(value);
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next().ok_or(SdesError::BadTag)?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SdesError::BadTag);
        }
        let tag: u32 = tag.parse().map_err(|_| SdesError::BadTag)?;
        let suite = fields.next().ok_or(SdesError::UnknownSuite)?;
        let profile = SrtpProfile::from_sdes_name(suite).ok_or(SdesError::UnknownSuite)?;
        let key_params = fields.next().ok_or(SdesError::MissingKey)?;
        // Several keys may be listed (`inline:..;inline:..`), told apart by
        // MKI; one context holds one key, so the first is used.
        let first = key_params.split(';').next().ok_or(SdesError::MissingKey)?;
        let (method, info) = first.split_once(':').ok_or(SdesError::MissingKey)?;
        if !method.eq_ignore_ascii_case("inline") {
            return Err(SdesError::UnsupportedKeyMethod);
        }
        let mut parts = info.split('|');
        let b64 = parts.next().ok_or(SdesError::MissingKey)?;
        let mut material = [0u8; 64];
        let n = B64
            .decode_slice(b64.as_bytes(), &mut material)
            .map_err(|e| match e {
                base64::DecodeSliceError::OutputSliceTooSmall => SdesError::BadKeyLength,
                base64::DecodeSliceError::DecodeError(_) => SdesError::BadBase64,
            })?;
        let mut key =
            MasterKey::new(profile, &material[..n]).map_err(|_| SdesError::BadKeyLength)?;
        material.fill(0);

        // Optional lifetime then optional MKI; the MKI is recognized by its
        // colon, so `inline:KEY|1:4` (MKI without lifetime) works too.
        for part in parts {
            if let Some((v, l)) = part.split_once(':') {
                let value: u64 = v.parse().map_err(|_| SdesError::BadMki)?;
                let len: usize = l.parse().map_err(|_| SdesError::BadMki)?;
                if len > MAX_MKI_LEN {
                    return Err(SdesError::BadMki);
                }
                key = key.with_mki(Some(Mki::new(value, len).ok_or(SdesError::BadMki)?));
            } else {
                key = key.with_lifetime(Some(parse_lifetime(part)?));
            }
        }

        let mut window_size_hint = None;
        for param in fields {
            let (name, val) = param.split_once('=').unwrap_or((param, ""));
            match name.to_ascii_uppercase().as_str() {
                "UNENCRYPTED_SRTP" | "UNENCRYPTED_SRTCP" | "UNAUTHENTICATED_SRTP" => {
                    return Err(SdesError::UnsupportedSessionParam);
                }
                "KDR" if val != "0" => return Err(SdesError::UnsupportedSessionParam),
                "WSH" => window_size_hint = val.parse().ok(),
                // FEC_ORDER, FEC_KEY, extension params: skipped (R-MEDIA-7).
                _ => {}
            }
        }
        Ok(Self {
            tag,
            key,
            window_size_hint,
            suite: profile.sdes_spelling(suite),
        })
    }
}

fn parse_lifetime(s: &str) -> Result<u64, SdesError> {
    if let Some(exp) = s.strip_prefix("2^") {
        let exp: u32 = exp.parse().map_err(|_| SdesError::BadLifetime)?;
        if exp == 0 || exp > 48 {
            return Err(SdesError::BadLifetime);
        }
        Ok(1 << exp)
    } else {
        s.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(SdesError::BadLifetime)
    }
}

impl fmt::Display for CryptoAttribute {
    /// Formats the attribute value (without `a=crypto:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} inline:{}",
            self.tag,
            self.suite,
            B64.encode(self.key.key_and_salt())
        )?;
        if let Some(lifetime) = self.key.lifetime() {
            if lifetime.is_power_of_two() {
                write!(f, "|2^{}", lifetime.trailing_zeros())?;
            } else {
                write!(f, "|{lifetime}")?;
            }
        }
        if let Some(mki) = self.key.mki() {
            write!(f, "|{}:{}", mki.value(), mki.len())?;
        }
        if let Some(wsh) = self.window_size_hint {
            write!(f, " WSH={wsh}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAttribute")
            .field("tag", &self.tag)
            .field("key", &self.key)
            .field("window_size_hint", &self.window_size_hint)
            .field("suite", &self.suite)
            .finish()
    }
}

/// Builds the `a=crypto` lines for an offer: one per profile in `profiles`
/// (strongest first), tags 1, 2, …, each with its own fresh key.
pub fn offer(profiles: &[SrtpProfile]) -> Result<Vec<CryptoAttribute>, RandomError> {
    profiles
        .iter()
        .zip(1u32..)
        .map(|(p, tag)| CryptoAttribute::generate(tag, *p))
        .collect()
}

/// Picks, from the `a=crypto` values of an offer, the one to accept: the
/// strongest suite in `supported` (ranked by [`SrtpProfile::strength_rank`]),
/// the earliest line on a tie. Lines that do not parse are skipped.
///
/// Returns `None` when no line is acceptable: a Secured leg then answers 488.
pub fn select<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[SrtpProfile],
) -> Option<CryptoAttribute> {
    offered
        .into_iter()
        .filter_map(|line| CryptoAttribute::parse(line).ok())
        .filter(|c| supported.contains(&c.profile()))
        .min_by_key(|c| c.profile().strength_rank())
}

/// The answer to an accepted offer line: same tag and suite (spelled as
/// offered), a fresh key of our own (keys are never reused across legs or
/// directions, R-MEDIA-2).
pub fn answer(accepted: &CryptoAttribute) -> Result<CryptoAttribute, RandomError> {
    let mut a = CryptoAttribute::generate(accepted.tag, accepted.profile())?;
    a.suite = accepted.suite;
    Ok(a)
}

/// In an answer, finds the line that accepts one of our offered attributes
/// (same tag and suite). Returns `(our offered attribute, their answer)`.
pub fn match_answer<'o, 'a>(
    our_offer: &'o [CryptoAttribute],
    answered: impl IntoIterator<Item = &'a str>,
) -> Option<(&'o CryptoAttribute, CryptoAttribute)> {
    answered
        .into_iter()
        .filter_map(|l| CryptoAttribute::parse(l).ok())
        .find_map(|a| {
            our_offer
                .iter()
                .find(|o| o.tag == a.tag && o.profile() == a.profile())
                .map(|o| (o, a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc4568_example() {
        // RFC 4568 §4 example, with lifetime and MKI.
        let a = CryptoAttribute::parse(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
        )
        .unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.profile(), SrtpProfile::AesCm128HmacSha1_80);
        assert_eq!(a.key.lifetime(), Some(1 << 20));
        assert_eq!(a.key.mki(), Mki::new(1, 4));
        assert_eq!(
            a.to_string(),
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
        );
    }

    #[test]
    fn both_aes256_spellings_and_missing_padding() {
        let k = B64.encode([7u8; 46]);
        let unpadded = k.trim_end_matches('=');
        for suite in ["AES_256_CM_HMAC_SHA1_80", "AES_CM_256_HMAC_SHA1_80"] {
            let a = CryptoAttribute::parse(&format!("2 {suite} inline:{unpadded}")).unwrap();
            assert_eq!(a.profile(), SrtpProfile::AesCm256HmacSha1_80);
            assert_eq!(a.key.key_and_salt(), &[7u8; 46][..]);
            // The answer repeats the offered spelling (RFC 4568 §5.1.2).
            let ans = answer(&a).unwrap();
            assert!(
                ans.to_string().starts_with(&format!("2 {suite} inline:")),
                "{ans}"
            );
            assert_ne!(ans.key, a.key);
        }
    }

    #[test]
    fn mki_without_lifetime_decimal_lifetime_and_params() {
        let k = B64.encode([1u8; 28]);
        let a = CryptoAttribute::parse(&format!(
            "3 AEAD_AES_128_GCM inline:{k}|7:2 FEC_ORDER=FEC_SRTP WSH=256 X-FOO"
        ))
        .unwrap();
        assert_eq!(a.key.mki(), Mki::new(7, 2));
        assert_eq!(a.key.lifetime(), None);
        assert_eq!(a.window_size_hint, Some(256));
        let b =
            CryptoAttribute::parse(&format!("3 AEAD_AES_128_GCM inline:{k}|1000 KDR=0")).unwrap();
        assert_eq!(b.key.lifetime(), Some(1000));
        assert!(b.to_string().ends_with("|1000"));
    }

    #[test]
    fn refusals() {
        let k30 = B64.encode([1u8; 30]);
        let cases = [
            ("x AES_CM_128_HMAC_SHA1_80 inline:{k30}", SdesError::BadTag),
            ("", SdesError::BadTag),
            (
                "1 F8_128_HMAC_SHA1_80 inline:{k30}",
                SdesError::UnknownSuite,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80", SdesError::MissingKey),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
                SdesError::UnsupportedKeyMethod,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
                SdesError::BadBase64,
            ),
            ("1 AEAD_AES_256_GCM inline:{k30}", SdesError::BadKeyLength),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30}|2^99",
                SdesError::BadLifetime,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30}|1:9",
                SdesError::BadMki,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30}|300:1",
                SdesError::BadMki,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30} UNENCRYPTED_SRTP",
                SdesError::UnsupportedSessionParam,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30} UNAUTHENTICATED_SRTP",
                SdesError::UnsupportedSessionParam,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k30} KDR=24",
                SdesError::UnsupportedSessionParam,
            ),
        ];
        for (line, err) in cases {
            let line = line.replace("{k30}", &k30);
            assert_eq!(CryptoAttribute::parse(&line).unwrap_err(), err, "{line}");
        }
        // A key far too long must not overflow the decode buffer.
        let long = B64.encode([0u8; 200]);
        assert_eq!(
            CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{long}"))
                .unwrap_err(),
            SdesError::BadKeyLength
        );
    }

    #[test]
    fn selects_strongest_supported_and_skips_garbage() {
        let offer_lines = [
            format!("1 AES_CM_128_HMAC_SHA1_32 inline:{}", B64.encode([1u8; 30])),
            "2 NULL_HMAC_SHA1_80 inline:xyz".to_string(),
            format!("3 AES_CM_128_HMAC_SHA1_80 inline:{}", B64.encode([2u8; 30])),
            format!("4 AEAD_AES_128_GCM inline:{}", B64.encode([3u8; 28])),
            format!(
                "5 AEAD_AES_256_GCM inline:{} UNENCRYPTED_SRTCP",
                B64.encode([4u8; 44])
            ),
        ];
        let lines = offer_lines.iter().map(String::as_str);
        let chosen = select(lines.clone(), &SrtpProfile::ALL).unwrap();
        assert_eq!(
            (chosen.tag, chosen.profile()),
            (4, SrtpProfile::AeadAes128Gcm)
        );
        let only_cm = select(lines.clone(), &[SrtpProfile::AesCm128HmacSha1_80]).unwrap();
        assert_eq!(only_cm.tag, 3);
        assert!(select(lines, &[SrtpProfile::AesCm256HmacSha1_80]).is_none());

        let ans = answer(&chosen).unwrap();
        assert_eq!((ans.tag, ans.profile()), (4, SrtpProfile::AeadAes128Gcm));
        assert_ne!(ans.key.key_and_salt(), chosen.key.key_and_salt());
    }

    #[test]
    fn offer_and_match_answer() {
        let ours = offer(&SrtpProfile::ALL).unwrap();
        assert_eq!(ours.len(), 6);
        assert_eq!(ours[0].tag, 1);
        assert_eq!(ours[0].profile(), SrtpProfile::AeadAes256Gcm);
        // Fresh key per line.
        assert_ne!(ours[2].key.key(), ours[3].key.key());
        let their = format!("4 AES_CM_128_HMAC_SHA1_80 inline:{}", B64.encode([9u8; 30]));
        let (mine, theirs) = match_answer(&ours, [their.as_str()]).unwrap();
        assert_eq!(mine.tag, 4);
        assert_eq!(theirs.key.key_and_salt(), &[9u8; 30][..]);
        // Wrong suite for the tag: no match.
        let bad = format!("4 AEAD_AES_128_GCM inline:{}", B64.encode([9u8; 28]));
        assert!(match_answer(&ours, [bad.as_str()]).is_none());
        // Every offer line round-trips through the parser.
        for a in &ours {
            assert_eq!(&CryptoAttribute::parse(&a.to_string()).unwrap(), a);
        }
    }
}
