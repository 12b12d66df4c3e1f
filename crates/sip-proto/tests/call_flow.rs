//! Two endpoints over a simulated lossy UDP network with fake time (quinn-proto `Pair` style):
//! a full INVITE / 180 / 200 / ACK / BYE / 200 call through the public API, with the first
//! INVITE, the first 200 and the first ACK lost. Covers R-SIP-1 end to end: request
//! retransmission (Timer A), the UAS core's 2xx retransmission, ACK re-sent for a stray 2xx,
//! dialogs on both sides.

use std::time::{Duration, Instant};

use mediagate_sip_proto::message::{
    Contact, Header, Message, Method, NameAddr, Request, StatusCode, Uri, Via, ViaTransport, parse,
};
use mediagate_sip_proto::{
    Config, Dialog, DialogState, Endpoint, Event, Output, Remote, TransactionId, TransportKind,
};

#[allow(clippy::disallowed_methods)] // the test epoch; time then only jumps
fn t0() -> Instant {
    Instant::now()
}

fn config(seed: u64) -> Config {
    Config::default().with_id_seed(seed)
}

const LATENCY: Duration = Duration::from_millis(10);

fn addr(s: &str) -> Remote {
    Remote {
        transport: TransportKind::Udp,
        addr: s.parse().expect("addr"),
    }
}

struct Side {
    ep: Endpoint,
    me: Remote,
    events: Vec<(Instant, Event)>,
}

struct Net {
    now: Instant,
    a: Side,
    b: Side,
    /// (deliver at, to_b, bytes)
    inflight: Vec<(Instant, bool, Vec<u8>)>,
    /// First lines of messages to drop, once each, in order of appearance.
    drop_once: Vec<(bool, &'static str)>,
    log: Vec<String>,
}

impl Net {
    fn flush(&mut self) {
        for to_b in [true, false] {
            let side = if to_b { &mut self.a } else { &mut self.b };
            while let Some(o) = side.ep.poll_output() {
                match o {
                    Output::Transmit(t) => {
                        let line = String::from_utf8_lossy(&t.bytes)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let dir = if to_b { "A->B" } else { "B->A" };
                        if let Some(i) = self
                            .drop_once
                            .iter()
                            .position(|(d, l)| *d == to_b && line.starts_with(l))
                        {
                            self.drop_once.remove(i);
                            self.log.push(format!("{dir} LOST {line}"));
                            continue;
                        }
                        self.log.push(format!("{dir} {line}"));
                        self.inflight.push((self.now + LATENCY, to_b, t.bytes));
                    }
                    Output::Event(e) => side.events.push((self.now, e)),
                }
            }
        }
    }

