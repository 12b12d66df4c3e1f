//! The mediagate configuration file (R-OPS-1) and the admin commands' edits of it (R-OPS-4).
//!
//! ```text
//!  mediagate.toml ──read──► toml_edit::Document (syntax; spans) ──► serde schema (unknown keys refused)
//!                                                                        │
//!                                    validate once: addresses, ranges, modes, Policy::new
//!                                                                        ▼
//!  Config (immutable values) ──► policy() ─► mediagate_sip::Policy     cert_dir(), trust_dir(), …
//! ```
//!
//! - **Validated once, into immutable values.** [`Config::load`] and [`Config::parse`] either
//!   return a [`Config`] in which every address is parsed, every range checked and the dial plans
//!   and peers already accepted by [`mediagate_sip::Policy::new`] (R-PEER-3), or the first
//!   problem. Nothing downstream validates again: [`Config::policy`] cannot fail.
//! - **Errors name the file, the key and the problem** ([`ConfigError`]):
//!   `mediagate.toml: peer[pbx].port: peer "pbx" is in Secured dial plan "secured" and must use
//!   SIP-TLS port 5061, not 5060`. Syntax errors give `line L, column C` instead of a key. Keys of
//!   `[[peer]]` and `[[dial_plan]]` entries are written with the entry's name when it is simple
//!   and unique, else its 0-based index (`peer[2].port`).
//! - **Two layers** (STYLE.md §7): a private serde schema that refuses unknown keys, then the
//!   typed public sections with documented defaults ([`defaults`]).
//! - **Edits keep the operator's file** ([`edit`]): the admin commands change the file through
//!   `toml_edit`, which keeps comments, order and formatting, validate the result with
//!   [`Config::parse`] before writing, and replace the file atomically. The running gateway then
//!   reloads it (R-OPS-2). Plain serde would rewrite the whole file and drop every comment.
//!
//! What this crate does **not** do: it opens no socket, resolves no name (static `[hosts]` are
//! handed to the transport, which consults them before DNS), reads no certificate and watches no
//! file; the gateway does those with the values found here.

mod keys;
mod locate;
mod schema;
mod validate;

pub mod edit;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use mediagate_sip::{MediaLatching, MediaSource, PeerAddress, Policy, Route, VoipSecurity};
use mediagate_sip_proto::TransportKind;

