//! Transaction-layer simulation with fake time: every timer path, UDP retransmission schedules,
//! reliable-transport variants, CANCEL races and the UAS 2xx retransmission (R-SIP-1).
//! Time only moves by jumping to `poll_timeout()`; nothing sleeps.

use std::time::{Duration, Instant};

use super::*;
use crate::message::{Header, StatusCode};

const T1: Duration = Duration::from_millis(500);

/// The test epoch. `Instant` has no other constructor; after this, time only moves by jumping
/// to `poll_timeout()`.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

type Timeline = (Vec<(Duration, String)>, Vec<(Duration, Event)>);

fn remote(transport: TransportKind) -> Remote {
    Remote {
        transport,
        addr: "192.0.2.10:5060".parse().unwrap(),
    }
}

fn parse_req(text: &str) -> Request {
    match parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    }
}

fn request(method: &str, branch: &str, cseq: u32) -> Request {
    parse_req(&format!(
        "{method} sip:bob@192.0.2.20 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\n\
         Max-Forwards: 70\n\
         From: <sip:alice@example.com>;tag=a1\n\
         To: <sip:bob@example.com>\n\
         Call-ID: call-1@192.0.2.10\n\
         CSeq: {cseq} {method}\n\
         Contact: <sip:alice@192.0.2.10>\n\
         Content-Length: 0\n\n"
    ))
}

fn response_to(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    let mut r = req.response(StatusCode::new(code).unwrap());
    if let Some(tag) = to_tag {
        r.headers.to_mut().unwrap().set_tag(tag);
    }
    r
}

#[derive(Default, Debug)]
struct Drained {
    tx: Vec<Vec<u8>>,
    ev: Vec<Event>,
}

impl Drained {
    fn tx_str(&self) -> Vec<String> {
        self.tx
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
    fn first_line(&self, i: usize) -> String {
        self.tx_str()[i].lines().next().unwrap().to_owned()
    }
}

fn drain(ep: &mut Endpoint) -> Drained {
    let mut d = Drained::default();
    while let Some(o) = ep.poll_output() {
        match o {
            Output::Transmit(t) => d.tx.push(t.bytes),
            Output::Event(e) => d.ev.push(e),
        }
    }
    d
}

/// Jumps to the next deadline and fires it. Returns the instant and what came out.
fn step(ep: &mut Endpoint) -> Option<(Instant, Drained)> {
    let t = ep.poll_timeout()?;
    ep.handle_timeout(t);
    Some((t, drain(ep)))
}

/// Runs all timers to completion, returning (offset from `start`, first line) of every transmit
/// and all events.
fn run_to_end(ep: &mut Endpoint, start: Instant) -> Timeline {
    let (mut tx, mut ev) = (Vec::new(), Vec::new());
    let mut guard = 0;
    while let Some((t, d)) = step(ep) {
        for i in 0..d.tx.len() {
            tx.push((t - start, d.first_line(i)));
        }
        ev.extend(d.ev.into_iter().map(|e| (t - start, e)));
        guard += 1;
        assert!(guard < 1000, "timer loop does not end");
    }
    (tx, ev)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn incoming(ep: &mut Endpoint, now: Instant, transport: TransportKind, msg: &Message) -> Drained {
    ep.handle_input(now, remote(transport), &msg.to_bytes());
    drain(ep)
}

// ---------- INVITE client (Timers A, B, D) ----------

#[test]
fn invite_client_udp_timer_a_doubles_until_timer_b() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let id = ep
        .send_request(
            start,
            remote(TransportKind::Udp),
            request("INVITE", "z9hG4bKa", 1),
        )
        .unwrap();
    assert_eq!(drain(&mut ep).tx.len(), 1);
    let (tx, ev) = run_to_end(&mut ep, start);
    // Timer A: T1, 2T1, 4T1, ... (no cap) until Timer B = 64*T1.
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, [500, 1500, 3500, 7500, 15500, 31500]);
    assert!(tx.iter().all(|(_, l)| l.starts_with("INVITE ")));
    assert_eq!(
        ev,
        [
            (
                ms(32000),
                Event::Timeout {
                    id,
                    timer: Timer::B
                }
            ),
            (ms(32000), Event::Terminated { id })
        ]
    );
}

