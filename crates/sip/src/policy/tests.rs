use super::*;
use mediagate_pki::IdentityOptions;
use mediagate_pki::testpki::TestPki;

pub(crate) fn plan(name: &str, security: VoipSecurity, routes: &[(&str, Target)]) -> DialPlan {
    DialPlan {
        name: name.into(),
        security,
        routes: routes
            .iter()
            .map(|(p, t)| Route {
                prefix: (*p).into(),
                target: t.clone(),
            })
            .collect(),
    }
}

pub(crate) fn peer(name: &str, addr: &str, port: u16, t: TransportKind, plan: &str) -> Peer {
    Peer {
        name: name.into(),
        address: PeerAddress::parse(addr),
        port,
        transport: t,
        transport_fixed: false,
        dial_plan: plan.into(),
        media_source: Default::default(),
        media_latching: Default::default(),
    }
}

fn sample() -> Policy {
    Policy::new(
        vec![
            plan("plain", VoipSecurity::Unsecured, &[("", Target::Echo)]),
            plan(
                "secure",
                VoipSecurity::Secured,
                &[("9", Target::Peer("pbx".into())), ("", Target::Echo)],
            ),
        ],
        vec![
            peer("gw", "192.0.2.1", 5060, TransportKind::Udp, "plain"),
            peer("pbx", "pbx.test", 5061, TransportKind::Tls, "secure"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap()
    .with_resolved("pbx", vec!["192.0.2.2".parse().unwrap()])
}

fn identity(pki: &TestPki) -> PeerIdentity {
    PeerIdentity::from_verified_chain(Some(&pki.client.chain()), IdentityOptions::default())
        .unwrap()
}

#[test]
fn r_peer_3_tls_peer_with_ip_address_is_rejected() {
    let err = Policy::new(
        vec![plan("s", VoipSecurity::SipSecured, &[])],
        vec![peer("p", "192.0.2.9", 5061, TransportKind::Tls, "s")],
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PolicyError::TlsPeerNeedsFqdn { .. }));
    assert!(
        err.to_string().contains("must be configured with an FQDN"),
        "{err}"
    );
}

#[test]
fn r_peer_3_tls_peer_on_port_5060_is_rejected() {
    let err = Policy::new(
        vec![plan("s", VoipSecurity::Secured, &[])],
        vec![peer("p", "pbx.example.com", 5060, TransportKind::Tls, "s")],
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer \"p\" is in Secured dial plan \"s\" and must use SIP-TLS port 5061, not 5060"
    );
}

#[test]
fn config_consistency_errors_name_the_item() {
    let e = Policy::new(
        vec![plan("s", VoipSecurity::Secured, &[])],
        vec![peer("p", "pbx.example.com", 5061, TransportKind::Tcp, "s")],
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::TransportMismatch { .. }), "{e}");
    let e = Policy::new(
        vec![plan(
            "u",
            VoipSecurity::Unsecured,
            &[("1", Target::Peer("nobody".into()))],
        )],
        vec![],
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown peer \"nobody\""), "{e}");
    let e = Policy::new(
        vec![],
        vec![peer("p", "192.0.2.1", 5060, TransportKind::Udp, "missing")],
        &PolicyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::UnknownDialPlan { .. }));
}

#[test]
fn r_peer_2_admission_by_source_ip_and_certificate() {
    let p = sample();
    let a = p
        .admit(TransportKind::Udp, "192.0.2.1:5060".parse().unwrap(), None)
        .unwrap();
    assert_eq!(a.peer.name, "gw");
    let e = p
        .admit(TransportKind::Udp, "192.0.2.99:5060".parse().unwrap(), None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "source 192.0.2.99:5060 is not a configured peer"
    );

    let pki = TestPki::generate(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
    );
    let id = identity(&pki);
    let a = p
        .admit(
            TransportKind::Tls,
            "10.0.0.1:40000".parse().unwrap(),
            Some(&id),
        )
        .unwrap();
    assert_eq!(a.peer.name, "pbx");
    assert_eq!(a.plan.security, VoipSecurity::Secured);
    let foreign =
        PeerIdentity::from_verified_chain(Some(&pki.foreign.chain()), IdentityOptions::default())
            .unwrap();
    let e = p
        .admit(
            TransportKind::Tls,
            "10.0.0.1:40000".parse().unwrap(),
            Some(&foreign),
        )
        .unwrap_err();
    assert!(e.to_string().contains("foreign.test"), "{e}");
}

#[test]
fn r_mode_2_secured_peer_over_tcp_is_refused_with_reason() {
    let p = sample();
    let e = p
        .admit(TransportKind::Tcp, "192.0.2.2:34567".parse().unwrap(), None)
        .unwrap_err();
    assert_eq!(e.to_string(), "peer pbx is Secured: tcp not allowed");
    // A plain peer over TLS (it has no certificate naming it) is refused too.
    let e = p
        .admit(TransportKind::Tls, "192.0.2.1:5061".parse().unwrap(), None)
        .unwrap_err();
    assert_eq!(e, Refusal::NoCertificate);
}

#[test]
fn routes_longest_prefix_wins() {
    let p = sample();
    let plan = p.dial_plan("secure").unwrap();
    assert_eq!(plan.route("9123"), Some(&Target::Peer("pbx".into())));
    assert_eq!(plan.route("123"), Some(&Target::Echo));
    let none = DialPlan {
        name: "x".into(),
        security: VoipSecurity::Unsecured,
        routes: vec![],
    };
    assert_eq!(none.route("1"), None);
}

#[test]
fn r_mode_4_snapshots_keep_calls_on_their_policy() {
    let h = PolicyHandle::new(sample());
    let in_call = h.load();
    let changed = Policy::new(
        vec![plan("plain", VoipSecurity::Unsecured, &[])],
        vec![],
        &PolicyOptions::default(),
    )
    .unwrap();
    h.store(changed);
    assert!(
        in_call.peer("gw").is_some(),
        "the call's snapshot is unchanged"
    );
    assert!(
        h.load().peer("gw").is_none(),
        "new calls see the new policy"
    );
}