/// The default of every optional key, each with the reason it was chosen.
pub mod defaults {
    /// `gateway.fqdn`: the loopback name, so that the embedded demo and a minimal file work on
    /// one machine. Production sets the name peers use to reach the gateway (certificate SAN).
    pub const FQDN: &str = "localhost";
    /// `gateway.data_dir`: a `data` directory beside the configuration file (or, for the
    /// embedded default, in the current directory), as the `cert`/`trust` commands use.
    pub const DATA_DIR: &str = "./data";
    /// `gateway.cert_dir`, relative to `data_dir` (R-CERT-1).
    pub const CERT_DIR: &str = "certs";
    /// `gateway.trust_dir`, relative to `data_dir` (R-CERT-7).
    pub const TRUST_DIR: &str = "trust";
    /// `gateway.trust_own_certificate`: off. Trusting our own self-signed certificate is only
    /// for the demo, where local tools call the gateway with its own certificate.
    pub const TRUST_OWN_CERTIFICATE: bool = false;
    /// `media.port_min`: 30000, above the usual ephemeral and service ports.
    pub const PORT_MIN: u16 = 30_000;
    /// `media.port_max`: 39999: 10 000 ports, 2 500 calls (4 ports a call: RTP + RTCP per leg).
    pub const PORT_MAX: u16 = 39_999;
    /// `media.workers`: 0 = one relay worker per core.
    pub const WORKERS: usize = 0;
    /// `media.timeout_secs`: a call whose leg sent nothing for a minute is ended, like
    /// rtpengine's `timeout` (phones send RTP every 20 ms and RTCP every few seconds).
    pub const TIMEOUT_SECS: u64 = 60;
    /// `media.hold_timeout_secs`: the same for a call on hold, where silence is normal: an
    /// hour, like rtpengine's `silent-timeout`.
    pub const HOLD_TIMEOUT_SECS: u64 = 3600;
    /// Largest accepted media timeout: a day.
    pub const TIMEOUT_SECS_MAX: u64 = 86_400;
    /// `media.wakeup_coalesce_us`: 500 µs, the relay's default (invisible to 20 ms audio).
    pub const WAKEUP_COALESCE_US: u64 = 500;
    /// Largest accepted `media.wakeup_coalesce_us`: 10 ms, half a 20 ms packet time.
    pub const WAKEUP_COALESCE_US_MAX: u64 = 10_000;
    /// `limits.max_calls`: calls in progress above which a new INVITE gets 503 (R-SIP-5).
    pub const MAX_CALLS: usize = 1000;
    /// `limits.retry_after_secs`: Retry-After of that 503.
    pub const RETRY_AFTER_SECS: u32 = 5;
    /// `limits.admission_timeout_ms`: 5 s for a connection to bring an admitted request: a
    /// phone or PBX sends its first request at once; a stranger's idle socket is not kept.
    pub const ADMISSION_TIMEOUT_MS: u64 = 5_000;
    /// `limits.partial_message_timeout_ms`: 30 s to complete a message once begun.
    pub const PARTIAL_MESSAGE_TIMEOUT_MS: u64 = 30_000;
    /// `limits.max_stranger_connections`: 64 connections from non-peer addresses at once.
    pub const MAX_STRANGER_CONNECTIONS: usize = 64;
    /// `limits.max_stranger_connections_per_ip`: 8 of them per source address.
    pub const MAX_STRANGER_CONNECTIONS_PER_IP: usize = 8;
    /// `limits.session_expires_secs`: 1800 s, RFC 4028's recommended session interval.
    pub const SESSION_EXPIRES_SECS: u64 = 1800;
    /// `limits.min_se_secs`: 90 s, RFC 4028's minimum.
    pub const MIN_SE_SECS: u64 = 90;
    /// `limits.max_connections`: stream connections at most, inbound + outbound (R-SIP-5).
    pub const MAX_CONNECTIONS: usize = 4096;
    /// `limits.max_connections_per_ip`: inbound stream connections per source IP at most.
    pub const MAX_CONNECTIONS_PER_IP: usize = 256;
    /// `limits.tls_handshake_timeout_ms`: a handshake that takes longer is dropped (R-SIP-5).
    pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5000;
    /// `limits.shutdown_grace_secs`: on shutdown, calls get this long before they are sent BYE.
    pub const SHUTDOWN_GRACE_SECS: u64 = 30;
    /// `tls.identity_from_cn`: off; a TLS peer is named by its certificate's dNSName SANs only
    /// (R-PEER-2).
    pub const IDENTITY_FROM_CN: bool = false;
    /// `tls.tls_peer_ports`: 5061, the SIP-TLS port R-PEER-3 demands of Secured and SIPSecured
    /// peers.
    pub const TLS_PEER_PORTS: &[u16] = &[5061];
    /// `dial_plan.voip_security`: Unsecured, the default for a new dial plan (SPEC §1).
    pub const VOIP_SECURITY: mediagate_sip::VoipSecurity = mediagate_sip::VoipSecurity::Unsecured;
}

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file (or text said to come from it); relative paths are taken from its directory.
    File(PathBuf),
    /// [`Config::DEFAULT_TOML`]; relative paths are taken from the current directory.
    Embedded,
}