#[test]
fn invite_client_reliable_no_retransmissions() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let id = ep
        .send_request(
            start,
            remote(TransportKind::Tcp),
            request("INVITE", "z9hG4bKa", 1),
        )
        .unwrap();
    drain(&mut ep);
    let (tx, ev) = run_to_end(&mut ep, start);
    assert!(tx.is_empty());
    assert_eq!(
        ev[0],
        (
            ms(32000),
            Event::Timeout {
                id,
                timer: Timer::B
            }
        )
    );
}

#[test]
fn invite_client_non_2xx_generates_ack_and_absorbs_retransmissions_until_timer_d() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKinv", 7);
    let id = ep
        .send_request(start, remote(TransportKind::Udp), inv.clone())
        .unwrap();
    drain(&mut ep);
    let ringing = Message::Response(response_to(&inv, 180, Some("b1")));
    let d = incoming(&mut ep, start + ms(100), TransportKind::Udp, &ringing);
    assert!(
        matches!(&d.ev[..], [Event::Response { response, .. }] if response.status.code() == 180)
    );
    assert_eq!(
        ep.transaction_state(id),
        Some(TransactionState::InviteClient(
            InviteClientState::Proceeding
        ))
    );
    // Proceeding: no more Timer A / B.
    assert_eq!(ep.poll_timeout(), None);
    let busy = Message::Response(response_to(&inv, 486, Some("b1")));
    let d = incoming(&mut ep, start + ms(200), TransportKind::Udp, &busy);
    assert_eq!(d.tx.len(), 1, "ACK sent");
    let ack = match parse(&d.tx[0]).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    };
    //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.1.3
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(ack.headers.cseq().unwrap().seq, 7);
    assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKinv"));
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b1"));
    assert_eq!(ack.headers.call_id(), inv.headers.call_id());
    assert!(
        matches!(&d.ev[..], [Event::Response { response, .. }] if response.status.code() == 486)
    );
    // Retransmitted 486: ACK again, not passed up.
    let d = incoming(&mut ep, start + ms(300), TransportKind::Udp, &busy);
    assert_eq!(d.tx.len(), 1);
    assert!(d.ev.is_empty());
    let (_, ev) = run_to_end(&mut ep, start);
    assert_eq!(
        ev,
        [(ms(200) + Duration::from_secs(32), Event::Terminated { id })]
    );
}

#[test]
fn invite_client_reliable_timer_d_is_zero() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKinv", 7);
    let id = ep
        .send_request(start, remote(TransportKind::Tls), inv.clone())
        .unwrap();
    drain(&mut ep);
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Tls,
        &Message::Response(response_to(&inv, 603, Some("x"))),
    );
    assert_eq!(d.tx.len(), 1, "ACK");
    assert!(matches!(d.ev.last(), Some(Event::Terminated { id: i }) if *i == id));
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn invite_client_2xx_terminates_and_retransmissions_are_stray() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKinv", 1);
    let id = ep
        .send_request(start, remote(TransportKind::Udp), inv.clone())
        .unwrap();
    drain(&mut ep);
    let ok = Message::Response(response_to(&inv, 200, Some("b")));
    let d = incoming(&mut ep, start + ms(40), TransportKind::Udp, &ok);
    assert!(d.tx.is_empty(), "the transaction does not ACK a 2xx");
    assert!(matches!(&d.ev[..], [Event::Response { .. }, Event::Terminated { id: i }] if *i == id));
    let d = incoming(&mut ep, start + ms(540), TransportKind::Udp, &ok);
    assert!(matches!(&d.ev[..], [Event::StrayResponse { .. }]));
}

#[test]
fn client_transport_error() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let id = ep
        .send_request(
            start,
            remote(TransportKind::Tcp),
            request("OPTIONS", "z9hG4bKo", 1),
        )
        .unwrap();
    drain(&mut ep);
    ep.handle_transport_error(start, id);
    let d = drain(&mut ep);
    assert_eq!(
        d.ev,
        [Event::TransportError { id }, Event::Terminated { id }]
    );
}

// ---------- non-INVITE client (Timers E, F, K) ----------

