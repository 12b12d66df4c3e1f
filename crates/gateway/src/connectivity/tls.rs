//! The TLS side of the test: the client configuration, and refusals in an administrator's
//! words.
//!
//! The configuration is the gateway's own outbound one (`mediagate_pki::tls::client_config`:
//! TLS 1.2/1.3, our certificate from the store, the far end verified against the trust store
//! by `PeerVerifier`, no resumption), with one addition: the verifier is wrapped so that the
//! certificate the far end presented is kept even when it is refused. A refusal report can
//! then say *what* was refused (subject, issuer, thumbprint), not only why.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mediagate_pki::tls::{CertResolver, PeerVerifier, TrustAnchors};
use mediagate_pki::{CertFacts, Clock, RefusalReason, TrustStore};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, ProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

type Presented = Arc<Mutex<Option<CertificateDer<'static>>>>;

/// `PeerVerifier` that remembers the far end's end-entity certificate.
#[derive(Debug)]
struct Recording {
    inner: PeerVerifier,
    presented: Presented,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&self.inner, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&self.inner)
    }
}

/// Everything the driver needs for the TLS step.
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    /// The client configuration (mutual TLS).
    pub(crate) config: Arc<ClientConfig>,
    /// Facts of the certificate we present.
    pub(crate) ours: CertFacts,
    /// The trust store directory, for messages.
    pub(crate) trust_dir: PathBuf,
    /// How many certificates the trust store holds.
    pub(crate) trusted: usize,
    presented: Presented,
}

impl TlsClient {
    /// A client presenting `cert` (whose leaf is described by `ours`) and trusting `trust`;
    /// certificate validity is judged at `clock`'s time.
    pub(crate) fn new(
        cert: Arc<CertifiedKey>,
        ours: CertFacts,
        trust: TrustStore,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let trust_dir = trust.dir.clone();
        let trusted = trust.certs.len();
        let anchors = Arc::new(TrustAnchors::new(trust).map_err(|e| e.to_string())?);
        let base = mediagate_pki::tls::client_config(
            Arc::new(CertResolver::new(cert)),
            anchors.clone(),
            clock,
        )
        .map_err(|e| e.to_string())?;
        let presented: Presented = Arc::default();
        let mut config = Arc::unwrap_or_clone(base);
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Recording {
                inner: PeerVerifier::new(anchors),
                presented: presented.clone(),
            }));
        Ok(Self {
            config: Arc::new(config),
            ours,
            trust_dir,
            trusted,
            presented,
        })
    }

    /// The end-entity certificate the far end presented in the last handshake, if it got
    /// that far (also when it was refused).
    pub(crate) fn presented(&self) -> Option<CertificateDer<'static>> {
        self.presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A failed handshake (or a TLS error after it), explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// A stable token for scripts: a [`RefusalReason`] token for certificate problems,
    /// `refused_by_far_end` when the far end refused us, `handshake_failed` otherwise.
    pub(crate) token: &'static str,
    /// What happened, for the operator.
    pub(crate) text: String,
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Explains a TLS failure reported as an I/O error by tokio-rustls.
pub(crate) fn explain_io(e: &io::Error, client: &TlsClient, server_name: &str) -> Refusal {
    match rustls_error(e) {
        Some(err) => explain(err, client, server_name),
        None => Refusal {
            token: "handshake_failed",
            text: match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => format!(
                    "the far end closed the connection during the TLS handshake ({}): is it a \
                     TLS port?",
                    super::describe_io(e)
                ),
                _ => format!("TLS handshake failed: {}", super::describe_io(e)),
            },
        },
    }
}

/// Explains a rustls error (R-CERT-7 reasons for certificate refusals).
pub(crate) fn explain(err: &rustls::Error, client: &TlsClient, server_name: &str) -> Refusal {
    if let Some(reason) = RefusalReason::from_rustls(err) {
        return Refusal {
            token: reason.as_str(),
            text: certificate_refusal(reason, err, client, server_name),
        };
    }
    match err {
        rustls::Error::AlertReceived(alert) => {
            let ours = matches!(
                alert,
                AlertDescription::BadCertificate
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::UnknownCA
                    | AlertDescription::AccessDenied
                    | AlertDescription::CertificateRequired
            );
            Refusal {
                token: "refused_by_far_end",
                text: if ours {
                    format!(
                        "the far end refused our certificate (TLS alert {alert:?}): it must trust \
                         our issuer ({}) and accept {} for client authentication",
                        client.ours.issuer, client.ours.subject
                    )
                } else {
                    format!("the far end aborted the handshake (TLS alert {alert:?})")
                },
            }
        }
        rustls::Error::PeerIncompatible(why) => Refusal {
            token: "handshake_failed",
            text: format!("no common TLS version or cipher suite with the far end ({why:?})"),
        },
        other => Refusal {
            token: "handshake_failed",
            text: format!("TLS handshake failed: {other}"),
        },
    }
}

