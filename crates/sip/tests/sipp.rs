//! SIPp caller → mediagate B2BUA → SIPp callee, over UDP, TCP and mutual TLS (stunnel in
//! front of SIPp on both sides), and the refusals. Needs Debian `sip-tester` and `stunnel4`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mediagate_sip::VoipSecurity;
use mediagate_sip_proto::TransportKind;

const A_PORT: u16 = MEDIA_BASE;
const B_PORT: u16 = MEDIA_BASE + 2;

async fn plain_call(t: TransportKind) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(10);
    let (uas_port, uac_port, uas_media, uac_media) = (base, base + 1, base + 2, base + 6);
    let (gw, media) = gateway(
        plain_transport(),
        vec![plan("plain", VoipSecurity::Unsecured, "uas")],
        vec![
            peer("uac", "127.0.0.1", uac_port, t, "plain"),
            peer("uas", "127.0.0.1", uas_port, t, "plain"),
        ],
        vec![5061],
    )
    .await;
    let uas = sipp_uas(dir.path(), "uas.xml", t, uas_port, uas_media);
    wait_listening(uas_port, t == TransportKind::Udp, dir.path()).await;
    let uac = sipp_uac(
        dir.path(),
        "uac.xml",
        t,
        gw.local_addr(t).unwrap(),
        uac_port,
        uac_media,
    );
    let uac_status = wait(uac).await;
    let uas_status = wait(uas).await;
    let uac_log = read(dir.path(), "uac_msg.log");
    let uas_log = read(dir.path(), "uas_msg.log");
    assert!(
        uac_status.success() && uas_status.success(),
        "uac {uac_status} uas {uas_status}\n--- uac\n{uac_log}\n{}\n--- uas\n{uas_log}\n{}",
        read(dir.path(), "uac_err.log"),
        read(dir.path(), "uas_err.log"),
    );
    // The callee saw the gateway's leg-B media address, plain RTP, no keys, codecs and
    // telephone-event untouched; the caller got the leg-A address back.
    let invite = received(&uas_log)
        .into_iter()
        .find(|m| m.contains("INVITE sip:"))
        .unwrap();
    assert!(
        invite.contains(&format!("m=audio {B_PORT} RTP/AVP 0 101")),
        "{invite}"
    );
    assert!(invite.contains("c=IN IP4 127.0.0.1"), "{invite}");
    assert!(
        invite.contains("a=rtpmap:101 telephone-event/8000"),
        "{invite}"
    );
    assert!(invite.contains("a=x-sipp-opaque:kept"), "{invite}");
    assert!(
        !invite.contains(&format!("m=audio {uac_media}")),
        "{invite}"
    );
    let ok = received(&uac_log)
        .into_iter()
        .find(|m| m.contains("SIP/2.0 200 OK") && m.contains("INVITE"))
        .unwrap();
    assert!(ok.contains(&format!("m=audio {A_PORT} RTP/AVP")), "{ok}");
    // Media anchored: both legs set, call released after BYE.
    let legs = media.legs();
    assert!(
        legs.iter().any(|l| l.side == mediagate_sip::Side::A
            && l.remote_rtp.map(|a| a.port()) == Some(uac_media))
    );
    assert!(
        legs.iter().any(|l| l.side == mediagate_sip::Side::B
            && l.remote_rtp.map(|a| a.port()) == Some(uas_media))
    );
    for _ in 0..100 {
        if media.live().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(media.live().is_empty(), "call released after BYE");
    gw.shutdown().await;
}

/// R-SIP-1, R-SIP-2, R-MODE-1: a SIPp call through the B2BUA over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_call_over_udp() {
    plain_call(TransportKind::Udp).await;
}

/// R-SIP-1, R-SIP-2, R-MODE-1: a SIPp call through the B2BUA over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_call_over_tcp() {
    plain_call(TransportKind::Tcp).await;
}

