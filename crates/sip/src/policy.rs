//! Dial plans, peers and request admission (R-MODE-2, R-MODE-4, R-PEER-1…3).
//!
//! A [`Policy`] is validated once ([`Policy::new`]) and then shared as an immutable
//! `Arc<Policy>` snapshot in a [`PolicyHandle`]. Every new call loads the current snapshot and
//! keeps it for its whole life, so a dial plan changed by a reload applies to new calls only
//! (R-MODE-4).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mediagate_pki::PeerIdentity;
use mediagate_sip_proto::TransportKind;

/// The VoIP security mode of a dial plan (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum VoipSecurity {
    /// Plain SIP over TCP/UDP, plain RTP. The default for a new dial plan.
    #[default]
    Unsecured,
    /// SIP over mutual TLS, plain RTP.
    SipSecured,
    /// SIP over mutual TLS, SRTP with SDES keys.
    Secured,
}

impl VoipSecurity {
    /// True when signaling must be mutual TLS.
    pub fn requires_tls(self) -> bool {
        !matches!(self, VoipSecurity::Unsecured)
    }
    /// True when media must be SRTP (RTP/SAVP).
    pub fn requires_srtp(self) -> bool {
        matches!(self, VoipSecurity::Secured)
    }
    /// True when `transport` is allowed for this mode.
    pub fn allows(self, transport: TransportKind) -> bool {
        match self {
            VoipSecurity::Unsecured => transport != TransportKind::Tls,
            _ => transport == TransportKind::Tls,
        }
    }
}

impl fmt::Display for VoipSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoipSecurity::Unsecured => "Unsecured",
            VoipSecurity::SipSecured => "SIPSecured",
            VoipSecurity::Secured => "Secured",
        })
    }
}

/// Where a route sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A configured peer, by name.
    Peer(String),
    /// The gateway's built-in echo endpoint ([`crate::b2bua::LocalEndpoint`]).
    Echo,
}

/// One route of a dial plan: calls whose called number starts with `prefix` go to `target`.
/// The longest matching prefix wins; `""` matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Called-number prefix.
    pub prefix: String,
    /// Destination.
    pub target: Target,
}

/// A dial plan: a security mode and routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// Unique name.
    pub name: String,
    /// Security mode of every peer in the plan.
    pub security: VoipSecurity,
    /// Routes, any order.
    pub routes: Vec<Route>,
}

impl DialPlan {
    /// The target for `called` (longest prefix), if any.
    pub fn route(&self, called: &str) -> Option<&Target> {
        self.routes
            .iter()
            .filter(|r| called.starts_with(r.prefix.as_str()))
            .max_by_key(|r| r.prefix.len())
            .map(|r| &r.target)
    }
}

/// A peer's address: an FQDN (required for TLS peers) or an IP address (plain peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddress {
    /// A DNS name; TLS peers are identified by it (certificate SAN).
    Fqdn(String),
    /// A literal IP address.
    Ip(IpAddr),
}

impl PeerAddress {
    /// Parses an IP literal, else takes the text as an FQDN (lower-cased, no trailing dot).
    pub fn parse(s: &str) -> PeerAddress {
        match s.parse::<IpAddr>() {
            Ok(ip) => PeerAddress::Ip(ip),
            Err(_) => PeerAddress::Fqdn(s.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Fqdn(n) => f.write_str(n),
            PeerAddress::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where a peer's plain RTP may come from before the relay has latched onto it (R-MEDIA-1).
/// SRTP legs need no such rule: only a packet that authenticates can latch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaSource {
    /// Only the address in the peer's SDP (the default; rtpengine's `strict source`).
    #[default]
    Sdp,
    /// Also any port of the peer's own signaling address: for peers behind NAT whose SDP names
    /// a private address.
    PeerAddress,
}

impl fmt::Display for MediaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaSource::Sdp => "sdp",
            MediaSource::PeerAddress => "peer-address",
        })
    }
}

/// Whether a plain leg stays with the first source it latched onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaLatching {
    /// Keep the first valid source; drop every other (the default).
    #[default]
    Strict,
    /// Move to a new source that [`MediaSource`] allows (a NAT binding that changes port).
    Follow,
}

impl fmt::Display for MediaLatching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaLatching::Strict => "strict",
            MediaLatching::Follow => "follow",
        })
    }
}