impl ConfigSource {
    /// The directory relative paths in the configuration are resolved against: the file's
    /// directory, or the current directory (`""`) for the embedded default.
    pub fn base_dir(&self) -> PathBuf {
        match self {
            ConfigSource::File(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ConfigSource::Embedded => PathBuf::new(),
        }
    }

    /// The path errors name: the file, or `<embedded default>`.
    pub fn error_path(&self) -> PathBuf {
        match self {
            ConfigSource::File(path) => path.clone(),
            ConfigSource::Embedded => PathBuf::from("<embedded default>"),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Embedded => f.write_str("the embedded default configuration"),
        }
    }
}

/// `[gateway]`: who we are and where the certificate and trust stores live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySection {
    /// `fqdn`: our DNS name: SAN of the generated certificate (R-CERT-3), SIP host.
    /// Default [`defaults::FQDN`].
    pub fqdn: String,
    /// `addresses`: extra IP SANs of the generated certificate. Default: none.
    pub addresses: Vec<IpAddr>,
    /// `data_dir` as written: base of `cert_dir` and `trust_dir` when they are relative;
    /// itself relative to the configuration file's directory. Default [`defaults::DATA_DIR`].
    pub data_dir: PathBuf,
    /// `cert_dir` as written; see [`Config::cert_dir`] for the resolved path.
    /// Default [`defaults::CERT_DIR`].
    pub cert_dir: PathBuf,
    /// `trust_dir` as written; see [`Config::trust_dir`]. Default [`defaults::TRUST_DIR`].
    pub trust_dir: PathBuf,
    /// `trust_own_certificate`: demo only: put our own (self-signed) certificate in the trust
    /// store so local tools can call us with it. Default [`defaults::TRUST_OWN_CERTIFICATE`].
    pub trust_own_certificate: bool,
}

/// `[listen]`: SIP listeners (R-MODE-1). Each is optional (absent = off); at least one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSection {
    /// `udp`: plain SIP over UDP.
    pub udp: Option<SocketAddr>,
    /// `tcp`: plain SIP over TCP.
    pub tcp: Option<SocketAddr>,
    /// `tls`: SIP over mutual TLS.
    pub tls: Option<SocketAddr>,
    /// `advertise`: the address put in Via and Contact. Optional; required (and checked) when
    /// a listener binds an unspecified address (`0.0.0.0`, `::`).
    pub advertise: Option<IpAddr>,
}

impl ListenSection {
    /// The bind address of the listener for `transport`, if it is on.
    pub fn listener(&self, transport: TransportKind) -> Option<SocketAddr> {
        match transport {
            TransportKind::Udp => self.udp,
            TransportKind::Tcp => self.tcp,
            TransportKind::Tls => self.tls,
        }
    }

    /// Our address per transport for Via and Contact (`B2buaConfig::local`): `advertise` (or
    /// the listener's IP) with the listener's port, for each listener that is on.
    pub fn advertised(&self) -> Vec<(TransportKind, SocketAddr)> {
        [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
            .into_iter()
            .filter_map(|t| {
                self.listener(t).map(|bind| {
                    (
                        t,
                        SocketAddr::new(self.advertise.unwrap_or(bind.ip()), bind.port()),
                    )
                })
            })
            .collect()
    }
}

/// `[media]`: the relay (R-MEDIA-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `address`: relay bind address, also put in SDP; a concrete IP. Default: `listen.advertise`,
    /// else the IP of the first concrete listener (udp, tcp, tls).
    pub address: IpAddr,
    /// `port_min`: lowest media port; even, at least 1024. Default [`defaults::PORT_MIN`].
    pub port_min: u16,
    /// `port_max`: highest media port; odd (the range holds whole RTP/RTCP pairs) and at
    /// least `port_min + 3`. Default [`defaults::PORT_MAX`].
    pub port_max: u16,
    /// `workers`: relay worker threads; 0 = one per core. Default [`defaults::WORKERS`].
    pub workers: usize,
    /// `timeout_secs` (formerly `idle_timeout_secs`): a call whose leg sent no valid RTP or
    /// RTCP for this long is ended with BYE on both legs. Default [`defaults::TIMEOUT_SECS`].
    pub timeout_secs: u64,
    /// `hold_timeout_secs`: the same while a leg is on hold (`sendonly`, `recvonly`,
    /// `inactive`). At least `timeout_secs`. Default [`defaults::HOLD_TIMEOUT_SECS`].
    pub hold_timeout_secs: u64,
    /// `wakeup_coalesce_us`: after a wake-up that relayed only a few packets, a relay worker
    /// pauses this long so the next one handles a batch (like NIC interrupt moderation): less
    /// CPU per packet for at most this much added delay; 0 = off. At most
    /// [`defaults::WAKEUP_COALESCE_US_MAX`]. Default [`defaults::WAKEUP_COALESCE_US`].
    pub wakeup_coalesce_us: u64,
}

impl MediaSection {
    /// `timeout_secs` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// `hold_timeout_secs` as a duration.
    pub fn hold_timeout(&self) -> Duration {
        Duration::from_secs(self.hold_timeout_secs)
    }

