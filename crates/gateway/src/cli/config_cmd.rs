//! `mediagate config …`: write out, check and print the configuration file (R-OPS-1), and the
//! helpers the `dialplan` and `peer` commands share.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use mediagate_config::{Config, ConfigError, ErrorKind, transport_name};
use mediagate_pki::files::PUBLIC_MODE;

use super::{CliError, write_new};

/// Said after every change to the file.
pub(crate) const PICKED_UP: &str = "A running gateway picks the change up on its own (it watches the file; SIGHUP reloads it too).";

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Write the embedded default configuration (a working demo on loopback) to a file, to
    /// start from. An existing file is never overwritten.
    Init {
        /// Where to write it (default: the --config file).
        file: Option<PathBuf>,
    },
    /// Validate a configuration file: a summary when it is valid, else the file, key and
    /// problem (exit 2).
    Check {
        /// The file to check (default: the --config file).
        file: Option<PathBuf>,
    },
    /// Print the embedded default configuration, with its comments.
    ShowDefault,
}

pub(crate) fn run(cmd: ConfigCommand, config: &Path) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Init { file } => init(file.as_deref().unwrap_or(config)),
        ConfigCommand::Check { file } => check(file.as_deref().unwrap_or(config)),
        ConfigCommand::ShowDefault => {
            print!("{}", Config::DEFAULT_TOML);
            Ok(())
        }
    }
}

fn init(path: &Path) -> Result<(), CliError> {
    write_new(path, Config::DEFAULT_TOML.as_bytes(), PUBLIC_MODE)?;
    println!(
        "Wrote the default configuration (a demo on loopback) to {}.\nEdit it, or change dial \
         plans and peers with `mediagate dialplan ...` and `mediagate peer ...`; check it with \
         `mediagate config check {}`.",
        path.display(),
        path.display()
    );
    Ok(())
}

fn check(path: &Path) -> Result<(), CliError> {
    let c = load(path)?;
    println!("{}: valid", path.display());
    let listeners: Vec<String> = c
        .listen
        .advertised()
        .iter()
        .filter_map(|(t, _)| {
            c.listen
                .listener(*t)
                .map(|bind| format!("{} {bind}", transport_name(*t)))
        })
        .collect();
    println!("  listeners:    {}", listeners.join(", "));
    if let Some(ip) = c.listen.advertise {
        println!("  advertised:   {ip}");
    }
    println!(
        "  media:        {} ports {}-{}",
        c.media.address, c.media.port_min, c.media.port_max
    );
    println!("  certificates: {}", c.cert_dir().display());
    println!("  trust store:  {}", c.trust_dir().display());
    for plan in &c.dial_plans {
        let peers = c.peers_of(&plan.name).count();
        println!(
            "  dial plan {}: {}, {peers} peer{}, {} route{}",
            plan.name,
            plan.voip_security,
            if peers == 1 { "" } else { "s" },
            plan.routes.len(),
            if plan.routes.len() == 1 { "" } else { "s" }
        );
    }
    if c.dial_plans.is_empty() {
        println!("  no dial plan: every request will be refused");
    }
    match c.admin.http {
        Some(a) => println!("  admin http:   {a}"),
        None => println!("  admin http:   off"),
    }
    Ok(())
}

/// Loads the file for a command, mapping errors to exit codes.
pub(crate) fn load(path: &Path) -> Result<Config, CliError> {
    Config::load(path).map_err(config_error)
}

/// A configuration error as a command failure: a file that cannot be read or written is the
/// environment (exit 3), anything about its content is invalid input (exit 2).
pub(crate) fn config_error(e: ConfigError) -> CliError {
    match e.kind {
        ErrorKind::Io if !e.file.exists() => CliError::Environment(format!(
            "{e}\n(create one with `mediagate config init {}`, or name another with --config \
             FILE)",
            e.file.display()
        )),
        ErrorKind::Io => CliError::Environment(e.to_string()),
        ErrorKind::Syntax | ErrorKind::Invalid => CliError::Invalid(e.to_string()),
    }
}

/// Rows aligned in columns, the first row a header.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
