//! The test's SIP signaling, sans-IO: it builds OPTIONS, INVITE, ACK, CANCEL and BYE, matches
//! what comes back to the request in progress, and answers the few requests a far end may send
//! us. Bytes and `now` go in; bytes to send, events and a deadline come out. The driver owns
//! the connection and the clock.
//!
//! One request is in progress at a time (the test is strictly sequential), so a "transaction"
//! here is just the pending request and its branch; matching follows RFC 3261 §17.1.3 (top Via
//! branch, CSeq number and method) plus the Call-ID. The dialog of the test call is
//! `mediagate_sip_proto::Dialog`, which builds the ACK for the 2xx and the BYE.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediagate_sip_proto::Dialog;
use mediagate_sip_proto::framing::{self, Check, FramingConfig};
use mediagate_sip_proto::message::{
    BRANCH_MAGIC_COOKIE, CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Request,
    Response, StatusCode, Uri, Via, ViaTransport, ip_host, parse,
};

use super::target::Transport;

/// The user part we put in From and Contact.
pub(crate) const PROBE_USER: &str = "mediagate-probe";

/// Call-IDs, tags, branches and other per-run identifiers from a seed, so the sans-IO code
/// stays deterministic under test. The driver seeds it from the operating system's RNG.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    state: u64,
}

impl Ids {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 pseudo-random bits (SplitMix64).
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fresh Via branch: the RFC 3261 magic cookie and 16 hex digits.
    pub(crate) fn branch(&mut self) -> String {
        format!("{BRANCH_MAGIC_COOKIE}{:016x}", self.next_u64())
    }

    /// A fresh From tag.
    pub(crate) fn tag(&mut self) -> String {
        format!("{:012x}", self.next_u64() >> 16)
    }

    /// A fresh Call-ID at `host`.
    pub(crate) fn call_id(&mut self, host: &str) -> String {
        format!("{:016x}@{host}", self.next_u64())
    }
}

/// One item cut from the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete, parsed message.
    Message(Box<Message>),
    /// A double-CRLF keep-alive ping: answer with [`PONG`] (RFC 5626 §3.5.1).
    Ping,
}

/// The keep-alive answer to a [`Frame::Ping`].
pub(crate) const PONG: &[u8] = b"\r\n";

/// The far end's byte stream is not usable SIP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamError {
    /// Framing failed (no or bad Content-Length, oversized message).
    #[error("the far end's SIP stream is not well framed: {0}")]
    Framing(framing::FrameError),
    /// A framed message does not parse.
    #[error("the far end sent a message that does not parse: {0}")]
    Parse(String),
}

/// Cuts a TCP/TLS byte stream into SIP messages with [`framing::check`] (Content-Length,
/// size caps) and parses them.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    config: FramingConfig,
}

impl Framer {
    /// Appends bytes read from the connection.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. A framing or parse
    /// error is final: the stream cannot be resynchronised reliably.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            match framing::check(&self.buf, &self.config) {
                Check::Incomplete => return Ok(None),
                Check::KeepAlive { len, pong } => {
                    self.buf.drain(..len);
                    if pong {
                        return Ok(Some(Frame::Ping));
                    }
                }
                Check::Complete(len) => {
                    let parsed = parse(&self.buf[..len]);
                    self.buf.drain(..len);
                    return match parsed {
                        Ok(m) => Ok(Some(Frame::Message(Box::new(m)))),
                        Err(e) => Err(StreamError::Parse(e.to_string())),
                    };
                }
                Check::Error(e) => return Err(StreamError::Framing(e)),
            }
        }
    }
}

/// `SIP/2.0 404 Not Found`: how a response is named in the report.
pub(crate) fn status_line(r: &Response) -> String {
    format!("SIP/2.0 {} {}", r.status, r.reason)
}