    /// `wakeup_coalesce_us` as a duration.
    pub fn wakeup_coalesce(&self) -> Duration {
        Duration::from_micros(self.wakeup_coalesce_us)
    }
}

/// `[limits]`: overload protection (R-SIP-5) and shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsSection {
    /// `max_calls`: above it, new INVITEs get 503 + Retry-After. Default [`defaults::MAX_CALLS`].
    pub max_calls: usize,
    /// `retry_after_secs`: Retry-After of that 503. Default [`defaults::RETRY_AFTER_SECS`].
    pub retry_after_secs: u32,
    /// `max_connections`: stream connections at most. Default [`defaults::MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// `max_connections_per_ip`: inbound stream connections per source IP at most, at most
    /// `max_connections`. Default [`defaults::MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
    /// `tls_handshake_timeout_ms`: TLS handshake deadline. Default
    /// [`defaults::TLS_HANDSHAKE_TIMEOUT_MS`].
    pub tls_handshake_timeout_ms: u64,
    /// `shutdown_grace_secs`: on graceful shutdown calls get this long before BYE. Default
    /// [`defaults::SHUTDOWN_GRACE_SECS`].
    pub shutdown_grace_secs: u64,
    /// `admission_timeout_ms`: an inbound connection without an admitted request this long
    /// after accept (or its TLS handshake) is closed; keep-alives do not count. Default
    /// [`defaults::ADMISSION_TIMEOUT_MS`].
    pub admission_timeout_ms: u64,
    /// `partial_message_timeout_ms`: a connection holding an incomplete message this long is
    /// closed (slowloris). Default [`defaults::PARTIAL_MESSAGE_TIMEOUT_MS`].
    pub partial_message_timeout_ms: u64,
    /// `max_stranger_connections`: connections from addresses that are no peer's, not yet
    /// admitted, share this quota instead of `max_connections`. Default
    /// [`defaults::MAX_STRANGER_CONNECTIONS`].
    pub max_stranger_connections: usize,
    /// `max_stranger_connections_per_ip`: the same per source IP. Default
    /// [`defaults::MAX_STRANGER_CONNECTIONS_PER_IP`].
    pub max_stranger_connections_per_ip: usize,
    /// `plain_peers_only`: close TCP connections on the plain listener from addresses that
    /// are no plain peer's at accept. Default false.
    pub plain_peers_only: bool,
    /// `session_expires_secs`: the session interval the gateway asks for and uses (RFC 4028);
    /// 0 turns session timers off. Default [`defaults::SESSION_EXPIRES_SECS`].
    pub session_expires_secs: u64,
    /// `min_se_secs`: the smallest session interval accepted (`Min-SE`, 422 below it).
    /// Default [`defaults::MIN_SE_SECS`] (RFC 4028's floor; smaller values are for tests).
    pub min_se_secs: u64,
}

impl LimitsSection {
    /// `tls_handshake_timeout_ms` as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }
    /// `shutdown_grace_secs` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    /// `admission_timeout_ms` as a duration.
    pub fn admission_timeout(&self) -> Duration {
        Duration::from_millis(self.admission_timeout_ms)
    }
    /// `partial_message_timeout_ms` as a duration.
    pub fn partial_message_timeout(&self) -> Duration {
        Duration::from_millis(self.partial_message_timeout_ms)
    }
    /// The session interval, `None` when session timers are off.
    pub fn session_expires(&self) -> Option<Duration> {
        (self.session_expires_secs > 0).then(|| Duration::from_secs(self.session_expires_secs))
    }
    /// `min_se_secs` as a duration.
    pub fn min_se(&self) -> Duration {
        Duration::from_secs(self.min_se_secs)
    }
}

/// `[admin]`: the admin HTTP port (metrics, health; R-OPS-5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminSection {
    /// `http`: bind address; absent = no admin HTTP (the default).
    pub http: Option<SocketAddr>,
}

