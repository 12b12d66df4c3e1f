//! The trust store (R-CERT-7): a directory of trusted root certificates, and the reasons a peer
//! is refused.
//!
//! Every `.pem`/`.crt`/`.cer` file (not dot-files, not sub-directories) in the directory is read
//! and each certificate in it becomes a trust anchor: a private PKI's root, a commercial root, or
//! a peer's self-signed certificate imported on its own. A file that does not parse makes the
//! whole load fail (naming the file), so a reload never silently drops an anchor.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;

use crate::facts::CertFacts;
use crate::pem::{PemError, read_pem_file};

/// Loading the trust store failed; the previous trust store (if any) stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The directory is missing or unreadable.
    #[error("trust store {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be read or decoded.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A file holds no certificate (e.g. only a key).
    #[error("{path}: no certificate in file")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate is not acceptable as a trust anchor.
    #[error("{path}: certificate #{index} is not usable as a trust anchor: {detail}")]
    BadAnchor {
        /// The file.
        path: PathBuf,
        /// 1-based position in the file.
        index: usize,
        /// Why.
        detail: String,
    },
}

/// One trusted certificate and where it came from.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    /// The file.
    pub path: PathBuf,
    /// Its facts.
    pub facts: CertFacts,
    /// DER.
    pub der: CertificateDer<'static>,
}

/// A loaded trust store: an immutable snapshot.
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// The trusted certificates, sorted by file name.
    pub certs: Vec<TrustedCert>,
    roots: Arc<RootCertStore>,
}

impl TrustStore {
    /// Loads every anchor in `dir`. An empty directory gives an empty store (which trusts no
    /// one: every peer is refused).
    pub fn load(dir: &Path) -> Result<Self, TrustError> {
        let files = crate::store::list_files(dir).map_err(|source| TrustError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let mut certs = Vec::new();
        let mut roots = RootCertStore::empty();
        for path in files {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("key"))
            {
                continue;
            }
            let contents = read_pem_file(&path)?;
            if contents.certs.is_empty() {
                return Err(TrustError::NoCertificate { path });
            }
            for (i, der) in contents.certs.into_iter().enumerate() {
                let bad = |detail: String| TrustError::BadAnchor {
                    path: path.clone(),
                    index: i + 1,
                    detail,
                };
                let facts = CertFacts::from_der(&der).map_err(|e| bad(e.0))?;
                roots.add(der.clone()).map_err(|e| bad(e.to_string()))?;
                certs.push(TrustedCert {
                    path: path.clone(),
                    facts,
                    der,
                });
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            certs,
            roots: Arc::new(roots),
        })
    }

    /// An empty store (trusts no one).
    pub fn empty() -> Self {
        Self {
            dir: PathBuf::new(),
            certs: Vec::new(),
            roots: Arc::new(RootCertStore::empty()),
        }
    }

    /// A store built from DER certificates (tests, or callers with their own loading).
    pub fn from_certs(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, TrustError> {
        let mut store = Self::empty();
        let mut roots = RootCertStore::empty();
        for (i, der) in certs.into_iter().enumerate() {
            let bad = |detail: String| TrustError::BadAnchor {
                path: PathBuf::from("<memory>"),
                index: i + 1,
                detail,
            };
            let facts = CertFacts::from_der(&der).map_err(|e| bad(e.0))?;
            roots.add(der.clone()).map_err(|e| bad(e.to_string()))?;
            store.certs.push(TrustedCert {
                path: PathBuf::from("<memory>"),
                facts,
                der,
            });
        }
        store.roots = Arc::new(roots);
        Ok(store)
    }

    /// The anchors as rustls wants them.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// True when no anchor is loaded.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// A digest of the anchor set, to tell whether a reload changed anything.
    pub fn fingerprint(&self) -> String {
        let mut v: Vec<&str> = self
            .certs
            .iter()
            .map(|c| c.facts.sha256_fingerprint.as_str())
            .collect();
        v.sort_unstable();
        v.join(",")
    }
}

/// Why a peer's certificate was refused (R-CERT-7), in the terms an administrator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The peer presented no certificate.
    NoCertificate,
    /// The peer's certificate (or one in its chain) has expired.
    Expired,
    /// The peer's certificate (or one in its chain) is not valid yet.
    NotYetValid,
    /// The chain does not lead to a root in our trust store.
    UnknownIssuer,
    /// The certificate's extended key usage does not allow this use (e.g. a serverAuth-only
    /// certificate presented as a client certificate).
    WrongPurpose,
    /// The certificate is not valid for the expected name, or the name is not on the allow-list.
    NameNotAllowed,
    /// The certificate was revoked.
    Revoked,
    /// A signature in the chain does not verify, or uses an unsupported algorithm.
    BadSignature,
    /// The certificate could not be parsed.
    BadEncoding,
    /// Anything else the verifier reported.
    Other,
}

impl RefusalReason {
    /// Maps a rustls verification error. `None` when the error is not about the certificate.
    pub fn from_rustls(err: &rustls::Error) -> Option<Self> {
        match err {
            rustls::Error::InvalidCertificate(e) => Some(Self::from_certificate_error(e)),
            rustls::Error::NoCertificatesPresented => Some(Self::NoCertificate),
            _ => None,
        }
    }

    /// Maps a rustls [`CertificateError`].
    #[allow(deprecated)] // the unit variants are still produced by some verifiers
    pub fn from_certificate_error(e: &CertificateError) -> Self {
        use CertificateError as C;
        match e {
            C::Expired | C::ExpiredContext { .. } => Self::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Self::NotYetValid,
            C::UnknownIssuer => Self::UnknownIssuer,
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::WrongPurpose,
            C::NotValidForName | C::NotValidForNameContext { .. } => Self::NameNotAllowed,
            C::Revoked => Self::Revoked,
            C::BadSignature
            | C::UnsupportedSignatureAlgorithm
            | C::UnsupportedSignatureAlgorithmContext { .. }
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Self::BadSignature,
            C::BadEncoding => Self::BadEncoding,
            _ => Self::Other,
        }
    }

    /// A stable lower-case token for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::WrongPurpose => "wrong_purpose",
            Self::NameNotAllowed => "name_not_allowed",
            Self::Revoked => "revoked",
            Self::BadSignature => "bad_signature",
            Self::BadEncoding => "bad_encoding",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
