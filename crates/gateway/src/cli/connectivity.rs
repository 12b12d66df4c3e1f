//! `mediagate test-connectivity …` (R-OPS-3): the arguments, the certificate and trust stores
//! for a secured test, and the report on stdout. The test itself is `crate::connectivity`.

use std::path::{Path, PathBuf};

use mediagate_config::Config;
use mediagate_sip::PeerAddress;
use mediagate_sip_proto::TransportKind;
use mediagate_sip_proto::message::ip_host;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};
use mediagate_pki::store::scan;
use mediagate_pki::trust::TrustError;
use mediagate_pki::{Clock, FixedClock, TrustStore};

use super::{CliError, require_dir};
use crate::connectivity::{self, Options, TargetSpec, TlsClient, Transport, parse_target};

/// Arguments of `mediagate test-connectivity`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every step passed, 1 usage, 2 invalid input (a trust \
store file that does not parse), 3 environment (missing --cert-dir/--trust-dir), 4 no usable \
certificate to present, 5 connectivity test failed."
)]
pub(crate) struct ConnectivityArgs {
    /// `true`: mutual TLS (our certificate from --cert-dir, the far end verified against
    /// --trust-dir) and SRTP media; `false`: TCP and plain RTP.
    #[arg(long, value_name = "true|false", action = ArgAction::Set)]
    pub(crate) secured: bool,
    /// The far end: sip:USER@HOST[:PORT][;transport=tls|tcp]. The port defaults to 5061
    /// (secured) or 5060.
    #[arg(
        long,
        value_name = "URI",
        required_unless_present = "peer",
        conflicts_with = "peer"
    )]
    pub(crate) target: Option<String>,
    /// The far end: a peer of the configuration file (--config): its address, port and
    /// transport (UDP peers are tested over TCP), its FQDN as the TLS server name and the
    /// configuration's [hosts] entries for resolving it.
    #[arg(long, value_name = "NAME")]
    pub(crate) peer: Option<String>,
    /// The user part of the Request-URI when testing a --peer (the number the test call
    /// dials).
    #[arg(long, value_name = "USER", default_value = "echo", requires = "peer")]
    pub(crate) user: String,
    /// Also place a test call to the target, which must echo media (the gateway's `echo`
    /// endpoint, SIPp -rtp_echo), and measure media round trip and loss.
    #[arg(long)]
    pub(crate) call: bool,
    /// Seconds of media in the test call (50 packets of 20 ms PCMU per second).
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=600))]
    pub(crate) duration: u32,
    /// The name the far end's certificate must carry (default: the target's host).
    #[arg(long, value_name = "FQDN")]
    pub(crate) server_name: Option<String>,
    /// Seconds to wait for name resolution, the TCP connect, the TLS handshake and each SIP
    /// final response.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub(crate) timeout: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where the certificate and trust stores come from: --cert-dir/--trust-dir when given, else
/// the configuration file's (when one is used), else `./data/certs` and `./data/trust`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stores {
    /// --cert-dir.
    pub(crate) cert_dir: Option<PathBuf>,
    /// --trust-dir.
    pub(crate) trust_dir: Option<PathBuf>,
    /// The configuration file in use (`None`: none given and `./mediagate.toml` absent).
    pub(crate) config: Option<PathBuf>,
}

/// Runs the test and prints the report; `Err` (exit 5) when a step failed.
pub(crate) fn run(
    args: ConnectivityArgs,
    stores: Stores,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    let config = match (&stores.config, &args.peer) {
        (Some(path), _) => Some(Config::load(path).map_err(|e| match e.kind {
            mediagate_config::ErrorKind::Io => CliError::Environment(e.to_string()),
            _ => CliError::Invalid(e.to_string()),
        })?),
        (None, Some(_)) => {
            return Err(CliError::Environment(format!(
                "--peer needs a configuration file: {} does not exist (pass --config FILE)",
                super::DEFAULT_CONFIG
            )));
        }
        (None, None) => None,
    };
    let cert_dir = stores
        .cert_dir
        .or_else(|| config.as_ref().map(Config::cert_dir))
        .unwrap_or_else(|| PathBuf::from(super::DEFAULT_CERT_DIR));
    let trust_dir = stores
        .trust_dir
        .or_else(|| config.as_ref().map(Config::trust_dir))
        .unwrap_or_else(|| PathBuf::from(super::DEFAULT_TRUST_DIR));
    let (cert_dir, trust_dir) = (cert_dir.as_path(), trust_dir.as_path());
    let (target, server_name) = match (&args.target, &args.peer, &config) {
        (Some(t), _, _) => (t.clone(), args.server_name.clone()),
        (None, Some(name), Some(cfg)) => {
            let (t, name_from_config) = peer_target(cfg, name, &args.user, args.secured)?;
            (t, args.server_name.clone().or(name_from_config))
        }
        _ => return Err(CliError::Usage("give --target URI or --peer NAME".into())),
    };
    let spec = parse_target(&target, args.secured, server_name.as_deref())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    // Certificate dates are judged at the time the test starts.
    let wall: Arc<dyn Clock> = Arc::new(FixedClock::new(clock.now()));
    let tls = match spec.transport {
        Transport::Tls => Some(tls_client(cert_dir, trust_dir, wall.clone())?),
        Transport::Tcp => None,
    };
    let opts = Options {
        call: args.call,
        srtp: args.secured,
        duration_secs: args.duration,
        timeout: Duration::from_secs(args.timeout),
        tls,
        clock: wall,
        seed: seed()?,
    };
    report(&spec, &opts, args.json)
}