#[test]
fn non_invite_client_udp_timer_e_capped_at_t2_until_timer_f() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let id = ep
        .send_request(
            start,
            remote(TransportKind::Udp),
            request("OPTIONS", "z9hG4bKo", 1),
        )
        .unwrap();
    drain(&mut ep);
    let (tx, ev) = run_to_end(&mut ep, start);
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    // E: 500, 1000, 2000, 4000 (=T2), 4000, ...
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        ev,
        [
            (
                ms(32000),
                Event::Timeout {
                    id,
                    timer: Timer::F
                }
            ),
            (ms(32000), Event::Terminated { id })
        ]
    );
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_then_timer_k() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let req = request("BYE", "z9hG4bKbye", 2);
    let id = ep
        .send_request(start, remote(TransportKind::Udp), req.clone())
        .unwrap();
    drain(&mut ep);
    let d = incoming(
        &mut ep,
        start + ms(100),
        TransportKind::Udp,
        &Message::Response(response_to(&req, 100, None)),
    );
    assert!(matches!(&d.ev[..], [Event::Response { .. }]));
    // Timer E (500 ms) fires in Proceeding, then T2 each.
    let (t, d) = step(&mut ep).unwrap();
    assert_eq!((t - start, d.tx.len()), (ms(500), 1));
    let (t, d) = step(&mut ep).unwrap();
    assert_eq!((t - start, d.tx.len()), (ms(4500), 1));
    let d = incoming(
        &mut ep,
        start + ms(5000),
        TransportKind::Udp,
        &Message::Response(response_to(&req, 200, Some("b"))),
    );
    assert!(matches!(&d.ev[..], [Event::Response { .. }]));
    assert_eq!(
        ep.transaction_state(id),
        Some(TransactionState::NonInviteClient(
            NonInviteClientState::Completed
        ))
    );
    let (tx, ev) = run_to_end(&mut ep, start);
    assert!(tx.is_empty());
    assert_eq!(ev, [(ms(10000), Event::Terminated { id })], "Timer K = T4");
}

#[test]
fn non_invite_client_reliable_timer_k_zero_and_no_timer_e() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let req = request("OPTIONS", "z9hG4bKo", 1);
    let id = ep
        .send_request(start, remote(TransportKind::Tcp), req.clone())
        .unwrap();
    drain(&mut ep);
    assert_eq!(ep.poll_timeout(), Some(start + ms(32000)), "only Timer F");
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Tcp,
        &Message::Response(response_to(&req, 200, Some("b"))),
    );
    assert_eq!(d.ev.last(), Some(&Event::Terminated { id }));
}

// ---------- INVITE server (Timers G, H, I; 100 Trying) ----------

#[test]
fn invite_server_sends_100_after_200ms_unless_tu_answers() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = Message::Request(request("INVITE", "z9hG4bKs1", 1));
    let d = incoming(&mut ep, start, TransportKind::Udp, &inv);
    assert!(d.tx.is_empty());
    assert!(matches!(&d.ev[..], [Event::Request { .. }]));
    let (t, d) = step(&mut ep).unwrap();
    assert_eq!(t - start, ms(200));
    assert_eq!(d.first_line(0), "SIP/2.0 100 Trying");

    // The TU answers first: no 100.
    let mut ep = Endpoint::new(Config::default());
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(request("INVITE", "z9hG4bKs2", 1)),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    ep.send_response(start + ms(50), id, response_to(&rq, 180, Some("t")))
        .unwrap();
    assert_eq!(drain(&mut ep).first_line(0), "SIP/2.0 180 Ringing");
    assert_eq!(ep.poll_timeout(), None);

    // trying_delay = 0: at once.
    let cfg = Config {
        trying_delay: Duration::ZERO,
        ..Config::default()
    };
    let mut ep = Endpoint::new(cfg);
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Tcp,
        &Message::Request(request("INVITE", "z9hG4bKs3", 1)),
    );
    assert_eq!(d.first_line(0), "SIP/2.0 100 Trying");
}

#[test]
fn invite_server_retransmitted_invite_gets_last_provisional() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = Message::Request(request("INVITE", "z9hG4bKs1", 1));
    let d = incoming(&mut ep, start, TransportKind::Udp, &inv);
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    ep.send_response(start, id, response_to(&rq, 180, Some("t")))
        .unwrap();
    drain(&mut ep);
    let d = incoming(&mut ep, start + ms(500), TransportKind::Udp, &inv);
    assert_eq!(d.tx.len(), 1);
    assert_eq!(d.first_line(0), "SIP/2.0 180 Ringing");
    assert!(d.ev.is_empty(), "retransmission is absorbed");
}

