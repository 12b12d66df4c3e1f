//! Transports: UDP, TCP and mutual-TLS listeners, outbound connections, and the core task
//! that owns the [`B2bua`] and the clock.
//!
//! ```text
//!  UDP socket ──recv──▶ ┐
//!  TCP conn  ──frame──▶ ├─ mpsc (bounded) ─▶ core task: B2bua (sans-IO) + one timer
//!  TLS conn  ──frame──▶ ┘                         │
//!        ◀── per-connection writer (mpsc) ◀───────┤ Transmit to a stream Remote
//!  UDP socket ◀── send_to ◀───────────────────────┘ Transmit to a UDP Remote
//! ```
//!
//! - Responses go back on the connection the request came on: a stream `Remote` is the
//!   connection's peer address, and the core keeps `Remote → connection`. The Via sent-by is
//!   never used to open a connection (SIPp behind stunnel writes `Via: .../TCP` over TLS).
//! - Outbound requests to a peer reuse the open connection to its address, else open one
//!   (TLS: `mediagate_pki::tls::client_config`, our certificate, the peer's FQDN verified).
//! - Bounded work: a reader forwards at most [`FRAMES_PER_WAKE`] frames before yielding; the
//!   core handles at most [`INPUTS_PER_WAKE`] inputs between timer checks and flushes.
//! - R-SIP-5: TLS handshakes time out, connections are capped globally and per source IP.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mediagate_pki::{IdentityOptions, PeerIdentity};
use mediagate_sip_proto::framing::{Check, FrameError, FramingConfig, check};
use mediagate_sip_proto::{Remote, StreamAction, TransportKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::b2bua::{B2bua, B2buaConfig, LocalEndpoint, Verdict};
use crate::clock;
use crate::media::{CallKey, MediaAnchor, Side};
use crate::metrics::SipMetrics;
use crate::policy::{PeerAddress, Policy, PolicyHandle};

/// Frames a connection reader forwards before yielding to other tasks.
pub const FRAMES_PER_WAKE: usize = 16;
/// Inputs the core handles before checking timers and flushing output.
pub const INPUTS_PER_WAKE: usize = 64;

/// Listener addresses, TLS configs and limits.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// UDP bind address (default `0.0.0.0:5060`); `None` disables UDP.
    pub udp: Option<SocketAddr>,
    /// TCP bind address (default `0.0.0.0:5060`); `None` disables TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS bind address (default `0.0.0.0:5061`); needs `tls_server`.
    pub tls: Option<SocketAddr>,
    /// Server side of mutual TLS (`mediagate_pki::tls::server_config`).
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Client side for outbound TLS (`mediagate_pki::tls::client_config`).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// TLS handshake deadline (default 5 s).
    pub handshake_timeout: Duration,
    /// Stream connections at most, inbound + outbound (default 4096).
    pub max_connections: usize,
    /// Inbound stream connections per source IP at most (default 256).
    pub max_connections_per_ip: usize,
    /// A stream that holds an incomplete message this long is closed (default 30 s): a slow or
    /// stalled sender cannot keep a connection slot and a buffer forever. Idle connections with
    /// nothing buffered are kept once they have brought an admitted request (they carry
    /// in-dialog requests of long calls).
    pub partial_message_timeout: Duration,
    /// An inbound connection that brings no admitted request within this time after accept (or
    /// after its TLS handshake) is closed (default 5 s); keep-alives do not count. One whose
    /// requests are all refused is closed after the 403 (R-SIP-5).
    pub admission_timeout: Duration,
    /// Inbound connections from addresses that are no configured peer's, and that have not yet
    /// been admitted or proved a peer certificate, share this quota (default 64) instead of
    /// `max_connections`: no number of strangers can refuse a configured peer.
    pub max_stranger_connections: usize,
    /// The same per source IP (default 8).
    pub max_stranger_connections_per_ip: usize,
    /// Close TCP connections on the plain listener from addresses that are no plain peer's at
    /// accept (default false).
    pub plain_peers_only: bool,
    /// Name → address entries consulted before DNS when resolving peer FQDNs.
    pub static_hosts: Vec<(String, IpAddr)>,
    /// How TLS peers are named from their certificate.
    pub identity: IdentityOptions,
    /// The address put in Via and Contact when a listener binds the unspecified address
    /// (`0.0.0.0`/`::`); `None` uses the bound address as is.
    pub advertise: Option<IpAddr>,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("admission_timeout", &self.admission_timeout)
            .field("max_stranger_connections", &self.max_stranger_connections)
            .finish_non_exhaustive()
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            udp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            tls: Some(SocketAddr::from(([0, 0, 0, 0], 5061))),
            tls_server: None,
            tls_client: None,
            handshake_timeout: Duration::from_secs(5),
            max_connections: 4096,
            max_connections_per_ip: 256,
            partial_message_timeout: Duration::from_secs(30),
            admission_timeout: Duration::from_secs(5),
            max_stranger_connections: 64,
            max_stranger_connections_per_ip: 8,
            plain_peers_only: false,
            static_hosts: Vec::new(),
            identity: IdentityOptions::default(),
            advertise: None,
        }
    }
}