/// The URI (and TLS server name) that test `peer` of `cfg`.
fn peer_target(
    cfg: &Config,
    name: &str,
    user: &str,
    secured: bool,
) -> Result<(String, Option<String>), CliError> {
    let Some(peer) = cfg.peer(name) else {
        let known: Vec<&str> = cfg.peers.iter().map(|p| p.name.as_str()).collect();
        return Err(CliError::Usage(format!(
            "no peer {name} in {} (peers: {})",
            cfg.source,
            known.join(", ")
        )));
    };
    let transport = cfg.peer_transport(peer);
    let tls = transport == TransportKind::Tls;
    if tls != secured {
        return Err(CliError::Usage(format!(
            "peer {name} uses {} but --secured {secured} asks for {}",
            if tls { "TLS" } else { "TCP/UDP" },
            if secured { "TLS" } else { "TCP" }
        )));
    }
    let (host, server_name) = match &peer.address {
        PeerAddress::Ip(ip) => (ip_host(*ip), None),
        PeerAddress::Fqdn(fqdn) => match cfg.hosts.get(fqdn) {
            // A [hosts] entry: connect to its address, verify the FQDN.
            Some(ip) => (ip_host(*ip), Some(fqdn.clone())),
            None => (fqdn.clone(), None),
        },
    };
    let t = if tls { "tls" } else { "tcp" };
    Ok((
        format!("sip:{user}@{host}:{};transport={t}", peer.port),
        server_name,
    ))
}

fn report(spec: &TargetSpec, opts: &Options, json: bool) -> Result<(), CliError> {
    let report = connectivity::run(spec, opts)
        .map_err(|e| CliError::Environment(format!("cannot start the I/O runtime: {e}")))?;
    if json {
        let text = serde_json::to_string_pretty(&report.json())
            .map_err(|e| CliError::Environment(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report.human());
    }
    match report.failure() {
        None if report.passed() => Ok(()),
        None => Err(CliError::ConnectivityFailed("not every step ran".into())),
        Some(step) => Err(CliError::ConnectivityFailed(format!(
            "{}: {}",
            step.name, step.summary
        ))),
    }
}

/// Our certificate (the store's selected one) and the trust store, as for the gateway's
/// own outbound TLS.
fn tls_client(
    cert_dir: &Path,
    trust_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<TlsClient, CliError> {
    require_dir(cert_dir, "certificate store", "--cert-dir")?;
    require_dir(trust_dir, "trust store", "--trust-dir")?;
    let store = scan(cert_dir, clock.now()).map_err(|e| CliError::Environment(e.to_string()))?;
    let selected = store
        .selected()
        .and_then(|c| Some((c.certified_key()?, c.facts.clone()?)));
    let Some((key, facts)) = selected else {
        return Err(CliError::NoUsableCertificate(format!(
            "no usable certificate in {} to present for mutual TLS (see `mediagate cert show`)",
            cert_dir.display()
        )));
    };
    let trust = TrustStore::load(trust_dir).map_err(|e| match e {
        TrustError::Dir { .. } => CliError::Environment(e.to_string()),
        other => CliError::Invalid(other.to_string()),
    })?;
    TlsClient::new(key, facts, trust, clock).map_err(CliError::Invalid)
}

/// 64 random bits from the operating system (via the TLS provider's generator) for Call-IDs,
/// tags, branches, the SSRC and the payloads.
fn seed() -> Result<u64, CliError> {
    let mut b = [0u8; 8];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| CliError::Environment("the system random generator failed".into()))?;
    Ok(u64::from_le_bytes(b))
}
