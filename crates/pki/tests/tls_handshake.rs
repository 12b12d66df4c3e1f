//! Real tokio-rustls handshakes on 127.0.0.1 against our server and client configs:
//! mutual TLS, refusals with their reasons (R-CERT-7), hot swap (R-CERT-6), no resumption.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mediagate_pki::RefusalReason;
use mediagate_pki::TrustStore;
use mediagate_pki::testpki::{LeafSpec, TestPki};
use rustls::HandshakeKind;
use rustls::version::{TLS12, TLS13};

fn pki() -> TestPki {
    TestPki::generate(real_now())
}

#[tokio::test]
async fn mutual_tls_accepts_a_client_of_the_trusted_pki_and_names_it() {
    let pki = pki();
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    for versions in [&[&TLS12][..], &[&TLS13][..]] {
        let client = plain_client(Some(&pki.client), pki.root_der(), versions);
        let (mut conn, facts) = connect(client, addr, "server.test")
            .await
            .expect("accepted");
        assert_eq!(facts.dns_names, vec!["server.test".to_string()]);
        match verdict(&mut rx).await {
            Accepted::Ok(Some(id)) => {
                assert_eq!(id.fqdns, vec!["pbx.test".to_string()]);
                assert!(id.matches("PBX.test."));
            }
            other => panic!("expected acceptance, got {other:?}"),
        }
        ping(&mut conn, "ping").await.expect("echo");
    }
}

async fn refused_client(
    leaf: Option<&mediagate_pki::testpki::Leaf>,
    pki: &TestPki,
) -> Option<RefusalReason> {
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    let client = plain_client(leaf, pki.root_der(), &[&TLS13, &TLS12]);
    assert!(
        connect(client, addr, "server.test").await.is_err(),
        "client must be refused"
    );
    match verdict(&mut rx).await {
        Accepted::Refused(reason, _) => reason,
        Accepted::Ok(id) => panic!("refused client was accepted: {id:?}"),
    }
}

#[tokio::test]
async fn refusals_carry_the_reason() {
    let pki = pki();
    assert_eq!(
        refused_client(None, &pki).await,
        Some(RefusalReason::NoCertificate)
    );
    assert_eq!(
        refused_client(Some(&pki.expired), &pki).await,
        Some(RefusalReason::Expired)
    );
    assert_eq!(
        refused_client(Some(&pki.not_yet_valid), &pki).await,
        Some(RefusalReason::NotYetValid)
    );
    assert_eq!(
        refused_client(Some(&pki.foreign), &pki).await,
        Some(RefusalReason::UnknownIssuer)
    );
    assert_eq!(
        refused_client(Some(&pki.server_only), &pki).await,
        Some(RefusalReason::WrongPurpose)
    );
    assert_eq!(
        refused_client(Some(&pki.self_signed), &pki).await,
        Some(RefusalReason::UnknownIssuer)
    );
}

#[tokio::test]
async fn our_client_verifies_the_server_name_and_issuer() {
    let pki = pki();
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, _rx) = start_server(server).await;

    let (client, _, _) = our_client(&pki.client, vec![pki.root_der()], pki.now());
    connect(client.clone(), addr, "server.test")
        .await
        .expect("right name accepted");
    let err = connect(client, addr, "other.test")
        .await
        .expect_err("wrong name refused");
    assert_eq!(
        reason_of(&err),
        Some(RefusalReason::NameNotAllowed),
        "{err}"
    );

    let (foreign_client, _, _) = our_client(&pki.client, vec![pki.foreign_root_der()], pki.now());
    let err = connect(foreign_client, addr, "server.test")
        .await
        .expect_err("untrusted server refused");
    assert_eq!(reason_of(&err), Some(RefusalReason::UnknownIssuer), "{err}");
}

