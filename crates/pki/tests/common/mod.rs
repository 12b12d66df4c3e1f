//! Shared test harness: a tokio-rustls echo server on 127.0.0.1:0 and client helpers.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::disallowed_methods,
    clippy::large_enum_variant
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mediagate_pki::tls::{CertResolver, TrustAnchors};
use mediagate_pki::{
    CertFacts, FixedClock, IdentityOptions, PeerIdentity, RefusalReason, TrustStore,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub const GREETING: &str = "hello from mediagate\n";

/// Real wall-clock time: the one place tests read the clock (OpenSSL judges validity with it).
pub fn real_now() -> SystemTime {
    SystemTime::now()
}

/// What the server saw for one connection.
#[derive(Debug)]
pub enum Accepted {
    Ok(Option<PeerIdentity>),
    Refused(Option<RefusalReason>, String),
}

/// The rustls error inside an io::Error from tokio-rustls, mapped to a refusal reason.
pub fn reason_of(e: &std::io::Error) -> Option<RefusalReason> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(RefusalReason::from_rustls)
}

/// Starts an echo server: after the handshake it sends GREETING, then echoes lines.
pub async fn start_server(
    config: Arc<ServerConfig>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Err(_) => {
                        let _ = tx.send(Accepted::Refused(None, "handshake timeout".into()));
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Accepted::Refused(reason_of(&e), e.to_string()));
                    }
                    Ok(Ok(mut tls)) => {
                        let id = PeerIdentity::from_verified_chain(
                            tls.get_ref().1.peer_certificates(),
                            IdentityOptions::default(),
                        );
                        let _ = tx.send(Accepted::Ok(id));
                        if tls.write_all(GREETING.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = tls.flush().await;
                        let (r, mut w) = tokio::io::split(tls);
                        let mut lines = BufReader::new(r).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "quit" {
                                break;
                            }
                            if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                                return;
                            }
                            let _ = w.flush().await;
                        }
                        let _ = w.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects, completes the handshake and reads the greeting (which proves the server accepted
/// us: in TLS 1.3 a refused client certificate only shows on the first read).
pub async fn connect(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> Result<(BufReader<ClientStream>, CertFacts), std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = TlsConnector::from(config);
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timeout"))??;
    let presented = tls.get_ref().1.peer_certificates().expect("server cert")[0].clone();
    let facts = CertFacts::from_der(&presented).expect("facts");
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("greeting timeout"))??;
    if line != GREETING {
        return Err(std::io::Error::other(format!("no greeting, got {line:?}")));
    }
    Ok((reader, facts))
}

/// Sends a line on an established connection and expects it echoed.
pub async fn ping(conn: &mut BufReader<ClientStream>, text: &str) -> Result<(), std::io::Error> {
    conn.get_mut()
        .write_all(format!("{text}\n").as_bytes())
        .await?;
    conn.get_mut().flush().await?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("echo timeout"))??;
    if line.trim_end() == text {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("echo mismatch: {line:?}")))
    }
}

/// Our server config with `leaf` and trusting `roots`, time fixed at `now`.
pub fn our_server(
    leaf: &mediagate_pki::testpki::Leaf,
    roots: Vec<CertificateDer<'static>>,
    now: SystemTime,
) -> (Arc<ServerConfig>, Arc<CertResolver>, Arc<TrustAnchors>) {
    let certs = Arc::new(CertResolver::new(leaf.certified_key()));
    let trust = Arc::new(
        TrustAnchors::new(TrustStore::from_certs(roots).expect("roots")).expect("anchors"),
    );
    let cfg = mediagate_pki::tls::server_config(
        certs.clone(),
        trust.clone(),
        Arc::new(FixedClock::new(now)),
    )
    .expect("server config");
    (cfg, certs, trust)
}

/// Our client config presenting `leaf` and trusting `roots`.
pub fn our_client(
    leaf: &mediagate_pki::testpki::Leaf,
    roots: Vec<CertificateDer<'static>>,
    now: SystemTime,
) -> (Arc<ClientConfig>, Arc<CertResolver>, Arc<TrustAnchors>) {
    let certs = Arc::new(CertResolver::new(leaf.certified_key()));
    let trust = Arc::new(
        TrustAnchors::new(TrustStore::from_certs(roots).expect("roots")).expect("anchors"),
    );
    let cfg = mediagate_pki::tls::client_config(
        certs.clone(),
        trust.clone(),
        Arc::new(FixedClock::new(now)),
    )
    .expect("client config");
    (cfg, certs, trust)
}

/// A plain rustls client (not our code), with resumption left at rustls' default (enabled),
/// presenting `leaf` and trusting `root`.
pub fn plain_client(
    leaf: Option<&mediagate_pki::testpki::Leaf>,
    root: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let b = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots);
    let cfg = match leaf {
        Some(l) => b
            .with_client_auth_cert(l.chain(), l.key())
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// Waits for the server's verdict on the next connection.
pub async fn verdict(rx: &mut mpsc::UnboundedReceiver<Accepted>) -> Accepted {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("server verdict in time")
        .expect("server alive")
}
