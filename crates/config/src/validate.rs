//! From the file schema to a validated [`Config`]: every value parsed and checked, dial plans and
//! peers accepted by [`Policy::new`]. The first problem is returned as `(key, problem)`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use mediagate_sip::{
    DialPlan, Peer, PeerAddress, Policy, PolicyError, PolicyOptions, Route, Target,
};

use crate::schema::{RawConfig, RawDialPlan, RawPeer};
use crate::{
    AdminSection, Config, ConfigSource, DialPlanConfig, GatewaySection, LimitsSection,
    ListenSection, MediaSection, PeerConfig, TlsSection, defaults, keys, parse_media_latching,
    parse_media_source, parse_transport, parse_voip_security, transport_name,
};

/// A problem: the key and what is wrong with it.
pub(crate) type Problem = (String, String);

fn bad<T>(key: impl Into<String>, problem: impl Into<String>) -> Result<T, Problem> {
    Err((key.into(), problem.into()))
}

pub(crate) fn validate(raw: RawConfig, source: ConfigSource) -> Result<Config, Problem> {
    let gateway = gateway(&raw)?;
    let listen = listen(&raw)?;
    let media = media(&raw, &listen)?;
    let limits = limits(&raw)?;
    let admin = AdminSection {
        http: raw
            .admin
            .http
            .as_deref()
            .map(|s| socket_addr("admin.http", s))
            .transpose()?,
    };
    let tls = tls(&raw)?;
    let hosts = hosts(&raw.hosts)?;

    let plan_labels = labels(raw.dial_plans.iter().map(|p| p.name.as_str()));
    let peer_labels = labels(raw.peers.iter().map(|p| p.name.as_str()));
    let dial_plans = raw
        .dial_plans
        .iter()
        .zip(&plan_labels)
        .map(|(p, label)| dial_plan(p, &keys::element("dial_plan", label)))
        .collect::<Result<Vec<_>, _>>()?;
    let peers = raw
        .peers
        .iter()
        .zip(&peer_labels)
        .map(|(p, label)| peer(p, &keys::element("peer", label)))
        .collect::<Result<Vec<_>, _>>()?;

    let security_of = |plan: &str| {
        dial_plans
            .iter()
            .find(|p| p.name == plan)
            .map(|p| p.voip_security)
    };
    let policy = Policy::new(
        dial_plans
            .iter()
            .map(|p| DialPlan {
                name: p.name.clone(),
                security: p.voip_security,
                routes: p.routes.clone(),
            })
            .collect(),
        peers
            .iter()
            .map(|p| Peer {
                name: p.name.clone(),
                address: p.address.clone(),
                port: p.port,
                transport: p
                    .transport_in(security_of(&p.dial_plan).unwrap_or(defaults::VOIP_SECURITY)),
                transport_fixed: p.transport.is_some(),
                dial_plan: p.dial_plan.clone(),
                media_source: p.media_source,
                media_latching: p.media_latching,
            })
            .collect(),
        &PolicyOptions {
            tls_ports: tls.tls_peer_ports.clone(),
        },
    )
    .map_err(|e| policy_problem(&e, &raw, &plan_labels, &peer_labels))?;

    // Each peer's transport needs its listener: it is our Via/Contact address for outbound
    // calls, and the way in for the peer's calls.
    for p in &peers {
        let security = security_of(&p.dial_plan).unwrap_or(defaults::VOIP_SECURITY);
        let transport = p.transport_in(security);
        if listen.listener(transport).is_none() {
            let t = transport_name(transport);
            return bad(
                format!("listen.{t}"),
                format!(
                    "not set, but peer {:?} in {security} dial plan {:?} uses {t}; add a {t} \
                     listener, or move the peer",
                    p.name, p.dial_plan
                ),
            );
        }
    }

    Ok(Config {
        gateway,
        listen,
        media,
        limits,
        admin,
        tls,
        dial_plans,
        peers,
        hosts,
        source,
        policy,
    })
}

