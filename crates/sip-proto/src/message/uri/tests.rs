use super::*;

#[test]
fn sip_sips_tel_ipv6_and_headers() {
    let u = Uri::parse(
        "sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=hi&Priority=urgent",
    )
    .unwrap();
    assert_eq!(u.scheme, Scheme::Sips);
    assert_eq!(
        (u.user.as_deref(), u.password.as_deref()),
        (Some("alice"), Some("secret"))
    );
    assert_eq!((u.host.as_str(), u.port), ("[2001:db8::1]", Some(5061)));
    assert_eq!(u.param("transport"), Some(Some("tls")));
    assert!(u.is_loose_route());
    assert_eq!(u.headers.len(), 2);
    assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);

    let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
    assert_eq!(
        (t.scheme.clone(), t.host.as_str()),
        (Scheme::Tel, "+1-201-555-0123")
    );
    assert_eq!(t.param("phone-context"), Some(Some("example.com")));
    assert_eq!(Uri::parse(&t.to_string()).unwrap(), t);

    // Underscores are not in RFC 3261's hostname grammar, but real PBX hostnames have them.
    assert_eq!(
        Uri::parse("sip:pbx_01.example.com").unwrap().host,
        "pbx_01.example.com"
    );
    let h = Uri::parse("SIP:Gw.Example.COM").unwrap();
    assert_eq!((h.scheme, h.user, h.port), (Scheme::Sip, None, None));
}

#[test]
fn invalid_uris() {
    for bad in [
        "",
        "sip:",
        ":x",
        "1sip:a",
        "sip:a b@h",
        "sip:@h",
        "sip:h:99999",
        "sip:h:",
        "sip:[::1",
        "sip:h;=v",
        "sip:h?x",
        "<sip:h>",
        "sip:h/h",
        "tel:",
    ] {
        assert_eq!(Uri::parse(bad), Err(InvalidUri), "{bad:?}");
    }
}

#[test]
fn ip_hosts_bracket_ipv6_and_parse_back() {
    let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(ip_host(v4), "192.0.2.1");
    assert_eq!(ip_host(v6), "[2001:db8::1]");
    for ip in [v4, v6] {
        let u = Uri::parse(&format!("sip:alice@{}:5061", ip_host(ip))).unwrap();
        assert_eq!(u.host, ip_host(ip));
    }
}
