//! Property tests: parse(serialize(x)) == x for generated messages, and parse + framing never
//! panic on arbitrary or mutated input (R-SIP-4).

use mediagate_sip_proto::framing::{Check, FramingConfig, check};
use mediagate_sip_proto::message::{
    CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Request, Response,
    RetryAfter, StatusCode, Uri, Via, ViaTransport, parse,
};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,8}"
}
fn word() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}"
}
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,6}){0,2}",
        "192\\.0\\.2\\.[0-9]{1,3}",
        Just("[2001:db8::1]".to_owned())
    ]
}
fn params() -> impl Strategy<Value = Vec<Param>> {
    prop::collection::vec(
        (word(), prop::option::of(word())).prop_map(|(n, v)| Param { name: n, value: v }),
        0..3,
    )
}
fn uri() -> impl Strategy<Value = Uri> {
    (
        prop::option::of(word()),
        host(),
        prop::option::of(1u16..),
        params(),
    )
        .prop_map(|(user, host, port, params)| {
            let mut u = Uri::sip(user.as_deref(), &host, port);
            u.params = params;
            u
        })
}
fn name_addr() -> impl Strategy<Value = NameAddr> {
    let display = prop::option::of(prop_oneof!["[A-Za-z]{1,8}", "\"[A-Za-z ,;<>]{0,10}\""]);
    (display, uri(), params()).prop_map(|(display_name, uri, params)| NameAddr {
        display_name,
        uri,
        params,
    })
}
fn method() -> impl Strategy<Value = Method> {
    token().prop_map(|t| Method::from_token(&t).expect("token"))
}
fn via() -> impl Strategy<Value = Via> {
    let transport = prop_oneof![
        Just(ViaTransport::Udp),
        Just(ViaTransport::Tcp),
        Just(ViaTransport::Tls)
    ];
    (
        transport,
        host(),
        prop::option::of(1u16..),
        word(),
        params(),
    )
        .prop_map(|(t, h, p, b, mut ps)| {
            let mut v = Via::new(t, h, p, &format!("z9hG4bK{b}"));
            v.params.append(&mut ps);
            v
        })
}
fn optional_headers() -> impl Strategy<Value = Vec<Header>> {
    let h = prop_oneof![
        name_addr().prop_map(|a| Header::Contact(Contact::Addr(a))),
        any::<u8>().prop_map(Header::MaxForwards),
        Just(Header::ContentType("application/sdp".into())),
        name_addr().prop_map(Header::Route),
        name_addr().prop_map(Header::RecordRoute),
        (0u32..100_000, prop::option::of("[a-z ]{0,8}")).prop_map(|(s, c)| Header::RetryAfter(
            RetryAfter {
                seconds: s,
                comment: c,
                params: vec![]
            }
        )),
        (
            "X-[A-Za-z]{1,8}",
            "[a-zA-Z0-9;=,]([a-zA-Z0-9 ;=,]{0,16}[a-zA-Z0-9;=,])?"
        )
            .prop_map(|(name, value)| Header::Other { name, value }),
    ];
    prop::collection::vec(h, 0..5)
}

fn headers(m: Method, body_len: usize) -> impl Strategy<Value = Headers> {
    (
        prop::collection::vec(via(), 1..3),
        name_addr(),
        name_addr(),
        word(),
        0u32..(1 << 31),
        optional_headers(),
    )
        .prop_map(move |(vias, from, to, call_id, seq, extra)| {
            let mut h = Headers::default();
            vias.into_iter().for_each(|v| h.push(Header::Via(v)));
            h.push(Header::From(from));
            h.push(Header::To(to));
            h.push(Header::CallId(call_id));
            h.push(Header::CSeq(CSeq {
                seq,
                method: m.clone(),
            }));
            extra.into_iter().for_each(|x| h.push(x));
            h.push(Header::ContentLength(body_len));
            h
        })
}

fn message() -> impl Strategy<Value = Message> {
    let body = prop::collection::vec(any::<u8>(), 0..64);
    let req = (method(), uri(), body.clone()).prop_flat_map(|(m, u, b)| {
        headers(m.clone(), b.len()).prop_map(move |mut h| {
            // A request carries Max-Forwards (RFC 3261 §8.1.1; refused without it).
            if h.max_forwards().is_none() {
                let at = h.0.len() - 1;
                h.0.insert(at, Header::MaxForwards(70));
            }
            Message::Request(Request {
                method: m.clone(),
                uri: u.clone(),
                headers: h,
                body: b.clone(),
            })
        })
    });
    let resp =
        (100u16..700, "[A-Za-z ]{0,12}", body, method()).prop_flat_map(|(c, reason, b, m)| {
            headers(m, b.len()).prop_map(move |h| {
                Message::Response(Response {
                    status: StatusCode::new(c).expect("100..700"),
                    reason: reason.clone(),
                    headers: h,
                    body: b.clone(),
                })
            })
        });
    prop_oneof![req, resp]
}

fn frame_all(data: &[u8]) {
    let cfg = FramingConfig {
        max_header_bytes: 1024,
        max_body_bytes: 1024,
    };
    let mut buf = data;
    loop {
        match check(buf, &cfg) {
            Check::Complete(len) => {
                assert!(len > 0 && len <= buf.len());
                let _ = parse(&buf[..len]);
                buf = &buf[len..];
            }
            Check::KeepAlive { len, .. } => buf = &buf[len..],
            Check::Incomplete | Check::Error(_) => break,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_serialize_roundtrip(m in message()) {
        let bytes = m.to_bytes();
        let parsed = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(&parsed, &m);
        // And framing cuts exactly one message from two back to back.
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        prop_assert_eq!(check(&two, &FramingConfig::default()), Check::Complete(bytes.len()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&data);
        frame_all(&data);
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = m.to_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(p) = parse(&bytes) {
            // Whatever parses must re-serialize to something that parses, and serialization
            // is then a fixed point (it always writes Content-Length, so the first pass may
            // add one).
            let once = p.to_bytes();
            let again = parse(&once).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(again.to_bytes(), once);
        }
        frame_all(&bytes);
    }
}
