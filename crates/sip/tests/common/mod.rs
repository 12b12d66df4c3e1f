//! Real peers for the SIP tests: SIPp (Debian `sip-tester`) and stunnel (Debian `stunnel4`),
//! on 127.0.0.1 with ports found free at run time, each under `timeout`, stopped by PID.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mediagate_pki::testpki::TestPki;
use mediagate_pki::tls::{CertResolver, TrustAnchors};
use mediagate_pki::{Clock, FixedClock, TrustStore};
use mediagate_sip::policy::{DialPlan, Peer, PeerAddress, Route, Target, VoipSecurity};
use mediagate_sip::transport::{Server, TransportConfig};
use mediagate_sip::{B2buaConfig, FakeMedia, Policy, PolicyOptions};
use mediagate_sip_proto::TransportKind;

pub use mediagate_test_support::{LOCALHOST, Proc, free_ports, require};
/// FakeMedia hands out leg A = BASE, leg B = BASE + 2 for the first call.
pub const MEDIA_BASE: u16 = 41000;

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sipp")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mediagate_sip=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// True when a socket is bound to 127.0.0.1:`port` (TCP: listening), from `/proc/net` so that no
/// extra package (`ss`) is needed.
fn bound(port: u16, udp: bool) -> bool {
    let table = if udp {
        "/proc/net/udp"
    } else {
        "/proc/net/tcp"
    };
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && (udp || f.get(3) == Some(&"0A"))
        })
}

/// Waits until something listens on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16, udp: bool, dir: &Path) {
    for _ in 0..200 {
        if bound(port, udp) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}\n{}", dump(dir));
}

pub fn sipp_transport(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "u1",
        _ => "t1",
    }
}

/// SIPp UAS on `port` (media on `media`..+3) answering one call.
pub fn sipp_uas(dir: &Path, scenario: &str, t: TransportKind, port: u16, media: u16) -> Proc {
    sipp_uas_with(dir, scenario, t, port, media, &[])
}

