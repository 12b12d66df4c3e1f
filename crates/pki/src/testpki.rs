//! A test PKI generated at run time with rcgen (feature `test-pki`, and this crate's own tests).
//!
//! ```text
//!   root "mediagate test root"                 foreign root "foreign test root"
//!    └─ intermediate "mediagate test intermediate"   └─ foreign leaf
//!        ├─ server        (server.test, 127.0.0.1)  serverAuth+clientAuth
//!        ├─ client        (pbx.test)                serverAuth+clientAuth
//!        ├─ expired       (expired.test)            ended a day ago
//!        ├─ not_yet_valid (future.test)             starts in a day
//!        └─ server_only   (serveronly.test)         serverAuth only
//!   self_signed (selfsigned.test)                   serverAuth+clientAuth, its own issuer
//! ```
//!
//! Validity is relative to the `now` passed to [`TestPki::generate`]; tests that talk to
//! OpenSSL must pass the real time.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A leaf certificate with its chain (up to, not including, the root) and key.
#[derive(Debug)]
pub struct Leaf {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Leaf followed by the intermediate (if any), PEM.
    pub chain_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl Leaf {
    /// A self-signed leaf from `spec`.
    #[allow(clippy::expect_used)]
    pub fn self_signed(spec: &LeafSpec) -> Self {
        let key = KeyPair::generate().expect("keygen");
        let cert = spec.params().self_signed(&key).expect("self-signed");
        Self {
            cert_pem: cert.pem(),
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Leaf + chain, DER.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default()
    }

    /// The private key, DER.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        #[allow(clippy::expect_used)]
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("generated key parses")
    }

    /// A rustls `CertifiedKey` for this leaf.
    pub fn certified_key(&self) -> std::sync::Arc<rustls::sign::CertifiedKey> {
        #[allow(clippy::expect_used)]
        std::sync::Arc::new(
            rustls::sign::CertifiedKey::from_der(
                self.chain(),
                self.key(),
                &rustls::crypto::aws_lc_rs::default_provider(),
            )
            .expect("test leaf is consistent"),
        )
    }

    /// Writes `<stem>.crt` (chain) and `<stem>.key` into `dir`; returns the certificate path.
    pub fn write_to(&self, dir: &Path, stem: &str) -> PathBuf {
        let cert = dir.join(format!("{stem}.crt"));
        #[allow(clippy::expect_used)]
        {
            std::fs::write(&cert, &self.chain_pem).expect("write test cert");
            std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem).expect("write test key");
        }
        cert
    }
}

/// The whole test PKI.
#[derive(Debug)]
pub struct TestPki {
    /// The root certificate, PEM (what goes into a trust store).
    pub root_pem: String,
    /// The intermediate certificate, PEM.
    pub intermediate_pem: String,
    /// The foreign root, PEM.
    pub foreign_root_pem: String,
    /// Server leaf (server.test, 127.0.0.1).
    pub server: Leaf,
    /// Client leaf (pbx.test).
    pub client: Leaf,
    /// Expired leaf.
    pub expired: Leaf,
    /// Not-yet-valid leaf.
    pub not_yet_valid: Leaf,
    /// serverAuth-only leaf.
    pub server_only: Leaf,
    /// Leaf from the foreign root.
    pub foreign: Leaf,
    /// Self-signed leaf.
    pub self_signed: Leaf,
    now: SystemTime,
    intermediate_params: CertificateParams,
    intermediate_key: KeyPair,
}

fn at(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    #[allow(clippy::expect_used)]
    time::OffsetDateTime::from_unix_timestamp(secs).expect("time in range")
}

fn ca_params(cn: &str, now: SystemTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "mediagate tests");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = at(now - DAY);
    p.not_after = at(now + DAY * 3650);
    p
}