/// R-MODE-1, R-MODE-3, R-PEER-2, R-SIP-2: SIPp → stunnel → mutual TLS → gateway → mutual TLS →
/// stunnel → SIPp, Secured dial plan on both legs: RTP/SAVP with fresh SDES keys per leg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_call_over_mutual_tls_secured() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let base = free_ports(12);
    let (uas_port, uas_tls, uac_port, uac_plain) = (base, base + 1, base + 2, base + 3);
    let (uas_media, uac_media) = (base + 4, base + 8);
    let cfg = pki
        .transport(plain_transport())
        .with_host("pbx.test", LOCALHOST)
        .with_host("server.test", LOCALHOST);
    let (gw, media) = gateway(
        cfg,
        vec![plan("secure", VoipSecurity::Secured, "uas")],
        vec![
            peer("uac", "pbx.test", 5061, TransportKind::Tls, "secure"),
            peer("uas", "server.test", uas_tls, TransportKind::Tls, "secure"),
        ],
        vec![5061, uas_tls],
    )
    .await;
    let gw_tls = gw.local_addr(TransportKind::Tls).unwrap();
    let uas = sipp_uas(
        dir.path(),
        "uas_srtp.xml",
        TransportKind::Tcp,
        uas_port,
        uas_media,
    );
    let st_uas = stunnel(
        dir.path(),
        "st-uas",
        false,
        uas_tls,
        uas_port,
        "server",
        None,
    );
    let st_uac = stunnel(
        dir.path(),
        "st-uac",
        true,
        uac_plain,
        gw_tls.port(),
        "client",
        Some("server.test"),
    );
    wait_listening(uas_port, false, dir.path()).await;
    wait_listening(uas_tls, false, dir.path()).await;
    wait_listening(uac_plain, false, dir.path()).await;
    let uac = sipp_uac(
        dir.path(),
        "uac_srtp.xml",
        TransportKind::Tcp,
        format!("127.0.0.1:{uac_plain}").parse().unwrap(),
        uac_port,
        uac_media,
    );
    let uac_status = wait(uac).await;
    let uas_status = wait(uas).await;
    drop((st_uac, st_uas));
    let uac_log = read(dir.path(), "uac_msg.log");
    let uas_log = read(dir.path(), "uas_msg.log");
    let st_uac_log = read(dir.path(), "st-uac.log");
    let st_uas_log = read(dir.path(), "st-uas.log");
    assert!(
        uac_status.success() && uas_status.success(),
        "uac {uac_status} uas {uas_status}\n--- uac\n{uac_log}\n--- uas\n{uas_log}\n--- stunnel uac\n{st_uac_log}\n--- stunnel uas\n{st_uas_log}"
    );
    // Both TLS hops verified certificates from the test PKI.
    assert!(
        st_uac_log.contains("Certificate accepted at depth=0: CN=server.test"),
        "{st_uac_log}"
    );
    assert!(
        st_uas_log.contains("Certificate accepted at depth=0: CN=server.test"),
        "{st_uas_log}"
    );
    let invite = received(&uas_log)
        .into_iter()
        .find(|m| m.contains("INVITE sip:"))
        .unwrap();
    assert!(
        invite.contains(&format!("m=audio {B_PORT} RTP/SAVP 0 101")),
        "{invite}"
    );
    assert_eq!(
        invite.matches("a=crypto:").count(),
        6,
        "every suite offered: {invite}"
    );
    assert!(
        !invite.contains("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"),
        "the caller's key never reaches the callee"
    );
    let ok = received(&uac_log)
        .into_iter()
        .find(|m| m.contains("SIP/2.0 200 OK") && m.contains("INVITE"))
        .unwrap();
    assert!(ok.contains(&format!("m=audio {A_PORT} RTP/SAVP")), "{ok}");
    assert_eq!(
        ok.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
            .count(),
        1,
        "{ok}"
    );
    assert!(
        !ok.contains("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"),
        "callee key leaked: {ok}"
    );
    let legs = media.legs();
    assert!(legs.iter().all(|l| l.keys.is_some()), "SRTP on both legs");
    gw.shutdown().await;
}

async fn refused(
    dir: &std::path::Path,
    t: TransportKind,
    target: std::net::SocketAddr,
    uac_port: u16,
    uac_media: u16,
) -> String {
    let uac = sipp_uac(dir, "uac_refused.xml", t, target, uac_port, uac_media);
    let status = wait(uac).await;
    let log = read(dir, "uac_msg.log");
    assert!(status.success(), "uac {status}\n{log}");
    received(&log)
        .into_iter()
        .find(|m| m.contains("SIP/2.0 4"))
        .expect("a 4xx")
}