/// A peer (IP gateway or IP PBX), R-PEER-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Unique name.
    pub name: String,
    /// FQDN or IP address.
    pub address: PeerAddress,
    /// Its SIP port (5060 or 5061 in production).
    pub port: u16,
    /// Transport we use to reach it; must match its dial plan's mode.
    pub transport: TransportKind,
    /// The transport was configured for this peer: requests from it over any other transport
    /// are refused (403). When false, any transport its dial plan's mode allows is accepted.
    pub transport_fixed: bool,
    /// Name of its dial plan.
    pub dial_plan: String,
    /// Where its plain RTP may come from before latching.
    pub media_source: MediaSource,
    /// Whether its plain legs follow a moving source.
    pub media_latching: MediaLatching,
}

/// A configuration error: the operator's fault, with a message naming the item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Two dial plans or two peers share a name.
    #[error("duplicate {kind} name {name:?}")]
    Duplicate {
        /// "dial plan" or "peer".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A peer names a dial plan that does not exist.
    #[error("peer {peer:?}: unknown dial plan {dial_plan:?}")]
    UnknownDialPlan {
        /// The peer.
        peer: String,
        /// The dial plan it names.
        dial_plan: String,
    },
    /// A route names a peer that does not exist.
    #[error("dial plan {dial_plan:?}: route {prefix:?} targets unknown peer {peer:?}")]
    UnknownRouteTarget {
        /// The dial plan.
        dial_plan: String,
        /// The route prefix.
        prefix: String,
        /// The peer it names.
        peer: String,
    },
    /// R-PEER-3: a SIPSecured/Secured peer configured with an IP address instead of an FQDN.
    #[error(
        "peer {peer:?} is in {security} dial plan {dial_plan:?} and must be configured with an FQDN (its TLS certificate names it), not the IP address {address}"
    )]
    TlsPeerNeedsFqdn {
        /// The peer.
        peer: String,
        /// Its dial plan.
        dial_plan: String,
        /// The plan's mode.
        security: VoipSecurity,
        /// The IP address given.
        address: IpAddr,
    },
    /// R-PEER-3: a SIPSecured/Secured peer whose port is not the TLS port.
    #[error(
        "peer {peer:?} is in {security} dial plan {dial_plan:?} and must use SIP-TLS port {expected}, not {port}"
    )]
    TlsPeerPort {
        /// The peer.
        peer: String,
        /// Its dial plan.
        dial_plan: String,
        /// The plan's mode.
        security: VoipSecurity,
        /// Configured port.
        port: u16,
        /// Allowed port(s), e.g. "5061".
        expected: String,
    },
    /// The peer's transport does not match its dial plan's mode (e.g. TCP in a Secured plan).
    #[error(
        "peer {peer:?}: transport {transport:?} does not match {security} dial plan {dial_plan:?}"
    )]
    TransportMismatch {
        /// The peer.
        peer: String,
        /// Its dial plan.
        dial_plan: String,
        /// The plan's mode.
        security: VoipSecurity,
        /// Configured transport.
        transport: TransportKind,
    },
}

/// Validation options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    /// Ports a TLS peer may be configured with (R-PEER-3: `[5061]`). Tests running peers on
    /// ephemeral ports add theirs; production keeps the default.
    pub tls_ports: Vec<u16>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            tls_ports: vec![5061],
        }
    }
}

/// A validated policy snapshot: dial plans and peers, plus the addresses the peers' FQDNs
/// resolved to (filled by the driver with [`Policy::with_resolved`]).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    plans: Vec<DialPlan>,
    peers: Vec<Peer>,
    resolved: HashMap<String, Vec<IpAddr>>,
}

