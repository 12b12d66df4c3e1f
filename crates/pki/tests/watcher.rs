//! The directory watcher end to end (R-CERT-6): a renewed certificate dropped into the store
//! (written elsewhere and renamed in, as certbot and `mv` do) is picked up without a restart,
//! new handshakes present it, established connections carry on; an unusable file changes
//! nothing; a new trust anchor is picked up.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mediagate_pki::reload::{WatchConfig, watch};
use mediagate_pki::testpki::{LeafSpec, TestPki};
use mediagate_pki::{Clock, FixedClock, Reloader};

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn renewal_is_picked_up_without_restart() {
    let pki = TestPki::generate(real_now());
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in(certs.path().parent().unwrap()).unwrap();
    std::fs::write(trust.path().join("root.pem"), &pki.root_pem).unwrap();
    pki.server.write_to(certs.path(), "current");

    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(pki.now()));
    let reloader =
        Arc::new(Reloader::start(certs.path(), trust.path(), None, clock.now()).unwrap());
    let server =
        mediagate_pki::tls::server_config(reloader.certs(), reloader.trust(), clock.clone())
            .unwrap();
    let _watch = watch(
        reloader.clone(),
        clock.clone(),
        WatchConfig::default().debounce(Duration::from_millis(100)),
    )
    .unwrap();
    let (addr, _rx) = start_server(server).await;
    let client = plain_client(
        Some(&pki.client),
        pki.root_der(),
        &[&rustls::version::TLS13],
    );
    let (mut before, old) = connect(client.clone(), addr, "server.test").await.unwrap();

    // Renewal: written in a staging directory, renamed into the store.
    let renewed = pki.issue(&LeafSpec::new("server.test", pki.now(), 365));
    renewed.write_to(staging.path(), "renewed");
    std::fs::rename(
        staging.path().join("renewed.key"),
        certs.path().join("renewed.key"),
    )
    .unwrap();
    std::fs::rename(
        staging.path().join("renewed.crt"),
        certs.path().join("renewed.crt"),
    )
    .unwrap();
    let want = mediagate_pki::CertFacts::from_der(&renewed.chain()[0])
        .unwrap()
        .sha1_thumbprint;
    wait_until("the renewed certificate is selected", || {
        reloader.selected().0.sha1_thumbprint == want
    })
    .await;

    let (mut after, new) = connect(client.clone(), addr, "server.test").await.unwrap();
    assert_eq!(new.sha1_thumbprint, want);
    assert_ne!(old.sha1_thumbprint, want);
    ping(&mut before, "old connection").await.unwrap();
    ping(&mut after, "new connection").await.unwrap();

    // Breaking the store (the renewed cert replaced by garbage, the old one removed) changes
    // nothing: the reload is refused and the renewed certificate stays in use.
    std::fs::remove_file(certs.path().join("current.crt")).unwrap();
    std::fs::write(staging.path().join("garbage"), "garbage").unwrap();
    std::fs::rename(
        staging.path().join("garbage"),
        certs.path().join("renewed.crt"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(reloader.selected().0.sha1_thumbprint, want);
    let (_c, still) = connect(client.clone(), addr, "server.test").await.unwrap();
    assert_eq!(still.sha1_thumbprint, want);

    // A new trust anchor is picked up.
    std::fs::write(trust.path().join("foreign.pem"), &pki.foreign_root_pem).unwrap();
    wait_until("the trust store has two anchors", || {
        reloader.trust().store().certs.len() == 2
    })
    .await;
}

#[tokio::test]
async fn the_watcher_runs_the_expiry_check_periodically() {
    let pki = TestPki::generate(real_now());
    let certs = tempfile::tempdir().unwrap();
    let trust = tempfile::tempdir().unwrap();
    pki.server.write_to(certs.path(), "current"); // 90 days left
    let clock = Arc::new(FixedClock::new(pki.now()));
    let reloader =
        Arc::new(Reloader::start(certs.path(), trust.path(), None, clock.now()).unwrap());
    let not_after = reloader.selected().0.not_after;
    let _watch = watch(
        reloader.clone(),
        clock.clone(),
        WatchConfig::default().expiry_interval(Duration::from_millis(100)),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        reloader.last_expiry_report(),
        None,
        "nothing due with 90 days left"
    );
    let near = not_after - Duration::from_secs(10 * 24 * 3600);
    clock.set(near);
    wait_until("a warning is reported", || {
        reloader.last_expiry_report() == Some(near)
    })
    .await;
}
