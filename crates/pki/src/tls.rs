//! rustls configurations for mutual TLS whose certificate and trust anchors can be swapped while
//! the gateway runs (R-CERT-6, R-CERT-7).
//!
//! # Hot swap
//! [`CertResolver`] and [`TrustAnchors`] each hold an [`ArcSwap`] of immutable material. rustls
//! asks the resolver for our certificate and the [`PeerVerifier`] for a verdict *during each
//! handshake*, so a [`CertResolver::swap`] or [`TrustAnchors::swap`] takes effect for every
//! handshake that starts afterwards, while established connections, which hold no reference to
//! the swapped material, carry on untouched. The `ServerConfig`/`ClientConfig` themselves never
//! change and can be shared by all listeners and connectors.
//!
//! # Resumption
//! A resumed TLS session skips certificate verification, so a peer could keep using a session
//! established before its root was removed from the trust store (or before it was removed from
//! the allow-list). The server configuration therefore has no session cache, issues no TLS 1.3
//! tickets and has no TLS 1.2 ticketer: every connection is a full handshake verified against
//! the trust store of that moment. The client configuration disables resumption for the same
//! reason. SIP-over-TLS connections are long-lived, so the extra handshakes cost little.
//!
//! # Client certificate hints
//! The server sends an empty certificate_authorities list in its CertificateRequest (the list
//! would have to follow the swapped trust store). Peers then send their configured certificate,
//! which is what SIP devices with a single certificate do anyway.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::clock::{Clock, ClockTimeProvider};
use crate::events;
use crate::facts::CertFacts;
use crate::trust::{RefusalReason, TrustStore};

/// Our certificate, swappable (R-CERT-6). Serves as both the server-side and the client-side
/// certificate resolver.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver presenting `cert` until [`CertResolver::swap`].
    pub fn new(cert: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(cert),
        }
    }

    /// Replaces the certificate for every handshake that starts from now on.
    pub fn swap(&self, cert: Arc<CertifiedKey>) {
        self.current.store(cert);
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct TrustSnapshot {
    store: Arc<TrustStore>,
    /// `None` when the store is empty (rustls refuses to build a verifier without anchors).
    client: Option<Arc<dyn ClientCertVerifier>>,
    server: Option<Arc<WebPkiServerVerifier>>,
}

/// Building a verifier from a trust store failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot build certificate verifier: {0}")]
pub struct VerifierError(pub String);

/// The trust anchors in force, swappable (R-CERT-6, R-CERT-7).
#[derive(Debug)]
pub struct TrustAnchors {
    current: ArcSwap<TrustSnapshot>,
    provider: Arc<CryptoProvider>,
}

impl TrustAnchors {
    /// Trust anchors from a loaded store.
    pub fn new(store: TrustStore) -> Result<Self, VerifierError> {
        let provider = crate::store::provider();
        let snap = snapshot(store, &provider)?;
        Ok(Self {
            current: ArcSwap::from_pointee(snap),
            provider,
        })
    }

    /// Replaces the anchors for every handshake that starts from now on. On error the old
    /// anchors stay.
    pub fn swap(&self, store: TrustStore) -> Result<(), VerifierError> {
        let snap = snapshot(store, &self.provider)?;
        self.current.store(Arc::new(snap));
        Ok(())
    }

    /// The trust store in force.
    pub fn store(&self) -> Arc<TrustStore> {
        self.current.load().store.clone()
    }
}

fn snapshot(
    store: TrustStore,
    provider: &Arc<CryptoProvider>,
) -> Result<TrustSnapshot, VerifierError> {
    if store.is_empty() {
        return Ok(TrustSnapshot {
            store: Arc::new(store),
            client: None,
            server: None,
        });
    }
    let roots = store.roots();
    let client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| VerifierError(e.to_string()))?;
    let server = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| VerifierError(e.to_string()))?;
    Ok(TrustSnapshot {
        store: Arc::new(store),
        client: Some(client),
        server: Some(server),
    })
}

/// Verifies peers with rustls' WebPki verifiers built from the trust anchors in force at the
/// moment of the handshake, and logs every refusal with its [`RefusalReason`] (`GW2010`).
#[derive(Debug)]
pub struct PeerVerifier {
    trust: Arc<TrustAnchors>,
}

impl PeerVerifier {
    /// A verifier reading `trust` at each handshake.
    pub fn new(trust: Arc<TrustAnchors>) -> Self {
        Self { trust }
    }

    fn refused(
        &self,
        err: rustls::Error,
        end_entity: &CertificateDer<'_>,
        role: &str,
        expected: Option<&str>,
    ) -> rustls::Error {
        let reason = RefusalReason::from_rustls(&err).unwrap_or(RefusalReason::Other);
        let (subject, issuer, thumbprint) = match CertFacts::from_der(end_entity) {
            Ok(f) => (f.subject, f.issuer, f.sha1_thumbprint),
            Err(_) => (String::from("?"), String::from("?"), String::from("?")),
        };
        tracing::warn!(
            code = events::PEER_REFUSED,
            role,
            %reason,
            subject = %subject,
            issuer = %issuer,
            thumbprint = %thumbprint,
            expected = expected.unwrap_or(""),
            error = %err,
            "{} peer certificate refused: {reason}", events::PEER_REFUSED
        );
        err
    }

    fn unknown_issuer() -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let snap = self.trust.current.load();
        let result = match &snap.client {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(Self::unknown_issuer()),
        };
        result.map_err(|e| self.refused(e, end_entity, "client", None))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.trust.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.trust.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let snap = self.trust.current.load();
        let result = match &snap.server {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(Self::unknown_issuer()),
        };
        let expected = server_name.to_str();
        result.map_err(|e| self.refused(e, end_entity, "server", Some(&expected)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The TLS versions the gateway speaks: 1.3, and 1.2 because SIPp and many PBXs need it.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The gateway's TLS server configuration: client certificate required and verified against
/// `trust` at each handshake, our certificate from `certs`, TLS 1.2 and 1.3, no resumption,
/// certificate validity judged with `clock`.
pub fn server_config(
    certs: Arc<CertResolver>,
    trust: Arc<TrustAnchors>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = trust.provider.clone();
    let mut config =
        ServerConfig::builder_with_details(provider, Arc::new(ClockTimeProvider(clock)))
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_client_cert_verifier(Arc::new(PeerVerifier::new(trust)))
            .with_cert_resolver(certs);
    // No resumption: see the module documentation.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The gateway's TLS client configuration: presents our certificate from `certs`, verifies the
/// server against `trust` and the name passed at connect time, TLS 1.2 and 1.3, no resumption.
pub fn client_config(
    certs: Arc<CertResolver>,
    trust: Arc<TrustAnchors>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = trust.provider.clone();
    let mut config =
        ClientConfig::builder_with_details(provider, Arc::new(ClockTimeProvider(clock)))
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            // Not dangerous: PeerVerifier delegates to rustls' WebPkiServerVerifier; the custom
            // verifier only lets the trust anchors be swapped (R-CERT-6).
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(trust)))
            .with_client_cert_resolver(certs);
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