impl Policy {
    /// Validates dial plans and peers (R-PEER-3 and consistency); the first problem is
    /// returned with a message naming the peer or plan.
    pub fn new(
        plans: Vec<DialPlan>,
        peers: Vec<Peer>,
        options: &PolicyOptions,
    ) -> Result<Policy, PolicyError> {
        for (i, p) in plans.iter().enumerate() {
            if plans[..i].iter().any(|q| q.name == p.name) {
                return Err(PolicyError::Duplicate {
                    kind: "dial plan",
                    name: p.name.clone(),
                });
            }
        }
        for (i, peer) in peers.iter().enumerate() {
            if peers[..i].iter().any(|q| q.name == peer.name) {
                return Err(PolicyError::Duplicate {
                    kind: "peer",
                    name: peer.name.clone(),
                });
            }
            let plan = plans
                .iter()
                .find(|p| p.name == peer.dial_plan)
                .ok_or_else(|| PolicyError::UnknownDialPlan {
                    peer: peer.name.clone(),
                    dial_plan: peer.dial_plan.clone(),
                })?;
            if plan.security.requires_tls() {
                if let PeerAddress::Ip(address) = peer.address {
                    return Err(PolicyError::TlsPeerNeedsFqdn {
                        peer: peer.name.clone(),
                        dial_plan: plan.name.clone(),
                        security: plan.security,
                        address,
                    });
                }
                if !options.tls_ports.contains(&peer.port) {
                    return Err(PolicyError::TlsPeerPort {
                        peer: peer.name.clone(),
                        dial_plan: plan.name.clone(),
                        security: plan.security,
                        port: peer.port,
                        expected: options
                            .tls_ports
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(" or "),
                    });
                }
            }
            if !plan.security.allows(peer.transport) {
                return Err(PolicyError::TransportMismatch {
                    peer: peer.name.clone(),
                    dial_plan: plan.name.clone(),
                    security: plan.security,
                    transport: peer.transport,
                });
            }
        }
        for plan in &plans {
            for r in &plan.routes {
                if let Target::Peer(name) = &r.target
                    && !peers.iter().any(|p| &p.name == name)
                {
                    return Err(PolicyError::UnknownRouteTarget {
                        dial_plan: plan.name.clone(),
                        prefix: r.prefix.clone(),
                        peer: name.clone(),
                    });
                }
            }
        }
        Ok(Policy {
            plans,
            peers,
            resolved: HashMap::new(),
        })
    }

    /// Sets the addresses a peer's FQDN resolved to (IP peers need none).
    pub fn with_resolved(mut self, peer: &str, addrs: Vec<IpAddr>) -> Policy {
        self.resolved.insert(peer.to_owned(), addrs);
        self
    }

    /// The dial plans.
    pub fn dial_plans(&self) -> &[DialPlan] {
        &self.plans
    }

    /// The peers.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// A peer by name.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// A dial plan by name.
    pub fn dial_plan(&self, name: &str) -> Option<&DialPlan> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// The IP addresses of a peer: its literal IP, or what its FQDN resolved to.
    pub fn addresses(&self, peer: &Peer) -> Vec<IpAddr> {
        match &peer.address {
            PeerAddress::Ip(ip) => vec![*ip],
            PeerAddress::Fqdn(_) => self.resolved.get(&peer.name).cloned().unwrap_or_default(),
        }
    }

    /// True when `ip` is a configured peer's address (literal, or resolved from its FQDN): a
    /// connection from it uses the peers' capacity, not the strangers' quota.
    pub fn is_peer_address(&self, ip: IpAddr) -> bool {
        self.peers.iter().any(|p| self.addresses(p).contains(&ip))
    }

    /// True when `ip` is the address of a peer reached over plain TCP or UDP (for
    /// `plain_peers_only`: TCP connections on the plain listener from anyone else are closed
    /// at accept).
    pub fn is_plain_peer_address(&self, ip: IpAddr) -> bool {
        self.peers
            .iter()
            .any(|p| p.transport != TransportKind::Tls && self.addresses(p).contains(&ip))
    }

    /// True when the verified TLS `identity` names a configured peer: the connection has
    /// proved a peer certificate.
    pub fn names_a_peer(&self, identity: &PeerIdentity) -> bool {
        self.peers
            .iter()
            .any(|p| matches!(&p.address, PeerAddress::Fqdn(n) if identity.matches(n)))
    }

    /// The socket address to send to `peer` (first resolved address).
    pub fn socket_addr(&self, peer: &Peer) -> Option<SocketAddr> {
        self.addresses(peer)
            .first()
            .map(|ip| SocketAddr::new(*ip, peer.port))
    }