impl TransportConfig {
    /// All three listeners on `ip` with the given ports (0 = any free port).
    pub fn on(ip: IpAddr, udp: u16, tcp: u16, tls: u16) -> TransportConfig {
        TransportConfig {
            udp: Some(SocketAddr::new(ip, udp)),
            tcp: Some(SocketAddr::new(ip, tcp)),
            tls: Some(SocketAddr::new(ip, tls)),
            ..TransportConfig::default()
        }
    }
    /// Sets the TLS configs.
    pub fn with_tls(
        mut self,
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Self {
        self.tls_server = Some(server);
        self.tls_client = Some(client);
        self
    }
    /// Adds a static host entry.
    pub fn with_host(mut self, name: &str, ip: IpAddr) -> Self {
        self.static_hosts.push((name.to_ascii_lowercase(), ip));
        self
    }
    /// Sets the connection caps.
    pub fn with_connection_limits(mut self, global: usize, per_ip: usize) -> Self {
        self.max_connections = global;
        self.max_connections_per_ip = per_ip;
        self
    }
    /// Sets the TLS handshake timeout.
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }
    /// Sets the address advertised in Via/Contact for listeners on the unspecified address.
    pub fn with_advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }
    /// Sets how TLS peers are named from their certificate.
    pub fn with_identity(mut self, identity: IdentityOptions) -> Self {
        self.identity = identity;
        self
    }
    /// Sets the incomplete-message timeout.
    pub fn with_partial_message_timeout(mut self, t: Duration) -> Self {
        self.partial_message_timeout = t;
        self
    }
    /// Sets the admission timeout of inbound connections.
    pub fn with_admission_timeout(mut self, t: Duration) -> Self {
        self.admission_timeout = t;
        self
    }
    /// Sets the strangers' connection quota, in all and per source IP.
    pub fn with_stranger_limits(mut self, total: usize, per_ip: usize) -> Self {
        self.max_stranger_connections = total;
        self.max_stranger_connections_per_ip = per_ip;
        self
    }
    /// Closes TCP connections from non-peer addresses at accept.
    pub fn with_plain_peers_only(mut self, on: bool) -> Self {
        self.plain_peers_only = on;
        self
    }
}

/// Resolves the FQDNs of `policy`'s peers (static hosts first, then the system resolver).
/// Peers that do not resolve stay unresolved: calls to them get 503, and nothing from them is
/// admitted over TCP/UDP (TLS admission uses the certificate, not the address).
pub async fn resolve(policy: Policy, static_hosts: &[(String, IpAddr)]) -> Policy {
    let mut out = policy.clone();
    for peer in policy.peers() {
        let PeerAddress::Fqdn(name) = &peer.address else {
            continue;
        };
        let mut addrs: Vec<IpAddr> = static_hosts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, ip)| *ip)
            .collect();
        if addrs.is_empty() {
            match tokio::net::lookup_host((name.as_str(), peer.port)).await {
                Ok(it) => addrs = it.map(|a| a.ip()).collect(),
                Err(e) => {
                    tracing::warn!(peer = %peer.name, %name, %e, "peer FQDN does not resolve")
                }
            }
        }
        out = out.with_resolved(&peer.name, addrs);
    }
    out
}

enum CoreMsg {
    Input {
        remote: Remote,
        bytes: Vec<u8>,
    },
    FrameError {
        remote: Remote,
        buf: Vec<u8>,
        error: FrameError,
        reply: oneshot::Sender<StreamAction>,
    },
    Opened {
        remote: Remote,
        identity: Option<Box<PeerIdentity>>,
        writer: mpsc::Sender<Vec<u8>>,
        /// Where admission verdicts for this inbound connection go.
        control: watch::Sender<Admission>,
    },
    Closed {
        remote: Remote,
    },
    /// Graceful shutdown: refuse new calls (503).
    Drain,
    /// Graceful shutdown deadline: end every call.
    HangupAll,
    /// The relay found a call's media dead.
    MediaTimeout {
        call: CallKey,
        side: Side,
        idle_for: Duration,
        on_hold: bool,
    },
}

