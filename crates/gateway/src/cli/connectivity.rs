//! `mediagate test-connectivity …` (R-OPS-3): the arguments, the certificate and trust stores
//! for a secured test, and the report on stdout. The test itself is `crate::connectivity`.

use std::path::Path;
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
    #[arg(long, value_name = "URI")]
    pub(crate) target: String,
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

/// Runs the test and prints the report; `Err` (exit 5) when a step failed.
pub(crate) fn run(
    args: ConnectivityArgs,
    cert_dir: &Path,
    trust_dir: &Path,
    clock: &dyn Clock,
) -> Result<(), CliError> {
    let spec = parse_target(&args.target, args.secured, args.server_name.as_deref())
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