    /// Admission (R-PEER-2, R-MODE-2): which peer sent a request arriving over `transport`
    /// from `source`, with the TLS `identity` of its connection.
    ///
    /// TLS: the peer whose FQDN the client certificate proves. TCP/UDP: the peer whose address
    /// (resolved) equals the source IP; several candidates are narrowed by source port. A
    /// known peer whose dial plan does not allow `transport` is refused too.
    pub fn admit(
        &self,
        transport: TransportKind,
        source: SocketAddr,
        identity: Option<&PeerIdentity>,
    ) -> Result<Admitted<'_>, Refusal> {
        let peer = if transport == TransportKind::Tls {
            let id = identity.ok_or(Refusal::NoCertificate)?;
            self.peers
                .iter()
                .find(|p| matches!(&p.address, PeerAddress::Fqdn(n) if id.matches(n)))
                .ok_or_else(|| Refusal::UnknownCertificate {
                    names: id.fqdns.clone(),
                })?
        } else {
            let candidates: Vec<&Peer> = self
                .peers
                .iter()
                .filter(|p| self.addresses(p).contains(&source.ip()))
                .collect();
            let fits = |p: &&&Peer| {
                (!p.transport_fixed || p.transport == transport)
                    && self
                        .plan_of(p)
                        .is_some_and(|d| d.security.allows(transport))
            };
            let exact = candidates
                .iter()
                .filter(fits)
                .find(|p| p.port == source.port());
            let preferred = candidates.iter().find(fits);
            *exact
                .or(preferred)
                .or(candidates.first())
                .ok_or(Refusal::UnknownAddress { from: source })?
        };
        if peer.transport_fixed && peer.transport != transport {
            return Err(Refusal::TransportNotConfigured {
                peer: peer.name.clone(),
                configured: peer.transport,
                transport,
            });
        }
        let plan = self
            .plan_of(peer)
            .ok_or(Refusal::UnknownAddress { from: source })?;
        if !plan.security.allows(transport) {
            return Err(Refusal::WrongTransport {
                peer: peer.name.clone(),
                security: plan.security,
                transport,
            });
        }
        Ok(Admitted { peer, plan })
    }

    fn plan_of(&self, peer: &Peer) -> Option<&DialPlan> {
        self.dial_plan(&peer.dial_plan)
    }
}

/// A request admitted by [`Policy::admit`].
#[derive(Debug, Clone, Copy)]
pub struct Admitted<'a> {
    /// The peer it came from.
    pub peer: &'a Peer,
    /// The peer's dial plan.
    pub plan: &'a DialPlan,
}

/// Why a request was refused (403); the reason phrase names what was presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A TLS connection without a client certificate (cannot happen with the mTLS config).
    #[error("no client certificate")]
    NoCertificate,
    /// The client certificate names no configured peer.
    #[error("certificate names {}, no such peer", names.join(", "))]
    UnknownCertificate {
        /// The names the certificate proved.
        names: Vec<String>,
    },
    /// No peer has the source address.
    #[error("source {from} is not a configured peer")]
    UnknownAddress {
        /// Where the request came from.
        from: SocketAddr,
    },
    /// R-MODE-2: the peer's dial plan does not allow this transport.
    #[error("peer {peer} is {security}: {transport} not allowed")]
    WrongTransport {
        /// The peer.
        peer: String,
        /// Its dial plan mode.
        security: VoipSecurity,
        /// The transport used.
        transport: TransportKind,
    },
    /// The peer's configuration names another transport.
    #[error("peer {peer} is configured for {configured}, not {transport}")]
    TransportNotConfigured {
        /// The peer.
        peer: String,
        /// Its configured transport.
        configured: TransportKind,
        /// The transport used.
        transport: TransportKind,
    },
}

impl Refusal {
    /// A stable lower-case token for logs and metrics labels.
    pub fn token(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::UnknownCertificate { .. } => "unknown_certificate",
            Refusal::UnknownAddress { .. } => "unknown_address",
            Refusal::WrongTransport { .. } => "wrong_transport",
            Refusal::TransportNotConfigured { .. } => "transport_not_configured",
        }
    }
}

/// The live policy, swapped atomically on reload (R-MODE-4).
#[derive(Debug, Clone)]
pub struct PolicyHandle(Arc<ArcSwap<Policy>>);

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Policy) -> PolicyHandle {
        PolicyHandle(Arc::new(ArcSwap::from_pointee(policy)))
    }
    /// The current snapshot; a new call keeps it for its whole life.
    pub fn load(&self) -> Arc<Policy> {
        self.0.load_full()
    }
    /// Installs a new snapshot: new calls use it, calls in progress keep theirs.
    pub fn store(&self, policy: Policy) {
        self.0.store(Arc::new(policy));
    }
}

#[cfg(test)]
pub(crate) mod tests;
