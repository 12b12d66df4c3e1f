//! `mediagate run`: the gateway assembled from its crates.
//!
//! ```text
//!  config (TOML, validated once) ──▶ Settings
//!     │                                 │
//!     │   ┌──────────── mediagate-pki Reloader (+ directory watch) ──▶ rustls configs (ArcSwap)
//!     ▼   ▼
//!  mediagate-sip Server (UDP/TCP/TLS, B2BUA core task) ──MediaAnchor──▶ RelayAnchor ──▶ Relay
//!     │  └─ LocalEndpoint: EchoEndpoint (plain RTP to the relay's leg B)      (worker threads)
//!     ├─ reload task: file watch + SIGHUP ──▶ Config::load ──▶ Server::reload(policy)
//!     ├─ admin HTTP: /metrics (Prometheus), /health
//!     └─ signals: SIGTERM/SIGINT ──▶ drain (503) ──▶ wait for calls / deadline ──▶ BYE all ──▶ stop
//! ```
//!
//! Threads: the tokio runtime (2 worker threads: signaling, admin HTTP, echo, reload) and the
//! relay's own worker threads (one per core by default), which never touch tokio. The PKI
//! watcher runs on its own thread.
//!
//! What can change without a restart (R-OPS-2): dial plans, their modes, peers, routes, static
//! hosts (a new [`mediagate_sip::Policy`] for new calls; calls in progress keep theirs,
//! R-MODE-4) and, through the PKI watcher, certificates and trust anchors. Listener addresses,
//! the media range, limits and the admin address need a restart: a reload that changes them
//! is applied for the policy part and logs `GW1303` naming each key that waits for a restart.

mod admin;
mod reload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mediagate_config::Config;
use mediagate_media::relay::{Relay, RelayConfig};
use mediagate_media::session::SessionConfig;
use mediagate_pki::reload::{WatchConfig, watch};
use mediagate_pki::{Clock, Identity, IdentityOptions, Reloader};
use mediagate_sip::transport::{Server, TransportConfig};
use mediagate_sip::{B2buaConfig, EchoEndpoint, RelayAnchor};
use mediagate_sip_proto::TransportKind;

use crate::cli::CliError;
use crate::clock::SystemClock;

/// Where the configuration came from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The embedded demo configuration (no file).
    Embedded,
    /// A file, watched for changes.
    File(PathBuf),
}

/// Everything `run` needs, collected before anything starts.
pub(crate) struct Gateway {
    config: Config,
    source: Source,
}

/// Shared state of a running gateway (admin HTTP, reload, shutdown).
pub(crate) struct Running {
    pub(crate) server: Server,
    pub(crate) relay: Arc<Relay>,
    pub(crate) echo: Arc<EchoEndpoint>,
    pub(crate) pki: Arc<Reloader>,
    pub(crate) config: arc_swap::ArcSwap<Config>,
    pub(crate) source: Source,
    pub(crate) draining: AtomicBool,
    pub(crate) reloads: std::sync::atomic::AtomicU64,
    pub(crate) reload_failures: std::sync::atomic::AtomicU64,
}

impl Gateway {
    /// Loads the configuration: the file when given, else the embedded demo.
    pub(crate) fn load(file: Option<&Path>) -> Result<Gateway, CliError> {
        match file {
            Some(path) => {
                let config = Config::load(path).map_err(|e| CliError::Invalid(e.to_string()))?;
                Ok(Gateway {
                    config,
                    source: Source::File(path.to_owned()),
                })
            }
            None => Ok(Gateway {
                config: Config::embedded_default(),
                source: Source::Embedded,
            }),
        }
    }

