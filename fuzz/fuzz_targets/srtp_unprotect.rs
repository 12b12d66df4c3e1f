//! Fuzzes SRTP/SRTCP unprotect with real keys (and protect, and round trips
//! of fuzzer-shaped packets with fuzzer-chosen corruption): must never panic,
//! and a packet that was not corrupted must come back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediagate_media::srtp::{MasterKey, Mki, SrtpConfig, SrtpContext, SrtpProfile};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some((&flip, pkt)) = rest.split_first() else { return };
    let profile = SrtpProfile::ALL[usize::from(sel & 7) % SrtpProfile::ALL.len()];
    let mki = if sel & 0x08 != 0 { Mki::new(u64::from(sel), 2) } else { None };
    let key = MasterKey::new(profile, &[0x5a; 46][..profile.master_len()]).unwrap().with_mki(mki);
    let mut rx = SrtpContext::new(&key, SrtpConfig::default());
    if sel & 0x10 != 0 {
        rx.allow_restart(3);
    }
    let mut buf = [0u8; 2048];
    let n = pkt.len().min(1900);
    let rtcp = sel & 0x20 != 0;

    // 1. Raw bytes straight into unprotect.
    buf[..n].copy_from_slice(&pkt[..n]);
    let _ = if rtcp { rx.unprotect_rtcp(&mut buf, n) } else { rx.unprotect_rtp(&mut buf, n) };

    // 2. Protect the bytes as a packet, optionally corrupt one byte, unprotect.
    let mut tx = SrtpContext::new(&key, SrtpConfig::default());
    buf[..n].copy_from_slice(&pkt[..n]);
    if let Some(b) = buf.first_mut() {
        *b = 0x80 | (*b & 0x3f);
    }
    let orig = buf;
    let sealed = if rtcp { tx.protect_rtcp(&mut buf, n) } else { tx.protect_rtp(&mut buf, n) };
    if let Ok(m) = sealed {
        let corrupt = sel & 0x40 != 0 && m > 0;
        if corrupt {
            buf[usize::from(flip) % m] ^= 0x01 | (flip >> 4);
        }
        let mut rx = SrtpContext::new(&key, SrtpConfig::default());
        let r = if rtcp { rx.unprotect_rtcp(&mut buf, m) } else { rx.unprotect_rtp(&mut buf, m) };
        if corrupt {
            // Every octet is authenticated (or, for the MKI, compared).
            assert!(r.is_err(), "corruption went unnoticed");
        } else {
            let k = r.expect("an untouched packet must authenticate");
            assert_eq!(&buf[..k], &orig[..n]);
        }
    }
});