/// `[tls]`: how TLS peers are identified and which ports they may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSection {
    /// `identity_from_cn`: also name a peer by its certificate's CN when it has no dNSName SAN
    /// (R-PEER-2: only when enabled). Default [`defaults::IDENTITY_FROM_CN`].
    pub identity_from_cn: bool,
    /// `tls_peer_ports`: ports a Secured/SIPSecured peer may be configured with (R-PEER-3
    /// demands 5061; labs running peers elsewhere add theirs). Default
    /// [`defaults::TLS_PEER_PORTS`].
    pub tls_peer_ports: Vec<u16>,
}

/// `[[dial_plan]]`: a VoIP security mode and routes (SPEC §1, R-SIP-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlanConfig {
    /// `name`: unique; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `voip_security`: `Unsecured`, `SIPSecured` or `Secured` (any case). Default
    /// [`defaults::VOIP_SECURITY`].
    pub voip_security: VoipSecurity,
    /// `routes`: `{ prefix, target }`, the longest matching prefix wins; target `echo` is the
    /// built-in echo endpoint, anything else a peer name. Default: none.
    pub routes: Vec<Route>,
}

/// `[[peer]]`: an IP gateway or IP PBX (R-PEER-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// `name`: unique; letters, digits, `.`, `_`, `-`; not `echo` (a route target's name for
    /// the built-in endpoint).
    pub name: String,
    /// `address`: FQDN (required in Secured/SIPSecured plans, R-PEER-3) or IP address.
    pub address: PeerAddress,
    /// `port`: its SIP port.
    pub port: u16,
    /// `transport` as written; absent means the dial plan's default
    /// ([`PeerConfig::transport_in`]).
    pub transport: Option<TransportKind>,
    /// `dial_plan`: the name of its dial plan.
    pub dial_plan: String,
    /// `media_source`: `"sdp"` (default: before the relay latches, plain RTP only from the
    /// address in the peer's SDP) or `"peer-address"` (also any port of the peer's signaling
    /// address: peers behind NAT).
    pub media_source: MediaSource,
    /// `media_latching`: `"strict"` (default: stay with the first source) or `"follow"` (move
    /// to a new source `media_source` allows).
    pub media_latching: MediaLatching,
}

impl PeerConfig {
    /// The transport used with this peer when its dial plan has mode `security`: the one
    /// written, else TLS for SIPSecured/Secured and TCP for Unsecured.
    pub fn transport_in(&self, security: VoipSecurity) -> TransportKind {
        self.transport.unwrap_or(if security.requires_tls() {
            TransportKind::Tls
        } else {
            TransportKind::Tcp
        })
    }
}

/// A validated configuration.
///
/// Built only by [`Config::load`], [`Config::parse`] and [`Config::embedded_default`], so every
/// value in it has been checked. The fields are public for reading; to change the
/// configuration, change the file (see [`edit`]) and load it again: [`Config::policy`] returns
/// the policy validated at load, whatever is done to the fields afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[gateway]`
    pub gateway: GatewaySection,
    /// `[listen]`
    pub listen: ListenSection,
    /// `[media]`
    pub media: MediaSection,
    /// `[limits]`
    pub limits: LimitsSection,
    /// `[admin]`
    pub admin: AdminSection,
    /// `[tls]`
    pub tls: TlsSection,
    /// `[[dial_plan]]` entries, in file order.
    pub dial_plans: Vec<DialPlanConfig>,
    /// `[[peer]]` entries, in file order.
    pub peers: Vec<PeerConfig>,
    /// `[hosts]`: static name → IP entries consulted before DNS; names lower-case without a
    /// trailing dot.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Where it came from.
    pub source: ConfigSource,
    /// Built from `dial_plans` and `peers` by `Policy::new` during validation.
    policy: Policy,
}

/// Compares every public field (the policy is derived from them).
impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.gateway == other.gateway
            && self.listen == other.listen
            && self.media == other.media
            && self.limits == other.limits
            && self.admin == other.admin
            && self.tls == other.tls
            && self.dial_plans == other.dial_plans
            && self.peers == other.peers
            && self.hosts == other.hosts
            && self.source == other.source
    }
}

impl Eq for Config {}

impl Config {
    /// The embedded default configuration: a working demo on loopback (R-OPS-1). This is the
    /// text `mediagate config init` writes out.
    pub const DEFAULT_TOML: &str = include_str!("default.toml");

