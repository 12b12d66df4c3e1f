//! RFC 4475 torture messages (testdata/sip/): valid ones parse with the right key fields,
//! invalid ones fail with an error that maps to 400/505 (requests) or are dropped (responses).
//! Covers R-SIP-4 (malformed input never panics and gets 400 where a response can be formed).

use mediagate_sip_proto::message::{
    Contact, Header, Message, Method, ParseErrorKind, Scheme, StatusCode, parse,
};

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/sip/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn req(name: &str) -> mediagate_sip_proto::message::Request {
    match parse(&load(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected request, got {other:?}"),
    }
}

#[test]
fn wsinv() {
    let r = req("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.user.as_deref(), Some("vivekg"));
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    let h = &r.headers;
    assert_eq!(h.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(h.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(
        h.from().unwrap().display_name.as_deref(),
        Some(r#""J Rosenberg \\\"""#)
    );
    assert_eq!(h.max_forwards(), Some(68));
    assert_eq!(h.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(h.cseq().unwrap().seq, 9);
    assert_eq!(h.cseq().unwrap().method, Method::Invite);
    let vias: Vec<_> = h.vias().collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport.as_str(), "TCP");
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(h.other("s").next(), Some(""));
    assert_eq!(
        h.other("NewFangledHeader").next(),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        h.other("UnknownHeaderWithUnusualValue").next(),
        Some(";;,,;;,;")
    );
    assert_eq!(h.content_type(), Some("application/sdp"));
    let c = h.contact().unwrap();
    assert_eq!(c.display_name.as_deref(), Some(r#""Quoted string \"\"""#));
    assert_eq!(c.params.len(), 3);
    assert_eq!(h.routes().next().unwrap().uri.host, "services.example.com");
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth() {
    let r = req("intmeth");
    assert_eq!(
        r.method,
        Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.headers.top_via().unwrap().branch(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    assert_eq!(r.headers.from().unwrap().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        r.headers.from().unwrap().display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        r.headers.call_id(),
        Some("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(r.headers.max_forwards(), Some(255));
    assert_eq!(
        r.headers.other("extensionHeader-!.%*+_`'~").next(),
        Some("\u{feff}大停電")
    );
}

#[test]
fn escapes_are_kept() {
    let r = req("esc01");
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        r.headers.to().unwrap().uri.user.as_deref(),
        Some("%75se%72")
    );
    let c = r.headers.contact().unwrap();
    assert_eq!(c.uri.param("n%61me"), Some(Some("v%61lue%25%34%31")));
    assert_eq!(c.uri.param("%6C%72"), Some(None));
    let r = req("escnull");
    assert_eq!(r.headers.contacts().count(), 2);
    let r = req("esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.headers.contacts().count(), 2);
    assert_eq!(
        r.headers.other("C%6Fntact").next(),
        Some("<sip:alias2@host2.example.com>")
    );
}

#[test]
fn other_valid_messages() {
    let r = req("lwsdisp");
    assert_eq!(
        r.headers.from().unwrap().display_name.as_deref(),
        Some("caller")
    );
    let r = req("longreq");
    assert_eq!(r.headers.vias().count(), 34);
    assert_eq!(r.headers.to().unwrap().uri.port, Some(6000));
    assert_eq!(
        r.headers.vias().last().unwrap().received(),
        Some("192.0.2.5")
    );
    let r = req("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty(), "octets after Content-Length are ignored");
    let r = req("semiuri");
    assert_eq!(r.uri.user.as_deref(), Some("user;par=u%40example.net"));
    let r = req("transports");
    let t: Vec<_> = r
        .headers
        .vias()
        .map(|v| v.transport.as_str().to_owned())
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    let r = req("unkscm");
    assert_eq!(r.uri.scheme, Scheme::Other("nobodyKnowsThisScheme".into()));
    let r = req("unksm2");
    assert_eq!(
        r.headers.to().unwrap().uri.scheme,
        Scheme::Other("isbn".into())
    );
    let r = req("regescrt");
    assert_eq!(r.headers.contact().unwrap().uri.headers.len(), 1);
    assert_eq!(req("zeromf").headers.max_forwards(), Some(0));
    req("regaut01");
    req("sdp01");
    // badbranch is syntactically valid (RFC 4475 §3.3.8); the branch is just the cookie.
    assert_eq!(
        req("badbranch").headers.top_via().unwrap().branch(),
        Some("z9hG4bK")
    );
}

#[test]
fn valid_responses() {
    match parse(&load("noreason")).unwrap() {
        Message::Response(r) => {
            assert_eq!(r.status, StatusCode::TRYING);
            assert_eq!(r.reason, "");
        }
        m => panic!("{m:?}"),
    }
    match parse(&load("unreason")).unwrap() {
        Message::Response(r) => {
            assert_eq!(r.status, StatusCode::OK);
            assert!(r.reason.starts_with("= 2**3 * 5**2"));
            assert_eq!(r.body.len(), 154);
        }
        m => panic!("{m:?}"),
    }
}

/// Invalid requests: (file, expected status). Each must yield a parse error whose response can
/// be formed (the salvaged headers suffice), except where noted.
#[test]
fn invalid_requests_get_400_or_505() {
    let cases: &[(&str, u16, bool)] = &[
        ("badinv01", 400, true),
        ("clerr", 400, true),
        ("ncl", 400, true),
        ("scalar02", 400, true), // CSeq is the broken header: answered by the Via, without CSeq
        ("quotbal", 400, true),  // To is the broken header: answered by the Via, without To
        ("ltgtruri", 400, true),
        ("lwsruri", 400, true),
        ("lwsstart", 400, true),
        ("trws", 400, true),
        ("escruri", 400, true),
        ("regbadct", 400, true),
        ("badaspec", 400, true), // To is the broken header: left out
        ("baddn", 400, true),    // From and To are broken: left out
        ("badvers", 505, true),
        ("mismatch01", 400, true),
        ("mismatch02", 400, true),
        ("insuf", 400, true),   // no From/To/Call-ID: answered by the Via alone
        ("multi01", 400, true), // two Call-IDs, CSeqs, Tos, Froms
        ("mcl01", 400, true),   // two different Content-Lengths
    ];
    for &(name, status, answerable) in cases {
        let err = match parse(&load(name)) {
            Err(e) => e,
            Ok(m) => panic!("{name}: parsed but is invalid: {m:?}"),
        };
        assert_eq!(err.status(), StatusCode::new(status), "{name}: {err}");
        let resp = err.response();
        assert_eq!(resp.is_some(), answerable, "{name}: {err} {resp:?}");
        if let Some(resp) = resp {
            assert_eq!(resp.status.code(), status);
            assert!(
                resp.headers.top_via().is_some(),
                "{name}: routed by its Via"
            );
            // With every header readable, the 400 itself is a well-formed message.
            let h = &resp.headers;
            if h.call_id().is_some() && h.cseq().is_some() && h.from().is_some() && h.to().is_some()
            {
                assert!(
                    parse(&resp.to_bytes()).is_ok(),
                    "{name}: our 400 does not parse"
                );
            }
        }
    }
}

#[test]
fn invalid_responses_are_dropped() {
    for name in ["bigcode", "scalarlg"] {
        let err = parse(&load(name)).expect_err(name);
        assert_eq!(err.status(), None, "{name}");
        assert!(err.response().is_none());
    }
}

#[test]
fn specific_kinds() {
    assert_eq!(
        parse(&load("clerr")).unwrap_err().kind,
        ParseErrorKind::ContentLengthExceedsData
    );
    assert_eq!(
        parse(&load("mismatch01")).unwrap_err().kind,
        ParseErrorKind::CSeqMismatch
    );
    assert_eq!(
        parse(&load("badvers")).unwrap_err().kind,
        ParseErrorKind::Version
    );
}

#[test]
fn every_file_parses_without_panic_and_roundtrips_when_valid() {
    let dir = format!("{}/../../testdata/sip", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sip") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Ok(m) = parse(&data) {
            let again = parse(&m.to_bytes())
                .unwrap_or_else(|e| panic!("{path:?}: reserialized fails: {e}"));
            // Serialization adds Content-Length where it was missing (inv2543); from then on
            // it is a fixed point.
            assert_eq!(again.to_bytes(), m.to_bytes(), "{path:?}");
        }
        // Every prefix, too: no panics on truncation.
        for cut in (0..data.len()).step_by(7) {
            let _ = parse(&data[..cut]);
        }
    }
    let _ = Contact::Star;
    let _ = Header::MaxForwards(1);
}

#[test]
fn rfc2543_and_application_layer_messages_parse() {
    // inv2543: no branch, no From tag, no Max-Forwards, no Content-Length (body = rest).
    let r = req("inv2543");
    assert_eq!(r.headers.top_via().unwrap().branch(), None);
    assert_eq!(r.headers.from().unwrap().tag(), None);
    assert_eq!(r.headers.max_forwards(), None);
    assert_eq!(r.body.len(), 150);
    // cparam01: addr-spec form, so `unknownparam` is a header parameter...
    let c = req("cparam01");
    let a = c.headers.contact().unwrap();
    assert!(a.uri.params.is_empty());
    assert_eq!(a.params[0].name, "unknownparam");
    // ...cparam02: inside <>, it is a URI parameter.
    let c = req("cparam02");
    let a = c.headers.contact().unwrap();
    assert_eq!(a.uri.param("unknownparam"), Some(None));
    assert!(a.params.is_empty());
    // bext01: Require is kept for the TU (which answers 420).
    let r = req("bext01");
    assert_eq!(
        r.headers.other("Require").next(),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
}
