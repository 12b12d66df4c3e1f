//! Reading PEM files, with errors that name the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file could not be used. Always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has PEM sections that do not decode.
    #[error("{path}: malformed PEM: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the PEM decoder said.
        detail: String,
    },
    /// The file holds no certificate and no private key.
    #[error("{path}: no PEM certificate or private key found")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// What a PEM file holds.
#[derive(Debug, Default)]
pub struct PemContents {
    /// Certificates in file order (leaf first for a chain).
    pub certs: Vec<CertificateDer<'static>>,
    /// The first private key (PKCS#8, PKCS#1 or SEC1), if any.
    pub key: Option<PrivateKeyDer<'static>>,
}

/// Parses PEM text; `path` only names the source in errors.
pub fn parse_pem(path: &Path, bytes: &[u8]) -> Result<PemContents, PemError> {
    let malformed = |e: rustls_pki_types::pem::Error| PemError::Malformed {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(malformed)?;
    let key = match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(k) => Some(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => None,
        Err(e) => return Err(malformed(e)),
    };
    if certs.is_empty() && key.is_none() {
        return Err(PemError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(PemContents { certs, key })
}

/// Reads and parses a PEM file.
pub fn read_pem_file(path: &Path) -> Result<PemContents, PemError> {
    let bytes = std::fs::read(path).map_err(|source| PemError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_pem(path, &bytes)
}

/// Encodes DER as PEM with the given label (64-column base64, as OpenSSL writes it).
pub fn encode_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