    /// Reads, parses and validates the file at `path`.
    ///
    /// A file that cannot be read is a [`ErrorKind::Io`] error; anything wrong inside it is
    /// [`ErrorKind::Syntax`] or [`ErrorKind::Invalid`], naming the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
            kind: ErrorKind::Io,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`. `origin` is only used to name the file in errors and as
    /// the base of relative paths; it is not read.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_from(text, ConfigSource::File(origin.to_owned()))
    }

    /// The embedded default ([`Config::DEFAULT_TOML`]), parsed; relative paths resolve against
    /// the current directory.
    ///
    /// # Panics
    ///
    /// Never: a test parses the embedded text (`embedded_default_is_valid`).
    pub fn embedded_default() -> Config {
        Config::parse_from(Config::DEFAULT_TOML, ConfigSource::Embedded)
            .unwrap_or_else(|e| panic!("the embedded default configuration is invalid: {e}"))
    }

    fn parse_from(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        let error = |key: String, problem: String, kind: ErrorKind| ConfigError {
            file: source.error_path(),
            key,
            problem,
            kind,
        };
        // Syntax first, with the document kept for naming keys in the schema's errors.
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            error(
                locate::position(text, at),
                e.message().trim_end().to_owned(),
                ErrorKind::Syntax,
            )
        })?;
        let raw: schema::RawConfig = toml::from_str(text).map_err(|e| {
            let (key, problem) = describe_schema_error(text, &doc, &e);
            error(key, problem, ErrorKind::Invalid)
        })?;
        validate::validate(raw, source.clone())
            .map_err(|(key, problem)| error(key, problem, ErrorKind::Invalid))
    }

    /// The validated dial plans and peers as the SIP layer's policy (R-MODE, R-PEER).
    /// FQDNs are not resolved here: the transport does that, consulting [`Config::hosts`]
    /// first.
    pub fn policy(&self) -> Policy {
        self.policy.clone()
    }

    /// The certificate store directory: `gateway.cert_dir` under `gateway.data_dir`, under the
    /// configuration file's directory (the current directory for the embedded default); an
    /// absolute path at any step is taken as it is.
    pub fn cert_dir(&self) -> PathBuf {
        self.resolve(&self.gateway.cert_dir)
    }

    /// The trust store directory, resolved like [`Config::cert_dir`].
    pub fn trust_dir(&self) -> PathBuf {
        self.resolve(&self.gateway.trust_dir)
    }

    /// `gateway.data_dir` resolved against the configuration file's directory.
    pub fn data_dir(&self) -> PathBuf {
        clean(&self.source.base_dir().join(&self.gateway.data_dir))
    }

    fn resolve(&self, dir: &Path) -> PathBuf {
        clean(&self.data_dir().join(dir))
    }

    /// A dial plan by name.
    pub fn dial_plan(&self, name: &str) -> Option<&DialPlanConfig> {
        self.dial_plans.iter().find(|p| p.name == name)
    }

    /// A peer by name.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// The peers of dial plan `plan`, in file order.
    pub fn peers_of<'a>(&'a self, plan: &'a str) -> impl Iterator<Item = &'a PeerConfig> + 'a {
        self.peers.iter().filter(move |p| p.dial_plan == plan)
    }

    /// The transport used with `peer`: written, or its dial plan's default.
    pub fn peer_transport(&self, peer: &PeerConfig) -> TransportKind {
        peer.transport_in(
            self.dial_plan(&peer.dial_plan)
                .map_or(defaults::VOIP_SECURITY, |p| p.voip_security),
        )
    }
}

/// Drops `.` components (`./data/./certs` → `data/certs`); `..` is kept (it cannot be removed
/// lexically without changing the meaning across symbolic links).
fn clean(path: &Path) -> PathBuf {
    let cleaned: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if cleaned.as_os_str().is_empty() && !path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        cleaned
    }
}

/// Names the key of a schema (serde) error and rewords the common messages.
fn describe_schema_error(
    text: &str,
    doc: &toml_edit::Document<&str>,
    e: &toml::de::Error,
) -> (String, String) {
    let message = e.message().trim_end();
    let span = e.span();
    let key = span.as_ref().and_then(|s| locate::key_at(doc, s));
    let position = || locate::position(text, span.as_ref().map_or(0, |s| s.start));
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let key = match key {
            Some(k) => keys::join(&k, field),
            None => keys::segment(field),
        };
        return (key, "required key is missing".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once("`, ").map(|(_, e)| e).unwrap_or("").trim();
        let problem = if expected.is_empty() || expected.starts_with("there are no fields") {
            "unknown key".to_owned()
        } else {
            format!("unknown key ({expected})")
        };
        return (key.unwrap_or_else(position), problem);
    }
    let problem = message
        .replace("expected u16", "expected an integer from 0 to 65535")
        .replace("expected u32", "expected an integer from 0 to 4294967295")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected usize", "expected a non-negative integer");
    (key.unwrap_or_else(position), problem)
}