fn labels<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let names: Vec<Option<&str>> = names.map(Some).collect();
    keys::element_labels(&names)
}

fn gateway(raw: &RawConfig) -> Result<GatewaySection, Problem> {
    let g = &raw.gateway;
    let fqdn = g.fqdn.as_deref().unwrap_or(defaults::FQDN);
    if fqdn.parse::<IpAddr>().is_ok() {
        return bad(
            "gateway.fqdn",
            format!(
                "{fqdn:?} is an IP address; give the DNS name peers use for the gateway (its \
                 certificate names it) and list IP addresses in gateway.addresses"
            ),
        );
    }
    if !is_dns_name(fqdn) {
        return bad("gateway.fqdn", not_a_dns_name(fqdn));
    }
    let mut addresses = Vec::new();
    for (i, a) in g.addresses.iter().flatten().enumerate() {
        let key = format!("gateway.addresses[{i}]");
        let ip = ip_addr(&key, a)?;
        concrete(&key, ip, "a certificate SAN")?;
        addresses.push(ip);
    }
    Ok(GatewaySection {
        fqdn: fqdn.trim_end_matches('.').to_ascii_lowercase(),
        addresses,
        data_dir: dir(
            "gateway.data_dir",
            g.data_dir.as_deref(),
            defaults::DATA_DIR,
        )?,
        cert_dir: dir(
            "gateway.cert_dir",
            g.cert_dir.as_deref(),
            defaults::CERT_DIR,
        )?,
        trust_dir: dir(
            "gateway.trust_dir",
            g.trust_dir.as_deref(),
            defaults::TRUST_DIR,
        )?,
        trust_own_certificate: g
            .trust_own_certificate
            .unwrap_or(defaults::TRUST_OWN_CERTIFICATE),
    })
}

fn dir(key: &str, written: Option<&str>, default: &str) -> Result<PathBuf, Problem> {
    let d = written.unwrap_or(default);
    if d.is_empty() {
        return bad(key, "empty path (write \".\" for the directory itself)");
    }
    if d.contains('\0') {
        return bad(key, "path contains a NUL character");
    }
    Ok(PathBuf::from(d))
}

fn listen(raw: &RawConfig) -> Result<ListenSection, Problem> {
    let l = &raw.listen;
    let parse = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| socket_addr(&format!("listen.{name}"), s))
            .transpose()
    };
    let listen = ListenSection {
        udp: parse("udp", &l.udp)?,
        tcp: parse("tcp", &l.tcp)?,
        tls: parse("tls", &l.tls)?,
        advertise: l
            .advertise
            .as_deref()
            .map(|s| ip_addr("listen.advertise", s))
            .transpose()?,
    };
    if listen.udp.is_none() && listen.tcp.is_none() && listen.tls.is_none() {
        return bad(
            "listen",
            "no listener: set at least one of listen.udp, listen.tcp, listen.tls",
        );
    }
    if let (Some(tcp), Some(tls)) = (listen.tcp, listen.tls)
        && overlap(tcp, tls)
    {
        return bad(
            "listen.tls",
            format!(
                "{tls} overlaps listen.tcp {tcp}: TCP and TLS need different ports (5060 and \
                 5061)"
            ),
        );
    }
    if let Some(ip) = listen.advertise {
        concrete("listen.advertise", ip, "Via and Contact")?;
    } else if let Some((name, bind)) = [
        ("udp", listen.udp),
        ("tcp", listen.tcp),
        ("tls", listen.tls),
    ]
    .into_iter()
    .find_map(|(n, a)| a.filter(|a| a.ip().is_unspecified()).map(|a| (n, a)))
    {
        return bad(
            "listen.advertise",
            format!(
                "required: listen.{name} binds {bind}, which peers cannot send to; set the IP \
                 address to put in Via and Contact"
            ),
        );
    }
    Ok(listen)
}

/// Two stream listeners that would fight for the same socket.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

