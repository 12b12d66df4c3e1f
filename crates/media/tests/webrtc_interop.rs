//! Cross-checks with `webrtc-srtp` 0.17, an independent implementation:
//! what we protect it unprotects and the reverse, for every suite both
//! support, random packet shapes, across a sequence-number wrap.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

mod common;

use common::{random_rtp, rng, rtcp_rr, with_room};
use mediagate_media::SrtpError;
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use rand::Rng;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn theirs(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AesCm256HmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        _ => unreachable!("new profile without a webrtc-srtp mapping"),
    }
}

fn their_ctx(key: &MasterKey) -> Context {
    Context::new(key.key(), key.salt(), theirs(key.profile()), None, None).unwrap()
}

#[test]
fn rtp_both_ways_every_suite_across_wrap() {
    for (n, p) in SrtpProfile::ALL.into_iter().enumerate() {
        let mut r = rng(n as u64);
        let key = MasterKey::generate(p).unwrap();
        let mut ours_tx = SrtpContext::new(&key, SrtpConfig::default());
        let mut ours_rx = SrtpContext::new(&key, SrtpConfig::default());
        let mut their_tx = their_ctx(&key);
        let mut their_rx = their_ctx(&key);
        let ssrc = r.random();
        for i in 0..400u16 {
            let seq = 65_300u16.wrapping_add(i);
            let len = r.random_range(0..1200);
            let pkt = random_rtp(&mut r, ssrc, seq, len);

            // ours -> theirs
            let mut buf = with_room(&pkt, ours_tx.rtp_overhead());
            let n = ours_tx.protect_rtp(&mut buf, pkt.len()).unwrap();
            let plain = their_rx
                .decrypt_rtp(&buf[..n])
                .unwrap_or_else(|e| panic!("{p} seq {seq}: {e}"));
            assert_eq!(
                &plain[..],
                &pkt[..],
                "{p} seq {seq}: webrtc-srtp decrypts ours"
            );

            // theirs -> ours
            let wire = their_tx.encrypt_rtp(&pkt).unwrap();
            assert_eq!(
                &wire[..],
                &buf[..n],
                "{p} seq {seq}: same bytes on the wire"
            );
            let mut buf = wire.to_vec();
            let m = ours_rx.unprotect_rtp(&mut buf, wire.len()).unwrap();
            assert_eq!(&buf[..m], &pkt[..], "{p} seq {seq}: we decrypt theirs");
        }
        assert_eq!(ours_rx.roc(ssrc), Some(1), "{p} crossed the wrap");
    }
}

#[test]
fn rtcp_both_ways_every_suite() {
    for p in SrtpProfile::ALL {
        let key = MasterKey::generate(p).unwrap();
        let mut ours_tx = SrtpContext::new(&key, SrtpConfig::default());
        let mut ours_rx = SrtpContext::new(&key, SrtpConfig::default());
        let mut their_tx = their_ctx(&key);
        let mut their_rx = their_ctx(&key);
        for i in 0..50u8 {
            let pkt = rtcp_rr(0x5eed_0000 | u32::from(i % 3), i);
            let mut buf = with_room(&pkt, ours_tx.rtcp_overhead());
            let n = ours_tx.protect_rtcp(&mut buf, pkt.len()).unwrap();
            let plain = their_rx
                .decrypt_rtcp(&buf[..n])
                .unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(&plain[..], &pkt[..], "{p}");

            let wire = their_tx.encrypt_rtcp(&pkt).unwrap();
            let mut buf = wire.to_vec();
            let m = ours_rx.unprotect_rtcp(&mut buf, wire.len()).unwrap();
            assert_eq!(&buf[..m], &pkt[..], "{p}");
        }
    }
}

#[test]
fn tampered_and_wrong_key_packets_from_webrtc_are_refused() {
    for p in SrtpProfile::ALL {
        let mut r = rng(99);
        let key = MasterKey::generate(p).unwrap();
        let other = MasterKey::generate(p).unwrap();
        let mut their_tx = their_ctx(&key);
        let mut ours_rx = SrtpContext::new(&key, SrtpConfig::default());
        let mut ours_wrong = SrtpContext::new(&other, SrtpConfig::default());
        for seq in 0..20u16 {
            let pkt = random_rtp(&mut r, 42, seq, 160);
            let wire = their_tx.encrypt_rtp(&pkt).unwrap().to_vec();
            let mut bad = wire.clone();
            let at = r.random_range(0..bad.len());
            bad[at] ^= 1 << r.random_range(0..8);
            let e = ours_rx
                .unprotect_rtp(&mut bad.clone(), bad.len())
                .unwrap_err();
            assert!(
                matches!(e, SrtpError::AuthenticationFailed | SrtpError::Malformed(_)),
                "{p}: {e:?}"
            );
            assert_eq!(
                ours_wrong.unprotect_rtp(&mut wire.clone(), wire.len()),
                Err(SrtpError::AuthenticationFailed)
            );
            // Truncated.
            let cut = r.random_range(1..wire.len());
            assert!(
                ours_rx
                    .unprotect_rtp(&mut wire.clone(), wire.len() - cut)
                    .is_err()
            );
            // The genuine one still passes, once.
            let ok = ours_rx.unprotect_rtp(&mut wire.clone(), wire.len());
            assert!(ok.is_ok(), "{p} seq {seq}: {ok:?} after tampering at {at}");
            assert_eq!(
                ours_rx.unprotect_rtp(&mut wire.clone(), wire.len()),
                Err(SrtpError::Replayed)
            );
        }
    }
}
