//! The test call's SDP offer and the checks on the far end's answer, sans-IO.
//!
//! The offer is one audio stream: PCMU/8000 and telephone-event (RFC 4733), at the address of
//! the probe's UDP socket. Secured tests offer `RTP/SAVP` with one SDES `a=crypto` line per
//! suite in [`OFFERED_SUITES`] (fresh keys from `mediagate_media::sdes::offer`); unsecured
//! tests offer `RTP/AVP` and no crypto (R-MODE-3: keys only ever travel over TLS). The answer
//! must accept PCMU on a usable address and, when secured, one of our crypto lines
//! (`sdes::match_answer`): our key of that line encrypts what we send, theirs decrypts what
//! comes back.

use std::net::{IpAddr, SocketAddr};

use mediagate_media::sdes::{self, CryptoAttribute};
use mediagate_media::srtp::{MasterKey, RandomError, SrtpProfile};
use mediagate_sip_proto::sdp::{Line, MediaSection, Sdp, SdpError};

/// RTP payload type of PCMU (RFC 3551, static).
pub(crate) const PCMU: u8 = 0;
/// RTP payload type we give telephone-event.
pub(crate) const TELEPHONE_EVENT: u8 = 101;
/// The SDES suites a secured test offers, strongest first (R-MEDIA-2 names both).
pub(crate) const OFFERED_SUITES: [SrtpProfile; 2] =
    [SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_80];

/// The SRTP keys agreed for the test call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrtpKeys {
    /// The suite the far end accepted.
    pub(crate) suite: SrtpProfile,
    /// The tag of the accepted `a=crypto` line.
    pub(crate) tag: u32,
    /// Our key (from our offer): protects what we send.
    pub(crate) tx: MasterKey,
    /// The far end's key (from its answer): protects what it sends back.
    pub(crate) rx: MasterKey,
}

/// What the far end's answer tells the media probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// Where to send RTP (and where the echo comes from).
    pub(crate) remote: SocketAddr,
    /// The answer's transport protocol (`RTP/AVP`, `RTP/SAVP`).
    pub(crate) proto: String,
    /// SRTP keys, for a secured test.
    pub(crate) srtp: Option<SrtpKeys>,
}

/// Why an answer cannot carry the test call's media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AnswerError {
    /// The 2xx carries no SDP.
    #[error("the 2xx carries no SDP answer")]
    Missing,
    /// The SDP does not parse.
    #[error("the SDP answer does not parse: {0}")]
    Sdp(SdpError),
    /// No audio stream in the answer.
    #[error("the SDP answer has no audio stream")]
    NoAudio,
    /// The audio stream was refused (port 0).
    #[error("the far end rejected the audio stream (port 0)")]
    Rejected,
    /// No usable connection address (missing, or 0.0.0.0 hold).
    #[error("the SDP answer has no usable media address")]
    NoAddress,
    /// PCMU not among the answered formats.
    #[error("the far end did not accept PCMU (answered formats: {0})")]
    NoPcmu(String),
    /// Plain RTP answered to a secured offer (R-MODE-3).
    #[error("the far end answered {0} to a secured (RTP/SAVP) offer: no SRTP")]
    PlainOnSecured(String),
    /// No `a=crypto` line of the answer accepts one of ours (R-MODE-3).
    #[error("no a=crypto line of the answer accepts one of ours (offered {offered})")]
    NoAcceptableCrypto {
        /// What we offered, for the message.
        offered: String,
    },
    /// SRTP answered to a plain offer.
    #[error("the far end answered {0} with keys to a plain RTP/AVP offer")]
    SecureOnPlain(String),
}

/// Our offer, with the keys we offered (needed to read the answer).
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    sdp: Sdp,
    crypto: Vec<CryptoAttribute>,
    secured: bool,
}

fn line(kind: char, value: impl Into<String>) -> Line {
    Line {
        kind,
        value: value.into(),
    }
}

