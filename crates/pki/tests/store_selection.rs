//! Certificate store: candidate checks (R-CERT-1), ranking (R-CERT-2), generation (R-CERT-3),
//! reload keeping old material (R-CERT-6), expiry events through the reloader (R-CERT-5).
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, SystemTime};

use mediagate_pki::expiry::ExpiryEvent;
use mediagate_pki::facts::KeyPurposes;
use mediagate_pki::generate::{Identity, generate_self_signed};
use mediagate_pki::reload::ReloadOutcome;
use mediagate_pki::store::scan;
use mediagate_pki::testpki::{Leaf, LeafSpec, TestPki};
use mediagate_pki::{Reloader, Unusable};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    // A fixed instant: these tests never touch the system clock.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn names(scan: &mediagate_pki::StoreScan) -> Vec<String> {
    scan.ranked
        .iter()
        .map(|c| {
            c.cert_path
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn ranking_follows_r_cert_2_and_unusable_candidates_say_why() {
    let pki = TestPki::generate(now());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Usable: two CA-issued, two self-signed, with different remaining validity.
    pki.server.write_to(d, "ca-90d");
    pki.issue(&LeafSpec::new("gw.test", now(), 200))
        .write_to(d, "ca-200d");
    pki.self_signed.write_to(d, "ss-365d");
    let ss_old = Identity::new("old.test");
    let g = generate_self_signed(d, &ss_old, now() - DAY * 100).unwrap(); // 265 days left
    std::fs::rename(&g.cert_path, d.join("ss-265d.crt")).unwrap();
    std::fs::rename(&g.key_path, d.join("ss-265d.key")).unwrap();
    // A self-signed certificate with far longer validity still ranks after every CA-issued one.
    Leaf::self_signed(&LeafSpec::new("long.test", now(), 3000)).write_to(d, "ss-long");
    // Chain and key in one file.
    let combined = pki.issue(&LeafSpec::new("combined.test", now(), 30));
    std::fs::write(
        d.join("ca-30d-combined.pem"),
        format!("{}{}", combined.chain_pem, combined.key_pem),
    )
    .unwrap();

    // Unusable ones.
    pki.expired.write_to(d, "x-expired");
    pki.not_yet_valid.write_to(d, "x-future");
    pki.server_only.write_to(d, "x-serveronly");
    std::fs::write(d.join("x-mismatch.crt"), &pki.server.chain_pem).unwrap();
    std::fs::write(d.join("x-mismatch.key"), &pki.client.key_pem).unwrap();
    std::fs::write(d.join("x-nokey.crt"), &pki.client.chain_pem).unwrap();
    std::fs::write(d.join("x-garbage.pem"), "this is not PEM\n").unwrap();
    std::fs::write(d.join("x-badkey.crt"), &pki.client.chain_pem).unwrap();
    std::fs::write(
        d.join("x-badkey.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    // Ignored: dot-files, sub-directories, other extensions.
    std::fs::write(d.join(".tmp.crt"), "garbage").unwrap();
    std::fs::write(d.join("notes.txt"), "garbage").unwrap();
    std::fs::create_dir(d.join("pending")).unwrap();

    let s = scan(d, now()).unwrap();
    assert_eq!(
        names(&s),
        [
            "ca-200d",
            "ca-90d",
            "ca-30d-combined",
            "ss-long",
            "ss-365d",
            "ss-265d"
        ],
        "CA-issued by remaining validity, then self-signed by remaining validity"
    );
    assert_eq!(s.selected().unwrap().cert_path, d.join("ca-200d.crt"));
    assert!(s.ranked.iter().all(|c| c.certified_key().is_some()));

    let reason = |stem: &str| {
        s.unusable
            .iter()
            .find(|c| c.cert_path.file_stem().unwrap() == stem)
            .unwrap_or_else(|| panic!("{stem} listed as unusable"))
            .unusable()
            .cloned()
            .unwrap()
    };
    assert!(matches!(reason("x-expired"), Unusable::Expired { .. }));
    assert!(matches!(reason("x-future"), Unusable::NotYetValid { .. }));
    assert!(matches!(reason("x-serveronly"), Unusable::WrongPurpose(_)));
    assert_eq!(reason("x-mismatch"), Unusable::KeyMismatch);
    assert_eq!(reason("x-nokey"), Unusable::NoKey);
    assert!(matches!(reason("x-badkey"), Unusable::BadKey(_)));
    match reason("x-garbage") {
        Unusable::BadFile(msg) => assert!(msg.contains("x-garbage.pem"), "names the file: {msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.unusable.len(), 7);
    // Reasons print for admins.
    assert!(reason("x-mismatch").to_string().contains("does not match"));
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let err = scan("/nonexistent/mediagate-certs".as_ref(), now()).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/mediagate-certs"),
        "{err}"
    );
}

#[test]
fn generation_when_nothing_is_usable() {
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(now());
    pki.expired.write_to(certs.path(), "expired");
    let mut me = Identity::new("gw.example.com");
    me.addresses.push("192.0.2.10".parse().unwrap());
    me.addresses.push("2001:db8::1".parse().unwrap());

    let r = Reloader::start(certs.path(), trust.path(), Some(&me), now()).unwrap();
    let (facts, path) = r.selected();
    assert!(facts.self_signed);
    assert_eq!(facts.dns_names, vec!["gw.example.com".to_string()]);
    assert_eq!(facts.ip_addresses, me.addresses);
    assert_eq!(
        facts.purposes,
        KeyPurposes::Restricted {
            server_auth: true,
            client_auth: true
        }
    );
    assert_eq!(facts.common_name.as_deref(), Some("gw.example.com"));
    assert!(facts.not_before <= now() && facts.not_after >= now() + DAY * 364);
    let key = path.with_extension("key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key must be 0600");

    // Starting again uses the generated one; no second generation.
    let r2 = Reloader::start(certs.path(), trust.path(), Some(&me), now() + DAY).unwrap();
    assert_eq!(r2.selected().0.sha256_fingerprint, facts.sha256_fingerprint);
    let crts = std::fs::read_dir(certs.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "crt")
    });
    assert_eq!(crts.count(), 2, "expired + one generated");

    // Without an identity, nothing is generated and start fails.
    let empty = tempfile::tempdir().unwrap();
    assert!(Reloader::start(empty.path(), trust.path(), None, now()).is_err());
}

#[test]
fn generation_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let me = Identity::new("gw.example.com");
    let stem = format!("selfsigned-gw.example.com-{}", 1_800_000_000);
    std::fs::write(d.path().join(format!("{stem}.key")), "precious").unwrap();
    let err = generate_self_signed(d.path(), &me, now()).unwrap_err();
    assert!(err.to_string().contains(&format!("{stem}.key")), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.path().join(format!("{stem}.key"))).unwrap(),
        "precious"
    );
    assert!(!d.path().join(format!("{stem}.crt")).exists());
    // Bad names are refused before anything is written.
    assert!(generate_self_signed(d.path(), &Identity::new("bad name!"), now()).is_err());
}

#[test]
fn reload_swaps_to_better_and_keeps_old_when_nothing_is_usable() {
    let pki = TestPki::generate(now());
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    std::fs::write(trust.path().join("root.pem"), &pki.root_pem).unwrap();
    pki.server.write_to(certs.path(), "a");
    let r = Reloader::start(certs.path(), trust.path(), None, now()).unwrap();
    let first = r.selected().0;
    assert_eq!(r.reload_certs(now()), ReloadOutcome::Unchanged);

    // A renewed certificate with longer validity appears: selected on reload.
    let renewed = pki.issue(&LeafSpec::new("server.test", now(), 300));
    renewed.write_to(certs.path(), "b");
    assert_eq!(r.reload_certs(now()), ReloadOutcome::Changed);
    let second = r.selected().0;
    assert_ne!(first.sha256_fingerprint, second.sha256_fingerprint);
    let presented = mediagate_pki::CertFacts::from_der(&r.certs().current().cert[0]).unwrap();
    assert_eq!(presented.sha256_fingerprint, second.sha256_fingerprint);

    // Everything removed or broken: refused, the old one stays in use.
    for e in std::fs::read_dir(certs.path()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(certs.path().join("broken.crt"), "garbage").unwrap();
    match r.reload_certs(now()) {
        ReloadOutcome::Refused(why) => assert!(why.contains("broken.crt"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.selected().0.sha256_fingerprint, second.sha256_fingerprint);
    let presented = mediagate_pki::CertFacts::from_der(&r.certs().current().cert[0]).unwrap();
    assert_eq!(presented.sha256_fingerprint, second.sha256_fingerprint);

    // Trust store: a garbage file makes the reload refused, the anchors stay.
    std::fs::write(trust.path().join("bad.pem"), "garbage").unwrap();
    match r.reload_trust() {
        ReloadOutcome::Refused(why) => assert!(why.contains("bad.pem"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.trust().store().certs.len(), 1);
    std::fs::remove_file(trust.path().join("bad.pem")).unwrap();
    std::fs::write(trust.path().join("foreign.pem"), &pki.foreign_root_pem).unwrap();
    assert_eq!(r.reload_trust(), ReloadOutcome::Changed);
    assert_eq!(r.trust().store().certs.len(), 2);
    assert_eq!(r.reload_trust(), ReloadOutcome::Unchanged);
}

#[test]
fn expiry_events_through_the_reloader() {
    let pki = TestPki::generate(now());
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    pki.server.write_to(certs.path(), "a"); // 90 days
    let r = Reloader::start(certs.path(), trust.path(), None, now()).unwrap();
    let na = r.selected().0.not_after;
    assert_eq!(r.check_expiry(now()), ExpiryEvent::None);
    assert_eq!(r.days_left(now()), 90);
    assert_eq!(
        r.check_expiry(na - DAY * 30),
        ExpiryEvent::Warning { days_left: 30 }
    );
    assert_eq!(
        r.check_expiry(na - DAY * 30 + Duration::from_secs(3600)),
        ExpiryEvent::None
    );
    assert_eq!(
        r.check_expiry(na - DAY * 29),
        ExpiryEvent::Warning { days_left: 29 }
    );
    assert_eq!(
        r.check_expiry(na + Duration::from_secs(1)),
        ExpiryEvent::Expired { days_ago: 0 }
    );
    assert_eq!(
        r.check_expiry(na + Duration::from_secs(7200)),
        ExpiryEvent::None
    );
    assert_eq!(
        r.check_expiry(na + DAY * 2),
        ExpiryEvent::Expired { days_ago: 2 }
    );
    assert!(r.days_left(na + DAY * 2) < 0);
}