#[test]
fn invite_server_udp_timer_g_capped_until_timer_h() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(request("INVITE", "z9hG4bKs1", 1)),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    ep.send_response(start, id, response_to(&rq, 486, Some("t")))
        .unwrap();
    drain(&mut ep);
    let (tx, ev) = run_to_end(&mut ep, start);
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert!(tx.iter().all(|(_, l)| l == "SIP/2.0 486 Busy Here"));
    assert_eq!(
        ev,
        [
            (
                ms(32000),
                Event::Timeout {
                    id,
                    timer: Timer::H
                }
            ),
            (ms(32000), Event::Terminated { id })
        ]
    );
}

#[test]
fn invite_server_ack_confirms_then_timer_i() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKs1", 1);
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(inv.clone()),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    let busy = response_to(&rq, 486, Some("t"));
    ep.send_response(start, id, busy.clone()).unwrap();
    drain(&mut ep);
    // The UAC's ACK: same branch, To tag from the response.
    let ack = crate::transaction::client_invite_ack_for_tests(&inv, &busy);
    let d = incoming(
        &mut ep,
        start + ms(700),
        TransportKind::Udp,
        &Message::Request(ack.clone()),
    );
    assert!(d.ev.is_empty() && d.tx.is_empty(), "ACK absorbed");
    assert_eq!(
        ep.transaction_state(id),
        Some(TransactionState::InviteServer(InviteServerState::Confirmed))
    );
    // Retransmitted ACK absorbed too.
    let d = incoming(
        &mut ep,
        start + ms(800),
        TransportKind::Udp,
        &Message::Request(ack),
    );
    assert!(d.ev.is_empty());
    let (tx, ev) = run_to_end(&mut ep, start);
    assert!(tx.is_empty(), "no G after ACK");
    assert_eq!(ev, [(ms(5700), Event::Terminated { id })], "Timer I = T4");
}

#[test]
fn invite_server_reliable_no_timer_g_and_timer_i_zero() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKs1", 1);
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Tcp,
        &Message::Request(inv.clone()),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    let busy = response_to(&rq, 486, Some("t"));
    ep.send_response(start, id, busy.clone()).unwrap();
    drain(&mut ep);
    assert_eq!(ep.poll_timeout(), Some(start + ms(32000)), "only Timer H");
    let ack = crate::transaction::client_invite_ack_for_tests(&inv, &busy);
    let d = incoming(
        &mut ep,
        start + ms(10),
        TransportKind::Tcp,
        &Message::Request(ack),
    );
    assert_eq!(d.ev, [Event::Terminated { id }]);
}

// ---------- non-INVITE server (Timer J) ----------

#[test]
fn non_invite_server_retransmissions_and_timer_j() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let opt = Message::Request(request("OPTIONS", "z9hG4bKo", 5));
    let d = incoming(&mut ep, start, TransportKind::Udp, &opt);
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    // Trying: retransmissions discarded.
    let d = incoming(&mut ep, start + ms(500), TransportKind::Udp, &opt);
    assert!(d.tx.is_empty() && d.ev.is_empty());
    ep.send_response(start + ms(600), id, response_to(&rq, 200, Some("t")))
        .unwrap();
    assert_eq!(drain(&mut ep).tx.len(), 1);
    // Completed: retransmission answered with the stored final response.
    let d = incoming(&mut ep, start + ms(1500), TransportKind::Udp, &opt);
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert_eq!(
        ep.send_response(start, id, response_to(&rq, 200, None)),
        Err(ApiError::InvalidState("Completed"))
    );
    let (_, ev) = run_to_end(&mut ep, start);
    assert_eq!(ev, [(ms(600) + ms(32000), Event::Terminated { id })]);
}

#[test]
fn non_invite_server_reliable_timer_j_zero() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Tls,
        &Message::Request(request("OPTIONS", "z9hG4bKo", 5)),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    ep.send_response(start, id, response_to(&rq, 200, Some("t")))
        .unwrap();
    let d = drain(&mut ep);
    assert_eq!(d.ev, [Event::Terminated { id }]);
    assert_eq!(ep.poll_timeout(), None);
}

// ---------- UAS 2xx retransmission (RFC 3261 §13.3.1.4) ----------

