//! Sans-IO call flows: the B2BUA driven with fake time and hand-written peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_sip_proto::message::{Message, Request, Response, StatusCode, parse};
use mediagate_sip_proto::{Remote, TransportKind};

use super::*;
use crate::media::FakeMedia;
use crate::policy::tests::{peer, plan};
use crate::policy::{Policy, PolicyHandle, PolicyOptions, Target, VoipSecurity};

const A: &str = "192.0.2.1:5060";
const B: &str = "192.0.2.2:5060";

fn remote(s: &str) -> Remote {
    Remote {
        transport: TransportKind::Tcp,
        addr: s.parse().unwrap(),
    }
}

fn policy() -> Policy {
    Policy::new(
        vec![plan(
            "plain",
            VoipSecurity::Unsecured,
            &[("", Target::Peer("b".into())), ("7", Target::Echo)],
        )],
        vec![
            peer("a", "192.0.2.1", 5060, TransportKind::Tcp, "plain"),
            peer("b", "192.0.2.2", 5060, TransportKind::Tcp, "plain"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap()
}

struct H {
    b2b: B2bua,
    media: Arc<FakeMedia>,
    now: Instant,
}

fn offer_sdp(port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

fn invite(call_id: &str, branch: &str, sdp: &str) -> String {
    format!(
        "INVITE sip:100@gw SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK{branch}\r\n\
         From: <sip:a@192.0.2.1>;tag=atag\r\nTo: <sip:100@gw>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:a@192.0.2.1:5060;transport=tcp>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

impl H {
    fn new(max_calls: usize) -> H {
        let media = Arc::new(FakeMedia::new("203.0.113.1".parse().unwrap(), 30000, 100));
        let cfg = B2buaConfig::new(vec![(
            TransportKind::Tcp,
            "203.0.113.1:5060".parse().unwrap(),
        )])
        .max_calls(max_calls);
        let b2b = B2bua::new(cfg, PolicyHandle::new(policy()), media.clone());
        H {
            b2b,
            media,
            // A fixed origin: the core never reads the clock.
            now: crate::clock::now(),
        }
    }

    fn input(&mut self, from: &str, bytes: &str) -> Vec<(SocketAddr, Message)> {
        self.b2b
            .handle_input(self.now, remote(from), bytes.as_bytes());
        self.drain()
    }

    fn drain(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut v = Vec::new();
        while let Some(t) = self.b2b.poll_transmit() {
            v.push((t.remote.addr, parse(&t.bytes).unwrap()));
        }
        v
    }

    fn advance(&mut self, d: Duration) -> Vec<(SocketAddr, Message)> {
        self.now += d;
        self.b2b.handle_timeout(self.now);
        self.drain()
    }
}

fn to(addr: &str, out: &[(SocketAddr, Message)]) -> Vec<Message> {
    let a: SocketAddr = addr.parse().unwrap();
    out.iter()
        .filter(|(r, _)| *r == a)
        .map(|(_, m)| m.clone())
        .collect()
}

fn req(m: &Message) -> Option<&Request> {
    match m {
        Message::Request(r) => Some(r),
        _ => None,
    }
}

fn resp(m: &Message) -> Option<&Response> {
    match m {
        Message::Response(r) => Some(r),
        _ => None,
    }
}

fn find_req(out: &[Message], method: Method) -> Request {
    out.iter()
        .filter_map(req)
        .find(|r| r.method == method)
        .cloned()
        .unwrap_or_else(|| panic!("no {method} in {out:?}"))
}

fn find_resp(out: &[Message], status: StatusCode) -> Response {
    out.iter()
        .filter_map(resp)
        .find(|r| r.status == status)
        .cloned()
        .unwrap_or_else(|| panic!("no {status:?} in {out:?}"))
}

fn codes(out: &[Message]) -> Vec<u16> {
    out.iter()
        .filter_map(resp)
        .map(|r| r.status.code())
        .collect()
}

/// B's answer to a request the gateway sent it.
fn answer(r: &Request, status: StatusCode, sdp: Option<&str>) -> String {
    let mut x = r.response(status);
    if let Some(to) = x.headers.to_mut()
        && to.tag().is_none()
    {
        to.set_tag("btag");
    }
    let at = x.headers.0.len() - 1;
    x.headers.0.insert(
        at,
        Header::Contact(mediagate_sip_proto::message::Contact::Addr(NameAddr::new(
            Uri::sip(Some("b"), "192.0.2.2", Some(5060)),
        ))),
    );
    if let Some(s) = sdp {
        x.headers
            .0
            .insert(at, Header::ContentType("application/sdp".into()));
        x.body = s.as_bytes().to_vec();
    }
    String::from_utf8(x.to_bytes()).unwrap()
}

/// A request B sends in its dialog with the gateway (From = B's tag, To = our tag).
fn b_request(b_invite: &Request, method: &str, cseq: u32, body: &str) -> String {
    let call_id = b_invite.headers.call_id().unwrap();
    let our_tag = b_invite.headers.from().unwrap().tag().unwrap();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:mediagate@203.0.113.1:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.2:5060;branch=z9hG4bKb{method}{cseq}\r\n\
         From: <sip:100@192.0.2.2>;tag=btag\r\nTo: <sip:a@192.0.2.1>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:b@192.0.2.2:5060;transport=tcp>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request A sends in its dialog with the gateway.
fn a_request(ok: &Response, method: &str, cseq: u32, body: &str) -> String {
    let our_tag = ok.headers.to().unwrap().tag().unwrap();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:mediagate@203.0.113.1:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKa{method}{cseq}\r\n\
         From: <sip:a@192.0.2.1>;tag=atag\r\nTo: <sip:100@gw>;tag={our_tag}\r\nCall-ID: c1\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:a@192.0.2.1:5060;transport=tcp>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sets up a confirmed call; returns B's INVITE and A's 200.
fn established(h: &mut H) -> (Request, Response) {
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))),
    );
    let ack = find_req(&to(B, &out), Method::Ack);
    assert_eq!(ack.headers.cseq().unwrap().seq, 1);
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    (b_inv, ok)
}

#[test]
fn r_sip_2_call_setup_rewrites_sdp_and_uses_own_dialog_on_leg_b() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "a=rtcp-mux\r\n")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    assert_ne!(b_inv.headers.call_id(), Some("c1"), "own Call-ID on leg B");
    assert_ne!(b_inv.headers.from().unwrap().tag(), Some("atag"), "own tag");
    let body = String::from_utf8(b_inv.body.clone()).unwrap();
    assert!(body.contains("m=audio 30002 RTP/AVP 0 101"), "{body}");
    assert!(body.contains("c=IN IP4 203.0.113.1"), "{body}");
    assert!(body.contains("a=rtcp-mux"), "{body}");

    let out = h.input(B, &answer(&b_inv, StatusCode::RINGING, None));
    assert_eq!(codes(&to(A, &out)), vec![180]);
    let out = h.input(
        B,
        &answer(
            &b_inv,
            StatusCode::OK,
            Some(&offer_sdp(6000, "").replace("192.0.2.1", "192.0.2.2")),
        ),
    );
    assert!(
        to(B, &out)
            .iter()
            .filter_map(req)
            .any(|r| r.method == Method::Ack)
    );
    let ok = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(body.contains("m=audio 30000 RTP/AVP 0 101"), "{body}");
    assert!(body.contains("a=rtpmap:101 telephone-event/8000"), "{body}");
    let legs = h.media.legs();
    assert_eq!(legs[0].side, Side::A);
    assert_eq!(legs[0].remote_rtp, Some("192.0.2.1:4000".parse().unwrap()));
    assert!(legs[0].rtcp_mux);
    assert_eq!(legs[1].side, Side::B);
    assert_eq!(legs[1].remote_rtp, Some("192.0.2.2:6000".parse().unwrap()));
    assert_eq!(h.b2b.call_count(), 1);
}

#[test]
fn bye_from_caller_ends_both_legs() {
    let mut h = H::new(10);
    let (_b_inv, ok) = established(&mut h);
    let out = h.input(A, &a_request(&ok, "BYE", 2, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);
    let bye = find_req(&to(B, &out), Method::Bye);
    assert_eq!(bye.headers.cseq().unwrap().seq, 2);
    assert_eq!(h.b2b.call_count(), 0);
    assert_eq!(h.media.released().len(), 1);
}

#[test]
fn bye_from_callee_ends_both_legs() {
    let mut h = H::new(10);
    let (b_inv, _ok) = established(&mut h);
    let out = h.input(B, &b_request(&b_inv, "BYE", 1, ""));
    assert_eq!(codes(&to(B, &out)), vec![200]);
    let bye = find_req(&to(A, &out), Method::Bye);
    assert_eq!(bye.headers.call_id(), Some("c1"));
    assert_eq!(
        bye.headers.from().unwrap().tag(),
        _ok.headers.to().unwrap().tag()
    );
    assert_eq!(h.b2b.call_count(), 0);
}

fn a_cancel() -> String {
    "CANCEL sip:100@gw SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKi1\r\n\
     From: <sip:a@192.0.2.1>;tag=atag\r\nTo: <sip:100@gw>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\n\
     Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        .into()
}

#[test]
fn cancel_before_callee_provisional_waits_then_cancels() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let out = h.input(A, &a_cancel());
    let mut c = codes(&to(A, &out));
    c.sort_unstable();
    assert_eq!(c, vec![200, 487], "CANCEL answered, INVITE terminated");
    assert!(
        to(B, &out).is_empty(),
        "no CANCEL before a provisional (RFC 3261 §9.1)"
    );
    let out = h.input(B, &answer(&b_inv, StatusCode::RINGING, None));
    let cancel = find_req(&to(B, &out), Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().unwrap().branch(),
        b_inv.headers.top_via().unwrap().branch()
    );
    assert!(to(A, &out).is_empty(), "180 not relayed after CANCEL");
    h.input(B, &answer(&b_inv, StatusCode::REQUEST_TERMINATED, None));
    assert_eq!(h.b2b.call_count(), 0);
    assert!(h.media.live().is_empty());
}

#[test]
fn cancel_race_with_callee_200_sends_ack_and_bye() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    h.input(B, &answer(&b_inv, StatusCode::RINGING, None));
    let out = h.input(A, &a_cancel());
    find_req(&to(B, &out), Method::Cancel);
    // B's 200 crossed our CANCEL.
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))),
    );
    let b = to(B, &out);
    find_req(&b, Method::Ack);
    find_req(&b, Method::Bye);
    assert!(
        !codes(&to(A, &out)).contains(&200),
        "the caller keeps its 487, never a 200"
    );
    assert_eq!(h.b2b.call_count(), 0);
}