fn media(raw: &RawConfig, listen: &ListenSection) -> Result<MediaSection, Problem> {
    let m = &raw.media;
    let address = match m.address.as_deref() {
        Some(s) => {
            let ip = ip_addr("media.address", s)?;
            if ip.is_unspecified() {
                return bad(
                    "media.address",
                    format!(
                        "{ip} is not a concrete address: it is put in SDP, where an unspecified \
                         address means \"no media\" (hold) to the peer; give the IP peers send \
                         media to"
                    ),
                );
            }
            concrete("media.address", ip, "SDP")?;
            ip
        }
        None => match listen.advertise.or_else(|| {
            [listen.udp, listen.tcp, listen.tls]
                .into_iter()
                .flatten()
                .map(|a| a.ip())
                .find(|ip| !ip.is_unspecified())
        }) {
            Some(ip) => ip,
            None => {
                return bad(
                    "media.address",
                    "not set, and no concrete listener address to take it from; give the IP \
                     address the relay binds and puts in SDP",
                );
            }
        },
    };
    let port_min = m.port_min.unwrap_or(defaults::PORT_MIN);
    let port_max = m.port_max.unwrap_or(defaults::PORT_MAX);
    if port_min < 1024 {
        return bad(
            "media.port_min",
            format!("{port_min} is below 1024 (privileged and well-known ports)"),
        );
    }
    if !port_min.is_multiple_of(2) {
        return bad(
            "media.port_min",
            format!("{port_min} is odd; RTP uses even ports and RTCP the next odd one"),
        );
    }
    if port_max <= port_min {
        return bad(
            "media.port_max",
            format!("{port_max} is not above media.port_min {port_min}"),
        );
    }
    if port_max.is_multiple_of(2) {
        return bad(
            "media.port_max",
            format!(
                "{port_max} is even; the range must hold whole RTP/RTCP pairs, so it ends on an \
                 odd port (e.g. {})",
                port_max - 1
            ),
        );
    }
    if u32::from(port_max) - u32::from(port_min) + 1 < 4 {
        return bad(
            "media.port_max",
            format!(
                "the range {port_min}-{port_max} holds fewer than 4 ports, the need of one call \
                 (RTP and RTCP on two legs)"
            ),
        );
    }
    if let Some(udp) = listen.udp
        && (port_min..=port_max).contains(&udp.port())
        && (udp.ip() == address || udp.ip().is_unspecified())
    {
        return bad(
            "media.port_min",
            format!(
                "the range {port_min}-{port_max} contains the port of listen.udp {udp}; move \
                 one of them"
            ),
        );
    }
    let workers = m.workers.unwrap_or(defaults::WORKERS);
    if workers > 1024 {
        return bad(
            "media.workers",
            format!("{workers} worker threads is not sane (0 = one per core)"),
        );
    }
    let timeout_secs = m.timeout_secs.unwrap_or(defaults::TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > defaults::TIMEOUT_SECS_MAX {
        return bad(
            "media.timeout_secs",
            format!(
                "{timeout_secs} is not between 1 and {} seconds",
                defaults::TIMEOUT_SECS_MAX
            ),
        );
    }
    let hold_timeout_secs = m
        .hold_timeout_secs
        .unwrap_or(defaults::HOLD_TIMEOUT_SECS.max(timeout_secs));
    if hold_timeout_secs < timeout_secs || hold_timeout_secs > defaults::TIMEOUT_SECS_MAX {
        return bad(
            "media.hold_timeout_secs",
            format!(
                "{hold_timeout_secs} is not between media.timeout_secs ({timeout_secs}) and {} \
                 seconds: a call on hold is silent by design",
                defaults::TIMEOUT_SECS_MAX
            ),
        );
    }
    let wakeup_coalesce_us = m.wakeup_coalesce_us.unwrap_or(defaults::WAKEUP_COALESCE_US);
    if wakeup_coalesce_us > defaults::WAKEUP_COALESCE_US_MAX {
        return bad(
            "media.wakeup_coalesce_us",
            format!(
                "{wakeup_coalesce_us} µs is more than {} µs: the pause delays packets by up to \
                 that much (0 = off, default {})",
                defaults::WAKEUP_COALESCE_US_MAX,
                defaults::WAKEUP_COALESCE_US
            ),
        );
    }
    Ok(MediaSection {
        address,
        port_min,
        port_max,
        workers,
        timeout_secs,
        hold_timeout_secs,
        wakeup_coalesce_us,
    })
}

fn limits(raw: &RawConfig) -> Result<LimitsSection, Problem> {
    let l = &raw.limits;
    let at_least_one = |key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => bad(format!("limits.{key}"), "must be at least 1"),
        v => Ok(v.unwrap_or(default)),
    };
    let max_calls = at_least_one("max_calls", l.max_calls, defaults::MAX_CALLS)?;
    let max_connections = at_least_one(
        "max_connections",
        l.max_connections,
        defaults::MAX_CONNECTIONS,
    )?;
    let max_connections_per_ip = at_least_one(
        "max_connections_per_ip",
        l.max_connections_per_ip,
        defaults::MAX_CONNECTIONS_PER_IP.min(max_connections),
    )?;
    if max_connections_per_ip > max_connections {
        return bad(
            "limits.max_connections_per_ip",
            format!("{max_connections_per_ip} is above limits.max_connections {max_connections}"),
        );
    }
    let tls_handshake_timeout_ms = l
        .tls_handshake_timeout_ms
        .unwrap_or(defaults::TLS_HANDSHAKE_TIMEOUT_MS);
    if tls_handshake_timeout_ms == 0 {
        return bad("limits.tls_handshake_timeout_ms", "must be at least 1 ms");
    }
    let ms = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => bad(format!("limits.{key}"), "must be at least 1 ms"),
        v => Ok(v.unwrap_or(default)),
    };
    let admission_timeout_ms = ms(
        "admission_timeout_ms",
        l.admission_timeout_ms,
        defaults::ADMISSION_TIMEOUT_MS,
    )?;
    let partial_message_timeout_ms = ms(
        "partial_message_timeout_ms",
        l.partial_message_timeout_ms,
        defaults::PARTIAL_MESSAGE_TIMEOUT_MS,
    )?;
    let max_stranger_connections = at_least_one(
        "max_stranger_connections",
        l.max_stranger_connections,
        defaults::MAX_STRANGER_CONNECTIONS,
    )?;
    let max_stranger_connections_per_ip = at_least_one(
        "max_stranger_connections_per_ip",
        l.max_stranger_connections_per_ip,
        defaults::MAX_STRANGER_CONNECTIONS_PER_IP.min(max_stranger_connections),
    )?;
    if max_stranger_connections_per_ip > max_stranger_connections {
        return bad(
            "limits.max_stranger_connections_per_ip",
            format!(
                "{max_stranger_connections_per_ip} is above limits.max_stranger_connections \
                 {max_stranger_connections}"
            ),
        );
    }
    let session_expires_secs = l
        .session_expires_secs
        .unwrap_or(defaults::SESSION_EXPIRES_SECS);
    let min_se_secs = l
        .min_se_secs
        .unwrap_or(defaults::MIN_SE_SECS.min(session_expires_secs.max(2)));
    if min_se_secs < 2 {
        return bad("limits.min_se_secs", "must be at least 2 seconds");
    }
    if session_expires_secs != 0 && session_expires_secs < min_se_secs {
        return bad(
            "limits.session_expires_secs",
            format!(
                "{session_expires_secs} is below limits.min_se_secs {min_se_secs} (0 turns \
                 session timers off)"
            ),
        );
    }
    Ok(LimitsSection {
        max_calls,
        retry_after_secs: l.retry_after_secs.unwrap_or(defaults::RETRY_AFTER_SECS),
        max_connections,
        max_connections_per_ip,
        tls_handshake_timeout_ms,
        shutdown_grace_secs: l
            .shutdown_grace_secs
            .unwrap_or(defaults::SHUTDOWN_GRACE_SECS),
        admission_timeout_ms,
        partial_message_timeout_ms,
        max_stranger_connections,
        max_stranger_connections_per_ip,
        plain_peers_only: l.plain_peers_only.unwrap_or(false),
        session_expires_secs,
        min_se_secs,
    })
}

