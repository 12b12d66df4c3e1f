//! Certificate facts: what an administrator needs to identify a certificate (R-CERT-4).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use sha1::Digest as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Why a DER certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct ParseError(pub String);

/// Which extended key usages a certificate allows (RFC 5280 §4.2.1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurposes {
    /// No extendedKeyUsage extension: any purpose.
    Unrestricted,
    /// The extension is present.
    Restricted {
        /// id-kp-serverAuth present (or anyExtendedKeyUsage).
        server_auth: bool,
        /// id-kp-clientAuth present (or anyExtendedKeyUsage).
        client_auth: bool,
    },
}

impl KeyPurposes {
    /// True when the certificate may be used both as a TLS server and as a TLS client, which the
    /// gateway needs because it is both (R-CERT-1).
    pub fn server_and_client(self) -> bool {
        match self {
            Self::Unrestricted => true,
            Self::Restricted {
                server_auth,
                client_auth,
            } => server_auth && client_auth,
        }
    }
}

impl fmt::Display for KeyPurposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unrestricted => f.write_str("any (no EKU extension)"),
            Self::Restricted {
                server_auth,
                client_auth,
            } => {
                let mut v = Vec::new();
                if *server_auth {
                    v.push("serverAuth");
                }
                if *client_auth {
                    v.push("clientAuth");
                }
                if v.is_empty() {
                    f.write_str("neither serverAuth nor clientAuth")
                } else {
                    f.write_str(&v.join("+"))
                }
            }
        }
    }
}

/// The facts of one certificate, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertFacts {
    /// Subject distinguished name, RFC 4514 style (`CN=gw.example.com, O=Example`).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, upper-case hex without separators.
    pub serial: String,
    /// SHA-1 over the DER certificate, upper-case hex without colons: the "thumbprint" that
    /// Windows, PBX admin consoles and `openssl x509 -fingerprint -sha1` (minus the colons) show.
    pub sha1_thumbprint: String,
    /// SHA-256 over the DER certificate, upper-case hex without colons.
    pub sha256_fingerprint: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub ip_addresses: Vec<IpAddr>,
    /// The subject common name, if any.
    pub common_name: Option<String>,
    /// Extended key usages.
    pub purposes: KeyPurposes,
    /// Issuer == subject and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// basicConstraints cA is set.
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo, used to pair keys with certificates.
    pub spki: Vec<u8>,
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Upper-case hex without separators.
pub(crate) fn upper_hex(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

impl CertFacts {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, ParseError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| ParseError(e.to_string()))?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => {
                            let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                            ip_addresses.push(IpAddr::from(a));
                        }
                        16 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(b);
                            ip_addresses.push(IpAddr::from(a));
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let purposes = match cert.extended_key_usage() {
            Ok(Some(eku)) => KeyPurposes::Restricted {
                server_auth: eku.value.any || eku.value.server_auth,
                client_auth: eku.value.any || eku.value.client_auth,
            },
            Ok(None) => KeyPurposes::Unrestricted,
            Err(e) => return Err(ParseError(format!("extendedKeyUsage: {e}"))),
        };
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok();
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: upper_hex(cert.raw_serial()),
            sha1_thumbprint: upper_hex(&sha1::Sha1::digest(der)),
            sha256_fingerprint: upper_hex(&sha2::Sha256::digest(der)),
            not_before: unix_to_system(cert.validity().not_before.timestamp()),
            not_after: unix_to_system(cert.validity().not_after.timestamp()),
            dns_names,
            ip_addresses,
            common_name,
            purposes,
            self_signed,
            is_ca,
            spki: cert.public_key().raw.to_vec(),
        })
    }

    /// Validity at `now`: `Ok` inside [not_before, not_after], otherwise which side it fell off.
    pub fn validity_at(&self, now: SystemTime) -> Result<(), Validity> {
        if now < self.not_before {
            Err(Validity::NotYetValid)
        } else if now > self.not_after {
            Err(Validity::Expired)
        } else {
            Ok(())
        }
    }

    /// The first name to use for file names and messages: first dNSName, else CN, else the
    /// thumbprint.
    pub fn display_name(&self) -> String {
        self.dns_names
            .first()
            .cloned()
            .or_else(|| self.common_name.clone())
            .unwrap_or_else(|| self.sha1_thumbprint.clone())
    }
}

/// Why a certificate is outside its validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validity {
    /// `now` is before notBefore.
    NotYetValid,
    /// `now` is after notAfter.
    Expired,
}

/// Formats a time as RFC 3339 UTC (`2026-11-27T13:05:44Z`), for logs and CLI output.
pub fn format_time(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => format!("{secs}s since epoch"),
    }
}

impl fmt::Display for CertFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "subject:     {}", self.subject)?;
        writeln!(f, "issuer:      {}", self.issuer)?;
        writeln!(f, "serial:      {}", self.serial)?;
        writeln!(f, "thumbprint:  {} (SHA-1)", self.sha1_thumbprint)?;
        writeln!(f, "sha256:      {}", self.sha256_fingerprint)?;
        writeln!(f, "not before:  {}", format_time(self.not_before))?;
        writeln!(f, "not after:   {}", format_time(self.not_after))?;
        let mut sans: Vec<String> = self.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
        sans.extend(self.ip_addresses.iter().map(|i| format!("IP:{i}")));
        writeln!(f, "SANs:        {}", sans.join(", "))?;
        writeln!(f, "purposes:    {}", self.purposes)?;
        write!(
            f,
            "kind:        {}",
            if self.self_signed {
                "self-signed"
            } else {
                "CA-issued"
            }
        )
    }
}
