//! Command-line interface: argument definitions, errors with exit codes, dispatch.

mod cert;
mod config_cmd;
mod connectivity;
mod dialplan;
mod peer;
mod trust;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use mediagate_pki::Clock;

/// Default certificate store, relative to the working directory.
pub(crate) const DEFAULT_CERT_DIR: &str = "./data/certs";
/// Default trust store, relative to the working directory.
pub(crate) const DEFAULT_TRUST_DIR: &str = "./data/trust";
/// Default configuration file, relative to the working directory.
pub(crate) const DEFAULT_CONFIG: &str = "./mediagate.toml";

/// mediagate: secure SIP + RTP/SRTP media gateway.
#[derive(Debug, Parser)]
#[command(name = "mediagate", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 usage, 2 invalid input, 3 environment (missing \
directory, file exists, write failed), 4 no usable certificate, 5 connectivity test failed."
)]
pub(crate) struct Cli {
    /// Certificate store: PEM chains and keys [default: ./data/certs; for test-connectivity
    /// the configuration's when a configuration file is used].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) cert_dir: Option<PathBuf>,
    /// Trust store: trusted root certificates [default: ./data/trust; for test-connectivity
    /// the configuration's when a configuration file is used].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) trust_dir: Option<PathBuf>,
    /// Configuration file (R-OPS-1).
    #[arg(long, global = true, env = "MEDIAGATE_CONFIG", default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// What to do; without a command, `run`.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway (the default command). Uses --config FILE when given (or
    /// ./mediagate.toml when it exists), else the embedded demo configuration.
    Run(RunArgs),
    /// The gateway's own certificate.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Trusted roots used to verify peers.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Connect to a far end (TLS or TCP), probe it with OPTIONS and optionally a test call with
    /// media to an echo, and report each step (R-OPS-3).
    TestConnectivity(connectivity::ConnectivityArgs),
    /// The configuration file: write the default, check one, print the default.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Dial plans: list, show, set the VoIP security mode.
    #[command(subcommand)]
    Dialplan(dialplan::DialplanCommand),
    /// Peers (IP gateways, IP PBXs): list, add, remove.
    #[command(subcommand)]
    Peer(peer::PeerCommand),
}

/// Options of `mediagate run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct RunArgs {
    /// Log as JSON lines (one object per event, with its fields) instead of text.
    #[arg(long)]
    pub(crate) log_json: bool,
}

impl Cli {
    /// --cert-dir, else the default.
    pub(crate) fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT_DIR))
    }
    /// --trust-dir, else the default.
    pub(crate) fn trust_dir(&self) -> PathBuf {
        self.trust_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TRUST_DIR))
    }

    /// The configuration `run` uses: the --config file (or MEDIAGATE_CONFIG) when it was set
    /// or the default file exists; `None` means the embedded demo.
    pub(crate) fn run_config(&self) -> Option<PathBuf> {
        let is_default = self.config == Path::new(DEFAULT_CONFIG);
        if is_default && !self.config.exists() {
            None
        } else {
            Some(self.config.clone())
        }
    }
}

/// A failed command, by whose fault, with its exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A bad or conflicting argument clap cannot see (exit 1).
    #[error("{0}")]
    Usage(String),
    /// Bad input file or value (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// Missing directory, existing file, failed write (exit 3).
    #[error("{0}")]
    Environment(String),
    /// No usable certificate (exit 4).
    #[error("{0}")]
    NoUsableCertificate(String),
    /// A connectivity test step failed (exit 5).
    #[error("connectivity test failed: {0}")]
    ConnectivityFailed(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 1,
            Self::Invalid(_) => 2,
            Self::Environment(_) => 3,
            Self::NoUsableCertificate(_) => 4,
            Self::ConnectivityFailed(_) => 5,
        }
    }
}

/// Runs a parsed command.
pub(crate) fn run(cli: Cli, clock: &dyn Clock) -> Result<(), CliError> {
    let run_config = cli.run_config();
    let (cert_dir, trust_dir) = (cli.cert_dir(), cli.trust_dir());
    let Some(command) = cli.command else {
        return run_gateway(run_config);
    };
    match command {
        Command::Run(_) => run_gateway(run_config),
        Command::Cert(c) => cert::run(c, &cert_dir, clock),
        Command::Trust(c) => trust::run(c, &trust_dir, clock),
        Command::TestConnectivity(a) => {
            let stores = connectivity::Stores {
                cert_dir: cli.cert_dir,
                trust_dir: cli.trust_dir,
                config: run_config,
            };
            connectivity::run(a, stores, clock)
        }
        Command::Config(c) => config_cmd::run(c, &cli.config),
        Command::Dialplan(c) => dialplan::run(c, &cli.config),
        Command::Peer(c) => peer::run(c, &cli.config),
    }
}

fn run_gateway(file: Option<PathBuf>) -> Result<(), CliError> {
    crate::app::Gateway::load(file.as_deref())?.run()
}

/// The directory must exist: say so clearly, naming the flag that sets it.
pub(crate) fn require_dir(dir: &Path, what: &str, flag: &str) -> Result<(), CliError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(CliError::Environment(format!(
            "{what} {}: directory does not exist (create it, or pass {flag} DIR)",
            dir.display()
        )))
    }
}

/// A file-name-safe stem from a certificate name.
pub(crate) fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// Writes a new file; "exists" and other I/O errors become environment errors naming it.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    mediagate_pki::files::write_new(path, contents, mode).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Environment(format!(
                "{}: already exists; nothing was overwritten",
                path.display()
            ))
        } else {
            CliError::Environment(format!("{}: cannot write: {e}", path.display()))
        }
    })
}