    /// Runs until SIGTERM/SIGINT, then shuts down gracefully.
    pub(crate) fn run(self) -> Result<(), CliError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mg-signaling")
            .enable_all()
            .build()
            .map_err(|e| CliError::Environment(format!("cannot start the runtime: {e}")))?;
        rt.block_on(self.serve())
    }

    async fn serve(self) -> Result<(), CliError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let cfg = &self.config;
        let pki = Arc::new(start_pki(cfg, clock.now())?);
        let _pki_watch =
            watch(pki.clone(), clock.clone(), WatchConfig::default()).map_err(|e| {
                CliError::Environment(format!("cannot watch the certificate directories: {e}"))
            })?;
        let server_tls = mediagate_pki::tls::server_config(pki.certs(), pki.trust(), clock.clone())
            .map_err(|e| CliError::Invalid(format!("TLS server configuration: {e}")))?;
        let client_tls = mediagate_pki::tls::client_config(pki.certs(), pki.trust(), clock.clone())
            .map_err(|e| CliError::Invalid(format!("TLS client configuration: {e}")))?;

        let relay = Arc::new(start_relay(cfg)?);
        let anchor = Arc::new(RelayAnchor::new(relay.clone()));
        let anchor_events = anchor.clone();
        let echo = Arc::new(EchoEndpoint::new(cfg.media.address));

        let transport = transport_config(cfg).with_tls(server_tls, client_tls);
        let b2bua = B2buaConfig::new(Vec::new())
            .max_calls(cfg.limits.max_calls)
            .retry_after(cfg.limits.retry_after_secs)
            .session_timers(cfg.limits.session_expires(), cfg.limits.min_se());
        let server = Server::start_with_local_endpoint(
            transport,
            b2bua,
            cfg.policy(),
            anchor,
            Some(echo.clone()),
        )
        .await
        .map_err(|e| CliError::Environment(format!("cannot bind a SIP listener: {e}")))?;

        let running = Arc::new(Running {
            server,
            relay: relay.clone(),
            echo,
            pki: pki.clone(),
            config: arc_swap::ArcSwap::from_pointee(self.config.clone()),
            source: self.source.clone(),
            draining: AtomicBool::new(false),
            reloads: Default::default(),
            reload_failures: Default::default(),
        });
        spawn_relay_events(&relay, anchor_events, running.server.media_events());
        let admin = match cfg.admin.http {
            Some(addr) => Some(
                admin::start(addr, running.clone(), clock.clone())
                    .await
                    .map_err(|e| {
                        CliError::Environment(format!("cannot bind the admin HTTP on {addr}: {e}"))
                    })?,
            ),
            None => None,
        };
        let reloader = reload::start(running.clone())
            .map_err(|e| CliError::Environment(format!("cannot watch the configuration: {e}")))?;
        print_summary(&running, admin);

        wait_for_shutdown_signal().await;
        let grace = Duration::from_secs(running.config.load().limits.shutdown_grace_secs);
        shutdown(&running, grace).await;
        drop(reloader);
        // The listeners and connections close when the runtime stops (after this returns).
        relay.shutdown();
        tracing::info!(code = "GW1004", "GW1004 mediagate stopped");
        Ok(())
    }
}

/// Certificates: select (or generate, R-CERT-3) our certificate; with
/// `trust_own_certificate` (the demo) put it in the trust store so local tools presenting it
/// are trusted.
fn start_pki(cfg: &Config, now: std::time::SystemTime) -> Result<Reloader, CliError> {
    let cert_dir = cfg.cert_dir();
    let trust_dir = cfg.trust_dir();
    for d in [&cert_dir, &trust_dir] {
        std::fs::create_dir_all(d)
            .map_err(|e| CliError::Environment(format!("cannot create {}: {e}", d.display())))?;
    }
    let mut identity = Identity::new(cfg.gateway.fqdn.clone());
    identity.addresses = cfg.gateway.addresses.clone();
    let reloader = Reloader::start(&cert_dir, &trust_dir, Some(&identity), now)
        .map_err(|e| CliError::Environment(format!("certificates: {e}")))?;
    if cfg.gateway.trust_own_certificate {
        trust_own_certificate(&reloader, &trust_dir)?;
    }
    Ok(reloader)
}