fn tls(raw: &RawConfig) -> Result<TlsSection, Problem> {
    let ports = raw
        .tls
        .tls_peer_ports
        .clone()
        .unwrap_or_else(|| defaults::TLS_PEER_PORTS.to_vec());
    if ports.is_empty() {
        return bad(
            "tls.tls_peer_ports",
            "empty: list the ports TLS peers may use (R-PEER-3: 5061)",
        );
    }
    if let Some(i) = ports.iter().position(|p| *p == 0) {
        return bad(
            format!("tls.tls_peer_ports[{i}]"),
            "port 0 is not a SIP port",
        );
    }
    Ok(TlsSection {
        identity_from_cn: raw
            .tls
            .identity_from_cn
            .unwrap_or(defaults::IDENTITY_FROM_CN),
        tls_peer_ports: ports,
    })
}

fn hosts(raw: &BTreeMap<String, String>) -> Result<BTreeMap<String, IpAddr>, Problem> {
    let mut out = BTreeMap::new();
    for (name, ip) in raw {
        let key = keys::join("hosts", name);
        if !is_dns_name(name) || name.parse::<IpAddr>().is_ok() {
            return bad(key, not_a_dns_name(name));
        }
        let ip = ip_addr(&key, ip)?;
        concrete(&key, ip, "a host entry")?;
        let normal = name.trim_end_matches('.').to_ascii_lowercase();
        if out.insert(normal.clone(), ip).is_some() {
            return bad(
                key,
                format!("{normal:?} is listed twice (names are compared without case)"),
            );
        }
    }
    Ok(out)
}