/// [`sipp_uas`] with extra SIPp arguments (e.g. `-rtp_echo`).
pub fn sipp_uas_with(
    dir: &Path,
    scenario: &str,
    t: TransportKind,
    port: u16,
    media: u16,
    extra: &[&str],
) -> Proc {
    require("sipp", "sip-tester");
    let mut args: Vec<String> = [
        "-sf",
        &testdata().join(scenario).display().to_string(),
        "-t",
        sipp_transport(t),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-mi",
        "127.0.0.1",
        "-mp",
        &media.to_string(),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        "uas_msg.log",
        "-trace_err",
        "-error_file",
        "uas_err.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn("sipp-uas", 40, "sipp", &args, dir)
}

/// SIPp UAC placing one call to `target` from `port`.
pub fn sipp_uac(
    dir: &Path,
    scenario: &str,
    t: TransportKind,
    target: SocketAddr,
    port: u16,
    media: u16,
) -> Proc {
    require("sipp", "sip-tester");
    let args: Vec<String> = [
        &target.to_string(),
        "-sf",
        &testdata().join(scenario).display().to_string(),
        "-t",
        sipp_transport(t),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-mi",
        "127.0.0.1",
        "-mp",
        &media.to_string(),
        "-s",
        "100",
        "-m",
        "1",
        "-d",
        "200",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        "uac_msg.log",
        "-trace_err",
        "-error_file",
        "uac_err.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::spawn("sipp-uac", 40, "sipp", &args, dir)
}

pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The messages SIPp received (`-trace_msg` marks them "received").
pub fn received(log: &str) -> Vec<String> {
    log.split("----------------------------------------------")
        .filter(|b| b.contains("message received"))
        .map(str::to_owned)
        .collect()
}

pub fn plan(name: &str, security: VoipSecurity, to: &str) -> DialPlan {
    DialPlan {
        name: name.into(),
        security,
        routes: vec![Route {
            prefix: String::new(),
            target: Target::Peer(to.into()),
        }],
    }
}

pub fn peer(name: &str, addr: &str, port: u16, t: TransportKind, plan: &str) -> Peer {
    Peer {
        name: name.into(),
        address: PeerAddress::parse(addr),
        port,
        transport: t,
        transport_fixed: false,
        dial_plan: plan.into(),
        media_source: Default::default(),
        media_latching: Default::default(),
    }
}

pub struct Pki {
    pub pki: TestPki,
    pub clock: Arc<dyn Clock>,
}

impl Pki {
    #[allow(clippy::disallowed_methods)] // OpenSSL (stunnel) judges validity by the real clock
    pub fn new() -> Pki {
        let now = SystemTime::now();
        Pki {
            pki: TestPki::generate(now),
            clock: Arc::new(FixedClock::new(now)),
        }
    }

    /// Writes root.pem, server.crt/key, client.crt/key, foreign.crt/key into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("root.pem"), &self.pki.root_pem).unwrap();
        self.pki.server.write_to(dir, "server");
        self.pki.client.write_to(dir, "client");
        self.pki.foreign.write_to(dir, "foreign");
    }

    /// The gateway's TLS configs: server.test certificate, trusting the test root.
    pub fn transport(&self, cfg: TransportConfig) -> TransportConfig {
        let certs = Arc::new(CertResolver::new(self.pki.server.certified_key()));
        let trust = Arc::new(
            TrustAnchors::new(TrustStore::from_certs([self.pki.root_der()]).unwrap()).unwrap(),
        );
        let server =
            mediagate_pki::tls::server_config(certs.clone(), trust.clone(), self.clock.clone())
                .unwrap();
        let client = mediagate_pki::tls::client_config(certs, trust, self.clock.clone()).unwrap();
        cfg.with_tls(server, client)
    }
}

/// stunnel in front of SIPp. `client`: plain TCP on `accept` → TLS to `connect`, presenting
/// `cert_stem` and checking the server is `check_host`. Server: TLS on `accept` (client cert
/// required) → plain TCP to `connect`.
pub fn stunnel(
    dir: &Path,
    name: &str,
    client: bool,
    accept: u16,
    connect: u16,
    cert_stem: &str,
    check_host: Option<&str>,
) -> Proc {
    require("stunnel", "stunnel4");
    let mut conf = format!(
        "foreground = yes\npid = {dir}/{name}.pid\ndebug = info\nsyslog = no\noutput = {dir}/{name}.log\n\n[{name}]\nclient = {yn}\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\ncert = {dir}/{cert_stem}.crt\nkey = {dir}/{cert_stem}.key\nCAfile = {dir}/root.pem\nverifyChain = yes\nsslVersionMin = TLSv1.2\nTIMEOUTclose = 0\n",
        dir = dir.display(),
        yn = if client { "yes" } else { "no" },
    );
    if let Some(h) = check_host {
        conf.push_str(&format!("checkHost = {h}\nsni = {h}\n"));
    }
    if !client {
        conf.push_str("requireCert = yes\n");
    }
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    Proc::spawn(name, 45, "stunnel", &[path.display().to_string()], dir)
}

/// Starts the gateway with `policy` on ephemeral ports of 127.0.0.1.
pub async fn gateway(
    cfg: TransportConfig,
    plans: Vec<DialPlan>,
    peers: Vec<Peer>,
    tls_ports: Vec<u16>,
) -> (Server, Arc<FakeMedia>) {
    let policy = Policy::new(plans, peers, &PolicyOptions { tls_ports }).unwrap();
    let media = Arc::new(FakeMedia::new(LOCALHOST, MEDIA_BASE, 10_000));
    let b2bua = B2buaConfig::new(Vec::new());
    let server = Server::start(cfg, b2bua, policy, media.clone())
        .await
        .unwrap();
    (server, media)
}

pub fn plain_transport() -> TransportConfig {
    TransportConfig::on(LOCALHOST, 0, 0, 0)
}

/// Waits for a process in a blocking thread.
pub async fn wait(p: Proc) -> ExitStatus {
    tokio::task::spawn_blocking(move || p.wait()).await.unwrap()
}

/// Every `.out`, `.log` and `.conf` file in `dir`, for failure messages.
pub fn dump(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for p in entries {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if matches!(ext, "out" | "log" | "conf") {
            out.push_str(&format!(
                "--- {}\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            ));
        }
    }
    out
}
