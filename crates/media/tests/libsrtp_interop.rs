//! Cross-checks with libsrtp through pylibsrtp (Debian `python3-pylibsrtp`,
//! run with `/usr/bin/python3`): what we protect libsrtp unprotects, what
//! libsrtp protects we unprotect; random shapes across a sequence wrap;
//! tampered packets refused on both sides.
//!
//! This test fails (it does not skip) when pylibsrtp is missing: `.ci/run`
//! installs it.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

mod common;

use base64::Engine as _;
use common::{libsrtp as oracle, random_rtp, rng, rtcp_rr, with_room};
use mediagate_media::SrtpError;
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use rand::Rng;
use serde_json::{Value, json};

fn hexes(v: &Value) -> Vec<Option<Vec<u8>>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().map(|s| hex::decode(s).unwrap()))
        .collect()
}

/// The suites libsrtp (as packaged) supports; pylibsrtp has no AES-256-CM.
fn libsrtp_profiles() -> Vec<SrtpProfile> {
    let v = oracle(&json!({"list_profiles": true}));
    v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn libsrtp_supports_the_required_suites() {
    let ps = libsrtp_profiles();
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ] {
        assert!(ps.contains(&p), "{p} missing from the oracle");
    }
}

#[test]
fn srtp_and_srtcp_both_ways_with_libsrtp() {
    for (n, p) in libsrtp_profiles().into_iter().enumerate() {
        let mut r = rng(1000 + n as u64);
        let key = MasterKey::generate(p).unwrap();
        let mut tx = SrtpContext::new(&key, SrtpConfig::default());
        let ssrc: u32 = r.random();

        // 300 packets from seq 65400: crosses the wrap (ROC 0 -> 1).
        let plain: Vec<Vec<u8>> = (0..300u16)
            .map(|i| {
                let len = r.random_range(1..1200);
                random_rtp(&mut r, ssrc, 65_400u16.wrapping_add(i), len)
            })
            .collect();
        let mut ours = vec![];
        for pkt in &plain {
            let mut buf = with_room(pkt, tx.rtp_overhead());
            let n = tx.protect_rtp(&mut buf, pkt.len()).unwrap();
            ours.push(buf[..n].to_vec());
        }
        // A tampered copy of packet 10 and a replay of packet 5, appended.
        let mut tampered = ours[10].clone();
        tampered[20] ^= 0x40;
        let mut srtp_in: Vec<String> = ours.iter().map(hex::encode).collect();
        srtp_in.push(hex::encode(&tampered));
        srtp_in.push(hex::encode(&ours[5]));

        let rtcp_plain: Vec<Vec<u8>> = (0..20u8).map(|i| rtcp_rr(ssrc, i)).collect();
        let mut ours_rtcp = vec![];
        for pkt in &rtcp_plain {
            let mut buf = with_room(pkt, tx.rtcp_overhead());
            let n = tx.protect_rtcp(&mut buf, pkt.len()).unwrap();
            ours_rtcp.push(hex::encode(&buf[..n]));
        }

        let reply = oracle(&json!({
            "profile": p.sdes_name(),
            "key": base64::engine::general_purpose::STANDARD.encode(key.key_and_salt()),
            "srtp": srtp_in,
            "srtcp": ours_rtcp,
            "rtp": plain.iter().map(hex::encode).collect::<Vec<_>>(),
            "rtcp": rtcp_plain.iter().map(hex::encode).collect::<Vec<_>>(),
        }));

        // libsrtp decrypts everything we sent...
        let decrypted = hexes(&reply["rtp_from_srtp"]);
        for (i, pkt) in plain.iter().enumerate() {
            assert_eq!(
                decrypted[i].as_deref(),
                Some(&pkt[..]),
                "{p}: libsrtp unprotects our packet {i}"
            );
        }
        // ...and refuses the tampered one and the replay.
        assert_eq!(
            decrypted[300], None,
            "{p}: libsrtp refuses a tampered packet"
        );
        assert_eq!(decrypted[301], None, "{p}: libsrtp refuses a replay");
        for (i, d) in hexes(&reply["rtcp_from_srtcp"]).iter().enumerate() {
            assert_eq!(
                d.as_deref(),
                Some(&rtcp_plain[i][..]),
                "{p}: libsrtp unprotects our SRTCP {i}"
            );
        }

        // We decrypt everything libsrtp sent; tampered and replayed refused.
        let mut rx = SrtpContext::new(&key, SrtpConfig::default());
        let theirs = hexes(&reply["srtp"]);
        for (i, wire) in theirs.iter().enumerate() {
            let wire = wire.as_ref().unwrap();
            assert!(wire.len() > plain[i].len(), "{p}: libsrtp added a tag");
            if i == 10 {
                let mut bad = wire.clone();
                bad[wire.len() - 1] ^= 1;
                assert_eq!(
                    rx.unprotect_rtp(&mut bad, wire.len()),
                    Err(SrtpError::AuthenticationFailed)
                );
            }
            let mut buf = wire.clone();
            let n = rx
                .unprotect_rtp(&mut buf, wire.len())
                .unwrap_or_else(|e| panic!("{p} packet {i}: {e}"));
            assert_eq!(
                &buf[..n],
                &plain[i][..],
                "{p}: we unprotect libsrtp's packet {i}"
            );
        }
        let again = theirs[7].clone().unwrap();
        assert_eq!(
            rx.unprotect_rtp(&mut again.clone(), again.len()),
            Err(SrtpError::Replayed)
        );
        assert_eq!(rx.roc(ssrc), Some(1), "{p}: crossed the wrap");
        for (i, wire) in hexes(&reply["srtcp"]).iter().enumerate() {
            let mut buf = wire.clone().unwrap();
            let n = rx
                .unprotect_rtcp(&mut buf, wire.as_ref().unwrap().len())
                .unwrap();
            assert_eq!(
                &buf[..n],
                &rtcp_plain[i][..],
                "{p}: we unprotect libsrtp's SRTCP {i}"
            );
        }
    }
}