/// A handle for telling the signaling core about media events from any thread (the relay's
/// event thread is not a tokio task). Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaEvents {
    core: mpsc::Sender<CoreMsg>,
}

impl MediaEvents {
    /// The media of `call` is dead: leg `side`'s peer sent nothing valid for `idle_for`. The
    /// core ends the call ([`B2bua::media_timeout`]). Blocks while the core's queue is full;
    /// must not be called from inside the tokio runtime.
    pub fn media_timeout(&self, call: CallKey, side: Side, idle_for: Duration, on_hold: bool) {
        let _ = self.core.blocking_send(CoreMsg::MediaTimeout {
            call,
            side,
            idle_for,
            on_hold,
        });
    }
}

/// What admission has said about an inbound connection so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// No request admitted or refused yet.
    Pending,
    /// A request was admitted: the connection may stay.
    Admitted,
    /// Its requests were refused and none was admitted: close after the response.
    Refused,
}

#[derive(Debug)]
struct Limits {
    global: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    strangers: Arc<Semaphore>,
    stranger_ip: Mutex<HashMap<IpAddr, usize>>,
    max_stranger_per_ip: usize,
}

/// Holds one connection's place: in the peers' capacity (global + per IP), or in the
/// strangers' quota until it is admitted. Frees it on drop.
struct Slot {
    limits: Arc<Limits>,
    /// Counted in the per-IP map of the capacity it holds.
    ip: Option<IpAddr>,
    peer: Option<OwnedSemaphorePermit>,
    stranger: Option<OwnedSemaphorePermit>,
}

fn decrement(map: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = m.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

fn increment(map: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr, max: usize) -> bool {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    let n = m.entry(ip).or_insert(0);
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            if self.peer.is_some() {
                decrement(&self.limits.per_ip, ip);
            } else if self.stranger.is_some() {
                decrement(&self.limits.stranger_ip, ip);
            }
        }
    }
}

impl Slot {
    /// True while the connection sits in the strangers' quota.
    fn is_stranger(&self) -> bool {
        self.peer.is_none()
    }

    /// Moves a stranger's connection (now admitted, or with a peer certificate) into the
    /// peers' capacity; false when that is full (the connection is then closed).
    fn promote(&mut self) -> bool {
        if self.peer.is_some() {
            return true;
        }
        let Ok(permit) = self.limits.global.clone().try_acquire_owned() else {
            return false;
        };
        if let Some(ip) = self.ip {
            if !increment(&self.limits.per_ip, ip, self.limits.max_per_ip) {
                return false;
            }
            decrement(&self.limits.stranger_ip, ip);
        }
        self.peer = Some(permit);
        self.stranger = None;
        true
    }
}

impl Limits {
    /// A place in the peers' capacity (outbound connections: `ip` None).
    fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Slot> {
        let permit = self.global.clone().try_acquire_owned().ok()?;
        if let Some(ip) = ip
            && !increment(&self.per_ip, ip, self.max_per_ip)
        {
            return None;
        }
        Some(Slot {
            limits: self.clone(),
            ip,
            peer: Some(permit),
            stranger: None,
        })
    }

    /// A place in the strangers' quota.
    fn acquire_stranger(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let permit = self.strangers.clone().try_acquire_owned().ok()?;
        if !increment(&self.stranger_ip, ip, self.max_stranger_per_ip) {
            return None;
        }
        Some(Slot {
            limits: self.clone(),
            ip: Some(ip),
            peer: None,
            stranger: Some(permit),
        })
    }
}

struct Shared {
    core: mpsc::Sender<CoreMsg>,
    limits: Arc<Limits>,
    metrics: Arc<SipMetrics>,
    framing: FramingConfig,
    cfg: TransportConfig,
    policy: PolicyHandle,
    /// Rate limit for per-connection log lines (accept, handshake, close).
    log: Mutex<crate::lograte::LogGate>,
}

impl Shared {
    /// Whether a line for event `code` about `ip` may be logged now (see [`crate::lograte`]).
    fn log_allow(&self, code: &'static str, ip: IpAddr) -> Option<u64> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(clock::now(), code, ip)
    }

    /// Counts an inbound connection closed (or refused) for `reason`.
    fn closed(&self, reason: &'static str) {
        self.metrics.connections_closed.inc(reason);
    }
}