/// Demo only: puts our own self-signed certificate in the trust store (and reloads it) so
/// that tools on this host presenting it, like `test-connectivity` with the same
/// configuration, are trusted.
fn trust_own_certificate(reloader: &Reloader, trust_dir: &Path) -> Result<(), CliError> {
    let (facts, path) = reloader.selected();
    if !facts.self_signed {
        return Ok(());
    }
    let target = trust_dir.join(format!("own-{}.crt", facts.sha1_thumbprint));
    if target.exists() {
        return Ok(());
    }
    let env = |e: String| CliError::Environment(e);
    let pem =
        std::fs::read(&path).map_err(|e| env(format!("cannot read {}: {e}", path.display())))?;
    std::fs::write(&target, pem)
        .map_err(|e| env(format!("cannot write {}: {e}", target.display())))?;
    reloader.reload_trust();
    tracing::info!(
        code = "GW1005",
        path = %target.display(),
        thumbprint = %facts.sha1_thumbprint,
        "GW1005 demo: our own self-signed certificate is trusted (trust_own_certificate)"
    );
    Ok(())
}

fn start_relay(cfg: &Config) -> Result<Relay, CliError> {
    let m = &cfg.media;
    let mut rc = RelayConfig::new(m.address).with_ports(m.port_min, m.port_max);
    if m.workers > 0 {
        rc = rc.with_workers(m.workers);
    }
    let mut session = SessionConfig::default();
    session.timeout = m.timeout();
    session.hold_timeout = m.hold_timeout();
    rc = rc.with_session(session).with_coalesce(m.wakeup_coalesce());
    Relay::start(rc)
        .map_err(|e| CliError::Environment(format!("cannot start the media relay: {e}")))
}

/// The transport settings of `cfg`.
pub(crate) fn transport_config(cfg: &Config) -> TransportConfig {
    let l = &cfg.limits;
    let mut t = TransportConfig::default();
    t.udp = cfg.listen.udp;
    t.tcp = cfg.listen.tcp;
    t.tls = cfg.listen.tls;
    let mut t = t
        .with_connection_limits(l.max_connections, l.max_connections_per_ip)
        .with_stranger_limits(
            l.max_stranger_connections,
            l.max_stranger_connections_per_ip,
        )
        .with_admission_timeout(l.admission_timeout())
        .with_partial_message_timeout(l.partial_message_timeout())
        .with_plain_peers_only(l.plain_peers_only)
        .with_handshake_timeout(Duration::from_millis(l.tls_handshake_timeout_ms))
        .with_identity(IdentityOptions {
            allow_common_name: cfg.tls.identity_from_cn,
        });
    if let Some(ip) = cfg.listen.advertise {
        t = t.with_advertise(ip);
    }
    for (name, ip) in &cfg.hosts {
        t = t.with_host(name, *ip);
    }
    t
}