#[tokio::test]
async fn injected_time_decides_validity() {
    // The same PKI, judged one year later: the server's own view of time makes every client
    // certificate expired, without touching the system clock.
    let pki = pki();
    let later = pki.now() + std::time::Duration::from_secs(365 * 24 * 3600);
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], later);
    let (addr, mut rx) = start_server(server).await;
    let client = plain_client(Some(&pki.client), pki.root_der(), &[&TLS13]);
    assert!(connect(client, addr, "server.test").await.is_err());
    match verdict(&mut rx).await {
        Accepted::Refused(r, _) => assert_eq!(r, Some(RefusalReason::Expired)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn certificate_hot_swap_keeps_established_connections() {
    let pki = pki();
    let (server, certs, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, _rx) = start_server(server).await;
    let client = plain_client(Some(&pki.client), pki.root_der(), &[&TLS13, &TLS12]);

    let (mut before, old) = connect(client.clone(), addr, "server.test")
        .await
        .expect("before");
    let renewed = pki.issue(&LeafSpec::new("server.test", pki.now(), 200));
    certs.swap(renewed.certified_key());

    let (mut after, new) = connect(client.clone(), addr, "server.test")
        .await
        .expect("after");
    assert_ne!(
        old.sha1_thumbprint, new.sha1_thumbprint,
        "new handshake sees the new certificate"
    );
    let renewed_facts = mediagate_pki::CertFacts::from_der(&renewed.chain()[0]).expect("facts");
    assert_eq!(new.sha1_thumbprint, renewed_facts.sha1_thumbprint);
    ping(&mut before, "still here")
        .await
        .expect("connection from before the swap keeps working");
    ping(&mut after, "new one")
        .await
        .expect("new connection works");
}

#[tokio::test]
async fn trust_swap_refuses_new_handshakes_and_keeps_established_ones() {
    let pki = pki();
    let (server, _, trust) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    let client = plain_client(Some(&pki.client), pki.root_der(), &[&TLS13]);
    let (mut before, _) = connect(client.clone(), addr, "server.test")
        .await
        .expect("trusted");
    assert!(matches!(verdict(&mut rx).await, Accepted::Ok(_)));

    trust
        .swap(TrustStore::from_certs(vec![pki.foreign_root_der()]).expect("store"))
        .expect("swap");
    assert!(connect(client.clone(), addr, "server.test").await.is_err());
    match verdict(&mut rx).await {
        Accepted::Refused(r, _) => assert_eq!(r, Some(RefusalReason::UnknownIssuer)),
        other => panic!("{other:?}"),
    }
    ping(&mut before, "still trusted until it reconnects")
        .await
        .expect("established connection survives");
}

/// A client that keeps a session cache and tickets (rustls' default) cannot skip verification:
/// the server never resumes, so after the trust store drops the client's root the next
/// connection is refused.
#[tokio::test]
async fn no_resumption_so_trust_changes_apply_to_returning_clients() {
    for versions in [&[&TLS13][..], &[&TLS12][..]] {
        let pki = pki();
        let (server, _, trust) = our_server(&pki.server, vec![pki.root_der()], pki.now());
        let (addr, mut rx) = start_server(server).await;
        let client = plain_client(Some(&pki.client), pki.root_der(), versions);

        let (c1, _) = connect(client.clone(), addr, "server.test")
            .await
            .expect("first");
        assert!(matches!(verdict(&mut rx).await, Accepted::Ok(_)));
        drop(c1);
        let (c2, _) = connect(client.clone(), addr, "server.test")
            .await
            .expect("second");
        assert!(matches!(verdict(&mut rx).await, Accepted::Ok(_)));
        assert_eq!(
            c2.get_ref().get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full),
            "server must not resume ({versions:?})"
        );
        drop(c2);

        trust
            .swap(TrustStore::from_certs(vec![pki.foreign_root_der()]).expect("store"))
            .expect("swap");
        assert!(
            connect(client.clone(), addr, "server.test").await.is_err(),
            "returning client with a cached session must be refused ({versions:?})"
        );
        match verdict(&mut rx).await {
            Accepted::Refused(r, _) => assert_eq!(r, Some(RefusalReason::UnknownIssuer)),
            other => panic!("{other:?}"),
        }
    }
}

/// R-CERT-7: a peer's self-signed certificate imported on its own into the trust store is
/// accepted (both as a client of our server and as a server for our client), and the gateway's
/// own generated self-signed certificate works the same way at the peer.
#[tokio::test]
async fn self_signed_peers_imported_one_by_one_are_trusted() {
    let pki = pki();
    let peer_ss =
        mediagate_pki::testpki::Leaf::self_signed(&LeafSpec::new("pbx.test", pki.now(), 365));
    let our_ss = &pki.self_signed; // stands for the gateway's generated certificate

    // Peer (self-signed) → our server trusting exactly that certificate.
    let (server, _, _) = our_server(our_ss, vec![peer_ss.chain()[0].clone()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    let client = plain_client(Some(&peer_ss), our_ss.chain()[0].clone(), &[&TLS13, &TLS12]);
    connect(client, addr, "selfsigned.test")
        .await
        .expect("self-signed peer accepted");
    match verdict(&mut rx).await {
        Accepted::Ok(Some(id)) => assert_eq!(id.fqdns, vec!["pbx.test".to_string()]),
        other => panic!("{other:?}"),
    }

    // Our client (self-signed) → a peer server (self-signed) we trust one by one.
    let (peer_server, _, _) = our_server(&peer_ss, vec![our_ss.chain()[0].clone()], pki.now());
    let (addr, _rx) = start_server(peer_server).await;
    let (client, _, _) = our_client(our_ss, vec![peer_ss.chain()[0].clone()], pki.now());
    connect(client, addr, "pbx.test")
        .await
        .expect("self-signed server trusted");
}

/// R-CERT-6 on the client side: after a swap our client presents the new certificate, and the
/// client trust anchors can be swapped too.
#[tokio::test]
async fn client_side_swap_presents_the_new_certificate() {
    let pki = pki();
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    let (client, certs, trust) = our_client(&pki.client, vec![pki.root_der()], pki.now());

    connect(client.clone(), addr, "server.test")
        .await
        .expect("first");
    match verdict(&mut rx).await {
        Accepted::Ok(Some(id)) => assert_eq!(id.fqdns, vec!["pbx.test".to_string()]),
        other => panic!("{other:?}"),
    }
    certs.swap(
        pki.issue(&LeafSpec::new("pbx2.test", pki.now(), 30))
            .certified_key(),
    );
    connect(client.clone(), addr, "server.test")
        .await
        .expect("second");
    match verdict(&mut rx).await {
        Accepted::Ok(Some(id)) => assert_eq!(id.fqdns, vec!["pbx2.test".to_string()]),
        other => panic!("{other:?}"),
    }
    trust
        .swap(TrustStore::from_certs(vec![pki.foreign_root_der()]).expect("store"))
        .expect("swap");
    let err = connect(client, addr, "server.test")
        .await
        .expect_err("server no longer trusted");
    assert_eq!(reason_of(&err), Some(RefusalReason::UnknownIssuer));
}