/// What a message from the far end meant for the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A provisional (1xx) response to the request in progress.
    Provisional(Response),
    /// The final response to the request in progress, `rtt` after it was sent. For an INVITE,
    /// `ack` is the ACK to send now (for a 2xx: the dialog's ACK; otherwise the transaction's).
    Final {
        /// The response.
        response: Box<Response>,
        /// Time from sending the request to this response.
        rtt: Duration,
        /// ACK to send (INVITE only).
        ack: Option<Vec<u8>>,
    },
    /// A 2xx to the INVITE cannot establish a dialog (no To tag, no Contact): the call fails.
    BadFinal {
        /// The response.
        response: Box<Response>,
        /// Why it is unusable.
        reason: String,
    },
    /// A retransmission of the INVITE's 2xx: send the ACK again.
    Retransmitted2xx {
        /// The ACK to send again.
        ack: Vec<u8>,
    },
    /// A request from the far end, with our answer (none for ACK).
    Request {
        /// Its method.
        method: Method,
        /// Our response, to send on the same connection.
        answer: Option<Vec<u8>>,
        /// The far end hung up our test call (a BYE in our dialog).
        ends_call: bool,
    },
    /// A response that belongs to nothing in progress (late or stray); ignored.
    Unmatched(String),
}

/// The request in progress.
#[derive(Debug, Clone)]
struct Pending {
    request: Request,
    branch: String,
    sent_at: Instant,
    provisional: Vec<StatusCode>,
}

/// The pending request did not get a final response in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimedOut {
    /// The method of the request.
    pub(crate) method: Method,
    /// The provisional responses seen before giving up.
    pub(crate) provisional: Vec<StatusCode>,
    /// A CANCEL to send (an INVITE that got a provisional response).
    pub(crate) cancel: Option<Vec<u8>>,
}

/// The test call: our INVITE and, once answered 2xx, its dialog and ACK.
#[derive(Debug, Clone)]
struct Call {
    invite: Request,
    dialog: Option<Dialog>,
    ack: Option<Vec<u8>>,
    ended_by_far_end: bool,
}

/// The signaling state of one test: the OPTIONS series and the test call.
#[derive(Debug)]
pub(crate) struct Signaling {
    local: SocketAddr,
    transport: Transport,
    target: Uri,
    timeout: Duration,
    ids: Ids,
    options_call_id: String,
    options_tag: String,
    options_cseq: u32,
    pending: Option<Pending>,
    call: Option<Call>,
}

impl Signaling {
    /// Signaling from our end of the connection `local` to `target` (the Request-URI) over
    /// `transport`; each request waits at most `timeout` for its final response.
    pub(crate) fn new(
        local: SocketAddr,
        transport: Transport,
        target: Uri,
        timeout: Duration,
        mut ids: Ids,
    ) -> Self {
        let host = ip_host(local.ip());
        Self {
            local,
            transport,
            target,
            timeout,
            options_call_id: ids.call_id(&host),
            options_tag: ids.tag(),
            options_cseq: 0,
            ids,
            pending: None,
            call: None,
        }
    }

    fn via(&mut self) -> (Via, String) {
        let branch = self.ids.branch();
        let transport = match self.transport {
            Transport::Tcp => ViaTransport::Tcp,
            Transport::Tls => ViaTransport::Tls,
        };
        let mut via = Via::new(
            transport,
            ip_host(self.local.ip()),
            Some(self.local.port()),
            &branch,
        );
        via.params.push(Param::flag("rport"));
        (via, branch)
    }

    fn from(&self, tag: &str) -> NameAddr {
        NameAddr::new(Uri::sip(Some(PROBE_USER), &ip_host(self.local.ip()), None)).with_tag(tag)
    }

    fn to(&self) -> NameAddr {
        let mut uri = self.target.clone();
        uri.params.clear();
        uri.headers.clear();
        uri.password = None;
        NameAddr::new(uri)
    }

    fn contact(&self) -> NameAddr {
        let mut uri = Uri::sip(
            Some(PROBE_USER),
            &ip_host(self.local.ip()),
            Some(self.local.port()),
        );
        uri.params.push(Param::new(
            "transport",
            self.transport.as_str().to_ascii_lowercase(),
        ));
        NameAddr::new(uri)
    }