#[test]
fn callee_failure_is_relayed_and_call_released() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let out = h.input(B, &answer(&b_inv, StatusCode::BUSY_HERE, None));
    assert_eq!(codes(&to(A, &out)), vec![486]);
    assert!(h.media.live().is_empty());
}

#[test]
fn callee_timeout_gives_408() {
    let mut h = H::new(10);
    h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let out = h.advance(Duration::from_secs(33));
    assert!(codes(&to(A, &out)).contains(&408), "{out:?}");
    assert_eq!(h.b2b.call_count(), 0);
}

#[test]
fn reinvite_hold_is_relayed_with_sdp_rewritten_both_ways() {
    let mut h = H::new(10);
    let (_b_inv, ok) = established(&mut h);
    let out = h.input(
        A,
        &a_request(&ok, "INVITE", 2, &offer_sdp(4000, "a=sendonly\r\n")),
    );
    let re = find_req(&to(B, &out), Method::Invite);
    let body = String::from_utf8(re.body.clone()).unwrap();
    assert!(body.contains("a=sendonly"), "{body}");
    assert!(body.contains("m=audio 30002 RTP/AVP"), "{body}");
    assert_eq!(re.headers.cseq().unwrap().seq, 2);
    let out = h.input(
        B,
        &answer(
            &re,
            StatusCode::OK,
            Some(&offer_sdp(6000, "a=recvonly\r\n")),
        ),
    );
    let ack = find_req(&to(B, &out), Method::Ack);
    assert_eq!(ack.headers.cseq().unwrap().seq, 2);
    let ok2 = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(ok2.status, StatusCode::OK);
    let body = String::from_utf8(ok2.body).unwrap();
    assert!(
        body.contains("a=recvonly") && body.contains("m=audio 30000"),
        "{body}"
    );
    // A's ACK for the re-INVITE is absorbed.
    let out = h.input(A, &a_request(&ok, "ACK", 2, ""));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn update_without_sdp_and_prack_are_answered() {
    let mut h = H::new(10);
    let (_b_inv, ok) = established(&mut h);
    let out = h.input(A, &a_request(&ok, "UPDATE", 2, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);
    assert!(to(B, &out).is_empty());
    let out = h.input(A, &a_request(&ok, "PRACK", 3, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);
    let out = h.input(A, &a_request(&ok, "INFO", 4, ""));
    assert_eq!(codes(&to(A, &out)), vec![405]);
}

#[test]
fn r_sip_5_over_call_limit_gets_503_with_retry_after() {
    let mut h = H::new(1);
    h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let out = h.input(A, &invite("c2", "i2", &offer_sdp(4002, "")));
    let r = to(A, &out)
        .iter()
        .filter_map(resp)
        .find(|r| r.status.code() == 503)
        .cloned()
        .unwrap();
    assert_eq!(r.headers.retry_after().unwrap().seconds, 5);
    assert_eq!(h.b2b.call_count(), 1);
}

#[test]
fn r_sip_3_options_200_with_allow_and_unknown_method_501() {
    let mut h = H::new(1);
    let msg = |m: &str| {
        format!(
            "{m} sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK{m}\r\n\
             From: <sip:a@192.0.2.1>;tag=x\r\nTo: <sip:gw>\r\nCall-ID: o-{m}\r\nCSeq: 1 {m}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let out = h.input(A, &msg("OPTIONS"));
    let r = resp(&to(A, &out)[0]).cloned().unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.other("Allow").next(), Some(ALLOW));
    let out = h.input(A, &msg("FROBNICATE"));
    assert_eq!(codes(&to(A, &out)), vec![501]);
    // Unknown peers do not even get a health answer.
    let out = h.input("198.51.100.9:5060", &msg("OPTIONS"));
    assert_eq!(codes(&to("198.51.100.9:5060", &out)), vec![403]);
}

#[test]
fn echo_route_without_local_endpoint_gets_503() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", &offer_sdp(4000, "")).replace("sip:100@gw", "sip:700@gw");
    let out = h.input(A, &inv);
    assert_eq!(codes(&to(A, &out)), vec![503]);
    assert!(h.media.live().is_empty());
}

#[test]
fn r_mode_4_policy_change_applies_to_new_calls_only() {
    let mut h = H::new(10);
    let (_b_inv, ok) = established(&mut h);
    // Move peer a into a Secured plan: TCP from it is now refused for new calls...
    let secured = Policy::new(
        vec![
            plan(
                "plain",
                VoipSecurity::Unsecured,
                &[("", Target::Peer("b".into()))],
            ),
            plan("sec", VoipSecurity::Secured, &[]),
        ],
        vec![
            peer("a", "a.example.com", 5061, TransportKind::Tls, "sec"),
            peer("b", "192.0.2.2", 5060, TransportKind::Tcp, "plain"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap()
    .with_resolved("a", vec!["192.0.2.1".parse().unwrap()]);
    h.b2b.policy().store(secured);
    let out = h.input(A, &invite("c2", "i2", &offer_sdp(4002, "")));
    let r = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(r.status.code(), 403);
    assert!(r.reason.contains("Secured"), "{}", r.reason);
    // ...while the call in progress continues and ends normally.
    let out = h.input(A, &a_request(&ok, "BYE", 2, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);
    find_req(&to(B, &out), Method::Bye);
}

#[test]
fn secured_caller_plain_callee_keys_stay_on_leg_a() {
    let pol = Policy::new(
        vec![
            plan(
                "sec",
                VoipSecurity::Secured,
                &[("", Target::Peer("b".into()))],
            ),
            plan("plain", VoipSecurity::Unsecured, &[]),
        ],
        vec![
            peer("a", "a.example.com", 5061, TransportKind::Tls, "sec"),
            peer("b", "192.0.2.2", 5060, TransportKind::Tcp, "plain"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap();
    let media = Arc::new(FakeMedia::new("203.0.113.1".parse().unwrap(), 30000, 100));
    let mut b2b = B2bua::new(
        B2buaConfig::new(vec![(
            TransportKind::Tls,
            "203.0.113.1:5061".parse().unwrap(),
        )]),
        PolicyHandle::new(pol),
        media.clone(),
    );
    let pki = mediagate_pki::testpki::TestPki::generate(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let spec = mediagate_pki::testpki::LeafSpec::new("a.example.com", pki.now(), 30);
    let leaf = pki.issue(&spec);
    let id = mediagate_pki::PeerIdentity::from_verified_chain(
        Some(&leaf.chain()),
        mediagate_pki::IdentityOptions::default(),
    )
    .unwrap();
    let ra = Remote {
        transport: TransportKind::Tls,
        addr: "192.0.2.1:40000".parse().unwrap(),
    };
    b2b.connection_opened(ra, Some(id));
    let sdp = offer_sdp(
        4000,
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n",
    )
    .replace("RTP/AVP", "RTP/SAVP");
    let now = crate::clock::now();
    b2b.handle_input(now, ra, invite("c1", "i1", &sdp).as_bytes());
    let mut sent = Vec::new();
    while let Some(t) = b2b.poll_transmit() {
        sent.push(t);
    }
    let to_b = sent
        .iter()
        .find(|t| t.remote.addr == "192.0.2.2:5060".parse::<SocketAddr>().unwrap())
        .unwrap();
    let text = String::from_utf8_lossy(&to_b.bytes);
    assert!(
        text.contains("RTP/AVP") && !text.contains("crypto"),
        "{text}"
    );
    let a_leg = &media.legs()[0];
    assert_eq!(a_leg.side, Side::A);
    assert!(a_leg.keys.is_some(), "SRTP on the Secured leg");
}

#[test]
fn callee_connection_failure_gives_503_at_once() {
    let mut h = H::new(10);
    h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    h.b2b.connection_closed(h.now, remote(B));
    let out = h.drain();
    assert_eq!(codes(&to(A, &out)), vec![503]);
    assert_eq!(h.b2b.call_count(), 0);
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut h = H::new(10);
    let inv =
        invite("c1", "i1", &offer_sdp(4000, "")).replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.input(A, &inv);
    assert_eq!(codes(&to(A, &out)), vec![483]);
}

/// R-MODE-1, R-SIP-2: one B2BUA serves Unsecured, SIPSecured and Secured dial plans at once;
/// each outbound leg uses its own peer's transport and media security.
#[test]
fn r_mode_1_three_modes_in_one_gateway() {
    let pol = Policy::new(
        vec![
            plan(
                "u",
                VoipSecurity::Unsecured,
                &[("", Target::Peer("u2".into()))],
            ),
            plan(
                "ss",
                VoipSecurity::SipSecured,
                &[("", Target::Peer("ss2".into()))],
            ),
            plan(
                "s",
                VoipSecurity::Secured,
                &[("", Target::Peer("s2".into()))],
            ),
        ],
        vec![
            peer("u1", "192.0.2.1", 5060, TransportKind::Udp, "u"),
            peer("u2", "192.0.2.2", 5060, TransportKind::Udp, "u"),
            peer("ss1", "ss1.test", 5061, TransportKind::Tls, "ss"),
            peer("ss2", "ss2.test", 5061, TransportKind::Tls, "ss"),
            peer("s1", "s1.test", 5061, TransportKind::Tls, "s"),
            peer("s2", "s2.test", 5061, TransportKind::Tls, "s"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap()
    .with_resolved("ss2", vec!["192.0.2.12".parse().unwrap()])
    .with_resolved("s2", vec!["192.0.2.22".parse().unwrap()]);
    let media = Arc::new(FakeMedia::new("203.0.113.1".parse().unwrap(), 30000, 100));
    let mut b2b = B2bua::new(
        B2buaConfig::new(vec![
            (TransportKind::Udp, "203.0.113.1:5060".parse().unwrap()),
            (TransportKind::Tls, "203.0.113.1:5061".parse().unwrap()),
        ]),
        PolicyHandle::new(pol),
        media,
    );
    let pki = mediagate_pki::testpki::TestPki::generate(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let tls_from = |name: &str, port: u16, b2b: &mut B2bua| {
        let leaf = pki.issue(&mediagate_pki::testpki::LeafSpec::new(name, pki.now(), 30));
        let id = mediagate_pki::PeerIdentity::from_verified_chain(
            Some(&leaf.chain()),
            mediagate_pki::IdentityOptions::default(),
        )
        .unwrap();
        let r = Remote {
            transport: TransportKind::Tls,
            addr: SocketAddr::from(([192, 0, 2, 100], port)),
        };
        b2b.connection_opened(r, Some(id));
        r
    };
    let crypto =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
    let cases = [
        (
            Remote {
                transport: TransportKind::Udp,
                addr: "192.0.2.1:5060".parse().unwrap(),
            },
            offer_sdp(4000, ""),
            "192.0.2.2:5060",
            TransportKind::Udp,
            "RTP/AVP",
        ),
        (
            tls_from("ss1.test", 40001, &mut b2b),
            offer_sdp(4002, ""),
            "192.0.2.12:5061",
            TransportKind::Tls,
            "RTP/AVP",
        ),
        (
            tls_from("s1.test", 40002, &mut b2b),
            offer_sdp(4004, crypto).replace("RTP/AVP", "RTP/SAVP"),
            "192.0.2.22:5061",
            TransportKind::Tls,
            "RTP/SAVP",
        ),
    ];
    let now = crate::clock::now();
    for (i, (from, sdp, b_addr, b_transport, proto)) in cases.iter().enumerate() {
        let inv = invite(&format!("m{i}"), &format!("m{i}"), sdp);
        b2b.handle_input(now, *from, inv.as_bytes());
        let mut sent = Vec::new();
        while let Some(t) = b2b.poll_transmit() {
            sent.push(t);
        }
        let out = sent
            .iter()
            .find(|t| t.remote.addr == b_addr.parse::<SocketAddr>().unwrap())
            .unwrap_or_else(|| panic!("case {i}: nothing sent to {b_addr}: {sent:?}"));
        assert_eq!(out.remote.transport, *b_transport, "case {i}");
        let text = String::from_utf8_lossy(&out.bytes);
        assert!(
            text.contains(&format!(" {proto} 0 101")),
            "case {i}: {text}"
        );
        assert_eq!(
            text.contains("a=crypto:"),
            *proto == "RTP/SAVP",
            "case {i}: keys only on the Secured leg: {text}"
        );
    }
    assert_eq!(b2b.call_count(), 3);
}

#[test]
fn connections_are_only_opened_to_peer_addresses() {
    let h = H::new(1);
    assert!(h.b2b.may_connect(&remote(B)));
    assert!(h.b2b.may_connect(&remote(A)), "a is a peer too");
    assert!(
        !h.b2b.may_connect(&remote("192.0.2.1:40000")),
        "an inbound source port"
    );
    assert!(
        !h.b2b.may_connect(&remote("198.51.100.1:5060")),
        "a Via sent-by"
    );
    let tls = Remote {
        transport: TransportKind::Tls,
        addr: B.parse().unwrap(),
    };
    assert!(!h.b2b.may_connect(&tls), "peer b is TCP");
}

#[test]
fn required_extension_gets_420_with_unsupported() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", &offer_sdp(4000, ""))
        .replace("Max-Forwards: 70", "Max-Forwards: 70\r\nRequire: 100rel");
    let out = h.input(A, &inv);
    let r = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(r.status.code(), 420);
    assert_eq!(r.headers.other("Unsupported").next(), Some("100rel"));
    assert!(h.media.live().is_empty());
}

#[test]
fn delayed_offer_callee_offers_in_200_caller_answers_in_ack() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", "").replace("Content-Type: application/sdp\r\n", "");
    let out = h.input(A, &inv);
    let b_inv = find_req(&to(B, &out), Method::Invite);
    assert!(b_inv.body.is_empty(), "no offer towards B either");
    assert!(b_inv.headers.content_type().is_none());
    let b_offer = offer_sdp(6000, "").replace("192.0.2.1", "192.0.2.2");
    let out = h.input(B, &answer(&b_inv, StatusCode::OK, Some(&b_offer)));
    assert!(
        to(B, &out).is_empty(),
        "the ACK to B waits for the caller's answer"
    );
    let ok = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        body.contains("m=audio 30000 RTP/AVP"),
        "our offer to A: {body}"
    );
    // A answers in its ACK.
    let ack = a_request(&ok, "ACK", 1, &offer_sdp(4000, ""));
    let out = h.input(A, &ack);
    let b_ack = find_req(&to(B, &out), Method::Ack);
    let body = String::from_utf8(b_ack.body).unwrap();
    assert!(
        body.contains("m=audio 30002 RTP/AVP"),
        "our answer to B: {body}"
    );
    let legs = h.media.legs();
    assert!(
        legs.iter()
            .any(|l| l.side == Side::B && l.remote_rtp == Some("192.0.2.2:6000".parse().unwrap()))
    );
    assert!(
        legs.iter()
            .any(|l| l.side == Side::A && l.remote_rtp == Some("192.0.2.1:4000".parse().unwrap()))
    );
    // The call is up: BYE works.
    let out = h.input(A, &a_request(&ok, "BYE", 2, ""));
    find_req(&to(B, &out), Method::Bye);
}

#[test]
fn delayed_offer_without_answer_in_ack_ends_the_call() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", "").replace("Content-Type: application/sdp\r\n", "");
    let out = h.input(A, &inv);
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let b_offer = offer_sdp(6000, "").replace("192.0.2.1", "192.0.2.2");
    let out = h.input(B, &answer(&b_inv, StatusCode::OK, Some(&b_offer)));
    let ok = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    let out = h.input(A, &a_request(&ok, "ACK", 1, ""));
    let b = to(B, &out);
    find_req(&b, Method::Ack);
    find_req(&b, Method::Bye);
    find_req(&to(A, &out), Method::Bye);
    assert_eq!(h.b2b.call_count(), 0);
}

#[test]
fn reinvite_glare_gets_491() {
    let mut h = H::new(10);
    let (b_inv, ok) = established(&mut h);
    let out = h.input(
        A,
        &a_request(&ok, "INVITE", 2, &offer_sdp(4000, "a=sendonly\r\n")),
    );
    find_req(&to(B, &out), Method::Invite);
    // B re-INVITEs at the same time.
    let b_sdp = offer_sdp(6000, "a=sendonly\r\n").replace("192.0.2.1", "192.0.2.2");
    let out = h.input(B, &b_request(&b_inv, "INVITE", 2, &b_sdp));
    assert_eq!(codes(&to(B, &out)), vec![491]);
}

#[test]
fn early_media_183_sdp_is_rewritten_for_the_caller() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let b_sdp = offer_sdp(6000, "").replace("192.0.2.1", "192.0.2.2");
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::SESSION_PROGRESS, Some(&b_sdp)),
    );
    let r = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(r.status.code(), 183);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("m=audio 30000 RTP/AVP"), "{body}");
    assert!(!body.contains("192.0.2.2"), "{body}");
}

/// R-MEDIA-6 through the B2BUA: a Secured caller's re-INVITE with an unchanged key keeps the
/// keys on both legs; a changed key gives the callee leg fresh keys too.
#[test]
fn secured_reinvite_same_key_keeps_new_key_renews_both_legs() {
    let pol = Policy::new(
        vec![plan(
            "sec",
            VoipSecurity::Secured,
            &[("", Target::Peer("b".into()))],
        )],
        vec![
            peer("a", "a.example.com", 5061, TransportKind::Tls, "sec"),
            peer("b", "b.example.com", 5061, TransportKind::Tls, "sec"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap()
    .with_resolved("b", vec!["192.0.2.2".parse().unwrap()]);
    let media = Arc::new(FakeMedia::new("203.0.113.1".parse().unwrap(), 30000, 100));
    let mut b2b = B2bua::new(
        B2buaConfig::new(vec![(
            TransportKind::Tls,
            "203.0.113.1:5061".parse().unwrap(),
        )]),
        PolicyHandle::new(pol),
        media,
    );
    let pki = mediagate_pki::testpki::TestPki::generate(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let leaf = pki.issue(&mediagate_pki::testpki::LeafSpec::new(
        "a.example.com",
        pki.now(),
        30,
    ));
    let id = mediagate_pki::PeerIdentity::from_verified_chain(
        Some(&leaf.chain()),
        mediagate_pki::IdentityOptions::default(),
    )
    .unwrap();
    let ra = Remote {
        transport: TransportKind::Tls,
        addr: "192.0.2.1:40000".parse().unwrap(),
    };
    let rb = Remote {
        transport: TransportKind::Tls,
        addr: "192.0.2.2:5061".parse().unwrap(),
    };
    b2b.connection_opened(ra, Some(id));
    let now = crate::clock::now();
    let send = |b2b: &mut B2bua, from: Remote, msg: &str| -> Vec<Transmit> {
        b2b.handle_input(now, from, msg.as_bytes());
        let mut v = Vec::new();
        while let Some(t) = b2b.poll_transmit() {
            v.push(t);
        }
        v
    };
    let msg_to = |v: &[Transmit], r: Remote| -> Vec<Message> {
        v.iter()
            .filter(|t| t.remote == r)
            .map(|t| parse(&t.bytes).unwrap())
            .collect()
    };
    let k1 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let k2 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let a_sdp = |key: &str| {
        offer_sdp(
            4000,
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"),
        )
        .replace("RTP/AVP", "RTP/SAVP")
    };
    let out = send(&mut b2b, ra, &invite("c1", "i1", &a_sdp(k1)));
    let b_inv = find_req(&msg_to(&out, rb), Method::Invite);
    let crypto = |r: &Request| -> Vec<String> {
        String::from_utf8(r.body.clone())
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("a=crypto:"))
            .map(str::to_owned)
            .collect()
    };
    let first_offer = crypto(&b_inv);
    assert_eq!(first_offer.len(), 6);
    // B accepts our tag 4 (AES_CM_128_HMAC_SHA1_80) with its own key.
    let b_ans = offer_sdp(
        6000,
        &format!("a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{k2}\r\n"),
    )
    .replace("RTP/AVP", "RTP/SAVP")
    .replace("192.0.2.1", "192.0.2.2");
    let out = send(&mut b2b, rb, &answer(&b_inv, StatusCode::OK, Some(&b_ans)));
    let ok = msg_to(&out, ra)
        .iter()
        .filter_map(resp)
        .next()
        .cloned()
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    // re-INVITE from A with the same key: B is re-offered the same lines.
    let out = send(&mut b2b, ra, &a_request(&ok, "INVITE", 2, &a_sdp(k1)));
    let re1 = find_req(&msg_to(&out, rb), Method::Invite);
    assert_eq!(
        crypto(&re1),
        first_offer,
        "unchanged key: same keys offered to B"
    );
    let out = send(&mut b2b, rb, &answer(&re1, StatusCode::OK, Some(&b_ans)));
    assert!(
        msg_to(&out, ra)
            .iter()
            .filter_map(resp)
            .any(|r| r.status == StatusCode::OK)
    );
    // re-INVITE from A with a new key: B gets fresh keys.
    let out = send(&mut b2b, ra, &a_request(&ok, "INVITE", 3, &a_sdp(k2)));
    let re2 = find_req(&msg_to(&out, rb), Method::Invite);
    let renewed = crypto(&re2);
    assert_eq!(renewed.len(), 6);
    assert!(
        renewed.iter().zip(&first_offer).all(|(a, b)| a != b),
        "changed key: every line renewed"
    );
}

/// A local endpoint that records the offers it gets and answers from 198.51.100.9:50000.
#[derive(Default)]
struct Echo {
    offers: std::sync::Mutex<Vec<String>>,
    hangups: std::sync::Mutex<Vec<CallKey>>,
}

impl LocalEndpoint for Echo {
    fn answer(&self, _call: CallKey, offer: &Sdp) -> Result<Sdp, StatusCode> {
        self.offers
            .lock()
            .unwrap()
            .push(String::from_utf8(offer.to_bytes()).unwrap());
        let text = String::from_utf8(offer.to_bytes())
            .unwrap()
            .replace("203.0.113.1", "198.51.100.9")
            .replace("m=audio 30002", "m=audio 50000");
        Ok(Sdp::parse(text.as_bytes()).unwrap())
    }
    fn hangup(&self, call: CallKey) {
        self.hangups.lock().unwrap().push(call);
    }
}

#[test]
fn echo_route_is_leg_b_of_an_anchored_call() {
    let mut h = H::new(10);
    let echo = Arc::new(Echo::default());
    h.b2b.set_local_endpoint(echo.clone());
    let inv = invite("c1", "i1", &offer_sdp(4000, "")).replace("sip:100@gw", "sip:700@gw");
    let out = h.input(A, &inv);
    let ok = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    let body = String::from_utf8(ok.body.clone()).unwrap();
    // The caller talks to the relay's leg A, never to the endpoint directly.
    assert!(body.contains("m=audio 30000 RTP/AVP"), "{body}");
    assert!(body.contains("c=IN IP4 203.0.113.1"), "{body}");
    assert!(
        !body.contains("50000") && !body.contains("198.51.100.9"),
        "{body}"
    );
    // The endpoint got our offer from the relay's leg B.
    let offers = echo.offers.lock().unwrap().clone();
    assert_eq!(offers.len(), 1);
    assert!(offers[0].contains("m=audio 30002 RTP/AVP"), "{}", offers[0]);
    assert!(offers[0].contains("c=IN IP4 203.0.113.1"), "{}", offers[0]);
    // Relay legs: A = the caller, B = the endpoint.
    let legs = h.media.legs();
    let a = legs.iter().find(|l| l.side == Side::A).unwrap();
    let b = legs.iter().find(|l| l.side == Side::B).unwrap();
    assert_eq!(a.remote_rtp, Some("192.0.2.1:4000".parse().unwrap()));
    assert_eq!(b.remote_rtp, Some("198.51.100.9:50000".parse().unwrap()));
    assert!(a.keys.is_none() && b.keys.is_none());
    assert!(to(B, &out).is_empty(), "nothing goes to a peer");
    let out = h.input(A, &a_request(&ok, "BYE", 2, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);
    assert_eq!(h.b2b.call_count(), 0);
    assert_eq!(echo.hangups.lock().unwrap().len(), 1);
    assert_eq!(h.media.released().len(), 1);
}

#[test]
fn echo_without_endpoint_is_503_and_delayed_offer_is_488() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", &offer_sdp(4000, "")).replace("sip:100@gw", "sip:700@gw");
    let out = h.input(A, &inv);
    assert_eq!(codes(&to(A, &out)), vec![503]);
    assert!(h.media.live().is_empty(), "ports released");
    h.b2b.set_local_endpoint(Arc::new(Echo::default()));
    let sdp = offer_sdp(4000, "");
    let inv = invite("c2", "i2", &sdp)
        .replace("sip:100@gw", "sip:700@gw")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            &format!("Content-Length: {}", sdp.len()),
            "Content-Length: 0",
        )
        .replace(&sdp, "");
    let out = h.input(A, &inv);
    assert_eq!(codes(&to(A, &out)), vec![488]);
    assert!(h.media.live().is_empty(), "ports released");
}

/// A Secured caller routed to the echo endpoint: SRTP on the caller's leg (R-MODE-3), plain
/// RTP on the internal leg; a re-INVITE with a new key re-keys the caller's leg only.
#[test]
fn secured_caller_to_echo_gets_srtp_and_can_rekey() {
    let pol = Policy::new(
        vec![plan("sec", VoipSecurity::Secured, &[("", Target::Echo)])],
        vec![peer("a", "a.example.com", 5061, TransportKind::Tls, "sec")],
        &PolicyOptions::default(),
    )
    .unwrap();
    let media = Arc::new(FakeMedia::new("203.0.113.1".parse().unwrap(), 30000, 100));
    let mut b2b = B2bua::new(
        B2buaConfig::new(vec![(
            TransportKind::Tls,
            "203.0.113.1:5061".parse().unwrap(),
        )]),
        PolicyHandle::new(pol),
        media.clone(),
    );
    let echo = Arc::new(Echo::default());
    b2b.set_local_endpoint(echo.clone());
    let pki = mediagate_pki::testpki::TestPki::generate(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let leaf = pki.issue(&mediagate_pki::testpki::LeafSpec::new(
        "a.example.com",
        pki.now(),
        30,
    ));
    let id = mediagate_pki::PeerIdentity::from_verified_chain(
        Some(&leaf.chain()),
        mediagate_pki::IdentityOptions::default(),
    )
    .unwrap();
    let ra = Remote {
        transport: TransportKind::Tls,
        addr: "192.0.2.1:40000".parse().unwrap(),
    };
    b2b.connection_opened(ra, Some(id));
    let now = crate::clock::now();
    let mut send = |msg: &str| -> Vec<Message> {
        b2b.handle_input(now, ra, msg.as_bytes());
        let mut v = Vec::new();
        while let Some(t) = b2b.poll_transmit() {
            v.push(parse(&t.bytes).unwrap());
        }
        v
    };
    let a_sdp = |key: &str| {
        offer_sdp(
            4000,
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"),
        )
        .replace("RTP/AVP", "RTP/SAVP")
    };
    // Without crypto: 488 (R-MODE-3), nothing reaches the endpoint.
    let out = send(&invite("c0", "i0", &offer_sdp(4000, "")));
    assert_eq!(codes(&out), vec![488]);
    assert!(echo.offers.lock().unwrap().is_empty());

    let k1 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let k2 = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let out = send(&invite("c1", "i1", &a_sdp(k1)));
    let ok = find_resp(&out, StatusCode::OK);
    let body = String::from_utf8(ok.body.clone()).unwrap();
    // Port 30000 went to the refused call (allocated, then released).
    assert!(body.contains("m=audio 30004 RTP/SAVP"), "{body}");
    assert_eq!(
        body.matches("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
            .count(),
        1,
        "{body}"
    );
    let offer_b = echo.offers.lock().unwrap()[0].clone();
    assert!(
        offer_b.contains("RTP/AVP") && !offer_b.contains("crypto"),
        "{offer_b}"
    );
    let legs = media.legs();
    let a1 = legs.iter().find(|l| l.side == Side::A).unwrap().clone();
    let (rx1, tx1) = a1.keys.clone().expect("SRTP on the caller's leg");
    assert!(
        legs.iter()
            .find(|l| l.side == Side::B)
            .unwrap()
            .keys
            .is_none()
    );

    // Same key again (hold/resume): same keys on leg A. New key: new rx key on leg A.
    let out = send(&a_request(&ok, "INVITE", 3, &a_sdp(k1)));
    assert_eq!(codes(&out), vec![200]);
    let out = send(&a_request(&ok, "INVITE", 4, &a_sdp(k2)));
    assert_eq!(codes(&out), vec![200]);
    let body = String::from_utf8(out.iter().filter_map(resp).next().unwrap().body.clone()).unwrap();
    assert!(
        body.contains("RTP/SAVP") && body.contains("a=crypto:1 "),
        "{body}"
    );
    let a_legs: Vec<_> = media
        .legs()
        .into_iter()
        .filter(|l| l.side == Side::A)
        .collect();
    assert_eq!(a_legs.len(), 3);
    assert_eq!(a_legs[1].keys, Some((rx1.clone(), tx1.clone())));
    let (rx3, _) = a_legs[2].keys.clone().unwrap();
    assert_ne!(rx3, rx1, "the caller's new key is used");
    assert_eq!(
        echo.offers.lock().unwrap().len(),
        1,
        "the internal leg is untouched"
    );
}

/// Graceful shutdown: draining refuses new INVITEs with 503 + Retry-After but keeps calls
/// in progress; `hangup_all` then sends BYE on both legs and frees the media.
#[test]
fn draining_refuses_new_calls_and_hangup_all_byes_both_legs() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let b_sdp = offer_sdp(6000, "").replace("192.0.2.1", "192.0.2.2");
    let out = h.input(B, &answer(&b_inv, StatusCode::OK, Some(&b_sdp)));
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    h.input(A, &a_request(&ok, "ACK", 1, ""));
    assert_eq!(h.b2b.call_count(), 1);

    h.b2b.set_draining(true);
    let out = h.input(A, &invite("c2", "i2", &offer_sdp(4100, "")));
    let refused = to(A, &out).iter().filter_map(resp).next().cloned().unwrap();
    assert_eq!(refused.status.code(), 503);
    assert!(
        refused.reason.contains("shutting down"),
        "{}",
        refused.reason
    );
    assert!(refused.headers.retry_after().is_some());
    assert!(to(B, &out).is_empty(), "nothing routed while draining");
    assert_eq!(h.b2b.call_count(), 1, "the call in progress goes on");
    // In-dialog requests still work while draining.
    let out = h.input(A, &a_request(&ok, "OPTIONS", 2, ""));
    assert_eq!(codes(&to(A, &out)), vec![200]);

    let now = h.now;
    h.b2b.hangup_all(now);
    let out = h.drain();
    assert_eq!(find_req(&to(A, &out), Method::Bye).method, Method::Bye);
    assert_eq!(find_req(&to(B, &out), Method::Bye).method, Method::Bye);
    assert_eq!(h.b2b.call_count(), 0);
    assert!(h.media.live().is_empty());
    let m = h.b2b.metrics();
    let calls = |result: &'static str| {
        m.calls
            .get(&("plain".to_owned(), "Unsecured".to_owned(), result))
    };
    assert_eq!(calls("answered"), 1, "the call ended by the shutdown");
    assert_eq!(calls("refused"), 1, "the INVITE refused while draining");
    assert_eq!(
        m.calls_rejected_overload
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn hangup_all_during_setup_answers_503_and_cancels_the_callee() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    h.input(B, &answer(&b_inv, StatusCode::RINGING, None));
    let now = h.now;
    h.b2b.hangup_all(now);
    let out = h.drain();
    assert!(
        codes(&to(A, &out)).contains(&503),
        "{:?}",
        codes(&to(A, &out))
    );
    assert_eq!(
        find_req(&to(B, &out), Method::Cancel).method,
        Method::Cancel
    );
    assert_eq!(h.b2b.call_count(), 0);
}

/// RFC 3261 §12.1.1: the 2xx that creates the caller's dialog copies the INVITE's
/// Record-Route values in order, so the caller's in-dialog requests go through its proxy.
#[test]
fn answer_to_the_caller_copies_record_route() {
    let mut h = H::new(10);
    let inv = invite("c1", "i1", &offer_sdp(4000, "")).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRecord-Route: <sip:p1.example.com;lr>\r\nRecord-Route: <sip:p2.example.com;lr>\r\n",
    );
    let out = h.input(A, &inv);
    let b_inv = find_req(&to(B, &out), Method::Invite);
    assert_eq!(
        b_inv.headers.record_routes().count(),
        0,
        "the proxies of leg A are not leg B's"
    );
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))),
    );
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    let rr: Vec<String> = ok
        .headers
        .record_routes()
        .map(|r| r.uri.to_string())
        .collect();
    assert_eq!(rr, vec!["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
}

/// R-PEER-2 inside dialogs: a request that names a live dialog but comes from someone who is
/// not that leg's peer is refused with 403 and changes nothing; the peer itself, also from
/// another port, is served.
#[test]
fn in_dialog_requests_only_from_the_legs_peer() {
    let mut h = H::new(10);
    let (_b_inv, ok) = established(&mut h);
    // A stranger (not a peer) and the callee's peer B both try to end the caller's dialog.
    for from in ["192.0.2.99:5060", B] {
        let out = h.input(from, &a_request(&ok, "BYE", 2, ""));
        let r = to(from, &out)
            .iter()
            .filter_map(resp)
            .next()
            .cloned()
            .unwrap();
        assert_eq!(r.status.code(), 403, "{from}: {}", r.reason);
        assert!(to(A, &out).is_empty() && to(B, &out).iter().all(|m| resp(m).is_some()));
        assert_eq!(h.b2b.call_count(), 1, "the call goes on");
    }
    assert_eq!(
        h.b2b.metrics().admission_refusals.get(&"wrong_dialog_peer"),
        2
    );
    // Peer A on a new connection (another source port): admitted as the same peer.
    let out = h.input("192.0.2.1:6000", &a_request(&ok, "BYE", 2, ""));
    assert_eq!(codes(&to("192.0.2.1:6000", &out)), vec![200]);
    assert_eq!(h.b2b.call_count(), 0);
}

/// A media timeout ends an answered call: BYE with a Reason on both legs, ports released,
/// counted. Before the answer it is ignored (the relay reports again after the answer).
#[test]
fn media_timeout_ends_the_call_with_bye_and_reason_on_both_legs() {
    let mut h = H::new(10);
    // Ringing: ignored.
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    h.b2b
        .media_timeout(h.now, CallKey(1), Side::A, Duration::from_secs(60), false);
    assert!(h.drain().is_empty());
    assert_eq!(h.b2b.call_count(), 1);
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))),
    );
    find_resp(&to(A, &out), StatusCode::OK);
    h.b2b
        .media_timeout(h.now, CallKey(1), Side::B, Duration::from_secs(61), false);
    let out = h.drain();
    for peer in [A, B] {
        let bye = find_req(&to(peer, &out), Method::Bye);
        let reason: Vec<&str> = bye.headers.other("Reason").collect();
        assert_eq!(reason.len(), 1, "{bye:?}");
        assert!(
            reason[0].starts_with("SIP;cause=408;text=\"Media Timeout"),
            "{reason:?}"
        );
        assert!(reason[0].contains("callee"), "{reason:?}");
    }
    assert_eq!(h.b2b.call_count(), 0);
    assert_eq!(h.media.released(), vec![CallKey(1)]);
    assert_eq!(
        h.b2b
            .metrics()
            .media_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A late report for a call that is gone does nothing.
    h.b2b
        .media_timeout(h.now, CallKey(1), Side::B, Duration::from_secs(62), false);
    assert!(h.drain().is_empty());
}

/// Every audio stream gets its own relay pair; other streams and port-0 streams are
/// answered with port 0 on both legs; the count of m= lines is kept (RFC 3264 §6).
#[test]
fn every_audio_stream_is_anchored_and_every_m_line_answered() {
    let mut h = H::new(10);
    let sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n\
               m=audio 4006 RTP/AVP 8\r\n";
    let out = h.input(A, &invite("c1", "i1", sdp));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let b_sdp = Sdp::parse(&b_inv.body).unwrap();
    let ports: Vec<u16> = b_sdp.media.iter().map(|m| m.port).collect();
    assert_eq!(ports[1..3], [0, 0], "video and the disabled stream: port 0");
    assert!(
        ports[0] != 0 && ports[3] != 0 && ports[0] != ports[3],
        "{ports:?}"
    );
    assert_eq!(h.media.streams(), vec![(CallKey(1), 0), (CallKey(1), 3)]);
    let b_answer = "v=0\r\no=b 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
                    m=audio 6000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=audio 0 RTP/AVP 0\r\n\
                    m=audio 6006 RTP/AVP 8\r\n";
    let out = h.input(B, &answer(&b_inv, StatusCode::OK, Some(b_answer)));
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    let a_sdp = Sdp::parse(&ok.body).unwrap();
    let ports: Vec<u16> = a_sdp.media.iter().map(|m| m.port).collect();
    assert_eq!(ports.len(), 4);
    assert_eq!(ports[1..3], [0, 0]);
    assert!(
        ports[0] != 0 && ports[3] != 0 && ports[0] != ports[3],
        "{ports:?}"
    );
    let legs = h.media.legs();
    let b3 = legs
        .iter()
        .find(|l| l.stream == 3 && l.side == Side::B)
        .unwrap();
    assert_eq!(b3.remote_rtp, Some("192.0.2.2:6006".parse().unwrap()));
    assert!(legs.iter().all(|l| l.stream == 0 || l.stream == 3));
}

/// Refusals: multicast targets and SAVP into a plain plan get 488 with a reason; an offer
/// with no audio stream at all gets 488.
#[test]
fn unusable_offers_get_488_with_a_reason() {
    let mut h = H::new(10);
    for (n, sdp, why) in [
        (1, offer_sdp(4000, "").replace("c=IN IP4 192.0.2.1", "c=IN IP4 224.2.1.1/127"), "not unicast"),
        (2, offer_sdp(4000, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n").replace("RTP/AVP", "RTP/SAVP"), "does not use SRTP"),
        (3, offer_sdp(4000, "").replace("m=audio", "m=video"), "no audio"),
    ] {
        let out = h.input(A, &invite(&format!("c{n}"), &format!("i{n}"), &sdp));
        let r = find_resp(&to(A, &out), StatusCode::NOT_ACCEPTABLE_HERE);
        assert!(r.reason.contains(why), "{}", r.reason);
        assert!(to(B, &out).is_empty());
    }
    assert_eq!(h.b2b.call_count(), 0);
    assert!(h.media.live().is_empty(), "nothing left allocated");
}

/// The peers' media settings reach the relay: a NAT'd peer's plain RTP may come from its
/// signaling address.
#[test]
fn peer_media_settings_and_directions_reach_the_relay() {
    let mut pa = peer("a", "192.0.2.1", 5060, TransportKind::Tcp, "plain");
    pa.media_source = MediaSource::PeerAddress;
    pa.media_latching = MediaLatching::Follow;
    let pol = Policy::new(
        vec![plan(
            "plain",
            VoipSecurity::Unsecured,
            &[("", Target::Peer("b".into()))],
        )],
        vec![
            pa,
            peer("b", "192.0.2.2", 5060, TransportKind::Tcp, "plain"),
        ],
        &PolicyOptions::default(),
    )
    .unwrap();
    let mut h = H::new(10);
    h.b2b.policy().store(pol);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "a=sendonly\r\n")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    h.input(
        B,
        &answer(
            &b_inv,
            StatusCode::OK,
            Some(&offer_sdp(6000, "a=recvonly\r\n")),
        ),
    );
    let legs = h.media.legs();
    let a = &legs.iter().find(|l| l.side == Side::A).unwrap().media;
    assert_eq!(a.source, MediaSource::PeerAddress);
    assert_eq!(a.latching, MediaLatching::Follow);
    assert_eq!(a.peer_ip, Some("192.0.2.1".parse().unwrap()));
    assert!(
        a.peer_sends && a.on_hold,
        "sendonly: the caller sends, on hold"
    );
    let b = &legs.iter().find(|l| l.side == Side::B).unwrap().media;
    assert_eq!(b.source, MediaSource::Sdp);
    assert!(
        !b.peer_sends && b.on_hold,
        "recvonly: the callee does not send"
    );
}

/// A local endpoint call on hold: the answer turns sendonly into recvonly, carries Contact,
/// and the endpoint is told to stop sending; resume turns it back.
#[test]
fn echo_hold_answers_recvonly_with_contact_and_stops_the_endpoint() {
    #[derive(Default)]
    struct Holding {
        inner: Echo,
        sending: std::sync::Mutex<Vec<bool>>,
    }
    impl LocalEndpoint for Holding {
        fn answer(&self, call: CallKey, offer: &Sdp) -> Result<Sdp, StatusCode> {
            self.inner.answer(call, offer)
        }
        fn hangup(&self, call: CallKey) {
            self.inner.hangup(call)
        }
        fn set_sending(&self, _call: CallKey, sending: bool) {
            self.sending.lock().unwrap().push(sending);
        }
    }
    let mut h = H::new(10);
    let ep = Arc::new(Holding::default());
    h.b2b.set_local_endpoint(ep.clone());
    let inv = invite("c1", "i1", &offer_sdp(4000, "")).replace("sip:100@gw", "sip:700@gw");
    let out = h.input(A, &inv);
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    for (cseq, offered, answered) in [(2, "sendonly", "recvonly"), (3, "sendrecv", "sendrecv")] {
        let out = h.input(
            A,
            &a_request(
                &ok,
                "INVITE",
                cseq,
                &offer_sdp(4000, &format!("a={offered}\r\n")),
            ),
        );
        let r = find_resp(&to(A, &out), StatusCode::OK);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(body.contains(&format!("a={answered}\r\n")), "{body}");
        assert_eq!(
            body.matches("a=sendrecv").count() + body.matches("a=recvonly").count(),
            1,
            "{body}"
        );
        assert!(r.headers.contact().is_some(), "Contact in the 2xx: {r:?}");
    }
    assert_eq!(*ep.sending.lock().unwrap(), vec![false, true]);
}

fn invite_with(call_id: &str, branch: &str, extra_headers: &str) -> String {
    invite(call_id, branch, &offer_sdp(4000, "")).replacen(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{extra_headers}"),
        1,
    )
}

/// RFC 4028 on the caller's leg: the caller refreshes (it supports timers); its refreshes keep
/// the call; without one the call ends at the interval minus min(32, interval/3).
#[test]
fn session_timer_on_the_callers_leg_refreshes_and_expiry() {
    let mut h = H::new(10);
    let out = h.input(
        A,
        &invite_with(
            "c1",
            "i1",
            "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        ),
    );
    let b_inv = find_req(&to(B, &out), Method::Invite);
    assert_eq!(b_inv.headers.other("Session-Expires").next(), Some("1800"));
    assert_eq!(b_inv.headers.other("Min-SE").next(), Some("90"));
    assert!(
        b_inv
            .headers
            .other("Supported")
            .any(|v| v.contains("timer"))
    );
    // The callee does not do timers: its 2xx has none (we would refresh leg B at 900 s).
    let out = h.input(
        B,
        &answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))),
    );
    let ok = find_resp(&to(A, &out), StatusCode::OK);
    assert_eq!(
        ok.headers.other("Session-Expires").next(),
        Some("90;refresher=uac")
    );
    assert!(ok.headers.other("Require").any(|v| v == "timer"));
    h.input(A, &a_request(&ok, "ACK", 1, ""));
    // A refresh (UPDATE) at 40 s is answered with the interval and keeps the call.
    h.advance(Duration::from_secs(40));
    let out = h.input(A, &a_request(&ok, "UPDATE", 2, ""));
    let r = find_resp(&to(A, &out), StatusCode::OK);
    assert_eq!(
        r.headers.other("Session-Expires").next(),
        Some("90;refresher=uac")
    );
    let out = h.advance(Duration::from_secs(59));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.b2b.call_count(), 1);
    // No further refresh: 60 s after the last one the call ends on both legs.
    let out = h.advance(Duration::from_secs(2));
    for peer in [A, B] {
        let bye = find_req(&to(peer, &out), Method::Bye);
        let reason = bye.headers.other("Reason").next().unwrap_or_default();
        assert!(reason.contains("Session Timer Expired"), "{reason}");
    }
    assert_eq!(h.b2b.call_count(), 0);
    assert!(h.media.live().is_empty());
    assert_eq!(
        h.b2b
            .metrics()
            .session_expiries
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// RFC 4028 on the callee's leg: its 2xx makes us the refresher; we refresh with UPDATE (it
/// allows UPDATE) at half the interval; a refresh answered 481 ends the call.
#[test]
fn session_timer_on_the_callees_leg_we_refresh() {
    let mut h = H::new(10);
    let out = h.input(A, &invite("c1", "i1", &offer_sdp(4000, "")));
    let b_inv = find_req(&to(B, &out), Method::Invite);
    let ok_b = answer(&b_inv, StatusCode::OK, Some(&offer_sdp(6000, ""))).replacen(
        "Content-Type",
        "Session-Expires: 120;refresher=uac\r\nAllow: INVITE, ACK, BYE, UPDATE\r\nContent-Type",
        1,
    );
    let out = h.input(B, &ok_b);
    let ok_a = find_resp(&to(A, &out), StatusCode::OK);
    // The caller did not ask for timers: we refresh its leg at 900 s (default 1800).
    assert_eq!(
        ok_a.headers.other("Session-Expires").next(),
        Some("1800;refresher=uas")
    );
    h.input(A, &a_request(&ok_a, "ACK", 1, ""));
    let out = h.advance(Duration::from_secs(59));
    assert!(to(B, &out).is_empty());
    let out = h.advance(Duration::from_secs(2));
    let upd = find_req(&to(B, &out), Method::Update);
    assert_eq!(
        upd.headers.other("Session-Expires").next(),
        Some("120;refresher=uac")
    );
    assert!(upd.body.is_empty(), "a refresh without an offer");
    // 200: the next refresh 60 s later.
    let ok = String::from_utf8(upd.response(StatusCode::OK).to_bytes()).unwrap();
    h.input(B, &ok);
    let out = h.advance(Duration::from_secs(59));
    assert!(to(B, &out).is_empty());
    let out = h.advance(Duration::from_secs(2));
    let upd = find_req(&to(B, &out), Method::Update);
    // 481: the session is gone there: the call ends.
    let gone = String::from_utf8(upd.response(StatusCode::CALL_DOES_NOT_EXIST).to_bytes()).unwrap();
    let out = h.input(B, &gone);
    let bye = find_req(&to(A, &out), Method::Bye);
    assert!(
        bye.headers
            .other("Reason")
            .any(|r| r.contains("Session Refresh Failed")),
        "{bye:?}"
    );
    assert_eq!(h.b2b.call_count(), 0);
}

/// A session interval below our Min-SE gets 422 with our Min-SE (RFC 4028 §9).
#[test]
fn session_interval_too_small_gets_422() {
    let mut h = H::new(10);
    let out = h.input(A, &invite_with("c1", "i1", "Session-Expires: 30\r\n"));
    let r = find_resp(&to(A, &out), StatusCode::SESSION_INTERVAL_TOO_SMALL);
    assert_eq!(r.headers.other("Min-SE").next(), Some("90"));
    assert!(to(B, &out).is_empty());
    assert_eq!(h.b2b.call_count(), 0);
}
