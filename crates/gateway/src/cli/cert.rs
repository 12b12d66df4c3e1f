//! `mediagate cert …`: show, export, request, import (R-CERT-8).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use mediagate_pki::facts::format_time;
use mediagate_pki::files::{KEY_MODE, PUBLIC_MODE};
use mediagate_pki::generate::{Identity, generate_request};
use mediagate_pki::pem::{encode_pem, read_pem_file};
use mediagate_pki::store::{Candidate, check_candidate, scan};
use mediagate_pki::{CertFacts, Clock};
use rustls_pki_types::PrivateKeyDer;

use super::{CliError, file_stem, require_dir, write_new};

/// Sub-directory of the store holding keys (and CSRs) of requests awaiting their certificate.
pub(crate) const PENDING: &str = "pending";

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Show the certificate in use and all candidates, ranked, with the reasons unusable ones
    /// are skipped.
    Show,
    /// Export the certificate in use (PEM) for import into peers' trust stores.
    Export {
        /// Where to write it (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write the intermediate certificates that follow it in the store.
        #[arg(long)]
        chain: bool,
    },
    /// Generate a key and a certificate signing request (CSR) for the gateway's FQDN.
    Request {
        /// The gateway's FQDN (subject CN and first subjectAltName).
        #[arg(long, value_name = "NAME")]
        fqdn: String,
        /// Additional subjectAltNames: DNS names or IP addresses (repeatable).
        #[arg(long, value_name = "NAME|IP")]
        san: Vec<String>,
        /// Where to write the CSR (default: CERT_DIR/pending/FQDN.csr). The key always goes
        /// to CERT_DIR/pending/FQDN.key, mode 0600.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Validate a signed certificate (chain) and install it into the store. The key is taken
    /// from the file itself or from the matching pending request.
    Import {
        /// PEM file with the certificate, its chain and optionally its key.
        file: PathBuf,
    },
}

pub(crate) fn run(cmd: CertCommand, dir: &Path, clock: &dyn Clock) -> Result<(), CliError> {
    require_dir(dir, "certificate store", "--cert-dir")?;
    match cmd {
        CertCommand::Show => show(dir, clock),
        CertCommand::Export { out, chain } => export(dir, &out, chain, clock),
        CertCommand::Request { fqdn, san, out } => request(dir, &fqdn, &san, out.as_deref()),
        CertCommand::Import { file } => import(dir, &file, clock),
    }
}

fn scan_store(dir: &Path, clock: &dyn Clock) -> Result<mediagate_pki::StoreScan, CliError> {
    scan(dir, clock.now()).map_err(|e| CliError::Environment(e.to_string()))
}

fn summary(c: &Candidate) -> String {
    match &c.facts {
        Some(f) => format!(
            "{}  {}  {}  expires {}  thumbprint {}",
            c.cert_path.display(),
            if f.self_signed {
                "self-signed"
            } else {
                "CA-issued  "
            },
            f.subject,
            format_time(f.not_after),
            f.sha1_thumbprint
        ),
        None => c.cert_path.display().to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn show(dir: &Path, clock: &dyn Clock) -> Result<(), CliError> {
    let s = scan_store(dir, clock)?;
    let now = clock.now();
    match s.selected() {
        Some(sel) => {
            println!("Certificate in use: {}", sel.cert_path.display());
            if let Some(f) = &sel.facts {
                print!("{}", indent(&f.to_string()));
                println!(
                    "  days left:   {}",
                    mediagate_pki::expiry::days_left(f.not_after, now)
                );
            }
        }
        None => println!(
            "Certificate in use: none (no usable certificate in {})",
            dir.display()
        ),
    }
    println!();
    println!("Ranked candidates ({}):", s.ranked.len());
    for (i, c) in s.ranked.iter().enumerate() {
        println!("  {}. {}", i + 1, summary(c));
        if let (true, Some(k)) = (c.key_too_open, &c.key_path) {
            println!(
                "     warning: key {} is readable by group or others (chmod 600 it)",
                k.display()
            );
        }
    }
    println!();
    println!("Unusable ({}):", s.unusable.len());
    for c in &s.unusable {
        let why = c.unusable().map(|r| r.to_string()).unwrap_or_default();
        println!("  - {}: {why}", c.cert_path.display());
    }
    let pending = pending_requests(dir);
    if !pending.is_empty() {
        println!();
        println!("Pending requests (key waiting for its signed certificate):");
        for p in pending {
            println!("  - {}", p.display());
        }
    }
    if s.selected().is_none() {
        return Err(CliError::NoUsableCertificate(format!(
            "no usable certificate in {} (the gateway would generate a self-signed one at start)",
            dir.display()
        )));
    }
    Ok(())
}

/// Keys in the pending directory, sorted.
fn pending_requests(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(PENDING))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "key"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn export(dir: &Path, out: &Path, chain: bool, clock: &dyn Clock) -> Result<(), CliError> {
    let s = scan_store(dir, clock)?;
    let Some(sel) = s.selected() else {
        return Err(CliError::NoUsableCertificate(format!(
            "no usable certificate in {} to export",
            dir.display()
        )));
    };
    let take = if chain { sel.chain.len() } else { 1 };
    let pem: String = sel
        .chain
        .iter()
        .take(take)
        .map(|c| encode_pem("CERTIFICATE", c))
        .collect();
    write_new(out, pem.as_bytes(), PUBLIC_MODE)?;
    if let Some(f) = &sel.facts {
        println!(
            "Exported {} (thumbprint {}) to {}",
            f.subject,
            f.sha1_thumbprint,
            out.display()
        );
    }
    Ok(())
}

fn request(dir: &Path, fqdn: &str, sans: &[String], out: Option<&Path>) -> Result<(), CliError> {
    let mut identity = Identity::new(fqdn);
    for s in sans {
        match s.parse::<IpAddr>() {
            Ok(ip) => identity.addresses.push(ip),
            Err(_) => identity.extra_dns.push(s.clone()),
        }
    }
    let req = generate_request(&identity).map_err(|e| CliError::Invalid(e.to_string()))?;
    let pending = dir.join(PENDING);
    if !pending.is_dir() {
        std::fs::create_dir(&pending).map_err(|e| {
            CliError::Environment(format!("{}: cannot create: {e}", pending.display()))
        })?;
    }
    let stem = file_stem(fqdn);
    let key_path = pending.join(format!("{stem}.key"));
    let csr_path = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| pending.join(format!("{stem}.csr")));
    if key_path.exists() {
        return Err(CliError::Environment(format!(
            "{}: a request for {fqdn} is already pending; import its certificate, or remove the \
             key to start over (nothing was overwritten)",
            key_path.display()
        )));
    }
    if csr_path.exists() {
        return Err(CliError::Environment(format!(
            "{}: already exists; nothing was overwritten",
            csr_path.display()
        )));
    }
    write_new(&key_path, req.key_pem.as_bytes(), KEY_MODE)?;
    if let Err(e) = write_new(&csr_path, req.csr_pem.as_bytes(), PUBLIC_MODE) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    println!(
        "Private key: {} (mode 0600, keep it there)",
        key_path.display()
    );
    println!("CSR:         {}", csr_path.display());
    println!(
        "Have the CA sign the CSR with serverAuth and clientAuth, then run: mediagate cert import <signed.pem>"
    );
    Ok(())
}

fn key_label(key: &PrivateKeyDer<'_>) -> &'static str {
    match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    }
}

/// Finds the pending request key whose public key is the certificate's.
fn pending_key(dir: &Path, facts: &CertFacts) -> Option<(PathBuf, PrivateKeyDer<'static>)> {
    let pending = dir.join(PENDING);
    let entries = std::fs::read_dir(&pending).ok()?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "key") {
            continue;
        }
        let Ok(contents) = read_pem_file(&path) else {
            continue;
        };
        let Some(key) = contents.key else { continue };
        let Ok(signing) = provider.key_provider.load_private_key(key.clone_key()) else {
            continue;
        };
        if signing
            .public_key()
            .is_some_and(|spki| spki.as_ref() == facts.spki.as_slice())
        {
            return Some((path, key));
        }
    }
    None
}

