//! `mediagate trust …`: import and list trusted roots (R-CERT-7, R-CERT-8).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use mediagate_pki::facts::{Validity, format_time};
use mediagate_pki::files::PUBLIC_MODE;
use mediagate_pki::pem::{encode_pem, read_pem_file};
use mediagate_pki::{CertFacts, Clock, TrustStore};

use super::{CliError, file_stem, require_dir, write_new};

#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// Import trusted certificates: a CA root, or a peer's self-signed certificate.
    Import {
        /// PEM file with one or more certificates.
        file: PathBuf,
    },
    /// List the trusted certificates.
    List,
}

pub(crate) fn run(cmd: TrustCommand, dir: &Path, clock: &dyn Clock) -> Result<(), CliError> {
    require_dir(dir, "trust store", "--trust-dir")?;
    match cmd {
        TrustCommand::Import { file } => import(dir, &file, clock),
        TrustCommand::List => list(dir),
    }
}

fn load(dir: &Path) -> Result<TrustStore, CliError> {
    TrustStore::load(dir).map_err(|e| match e {
        mediagate_pki::trust::TrustError::Dir { .. } => CliError::Environment(e.to_string()),
        other => CliError::Invalid(other.to_string()),
    })
}

fn import(dir: &Path, file: &Path, clock: &dyn Clock) -> Result<(), CliError> {
    let contents = read_pem_file(file).map_err(|e| CliError::Invalid(e.to_string()))?;
    if contents.certs.is_empty() {
        return Err(CliError::Invalid(format!(
            "{}: no certificate in file",
            file.display()
        )));
    }
    let existing = load(dir)?;
    // Validate everything before writing anything.
    let mut to_write = Vec::new();
    for (i, der) in contents.certs.iter().enumerate() {
        let at = format!("{} (certificate #{})", file.display(), i + 1);
        let f = CertFacts::from_der(der).map_err(|e| CliError::Invalid(format!("{at}: {e}")))?;
        if !f.is_ca && !f.self_signed {
            return Err(CliError::Invalid(format!(
                "{at}: {} is neither a CA certificate nor self-signed (issued by {}); import the \
                 issuing root instead",
                f.subject, f.issuer
            )));
        }
        match f.validity_at(clock.now()) {
            Ok(()) => {}
            Err(Validity::Expired) => {
                return Err(CliError::Invalid(format!(
                    "{at}: {} expired on {}",
                    f.subject,
                    format_time(f.not_after)
                )));
            }
            Err(Validity::NotYetValid) => {
                return Err(CliError::Invalid(format!(
                    "{at}: {} is not valid before {}",
                    f.subject,
                    format_time(f.not_before)
                )));
            }
            Err(_) => {}
        }
        if let Some(have) = existing
            .certs
            .iter()
            .find(|c| c.facts.sha256_fingerprint == f.sha256_fingerprint)
        {
            println!(
                "Already trusted: {} (thumbprint {}) in {}",
                f.subject,
                f.sha1_thumbprint,
                have.path.display()
            );
            continue;
        }
        to_write.push((der.clone(), f));
    }
    for (der, f) in to_write {
        let name = f.common_name.clone().unwrap_or_else(|| f.display_name());
        let path = dir.join(format!(
            "{}-{}.pem",
            file_stem(&name),
            &f.sha1_thumbprint[..8]
        ));
        write_new(
            &path,
            encode_pem("CERTIFICATE", &der).as_bytes(),
            PUBLIC_MODE,
        )?;
        println!(
            "Trusted {} (thumbprint {}, expires {}) as {}",
            f.subject,
            f.sha1_thumbprint,
            format_time(f.not_after),
            path.display()
        );
    }
    Ok(())
}

fn list(dir: &Path) -> Result<(), CliError> {
    let store = load(dir)?;
    println!(
        "Trusted certificates in {} ({}):",
        dir.display(),
        store.certs.len()
    );
    for c in &store.certs {
        println!(
            "  {}  {}  thumbprint {}  expires {}  {}",
            c.path.display(),
            c.facts.subject,
            c.facts.sha1_thumbprint,
            format_time(c.facts.not_after),
            if c.facts.self_signed && !c.facts.is_ca {
                "self-signed peer"
            } else if c.facts.is_ca {
                "CA"
            } else {
                "other"
            }
        );
    }
    Ok(())
}
