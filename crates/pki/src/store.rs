//! The certificate store: a directory of PEM chains and keys, checked and ranked (R-CERT-1, R-CERT-2).
//!
//! # Layout
//! Every regular file in the directory whose name does not start with `.` and ends in `.pem`,
//! `.crt`, `.cer` or `.key` is read. A file holding at least one certificate is a *candidate*: its
//! first certificate is the leaf, the others its chain (in order). The private key is taken from
//! the same file, or else from the sibling file with the same stem and the extension `.key`
//! (`gw.crt` + `gw.key`). Sub-directories (such as `pending/`, where `mediagate cert request`
//! keeps keys awaiting their certificate) and dot-files (temporary files of an install in
//! progress) are ignored.
//!
//! # Checks (R-CERT-1)
//! A candidate is usable when the key parses and matches the leaf's public key, `now` is inside
//! the leaf's validity, and its extended key usage allows both serverAuth and clientAuth (or it
//! has no EKU extension): the gateway is the TLS server for inbound calls and the TLS client for
//! outbound calls with the same certificate.
//!
//! # Ranking (R-CERT-2)
//! Usable candidates are ordered CA-issued before self-signed, and within each group by notAfter,
//! latest first (the longest remaining validity). Ties are broken by file name so the choice is
//! deterministic.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::facts::{CertFacts, Validity, format_time};
use crate::pem::{PemError, read_pem_file};

/// File extensions the store reads.
pub const STORE_EXTENSIONS: &[&str] = &["pem", "crt", "cer", "key"];

/// Why a candidate cannot be used. Each variant names a fault of the file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// The file could not be read or its PEM does not decode.
    BadFile(String),
    /// The leaf certificate does not parse as X.509.
    BadCertificate(String),
    /// No private key in the file and no sibling `.key` file.
    NoKey,
    /// The key file does not hold a usable private key.
    BadKey(String),
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// Not valid yet.
    NotYetValid {
        /// notBefore.
        not_before: SystemTime,
    },
    /// Expired.
    Expired {
        /// notAfter.
        not_after: SystemTime,
    },
    /// Extended key usage does not allow both serverAuth and clientAuth.
    WrongPurpose(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFile(e) => write!(f, "unreadable: {e}"),
            Self::BadCertificate(e) => write!(f, "bad certificate: {e}"),
            Self::NoKey => {
                f.write_str("no private key (neither in the file nor a sibling .key file)")
            }
            Self::BadKey(e) => write!(f, "bad private key: {e}"),
            Self::KeyMismatch => f.write_str("private key does not match the certificate"),
            Self::NotYetValid { not_before } => {
                write!(f, "not valid yet (not before {})", format_time(*not_before))
            }
            Self::Expired { not_after } => {
                write!(f, "expired (not after {})", format_time(*not_after))
            }
            Self::WrongPurpose(p) => write!(
                f,
                "extended key usage {p} does not allow both serverAuth and clientAuth"
            ),
        }
    }
}

/// One certificate file in the store, with its verdict.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// Where the key came from, if found.
    pub key_path: Option<PathBuf>,
    /// The leaf's facts, when it parses.
    pub facts: Option<CertFacts>,
    /// The leaf followed by its chain, as in the file.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key file can be read by group or others (mode not 0600 or stricter). Usable, but
    /// worth a warning (`GW2011`).
    pub key_too_open: bool,
    /// `Ok` with the ready-to-use key when usable.
    verdict: Result<Arc<CertifiedKey>, Unusable>,
}

impl Candidate {
    /// Why it is not usable, or `None` when it is.
    pub fn unusable(&self) -> Option<&Unusable> {
        self.verdict.as_ref().err()
    }

    /// The chain and signing key for rustls, when usable.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.verdict.as_ref().ok().cloned()
    }
}

/// The result of reading the store at one instant.
#[derive(Debug, Clone, Default)]
pub struct StoreScan {
    /// Usable candidates, best first (R-CERT-2). The first one is the one to use.
    pub ranked: Vec<Candidate>,
    /// Candidates that cannot be used, each with its reason.
    pub unusable: Vec<Candidate>,
}

impl StoreScan {
    /// The certificate to use: the best-ranked usable candidate.
    pub fn selected(&self) -> Option<&Candidate> {
        self.ranked.first()
    }
}

/// The store directory could not be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory is missing or unreadable.
    #[error("certificate store {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The provider used to load keys and to check that keys match certificates.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Lists the store's candidate files (sorted, so results do not depend on directory order).