fn answered_invite(transport: TransportKind) -> (Endpoint, Instant, Request, Response) {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKs1", 3);
    let d = incoming(&mut ep, start, transport, &Message::Request(inv.clone()));
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    let ok = response_to(&rq, 200, Some("uas"));
    ep.send_response(start, id, ok.clone()).unwrap();
    let d = drain(&mut ep);
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert_eq!(
        d.ev,
        [Event::Terminated { id }],
        "2xx ends the server transaction"
    );
    (ep, start, inv, ok)
}

#[test]
fn uas_retransmits_2xx_until_ack() {
    let (mut ep, start, inv, _) = answered_invite(TransportKind::Udp);
    let mut times = Vec::new();
    for _ in 0..4 {
        let (t, d) = step(&mut ep).unwrap();
        assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
        times.push((t - start).as_millis());
    }
    assert_eq!(times, [500, 1500, 3500, 7500]);
    // A retransmitted INVITE after the 2xx is not a new call: the 2xx is sent again.
    let d = incoming(
        &mut ep,
        start + ms(7600),
        TransportKind::Udp,
        &Message::Request(inv.clone()),
    );
    assert_eq!(d.tx.len(), 1);
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert!(d.ev.is_empty());
    let mut ack = request("ACK", "z9hG4bKack2xx", 3);
    ack.headers.to_mut().unwrap().set_tag("uas");
    let d = incoming(
        &mut ep,
        start + ms(8000),
        TransportKind::Udp,
        &Message::Request(ack),
    );
    assert!(matches!(&d.ev[..], [Event::Ack { .. }]));
    assert_eq!(ep.poll_timeout(), None, "retransmission stopped");
}

#[test]
fn uas_2xx_without_ack_times_out_after_64_t1_also_on_tcp() {
    let (mut ep, start, _, _) = answered_invite(TransportKind::Tcp);
    let (tx, ev) = run_to_end(&mut ep, start);
    let times: Vec<u64> = tx.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        ev,
        [(
            T1 * 64,
            Event::AckTimeout {
                call_id: "call-1@192.0.2.10".into(),
                cseq: 3
            }
        )]
    );
}

// ---------- CANCEL races ----------

#[test]
fn cancel_before_final_response_gets_200_and_tu_sends_487() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKc1", 1);
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(inv.clone()),
    );
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!()
    };
    ep.send_response(start, id, response_to(&rq, 180, Some("t")))
        .unwrap();
    drain(&mut ep);
    let d = incoming(
        &mut ep,
        start + ms(300),
        TransportKind::Udp,
        &Message::Request(inv.cancel()),
    );
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert!(d.tx_str()[0].contains("CSeq: 1 CANCEL"));
    assert_eq!(d.ev, [Event::Cancelled { invite: id }]);
    ep.send_response(start + ms(300), id, response_to(&rq, 487, Some("t")))
        .unwrap();
    assert_eq!(
        drain(&mut ep).first_line(0),
        "SIP/2.0 487 Request Terminated"
    );
    // Retransmitted CANCEL: the stored 200 again.
    let d = incoming(
        &mut ep,
        start + ms(800),
        TransportKind::Udp,
        &Message::Request(inv.cancel()),
    );
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert!(d.ev.is_empty());
}

