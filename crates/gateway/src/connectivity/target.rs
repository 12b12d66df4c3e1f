//! The far end of a connectivity test: what the CLI fills in from `--target` (and, once the
//! configuration lands, from a configured peer).
//!
//! [`TargetSpec`] is the parsed, not yet resolved, target; [`Target`] adds the address the name
//! resolved to. Parsing is pure and unit-tested; resolution (DNS) belongs to the driver.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use mediagate_sip_proto::message::{Scheme, Uri};

/// Default SIP port for TCP (R-MODE).
pub(crate) const SIP_PORT: u16 = 5060;
/// Default SIP port for TLS (R-MODE, R-PEER-3).
pub(crate) const SIPS_PORT: u16 = 5061;

/// The transport of the test connection. UDP is not offered: the test measures a connection
/// (connect time, TLS handshake) the way the gateway's secured and TCP peers use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain TCP (`--secured false`).
    Tcp,
    /// Mutual TLS (`--secured true`).
    Tls,
}

impl Transport {
    /// The token used in Via headers and URI `transport` parameters, upper case.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target as written, checked against `--secured`, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetSpec {
    /// The Request-URI of OPTIONS and INVITE, as the operator wrote it.
    pub(crate) uri: Uri,
    /// Host to resolve or connect to (IPv6 without brackets).
    pub(crate) host: String,
    /// Port: from the URI, else 5061 for TLS and 5060 for TCP.
    pub(crate) port: u16,
    /// Transport.
    pub(crate) transport: Transport,
    /// For TLS: the name the far end's certificate must carry (`--server-name`, else the URI
    /// host). `None` for TCP.
    pub(crate) server_name: Option<String>,
}

/// A resolved target: everything the driver needs to connect and address its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The Request-URI of OPTIONS and INVITE.
    pub(crate) uri: Uri,
    /// The address to connect to.
    pub(crate) addr: SocketAddr,
    /// Transport.
    pub(crate) transport: Transport,
    /// For TLS: the name the far end's certificate must carry. `None` for TCP.
    pub(crate) server_name: Option<String>,
}

impl TargetSpec {
    /// The spec with its host resolved to `addr` (the port of `addr` is used as given).
    pub(crate) fn resolved(&self, addr: SocketAddr) -> Target {
        Target {
            uri: self.uri.clone(),
            addr,
            transport: self.transport,
            server_name: self.server_name.clone(),
        }
    }

    /// The host as an IP address, when it is one (no resolution needed).
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Why `--target` (with `--secured` and `--server-name`) is not usable. These are usage
/// errors: nothing was tried yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    /// Not a SIP URI at all.
    #[error("--target {0}: not a SIP URI (expected sip:USER@HOST[:PORT][;transport=tls|tcp])")]
    NotUri(String),
    /// A URI scheme other than sip/sips.
    #[error("--target {0}: only sip: and sips: URIs can be tested")]
    Scheme(String),
    /// `transport=udp` or something unknown.
    #[error(
        "--target {uri}: transport={transport} is not supported; test-connectivity runs over TCP \
         (--secured false) or TLS (--secured true)"
    )]
    UnsupportedTransport {
        /// The URI.
        uri: String,
        /// The transport parameter.
        transport: String,
    },
    /// The URI's transport (or sips: scheme) contradicts `--secured`.
    #[error("--target {uri} asks for {asked} but --secured {secured} means {means}")]
    Conflict {
        /// The URI.
        uri: String,
        /// What the URI asks for.
        asked: &'static str,
        /// The `--secured` value.
        secured: bool,
        /// What `--secured` implies.
        means: &'static str,
    },
    /// `--server-name` given for a TCP test.
    #[error("--server-name only applies to --secured true (TLS)")]
    ServerNameWithoutTls,
    /// The server name is neither a DNS name nor an IP address.
    #[error("{0}: not a valid TLS server name (a DNS name or an IP address)")]
    BadServerName(String),
}