/// R-PEER-2: a request from an address that is no configured peer gets 403 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_unknown_peer_gets_403() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(6);
    let (gw, _) = gateway(
        plain_transport(),
        vec![plan("plain", VoipSecurity::Unsecured, "other")],
        vec![peer(
            "other",
            "192.0.2.1",
            5060,
            TransportKind::Udp,
            "plain",
        )],
        vec![5061],
    )
    .await;
    let r = refused(
        dir.path(),
        TransportKind::Udp,
        gw.local_addr(TransportKind::Udp).unwrap(),
        base,
        base + 2,
    )
    .await;
    assert!(
        r.contains(&format!(
            "SIP/2.0 403 Forbidden (source 127.0.0.1:{base} is not a configured peer)"
        )),
        "{r}"
    );
    gw.shutdown().await;
}

/// R-MODE-2: a Secured peer calling over plain TCP gets 403 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_secured_peer_over_tcp_gets_403() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let base = free_ports(6);
    let pki = Pki::new();
    let cfg = pki
        .transport(plain_transport())
        .with_host("pbx.test", LOCALHOST);
    let (gw, _) = gateway(
        cfg,
        vec![plan("secure", VoipSecurity::Secured, "pbx")],
        vec![peer("pbx", "pbx.test", 5061, TransportKind::Tls, "secure")],
        vec![5061],
    )
    .await;
    let r = refused(
        dir.path(),
        TransportKind::Tcp,
        gw.local_addr(TransportKind::Tcp).unwrap(),
        base,
        base + 2,
    )
    .await;
    assert!(
        r.contains("SIP/2.0 403 Forbidden (peer pbx is Secured: tcp not allowed)"),
        "{r}"
    );
    gw.shutdown().await;
}

/// R-MODE-3: over mutual TLS, a Secured peer's RTP/SAVP offer without a=crypto gets 488.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_secured_offer_without_crypto_gets_488() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let base = free_ports(8);
    let cfg = pki
        .transport(plain_transport())
        .with_host("pbx.test", LOCALHOST);
    let (gw, media) = gateway(
        cfg,
        vec![plan("secure", VoipSecurity::Secured, "uac")],
        vec![peer("uac", "pbx.test", 5061, TransportKind::Tls, "secure")],
        vec![5061],
    )
    .await;
    let gw_tls = gw.local_addr(TransportKind::Tls).unwrap();
    let st = stunnel(
        dir.path(),
        "st-uac",
        true,
        base,
        gw_tls.port(),
        "client",
        Some("server.test"),
    );
    wait_listening(base, false, dir.path()).await;
    let r = refused(
        dir.path(),
        TransportKind::Tcp,
        format!("127.0.0.1:{base}").parse().unwrap(),
        base + 1,
        base + 2,
    )
    .await;
    drop(st);
    assert!(r.contains("SIP/2.0 488 Not Acceptable Here"), "{r}");
    assert!(media.live().is_empty(), "media released");
    gw.shutdown().await;
}

/// R-PEER-2, R-CERT-7: a client certificate from a foreign CA: the TLS handshake is refused
/// (stunnel's log shows the alert) and no SIP reaches the B2BUA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ca_client_certificate_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let base = free_ports(8);
    let cfg = pki
        .transport(plain_transport())
        .with_host("pbx.test", LOCALHOST);
    let (gw, _) = gateway(
        cfg,
        vec![plan("secure", VoipSecurity::Secured, "uac")],
        vec![peer("uac", "pbx.test", 5061, TransportKind::Tls, "secure")],
        vec![5061],
    )
    .await;
    let gw_tls = gw.local_addr(TransportKind::Tls).unwrap();
    let st = stunnel(
        dir.path(),
        "st-uac",
        true,
        base,
        gw_tls.port(),
        "foreign",
        Some("server.test"),
    );
    wait_listening(base, false, dir.path()).await;
    let uac = sipp_uac(
        dir.path(),
        "uac_refused.xml",
        TransportKind::Tcp,
        format!("127.0.0.1:{base}").parse().unwrap(),
        base + 1,
        base + 2,
    );
    let status = wait(uac).await;
    drop(st);
    let log = read(dir.path(), "st-uac.log");
    for l in log
        .lines()
        .filter(|l| l.contains("alert") || l.contains("SSL_connect"))
    {
        println!("stunnel: {l}");
    }
    assert!(!status.success(), "the call must fail");
    assert!(
        log.contains("tlsv1 alert unknown ca"),
        "stunnel log shows the refusal:\n{log}"
    );
    assert!(
        !read(dir.path(), "uac_msg.log").contains("SIP/2.0 4"),
        "no SIP answer"
    );
    gw.shutdown().await;
}