    /// Advances to the next delivery or timer; returns false when nothing is left.
    fn step(&mut self) -> bool {
        self.flush();
        let next_msg = self.inflight.iter().map(|m| m.0).min();
        let next = [next_msg, self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return false };
        self.now = next;
        let (due, rest): (Vec<_>, Vec<_>) = self.inflight.drain(..).partition(|m| m.0 <= next);
        self.inflight = rest;
        for (_, to_b, bytes) in due {
            let (dst, src) = if to_b {
                (&mut self.b, self.a.me)
            } else {
                (&mut self.a, self.b.me)
            };
            dst.ep.handle_input(next, src, &bytes);
        }
        self.a.ep.handle_timeout(next);
        self.b.ep.handle_timeout(next);
        self.flush();
        true
    }
}

fn via(host: &str) -> Via {
    Via::new(ViaTransport::Udp, host, Some(5060), "")
}

#[test]
fn call_survives_lost_invite_200_and_ack() {
    let start = t0();
    let mut net = Net {
        now: start,
        a: Side {
            ep: Endpoint::new(config(1)),
            me: addr("192.0.2.1:5060"),
            events: vec![],
        },
        b: Side {
            ep: Endpoint::new(config(2)),
            me: addr("192.0.2.2:5060"),
            events: vec![],
        },
        inflight: vec![],
        drop_once: vec![(true, "INVITE"), (false, "SIP/2.0 200 OK"), (true, "ACK")],
        log: vec![],
    };
    let a_tag = net.a.ep.new_tag();
    let invite_text = format!(
        "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@192.0.2.1>;tag={a_tag}\r\nTo: <sip:bob@192.0.2.2>\r\nCall-ID: flow-1\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Length: 0\r\n\r\n"
    );
    let Ok(Message::Request(invite)) = parse(invite_text.as_bytes()) else {
        panic!("invite")
    };
    let b_remote = net.b.me;
    let invite_id = net
        .a
        .ep
        .send_request(start, b_remote, invite.clone())
        .expect("send INVITE");

    let mut a_dialog: Option<Dialog> = None;
    let mut b_dialog: Option<Dialog> = None;
    let mut b_invites = 0;
    let mut bye_id: Option<TransactionId> = None;
    let mut done = false;
    let mut guard = 0;
    while net.step() {
        guard += 1;
        assert!(guard < 500, "does not settle:\n{}", net.log.join("\n"));
        let now = net.now;
        // UAS (B) logic.
        for (_, e) in std::mem::take(&mut net.b.events) {
            match e {
                Event::Request { id, request, .. } if request.method == Method::Invite => {
                    b_invites += 1;
                    let tag = net.b.ep.new_tag();
                    let mut ringing = request.response(StatusCode::RINGING);
                    ringing.headers.to_mut().expect("To").set_tag(&tag);
                    net.b.ep.send_response(now, id, ringing).expect("180");
                    let mut ok = request.response(StatusCode::OK);
                    ok.headers.to_mut().expect("To").set_tag(&tag);
                    ok.headers
                        .push(Header::Contact(Contact::Addr(NameAddr::new(Uri::sip(
                            Some("bob"),
                            "192.0.2.2",
                            None,
                        )))));
                    b_dialog = Some(Dialog::new_uas(&request, &ok).expect("uas dialog"));
                    net.b.ep.send_response(now, id, ok).expect("200");
                }
                Event::Request { id, request, .. } if request.method == Method::Bye => {
                    b_dialog
                        .as_mut()
                        .expect("dialog")
                        .on_request(&request)
                        .expect("in dialog");
                    net.b
                        .ep
                        .send_response(now, id, request.response(StatusCode::OK))
                        .expect("200 BYE");
                }
                Event::Ack { request, .. } => {
                    b_dialog
                        .as_mut()
                        .expect("dialog")
                        .on_request(&request)
                        .expect("ACK in dialog");
                }
                _ => {}
            }
        }
        // UAC (A) logic.
        for (_, e) in std::mem::take(&mut net.a.events) {
            match e {
                Event::Response { id, response } if id == invite_id => {
                    if response.status.is_provisional() {
                        a_dialog = Some(Dialog::new_uac(&invite, &response).expect("early dialog"));
                    } else if response.status.is_success() {
                        let d = a_dialog.as_mut().expect("dialog");
                        d.on_response(&response);
                        let ack = d.create_ack(1, via("192.0.2.1"));
                        send_ack(&mut net.a.ep, b_remote, ack);
                    }
                }
                Event::StrayResponse { response, .. } if response.status.is_success() => {
                    // A retransmitted 2xx: the ACK was lost, send it again (RFC 3261 §13.2.2.4).
                    let d = a_dialog.as_ref().expect("dialog");
                    send_ack(&mut net.a.ep, b_remote, d.create_ack(1, via("192.0.2.1")));
                    // Hang up once the retransmissions prove the ACK got lost and was re-sent.
                    if bye_id.is_none() {
                        let bye = a_dialog
                            .as_mut()
                            .expect("dialog")
                            .create_request(Method::Bye, via("192.0.2.1"));
                        bye_id = Some(net.a.ep.send_request(now, b_remote, bye).expect("BYE"));
                    }
                }
                Event::Response { id, response }
                    if Some(id) == bye_id && response.status.is_success() =>
                {
                    done = true
                }
                _ => {}
            }
        }
    }
    let log = net.log.join("\n");
    assert!(done, "call did not complete:\n{log}");
    assert_eq!(
        b_invites, 1,
        "retransmitted INVITE must not start a second call:\n{log}"
    );
    assert_eq!(a_dialog.map(|d| d.state), Some(DialogState::Terminated));
    assert_eq!(b_dialog.map(|d| d.state), Some(DialogState::Terminated));
    assert!(
        log.contains("A->B LOST INVITE")
            && log.contains("B->A LOST SIP/2.0 200 OK")
            && log.contains("A->B LOST ACK")
    );
    // Everything settled: no transactions or timers left.
    assert_eq!(
        net.a.ep.transaction_count() + net.b.ep.transaction_count(),
        0,
        "{log}"
    );
    assert!(
        net.b
            .events
            .iter()
            .all(|(_, e)| !matches!(e, Event::AckTimeout { .. }))
    );
}

fn send_ack(ep: &mut Endpoint, to: Remote, mut ack: Request) {
    // The ACK for a 2xx is its own transaction-less request with a fresh branch.
    let branch = ep.new_branch();
    if let Some(Header::Via(v)) = ack
        .headers
        .0
        .iter_mut()
        .find(|h| matches!(h, Header::Via(_)))
    {
        v.params.retain(|p| p.name != "branch");
        v.params
            .push(mediagate_sip_proto::message::Param::new("branch", branch));
    }
    ep.send_stateless(to, &Message::Request(ack));
}