/// A running signaling server: listeners, connections and the core task.
#[derive(Debug)]
pub struct Server {
    local: Vec<(TransportKind, SocketAddr)>,
    policy: PolicyHandle,
    static_hosts: Vec<(String, IpAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    core: mpsc::Sender<CoreMsg>,
    metrics: Arc<SipMetrics>,
    limits: Arc<Limits>,
    max_connections: usize,
}

impl Server {
    /// Binds the configured listeners, resolves the policy's peers and starts serving.
    /// `b2bua`'s `local` addresses are filled from the bound sockets. Calls routed to
    /// `Target::Echo` get 503 (see [`Server::start_with_local_endpoint`]).
    pub async fn start(
        cfg: TransportConfig,
        b2bua_cfg: B2buaConfig,
        policy: Policy,
        media: Arc<dyn MediaAnchor>,
    ) -> io::Result<Server> {
        Self::start_with_local_endpoint(cfg, b2bua_cfg, policy, media, None).await
    }

    /// [`Server::start`] with the endpoint that answers `Target::Echo` routes (the gateway's
    /// echo service).
    pub async fn start_with_local_endpoint(
        cfg: TransportConfig,
        mut b2bua_cfg: B2buaConfig,
        policy: Policy,
        media: Arc<dyn MediaAnchor>,
        local_endpoint: Option<Arc<dyn LocalEndpoint>>,
    ) -> io::Result<Server> {
        let (core_tx, core_rx) = mpsc::channel(4096);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut local = Vec::new();
        let udp = match cfg.udp {
            Some(a) => {
                let s = Arc::new(UdpSocket::bind(a).await?);
                local.push((TransportKind::Udp, s.local_addr()?));
                Some(s)
            }
            None => None,
        };
        let tcp = match cfg.tcp {
            Some(a) => {
                let l = TcpListener::bind(a).await?;
                local.push((TransportKind::Tcp, l.local_addr()?));
                Some(l)
            }
            None => None,
        };
        let tls = match (cfg.tls, &cfg.tls_server) {
            (Some(a), Some(_)) => {
                let l = TcpListener::bind(a).await?;
                local.push((TransportKind::Tls, l.local_addr()?));
                Some(l)
            }
            _ => None,
        };
        for (kind, addr) in &local {
            let code = match kind {
                TransportKind::Udp => "GW1110",
                TransportKind::Tcp => "GW1111",
                TransportKind::Tls => "GW1112",
            };
            tracing::info!(code, transport = %kind, %addr, "SIP listener started");
        }
        let policy = resolve(policy, &cfg.static_hosts).await;
        log_plans(&policy, &local);
        let handle = PolicyHandle::new(policy);
        b2bua_cfg.local = local
            .iter()
            .map(|(k, a)| match cfg.advertise {
                Some(ip) if a.ip().is_unspecified() => (*k, SocketAddr::new(ip, a.port())),
                _ => (*k, *a),
            })
            .collect();
        let framing = b2bua_cfg.endpoint.framing;
        // Every process gets its own identifier stream (RFC 3261 §8.1.1.4: Call-IDs unique
        // across nodes and restarts; tags and branches unguessable).
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(format!("random seed: {e}")))?;
        b2bua_cfg.endpoint = b2bua_cfg.endpoint.with_random_ids(seed);
        let mut b2bua = B2bua::new(b2bua_cfg, handle.clone(), media);
        let metrics = Arc::new(SipMetrics::default());
        b2bua.set_metrics(metrics.clone());
        if let Some(le) = local_endpoint {
            b2bua.set_local_endpoint(le);
        }
        let limits = Arc::new(Limits {
            global: Arc::new(Semaphore::new(cfg.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: cfg.max_connections_per_ip,
            strangers: Arc::new(Semaphore::new(cfg.max_stranger_connections)),
            stranger_ip: Mutex::new(HashMap::new()),
            max_stranger_per_ip: cfg.max_stranger_connections_per_ip,
        });
        let shared = Arc::new(Shared {
            core: core_tx.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            framing,
            cfg: cfg.clone(),
            policy: handle.clone(),
            log: Mutex::new(crate::lograte::LogGate::default()),
        });
        tasks.spawn(core_task(
            b2bua,
            core_rx,
            udp.clone(),
            shared.clone(),
            shutdown_rx.clone(),
        ));
        if let Some(s) = udp {
            tasks.spawn(udp_task(s, shared.clone(), shutdown_rx.clone()));
        }
        if let Some(l) = tcp {
            tasks.spawn(accept_task(
                l,
                TransportKind::Tcp,
                shared.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let Some(l) = tls {
            tasks.spawn(accept_task(
                l,
                TransportKind::Tls,
                shared.clone(),
                shutdown_rx.clone(),
            ));
        }
        Ok(Server {
            local,
            policy: handle,
            static_hosts: cfg.static_hosts,
            shutdown,
            tasks,
            core: core_tx,
            metrics,
            limits,
            max_connections: cfg.max_connections,
        })
    }

    /// The bound address of a transport's listener.
    pub fn local_addr(&self, kind: TransportKind) -> Option<SocketAddr> {
        self.local.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// The live policy.
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Resolves and installs a new policy: new calls use it, calls in progress keep theirs
    /// (R-MODE-4).
    pub async fn reload(&self, policy: Policy) {
        let policy = resolve(policy, &self.static_hosts).await;
        log_plans(&policy, &self.local);
        self.policy.store(policy);
    }

    /// The signaling counters (R-OPS-5).
    pub fn metrics(&self) -> &Arc<SipMetrics> {
        &self.metrics
    }

    /// Stream connections open now (inbound and outbound).
    pub fn open_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.limits.global.available_permits())
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> u64 {
        self.metrics
            .active_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Graceful shutdown, step 1: new INVITEs get 503 with Retry-After; calls in progress,
    /// in-dialog requests and OPTIONS go on.
    pub async fn drain(&self) {
        let _ = self.core.send(CoreMsg::Drain).await;
    }

    /// A handle for media events (media timeouts from the relay's event thread).
    pub fn media_events(&self) -> MediaEvents {
        MediaEvents {
            core: self.core.clone(),
        }
    }

    /// Graceful shutdown, step 2: ends every call in progress (BYE on both legs, or 503 and
    /// CANCEL for calls still ringing). Give the BYEs a moment to leave before
    /// [`Server::shutdown`].
    pub async fn hangup_all(&self) {
        let _ = self.core.send(CoreMsg::HangupAll).await;
    }

    /// Stops listeners, connections and the core task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// R-MODE-5: per dial plan, its mode and the listeners its peers may use (`GW1113`).
fn log_plans(policy: &Policy, local: &[(TransportKind, SocketAddr)]) {
    for plan in policy.dial_plans() {
        let listeners: Vec<String> = local
            .iter()
            .filter(|(k, _)| plan.security.allows(*k))
            .map(|(k, a)| format!("{k} {a}"))
            .collect();
        if listeners.is_empty() {
            tracing::warn!(code = "GW1114", dial_plan = %plan.name, mode = %plan.security, "dial plan has no listener for its mode");
        }
        tracing::info!(
            code = "GW1113",
            dial_plan = %plan.name,
            mode = %plan.security,
            listeners = %listeners.join(", "),
            "dial plan active"
        );
    }
}

async fn udp_task(sock: Arc<UdpSocket>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let r = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = stop.changed() => return,
        };
        match r {
            Ok((n, from)) => {
                let msg = CoreMsg::Input {
                    remote: Remote {
                        transport: TransportKind::Udp,
                        addr: from,
                    },
                    bytes: buf[..n].to_vec(),
                };
                if shared.core.send(msg).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable surfaces as an error on some platforms: keep going.
            Err(e) => tracing::debug!(%e, "UDP receive error"),
        }
    }
}

async fn accept_task(
    listener: TcpListener,
    kind: TransportKind,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let r = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, from) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let ip = from.ip();
        let policy = shared.policy.load();
        if kind == TransportKind::Tcp
            && shared.cfg.plain_peers_only
            && !policy.is_plain_peer_address(ip)
        {
            shared.closed("not_a_peer");
            drop(stream);
            continue;
        }
        // Configured peers' addresses use the peers' capacity; everyone else the strangers'
        // quota until a request is admitted or a peer certificate proved.
        let slot = if policy.is_peer_address(ip) {
            shared.limits.acquire(Some(ip)).ok_or("cap")
        } else {
            shared.limits.acquire_stranger(ip).ok_or("stranger_quota")
        };
        drop(policy);
        let slot = match slot {
            Ok(s) => s,
            Err(reason) => {
                SipMetrics::add(&shared.metrics.connections_capped, 1);
                shared.closed(reason);
                if let Some(left_out) = shared.log_allow("GW1204", ip) {
                    tracing::warn!(
                        code = "GW1204",
                        %from,
                        transport = %kind,
                        reason,
                        left_out,
                        "GW1204 connection refused: capacity reached"
                    );
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = Remote {
                transport: kind,
                addr: from,
            };
            if kind == TransportKind::Tls {
                let Some(server) = shared.cfg.tls_server.clone() else {
                    return;
                };
                let mut slot = slot;
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                match tokio::time::timeout(shared.cfg.handshake_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => {
                        SipMetrics::add(&shared.metrics.tls_handshakes, 1);
                        let identity = PeerIdentity::from_verified_chain(
                            tls.get_ref().1.peer_certificates(),
                            shared.cfg.identity,
                        );
                        // A certificate naming a configured peer moves the connection into
                        // the peers' capacity.
                        if slot.is_stranger()
                            && identity
                                .as_ref()
                                .is_some_and(|id| shared.policy.load().names_a_peer(id))
                            && !slot.promote()
                        {
                            shared.closed("cap");
                            return;
                        }
                        if let Some(left_out) = shared.log_allow("tls-connected", ip) {
                            let names = identity
                                .as_ref()
                                .map(|i| i.fqdns.join(", "))
                                .unwrap_or_default();
                            tracing::info!(%from, names, left_out, "TLS peer connected");
                        }
                        run_connection(tls, remote, identity, shared, slot, None).await;
                    }
                    Ok(Err(e)) => {
                        let reason = tls_refusal_reason(&e);
                        shared.metrics.tls_refusals.inc(reason);
                        shared.closed("tls_handshake_failed");
                        if let Some(left_out) = shared.log_allow("GW1202", ip) {
                            tracing::warn!(
                                code = "GW1202",
                                %from,
                                reason,
                                error = %e,
                                left_out,
                                "GW1202 TLS handshake refused"
                            );
                        }
                    }
                    Err(_) => {
                        shared.metrics.tls_refusals.inc("timeout");
                        shared.closed("tls_handshake_timeout");
                        if let Some(left_out) = shared.log_allow("GW1205", ip) {
                            tracing::warn!(
                                code = "GW1205",
                                %from,
                                left_out,
                                "GW1205 TLS handshake timed out"
                            );
                        }
                    }
                }
            } else {
                run_connection(stream, remote, None, shared, slot, None).await;
            }
        });
    }
}

/// The reason token of a refused inbound handshake: the certificate verdict (R-CERT-7) when
/// there is one, else what went wrong with the handshake itself.
fn tls_refusal_reason(e: &io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => "closed",
            _ => "io",
        };
    };
    if let Some(r) = mediagate_pki::RefusalReason::from_rustls(tls) {
        return r.as_str();
    }
    match tls {
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "not_tls",
        _ => "other",
    }
}

async fn connect_task(
    remote: Remote,
    server_name: Option<String>,
    shared: Arc<Shared>,
    writer_rx: mpsc::Receiver<Vec<u8>>,
) {
    let fail = |shared: &Shared, why: String| {
        tracing::warn!(code = "GW1206", %remote, %why, "GW1206 outbound connection failed");
        let _ = shared.core.try_send(CoreMsg::Closed { remote });
    };
    let Some(slot) = shared.limits.acquire(None) else {
        return fail(&shared, "connection cap reached".into());
    };
    let stream = match tokio::time::timeout(
        shared.cfg.handshake_timeout,
        TcpStream::connect(remote.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(&shared, e.to_string()),
        Err(_) => return fail(&shared, "connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    if remote.transport == TransportKind::Tls {
        let Some(client) = shared.cfg.tls_client.clone() else {
            return fail(&shared, "no TLS client config".into());
        };
        let name = server_name.unwrap_or_else(|| remote.addr.ip().to_string());
        let Ok(sn) = rustls_pki_types::ServerName::try_from(name.clone()) else {
            return fail(&shared, format!("invalid server name {name}"));
        };
        let connector = tokio_rustls::TlsConnector::from(client);
        match tokio::time::timeout(shared.cfg.handshake_timeout, connector.connect(sn, stream))
            .await
        {
            Ok(Ok(tls)) => {
                tracing::info!(%remote, %name, "outbound TLS connected");
                run_connection(tls, remote, None, shared, slot, Some(writer_rx)).await
            }
            Ok(Err(e)) => fail(&shared, format!("TLS to {name}: {e}")),
            Err(_) => fail(&shared, "TLS handshake timed out".into()),
        }
    } else {
        run_connection(stream, remote, None, shared, slot, Some(writer_rx)).await
    }
}

/// Reads frames from a stream and forwards them to the core; a writer task sends what the core
/// queues for this connection. `writer_rx` is given for outbound connections (the core
/// created the queue when it first wanted to send).
///
/// Inbound connections are held to admission (R-SIP-5): without an admitted request within
/// [`TransportConfig::admission_timeout`] (keep-alives do not count), or once their requests
/// have only been refused, they are closed; a stranger's connection that is admitted moves
/// into the peers' capacity. Every close is counted by reason.
async fn run_connection<S>(
    stream: S,
    remote: Remote,
    identity: Option<PeerIdentity>,
    shared: Arc<Shared>,
    mut slot: Slot,
    writer_rx: Option<mpsc::Receiver<Vec<u8>>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let inbound = writer_rx.is_none();
    let (writer_tx, mut rx) = match writer_rx {
        Some(rx) => (None, rx),
        None => {
            let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
            (Some(tx), rx)
        }
    };
    let (control_tx, mut control) = watch::channel(if inbound {
        Admission::Pending
    } else {
        Admission::Admitted
    });
    let pong_tx = writer_tx.clone();
    if let Some(writer) = writer_tx
        && shared
            .core
            .send(CoreMsg::Opened {
                remote,
                identity: identity.map(Box::new),
                writer,
                control: control_tx,
            })
            .await
            .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let admission_deadline =
        tokio::time::Instant::from_std(clock::now() + shared.cfg.admission_timeout);
    let mut admitted = !inbound;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut partial_deadline: Option<tokio::time::Instant> = None;
    let why: &'static str = 'read: loop {
        let partial = if buf.is_empty() {
            partial_deadline = None;
            None
        } else {
            Some(*partial_deadline.get_or_insert_with(|| {
                tokio::time::Instant::from_std(clock::now() + shared.cfg.partial_message_timeout)
            }))
        };
        let far = tokio::time::Instant::from_std(clock::now() + Duration::from_secs(86_400));
        let read = tokio::select! {
            r = rd.read(&mut chunk) => r,
            () = tokio::time::sleep_until(partial.unwrap_or(far)), if partial.is_some() => {
                if let Some(left_out) = shared.log_allow("GW1207", remote.addr.ip()) {
                    tracing::warn!(
                        code = "GW1207",
                        %remote,
                        buffered = buf.len(),
                        left_out,
                        "GW1207 incomplete message timed out: connection closed"
                    );
                }
                break 'read "partial_message_timeout";
            }
            () = tokio::time::sleep_until(admission_deadline), if !admitted => {
                break 'read "admission_timeout";
            }
            changed = control.changed(), if !admitted => {
                if changed.is_err() {
                    break 'read "shutdown";
                }
                match *control.borrow_and_update() {
                    Admission::Admitted => {
                        admitted = true;
                        if !slot.promote() {
                            break 'read "cap";
                        }
                    }
                    Admission::Refused => break 'read "refused",
                    Admission::Pending => {}
                }
                continue 'read;
            }
        };
        let n = match read {
            Ok(0) => break 'read "peer_closed",
            Err(_) => break 'read "io_error",
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut frames = 0;
        loop {
            match check(&buf, &shared.framing) {
                Check::Incomplete => break,
                Check::KeepAlive { len, pong } => {
                    buf.drain(..len);
                    if pong && let Some(tx) = &pong_tx {
                        let _ = tx.try_send(b"\r\n".to_vec());
                    }
                }
                Check::Complete(len) => {
                    // Progress: the incomplete-message clock restarts.
                    partial_deadline = None;
                    let bytes = buf[..len].to_vec();
                    buf.drain(..len);
                    if shared
                        .core
                        .send(CoreMsg::Input { remote, bytes })
                        .await
                        .is_err()
                    {
                        break 'read "shutdown";
                    }
                    frames += 1;
                    if frames >= FRAMES_PER_WAKE {
                        frames = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Check::Error(error) => {
                    let (reply, wait) = oneshot::channel();
                    let sent = shared
                        .core
                        .send(CoreMsg::FrameError {
                            remote,
                            buf: buf.clone(),
                            error,
                            reply,
                        })
                        .await;
                    if sent.is_err() {
                        break 'read "shutdown";
                    }
                    match wait.await {
                        Ok(StreamAction::Skip(n)) => {
                            buf.drain(..n.min(buf.len()));
                        }
                        _ => break 'read "framing_error",
                    }
                }
            }
        }
    };
    if inbound {
        shared.closed(why);
    }
    // The writer ends when every sender is gone: ours for pongs, and the core's at `Closed`.
    drop(pong_tx);
    let _ = shared.core.send(CoreMsg::Closed { remote }).await;
    // Let queued responses (e.g. a 413 or 403 before close) reach the socket.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    drop(slot);
}

async fn core_task(
    mut b2bua: B2bua,
    mut rx: mpsc::Receiver<CoreMsg>,
    udp: Option<Arc<UdpSocket>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns: HashMap<Remote, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut controls: HashMap<Remote, watch::Sender<Admission>> = HashMap::new();
    let mut carry: Option<CoreMsg> = None;
    let far = Duration::from_secs(3600);
    let sleep = tokio::time::sleep(far);
    tokio::pin!(sleep);
    loop {
        let deadline = b2bua
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::from_std(clock::now() + far));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if let Some(m) = carry.take() {
            handle_msg(&mut b2bua, &mut conns, &mut controls, m);
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    let mut next = Some(msg);
                    let mut handled = 0;
                    while let Some(m) = next.take() {
                        // A close waits for the batch's output: a 413 or 403 queued for that
                        // connection just before it closed must still reach its writer.
                        if handled > 0 && matches!(m, CoreMsg::Closed { .. }) {
                            carry = Some(m);
                            break;
                        }
                        handle_msg(&mut b2bua, &mut conns, &mut controls, m);
                        handled += 1;
                        if handled >= INPUTS_PER_WAKE {
                            break;
                        }
                        next = rx.try_recv().ok();
                    }
                }
                () = &mut sleep => b2bua.handle_timeout(clock::now()),
            }
        }
        shared.metrics.active_calls.store(
            b2bua.call_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        while let Some(t) = b2bua.poll_transmit() {
            shared.metrics.on_transmit(&t.bytes);
            match t.remote.transport {
                TransportKind::Udp => {
                    if let Some(s) = &udp
                        && let Err(e) = s.try_send_to(&t.bytes, t.remote.addr)
                    {
                        // Socket buffer full: fall back to an awaited send.
                        if e.kind() == io::ErrorKind::WouldBlock {
                            let _ = s.send_to(&t.bytes, t.remote.addr).await;
                        } else {
                            tracing::debug!(%e, to = %t.remote.addr, "UDP send failed");
                        }
                    }
                }
                _ => {
                    if !conns.contains_key(&t.remote) && !b2bua.may_connect(&t.remote) {
                        if let Some(left_out) = shared.log_allow("conn-gone", t.remote.addr.ip()) {
                            tracing::info!(remote = %t.remote, left_out, "connection gone and not a peer address: message dropped");
                        }
                        continue;
                    }
                    let tx = conns.entry(t.remote).or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(1024);
                        let name = b2bua.server_name(&t.remote).map(str::to_owned);
                        tokio::spawn(connect_task(t.remote, name, shared.clone(), rx));
                        tx
                    });
                    match tx.try_send(t.bytes) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            if let Some(left_out) =
                                shared.log_allow("queue-full", t.remote.addr.ip())
                            {
                                tracing::warn!(remote = %t.remote, left_out, "connection write queue full: message dropped")
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            conns.remove(&t.remote);
                        }
                    }
                }
            }
        }
        // After the responses are queued: tell connections what admission made of their
        // requests (a refused one is closed once its 403 is out).
        while let Some((remote, verdict)) = b2bua.poll_verdict() {
            if let Some(c) = controls.get(&remote) {
                let v = match verdict {
                    Verdict::Admitted => Admission::Admitted,
                    Verdict::Refused => Admission::Refused,
                };
                c.send_if_modified(|cur| {
                    // Once admitted, a connection stays admitted.
                    let changed = *cur == Admission::Pending;
                    if changed {
                        *cur = v;
                    }
                    changed
                });
            }
        }
    }
}

fn handle_msg(
    b2bua: &mut B2bua,
    conns: &mut HashMap<Remote, mpsc::Sender<Vec<u8>>>,
    controls: &mut HashMap<Remote, watch::Sender<Admission>>,
    msg: CoreMsg,
) {
    match msg {
        CoreMsg::Input { remote, bytes } => {
            b2bua.metrics().on_receive(&bytes);
            b2bua.handle_input(clock::now(), remote, &bytes)
        }
        CoreMsg::FrameError {
            remote,
            buf,
            error,
            reply,
        } => {
            let a = b2bua.handle_frame_error(clock::now(), remote, &buf, error);
            let _ = reply.send(a);
        }
        CoreMsg::Opened {
            remote,
            identity,
            writer,
            control,
        } => {
            conns.insert(remote, writer);
            controls.insert(remote, control);
            b2bua.connection_opened(remote, identity.map(|b| *b));
        }
        CoreMsg::Closed { remote } => {
            conns.remove(&remote);
            controls.remove(&remote);
            b2bua.connection_closed(clock::now(), remote);
        }
        CoreMsg::Drain => b2bua.set_draining(true),
        CoreMsg::HangupAll => b2bua.hangup_all(clock::now()),
        CoreMsg::MediaTimeout {
            call,
            side,
            idle_for,
            on_hold,
        } => b2bua.media_timeout(clock::now(), call, side, idle_for, on_hold),
    }
}