    fn request(
        &mut self,
        method: Method,
        call_id: String,
        tag: &str,
        seq: u32,
        body: Option<Vec<u8>>,
    ) -> (Request, String) {
        let (via, branch) = self.via();
        let mut h = Headers::default();
        h.push(Header::Via(via));
        h.push(Header::MaxForwards(70));
        h.push(Header::From(self.from(tag)));
        h.push(Header::To(self.to()));
        h.push(Header::CallId(call_id));
        h.push(Header::CSeq(CSeq {
            seq,
            method: method.clone(),
        }));
        h.push(Header::Contact(Contact::Addr(self.contact())));
        h.push(Header::Other {
            name: "User-Agent".into(),
            value: concat!(
                "mediagate/",
                env!("CARGO_PKG_VERSION"),
                " test-connectivity"
            )
            .into(),
        });
        if method == Method::Options {
            h.push(Header::Other {
                name: "Accept".into(),
                value: "application/sdp".into(),
            });
        }
        if method == Method::Invite {
            h.push(Header::Other {
                name: "Allow".into(),
                value: "INVITE, ACK, BYE, CANCEL, OPTIONS".into(),
            });
        }
        if body.is_some() {
            h.push(Header::ContentType("application/sdp".into()));
        }
        h.push(Header::ContentLength(0));
        let request = Request {
            method,
            uri: self.target.clone(),
            headers: h,
            body: body.unwrap_or_default(),
        };
        (request, branch)
    }

    fn start(&mut self, now: Instant, request: Request, branch: String) -> Vec<u8> {
        let bytes = request.to_bytes();
        self.pending = Some(Pending {
            request,
            branch,
            sent_at: now,
            provisional: Vec::new(),
        });
        bytes
    }

    /// The next OPTIONS of the series (same Call-ID and From tag, CSeq 1, 2, 3, …), sent at
    /// `now`. One request is in progress at a time: a new one abandons the previous one.
    pub(crate) fn options(&mut self, now: Instant) -> Vec<u8> {
        self.options_cseq += 1;
        let (call_id, tag, seq) = (
            self.options_call_id.clone(),
            self.options_tag.clone(),
            self.options_cseq,
        );
        let (request, branch) = self.request(Method::Options, call_id, &tag, seq, None);
        self.start(now, request, branch)
    }

    /// The INVITE of the test call (new Call-ID and tag, CSeq 1) with the SDP offer `sdp`.
    pub(crate) fn invite(&mut self, now: Instant, sdp: Vec<u8>) -> Vec<u8> {
        let call_id = self.ids.call_id(&ip_host(self.local.ip()));
        let tag = self.ids.tag();
        let (request, branch) = self.request(Method::Invite, call_id, &tag, 1, Some(sdp));
        self.call = Some(Call {
            invite: request.clone(),
            dialog: None,
            ack: None,
            ended_by_far_end: false,
        });
        self.start(now, request, branch)
    }

    /// The BYE ending the test call, or `None` when there is no established call (never
    /// answered 2xx, or the far end already hung up).
    pub(crate) fn bye(&mut self, now: Instant) -> Option<Vec<u8>> {
        let call = self.call.as_mut()?;
        if call.ended_by_far_end {
            return None;
        }
        let mut dialog = call.dialog.take()?;
        let (via, branch) = self.via();
        let request = dialog.create_request(Method::Bye, via);
        if let Some(call) = self.call.as_mut() {
            call.dialog = Some(dialog);
        }
        Some(self.start(now, request, branch))
    }