fn certificate_refusal(
    reason: RefusalReason,
    err: &rustls::Error,
    client: &TlsClient,
    server_name: &str,
) -> String {
    match reason {
        RefusalReason::UnknownIssuer => format!(
            "untrusted issuer: the issuer is unknown to the trust store {} ({} trusted \
             certificates); import the far end's root with `mediagate trust import`",
            client.trust_dir.display(),
            client.trusted
        ),
        RefusalReason::NameNotAllowed => format!(
            "name mismatch: the far end's certificate is not valid for {server_name} (check its \
             subjectAltNames, or pass --server-name)"
        ),
        RefusalReason::Expired => {
            "expired: the far end's certificate (or one in its chain) has expired".to_owned()
        }
        RefusalReason::NotYetValid => {
            "not yet valid: the far end's certificate (or one in its chain) is not valid yet \
             (check both clocks)"
                .to_owned()
        }
        RefusalReason::WrongPurpose => "wrong purpose: the far end's certificate does not allow \
                                        TLS server authentication (extended key usage)"
            .to_owned(),
        RefusalReason::NoCertificate => "the far end presented no certificate".to_owned(),
        RefusalReason::Revoked => "revoked: the far end's certificate was revoked".to_owned(),
        RefusalReason::BadSignature => "bad signature: a signature in the far end's chain does \
                                        not verify or uses an unsupported algorithm"
            .to_owned(),
        RefusalReason::BadEncoding => "the far end's certificate does not parse".to_owned(),
        _ => format!("certificate refused: {err}"),
    }
}

/// `TLSv1.3` / `TLSv1.2`.
pub(crate) fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use mediagate_pki::FixedClock;
    use mediagate_pki::testpki::TestPki;
    use rustls::CertificateError;

    use super::*;

    #[allow(clippy::disallowed_methods)] // a test PKI needs a time; any will do
    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn client() -> TlsClient {
        let pki = TestPki::generate(now());
        let ours = CertFacts::from_der(&pki.client.chain()[0]).unwrap();
        let mut trust = TrustStore::from_certs([pki.root_der()]).unwrap();
        trust.dir = PathBuf::from("/etc/mediagate/trust");
        TlsClient::new(
            pki.client.certified_key(),
            ours,
            trust,
            Arc::new(FixedClock::new(pki.now())),
        )
        .unwrap()
    }

    #[test]
    fn certificate_refusals_name_the_reason() {
        let c = client();
        let unknown = explain(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &c,
            "gw.example.com",
        );
        assert_eq!(unknown.token, "unknown_issuer");
        assert!(
            unknown.text.contains("the issuer is unknown")
                && unknown.text.contains("/etc/mediagate/trust (1 trusted"),
            "{}",
            unknown.text
        );
        let name = explain(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            &c,
            "gw.example.com",
        );
        assert_eq!(name.token, "name_not_allowed");
        assert!(
            name.text.starts_with("name mismatch") && name.text.contains("gw.example.com"),
            "{}",
            name.text
        );
        let expired = explain(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            &c,
            "x",
        );
        assert_eq!(expired.token, "expired");
        assert!(expired.text.starts_with("expired"));
    }

    #[test]
    fn alerts_tell_whether_the_far_end_refused_us() {
        let c = client();
        let r = explain(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            &c,
            "x",
        );
        assert_eq!(r.token, "refused_by_far_end");
        assert!(
            r.text.contains("refused our certificate") && r.text.contains("CN=pbx.test"),
            "{}",
            r.text
        );
        let r = explain(
            &rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            &c,
            "x",
        );
        assert!(r.text.contains("aborted the handshake"), "{}", r.text);
        // Through an io::Error, as tokio-rustls reports it.
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(explain_io(&io, &c, "x").token, "unknown_issuer");
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(
            explain_io(&eof, &c, "x").text.contains("is it a TLS port"),
            "{:?}",
            explain_io(&eof, &c, "x")
        );
    }

    #[test]
    fn the_client_presents_our_certificate_and_records_nothing_before_a_handshake() {
        let c = client();
        assert!(c.config.client_auth_cert_resolver.has_certs());
        assert_eq!(c.presented(), None);
        assert_eq!(c.ours.common_name.as_deref(), Some("pbx.test"));
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
    }
}