/// Relay events on their own thread (the relay's channel is not async): a call whose media
/// is dead is handed to the signaling core, which ends it (GW3003).
fn spawn_relay_events(
    relay: &Relay,
    anchor: Arc<RelayAnchor>,
    core: mediagate_sip::transport::MediaEvents,
) {
    let Some(events) = relay.take_events() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("mg-relay-events".into())
        .spawn(move || {
            while let Ok(ev) = events.recv() {
                let mediagate_media::relay::RelayEvent::Timeout {
                    id,
                    side,
                    idle_for,
                    on_hold,
                } = ev
                else {
                    continue;
                };
                let Some(call) = anchor.call_of(id) else {
                    continue; // released meanwhile
                };
                let side = match side {
                    mediagate_media::session::Side::A => mediagate_sip::Side::A,
                    mediagate_media::session::Side::B => mediagate_sip::Side::B,
                };
                core.media_timeout(call, side, idle_for, on_hold);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(%e, "relay events not handled: media timeouts will not end calls");
    }
}

fn print_summary(r: &Running, admin: Option<SocketAddr>) {
    let cfg = r.config.load();
    let (facts, path) = r.pki.selected();
    let mut out = String::new();
    let src = match &r.source {
        Source::Embedded => "the embedded demo configuration (no --config)".to_owned(),
        Source::File(p) => p.display().to_string(),
    };
    out.push_str(&format!(
        "mediagate {} is running with {src}\n",
        env!("CARGO_PKG_VERSION")
    ));
    for (kind, name) in [
        (TransportKind::Udp, "udp"),
        (TransportKind::Tcp, "tcp"),
        (TransportKind::Tls, "tls"),
    ] {
        if let Some(a) = r.server.local_addr(kind) {
            out.push_str(&format!("  SIP {name:<4} {a}\n"));
        }
    }
    // What the relay runs with, read back from it rather than from the file.
    out.push_str(&format!(
        "  media     {}:{}-{}, relay threads {}, wake-up coalescing {} µs\n",
        cfg.media.address,
        cfg.media.port_min,
        cfg.media.port_max,
        r.relay.worker_count(),
        r.relay.coalesce().as_micros()
    ));
    if let Some(a) = admin {
        out.push_str(&format!(
            "  admin     http://{a}/metrics  http://{a}/health\n"
        ));
    }
    out.push_str(&format!(
        "  certificate {} (thumbprint {}, {}), {}\n",
        facts.subject,
        facts.sha1_thumbprint,
        if facts.self_signed {
            "self-signed"
        } else {
            "CA-issued"
        },
        path.display()
    ));
    for plan in &cfg.dial_plans {
        let peers: Vec<&str> = cfg
            .peers
            .iter()
            .filter(|p| p.dial_plan == plan.name)
            .map(|p| p.name.as_str())
            .collect();
        out.push_str(&format!(
            "  dial plan {} ({}): peers [{}]\n",
            plan.name,
            plan.voip_security,
            peers.join(", ")
        ));
    }
    if matches!(r.source, Source::Embedded) {
        let tcp = r.server.local_addr(TransportKind::Tcp);
        let tls = r.server.local_addr(TransportKind::Tls);
        out.push_str("\nCall the built-in echo endpoint:\n");
        if let Some(a) = tcp {
            out.push_str(&format!(
                "  mediagate test-connectivity --secured false --target 'sip:echo@{a};transport=tcp' --call\n"
            ));
        }
        if let Some(a) = tls {
            out.push_str(&format!(
                "  mediagate test-connectivity --secured true --target 'sip:echo@localhost:{};transport=tls' --call\n",
                a.port()
            ));
        }
        out.push_str("  or a softphone: see README.md, \"Call it with baresip\".\n");
    }
    out.push_str("Stop with Ctrl-C (calls get a grace period, then BYE).\n");
    print!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers only Ctrl-C through tokio's default remains.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Graceful shutdown: refuse new calls, let calls finish within `grace`, then BYE the rest.
/// A second signal cuts the wait short.
async fn shutdown(r: &Running, grace: Duration) {
    r.draining.store(true, Ordering::Relaxed);
    let active = r.server.active_calls();
    tracing::info!(
        code = "GW1003",
        active_calls = active,
        grace_secs = grace.as_secs(),
        "GW1003 shutting down: new calls get 503, calls in progress have {}s",
        grace.as_secs()
    );
    r.server.drain().await;
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let second = wait_for_shutdown_signal();
    tokio::pin!(second);
    loop {
        if r.server.active_calls() == 0 {
            break;
        }
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut second => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let left = r.server.active_calls();
    if left > 0 {
        tracing::info!(
            code = "GW1003",
            calls = left,
            "GW1003 grace period over: BYE to the calls left"
        );
        r.server.hangup_all().await;
        // Let the BYEs leave (and their 200s arrive) before the sockets close.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while r.server.open_connections() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if r.server.active_calls() == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                break;
            }
        }
    }
}