fn dial_plan(raw: &RawDialPlan, key: &str) -> Result<DialPlanConfig, Problem> {
    name(&raw.name, &format!("{key}.name"), "dial plan")?;
    let voip_security = match &raw.voip_security {
        Some(s) => parse_voip_security(s).map_err(|e| (format!("{key}.voip_security"), e))?,
        None => defaults::VOIP_SECURITY,
    };
    let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let rkey = format!("{key}.routes[{i}]");
        if let Some(c) = r
            .prefix
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return bad(
                format!("{rkey}.prefix"),
                format!(
                    "{:?} contains {c:?}; a prefix is the start of a called number",
                    r.prefix
                ),
            );
        }
        if let Some(j) = routes.iter().position(|q| q.prefix == r.prefix) {
            return bad(
                format!("{rkey}.prefix"),
                format!(
                    "prefix {:?} is already routed by {key}.routes[{j}]; which one applies \
                     would be ambiguous",
                    r.prefix
                ),
            );
        }
        let target = match r.target.as_str() {
            "" => {
                return bad(
                    format!("{rkey}.target"),
                    "empty: give a peer name or \"echo\"",
                );
            }
            "echo" => Target::Echo,
            peer => Target::Peer(peer.to_owned()),
        };
        routes.push(Route {
            prefix: r.prefix.clone(),
            target,
        });
    }
    Ok(DialPlanConfig {
        name: raw.name.clone(),
        voip_security,
        routes,
    })
}

