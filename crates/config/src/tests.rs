use std::path::Path;

use mediagate_sip::{PeerAddress, Target, VoipSecurity};
use mediagate_sip_proto::TransportKind;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/mediagate/mediagate.toml"))
}

#[track_caller]
fn error(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

const LISTEN: &str =
    "[listen]\nudp = \"127.0.0.1:5060\"\ntcp = \"127.0.0.1:5060\"\ntls = \"127.0.0.1:5061\"\n";

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default();
    assert_eq!(c.source, ConfigSource::Embedded);
    assert_eq!(c.gateway.fqdn, "localhost");
    assert_eq!(
        c.gateway.addresses,
        ["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    assert!(c.gateway.trust_own_certificate);
    assert_eq!(c.listen.udp, Some("127.0.0.1:5060".parse().unwrap()));
    assert_eq!(c.listen.tcp, Some("127.0.0.1:5060".parse().unwrap()));
    assert_eq!(c.listen.tls, Some("127.0.0.1:5061".parse().unwrap()));
    assert_eq!(c.admin.http, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(
        (c.media.address, c.media.port_min, c.media.port_max),
        ("127.0.0.1".parse().unwrap(), 30000, 30999)
    );
    assert_eq!(c.cert_dir(), Path::new("data/certs"));
    assert_eq!(c.trust_dir(), Path::new("data/trust"));
    let modes: Vec<(&str, VoipSecurity)> = c
        .dial_plans
        .iter()
        .map(|p| (p.name.as_str(), p.voip_security))
        .collect();
    assert_eq!(
        modes,
        [
            ("demo-unsecured", VoipSecurity::Unsecured),
            ("demo-secured", VoipSecurity::Secured),
            ("demo-sipsecured", VoipSecurity::SipSecured)
        ]
    );
    for plan in &c.dial_plans {
        assert_eq!(
            plan.routes,
            [Route {
                prefix: String::new(),
                target: Target::Echo
            }],
            "{}",
            plan.name
        );
    }
    let policy = c.policy();
    let local = policy.peer("local").unwrap();
    assert_eq!(
        (
            &local.address,
            local.port,
            local.transport,
            local.dial_plan.as_str()
        ),
        (
            &PeerAddress::Ip("127.0.0.1".parse().unwrap()),
            5060,
            TransportKind::Tcp,
            "demo-unsecured"
        )
    );
    let tls = policy.peer("localhost").unwrap();
    assert_eq!(
        (
            &tls.address,
            tls.port,
            tls.transport,
            tls.dial_plan.as_str()
        ),
        (
            &PeerAddress::Fqdn("localhost".into()),
            5061,
            TransportKind::Tls,
            "demo-secured"
        )
    );
    assert_eq!(c.peers_of("demo-sipsecured").count(), 0);
}

#[test]
fn a_minimal_file_takes_every_default() {
    let c = parse("[listen]\ntcp = \"127.0.0.1:5060\"\n").unwrap();
    assert_eq!(c.gateway.fqdn, defaults::FQDN);
    assert!(c.gateway.addresses.is_empty());
    assert!(!c.gateway.trust_own_certificate);
    assert_eq!(c.listen.udp, None);
    assert_eq!(c.listen.tls, None);
    // The media address comes from the listener.
    assert_eq!(c.media.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!((c.media.port_min, c.media.port_max), (30000, 39999));
    assert_eq!(c.media.workers, 0);
    assert_eq!(c.media.timeout(), Duration::from_secs(60));
    assert_eq!(c.media.hold_timeout(), Duration::from_secs(3600));
    assert_eq!(c.media.wakeup_coalesce(), Duration::from_micros(500));
    assert_eq!(
        c.limits,
        LimitsSection {
            max_calls: 1000,
            retry_after_secs: 5,
            max_connections: 4096,
            max_connections_per_ip: 256,
            tls_handshake_timeout_ms: 5000,
            shutdown_grace_secs: 30,
            admission_timeout_ms: 5000,
            partial_message_timeout_ms: 30000,
            max_stranger_connections: 64,
            max_stranger_connections_per_ip: 8,
            plain_peers_only: false,
            session_expires_secs: 1800,
            min_se_secs: 90,
        }
    );
    assert_eq!(c.limits.tls_handshake_timeout(), Duration::from_secs(5));
    assert_eq!(c.limits.shutdown_grace(), Duration::from_secs(30));
    assert_eq!(c.admin.http, None);
    assert_eq!(
        c.tls,
        TlsSection {
            identity_from_cn: false,
            tls_peer_ports: vec![5061]
        }
    );
    assert!(c.dial_plans.is_empty() && c.peers.is_empty() && c.hosts.is_empty());
    assert!(c.policy().dial_plans().is_empty());
}

#[test]
fn store_paths_resolve_against_the_file_then_data_dir() {
    let c = parse(LISTEN).unwrap();
    assert_eq!(c.data_dir(), Path::new("/etc/mediagate/data"));
    assert_eq!(c.cert_dir(), Path::new("/etc/mediagate/data/certs"));
    assert_eq!(c.trust_dir(), Path::new("/etc/mediagate/data/trust"));

    let c = parse(&format!(
        "[gateway]\ndata_dir = \"/var/lib/mediagate\"\ntrust_dir = \"/etc/ssl/peers\"\n{LISTEN}"
    ))
    .unwrap();
    assert_eq!(c.cert_dir(), Path::new("/var/lib/mediagate/certs"));
    assert_eq!(c.trust_dir(), Path::new("/etc/ssl/peers"));

    let c = Config::parse(
        &format!("[gateway]\ndata_dir = \".\"\ncert_dir = \"./c\"\n{LISTEN}"),
        Path::new("mediagate.toml"),
    )
    .unwrap();
    assert_eq!(c.data_dir(), Path::new("."));
    assert_eq!(c.cert_dir(), Path::new("c"));
    assert_eq!(c.trust_dir(), Path::new("trust"));

    let c = Config::parse(
        &format!("[gateway]\ndata_dir = \"../state\"\n{LISTEN}"),
        Path::new("conf/mediagate.toml"),
    )
    .unwrap();
    assert_eq!(c.cert_dir(), Path::new("conf/../state/certs"));
}

#[test]
fn errors_name_file_key_and_problem() {
    let e = error(&format!("{LISTEN}[media]\nport_min = 30001\n"));
    assert_eq!(e.file, Path::new("/etc/mediagate/mediagate.toml"));
    assert_eq!(e.key, "media.port_min");
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.problem.contains("30001 is odd"), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "/etc/mediagate/mediagate.toml: media.port_min: {}",
            e.problem
        )
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = error("[gateway]\nfqdn = \"a\"\naddresses = [\"127.0.0.1\"\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.key.starts_with("line 3, column "), "{e}");
    let e = error("[gateway]\nfqdn = \"a\"\nfqdn = \"b\"\n");
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.key.starts_with("line 3, column 1"), "{e}");
    assert!(e.problem.contains("duplicate key"), "{e}");
}

#[test]
fn schema_errors_name_the_key() {
    let e = error(&format!("{LISTEN}[gateway]\nfqnd = \"x\"\n"));
    assert_eq!(e.key, "gateway.fqnd");
    assert!(
        e.problem.starts_with("unknown key (expected one of `fqdn`"),
        "{e}"
    );

    let e = error(&format!("{LISTEN}[routing]\n"));
    assert_eq!(e.key, "routing");
    assert!(e.problem.starts_with("unknown key"), "{e}");

    let e = error(&format!(
        "{LISTEN}[[dial_plan]]\nname = \"d\"\n[[peer]]\nname = \"pbx\"\nadress = \"pbx\"\nport = 5060\ndial_plan = \"d\"\n"
    ));
    assert_eq!(e.key, "peer[pbx].adress");

    let e = error(&format!(
        "{LISTEN}[[dial_plan]]\nname = \"d\"\nroutes = [{{ prefix = \"7\", target = \"echo\", weight = 2 }}]\n"
    ));
    assert_eq!(e.key, "dial_plan[d].routes[0].weight");

    let e = error(&format!(
        "{LISTEN}[[peer]]\nname = \"a\"\naddress = \"a\"\nport = 1\ndial_plan = \"d\"\n[[peer]]\naddress = \"b\"\nport = 5060\ndial_plan = \"d\"\n"
    ));
    assert_eq!(
        (e.key.as_str(), e.problem.as_str()),
        ("peer[1].name", "required key is missing")
    );

    let e = error(&format!(
        "{LISTEN}[[dial_plan]]\nname = \"d\"\nroutes = [{{ prefix = \"7\" }}]\n"
    ));
    assert_eq!(e.key, "dial_plan[d].routes[0].target");

    let e = error(&format!("{LISTEN}[limits]\nmax_calls = \"many\"\n"));
    assert_eq!(e.key, "limits.max_calls");
    assert!(e.problem.contains("invalid type"), "{e}");

    let e = error(&format!("{LISTEN}[tls]\ntls_peer_ports = [5061, 70000]\n"));
    assert_eq!(e.key, "tls.tls_peer_ports[1]");
    assert!(e.problem.contains("from 0 to 65535"), "{e}");
}

#[test]
fn voip_security_is_case_insensitive_and_errors_list_the_modes() {
    let c = parse(&format!(
        "{LISTEN}[[dial_plan]]\nname = \"a\"\nvoip_security = \"sipsecured\"\n[[dial_plan]]\nname = \"b\"\n"
    ))
    .unwrap();
    assert_eq!(c.dial_plans[0].voip_security, VoipSecurity::SipSecured);
    assert_eq!(c.dial_plans[1].voip_security, VoipSecurity::Unsecured);
    let e = error(&format!(
        "{LISTEN}[[dial_plan]]\nname = \"secure\"\nvoip_security = \"TLS\"\n"
    ));
    assert_eq!(e.key, "dial_plan[secure].voip_security");
    assert!(
        e.problem.contains("Unsecured, SIPSecured or Secured"),
        "{e}"
    );
}

fn with_peer(mode: &str, peer: &str) -> String {
    format!(
        "{LISTEN}[[dial_plan]]\nname = \"plan\"\nvoip_security = \"{mode}\"\nroutes = [{{ prefix = \"\", target = \"pbx\" }}]\n[[peer]]\nname = \"pbx\"\ndial_plan = \"plan\"\n{peer}"
    )
}

#[test]
fn transports_default_by_mode() {
    let c = parse(&with_peer(
        "Secured",
        "address = \"pbx.example.com\"\nport = 5061\n",
    ))
    .unwrap();
    assert_eq!(c.peers[0].transport, None);
    assert_eq!(c.peer_transport(&c.peers[0]), TransportKind::Tls);
    assert_eq!(
        c.policy().peer("pbx").unwrap().transport,
        TransportKind::Tls
    );
    let c = parse(&with_peer(
        "Unsecured",
        "address = \"10.0.0.1\"\nport = 5060\n",
    ))
    .unwrap();
    assert_eq!(
        c.policy().peer("pbx").unwrap().transport,
        TransportKind::Tcp
    );
    let c = parse(&with_peer(
        "Unsecured",
        "address = \"10.0.0.1\"\nport = 5060\ntransport = \"UDP\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.policy().peer("pbx").unwrap().transport,
        TransportKind::Udp
    );
    assert_eq!(
        c.peers[0].address,
        PeerAddress::Ip("10.0.0.1".parse().unwrap())
    );
}

#[test]
fn r_peer_3_is_enforced_at_load_with_the_key() {
    let e = error(&with_peer(
        "Secured",
        "address = \"10.0.0.1\"\nport = 5061\n",
    ));
    assert_eq!(e.key, "peer[pbx].address");
    assert!(e.problem.contains("must be configured with an FQDN"), "{e}");
    let e = error(&with_peer(
        "SIPSecured",
        "address = \"pbx.example.com\"\nport = 5060\n",
    ));
    assert_eq!(e.key, "peer[pbx].port");
    assert!(
        e.problem.contains("must use SIP-TLS port 5061, not 5060"),
        "{e}"
    );
    let e = error(&with_peer(
        "Secured",
        "address = \"pbx.example.com\"\nport = 5061\ntransport = \"tcp\"\n",
    ));
    assert_eq!(e.key, "peer[pbx].transport");
    assert!(e.problem.contains("does not match Secured"), "{e}");
    let e = error(&with_peer(
        "Unsecured",
        "address = \"pbx.example.com\"\nport = 5061\ntransport = \"tls\"\n",
    ));
    assert_eq!(e.key, "peer[pbx].transport");
    // Labs add their TLS ports.
    let text = with_peer("Secured", "address = \"pbx.example.com\"\nport = 15061\n").replace(
        "[[dial_plan]]",
        "[tls]\ntls_peer_ports = [5061, 15061]\n[[dial_plan]]",
    );
    assert_eq!(parse(&text).unwrap().peers[0].port, 15061);
}

#[test]
fn each_peer_needs_the_listener_of_its_transport() {
    let text = with_peer("Secured", "address = \"pbx.example.com\"\nport = 5061\n")
        .replace("tls = \"127.0.0.1:5061\"\n", "");
    let e = error(&text);
    assert_eq!(e.key, "listen.tls");
    assert!(
        e.problem
            .contains("peer \"pbx\" in Secured dial plan \"plan\" uses tls"),
        "{e}"
    );
    let text = with_peer(
        "Unsecured",
        "address = \"10.0.0.1\"\nport = 5060\ntransport = \"udp\"\n",
    )
    .replace("udp = \"127.0.0.1:5060\"\n", "");
    assert_eq!(error(&text).key, "listen.udp");
}

#[test]
fn addresses_and_listeners() {
    let e = error("[listen]\nudp = \"127.0.0.1\"\n");
    assert_eq!(e.key, "listen.udp");
    assert!(e.problem.contains("add the port"), "{e}");
    let e = error("[listen]\ntcp = \"localhost:5060\"\n");
    assert!(e.problem.contains("host names are not accepted"), "{e}");
    let e = error("[gateway]\nfqdn = \"x\"\n");
    assert_eq!(e.key, "listen");
    let e = error("[listen]\ntcp = \"0.0.0.0:5060\"\n");
    assert_eq!(e.key, "listen.advertise");
    assert!(e.problem.contains("listen.tcp binds 0.0.0.0:5060"), "{e}");
    let c =
        parse("[listen]\ntcp = \"0.0.0.0:5060\"\ntls = \"[::]:5061\"\nadvertise = \"192.0.2.1\"\n")
            .unwrap();
    assert_eq!(c.media.address, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(
        c.listen.advertised(),
        [
            (TransportKind::Tcp, "192.0.2.1:5060".parse().unwrap()),
            (TransportKind::Tls, "192.0.2.1:5061".parse().unwrap())
        ]
    );
    let e = error("[listen]\ntcp = \"0.0.0.0:5060\"\nadvertise = \"0.0.0.0\"\n");
    assert_eq!(e.key, "listen.advertise");
    let e = error(
        "[listen]\ntcp = \"127.0.0.1:5060\"\ntls = \"0.0.0.0:5060\"\nadvertise = \"192.0.2.1\"\n",
    );
    assert_eq!(e.key, "listen.tls");
    let e = error(&format!("{LISTEN}[media]\naddress = \"0.0.0.0\"\n"));
    assert_eq!(e.key, "media.address");
    assert!(e.problem.contains("not a concrete address"), "{e}");
    let e = error(&format!("{LISTEN}[admin]\nhttp = \"9090\"\n"));
    assert_eq!(e.key, "admin.http");
    let e = error(&format!("{LISTEN}[gateway]\nfqdn = \"192.0.2.1\"\n"));
    assert_eq!(e.key, "gateway.fqdn");
    let e = error(&format!(
        "{LISTEN}[gateway]\naddresses = [\"127.0.0.1\", \"pbx\"]\n"
    ));
    assert_eq!(e.key, "gateway.addresses[1]");
}

#[test]
fn media_port_range() {
    let range = |min: u32, max: u32| {
        parse(&format!(
            "{LISTEN}[media]\nport_min = {min}\nport_max = {max}\n"
        ))
    };
    assert!(range(1024, 1027).is_ok());
    for (min, max, key) in [
        (1000, 1999, "media.port_min"),
        (30001, 39999, "media.port_min"),
        (30000, 30000, "media.port_max"),
        (30000, 29999, "media.port_max"),
        (30000, 39998, "media.port_max"),
        (30000, 30001, "media.port_max"),
        (5000, 5999, "media.port_min"), // holds the UDP listener's 5060
    ] {
        let e = range(min, max).unwrap_err();
        assert_eq!(e.key, key, "{min}-{max}: {e}");
    }
}

#[test]
fn limits_are_sane() {
    for (text, key) in [
        ("max_calls = 0", "limits.max_calls"),
        ("max_connections = 0", "limits.max_connections"),
        (
            "max_connections = 10\nmax_connections_per_ip = 11",
            "limits.max_connections_per_ip",
        ),
        (
            "tls_handshake_timeout_ms = 0",
            "limits.tls_handshake_timeout_ms",
        ),
        ("max_calls = -1", "limits.max_calls"),
        ("admission_timeout_ms = 0", "limits.admission_timeout_ms"),
        (
            "partial_message_timeout_ms = 0",
            "limits.partial_message_timeout_ms",
        ),
        (
            "max_stranger_connections = 0",
            "limits.max_stranger_connections",
        ),
        (
            "max_stranger_connections = 4\nmax_stranger_connections_per_ip = 5",
            "limits.max_stranger_connections_per_ip",
        ),
        ("min_se_secs = 1", "limits.min_se_secs"),
        (
            "session_expires_secs = 60\nmin_se_secs = 90",
            "limits.session_expires_secs",
        ),
        ("plain_peers_only = \"yes\"", "limits.plain_peers_only"),
    ] {
        assert_eq!(
            error(&format!("{LISTEN}[limits]\n{text}\n")).key,
            key,
            "{text}"
        );
    }
    // A small connection cap lowers the per-IP default with it.
    let c = parse(&format!("{LISTEN}[limits]\nmax_connections = 10\n")).unwrap();
    assert_eq!(c.limits.max_connections_per_ip, 10);
    // So does a small stranger quota; 0 turns session timers off, whatever min_se_secs says.
    let c = parse(&format!(
        "{LISTEN}[limits]\nmax_stranger_connections = 3\nsession_expires_secs = 0\n"
    ))
    .unwrap();
    assert_eq!(c.limits.max_stranger_connections_per_ip, 3);
    assert_eq!(c.limits.session_expires_secs, 0);
    let c = parse(&format!("{LISTEN}[limits]\nsession_expires_secs = 30\n")).unwrap();
    assert_eq!(
        c.limits.min_se_secs, 30,
        "the Min-SE default follows a short interval"
    );
}

#[test]
fn names_routes_and_hosts() {
    let base = format!("{LISTEN}[[dial_plan]]\nname = \"d\"\n");
    let e = error(&format!("{base}[[dial_plan]]\nname = \"d\"\n"));
    assert_eq!(e.key, "dial_plan[1].name");
    assert!(e.problem.contains("duplicate dial plan name"), "{e}");
    let e = error(&format!("{LISTEN}[[dial_plan]]\nname = \"my plan\"\n"));
    assert_eq!(e.key, "dial_plan[0].name");
    let e = error(&format!(
        "{base}[[peer]]\nname = \"Echo\"\naddress = \"10.0.0.1\"\nport = 5060\ndial_plan = \"d\"\n"
    ));
    assert_eq!(e.key, "peer[Echo].name");
    assert!(e.problem.contains("reserved"), "{e}");
    let e = error(&format!(
        "{base}[[peer]]\nname = \"p\"\naddress = \"10.0.0.1\"\nport = 5060\ndial_plan = \"nope\"\n"
    ));
    assert_eq!(e.key, "peer[p].dial_plan");
    assert!(
        e.problem
            .contains("unknown dial plan \"nope\" (dial plans: d)"),
        "{e}"
    );
    let e = error(&format!(
        "{base}[[peer]]\nname = \"p\"\naddress = \"pbx.example.com:5060\"\nport = 5060\ndial_plan = \"d\"\n"
    ));
    assert_eq!(e.key, "peer[p].address");
    assert!(e.problem.contains("includes a port"), "{e}");
    let e = error(&format!(
        "{base}[[peer]]\nname = \"p\"\naddress = \"10.0.0.1\"\nport = 0\ndial_plan = \"d\"\n"
    ));
    assert_eq!(e.key, "peer[p].port");
    let e = error(&format!(
        "{base}routes = [{{ prefix = \"1\", target = \"echo\" }}, {{ prefix = \"1\", target = \"echo\" }}]\n"
    ));
    assert_eq!(e.key, "dial_plan[d].routes[1].prefix");
    let e = error(&format!(
        "{base}routes = [{{ prefix = \"\", target = \"gone\" }}]\n"
    ));
    assert_eq!(e.key, "dial_plan[d].routes[0].target");
    assert!(e.problem.contains("unknown peer \"gone\""), "{e}");

    let c = parse(&format!(
        "{LISTEN}[hosts]\n\"PBX.Example.com.\" = \"192.0.2.5\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.hosts.get("pbx.example.com"),
        Some(&"192.0.2.5".parse().unwrap())
    );
    let e = error(&format!(
        "{LISTEN}[hosts]\n\"pbx.example.com\" = \"192.0.2.5\"\n\"PBX.example.com\" = \"192.0.2.6\"\n"
    ));
    assert!(e.key.starts_with("hosts.\""), "{e}");
    assert!(e.problem.contains("listed twice"), "{e}");
    let e = error(&format!("{LISTEN}[hosts]\n\"pbx.example.com\" = \"pbx\"\n"));
    assert_eq!(e.key, "hosts.\"pbx.example.com\"");
}

#[test]
fn configs_compare_by_value() {
    let a = Config::embedded_default();
    let b = Config::embedded_default();
    assert_eq!(a, b);
    let c = Config::parse(Config::DEFAULT_TOML, Path::new("mediagate.toml")).unwrap();
    assert_ne!(a, c, "the source differs");
    let mut d = a.clone();
    d.limits.max_calls += 1;
    assert_ne!(a, d);
}

#[test]
fn io_errors_are_their_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.key.is_empty());
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
}

#[test]
fn media_timeouts_and_their_old_name() {
    let c = parse(&format!(
        "{LISTEN}[media]\ntimeout_secs = 5\nhold_timeout_secs = 90\n"
    ))
    .unwrap();
    assert_eq!((c.media.timeout_secs, c.media.hold_timeout_secs), (5, 90));
    // `idle_timeout_secs` (before calls were ended on it) still reads as timeout_secs.
    let c = parse(&format!("{LISTEN}[media]\nidle_timeout_secs = 7\n")).unwrap();
    assert_eq!((c.media.timeout_secs, c.media.hold_timeout_secs), (7, 3600));
    // A timeout above the hold default raises the hold default with it.
    let c = parse(&format!("{LISTEN}[media]\ntimeout_secs = 7200\n")).unwrap();
    assert_eq!(c.media.hold_timeout_secs, 7200);
    for (text, key) in [
        ("timeout_secs = 0", "media.timeout_secs"),
        ("timeout_secs = 100000", "media.timeout_secs"),
        (
            "timeout_secs = 60\nhold_timeout_secs = 30",
            "media.hold_timeout_secs",
        ),
    ] {
        let e = error(&format!("{LISTEN}[media]\n{text}\n"));
        assert_eq!(e.key, key, "{text}: {e}");
    }
}

#[test]
fn peer_media_source_and_latching() {
    let plan = "[[dial_plan]]\nname = \"plain\"\nvoip_security = \"Unsecured\"\n";
    let peer = |extra: &str| {
        format!(
            "{LISTEN}{plan}[[peer]]\nname = \"pbx\"\naddress = \"192.0.2.7\"\nport = 5060\ndial_plan = \"plain\"\n{extra}"
        )
    };
    let c = parse(&peer("")).unwrap();
    assert_eq!(c.peers[0].media_source, MediaSource::Sdp);
    assert_eq!(c.peers[0].media_latching, MediaLatching::Strict);
    let c = parse(&peer(
        "media_source = \"peer-address\"\nmedia_latching = \"follow\"\n",
    ))
    .unwrap();
    assert_eq!(c.peers[0].media_source, MediaSource::PeerAddress);
    assert_eq!(c.peers[0].media_latching, MediaLatching::Follow);
    let p = c.policy().peer("pbx").cloned().unwrap();
    assert_eq!(
        (p.media_source, p.media_latching),
        (MediaSource::PeerAddress, MediaLatching::Follow)
    );
    let e = error(&peer("media_source = \"anywhere\"\n"));
    assert_eq!(e.key, "peer[pbx].media_source", "{e}");
    assert!(e.problem.contains("peer-address"), "{e}");
    let e = error(&peer("media_latching = \"off\"\n"));
    assert_eq!(e.key, "peer[pbx].media_latching", "{e}");
}
