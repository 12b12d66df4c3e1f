//! The endpoint: demultiplexes messages into transactions (RFC 3261 §17.1.3, §17.2.3), owns
//! them by [`TransactionId`], runs the UAS 2xx retransmissions, and queues outputs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use rand_core::{RngCore as _, SeedableRng as _};

use crate::config::Config;
use crate::dialog::Accepted2xx;
use crate::error::ApiError;
use crate::framing::{FrameError, is_keepalive_datagram};
use crate::message::{
    BRANCH_MAGIC_COOKIE, Header, Message, Method, NameAddr, ParseError, PartialHeaders, Request,
    Response, RetryAfter, StatusCode, parse,
};
use crate::transaction::{
    ClientInvite, ClientNonInvite, Ctx, InviteClientState, InviteServerState, NonInviteClientState,
    NonInviteServerState, ServerInvite, ServerNonInvite, Timer, TimerTable, TransactionId,
    TransactionState,
};
use crate::{Remote, TransportKind};

/// Bytes to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination (for streams: the connection to that peer).
    pub remote: Remote,
    /// One complete SIP message.
    pub bytes: Vec<u8>,
}

/// Something the TU must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new request created server transaction `id`. Answer with
    /// [`Endpoint::send_response`]. Unknown methods arrive here too (answer 501).
    Request {
        /// The server transaction.
        id: TransactionId,
        /// Where it came from.
        remote: Remote,
        /// The request (top Via annotated with received/rport).
        request: Request,
    },
    /// An ACK that matched no INVITE server transaction: the ACK for a 2xx (end-to-end,
    /// RFC 3261 §17.1.1.3). If it matched a pending 2xx, its retransmission stopped.
    Ack {
        /// Where it came from.
        remote: Remote,
        /// The ACK.
        request: Request,
    },
    /// A CANCEL matched INVITE server transaction `invite`, which is still proceeding. The
    /// endpoint answered the CANCEL with 200; the TU should answer the INVITE with 487.
    Cancelled {
        /// The INVITE server transaction.
        invite: TransactionId,
    },
    /// A response for client transaction `id`.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// A response matching no client transaction, e.g. a retransmitted 2xx to INVITE after the
    /// transaction ended: the dialog layer re-sends its ACK (RFC 3261 §13.2.2.4).
    StrayResponse {
        /// Where it came from.
        remote: Remote,
        /// The response.
        response: Response,
    },
    /// Timer B or F (client: no final response) or H (server: no ACK) fired.
    Timeout {
        /// The transaction.
        id: TransactionId,
        /// Which timer.
        timer: Timer,
    },
    /// The driver reported a transport error for the transaction.
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// The transaction ended and its id is no longer valid.
    Terminated {
        /// The transaction.
        id: TransactionId,
    },
    /// A 2xx to INVITE was retransmitted for 64*T1 without an ACK: the TU should end the
    /// session with BYE (RFC 3261 §13.3.1.4).
    AckTimeout {
        /// Call-ID of the dialog.
        call_id: String,
        /// CSeq number of the INVITE.
        cseq: u32,
    },
    /// A stream could not be framed ([`Endpoint::handle_frame_error`]). `answered` is true if
    /// a 400/413 was queued.
    FramingError {
        /// The connection's peer.
        remote: Remote,
        /// What was wrong.
        error: FrameError,
        /// An error response was sent.
        answered: bool,
    },
    /// A new request was refused with 503 + Retry-After because `Config::max_transactions`
    /// transactions are live.
    Overloaded {
        /// Where it came from.
        remote: Remote,
        /// Its method.
        method: Method,
    },
    /// An input could not be parsed. `answered` is true if a 400/505 was queued.
    Malformed {
        /// Where it came from.
        remote: Remote,
        /// The parse error.
        error: ParseError,
        /// A stateless error response was sent.
        answered: bool,
    },
}

