//! The stable event codes are logged where docs/events.md says, with the facts R-CERT-4 asks
//! for (issuer, serial, SHA-1 thumbprint, SHA-256 fingerprint, expiry).
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mediagate_pki::events;
use mediagate_pki::facts::format_time;
use mediagate_pki::testpki::TestPki;
use mediagate_pki::tls::{PeerVerifier, TrustAnchors};
use mediagate_pki::{Identity, Reloader, TrustStore};
use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerifier;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[test]
fn every_event_code_is_logged_with_its_facts() {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let pki = TestPki::generate(now);
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        // Empty store → generated (GW2002) and selected (GW2001); empty trust store (GW2008).
        let r = Reloader::start(
            certs.path(),
            trust.path(),
            Some(&Identity::new("gw.test")),
            now,
        )
        .unwrap();
        let log = cap.take();
        let (f, _) = r.selected();
        for code in [
            events::CERT_GENERATED,
            events::CERT_SELECTED,
            events::TRUST_LOADED,
        ] {
            assert!(log.contains(code), "{code} in {log}");
        }
        let selected = log
            .lines()
            .find(|l| l.contains(events::CERT_SELECTED))
            .unwrap();
        for fact in [
            &f.issuer,
            &f.serial,
            &f.sha1_thumbprint,
            &f.sha256_fingerprint,
            &format_time(f.not_after),
        ] {
            assert!(selected.contains(fact.as_str()), "{fact} in {selected}");
        }

        // A CA-issued certificate arrives → GW2003 changed.
        pki.server.write_to(certs.path(), "ca");
        {
            use std::os::unix::fs::PermissionsExt as _;
            let key = certs.path().join("ca.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        r.reload_certs(now);
        let log = cap.take();
        assert!(log.contains(events::CERT_CHANGED), "{log}");
        // The key was written world-readable: GW2011 (the generated one, 0600, is not named).
        assert!(
            log.contains(events::KEY_FILE_TOO_OPEN) && log.contains("ca.key"),
            "{log}"
        );
        let open_lines = log
            .lines()
            .filter(|l| l.contains(events::KEY_FILE_TOO_OPEN));
        assert_eq!(open_lines.count(), 1, "{log}");

        // Everything broken → GW2007 per candidate, GW2006 refused.
        for e in std::fs::read_dir(certs.path()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::remove_file(p).unwrap();
            }
        }
        pki.expired.write_to(certs.path(), "old");
        r.reload_certs(now);
        let log = cap.take();
        assert!(
            log.contains(events::CERT_CANDIDATE_UNUSABLE) && log.contains("old.crt"),
            "{log}"
        );
        assert!(log.contains(events::CERT_RELOAD_REFUSED), "{log}");

        // Expiry: warning (GW2004) and error (GW2005).
        let na = r.selected().0.not_after;
        r.check_expiry(na - DAY * 10);
        let log = cap.take();
        assert!(
            log.contains(events::CERT_EXPIRING) && log.contains("WARN"),
            "{log}"
        );
        r.check_expiry(na + DAY);
        let log = cap.take();
        assert!(
            log.contains(events::CERT_EXPIRED) && log.contains("ERROR"),
            "{log}"
        );

        // Trust reload refused (GW2009).
        std::fs::write(trust.path().join("junk.pem"), "junk").unwrap();
        r.reload_trust();
        let log = cap.take();
        assert!(
            log.contains(events::TRUST_RELOAD_REFUSED) && log.contains("junk.pem"),
            "{log}"
        );

        // Peer refused (GW2010) with the reason.
        let anchors = Arc::new(
            TrustAnchors::new(TrustStore::from_certs(vec![pki.root_der()]).unwrap()).unwrap(),
        );
        let v = PeerVerifier::new(anchors);
        let chain = pki.expired.chain();
        let t = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap());
        assert!(v.verify_client_cert(&chain[0], &chain[1..], t).is_err());
        let log = cap.take();
        assert!(
            log.contains(events::PEER_REFUSED)
                && log.contains("expired")
                && log.contains("expired.test"),
            "{log}"
        );
    });
}