#[test]
fn cancel_after_2xx_has_no_effect_and_unknown_cancel_gets_481() {
    let (mut ep, start, inv, _) = answered_invite(TransportKind::Udp);
    let d = incoming(
        &mut ep,
        start + ms(100),
        TransportKind::Udp,
        &Message::Request(inv.cancel()),
    );
    assert_eq!(d.first_line(0), "SIP/2.0 200 OK");
    assert!(!d.ev.iter().any(|e| matches!(e, Event::Cancelled { .. })));
    let other = request("INVITE", "z9hG4bKnone", 9);
    let d = incoming(
        &mut ep,
        start + ms(100),
        TransportKind::Udp,
        &Message::Request(other.cancel()),
    );
    assert_eq!(
        d.first_line(0),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
}

#[test]
fn uac_cancel_races_with_200() {
    // UAC sends INVITE, then CANCEL (own transaction, same branch); the 200 for the INVITE
    // crosses the CANCEL. Both transactions see their own final responses.
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKrace", 1);
    let inv_id = ep
        .send_request(start, remote(TransportKind::Udp), inv.clone())
        .unwrap();
    let d = incoming(
        &mut ep,
        start + ms(50),
        TransportKind::Udp,
        &Message::Response(response_to(&inv, 180, Some("b"))),
    );
    assert_eq!(d.ev.len(), 1);
    let cancel = inv.cancel();
    let cancel_id = ep
        .send_request(start + ms(100), remote(TransportKind::Udp), cancel.clone())
        .unwrap();
    assert_ne!(inv_id, cancel_id);
    drain(&mut ep);
    let d = incoming(
        &mut ep,
        start + ms(120),
        TransportKind::Udp,
        &Message::Response(response_to(&inv, 200, Some("b"))),
    );
    assert!(
        matches!(&d.ev[..], [Event::Response { id, response }, Event::Terminated { .. }] if *id == inv_id && response.status.code() == 200)
    );
    let d = incoming(
        &mut ep,
        start + ms(130),
        TransportKind::Udp,
        &Message::Response(response_to(&cancel, 200, Some("b"))),
    );
    assert!(matches!(&d.ev[..], [Event::Response { id, .. }] if *id == cancel_id));
}

#[test]
fn uac_cancel_then_487_is_acked() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let inv = request("INVITE", "z9hG4bKc487", 4);
    let inv_id = ep
        .send_request(start, remote(TransportKind::Udp), inv.clone())
        .unwrap();
    incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Response(response_to(&inv, 183, Some("b"))),
    );
    ep.send_request(start + ms(10), remote(TransportKind::Udp), inv.cancel())
        .unwrap();
    drain(&mut ep);
    incoming(
        &mut ep,
        start + ms(20),
        TransportKind::Udp,
        &Message::Response(response_to(&inv.cancel(), 200, Some("b"))),
    );
    let d = incoming(
        &mut ep,
        start + ms(30),
        TransportKind::Udp,
        &Message::Response(response_to(&inv, 487, Some("b"))),
    );
    assert!(d.first_line(0).starts_with("ACK "));
    assert!(
        matches!(&d.ev[..], [Event::Response { id, response }] if *id == inv_id && response.status.code() == 487)
    );
}

// ---------- malformed input and keep-alives (R-SIP-4) ----------

#[test]
fn malformed_request_gets_stateless_400_and_keepalive_is_ignored() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let bad = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    ep.handle_input(start, remote(TransportKind::Udp), bad);
    let d = drain(&mut ep);
    assert!(d.first_line(0).starts_with("SIP/2.0 400 "));
    assert!(matches!(
        &d.ev[..],
        [Event::Malformed { answered: true, .. }]
    ));
    ep.handle_input(start, remote(TransportKind::Udp), b"\r\n\r\n");
    assert!(drain(&mut ep).tx.is_empty());
    ep.handle_input(
        start,
        remote(TransportKind::Udp),
        b"SIP/2.0 4294967301 x\r\n\r\n",
    );
    let d = drain(&mut ep);
    assert!(d.tx.is_empty(), "bad responses are dropped");
    assert!(matches!(
        &d.ev[..],
        [Event::Malformed {
            answered: false,
            ..
        }]
    ));
}

#[test]
fn send_request_api_errors_and_branch_generation() {
    let start = t0();
    let mut ep = Endpoint::new(Config::default());
    let mut no_via = request("OPTIONS", "z9hG4bKo", 1);
    no_via.headers.retain(|h| !matches!(h, Header::Via(_)));
    assert_eq!(
        ep.send_request(start, remote(TransportKind::Udp), no_via),
        Err(ApiError::MissingVia)
    );
    assert_eq!(
        ep.send_request(
            start,
            remote(TransportKind::Udp),
            request("ACK", "z9hG4bKa", 1)
        ),
        Err(ApiError::AckIsNotATransaction)
    );
    ep.send_request(
        start,
        remote(TransportKind::Udp),
        request("OPTIONS", "old2543branch", 1),
    )
    .unwrap();
    let d = drain(&mut ep);
    let sent = match parse(&d.tx[0]).unwrap() {
        Message::Request(r) => r,
        m => panic!("{m:?}"),
    };
    let b = sent.headers.top_via().unwrap().branch().unwrap().to_owned();
    assert!(
        b.starts_with("z9hG4bK") && b.len() == 7 + 24,
        "96 random bits: {b}"
    );
}