fn import(dir: &Path, file: &Path, clock: &dyn Clock) -> Result<(), CliError> {
    let contents = read_pem_file(file).map_err(|e| CliError::Invalid(e.to_string()))?;
    let Some(leaf) = contents.certs.first() else {
        return Err(CliError::Invalid(format!(
            "{}: no certificate in file (only a private key?)",
            file.display()
        )));
    };
    let facts = CertFacts::from_der(leaf)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    let (key, pending_path) = match contents.key {
        Some(k) => (k, None),
        None => match pending_key(dir, &facts) {
            Some((p, k)) => (k, Some(p)),
            None => {
                return Err(CliError::Invalid(format!(
                    "{}: the file has no private key and no pending request key in {} matches \
                     the certificate (was the CSR made with `mediagate cert request` here?)",
                    file.display(),
                    dir.join(PENDING).display()
                )));
            }
        },
    };
    let key_pem = encode_pem(key_label(&key), key.secret_der());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let candidate = check_candidate(
        file.to_owned(),
        None,
        contents.certs.clone(),
        Ok(Some(key)),
        clock.now(),
        &provider,
    );
    if let Some(why) = candidate.unusable() {
        return Err(CliError::Invalid(format!(
            "{}: not installed: {why}",
            file.display()
        )));
    }
    let stem = format!(
        "{}-{}",
        file_stem(&facts.display_name()),
        &facts.sha1_thumbprint[..8]
    );
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    if cert_path.exists() || key_path.exists() {
        return Err(CliError::Environment(format!(
            "{}: already installed; nothing was overwritten",
            cert_path.display()
        )));
    }
    let chain_pem: String = contents
        .certs
        .iter()
        .map(|c| encode_pem("CERTIFICATE", c))
        .collect();
    // Key first: the watcher of a running gateway ignores a certificate without its key.
    write_new(&key_path, key_pem.as_bytes(), KEY_MODE)?;
    if let Err(e) = write_new(&cert_path, chain_pem.as_bytes(), PUBLIC_MODE) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    if let Some(p) = pending_path {
        let _ = std::fs::remove_file(p.with_extension("csr"));
        let _ = std::fs::remove_file(&p);
    }
    println!("Installed {} as {}", facts.subject, cert_path.display());
    print!("{}", indent(&facts.to_string()));
    let s = scan_store(dir, clock)?;
    if let Some(sel) = s.selected() {
        if sel.cert_path == cert_path {
            println!("It is now the best-ranked certificate and will be used for new connections.");
        } else {
            println!(
                "Note: {} still ranks first (R-CERT-2 order); this one is a candidate.",
                sel.cert_path.display()
            );
        }
    }
    Ok(())
}
