//! Shared helpers for the interop tests: RTP/RTCP packets of random shapes.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use std::io::Write;
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A deterministic RNG so failures reproduce.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// An RTP packet with random CSRC count, optional header extension and
/// optional padding, with the given SSRC and sequence number.
pub fn random_rtp(rng: &mut StdRng, ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let cc = if rng.random_bool(0.3) {
        rng.random_range(1..=15u8)
    } else {
        0
    };
    let ext = rng.random_bool(0.3);
    let pad = if rng.random_bool(0.2) {
        rng.random_range(1..=8u8)
    } else {
        0
    };
    let mut p = vec![0x80 | (u8::from(pad > 0) << 5) | (u8::from(ext) << 4) | cc];
    p.push(rng.random_range(0..128u8) | if rng.random_bool(0.1) { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..cc {
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    }
    if ext {
        // RFC 8285 one-byte extensions: one 3-octet element per word, so
        // every implementation agrees on the header length.
        let words = rng.random_range(0..4u16);
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&words.to_be_bytes());
        for w in 0..words {
            p.push(((w as u8 + 1) << 4) | 2);
            p.extend_from_slice(&rng.random::<[u8; 3]>());
        }
    }
    for _ in 0..payload_len {
        p.push(rng.random());
    }
    if pad > 0 {
        p.extend(std::iter::repeat_n(0, usize::from(pad - 1)));
        p.push(pad);
    }
    p
}

/// An RTCP receiver report with one report block (32 octets), SSRC `ssrc`.
pub fn rtcp_rr(ssrc: u32, n: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, n]);
    p.extend_from_slice(&[0, 0, 0x10, n, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
    p
}

/// Copies `pkt` into a buffer with `spare` octets of room after it.
pub fn with_room(pkt: &[u8], spare: usize) -> Vec<u8> {
    let mut b = pkt.to_vec();
    b.resize(pkt.len() + spare, 0);
    b
}

/// Runs the libsrtp oracle (`tests/libsrtp_oracle.py`, pylibsrtp under
/// `/usr/bin/python3`) on one JSON request. Fails, never skips, when
/// python3-pylibsrtp is missing.
pub fn libsrtp(req: &serde_json::Value) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libsrtp_oracle.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/python3 (install python3-pylibsrtp): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "libsrtp oracle failed (is python3-pylibsrtp installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
