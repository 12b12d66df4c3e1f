//! A short verified load run through the relay (part of the test suite):
//! every packet must arrive, decrypt and match, with no relay drops.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use std::process::Command;

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate-load"))
        .args([
            "--duration",
            "2",
            "--progress",
            "0",
            "--json",
            "--ports",
            "46000-47999",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mediagate-load {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(r: &serde_json::Value, what: &str) {
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0, "{what}: nothing sent");
    // The report says when the last packet left: never before the schedule
    // ends, and the rate it states follows from it.
    let send_secs = r["send_seconds"].as_f64().unwrap();
    assert!(send_secs >= 2.0, "{what}: sending ended early: {r}");
    let pps = r["sent_pps"].as_f64().unwrap();
    assert!(
        (pps - sent as f64 / send_secs).abs() < 1.0,
        "{what}: sent_pps {pps} vs {sent} in {send_secs} s"
    );
    assert_eq!(
        r["received"].as_u64().unwrap(),
        sent,
        "{what}: every packet arrives: {r}"
    );
    assert_eq!(r["lost"].as_u64().unwrap(), 0, "{what}: {r}");
    assert_eq!(r["corrupt"].as_u64().unwrap(), 0, "{what}: {r}");
    let drops: u64 = r["relay_drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(drops, 0, "{what}: relay drops {r}");
    assert!(
        r["relay_cpu_ns"].as_u64().unwrap() > 0,
        "{what}: relay CPU read from /proc"
    );
}

#[test]
fn plain_to_srtp_one_way() {
    check(
        &run(&[
            "--streams",
            "40",
            "--a",
            "none",
            "--b",
            "AES_CM_128_HMAC_SHA1_80",
        ]),
        "plain->SRTP",
    );
}

#[test]
fn srtp_to_srtp_two_way_gcm() {
    check(
        &run(&[
            "--streams",
            "40",
            "--two-way",
            "--a",
            "AEAD_AES_128_GCM",
            "--b",
            "AES_CM_128_HMAC_SHA1_80",
        ]),
        "SRTP<->SRTP",
    );
}

#[test]
fn rejects_an_unknown_suite() {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate-load"))
        .args(["--b", "ROT13"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown crypto suite"));
}