    /// When the request in progress gives up waiting for its final response.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.sent_at + self.timeout)
    }

    /// Gives up on the request in progress if its deadline has passed. For an INVITE that got
    /// a provisional response, the CANCEL to send (RFC 3261 §9.1).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<TimedOut> {
        if self.deadline().is_none_or(|d| now < d) {
            return None;
        }
        let p = self.pending.take()?;
        let cancel = (p.request.method == Method::Invite && !p.provisional.is_empty())
            .then(|| p.request.cancel().to_bytes());
        Some(TimedOut {
            method: p.request.method,
            provisional: p.provisional,
            cancel,
        })
    }

    /// A message from the far end, received at `now`.
    pub(crate) fn handle(&mut self, now: Instant, message: Message) -> Incoming {
        match message {
            Message::Request(r) => self.handle_request(r),
            Message::Response(r) => self.handle_response(now, r),
        }
    }

    fn matches_pending(&self, r: &Response) -> bool {
        let Some(p) = &self.pending else {
            return false;
        };
        let req = &p.request.headers;
        r.headers.call_id() == req.call_id()
            && r.headers.cseq() == req.cseq()
            && r.headers.top_via().and_then(Via::branch) == Some(p.branch.as_str())
    }

    fn handle_response(&mut self, now: Instant, r: Response) -> Incoming {
        if !self.matches_pending(&r) {
            // A retransmitted 2xx to our INVITE (after the ACK went out): ACK again.
            if let Some(call) = &self.call
                && let Some(ack) = &call.ack
                && r.status.is_success()
                && r.headers.call_id() == call.invite.headers.call_id()
                && r.headers.cseq() == call.invite.headers.cseq()
            {
                return Incoming::Retransmitted2xx { ack: ack.clone() };
            }
            return Incoming::Unmatched(status_line(&r));
        }
        if r.status.is_provisional() {
            if let Some(p) = self.pending.as_mut() {
                p.provisional.push(r.status);
            }
            return Incoming::Provisional(r);
        }
        let Some(p) = self.pending.take() else {
            return Incoming::Unmatched(status_line(&r));
        };
        let rtt = now.saturating_duration_since(p.sent_at);
        if p.request.method != Method::Invite {
            return Incoming::Final {
                response: Box::new(r),
                rtt,
                ack: None,
            };
        }
        if !r.status.is_success() {
            // RFC 3261 §17.1.1.3: the transaction ACKs a non-2xx final response itself.
            let ack = non_2xx_ack(&p.request, &r).to_bytes();
            return Incoming::Final {
                response: Box::new(r),
                rtt,
                ack: Some(ack),
            };
        }
        let dialog = match Dialog::new_uac(&p.request, &r) {
            Ok(d) => d,
            Err(e) => {
                return Incoming::BadFinal {
                    response: Box::new(r),
                    reason: format!("the 2xx cannot establish a dialog: {e}"),
                };
            }
        };
        let (via, _) = self.via();
        let ack = dialog.create_ack(dialog.invite_seq, via).to_bytes();
        if let Some(call) = self.call.as_mut() {
            call.dialog = Some(dialog);
            call.ack = Some(ack.clone());
        }
        Incoming::Final {
            response: Box::new(r),
            rtt,
            ack: Some(ack),
        }
    }

    fn handle_request(&mut self, r: Request) -> Incoming {
        let method = r.method.clone();
        let (status, ends_call) = match &r.method {
            Method::Ack => {
                return Incoming::Request {
                    method,
                    answer: None,
                    ends_call: false,
                };
            }
            Method::Bye => match self.call.as_mut() {
                Some(call)
                    if call
                        .dialog
                        .as_ref()
                        .is_some_and(|d| d.matches_request(&r.headers)) =>
                {
                    call.ended_by_far_end = true;
                    (StatusCode::OK, true)
                }
                _ => (StatusCode::CALL_DOES_NOT_EXIST, false),
            },
            Method::Options => (StatusCode::OK, false),
            _ => (StatusCode::NOT_IMPLEMENTED, false),
        };
        Incoming::Request {
            method,
            answer: Some(r.response(status).to_bytes()),
            ends_call,
        }
    }
}

