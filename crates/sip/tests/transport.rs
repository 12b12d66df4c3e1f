//! Transport robustness without external peers: malformed and oversized messages on TCP,
//! connection caps, TLS handshake timeout, UDP OPTIONS, all listeners at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use mediagate_sip::VoipSecurity;
use mediagate_sip::transport::TransportConfig;
use mediagate_sip_proto::TransportKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn options(branch: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
         From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:gw>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n{extra}\r\n"
    )
}

async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        let Ok(n) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response in time")
        else {
            break; // reset: the caller sees what arrived so far
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn local_gateway(cfg: TransportConfig) -> mediagate_sip::transport::Server {
    gateway(
        cfg,
        vec![plan("plain", VoipSecurity::Unsecured, "local")],
        vec![peer(
            "local",
            "127.0.0.1",
            5999,
            TransportKind::Tcp,
            "plain",
        )],
        vec![5061],
    )
    .await
    .0
}

/// R-MODE-1: UDP, TCP and TLS listeners run at once; R-SIP-3: OPTIONS is answered 200 with
/// Allow on UDP and TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_listeners_at_once_and_options_keepalive() {
    init_tracing();
    let pki = Pki::new();
    let gw = local_gateway(pki.transport(plain_transport())).await;
    for k in [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls] {
        assert!(gw.local_addr(k).is_some(), "{k:?} listener");
    }
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(
        options("u1", "Content-Length: 0\r\n").as_bytes(),
        gw.local_addr(TransportKind::Udp).unwrap(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert!(
        r.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"),
        "{r}"
    );

    let mut s = TcpStream::connect(gw.local_addr(TransportKind::Tcp).unwrap())
        .await
        .unwrap();
    s.write_all(options("t1", "Content-Length: 0\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with("SIP/2.0 200 OK"));
    gw.shutdown().await;
}

/// R-SIP-4: a malformed message on TCP gets 400 and the connection lives on; an oversized body
/// gets 413 and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_gets_400_connection_lives_oversize_gets_413_and_close() {
    init_tracing();
    let gw = local_gateway(plain_transport()).await;
    let addr = gw.local_addr(TransportKind::Tcp).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // No Content-Length on a stream: 400, resync after the header block.
    s.write_all(options("m1", "").as_bytes()).await.unwrap();
    let r = read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    // Same connection still works.
    s.write_all(options("m2", "Content-Length: 0\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    // Oversized body: 413, then the gateway closes the connection.
    s.write_all(options("m3", "Content-Length: 10000000\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert!(r.starts_with("SIP/2.0 413"), "{r}");
    assert!(closed(&mut s).await, "connection closed after 413");
    // Another connection is unaffected.
    let mut s2 = TcpStream::connect(addr).await.unwrap();
    s2.write_all(options("m4", "Content-Length: 0\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut s2).await.starts_with("SIP/2.0 200 OK"));
    gw.shutdown().await;
}

/// R-SIP-5: connections per source IP are capped; beyond the cap new ones are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_connection_cap() {
    init_tracing();
    let gw = local_gateway(plain_transport().with_connection_limits(100, 2)).await;
    let addr = gw.local_addr(TransportKind::Tcp).unwrap();
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // Make sure both were accepted before the third.
    for (s, br) in [(&mut a, "c1"), (&mut b, "c2")] {
        s.write_all(options(br, "Content-Length: 0\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_response(s).await.starts_with("SIP/2.0 200"));
    }
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed(&mut c).await,
        "third connection from the same IP refused"
    );
    drop(a);
    // A slot frees up once a connection ends.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        if d.write_all(options("c4", "Content-Length: 0\r\n").as_bytes())
            .await
            .is_ok()
            && tokio::time::timeout(Duration::from_millis(500), read_response(&mut d))
                .await
                .is_ok_and(|r| r.starts_with("SIP/2.0 200"))
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "slot reused after close");
    gw.shutdown().await;
}

/// R-SIP-5: a TLS client that never completes its handshake is cut off after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_timeout_closes_silent_clients() {
    init_tracing();
    let pki = Pki::new();
    let cfg = pki
        .transport(plain_transport())
        .with_handshake_timeout(Duration::from_millis(300));
    let gw = local_gateway(cfg).await;
    let mut s = TcpStream::connect(gw.local_addr(TransportKind::Tls).unwrap())
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    assert!(closed(&mut s).await, "silent TLS client disconnected");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    gw.shutdown().await;
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// R-MODE-5: at start and on reload the gateway logs each listener (GW1110–GW1112) and, per
/// dial plan, its mode and the listeners its peers use (GW1113).
#[tokio::test(flavor = "current_thread")]
async fn listeners_and_dial_plan_modes_are_logged_at_start_and_reload() {
    let cap = Captured::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("mediagate_sip=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let pki = Pki::new();
    let (gw, _) = gateway(
        pki.transport(plain_transport()),
        vec![
            plan("plain", VoipSecurity::Unsecured, "local"),
            plan("secure", VoipSecurity::Secured, "local"),
        ],
        vec![peer(
            "local",
            "127.0.0.1",
            5999,
            TransportKind::Tcp,
            "plain",
        )],
        vec![5061],
    )
    .await;
    let tls = gw.local_addr(TransportKind::Tls).unwrap();
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    for code in ["GW1110", "GW1111", "GW1112"] {
        assert!(
            text.contains(&format!("code=\"{code}\"")),
            "{code} missing:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "code=\"GW1113\" dial_plan=secure mode=Secured listeners=tls {tls}"
        )),
        "{text}"
    );
    assert!(
        text.contains("dial_plan=plain mode=Unsecured listeners=udp "),
        "{text}"
    );
    cap.0.lock().unwrap().clear();
    gw.reload(
        mediagate_sip::Policy::new(
            vec![mediagate_sip::DialPlan {
                name: "secure".into(),
                security: VoipSecurity::SipSecured,
                routes: vec![],
            }],
            vec![],
            &mediagate_sip::PolicyOptions::default(),
        )
        .unwrap(),
    )
    .await;
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(&format!(
            "code=\"GW1113\" dial_plan=secure mode=SIPSecured listeners=tls {tls}"
        )),
        "{text}"
    );
    gw.shutdown().await;
}

/// R-SIP-5: a sender that stalls in the middle of a message is disconnected; an idle connection
/// with nothing buffered is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partial_message_is_cut_idle_connection_kept() {
    init_tracing();
    let cfg = plain_transport().with_partial_message_timeout(Duration::from_millis(300));
    let gw = local_gateway(cfg).await;
    let addr = gw.local_addr(TransportKind::Tcp).unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1")
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    assert!(closed(&mut slow).await, "stalled sender disconnected");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    idle.write_all(options("idle", "Content-Length: 0\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.starts_with("SIP/2.0 200"));
    gw.shutdown().await;
}