/// Parses `--target` under `--secured` and `--server-name` (see [`TargetError`] for the rules).
///
/// - `sip:` or `sips:`; `sips:` means TLS.
/// - `;transport=tls|tcp` must agree with `--secured`; without it the transport follows
///   `--secured`.
/// - The port defaults to 5061 for TLS and 5060 for TCP.
/// - The TLS server name is `--server-name`, else the URI host.
pub(crate) fn parse_target(
    target: &str,
    secured: bool,
    server_name: Option<&str>,
) -> Result<TargetSpec, TargetError> {
    let uri = Uri::parse(target.trim()).map_err(|_| TargetError::NotUri(target.to_owned()))?;
    let wanted = if secured {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let asked = match uri.param("transport") {
        None => None,
        Some(v) => match v.map(str::to_ascii_lowercase).as_deref() {
            Some("tls") => Some(Transport::Tls),
            Some("tcp") => Some(Transport::Tcp),
            other => {
                return Err(TargetError::UnsupportedTransport {
                    uri: target.to_owned(),
                    transport: other.unwrap_or_default().to_owned(),
                });
            }
        },
    };
    let asked = match uri.scheme {
        Scheme::Sips => match asked {
            Some(Transport::Tcp) => {
                return Err(TargetError::UnsupportedTransport {
                    uri: target.to_owned(),
                    transport: "tcp (with sips:)".to_owned(),
                });
            }
            _ => Some(Transport::Tls),
        },
        Scheme::Sip => asked,
        _ => return Err(TargetError::Scheme(target.to_owned())),
    };
    if let Some(a) = asked
        && a != wanted
    {
        return Err(TargetError::Conflict {
            uri: target.to_owned(),
            asked: a.as_str(),
            secured,
            means: wanted.as_str(),
        });
    }
    let host = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port.unwrap_or(match wanted {
        Transport::Tls => SIPS_PORT,
        Transport::Tcp => SIP_PORT,
    });
    let server_name = match (wanted, server_name) {
        (Transport::Tcp, Some(_)) => return Err(TargetError::ServerNameWithoutTls),
        (Transport::Tcp, None) => None,
        (Transport::Tls, name) => {
            let name = name.map_or_else(|| host.clone(), str::to_owned);
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(TargetError::BadServerName(name));
            }
            Some(name)
        }
    };
    Ok(TargetSpec {
        uri,
        host,
        port,
        transport: wanted,
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_target_defaults_to_5060_and_keeps_the_uri() {
        let t = parse_target("sip:echo@192.0.2.7", false, None).unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.port, 5060);
        assert_eq!(t.host, "192.0.2.7");
        assert_eq!(t.server_name, None);
        assert_eq!(t.uri.to_string(), "sip:echo@192.0.2.7");
        assert_eq!(t.ip(), Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn tls_target_defaults_to_5061_and_the_host_as_server_name() {
        let t = parse_target("sip:echo@gw.example.com;transport=tls", true, None).unwrap();
        assert_eq!(t.transport, Transport::Tls);
        assert_eq!(t.port, 5061);
        assert_eq!(t.server_name.as_deref(), Some("gw.example.com"));
        assert_eq!(t.ip(), None);
        let t = parse_target(
            "sips:echo@gw.example.com:5071",
            true,
            Some("pbx.example.com"),
        )
        .unwrap();
        assert_eq!(t.port, 5071);
        assert_eq!(t.server_name.as_deref(), Some("pbx.example.com"));
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        let t = parse_target("sip:echo@[::1]:5070;transport=TCP", false, None).unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 5070);
        let r = t.resolved("[::1]:5070".parse().unwrap());
        assert_eq!(r.addr.port(), 5070);
        assert_eq!(r.transport, Transport::Tcp);
    }

    #[test]
    fn conflicts_and_unsupported_transports_are_refused() {
        assert!(matches!(
            parse_target("sip:a@h;transport=tcp", true, None),
            Err(TargetError::Conflict { secured: true, .. })
        ));
        assert!(matches!(
            parse_target("sip:a@h;transport=tls", false, None),
            Err(TargetError::Conflict {
                secured: false,
                asked: "TLS",
                ..
            })
        ));
        assert!(matches!(
            parse_target("sips:a@h", false, None),
            Err(TargetError::Conflict { .. })
        ));
        assert!(matches!(
            parse_target("sip:a@h;transport=udp", false, None),
            Err(TargetError::UnsupportedTransport { .. })
        ));
        assert!(matches!(
            parse_target("tel:+123", false, None),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            parse_target("not a uri", false, None),
            Err(TargetError::NotUri(_))
        ));
        assert_eq!(
            parse_target("sip:a@h", false, Some("h")),
            Err(TargetError::ServerNameWithoutTls)
        );
        assert!(matches!(
            parse_target("sip:a@h", true, Some("bad name!")),
            Err(TargetError::BadServerName(_))
        ));
    }
}
