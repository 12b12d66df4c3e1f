//! The verified identity of a peer, for the allow-list (R-PEER-2).

use rustls_pki_types::CertificateDer;

use crate::facts::CertFacts;

/// How a peer's name is taken from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentityOptions {
    /// Also accept the subject CN, but only when the certificate has no dNSName SAN (RFC 6125
    /// §6.4.4: the CN is a fallback, never an addition). Off by default.
    pub allow_common_name: bool,
}

/// The FQDNs a peer proved it owns. Built only from a certificate chain that rustls verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Lower-case FQDNs without a trailing dot.
    pub fqdns: Vec<String>,
    /// The leaf's facts (for log lines naming what was presented).
    pub facts: CertFacts,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl PeerIdentity {
    /// Extracts the identity from the verified chain rustls reports after the handshake
    /// (`conn.peer_certificates()`); `None` when there is no certificate or it does not parse.
    pub fn from_verified_chain(
        chain: Option<&[CertificateDer<'_>]>,
        options: IdentityOptions,
    ) -> Option<Self> {
        let leaf = chain?.first()?;
        let facts = CertFacts::from_der(leaf).ok()?;
        let mut fqdns: Vec<String> = facts.dns_names.iter().map(|n| normalize(n)).collect();
        if fqdns.is_empty()
            && options.allow_common_name
            && let Some(cn) = &facts.common_name
        {
            fqdns.push(normalize(cn));
        }
        fqdns.dedup();
        Some(Self { fqdns, facts })
    }

    /// True when the peer proved `fqdn` (case-insensitive, trailing dot ignored; a `*.example.com`
    /// SAN matches exactly one label).
    pub fn matches(&self, fqdn: &str) -> bool {
        let want = normalize(fqdn);
        self.fqdns.iter().any(|have| {
            if let Some(suffix) = have.strip_prefix("*.") {
                want.split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
            } else {
                *have == want
            }
        })
    }
}