/// Parameters of a leaf to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// dNSName (also the CN).
    pub dns: String,
    /// Extra iPAddress SANs.
    pub ips: Vec<IpAddr>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// Extended key usages.
    pub eku: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafSpec {
    /// A serverAuth+clientAuth leaf for `dns`, valid from `now - 1 h` to `now + days`.
    pub fn new(dns: &str, now: SystemTime, days: u32) -> Self {
        Self {
            dns: dns.to_owned(),
            ips: Vec::new(),
            not_before: now - Duration::from_secs(3600),
            not_after: now + DAY * days,
            eku: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        }
    }

    fn params(&self) -> CertificateParams {
        #[allow(clippy::expect_used)]
        let mut p = CertificateParams::new(vec![self.dns.clone()]).expect("valid test name");
        for ip in &self.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.dns.clone());
        p.distinguished_name = dn;
        p.extended_key_usages = self.eku.clone();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = at(self.not_before);
        p.not_after = at(self.not_after);
        p
    }
}

#[allow(clippy::expect_used)]
fn issue(spec: &LeafSpec, issuer: &Issuer<'_, &KeyPair>, chain_tail: &str) -> Leaf {
    let key = KeyPair::generate().expect("keygen");
    let cert = spec.params().signed_by(&key, issuer).expect("sign leaf");
    Leaf {
        cert_pem: cert.pem(),
        chain_pem: format!("{}{}", cert.pem(), chain_tail),
        key_pem: key.serialize_pem(),
    }
}

impl TestPki {
    /// Generates the whole PKI with validity relative to `now`.
    #[allow(clippy::expect_used)]
    pub fn generate(now: SystemTime) -> Self {
        let root_key = KeyPair::generate().expect("keygen");
        let root_params = ca_params("mediagate test root", now);
        let root_cert = root_params.self_signed(&root_key).expect("root");
        let root = Issuer::from_params(&root_params, &root_key);

        let intermediate_key = KeyPair::generate().expect("keygen");
        let intermediate_params = ca_params("mediagate test intermediate", now);
        let intermediate_cert = intermediate_params
            .signed_by(&intermediate_key, &root)
            .expect("intermediate");
        let inter = Issuer::from_params(&intermediate_params, &intermediate_key);
        let tail = intermediate_cert.pem();

        let mut server = LeafSpec::new("server.test", now, 90);
        server.ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let client = LeafSpec::new("pbx.test", now, 90);
        let mut expired = LeafSpec::new("expired.test", now, 0);
        expired.not_before = now - DAY * 60;
        expired.not_after = now - DAY;
        let mut future = LeafSpec::new("future.test", now, 60);
        future.not_before = now + DAY;
        let mut server_only = LeafSpec::new("serveronly.test", now, 90);
        server_only.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];

        let foreign_key = KeyPair::generate().expect("keygen");
        let foreign_params = ca_params("foreign test root", now);
        let foreign_cert = foreign_params
            .self_signed(&foreign_key)
            .expect("foreign root");
        let foreign = Issuer::from_params(&foreign_params, &foreign_key);

        Self {
            server: issue(&server, &inter, &tail),
            client: issue(&client, &inter, &tail),
            expired: issue(&expired, &inter, &tail),
            not_yet_valid: issue(&future, &inter, &tail),
            server_only: issue(&server_only, &inter, &tail),
            foreign: issue(&LeafSpec::new("foreign.test", now, 90), &foreign, ""),
            self_signed: Leaf::self_signed(&LeafSpec::new("selfsigned.test", now, 365)),
            root_pem: root_cert.pem(),
            intermediate_pem: tail,
            foreign_root_pem: foreign_cert.pem(),
            now,
            intermediate_params,
            intermediate_key,
        }
    }

    /// Issues another leaf from the intermediate.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        let inter = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        issue(spec, &inter, &self.intermediate_pem)
    }

    /// The `now` the PKI was generated for.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The root, DER.
    pub fn root_der(&self) -> CertificateDer<'static> {
        #[allow(clippy::expect_used)]
        CertificateDer::from_pem_slice(self.root_pem.as_bytes()).expect("root parses")
    }

    /// The foreign root, DER.
    pub fn foreign_root_der(&self) -> CertificateDer<'static> {
        #[allow(clippy::expect_used)]
        CertificateDer::from_pem_slice(self.foreign_root_pem.as_bytes()).expect("root parses")
    }
}
