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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<String>, cn: &str) -> CertificateDer<'static> {
        let mut p = rcgen::CertificateParams::new(sans).expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, cn.to_owned());
        let key = rcgen::KeyPair::generate().expect("key");
        p.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn san_names_are_normalized_and_cn_ignored_when_sans_exist() {
        let c = cert(vec!["PBX.Example.com.".into()], "other.example.com");
        let on = IdentityOptions {
            allow_common_name: true,
        };
        let id = PeerIdentity::from_verified_chain(Some(&[c]), on).expect("identity");
        assert_eq!(id.fqdns, vec!["pbx.example.com".to_string()]);
        assert!(id.matches("pbx.example.COM"));
        assert!(
            !id.matches("other.example.com"),
            "CN is never added next to SANs"
        );
    }

    #[test]
    fn cn_only_with_the_option() {
        let c = cert(vec![], "legacy-pbx.example.com");
        let chain = [c];
        let off = PeerIdentity::from_verified_chain(Some(&chain), IdentityOptions::default())
            .expect("identity");
        assert!(off.fqdns.is_empty());
        let on = PeerIdentity::from_verified_chain(
            Some(&chain),
            IdentityOptions {
                allow_common_name: true,
            },
        )
        .expect("identity");
        assert_eq!(on.fqdns, vec!["legacy-pbx.example.com".to_string()]);
    }

    #[test]
    fn wildcard_matches_one_label() {
        let c = cert(vec!["*.pbx.example.com".into()], "x");
        let id = PeerIdentity::from_verified_chain(Some(&[c]), IdentityOptions::default())
            .expect("identity");
        assert!(id.matches("a.pbx.example.com"));
        assert!(!id.matches("a.b.pbx.example.com"));
        assert!(!id.matches("pbx.example.com"));
    }

    #[test]
    fn no_chain_no_identity() {
        assert!(PeerIdentity::from_verified_chain(None, IdentityOptions::default()).is_none());
    }
}