/// What kind of failure a [`ConfigError`] is, for exit codes and reload decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read or written (environment, not content).
    Io,
    /// The text is not TOML; the key is `line L, column C`.
    Syntax,
    /// The TOML does not describe a valid configuration: unknown key, wrong type, bad value,
    /// inconsistent dial plans and peers, or an edit asked for something that is not there.
    Invalid,
}

/// A configuration problem: the file, the key and what is wrong.
///
/// Displays as `FILE: KEY: PROBLEM` (`FILE: PROBLEM` when no key applies, as for a file that
/// cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded default>`).
    pub file: PathBuf,
    /// The key, as TOML would write its path: `listen.tls`, `peer[pbx].port`,
    /// `dial_plan[secured].routes[0].target`, `hosts."pbx.example.com"`; for a syntax error
    /// `line L, column C`; empty when the whole file is concerned.
    pub key: String,
    /// What is wrong, and when it helps, what is expected.
    pub problem: String,
    /// Input or environment.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.problem)
        }
    }
}

/// Parses a VoIP security mode: `Unsecured`, `SIPSecured` or `Secured`, in any case.
pub fn parse_voip_security(text: &str) -> Result<VoipSecurity, String> {
    match text.to_ascii_lowercase().as_str() {
        "unsecured" => Ok(VoipSecurity::Unsecured),
        "sipsecured" => Ok(VoipSecurity::SipSecured),
        "secured" => Ok(VoipSecurity::Secured),
        _ => Err(format!(
            "{text:?} is not a VoIP security mode (expected Unsecured, SIPSecured or Secured)"
        )),
    }
}

/// Parses a transport: `tls`, `tcp` or `udp`, in any case.
pub fn parse_transport(text: &str) -> Result<TransportKind, String> {
    match text.to_ascii_lowercase().as_str() {
        "tls" => Ok(TransportKind::Tls),
        "tcp" => Ok(TransportKind::Tcp),
        "udp" => Ok(TransportKind::Udp),
        _ => Err(format!(
            "{text:?} is not a transport (expected tls, tcp or udp)"
        )),
    }
}

/// Parses a peer's `media_source` (`sdp` or `peer-address`).
pub fn parse_media_source(text: &str) -> Result<MediaSource, String> {
    match text.to_ascii_lowercase().as_str() {
        "sdp" => Ok(MediaSource::Sdp),
        "peer-address" => Ok(MediaSource::PeerAddress),
        _ => Err(format!(
            "{text:?} is not \"sdp\" (plain RTP only from the SDP address, the default) or \
             \"peer-address\" (also from the peer's own address: peers behind NAT)"
        )),
    }
}

/// Parses a peer's `media_latching` (`strict` or `follow`).
pub fn parse_media_latching(text: &str) -> Result<MediaLatching, String> {
    match text.to_ascii_lowercase().as_str() {
        "strict" => Ok(MediaLatching::Strict),
        "follow" => Ok(MediaLatching::Follow),
        _ => Err(format!(
            "{text:?} is not \"strict\" (the default) or \"follow\" (move with a NAT \
             binding, within media_source)"
        )),
    }
}

/// A transport as the file writes it: `tls`, `tcp`, `udp`.
pub fn transport_name(transport: TransportKind) -> &'static str {
    match transport {
        TransportKind::Tls => "tls",
        TransportKind::Tcp => "tcp",
        TransportKind::Udp => "udp",
    }
}

#[cfg(test)]
mod tests;