/// The ACK for a non-2xx final response to `invite` (RFC 3261 §17.1.1.3): same Request-URI,
/// Call-ID, From, top Via and Route; To from the response; CSeq number of the INVITE.
fn non_2xx_ack(invite: &Request, response: &Response) -> Request {
    let mut h = Headers::default();
    if let Some(v) = invite.headers.top_via() {
        h.push(Header::Via(v.clone()));
    }
    h.push(Header::MaxForwards(70));
    for header in invite.headers.iter() {
        match header {
            Header::From(_) | Header::CallId(_) | Header::Route(_) => h.push(header.clone()),
            _ => {}
        }
    }
    if let Some(to) = response.headers.to().or(invite.headers.to()) {
        h.push(Header::To(to.clone()));
    }
    if let Some(c) = invite.headers.cseq() {
        h.push(Header::CSeq(CSeq {
            seq: c.seq,
            method: Method::Ack,
        }));
    }
    h.push(Header::ContentLength(0));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers: h,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the test epoch; time then only moves by offsets
    fn epoch() -> Instant {
        Instant::now()
    }

    fn signaling(transport: Transport) -> Signaling {
        Signaling::new(
            "127.0.0.1:40000".parse().unwrap(),
            transport,
            Uri::parse("sip:echo@192.0.2.5:5061;transport=tls").unwrap(),
            Duration::from_secs(2),
            Ids::new(7),
        )
    }

    fn request_of(bytes: &[u8]) -> Request {
        match parse(bytes).unwrap() {
            Message::Request(r) => r,
            Message::Response(r) => panic!("not a request: {r:?}"),
        }
    }

    fn response_of(bytes: &[u8]) -> Response {
        match parse(bytes).unwrap() {
            Message::Response(r) => r,
            Message::Request(r) => panic!("not a response: {r:?}"),
        }
    }

    /// The far end's answer to `req`, with a To tag and (for 2xx to INVITE) a Contact.
    fn answer(req: &Request, code: u16) -> Response {
        let mut r = req.response(StatusCode::new(code).unwrap());
        if code > 100 {
            r.headers.to_mut().unwrap().set_tag("far1");
        }
        if req.method == Method::Invite && (200..300).contains(&code) {
            r.headers.push(Header::Contact(Contact::Addr(NameAddr::new(
                Uri::parse("sip:uas@192.0.2.5:5070;transport=tcp").unwrap(),
            ))));
        }
        r
    }

    #[test]
    fn options_carry_every_mandatory_header() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tls);
        let first = request_of(&s.options(t0));
        assert_eq!(first.method, Method::Options);
        assert_eq!(
            first.uri.to_string(),
            "sip:echo@192.0.2.5:5061;transport=tls"
        );
        let h = &first.headers;
        let via = h.top_via().unwrap();
        assert_eq!(via.transport, ViaTransport::Tls);
        assert_eq!(via.sent_by(), "127.0.0.1:40000");
        assert!(via.branch().unwrap().starts_with("z9hG4bK"));
        assert_eq!(via.rport(), Some(None), "rport asked for");
        assert_eq!(h.max_forwards(), Some(70));
        assert!(h.from().unwrap().tag().is_some_and(|t| !t.is_empty()));
        assert_eq!(h.to().unwrap().tag(), None);
        assert_eq!(h.to().unwrap().uri.to_string(), "sip:echo@192.0.2.5:5061");
        assert!(h.call_id().unwrap().ends_with("@127.0.0.1"));
        assert_eq!(
            h.cseq(),
            Some(&CSeq {
                seq: 1,
                method: Method::Options
            })
        );
        assert_eq!(
            h.contact().unwrap().uri.to_string(),
            "sip:mediagate-probe@127.0.0.1:40000;transport=tls"
        );
        assert_eq!(h.content_length(), Some(0));
        // The series keeps Call-ID and tag, counts CSeq up and uses a new branch each time.
        let second = request_of(&s.options(t0));
        assert_eq!(second.headers.call_id(), h.call_id());
        assert_eq!(
            second.headers.from().unwrap().tag(),
            h.from().unwrap().tag()
        );
        assert_eq!(second.headers.cseq().unwrap().seq, 2);
        assert_ne!(
            second.headers.top_via().unwrap().branch(),
            via.branch(),
            "a new transaction"
        );
    }

    #[test]
    fn a_response_is_matched_by_branch_cseq_and_call_id_and_timed() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let req = request_of(&s.options(t0));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
        // A response to another branch is not ours.
        let mut other = answer(&req, 200);
        other.headers.top_via_mut().unwrap().params[0] = Param::new("branch", "z9hG4bKother");
        assert!(matches!(
            s.handle(t0, Message::Response(other)),
            Incoming::Unmatched(_)
        ));
        assert!(matches!(
            s.handle(
                t0 + Duration::from_millis(1),
                Message::Response(answer(&req, 100))
            ),
            Incoming::Provisional(_)
        ));
        match s.handle(
            t0 + Duration::from_millis(7),
            Message::Response(answer(&req, 200)),
        ) {
            Incoming::Final { response, rtt, ack } => {
                assert_eq!(status_line(&response), "SIP/2.0 200 OK");
                assert_eq!(rtt, Duration::from_millis(7));
                assert_eq!(ack, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.deadline(), None, "nothing in progress any more");
        // A late duplicate is ignored.
        assert!(matches!(
            s.handle(t0, Message::Response(answer(&req, 200))),
            Incoming::Unmatched(_)
        ));
    }

    #[test]
    fn invite_2xx_is_acked_in_the_dialog_and_bye_follows_the_contact() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let invite = request_of(&s.invite(t0, b"v=0\r\n".to_vec()));
        assert_eq!(invite.method, Method::Invite);
        assert_eq!(invite.headers.content_type(), Some("application/sdp"));
        assert_eq!(invite.body, b"v=0\r\n");
        let ok = answer(&invite, 200);
        let ack = match s.handle(t0, Message::Response(ok.clone())) {
            Incoming::Final { ack: Some(ack), .. } => request_of(&ack),
            other => panic!("{other:?}"),
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri.to_string(), "sip:uas@192.0.2.5:5070;transport=tcp");
        assert_eq!(ack.headers.cseq().unwrap().seq, 1);
        assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
        assert_eq!(ack.headers.to().unwrap().tag(), Some("far1"));
        assert_eq!(ack.headers.call_id(), invite.headers.call_id());
        assert_ne!(
            ack.headers.top_via().unwrap().branch(),
            invite.headers.top_via().unwrap().branch(),
            "the ACK of a 2xx is a transaction of its own"
        );
        // A retransmitted 2xx gets the same ACK again.
        match s.handle(t0, Message::Response(ok)) {
            Incoming::Retransmitted2xx { ack: again } => assert_eq!(request_of(&again), ack),
            other => panic!("{other:?}"),
        }
        let bye = request_of(&s.bye(t0).unwrap());
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:uas@192.0.2.5:5070;transport=tcp");
        assert_eq!(bye.headers.cseq().unwrap().seq, 2);
        assert_eq!(bye.headers.to().unwrap().tag(), Some("far1"));
        match s.handle(
            t0 + Duration::from_millis(3),
            Message::Response(answer(&bye, 200)),
        ) {
            Incoming::Final { rtt, ack: None, .. } => assert_eq!(rtt, Duration::from_millis(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invite_failure_is_acked_by_the_transaction() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let invite = request_of(&s.invite(t0, b"v=0\r\n".to_vec()));
        match s.handle(t0, Message::Response(answer(&invite, 486))) {
            Incoming::Final {
                response,
                ack: Some(ack),
                ..
            } => {
                assert_eq!(status_line(&response), "SIP/2.0 486 Busy Here");
                let ack = request_of(&ack);
                assert_eq!(ack.method, Method::Ack);
                assert_eq!(ack.uri, invite.uri);
                assert_eq!(
                    ack.headers.top_via().unwrap().branch(),
                    invite.headers.top_via().unwrap().branch(),
                    "same transaction as the INVITE"
                );
                assert_eq!(ack.headers.to().unwrap().tag(), Some("far1"));
                assert_eq!(ack.headers.cseq().unwrap().seq, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.bye(t0), None, "no dialog, no BYE");
    }

    #[test]
    fn a_2xx_without_contact_cannot_make_a_dialog() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let invite = request_of(&s.invite(t0, b"v=0\r\n".to_vec()));
        let mut ok = invite.response(StatusCode::OK);
        ok.headers.to_mut().unwrap().set_tag("far1");
        match s.handle(t0, Message::Response(ok)) {
            Incoming::BadFinal { reason, .. } => assert!(reason.contains("Contact"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_cancels_a_ringing_invite_only() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let invite = request_of(&s.invite(t0, b"v=0\r\n".to_vec()));
        assert_eq!(s.handle_timeout(t0 + Duration::from_millis(1999)), None);
        s.handle(t0, Message::Response(answer(&invite, 180)));
        let out = s.handle_timeout(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(out.method, Method::Invite);
        assert_eq!(out.provisional, vec![StatusCode::RINGING]);
        let cancel = request_of(&out.cancel.unwrap());
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(
            cancel.headers.top_via().unwrap().branch(),
            invite.headers.top_via().unwrap().branch()
        );
        // OPTIONS that times out: nothing to cancel.
        s.options(t0);
        let out = s.handle_timeout(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(out.method, Method::Options);
        assert_eq!(out.cancel, None);
    }

    #[test]
    fn far_end_requests_are_answered_and_its_bye_ends_the_call() {
        let t0 = epoch();
        let mut s = signaling(Transport::Tcp);
        let invite = request_of(&s.invite(t0, b"v=0\r\n".to_vec()));
        s.handle(t0, Message::Response(answer(&invite, 200)));
        // The far end's BYE in our dialog: From/To swapped.
        let mut bye = invite.clone();
        bye.method = Method::Bye;
        bye.body.clear();
        let mut h = Headers::default();
        h.push(Header::Via(Via::new(
            ViaTransport::Tcp,
            "192.0.2.5",
            Some(5070),
            "z9hG4bKfar",
        )));
        let mut from = invite.headers.to().unwrap().clone();
        from.set_tag("far1");
        h.push(Header::From(from));
        h.push(Header::To(invite.headers.from().unwrap().clone()));
        h.push(Header::CallId(invite.headers.call_id().unwrap().into()));
        h.push(Header::CSeq(CSeq {
            seq: 9,
            method: Method::Bye,
        }));
        bye.headers = h;
        match s.handle(t0, Message::Request(bye.clone())) {
            Incoming::Request {
                method: Method::Bye,
                answer: Some(a),
                ends_call: true,
            } => {
                let a = response_of(&a);
                assert_eq!(a.status, StatusCode::OK);
                assert_eq!(a.headers.cseq().unwrap().seq, 9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.bye(t0), None, "the far end already hung up");
        // A BYE for another call: 481. OPTIONS: 200. Anything else: 501. ACK: no answer.
        bye.headers.retain(|h| !matches!(h, Header::CallId(_)));
        bye.headers.push(Header::CallId("other".into()));
        let code = |i: Incoming| match i {
            Incoming::Request {
                answer: Some(a), ..
            } => response_of(&a).status.code(),
            other => panic!("{other:?}"),
        };
        assert_eq!(code(s.handle(t0, Message::Request(bye.clone()))), 481);
        bye.method = Method::Options;
        assert_eq!(code(s.handle(t0, Message::Request(bye.clone()))), 200);
        bye.method = Method::Info;
        assert_eq!(code(s.handle(t0, Message::Request(bye.clone()))), 501);
        bye.method = Method::Ack;
        assert!(matches!(
            s.handle(t0, Message::Request(bye)),
            Incoming::Request { answer: None, .. }
        ));
    }

    #[test]
    fn framer_cuts_split_and_joined_messages_and_answers_pings() {
        let mut f = Framer::default();
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabc";
        f.push(&msg[..20]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&msg[20..]);
        f.push(b"\r\n\r\n");
        f.push(msg);
        assert!(
            matches!(f.next_frame(), Ok(Some(Frame::Message(_)))),
            "{:?}",
            parse(msg)
        );
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        match f.next_frame() {
            Ok(Some(Frame::Message(m))) => match *m {
                Message::Response(r) => assert_eq!(r.body, b"abc"),
                Message::Request(_) => panic!("not a response"),
            },
            other => panic!("{other:?}"),
        }
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"SIP/2.0 200 OK\r\nCall-ID: c\r\n\r\n");
        assert!(matches!(f.next_frame(), Err(StreamError::Framing(_))));
        // Framed but not SIP.
        let mut f = Framer::default();
        f.push(b"HELLO\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(f.next_frame(), Err(StreamError::Parse(_))));
    }
}