/// R-PEER-2: a client certificate from the trusted CA that names no configured peer: the
/// handshake succeeds, the INVITE gets 403 naming the certificate's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_tls_certificate_naming_no_peer_gets_403() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let base = free_ports(8);
    let cfg = pki
        .transport(plain_transport())
        .with_host("other.test", LOCALHOST);
    let (gw, _) = gateway(
        cfg,
        vec![plan("secure", VoipSecurity::Secured, "other")],
        vec![peer(
            "other",
            "other.test",
            5061,
            TransportKind::Tls,
            "secure",
        )],
        vec![5061],
    )
    .await;
    let gw_tls = gw.local_addr(TransportKind::Tls).unwrap();
    // The client presents pbx.test, which is trusted but not a peer here.
    let st = stunnel(
        dir.path(),
        "st-uac",
        true,
        base,
        gw_tls.port(),
        "client",
        Some("server.test"),
    );
    wait_listening(base, false, dir.path()).await;
    let r = refused(
        dir.path(),
        TransportKind::Tcp,
        format!("127.0.0.1:{base}").parse().unwrap(),
        base + 1,
        base + 2,
    )
    .await;
    drop(st);
    assert!(
        r.contains("SIP/2.0 403 Forbidden (certificate names pbx.test, no such peer)"),
        "{r}"
    );
    gw.shutdown().await;
}

/// R-MEDIA-1 through signaling: the real relay behind the B2BUA. SIPp plays 7 s of G.711
/// (236 RTP packets) to the gateway's leg-A port from the 200's SDP; the relay forwards it
/// out of leg B to the SIPp callee, whose `-rtp_echo` sends it back through leg B and out of
/// leg A. Media flows through the gateway's own ports, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_call_media_flows_through_the_relay() {
    use mediagate_media::relay::{Relay, RelayConfig};
    use mediagate_media::session::DropReason;
    use mediagate_sip::transport::Server;
    use mediagate_sip::{B2buaConfig, Policy, PolicyOptions, RelayAnchor};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let t = TransportKind::Udp;
    let base = free_ports(10);
    let (uas_port, uac_port, uas_media, uac_media) = (base, base + 1, base + 2, base + 6);
    let media_range = free_ports(8);
    let relay = Arc::new(
        Relay::start(
            RelayConfig::new(LOCALHOST)
                .with_ports(media_range, media_range + 7)
                .with_workers(1),
        )
        .unwrap(),
    );
    let anchor = Arc::new(RelayAnchor::new(relay.clone()));
    let policy = Policy::new(
        vec![plan("plain", VoipSecurity::Unsecured, "uas")],
        vec![
            peer("uac", "127.0.0.1", uac_port, t, "plain"),
            peer("uas", "127.0.0.1", uas_port, t, "plain"),
        ],
        &PolicyOptions {
            tls_ports: vec![5061],
        },
    )
    .unwrap();
    let gw = Server::start(
        plain_transport(),
        B2buaConfig::new(Vec::new()),
        policy,
        anchor.clone(),
    )
    .await
    .unwrap();
    let uas = sipp_uas_with(
        dir.path(),
        "uas.xml",
        t,
        uas_port,
        uas_media,
        &["-rtp_echo"],
    );
    wait_listening(uas_port, true, dir.path()).await;
    let uac = sipp_uac(
        dir.path(),
        "uac_media.xml",
        t,
        gw.local_addr(t).unwrap(),
        uac_port,
        uac_media,
    );
    let uac_status = wait(uac).await;
    let uas_status = wait(uas).await;
    assert!(
        uac_status.success() && uas_status.success(),
        "uac {uac_status} uas {uas_status}\n{}",
        dump(dir.path())
    );
    let c = relay.counters();
    let relayed = c.packets.load(Ordering::Relaxed);
    // 236 packets each way; allow a few at the edges of the call.
    assert!(
        relayed >= 2 * 220,
        "relayed {relayed} packets, drops {:?}",
        DropReason::ALL.map(|r| (r.as_str(), c.dropped(r)))
    );
    for r in [
        DropReason::WrongSource,
        DropReason::Malformed,
        DropReason::SrtpAuth,
    ] {
        assert_eq!(c.dropped(r), 0, "{r:?}");
    }
    // The call was released after BYE: its ports are free again.
    for _ in 0..100 {
        if c.pairs.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        c.pairs.load(Ordering::Relaxed),
        0,
        "pair released after BYE"
    );
    gw.shutdown().await;
}