/// What a stream driver does after [`Endpoint::handle_frame_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// Drop this many bytes from the front of the buffer and keep reading.
    Skip(usize),
    /// Flush queued transmits, then close the connection.
    Close,
}

/// One output of [`Endpoint::poll_output`].
// Outputs are drained right after each input; boxing the larger variant would only add an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Transmit(Transmit),
    /// Tell the TU.
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    /// RFC 3261 §17.2.3: branch + sent-by + method (ACK counts as INVITE).
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 fallback when the branch lacks the magic cookie.
    Rfc2543 {
        call_id: String,
        cseq: u32,
        from_tag: Option<String>,
        sent_by: String,
        method: Method,
    },
}

fn server_key(req: &Request, method: Method) -> Option<ServerKey> {
    let via = req.headers.top_via()?;
    match via.branch() {
        Some(b) if b.len() > BRANCH_MAGIC_COOKIE.len() && b.starts_with(BRANCH_MAGIC_COOKIE) => {
            Some(ServerKey::Rfc3261 {
                branch: b.to_owned(),
                sent_by: via.sent_by(),
                method,
            })
        }
        _ => Some(ServerKey::Rfc2543 {
            call_id: req.headers.call_id()?.to_owned(),
            cseq: req.headers.cseq()?.seq,
            from_tag: req
                .headers
                .from()
                .and_then(NameAddr::tag)
                .map(str::to_owned),
            sent_by: via.sent_by(),
            method,
        }),
    }
}

#[allow(clippy::enum_variant_names)] // the RFC's own names
enum Kind {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Kind {
    fn state(&self) -> TransactionState {
        match self {
            Kind::ClientInvite(t) => TransactionState::InviteClient(t.state),
            Kind::ClientNonInvite(t) => TransactionState::NonInviteClient(t.state),
            Kind::ServerInvite(t) => TransactionState::InviteServer(t.state),
            Kind::ServerNonInvite(t) => TransactionState::NonInviteServer(t.state),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            Kind::ClientInvite(t) => t.state == InviteClientState::Terminated,
            Kind::ClientNonInvite(t) => t.state == NonInviteClientState::Terminated,
            Kind::ServerInvite(t) => t.state == InviteServerState::Terminated,
            Kind::ServerNonInvite(t) => t.state == NonInviteServerState::Terminated,
        }
    }
    fn timers(&self) -> &TimerTable {
        match self {
            Kind::ClientInvite(t) => &t.timers,
            Kind::ClientNonInvite(t) => &t.timers,
            Kind::ServerInvite(t) => &t.timers,
            Kind::ServerNonInvite(t) => &t.timers,
        }
    }
    fn timers_mut(&mut self) -> &mut TimerTable {
        match self {
            Kind::ClientInvite(t) => &mut t.timers,
            Kind::ClientNonInvite(t) => &mut t.timers,
            Kind::ServerInvite(t) => &mut t.timers,
            Kind::ServerNonInvite(t) => &mut t.timers,
        }
    }
    fn next_timeout(&self) -> Option<Instant> {
        match self {
            Kind::ServerInvite(t) => t.next_timeout(),
            k => k.timers().next_timeout(),
        }
    }
}

struct Entry {
    remote: Remote,
    /// The deadline this entry is queued under in `Endpoint::timers` (others are stale).
    scheduled: Option<Instant>,
    kind: Kind,
    client_key: Option<ClientKey>,
    server_key: Option<ServerKey>,
}

/// The sans-IO SIP endpoint. See the crate docs for the input/poll contract.
pub struct Endpoint {
    config: Config,
    next_id: u64,
    /// The identifier generator (ChaCha20 keyed by `config.id_seed`).
    ids: rand_chacha::ChaCha20Rng,
    txs: BTreeMap<TransactionId, Entry>,
    client_index: HashMap<ClientKey, TransactionId>,
    server_index: HashMap<ServerKey, TransactionId>,
    accepted: Vec<Accepted2xx>,
    out: VecDeque<Output>,
    /// Transaction deadlines, earliest first; entries whose time differs from the
    /// transaction's `scheduled` are stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, TransactionId)>>,
    /// Transactions touched since the last `process`: reschedule or reap them.
    dirty: Vec<TransactionId>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("transactions", &self.txs.len())
            .field("pending_2xx", &self.accepted.len())
            .field("queued_outputs", &self.out.len())
            .finish()
    }
}