#[test]
fn stream_framing_errors_get_413_or_400_and_an_action() {
    use crate::framing::{Check, FramingConfig, check};
    let start = t0();
    let cfg = FramingConfig {
        max_header_bytes: 4096,
        max_body_bytes: 100,
    };
    let mut ep = Endpoint::new(Config::default());
    let head = "INVITE sip:bob@192.0.2.20 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKbig\r\n\
                From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: big\r\n\
                CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";
    let big = format!("{head}Content-Length: 5000\r\n\r\nv=0...");
    let Check::Error(err) = check(big.as_bytes(), &cfg) else {
        panic!()
    };
    assert_eq!(
        ep.handle_frame_error(start, remote(TransportKind::Tcp), big.as_bytes(), err),
        StreamAction::Close
    );
    let d = drain(&mut ep);
    assert_eq!(
        d.first_line(0),
        "SIP/2.0 413 Request Entity Too Large (body of 5000 bytes exceeds the cap)"
    );
    assert!(matches!(
        &d.ev[..],
        [Event::FramingError { answered: true, .. }]
    ));

    let none = format!("{head}\r\nOPTIONS");
    let Check::Error(err) = check(none.as_bytes(), &cfg) else {
        panic!()
    };
    let action = ep.handle_frame_error(start, remote(TransportKind::Tcp), none.as_bytes(), err);
    assert_eq!(action, StreamAction::Skip(none.len() - "OPTIONS".len()));
    assert!(drain(&mut ep).first_line(0).starts_with("SIP/2.0 400 "));

    let neg = format!("{head}Content-Length: -999\r\n\r\n");
    let Check::Error(err) = check(neg.as_bytes(), &cfg) else {
        panic!()
    };
    assert_eq!(
        ep.handle_frame_error(start, remote(TransportKind::Tcp), neg.as_bytes(), err),
        StreamAction::Close
    );
    assert!(drain(&mut ep).first_line(0).starts_with("SIP/2.0 400 "));
}

#[test]
fn over_the_transaction_cap_new_requests_get_503_with_retry_after() {
    let start = t0();
    let cfg = Config {
        max_transactions: 2,
        ..Config::default()
    };
    let mut ep = Endpoint::new(cfg);
    for b in ["z9hG4bK1", "z9hG4bK2"] {
        let d = incoming(
            &mut ep,
            start,
            TransportKind::Udp,
            &Message::Request(request("OPTIONS", b, 1)),
        );
        assert!(matches!(&d.ev[..], [Event::Request { .. }]));
    }
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(request("INVITE", "z9hG4bK3", 1)),
    );
    assert_eq!(d.first_line(0), "SIP/2.0 503 Service Unavailable");
    assert!(d.tx_str()[0].contains("Retry-After: 5\r\n"));
    assert!(matches!(
        &d.ev[..],
        [Event::Overloaded {
            method: Method::Invite,
            ..
        }]
    ));
    assert_eq!(ep.transaction_count(), 2);
    // Retransmissions of live transactions are still served.
    let d = incoming(
        &mut ep,
        start,
        TransportKind::Udp,
        &Message::Request(request("OPTIONS", "z9hG4bK1", 1)),
    );
    assert!(d.ev.is_empty());
}

#[test]
fn rfc2543_request_without_branch_is_matched_by_call_id_cseq_and_via() {
    // RFC 4475 inv2543: no branch parameter, no From tag.
    let start = t0();
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/sip/inv2543.sip"
    ))
    .unwrap();
    let mut ep = Endpoint::new(Config::default());
    ep.handle_input(start, remote(TransportKind::Udp), &data);
    let d = drain(&mut ep);
    let Event::Request {
        id, request: rq, ..
    } = d.ev[0].clone()
    else {
        panic!("{d:?}")
    };
    ep.send_response(start, id, response_to(&rq, 486, Some("t")))
        .unwrap();
    drain(&mut ep);
    // The retransmitted INVITE matches the same transaction and gets the 486 again.
    ep.handle_input(start + ms(500), remote(TransportKind::Udp), &data);
    let d = drain(&mut ep);
    assert!(d.ev.is_empty());
    assert_eq!(d.first_line(0), "SIP/2.0 486 Busy Here");
    // The ACK (same Call-ID, CSeq number, Via) confirms it.
    let ack =
        crate::transaction::client_invite_ack_for_tests(&rq, &response_to(&rq, 486, Some("t")));
    let d = incoming(
        &mut ep,
        start + ms(600),
        TransportKind::Udp,
        &Message::Request(ack),
    );
    assert!(d.ev.is_empty());
    assert_eq!(
        ep.transaction_state(id),
        Some(TransactionState::InviteServer(InviteServerState::Confirmed))
    );
}

