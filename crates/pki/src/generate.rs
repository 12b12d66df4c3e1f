//! Key, self-signed certificate and CSR generation with rcgen (R-CERT-3, R-CERT-8).
//!
//! Keys are ECDSA P-256: every TLS 1.2/1.3 stack the gateway meets (OpenSSL, SIPp, PBXs built on
//! OpenSSL or SChannel) supports it, it is the rcgen default, and signatures are cheap.
//!
//! The self-signed lifetime is [`SELF_SIGNED_LIFETIME`] (365 days): long enough that an
//! unattended demo or lab does not break, short enough that the expiry watch (R-CERT-5) reminds
//! the administrator yearly to replace it with a CA-issued certificate. notBefore is set one hour
//! in the past to tolerate peers whose clocks run slightly behind.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::files::{KEY_MODE, PUBLIC_MODE, write_new};

/// Lifetime of a generated self-signed certificate.
pub const SELF_SIGNED_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far notBefore is back-dated.
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// Generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The name or address is not acceptable in a certificate (caller's fault).
    #[error("invalid name {name:?}: {detail}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why.
        detail: String,
    },
    /// rcgen could not build or sign.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written (it may already exist: nothing is overwritten).
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Who the gateway is: the names that go into its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The gateway's FQDN (subject CN and first dNSName).
    pub fqdn: String,
    /// Extra dNSNames.
    pub extra_dns: Vec<String>,
    /// iPAddress SANs.
    pub addresses: Vec<IpAddr>,
}

impl Identity {
    /// An identity with just an FQDN.
    pub fn new(fqdn: impl Into<String>) -> Self {
        Self {
            fqdn: fqdn.into(),
            extra_dns: Vec::new(),
            addresses: Vec::new(),
        }
    }

    fn params(&self) -> Result<CertificateParams, GenerateError> {
        let mut names = vec![self.fqdn.clone()];
        names.extend(self.extra_dns.iter().cloned());
        for n in &names {
            validate_dns_name(n)?;
        }
        let mut params = CertificateParams::new(names)?;
        for a in &self.addresses {
            params.subject_alt_names.push(SanType::IpAddress(*a));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.fqdn.clone());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Ok(params)
    }
}

/// Checks that `name` is a plausible DNS name for a certificate (letters, digits, `-`, `.`, an
/// optional leading `*.`), so mistakes are reported before anything is written.
pub fn validate_dns_name(name: &str) -> Result<(), GenerateError> {
    let bad = |detail: &str| GenerateError::InvalidName {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.is_empty() || body.len() > 253 {
        return Err(bad("empty or longer than 253 characters"));
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("empty label or label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "only letters, digits and inner '-' are allowed in a label",
            ));
        }
    }
    Ok(())
}

/// A generated certificate and key.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the key was written (mode 0600).
    pub key_path: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime, GenerateError> {
    time::OffsetDateTime::from_unix_timestamp(unix_secs(t)).map_err(|e| {
        GenerateError::InvalidName {
            name: "time".into(),
            detail: e.to_string(),
        }
    })
}

/// Generates a self-signed serverAuth+clientAuth certificate for `identity`, valid from
/// `now - BACKDATE` for [`SELF_SIGNED_LIFETIME`], and writes it into `dir` as
/// `selfsigned-<fqdn>-<unix time>.crt` + `.key` (key mode 0600). Never overwrites a file.
pub fn generate_self_signed(
    dir: &Path,
    identity: &Identity,
    now: SystemTime,
) -> Result<Generated, GenerateError> {
    let mut params = identity.params()?;
    params.not_before = to_offset(now - BACKDATE)?;
    params.not_after = to_offset(now + SELF_SIGNED_LIFETIME)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let stem = format!("selfsigned-{}-{}", identity.fqdn, unix_secs(now));
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_new(&key_path, key.serialize_pem().as_bytes(), KEY_MODE).map_err(|source| {
        GenerateError::Write {
            path: key_path.clone(),
            source,
        }
    })?;
    if let Err(source) = write_new(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE) {
        let _ = std::fs::remove_file(&key_path);
        return Err(GenerateError::Write {
            path: cert_path,
            source,
        });
    }
    Ok(Generated {
        cert_path,
        key_path,
        cert_pem: cert.pem(),
    })
}

/// A generated key and certificate signing request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The CSR, PEM.
    pub csr_pem: String,
}

/// Generates a new key and a CSR for `identity` asking for serverAuth+clientAuth (R-CERT-8).
/// Nothing is written; the caller stores the key (mode 0600) and hands the CSR to the CA.
pub fn generate_request(identity: &Identity) -> Result<Request, GenerateError> {
    let params = identity.params()?;
    let key = KeyPair::generate()?;
    let csr = params.serialize_request(&key)?;
    Ok(Request {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}