pub(crate) fn list_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if STORE_EXTENSIONS.contains(&ext.as_str()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every candidate in `dir` and ranks the usable ones as of `now`.
pub fn scan(dir: &Path, now: SystemTime) -> Result<StoreScan, StoreError> {
    let files = list_files(dir).map_err(|source| StoreError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let provider = provider();
    let mut scan = StoreScan::default();
    for path in &files {
        let is_key_file = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("key"));
        let contents = match read_pem_file(path) {
            Ok(c) => c,
            Err(e) => {
                if !is_key_file {
                    scan.unusable.push(bad_file(path, &e));
                }
                continue;
            }
        };
        if contents.certs.is_empty() {
            // A key file; it is consumed by its certificate's candidate.
            continue;
        }
        let (key, key_path) = match contents.key {
            Some(k) => (Ok(Some(k)), Some(path.clone())),
            None => {
                let sibling = path.with_extension("key");
                if sibling != *path && sibling.is_file() {
                    match read_pem_file(&sibling) {
                        Ok(c) => (Ok(c.key), Some(sibling)),
                        Err(e) => (Err(Unusable::BadKey(e.to_string())), Some(sibling)),
                    }
                } else {
                    (Ok(None), None)
                }
            }
        };
        let c = check_candidate(path.clone(), key_path, contents.certs, key, now, &provider);
        if c.unusable().is_some() {
            scan.unusable.push(c);
        } else {
            scan.ranked.push(c);
        }
    }
    rank(&mut scan.ranked);
    Ok(scan)
}

fn bad_file(path: &Path, e: &PemError) -> Candidate {
    Candidate {
        cert_path: path.to_owned(),
        key_path: None,
        facts: None,
        chain: Vec::new(),
        key_too_open: false,
        verdict: Err(Unusable::BadFile(e.to_string())),
    }
}

/// Checks one chain + key as of `now` (R-CERT-1). `key` is `Err` when a key file was found but
/// could not be read, `Ok(None)` when there is no key at all.
pub fn check_candidate(
    cert_path: PathBuf,
    key_path: Option<PathBuf>,
    chain: Vec<CertificateDer<'static>>,
    key: Result<Option<PrivateKeyDer<'static>>, Unusable>,
    now: SystemTime,
    provider: &CryptoProvider,
) -> Candidate {
    let facts = chain.first().map(|leaf| CertFacts::from_der(leaf));
    let (facts, verdict) = match facts {
        None => (None, Err(Unusable::BadCertificate("no certificate".into()))),
        Some(Err(e)) => (None, Err(Unusable::BadCertificate(e.0))),
        Some(Ok(f)) => {
            let v = verdict(&f, chain.clone(), key, now, provider);
            (Some(f), v)
        }
    };
    let key_too_open = key_path.as_deref().is_some_and(|p| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    });
    Candidate {
        cert_path,
        key_path,
        facts,
        chain,
        key_too_open,
        verdict,
    }
}

fn verdict(
    facts: &CertFacts,
    chain: Vec<CertificateDer<'static>>,
    key: Result<Option<PrivateKeyDer<'static>>, Unusable>,
    now: SystemTime,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, Unusable> {
    let key = key?.ok_or(Unusable::NoKey)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Unusable::BadKey(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing_key);
    match ck.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(Unusable::KeyMismatch);
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            // The provider cannot derive the public key: compare nothing, accept (rustls does too).
        }
        Err(e) => return Err(Unusable::BadCertificate(e.to_string())),
    }
    match facts.validity_at(now) {
        Ok(()) => {}
        Err(Validity::NotYetValid) => {
            return Err(Unusable::NotYetValid {
                not_before: facts.not_before,
            });
        }
        Err(Validity::Expired) => {
            return Err(Unusable::Expired {
                not_after: facts.not_after,
            });
        }
    }
    if !facts.purposes.server_and_client() {
        return Err(Unusable::WrongPurpose(facts.purposes.to_string()));
    }
    Ok(Arc::new(ck))
}

/// The R-CERT-2 order between two usable candidates: CA-issued first, then longest validity,
/// then file name.
pub fn rank_order(a: &Candidate, b: &Candidate) -> Ordering {
    let key = |c: &Candidate| {
        c.facts
            .as_ref()
            .map(|f| (f.self_signed, f.not_after))
            .unwrap_or((true, SystemTime::UNIX_EPOCH))
    };
    let (a_ss, a_na) = key(a);
    let (b_ss, b_na) = key(b);
    a_ss.cmp(&b_ss)
        .then(b_na.cmp(&a_na))
        .then_with(|| a.cert_path.cmp(&b.cert_path))
}

/// Sorts usable candidates into R-CERT-2 order.
pub fn rank(candidates: &mut [Candidate]) {
    candidates.sort_by(rank_order);
}