/// Identifiers come from the seed the driver gives: the same seed, the same sequence (tests
/// stay deterministic); another seed, another sequence; tags have 64 random bits, branches
/// 96, Call-IDs 128.
#[test]
fn identifiers_follow_the_seed_and_are_wide() {
    let mk = |seed: [u8; 32]| Endpoint::new(Config::default().with_random_ids(seed));
    let (mut a, mut b, mut c) = (mk([1; 32]), mk([1; 32]), mk([2; 32]));
    let take = |e: &mut Endpoint| (e.new_tag(), e.new_branch(), e.new_call_id("gw"));
    let (ta, tb, tc) = (take(&mut a), take(&mut b), take(&mut c));
    assert_eq!(ta, tb);
    assert_ne!(ta.0, tc.0);
    assert_eq!(ta.0.len(), 16);
    assert_eq!(ta.1.len(), 7 + 24);
    let (id, host) = ta.2.split_once('@').unwrap();
    assert_eq!((id.len(), host), (32, "gw"));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        assert!(seen.insert(a.new_tag()));
        assert!(seen.insert(a.new_branch()));
    }
}

/// A request missing a mandatory header gets a 400 routed by its Via, whose reason names the
/// header; the headers that were readable are copied (RFC 3261 §8.2.6).
#[test]
fn missing_headers_get_a_400_naming_them() {
    let full = "OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKm1\r\n\
                From: <sip:a@x>;tag=1\r\nTo: <sip:gw>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
                Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    for (name, prefix) in [
        ("Call-ID", "Call-ID:"),
        ("CSeq", "CSeq:"),
        ("From", "From:"),
        ("To", "To:"),
        ("Max-Forwards", "Max-Forwards:"),
    ] {
        let text: String = full
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with(prefix))
            .collect();
        let mut ep = Endpoint::new(Config::default());
        ep.handle_input(t0(), remote(TransportKind::Udp), text.as_bytes());
        let d = drain(&mut ep);
        assert_eq!(d.tx.len(), 1, "{name}: answered");
        // Our parser would refuse a response without Call-ID/CSeq/From/To, so read the text.
        let text = String::from_utf8(d.tx[0].clone()).unwrap();
        let status = text.lines().next().unwrap();
        assert!(status.starts_with("SIP/2.0 400 "), "{name}: {status}");
        assert!(status.contains(name), "{name}: {status}");
        assert!(
            text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKm1"),
            "{text}"
        );
    }
    // RFC 2543 requests (no magic cookie) are still served without Max-Forwards.
    let old = full
        .replace("branch=z9hG4bKm1", "branch=old1")
        .replace("Max-Forwards: 70\r\n", "");
    let mut ep = Endpoint::new(Config::default());
    ep.handle_input(t0(), remote(TransportKind::Udp), old.as_bytes());
    assert!(drain(&mut ep).tx.is_empty(), "no 400: handed to the TU");
}

/// Datagrams get the stream caps: a 60 kB header line or 5 000 headers get 413.
#[test]
fn oversized_datagrams_get_413() {
    let head = "OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKo1\r\n\
                From: <sip:a@x>;tag=1\r\nTo: <sip:gw>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
                Max-Forwards: 70\r\n";
    let long_line = format!(
        "{head}X-Long: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(60_000)
    );
    let many: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("{head}{many}Content-Length: 0\r\n\r\n");
    for msg in [long_line, many] {
        let mut ep = Endpoint::new(Config::default());
        ep.handle_input(t0(), remote(TransportKind::Udp), msg.as_bytes());
        let d = drain(&mut ep);
        let Message::Response(r) = parse(&d.tx[0]).unwrap() else {
            panic!()
        };
        assert_eq!(r.status, StatusCode::REQUEST_ENTITY_TOO_LARGE);
        assert!(d.ev.iter().any(|e| matches!(e, Event::FramingError { .. })));
    }
}
