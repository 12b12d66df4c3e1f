//! Dialog creation, route sets, CSeq handling and in-dialog requests (RFC 3261 §12).

use super::*;
use crate::message::{Message, StatusCode, parse};

fn req(text: &str) -> Request {
    match parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    }
}

fn invite() -> Request {
    req("INVITE sip:bob@biloxi.example.com SIP/2.0\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\n\
         Max-Forwards: 70\n\
         To: Bob <sip:bob@biloxi.example.com>\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n\
         Call-ID: a84b4c76e66710\n\
         CSeq: 314159 INVITE\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\n\
         Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\n\
         Content-Length: 0\n\n")
}

fn ok_for(inv: &Request, code: u16, tag: &str) -> Response {
    let mut r = inv.response(StatusCode::new(code).unwrap());
    r.headers.to_mut().unwrap().set_tag(tag);
    for rr in inv.headers.record_routes() {
        r.headers.push(Header::RecordRoute(rr.clone()));
    }
    r.headers
        .push(Header::Contact(crate::message::Contact::Addr(
            NameAddr::new(Uri::sip(Some("bob"), "192.0.2.4", None)),
        )));
    r
}

fn via() -> Via {
    Via::new(
        crate::message::ViaTransport::Udp,
        "pc33.atlanta.example.com",
        None,
        "z9hG4bKnew",
    )
}

#[test]
fn uac_early_then_confirmed_and_bye() {
    let inv = invite();
    let mut d = Dialog::new_uac(&inv, &ok_for(&inv, 180, "a6c85cf")).unwrap();
    assert_eq!(d.state, DialogState::Early);
    assert_eq!(d.id.remote_tag, "a6c85cf");
    assert_eq!(d.id.local_tag, "1928301774");
    // UAC route set is the reversed Record-Route.
    let hosts: Vec<_> = d.route_set.iter().map(|r| r.uri.host.as_str()).collect();
    assert_eq!(hosts, ["p2.example.com", "p1.example.com"]);
    d.on_response(&ok_for(&inv, 200, "a6c85cf"));
    assert_eq!(d.state, DialogState::Confirmed);
    let ack = d.create_ack(314159, via());
    assert_eq!(
        ack.headers.cseq().unwrap(),
        &CSeq {
            seq: 314159,
            method: Method::Ack
        }
    );
    assert_eq!(
        ack.uri.host, "192.0.2.4",
        "loose routing: Request-URI is the remote target"
    );
    assert_eq!(ack.headers.routes().count(), 2);
    let bye = d.create_request(Method::Bye, via());
    assert_eq!(bye.headers.cseq().unwrap().seq, 314160);
    assert_eq!(bye.headers.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(bye.headers.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(d.state, DialogState::Terminated);
    // Round-trips through the wire format.
    assert!(parse(&bye.to_bytes()).is_ok());
}

#[test]
fn uac_early_dialog_fails_on_error() {
    let inv = invite();
    let mut d = Dialog::new_uac(&inv, &ok_for(&inv, 183, "x")).unwrap();
    d.on_response(&ok_for(&inv, 486, "x"));
    assert_eq!(d.state, DialogState::Terminated);
    assert_eq!(
        Dialog::new_uac(&inv, &ok_for(&inv, 486, "x")).unwrap_err(),
        DialogError::NoDialog
    );
    let mut no_tag = inv.response(StatusCode::RINGING);
    no_tag
        .headers
        .push(Header::Contact(crate::message::Contact::Addr(
            NameAddr::new(Uri::sip(None, "h", None)),
        )));
    assert_eq!(
        Dialog::new_uac(&inv, &no_tag).unwrap_err(),
        DialogError::MissingTag
    );
}

#[test]
fn uas_dialog_cseq_order_reinvite_target_refresh_and_bye() {
    let inv = invite();
    let mut d = Dialog::new_uas(&inv, &ok_for(&inv, 200, "uas1")).unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.remote_target.host, "pc33.atlanta.example.com");
    let hosts: Vec<_> = d.route_set.iter().map(|r| r.uri.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["p1.example.com", "p2.example.com"],
        "UAS keeps Record-Route order"
    );
    let mut reinvite = inv.clone();
    reinvite.headers.to_mut().unwrap().set_tag("uas1");
    reinvite
        .headers
        .retain(|h| !matches!(h, Header::CSeq(_) | Header::Contact(_)));
    reinvite.headers.push(Header::CSeq(CSeq {
        seq: 314160,
        method: Method::Invite,
    }));
    reinvite
        .headers
        .push(Header::Contact(crate::message::Contact::Addr(
            NameAddr::new(Uri::sip(Some("alice"), "198.51.100.7", None)),
        )));
    d.on_request(&reinvite).unwrap();
    assert_eq!(d.remote_target.host, "198.51.100.7");
    assert_eq!(d.remote_seq, Some(314160));
    let mut old = reinvite.clone();
    old.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    old.headers.push(Header::CSeq(CSeq {
        seq: 5,
        method: Method::Invite,
    }));
    assert_eq!(d.on_request(&old), Err(DialogError::CSeqOutOfOrder));
    let mut bye = reinvite.clone();
    bye.method = Method::Bye;
    bye.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    bye.headers.push(Header::CSeq(CSeq {
        seq: 314161,
        method: Method::Bye,
    }));
    d.on_request(&bye).unwrap();
    assert_eq!(d.state, DialogState::Terminated);
    let mut stranger = bye.clone();
    stranger.headers.to_mut().unwrap().set_tag("other");
    assert_eq!(d.on_request(&stranger), Err(DialogError::Mismatch));
    // Our first request in the dialog starts our own CSeq space.
    let mut d2 = Dialog::new_uas(&inv, &ok_for(&inv, 200, "uas1")).unwrap();
    assert_eq!(
        d2.create_request(Method::Update, via())
            .headers
            .cseq()
            .unwrap()
            .seq,
        1
    );
}

#[test]
fn strict_route_puts_first_route_in_request_uri() {
    let inv = invite();
    let mut resp = ok_for(&inv, 200, "t");
    resp.headers
        .retain(|h| !matches!(h, Header::RecordRoute(_)));
    resp.headers
        .push(Header::RecordRoute(NameAddr::new(Uri::sip(
            None,
            "strict.example.com",
            None,
        ))));
    let mut d = Dialog::new_uac(&inv, &resp).unwrap();
    let bye = d.create_request(Method::Bye, via());
    assert_eq!(bye.uri.host, "strict.example.com");
    let routes: Vec<_> = bye.headers.routes().map(|r| r.uri.host.clone()).collect();
    assert_eq!(routes, ["192.0.2.4"], "remote target goes last in Route");
}