impl Offer {
    /// An offer for media at `local` (the probe's UDP socket); `session_id` fills `o=`.
    pub(crate) fn new(
        local: SocketAddr,
        secured: bool,
        session_id: u64,
    ) -> Result<Self, RandomError> {
        let family = match local.ip() {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let ip = local.ip();
        let crypto = if secured {
            sdes::offer(&OFFERED_SUITES)?
        } else {
            Vec::new()
        };
        let mut lines = vec![
            line('a', format!("rtpmap:{PCMU} PCMU/8000")),
            line(
                'a',
                format!("rtpmap:{TELEPHONE_EVENT} telephone-event/8000"),
            ),
            line('a', format!("fmtp:{TELEPHONE_EVENT} 0-16")),
            line('a', "ptime:20"),
            line('a', "sendrecv"),
        ];
        lines.extend(crypto.iter().map(|c| line('a', format!("crypto:{c}"))));
        let sdp = Sdp {
            session: vec![
                line('v', "0"),
                line(
                    'o',
                    format!("mediagate {session_id} {session_id} IN {family} {ip}"),
                ),
                line('s', "mediagate test-connectivity"),
                line('c', format!("IN {family} {ip}")),
                line('t', "0 0"),
            ],
            media: vec![MediaSection {
                media: "audio".into(),
                port: local.port(),
                port_count: None,
                proto: if secured { "RTP/SAVP" } else { "RTP/AVP" }.into(),
                formats: vec![PCMU.to_string(), TELEPHONE_EVENT.to_string()],
                lines,
            }],
        };
        Ok(Self {
            sdp,
            crypto,
            secured,
        })
    }

    /// The offer as an SDP body.
    pub(crate) fn body(&self) -> Vec<u8> {
        self.sdp.to_bytes()
    }

    /// The offer (tests hand it to a far end).
    #[cfg(test)]
    pub(crate) fn sdp(&self) -> &Sdp {
        &self.sdp
    }

    /// Checks the far end's answer (the 2xx body) and extracts its media address and keys.
    pub(crate) fn accept(&self, body: &[u8]) -> Result<Answer, AnswerError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(AnswerError::Missing);
        }
        let answer = Sdp::parse(body).map_err(AnswerError::Sdp)?;
        let (i, m) = answer
            .media
            .iter()
            .enumerate()
            .find(|(_, m)| m.media.eq_ignore_ascii_case("audio"))
            .ok_or(AnswerError::NoAudio)?;
        if m.port == 0 {
            return Err(AnswerError::Rejected);
        }
        let remote = answer.rtp_address(i).ok_or(AnswerError::NoAddress)?;
        if !m.formats.iter().any(|f| f == &PCMU.to_string()) {
            return Err(AnswerError::NoPcmu(m.formats.join(" ")));
        }
        let has_crypto = m.crypto_lines().next().is_some();
        let srtp =
            if self.secured {
                if !m.is_savp() {
                    return Err(AnswerError::PlainOnSecured(m.proto.clone()));
                }
                let (ours, theirs) = sdes::match_answer(&self.crypto, m.crypto_lines())
                    .ok_or_else(|| AnswerError::NoAcceptableCrypto {
                        offered: OFFERED_SUITES
                            .iter()
                            .map(|s| s.sdes_name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                Some(SrtpKeys {
                    suite: ours.profile(),
                    tag: ours.tag,
                    tx: ours.key.clone(),
                    rx: theirs.key,
                })
            } else {
                if m.is_savp() || has_crypto {
                    return Err(AnswerError::SecureOnPlain(m.proto.clone()));
                }
                None
            };
        Ok(Answer {
            remote,
            proto: m.proto.clone(),
            srtp,
        })
    }
}

#[cfg(test)]
mod tests {
    use mediagate_sip_proto::sdp::MediaLeg;

    use super::*;

    const LOCAL: &str = "127.0.0.1:30000";
    const FAR: &str = "192.0.2.9:40000";

    #[test]
    fn secured_offer_is_savp_with_one_crypto_line_per_offered_suite() {
        let o = Offer::new(LOCAL.parse().unwrap(), true, 42).unwrap();
        let text = String::from_utf8(o.body()).unwrap();
        assert!(text.contains("m=audio 30000 RTP/SAVP 0 101\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"), "{text}");
        assert!(
            text.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("a=crypto:1 AEAD_AES_128_GCM inline:"),
            "{text}"
        );
        assert!(
            text.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{text}"
        );
        assert_eq!(text.matches("a=crypto:").count(), 2, "{text}");
        // It is valid SDP for our own parser.
        let parsed = Sdp::parse(text.as_bytes()).unwrap();
        assert_eq!(&parsed, o.sdp());
    }

    #[test]
    fn plain_offer_is_avp_without_keys() {
        let o = Offer::new("[::1]:30002".parse().unwrap(), false, 1).unwrap();
        let text = String::from_utf8(o.body()).unwrap();
        assert!(text.contains("m=audio 30002 RTP/AVP 0 101\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(!text.contains("crypto"), "{text}");
    }

    /// The gateway's own per-leg SDP code plays the far end: it answers with the strongest
    /// suite we offered and a fresh key of its own.
    #[test]
    fn secured_answer_from_a_media_leg_gives_both_keys() {
        let o = Offer::new(LOCAL.parse().unwrap(), true, 42).unwrap();
        let mut far = MediaLeg::new(FAR.parse().unwrap(), true);
        let params = far.on_remote_offer(o.sdp()).unwrap();
        let answer_sdp = far.local_answer(o.sdp());
        let a = o.accept(&answer_sdp.to_bytes()).unwrap();
        assert_eq!(a.remote, FAR.parse().unwrap());
        assert_eq!(a.proto, "RTP/SAVP");
        let keys = a.srtp.unwrap();
        assert_eq!(keys.suite, SrtpProfile::AeadAes128Gcm);
        assert_eq!(keys.tag, 1);
        // The far end decrypts with our key and encrypts with the one it answered.
        let (far_rx, far_tx) = params[0].keys.clone().unwrap();
        assert_eq!(keys.tx, far_rx);
        assert_eq!(keys.rx, far_tx);
        assert_ne!(keys.tx, keys.rx);
    }

    #[test]
    fn plain_answer_from_a_media_leg() {
        let o = Offer::new(LOCAL.parse().unwrap(), false, 42).unwrap();
        let mut far = MediaLeg::new(FAR.parse().unwrap(), false);
        far.on_remote_offer(o.sdp()).unwrap();
        let a = o.accept(&far.local_answer(o.sdp()).to_bytes()).unwrap();
        assert_eq!(a.remote, FAR.parse().unwrap());
        assert_eq!(a.srtp, None);
    }

    fn answer(m: &str, extra: &str) -> Vec<u8> {
        format!("v=0\r\no=x 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm={m}\r\n{extra}")
            .into_bytes()
    }

    #[test]
    fn unusable_answers_are_named() {
        let sec = Offer::new(LOCAL.parse().unwrap(), true, 1).unwrap();
        let plain = Offer::new(LOCAL.parse().unwrap(), false, 1).unwrap();
        assert_eq!(sec.accept(b""), Err(AnswerError::Missing));
        assert!(matches!(sec.accept(b"x"), Err(AnswerError::Sdp(_))));
        assert_eq!(
            plain.accept(&answer("video 4000 RTP/AVP 96", "")),
            Err(AnswerError::NoAudio)
        );
        assert_eq!(
            plain.accept(&answer("audio 0 RTP/AVP 0", "")),
            Err(AnswerError::Rejected)
        );
        assert_eq!(
            plain.accept(&answer("audio 4000 RTP/AVP 8", "")),
            Err(AnswerError::NoPcmu("8".into()))
        );
        assert_eq!(
            sec.accept(&answer("audio 4000 RTP/AVP 0", "")),
            Err(AnswerError::PlainOnSecured("RTP/AVP".into()))
        );
        // A key for a tag we never offered (or a suite we did not offer on that tag).
        let bogus = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        assert!(matches!(
            sec.accept(&answer("audio 4000 RTP/SAVP 0", bogus)),
            Err(AnswerError::NoAcceptableCrypto { .. })
        ));
        assert_eq!(
            plain.accept(&answer("audio 4000 RTP/SAVP 0", bogus)),
            Err(AnswerError::SecureOnPlain("RTP/SAVP".into()))
        );
        let ok = plain
            .accept(&answer("audio 4000 RTP/AVP 0 101", ""))
            .unwrap();
        assert_eq!(ok.remote, "192.0.2.9:4000".parse().unwrap());
    }
}