fn peer(raw: &RawPeer, key: &str) -> Result<PeerConfig, Problem> {
    name(&raw.name, &format!("{key}.name"), "peer")?;
    if raw.name.eq_ignore_ascii_case("echo") {
        return bad(
            format!("{key}.name"),
            "\"echo\" is reserved: a route target \"echo\" means the built-in echo endpoint; \
             choose another name",
        );
    }
    let akey = format!("{key}.address");
    let address = match raw.address.parse::<IpAddr>() {
        Ok(ip) => {
            concrete(&akey, ip, "a peer address")?;
            PeerAddress::Ip(ip)
        }
        Err(_) => {
            if let Some((host, port)) = raw.address.rsplit_once(':')
                && port.parse::<u16>().is_ok()
                && (is_dns_name(host) || host.parse::<IpAddr>().is_ok())
            {
                return bad(
                    akey,
                    format!(
                        "{:?} includes a port; write the address alone and the port in \
                         {key}.port",
                        raw.address
                    ),
                );
            }
            if !is_dns_name(&raw.address) {
                return bad(akey, not_a_dns_name(&raw.address));
            }
            PeerAddress::parse(&raw.address)
        }
    };
    if raw.port == 0 {
        return bad(format!("{key}.port"), "port 0 is not a SIP port");
    }
    let transport = raw
        .transport
        .as_deref()
        .map(|t| parse_transport(t).map_err(|e| (format!("{key}.transport"), e)))
        .transpose()?;
    let media_source = raw
        .media_source
        .as_deref()
        .map(|v| parse_media_source(v).map_err(|e| (format!("{key}.media_source"), e)))
        .transpose()?
        .unwrap_or_default();
    let media_latching = raw
        .media_latching
        .as_deref()
        .map(|v| parse_media_latching(v).map_err(|e| (format!("{key}.media_latching"), e)))
        .transpose()?
        .unwrap_or_default();
    Ok(PeerConfig {
        name: raw.name.clone(),
        address,
        port: raw.port,
        transport,
        dial_plan: raw.dial_plan.clone(),
        media_source,
        media_latching,
    })
}

fn name(name: &str, key: &str, what: &str) -> Result<(), Problem> {
    if keys::is_simple_name(name) {
        Ok(())
    } else {
        bad(
            key,
            format!(
                "{name:?} is not a usable {what} name: 1 to 64 letters, digits, '.', '_' or \
                 '-', starting with a letter or digit"
            ),
        )
    }
}

/// Maps a policy error to the key it is about.
fn policy_problem(
    e: &PolicyError,
    raw: &RawConfig,
    plan_labels: &[String],
    peer_labels: &[String],
) -> Problem {
    let peer_key = |name: &str, field: &str| {
        raw.peers
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| peer_labels.get(i))
            .map_or_else(
                || "peer".to_owned(),
                |l| format!("{}.{field}", keys::element("peer", l)),
            )
    };
    let problem = e.to_string();
    let key = match e {
        PolicyError::Duplicate { kind, name } if *kind == "dial plan" => raw
            .dial_plans
            .iter()
            .enumerate()
            .filter(|(_, p)| &p.name == name)
            .nth(1)
            .and_then(|(i, _)| plan_labels.get(i))
            .map_or_else(
                || "dial_plan".to_owned(),
                |l| format!("{}.name", keys::element("dial_plan", l)),
            ),
        PolicyError::Duplicate { name, .. } => raw
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| &p.name == name)
            .nth(1)
            .and_then(|(i, _)| peer_labels.get(i))
            .map_or_else(
                || "peer".to_owned(),
                |l| format!("{}.name", keys::element("peer", l)),
            ),
        PolicyError::UnknownDialPlan { peer, .. } => {
            let known: Vec<&str> = raw.dial_plans.iter().map(|p| p.name.as_str()).collect();
            return (
                peer_key(peer, "dial_plan"),
                format!(
                    "{problem} (dial plans: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        PolicyError::UnknownRouteTarget {
            dial_plan,
            prefix,
            peer,
        } => raw
            .dial_plans
            .iter()
            .position(|p| &p.name == dial_plan)
            .and_then(|i| {
                let route = raw.dial_plans[i]
                    .routes
                    .iter()
                    .position(|r| &r.prefix == prefix && &r.target == peer)?;
                Some(format!(
                    "{}.routes[{route}].target",
                    keys::element("dial_plan", plan_labels.get(i)?)
                ))
            })
            .unwrap_or_else(|| "dial_plan".to_owned()),
        PolicyError::TlsPeerNeedsFqdn { peer, .. } => peer_key(peer, "address"),
        PolicyError::TlsPeerPort { peer, .. } => peer_key(peer, "port"),
        PolicyError::TransportMismatch { peer, .. } => peer_key(peer, "transport"),
        _ => String::new(),
    };
    (key, problem)
}

fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, Problem> {
    s.parse::<SocketAddr>().or_else(|_| {
        let hint = if s.parse::<IpAddr>().is_ok() {
            "; add the port"
        } else {
            "; host names are not accepted here"
        };
        bad(
            key,
            format!(
                "{s:?} is not a socket address (expected IP:PORT, e.g. 127.0.0.1:5060 or \
                 [::1]:5061{hint})"
            ),
        )
    })
}

fn ip_addr(key: &str, s: &str) -> Result<IpAddr, Problem> {
    s.parse::<IpAddr>().or_else(|_| {
        bad(
            key,
            format!("{s:?} is not an IP address (e.g. 127.0.0.1 or ::1)"),
        )
    })
}

/// Refuses addresses that cannot name one host.
fn concrete(key: &str, ip: IpAddr, use_: &str) -> Result<(), Problem> {
    if ip.is_unspecified() || ip.is_multicast() {
        bad(
            key,
            format!("{ip} is not a concrete host address and cannot be used in {use_}"),
        )
    } else if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        bad(key, format!("{ip} is the broadcast address"))
    } else {
        Ok(())
    }
}

/// A host name: labels of letters, digits and `-` (not at either end), 1–63 characters each,
/// at most 253 in all, an optional trailing dot.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn not_a_dns_name(name: &str) -> String {
    format!(
        "{name:?} is not a host name (letters, digits and '-' in dot-separated labels, e.g. \
         pbx.example.com)"
    )
}

#[cfg(test)]
mod tests {
    use mediagate_sip::VoipSecurity;
    use mediagate_sip_proto::TransportKind;

    use super::*;

    #[test]
    fn dns_names() {
        for ok in [
            "localhost",
            "pbx",
            "pbx.example.com",
            "a-b.c1.",
            "xn--bcher-kva.example",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for no in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "pbx.example.com:5061",
            "a b",
            "é.fr",
        ] {
            assert!(!is_dns_name(no), "{no}");
        }
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name(&["a"; 130].join(".")));
    }

    #[test]
    fn overlapping_stream_listeners() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlap(a("127.0.0.1:5060"), a("127.0.0.1:5060")));
        assert!(overlap(a("0.0.0.0:5060"), a("127.0.0.1:5060")));
        assert!(!overlap(a("127.0.0.1:5060"), a("127.0.0.1:5061")));
        assert!(!overlap(a("127.0.0.1:5060"), a("127.0.0.2:5060")));
        assert!(!overlap(a("[::]:5060"), a("127.0.0.1:5060")));
        assert!(!overlap(a("127.0.0.1:0"), a("127.0.0.1:0")));
    }

    #[test]
    fn voip_security_is_read_in_any_case() {
        assert_eq!(
            parse_voip_security("SIPSecured"),
            Ok(VoipSecurity::SipSecured)
        );
        assert_eq!(parse_voip_security("secured"), Ok(VoipSecurity::Secured));
        assert_eq!(
            parse_voip_security("UNSECURED"),
            Ok(VoipSecurity::Unsecured)
        );
        let e = parse_voip_security("SipSecure").unwrap_err();
        assert!(e.contains("Unsecured, SIPSecured or Secured"), "{e}");
        assert_eq!(parse_transport("TLS"), Ok(TransportKind::Tls));
        assert!(parse_transport("sctp").is_err());
    }
}