impl Endpoint {
    /// A new endpoint. It holds no clock: every input carries `now`.
    pub fn new(config: Config) -> Endpoint {
        Endpoint {
            ids: rand_chacha::ChaCha20Rng::from_seed(config.id_seed),
            config,
            next_id: 0,
            txs: BTreeMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            accepted: Vec::new(),
            out: VecDeque::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A fresh branch parameter: `z9hG4bK` + 96 random bits in hex (RFC 3261 §8.1.1.7 wants
    /// it unique across space and time; ≥ 64 bits make it unguessable too).
    pub fn new_branch(&mut self) -> String {
        let (a, b) = (self.ids.next_u64(), self.ids.next_u32());
        format!("{BRANCH_MAGIC_COOKIE}{a:016x}{b:08x}")
    }

    /// A fresh From/To tag: 64 random bits in hex (RFC 3261 §19.3 asks for at least 32).
    pub fn new_tag(&mut self) -> String {
        format!("{:016x}", self.ids.next_u64())
    }

    /// A fresh Call-ID: 128 random bits in hex at `host` (RFC 3261 §8.1.1.4: unique across
    /// space and time, across restarts and gateway nodes).
    pub fn new_call_id(&mut self, host: &str) -> String {
        let (a, b) = (self.ids.next_u64(), self.ids.next_u64());
        format!("{a:016x}{b:016x}@{host}")
    }

    /// Queues the 400/413 for input we could not accept, when one could be built from what
    /// was readable; returns whether an answer went out.
    fn transmit_answer(&mut self, remote: Remote, response: Option<Response>) -> bool {
        let Some(resp) = response else { return false };
        self.out.push_back(Output::Transmit(Transmit {
            remote,
            bytes: resp.to_bytes(),
        }));
        true
    }

    /// Input: one datagram, or one frame cut by [`crate::framing::check`]. CRLF keep-alive
    /// datagrams are consumed silently. Malformed requests are answered 400/505 statelessly.
    ///
    /// A datagram gets the same size caps as a stream message ([`crate::framing::FramingConfig`]):
    /// a header block or body over them is answered 413 (when a Via can be read from the part
    /// within the cap) and reported as [`Event::FramingError`], never parsed whole.
    pub fn handle_input(&mut self, now: Instant, remote: Remote, bytes: &[u8]) {
        if is_keepalive_datagram(bytes) {
            return;
        }
        if remote.transport == TransportKind::Udp
            && let Some(error) = self.oversized_datagram(bytes)
        {
            // The whole lines within the cap, closed as a header block: enough to read the
            // Via (and the rest, if they come first) for the 413.
            let max = self.config.framing.max_header_bytes;
            let head = &bytes[..bytes.len().min(max)];
            let lines = head
                .windows(2)
                .rposition(|w| w == b"\r\n")
                .map_or(&head[..0], |p| &head[..p + 2]);
            let mut block = Vec::with_capacity(lines.len() + 2);
            block.extend_from_slice(lines);
            block.extend_from_slice(b"\r\n");
            let partial = match parse(&block) {
                Ok(m) => PartialHeaders::from_message(&m),
                Err(e) => *e.partial,
            };
            let status = StatusCode::REQUEST_ENTITY_TOO_LARGE;
            let response = partial.response(status, &format!("{} ({error})", status.reason()));
            let answered = self.transmit_answer(remote, response);
            self.out.push_back(Output::Event(Event::FramingError {
                remote,
                error,
                answered,
            }));
            self.process(now);
            return;
        }
        match parse(bytes) {
            Ok(message) => self.dispatch(now, remote, message),
            Err(error) => {
                let answered = self.transmit_answer(remote, error.response());
                self.out.push_back(Output::Event(Event::Malformed {
                    remote,
                    error,
                    answered,
                }));
            }
        }
        self.process(now);
    }

    /// The cap a datagram breaks, if any: its header block (up to the blank line, or all of it
    /// without one) over `max_header_bytes`, or its body over `max_body_bytes`.
    fn oversized_datagram(&self, bytes: &[u8]) -> Option<FrameError> {
        let caps = &self.config.framing;
        let header_len = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |p| p + 4);
        if header_len > caps.max_header_bytes {
            return Some(FrameError::HeadersTooLarge {
                max: caps.max_header_bytes,
            });
        }
        let body = bytes.len() - header_len;
        (body > caps.max_body_bytes).then_some(FrameError::BodyTooLarge {
            header_len,
            content_length: body,
        })
    }

    /// Input: [`crate::framing::check`] returned `Error(error)` for the stream buffer `buf`.
    /// Answers what can be answered (413 for an oversized body, 400 for a missing or invalid
    /// Content-Length) from the header block, and tells the driver how to go on:
    /// resync after a message without Content-Length, close on anything else (R-SIP-4: one
    /// bad peer costs one connection, never the endpoint).
    pub fn handle_frame_error(
        &mut self,
        now: Instant,
        remote: Remote,
        buf: &[u8],
        error: FrameError,
    ) -> StreamAction {
        let (header_len, status, action) = match error {
            FrameError::BodyTooLarge { header_len, .. } => (
                Some(header_len),
                StatusCode::REQUEST_ENTITY_TOO_LARGE,
                StreamAction::Close,
            ),
            FrameError::MissingContentLength { header_len } => (
                Some(header_len),
                StatusCode::BAD_REQUEST,
                StreamAction::Skip(header_len),
            ),
            FrameError::InvalidContentLength { header_len } => (
                Some(header_len),
                StatusCode::BAD_REQUEST,
                StreamAction::Close,
            ),
            _ => (None, StatusCode::BAD_REQUEST, StreamAction::Close),
        };
        let response = header_len.and_then(|len| {
            let block = buf.get(..len)?;
            let partial = match parse(block) {
                Ok(m) => PartialHeaders::from_message(&m),
                Err(e) => *e.partial,
            };
            partial.response(status, &format!("{} ({error})", status.reason()))
        });
        let answered = self.transmit_answer(remote, response);
        self.out.push_back(Output::Event(Event::FramingError {
            remote,
            error,
            answered,
        }));
        self.process(now);
        action
    }

    /// Input: an already parsed message.
    pub fn handle_message(&mut self, now: Instant, remote: Remote, message: Message) {
        self.dispatch(now, remote, message);
        self.process(now);
    }

    /// Input: the deadline from [`Endpoint::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.process(now);
    }

    /// Input: the transport could not deliver for transaction `id` (connection refused/closed).
    pub fn handle_transport_error(&mut self, now: Instant, id: TransactionId) {
        self.dirty.push(id);
        if let Some(e) = self.txs.get_mut(&id) {
            let mut ctx = Ctx {
                id,
                remote: e.remote,
                out: &mut self.out,
            };
            match &mut e.kind {
                Kind::ClientInvite(t) => t.on_transport_error(&mut ctx),
                Kind::ClientNonInvite(t) => t.on_transport_error(&mut ctx),
                Kind::ServerInvite(t) => t.on_transport_error(&mut ctx),
                Kind::ServerNonInvite(t) => t.on_transport_error(&mut ctx),
            }
        }
        self.process(now);
    }

    /// Starts a client transaction for `request` to `remote`. The request must carry a top Via
    /// (our sent-by); a missing or RFC 2543 branch is replaced by a fresh one. CANCEL must
    /// reuse the INVITE's branch ([`Request::cancel`] does).
    pub fn send_request(
        &mut self,
        now: Instant,
        remote: Remote,
        mut request: Request,
    ) -> Result<TransactionId, ApiError> {
        if request.method == Method::Ack {
            return Err(ApiError::AckIsNotATransaction);
        }
        let needs_branch = match request.headers.top_via() {
            None => return Err(ApiError::MissingVia),
            Some(v) => !v
                .branch()
                .is_some_and(|b| b.starts_with(BRANCH_MAGIC_COOKIE) && b.len() > 7),
        };
        if needs_branch {
            let b = self.new_branch();
            if let Some(v) = request.headers.top_via_mut() {
                crate::message::set_param(&mut v.params, "branch", Some(b));
            }
        }
        let branch = request
            .headers
            .top_via()
            .and_then(|v| v.branch())
            .unwrap_or_default()
            .to_owned();
        let id = self.alloc_id();
        let key = ClientKey {
            branch,
            method: request.method.clone(),
        };
        let reliable = remote.transport.is_reliable();
        let mut ctx = Ctx {
            id,
            remote,
            out: &mut self.out,
        };
        let kind = if request.method == Method::Invite {
            Kind::ClientInvite(ClientInvite::start(
                now,
                &self.config,
                request,
                reliable,
                &mut ctx,
            ))
        } else {
            Kind::ClientNonInvite(ClientNonInvite::start(
                now,
                &self.config,
                &request,
                reliable,
                &mut ctx,
            ))
        };
        self.client_index.insert(key.clone(), id);
        self.dirty.push(id);
        self.txs.insert(
            id,
            Entry {
                remote,
                scheduled: None,
                kind,
                client_key: Some(key),
                server_key: None,
            },
        );
        self.process(now);
        Ok(id)
    }

    /// Sends a response on server transaction `id`. For a 2xx to INVITE the UAS core keeps
    /// retransmitting it until the ACK arrives or 64*T1 passes ([`Event::AckTimeout`]).
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<(), ApiError> {
        self.dirty.push(id);
        let entry = self.txs.get_mut(&id).ok_or(ApiError::UnknownTransaction)?;
        let remote = entry.remote;
        let mut ctx = Ctx {
            id,
            remote,
            out: &mut self.out,
        };
        match &mut entry.kind {
            Kind::ServerInvite(t) => {
                let accepted = response.status.is_success().then(|| {
                    let call_id = t.request().headers.call_id().unwrap_or_default().to_owned();
                    let cseq = t.request().headers.cseq().map_or(0, |c| c.seq);
                    (call_id, cseq, response.to_bytes())
                });
                t.send_response(now, &self.config, response, &mut ctx)?;
                if let Some((call_id, cseq, bytes)) = accepted {
                    self.accepted.push(Accepted2xx::new(
                        now,
                        self.config.t1,
                        call_id,
                        cseq,
                        remote,
                        bytes,
                    ));
                }
            }
            Kind::ServerNonInvite(t) => t.send_response(now, &self.config, response, &mut ctx)?,
            _ => return Err(ApiError::InvalidState("client transaction")),
        }
        self.process(now);
        Ok(())
    }

    /// Sends a message outside any transaction: the ACK for a 2xx, or a stateless response.
    pub fn send_stateless(&mut self, remote: Remote, message: &Message) {
        self.out.push_back(Output::Transmit(Transmit {
            remote,
            bytes: message.to_bytes(),
        }));
    }

    /// The next output. After any `handle_*`/`send_*` call, drain this until `None`, then arm
    /// the timer with [`Endpoint::poll_timeout`].
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] must be called, or `None`
    /// if nothing is pending. Changes after every input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.timers.peek().map(|Reverse((t, _))| *t);
        let acc = self.accepted.iter().map(Accepted2xx::next_timeout).min();
        match (tx, acc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The state of a live transaction.
    pub fn transaction_state(&self, id: TransactionId) -> Option<TransactionState> {
        self.txs.get(&id).map(|e| e.kind.state())
    }

    /// Number of live transactions.
    pub fn transaction_count(&self) -> usize {
        self.txs.len()
    }

    fn alloc_id(&mut self) -> TransactionId {
        self.next_id += 1;
        TransactionId(self.next_id)
    }

    fn dispatch(&mut self, now: Instant, remote: Remote, message: Message) {
        match message {
            Message::Request(r) => self.on_request(now, remote, r),
            Message::Response(r) => self.on_response(now, remote, r),
        }
    }

    fn on_response(&mut self, now: Instant, remote: Remote, response: Response) {
        //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.3
        //# 1.  If the response has the same value of the branch parameter in
        //#     the top Via header field as the branch parameter in the top
        //#     Via header field of the request that created the transaction.
        //# 2.  If the method parameter in the CSeq header field matches the
        //#     method of the request that created the transaction.
        let key = response
            .headers
            .top_via()
            .and_then(|v| v.branch())
            .zip(response.cseq_method())
            .map(|(branch, method)| ClientKey {
                branch: branch.to_owned(),
                method: method.clone(),
            });
        let id = key.and_then(|k| self.client_index.get(&k).copied());
        let Some(entry) = id.and_then(|id| self.txs.get_mut(&id)) else {
            self.out
                .push_back(Output::Event(Event::StrayResponse { remote, response }));
            return;
        };
        let Some(id) = id else { return };
        self.dirty.push(id);
        let mut ctx = Ctx {
            id,
            remote: entry.remote,
            out: &mut self.out,
        };
        match &mut entry.kind {
            Kind::ClientInvite(t) => t.on_response(now, &self.config, response, &mut ctx),
            Kind::ClientNonInvite(t) => t.on_response(now, &self.config, response, &mut ctx),
            _ => {}
        }
    }

    fn on_request(&mut self, now: Instant, remote: Remote, mut request: Request) {
        //= https://www.rfc-editor.org/rfc/rfc3261#section-18.2.1
        //# the server transport MUST add a "received" parameter to
        //# that Via header field value if the host differs from the source address
        let ip = remote.addr.ip().to_string();
        if let Some(v) = request.headers.top_via_mut() {
            if v.host.trim_start_matches('[').trim_end_matches(']') != ip {
                v.set_received(&ip);
            }
            if v.rport().is_some() {
                v.set_rport(remote.addr.port());
            }
        }
        let reliable = remote.transport.is_reliable();
        match request.method {
            Method::Ack => {
                let key = server_key(&request, Method::Invite);
                if let Some(id) = key.and_then(|k| self.server_index.get(&k).copied())
                    && let Some(Entry {
                        kind: Kind::ServerInvite(t),
                        ..
                    }) = self.txs.get_mut(&id)
                {
                    // ACK for our non-2xx: absorbed by the transaction.
                    t.on_ack(now, &self.config);
                    self.dirty.push(id);
                    return;
                }
                let call_id = request.headers.call_id().unwrap_or_default();
                let cseq = request.headers.cseq().map_or(0, |c| c.seq);
                self.accepted
                    .retain(|a| !(a.call_id == call_id && a.cseq == cseq));
                self.out
                    .push_back(Output::Event(Event::Ack { remote, request }));
            }
            Method::Cancel => {
                let Some(key) = server_key(&request, Method::Cancel) else {
                    return;
                };
                if let Some(&id) = self.server_index.get(&key) {
                    self.retransmitted(id);
                    return;
                }
                if self.overloaded(remote, &request) {
                    return;
                }
                let id = self.alloc_id();
                let mut tx = ServerNonInvite::start(request.headers.cseq().cloned(), reliable);
                //= https://www.rfc-editor.org/rfc/rfc3261#section-9.2
                //# If the UAS did not find a matching transaction for the CANCEL
                //# according to the procedure above, it SHOULD respond to the CANCEL
                //# with a 481 (Call Leg/Transaction Does Not Exist).
                let invite_key = server_key(&request, Method::Invite);
                let invite = invite_key.and_then(|k| self.server_index.get(&k).copied());
                let call_id = request.headers.call_id().unwrap_or_default().to_owned();
                let cseq = request.headers.cseq().map_or(0, |c| c.seq);
                let (status, cancelled) =
                    match invite.and_then(|i| self.txs.get(&i).map(|e| (i, e))) {
                        Some((
                            i,
                            Entry {
                                kind: Kind::ServerInvite(t),
                                ..
                            },
                        )) => (
                            StatusCode::OK,
                            (t.state == InviteServerState::Proceeding).then_some(i),
                        ),
                        _ if self
                            .accepted
                            .iter()
                            .any(|a| a.call_id == call_id && a.cseq == cseq) =>
                        {
                            (StatusCode::OK, None)
                        }
                        _ => (StatusCode::CALL_DOES_NOT_EXIST, None),
                    };
                let mut resp = request.response(status);
                if resp.headers.to().and_then(NameAddr::tag).is_none() {
                    let tag = self.new_tag();
                    if let Some(to) = resp.headers.to_mut() {
                        to.set_tag(&tag);
                    }
                }
                let mut ctx = Ctx {
                    id,
                    remote,
                    out: &mut self.out,
                };
                let _ = tx.send_response(now, &self.config, resp, &mut ctx);
                self.server_index.insert(key.clone(), id);
                self.dirty.push(id);
                self.txs.insert(
                    id,
                    Entry {
                        remote,
                        scheduled: None,
                        kind: Kind::ServerNonInvite(tx),
                        client_key: None,
                        server_key: Some(key),
                    },
                );
                if let Some(invite) = cancelled {
                    self.out
                        .push_back(Output::Event(Event::Cancelled { invite }));
                }
            }
            _ => {
                let Some(key) = server_key(&request, request.method.clone()) else {
                    return;
                };
                if let Some(&id) = self.server_index.get(&key) {
                    self.retransmitted(id);
                    return;
                }
                if request.method == Method::Invite {
                    // A retransmitted INVITE after our 2xx (its transaction is gone, RFC 6026
                    // §1): answer with the 2xx again instead of starting a second call.
                    let call_id = request.headers.call_id().unwrap_or_default();
                    let cseq = request.headers.cseq().map_or(0, |c| c.seq);
                    if let Some(a) = self
                        .accepted
                        .iter()
                        .find(|a| a.call_id == call_id && a.cseq == cseq)
                    {
                        self.out.push_back(Output::Transmit(Transmit {
                            remote,
                            bytes: a.bytes.clone(),
                        }));
                        return;
                    }
                }
                if self.overloaded(remote, &request) {
                    return;
                }
                let id = self.alloc_id();
                let mut ctx = Ctx {
                    id,
                    remote,
                    out: &mut self.out,
                };
                let kind = if request.method == Method::Invite {
                    Kind::ServerInvite(ServerInvite::start(
                        now,
                        &self.config,
                        request.clone(),
                        reliable,
                        &mut ctx,
                    ))
                } else {
                    Kind::ServerNonInvite(ServerNonInvite::start(
                        request.headers.cseq().cloned(),
                        reliable,
                    ))
                };
                self.server_index.insert(key.clone(), id);
                self.dirty.push(id);
                self.txs.insert(
                    id,
                    Entry {
                        remote,
                        scheduled: None,
                        kind,
                        client_key: None,
                        server_key: Some(key),
                    },
                );
                self.out.push_back(Output::Event(Event::Request {
                    id,
                    remote,
                    request,
                }));
            }
        }
    }

    /// Past `Config::max_transactions` a new request gets a stateless 503 with Retry-After
    /// instead of a transaction, so a flood of distinct branches cannot grow the table
    /// without bound (R-SIP-5).
    fn overloaded(&mut self, remote: Remote, request: &Request) -> bool {
        if self.txs.len() < self.config.max_transactions {
            return false;
        }
        let mut resp = request.response(StatusCode::SERVICE_UNAVAILABLE);
        resp.headers.push(Header::RetryAfter(RetryAfter {
            seconds: self.config.overload_retry_after,
            comment: None,
            params: Vec::new(),
        }));
        self.out.push_back(Output::Transmit(Transmit {
            remote,
            bytes: resp.to_bytes(),
        }));
        self.out.push_back(Output::Event(Event::Overloaded {
            remote,
            method: request.method.clone(),
        }));
        true
    }

    fn retransmitted(&mut self, id: TransactionId) {
        self.dirty.push(id);
        if let Some(e) = self.txs.get_mut(&id) {
            let mut ctx = Ctx {
                id,
                remote: e.remote,
                out: &mut self.out,
            };
            match &mut e.kind {
                Kind::ServerInvite(t) => t.on_retransmit(&mut ctx),
                Kind::ServerNonInvite(t) => t.on_retransmit(&mut ctx),
                _ => {}
            }
        }
    }

    /// Fires every expired timer (including zero-length ones set by this very input), then
    /// removes terminated transactions.
    fn process(&mut self, now: Instant) {
        // Fire every transaction timer that is due (O(log n) each, no scan of the table),
        // including zero-length ones set by this very input.
        loop {
            self.reschedule_dirty();
            let Some(&Reverse((t, id))) = self.timers.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.txs.get_mut(&id) else {
                continue;
            };
            if entry.scheduled != Some(t) {
                continue; // stale
            }
            entry.scheduled = None;
            let mut ctx = Ctx {
                id,
                remote: entry.remote,
                out: &mut self.out,
            };
            if let Kind::ServerInvite(tx) = &mut entry.kind {
                tx.on_trying_timeout(now, &mut ctx);
            }
            while let Some(timer) = entry.kind.timers_mut().pop_expired(now) {
                match &mut entry.kind {
                    Kind::ClientInvite(tx) => tx.on_timer(now, timer, &mut ctx),
                    Kind::ClientNonInvite(tx) => tx.on_timer(now, &self.config, timer, &mut ctx),
                    Kind::ServerInvite(tx) => tx.on_timer(now, &self.config, timer, &mut ctx),
                    Kind::ServerNonInvite(tx) => tx.on_timer(timer),
                }
            }
            self.dirty.push(id);
        }
        // Drop stale entries at the top so that `poll_timeout` reports a real deadline.
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self.txs.get(&id).is_some_and(|e| e.scheduled == Some(t)) {
                break;
            }
            self.timers.pop();
        }
        let Endpoint {
            config,
            out,
            accepted,
            ..
        } = self;
        accepted.retain_mut(|a| {
            if a.give_up <= now {
                out.push_back(Output::Event(Event::AckTimeout {
                    call_id: a.call_id.clone(),
                    cseq: a.cseq,
                }));
                return false;
            }
            if a.poll_retransmit(now, config.t2) {
                out.push_back(Output::Transmit(Transmit {
                    remote: a.remote,
                    bytes: a.bytes.clone(),
                }));
            }
            true
        });
    }

    /// Queues the new deadline of every touched transaction, and removes the terminated ones.
    fn reschedule_dirty(&mut self) {
        while let Some(id) = self.dirty.pop() {
            let Some(entry) = self.txs.get_mut(&id) else {
                continue;
            };
            if entry.kind.is_terminated() {
                if let Some(e) = self.txs.remove(&id) {
                    if let Some(k) = e.client_key {
                        self.client_index.remove(&k);
                    }
                    if let Some(k) = e.server_key {
                        self.server_index.remove(&k);
                    }
                    self.out.push_back(Output::Event(Event::Terminated { id }));
                }
                continue;
            }
            let next = entry.kind.next_timeout();
            if next != entry.scheduled {
                entry.scheduled = next;
                if let Some(t) = next {
                    self.timers.push(Reverse((t, id)));
                }
            }
        }
    }
}

impl TransportKind {
    /// TCP and TLS are reliable: no request retransmissions and zero-length D/I/J/K.
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
}

#[cfg(test)]
mod tests;
