//! The B2BUA call model, sans-IO: it owns a `sip_proto::Endpoint`, takes bytes, connection
//! events and `now`, and returns [`Transmit`]s and the next deadline. The transport driver
//! ([`crate::transport`]) feeds it; tests drive it directly with fake time.
//!
//! ```text
//!  leg A (caller)                    B2bua                         leg B (callee)
//!  INVITE ──▶ admit (policy) ─▶ route (dial plan) ─▶ allocate media ─▶ INVITE (own Call-ID,
//!                                                                        tags, CSeq, SDP)
//!  1xx/2xx ◀── SDP rewritten for A ◀──────────────────────────────────── 1xx/2xx  (ACK B at once)
//!  ACK ──▶ absorbed
//!  BYE ──▶ 200, BYE ─────────────────────────────────────────────────▶ (either direction)
//!  CANCEL ─▶ 200 + 487, CANCEL ──────────────────────────────────────▶ (BYE if B already said 200)
//!  re-INVITE/UPDATE ─▶ SDP rewritten ─────────────────────────────────▶ answer relayed back
//! ```
//!
//! Each call keeps the policy snapshot it started with (R-MODE-4). Each leg's media security
//! follows its own peer's dial plan (R-SIP-2).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_pki::PeerIdentity;
use mediagate_sip_proto::framing::FrameError;
use mediagate_sip_proto::message::{
    Header, Method, NameAddr, Param, Request, Response, RetryAfter, StatusCode, Uri, Via,
    ViaTransport, ip_host,
};
use mediagate_sip_proto::sdp::{Direction, MediaLeg, Sdp, SdpError, StreamParams};
use mediagate_sip_proto::{
    Config, Dialog, Endpoint, Event, Output, Remote, StreamAction, TransactionId, Transmit,
    TransportKind,
};

use crate::media::{CallKey, LegMedia, MediaAnchor, Side};
use crate::metrics::SipMetrics;
use crate::policy::{
    MediaLatching, MediaSource, PeerAddress, Policy, PolicyHandle, Target, VoipSecurity,
};
use session_timer::{Refresher, SessionTimer, UasDecision};

/// Methods we answer, for `Allow` headers.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, PRACK";

/// B2BUA settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct B2buaConfig {
    /// Transaction-layer settings.
    pub endpoint: Config,
    /// Our address per transport (Via sent-by and Contact). A transport missing here cannot
    /// be used for outbound calls.
    pub local: Vec<(TransportKind, SocketAddr)>,
    /// Calls in progress above which new INVITEs get 503 (R-SIP-5).
    pub max_calls: usize,
    /// Retry-After seconds on that 503.
    pub retry_after: u32,
    /// Session interval the gateway asks for and uses (RFC 4028); `None` turns session timers
    /// off. Default 1800 s, RFC 4028's recommendation.
    pub session_expires: Option<Duration>,
    /// The smallest session interval accepted (`Min-SE`; 422 below it). Default 90 s.
    pub min_se: Duration,
}

impl B2buaConfig {
    /// Defaults: RFC 3261 timers, 10 000 calls, Retry-After 5 s, session timers of 1800 s
    /// (Min-SE 90 s); `local` as given.
    pub fn new(local: Vec<(TransportKind, SocketAddr)>) -> B2buaConfig {
        B2buaConfig {
            endpoint: Config::default(),
            local,
            max_calls: 10_000,
            retry_after: 5,
            session_expires: Some(Duration::from_secs(1800)),
            min_se: Duration::from_secs(90),
        }
    }
    /// Sets the session timers (RFC 4028): the interval (`None`: off) and the `Min-SE`.
    pub fn session_timers(mut self, interval: Option<Duration>, min_se: Duration) -> Self {
        self.session_expires = interval;
        self.min_se = min_se;
        self
    }
    /// Sets the call limit.
    pub fn max_calls(mut self, n: usize) -> Self {
        self.max_calls = n;
        self
    }
    /// Sets the transaction-layer config.
    pub fn endpoint(mut self, c: Config) -> Self {
        self.endpoint = c;
        self
    }
    /// Sets the Retry-After seconds of the 503 over the call limit.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = seconds;
        self
    }
}

/// A built-in endpoint a route can target (`Target::Echo`), plugged in by the gateway.
///
/// The local endpoint is leg B of an ordinary call: the caller's leg A keeps its own security
/// (SRTP on a Secured dial plan) and is anchored by the relay like any other, and the relay's
/// leg B talks plain RTP to the endpoint's sockets. So a call to the echo endpoint exercises
/// the same relay path, SRTP contexts and latching as a call to a peer.
pub trait LocalEndpoint: Send + Sync + 'static {
    /// Answers `offer`, the gateway's plain RTP/AVP offer on the internal leg B of call `call`
    /// (its connection address is the relay's leg-B socket). Returns the answer SDP (where the
    /// endpoint receives media), or the status to refuse the call with.
    fn answer(&self, call: CallKey, offer: &Sdp) -> Result<Sdp, StatusCode>;
    /// The call ended (BYE, CANCEL or shutdown); release what `answer` set up.
    fn hangup(&self, call: CallKey);
    /// The caller put the call on hold or resumed it: the endpoint sends media only while
    /// `sending` (RFC 3264: an endpoint that answered `recvonly` or `inactive` sends nothing).
    fn set_sending(&self, call: CallKey, sending: bool) {
        let _ = (call, sending);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE sent to B, no final answer yet.
    Early,
    /// Both legs answered.
    Confirmed,
    /// A cancelled before B answered; waiting for B's final response.
    Cancelling,
}

/// How a call ended, for its `GW1220` line and `mediagate_calls_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// Answered (2xx), whoever ended it later.
    Answered,
    /// Routed, but the callee (or its path) did not answer: a final non-2xx, a timeout.
    Failed,
    /// The caller cancelled before the answer.
    Cancelled,
    /// The gateway refused the INVITE itself (admission, route, SDP, limits).
    Refused,
}

impl CallResult {
    /// The metric label and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Failed => "failed",
            CallResult::Cancelled => "cancelled",
            CallResult::Refused => "refused",
        }
    }
}

/// Who or what ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The caller (BYE, CANCEL).
    Caller,
    /// The callee (BYE, a final failure).
    Callee,
    /// The media timeout (`GW3003`).
    MediaTimeout,
    /// A session timer ran out (RFC 4028).
    SessionExpired,
    /// Graceful shutdown.
    Shutdown,
    /// The gateway itself (refusal, timeout, unusable SDP).
    Gateway,
}

impl EndedBy {
    /// The log value.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Callee => "callee",
            EndedBy::MediaTimeout => "media_timeout",
            EndedBy::SessionExpired => "session_expired",
            EndedBy::Shutdown => "shutdown",
            EndedBy::Gateway => "gateway",
        }
    }
}

/// The end of a call, as logged and counted.
#[derive(Debug, Clone)]
struct Outcome {
    result: CallResult,
    status: u16,
    reason: String,
    ended_by: EndedBy,
}

impl Outcome {
    fn new(result: CallResult, status: u16, reason: impl Into<String>, ended_by: EndedBy) -> Self {
        Outcome {
            result,
            status,
            reason: reason.into(),
            ended_by,
        }
    }
    fn hangup(by: EndedBy) -> Self {
        Outcome::new(CallResult::Answered, 200, "OK", by)
    }
}

struct Leg {
    remote: Remote,
    dialog: Option<Dialog>,
    media: MediaLeg,
    /// How the relay accepts this leg's plain RTP (from the peer's configuration).
    source: MediaSource,
    latching: MediaLatching,
    /// The SDP we last sent on this leg (answer to a re-INVITE without offer).
    last_sdp: Option<Sdp>,
}

struct Call {
    key: CallKey,
    /// The policy snapshot the call started with (R-MODE-4).
    policy: Arc<Policy>,
    /// The peer that called (admitted on leg A).
    a_peer: String,
    /// The peer called on leg B (`None` for the local endpoint).
    b_peer: Option<String>,
    state: CallState,
    a: Leg,
    b: Leg,
    a_invite: Request,
    a_tx: TransactionId,
    a_tag: String,
    b_invite: Option<Request>,
    b_tx: Option<TransactionId>,
    b_got_provisional: bool,
    cancel_pending: bool,
    a_answered: bool,
    echo: bool,
    /// The local endpoint's answer (template for answers to the caller's re-INVITEs).
    echo_answer: Option<Sdp>,
    /// Delayed offer: our ACK for B's 2xx, held until the caller's ACK brings the answer.
    b_ack_pending: Option<Request>,
    /// The media streams (`m=` indices) anchored in the relay.
    streams: Vec<usize>,
    /// The caller's dial plan and its mode (for the call's end line and metrics).
    plan: String,
    mode: VoipSecurity,
    /// When the call was answered.
    answered_at: Option<Instant>,
    /// What was decided for the caller's leg's session timer (applied at the answer).
    a_timer: UasDecision,
    /// Each leg's session timer (RFC 4028), `[A, B]`.
    timers: [Option<SessionTimer>; 2],
    /// Each leg's peer allows UPDATE (session refreshes without an offer).
    update_ok: [bool; 2],
}

impl Call {
    fn leg(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

/// What admission made of a request that came on a connection: the transport closes stream
/// connections that never bring an admitted request, or whose requests are all refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request from this remote was admitted (out of dialog by policy, or in dialog from
    /// its leg's peer).
    Admitted,
    /// A request from this remote was refused (403).
    Refused,
}

#[derive(Debug, Clone)]
enum TxUse {
    /// Client tx of our INVITE on leg B.
    OutboundInvite(CallKey),
    /// Our own session refresh (UPDATE or re-INVITE) on leg `side`.
    Refresh {
        /// The call.
        call: CallKey,
        /// The leg refreshed.
        side: Side,
        /// A re-INVITE (to be ACKed), not an UPDATE.
        invite: bool,
    },
    /// Client tx on `from.other()` relaying server tx `server` that arrived on `from`.
    Relay {
        call: CallKey,
        from: Side,
        server: TransactionId,
        method: Method,
    },
}

/// The B2BUA. See the module documentation; the input/poll contract is the endpoint's: after
/// any `handle_*` call drain [`B2bua::poll_transmit`], then re-arm the timer at
/// [`B2bua::poll_timeout`].
pub struct B2bua {
    ep: Endpoint,
    cfg: B2buaConfig,
    policy: PolicyHandle,
    media: Arc<dyn MediaAnchor>,
    local_endpoint: Option<Arc<dyn LocalEndpoint>>,
    metrics: Arc<SipMetrics>,
    /// Graceful shutdown: new calls get 503, calls in progress go on.
    draining: bool,
    identities: HashMap<Remote, Arc<PeerIdentity>>,
    server_names: HashMap<Remote, String>,
    calls: HashMap<CallKey, Call>,
    /// (Call-ID, our tag) → call and side.
    dialogs: HashMap<(String, String), (CallKey, Side)>,
    /// A's INVITE server transaction → call.
    inbound: HashMap<TransactionId, CallKey>,
    txs: HashMap<TransactionId, TxUse>,
    /// Relayed in-dialog requests awaiting the other leg's final response.
    pending_requests: HashMap<TransactionId, Request>,
    next_call: u64,
    out: VecDeque<Transmit>,
    /// Admission verdicts for the transport ([`B2bua::poll_verdict`]).
    verdicts: VecDeque<(Remote, Verdict)>,
    /// Rate limit for per-request log lines.
    log: crate::lograte::LogGate,
    /// Session-timer deadlines (lazy: an entry is checked against its call when it comes).
    session_due: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, CallKey)>>,
}

impl std::fmt::Debug for B2bua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("B2bua")
            .field("calls", &self.calls.len())
            .field("endpoint", &self.ep)
            .finish()
    }
}

fn via_transport(t: TransportKind) -> ViaTransport {
    match t {
        TransportKind::Udp => ViaTransport::Udp,
        TransportKind::Tcp => ViaTransport::Tcp,
        TransportKind::Tls => ViaTransport::Tls,
    }
}

fn transport_param(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
        TransportKind::Tls => "tls",
    }
}

fn other(name: &str, value: impl Into<String>) -> Header {
    Header::Other {
        name: name.to_owned(),
        value: value.into(),
    }
}

fn is_sdp(headers: &mediagate_sip_proto::message::Headers, body: &[u8]) -> bool {
    !body.is_empty()
        && headers
            .content_type()
            .is_none_or(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"))
}

impl B2bua {
    /// A B2BUA using `policy` for admission and routing and `media` to anchor media.
    pub fn new(cfg: B2buaConfig, policy: PolicyHandle, media: Arc<dyn MediaAnchor>) -> B2bua {
        B2bua {
            ep: Endpoint::new(cfg.endpoint.clone()),
            cfg,
            policy,
            media,
            local_endpoint: None,
            metrics: Arc::new(SipMetrics::default()),
            draining: false,
            identities: HashMap::new(),
            server_names: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            inbound: HashMap::new(),
            txs: HashMap::new(),
            pending_requests: HashMap::new(),
            next_call: 0,
            out: VecDeque::new(),
            verdicts: VecDeque::new(),
            log: crate::lograte::LogGate::default(),
            session_due: std::collections::BinaryHeap::new(),
        }
    }

    /// Plugs in the endpoint for `Target::Echo` routes. Without one they get 503.
    pub fn set_local_endpoint(&mut self, ep: Arc<dyn LocalEndpoint>) {
        self.local_endpoint = Some(ep);
    }

    /// Counts into `metrics` (shared with the transport and the admin HTTP).
    pub fn set_metrics(&mut self, metrics: Arc<SipMetrics>) {
        self.metrics = metrics;
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<SipMetrics> {
        &self.metrics
    }

    /// Graceful shutdown, step 1: new INVITEs get 503 with Retry-After; calls in progress go
    /// on, in-dialog requests and OPTIONS are still served.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Graceful shutdown, step 2 (the deadline passed): every call in progress ends. Confirmed
    /// calls get BYE on both legs; calls still being set up get 503 towards the caller and
    /// CANCEL (or BYE) towards the callee.
    pub fn hangup_all(&mut self, now: Instant) {
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            let Some(call) = self.calls.get(&key) else {
                continue;
            };
            tracing::info!(code = "GW1212", call = %key, "call ended by shutdown");
            if call.state == CallState::Early && !call.a_answered {
                self.fail_a(now, key, StatusCode::SERVICE_UNAVAILABLE);
                if call_has_b_provisional(&self.calls, key) {
                    self.send_cancel_b(now, key);
                }
                let o = Outcome::new(
                    CallResult::Failed,
                    503,
                    "Service Unavailable (shutting down)",
                    EndedBy::Shutdown,
                );
                self.finish_call(now, key, o);
            } else {
                self.end_call(now, key, None, Outcome::hangup(EndedBy::Shutdown));
            }
        }
        self.drain(now);
    }

    /// Input: the media of `call` is dead — the relay saw nothing valid from the peer of leg
    /// `side` for `idle_for` (the media timeout; the hold timeout when `on_hold`). An answered
    /// call ends with BYE on both legs carrying `Reason: SIP;cause=408` (RFC 3326), is logged
    /// (`GW3003`) and counted; its media ports are released. A call still being set up is left
    /// alone: the relay reports again once the answer sets the legs anew.
    pub fn media_timeout(
        &mut self,
        now: Instant,
        key: CallKey,
        side: Side,
        idle_for: std::time::Duration,
        on_hold: bool,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.state != CallState::Confirmed {
            return;
        }
        let silent = match side {
            Side::A => call.a_peer.as_str(),
            Side::B => call.b_peer.as_deref().unwrap_or("echo"),
        };
        tracing::warn!(
            code = "GW3003",
            call = %key,
            side = side.name(),
            peer = silent,
            idle_secs = idle_for.as_secs(),
            on_hold,
            "GW3003 call ended: no media from a leg's peer"
        );
        SipMetrics::add(&self.metrics.media_timeouts, 1);
        let text = format!(
            "SIP;cause=408;text=\"Media Timeout: nothing from the {} for {} s\"",
            side.role(),
            idle_for.as_secs()
        );
        self.end_call_with(
            now,
            key,
            None,
            Some(&text),
            Outcome::hangup(EndedBy::MediaTimeout),
        );
        self.drain(now);
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The policy handle (swap it to reconfigure; R-MODE-4).
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// A stream connection came up; for TLS with the verified client identity.
    pub fn connection_opened(&mut self, remote: Remote, identity: Option<PeerIdentity>) {
        if let Some(id) = identity {
            self.identities.insert(remote, Arc::new(id));
        }
    }

    /// A stream connection closed (or an outbound connection could not be opened): outbound
    /// INVITEs still waiting on it fail at once (503 to the caller) instead of waiting for
    /// Timer B.
    pub fn connection_closed(&mut self, now: Instant, remote: Remote) {
        self.identities.remove(&remote);
        self.server_names.remove(&remote);
        let pending: Vec<TransactionId> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Early && c.b.remote == remote)
            .filter_map(|c| c.b_tx)
            .filter(|tx| self.txs.contains_key(tx))
            .collect();
        for tx in pending {
            self.ep.handle_transport_error(now, tx);
        }
        self.drain(now);
    }

    /// True when the driver may open a connection to `remote`: it is a configured peer's
    /// address and transport. Connections are never opened to anything else (not to a Via
    /// sent-by, not back to the source port of an inbound connection that has closed).
    pub fn may_connect(&self, remote: &Remote) -> bool {
        let policy = self.policy.load();
        policy
            .peers()
            .iter()
            .any(|p| p.transport == remote.transport && policy.socket_addr(p) == Some(remote.addr))
    }

    /// For an outbound TLS `remote`: the peer FQDN its certificate must carry.
    pub fn server_name(&self, remote: &Remote) -> Option<&str> {
        self.server_names.get(remote).map(String::as_str)
    }

    /// Input: one datagram or one framed stream message.
    pub fn handle_input(&mut self, now: Instant, remote: Remote, bytes: &[u8]) {
        self.ep.handle_input(now, remote, bytes);
        self.drain(now);
    }

    /// Input: a stream framing error (see `Endpoint::handle_frame_error`).
    pub fn handle_frame_error(
        &mut self,
        now: Instant,
        remote: Remote,
        buf: &[u8],
        error: FrameError,
    ) -> StreamAction {
        let a = self.ep.handle_frame_error(now, remote, buf, error);
        self.drain(now);
        a
    }

    /// Input: the deadline from [`B2bua::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.drain(now);
        self.run_session_timers(now);
        self.drain(now);
    }

    /// The next admission verdict for the transport: whether a request that came from a
    /// remote was admitted or refused. Drain it with [`B2bua::poll_transmit`].
    pub fn poll_verdict(&mut self) -> Option<(Remote, Verdict)> {
        self.verdicts.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When to call [`B2bua::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.session_due.peek().map(|r| r.0.0);
        match (self.ep.poll_timeout(), timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(o) = self.ep.poll_output() {
            match o {
                Output::Transmit(t) => self.out.push_back(t),
                Output::Event(e) => self.on_event(now, e),
            }
        }
    }

    fn local(&self, t: TransportKind) -> Option<SocketAddr> {
        self.cfg
            .local
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, a)| *a)
    }

    fn via(&mut self, t: TransportKind) -> Via {
        let local = self
            .local(t)
            .or_else(|| self.cfg.local.first().map(|(_, a)| *a))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let branch = self.ep.new_branch();
        let mut v = Via::new(
            via_transport(t),
            ip_host(local.ip()),
            Some(local.port()),
            &branch,
        );
        v.params.push(Param::flag("rport"));
        v
    }

    fn contact(&self, t: TransportKind) -> Header {
        let local = self
            .local(t)
            .or_else(|| self.cfg.local.first().map(|(_, a)| *a))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let mut uri = Uri::sip(Some("mediagate"), &ip_host(local.ip()), Some(local.port()));
        uri.params.push(Param::new("transport", transport_param(t)));
        Header::Contact(mediagate_sip_proto::message::Contact::Addr(NameAddr::new(
            uri,
        )))
    }

    fn respond(&mut self, now: Instant, id: TransactionId, response: Response) {
        if let Err(e) = self.ep.send_response(now, id, response) {
            tracing::debug!(%e, "response not sent");
        }
    }

    fn reply(&mut self, now: Instant, id: TransactionId, req: &Request, status: StatusCode) {
        self.reply_reason(now, id, req, status, None);
    }

    fn reply_reason(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        status: StatusCode,
        reason: Option<String>,
    ) {
        let mut r = req.response(status);
        if let Some(reason) = reason {
            r.reason = reason;
        }
        if status.code() > 100
            && req.headers.to().is_some_and(|t| t.tag().is_none())
            && let Some(to) = r.headers.to_mut()
        {
            let tag = self.ep.new_tag();
            to.set_tag(&tag);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers.0.insert(
                r.headers.0.len().saturating_sub(1),
                Header::RetryAfter(RetryAfter {
                    seconds: self.cfg.retry_after,
                    comment: None,
                    params: Vec::new(),
                }),
            );
        }
        if matches!(status.code(), 405 | 501) || req.method == Method::Options {
            let at = r.headers.0.len().saturating_sub(1);
            r.headers.0.insert(at, other("Allow", ALLOW));
        }
        self.respond(now, id, r);
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Request {
                id,
                remote,
                request,
            } => self.on_request(now, id, remote, request),
            Event::Ack { request, .. } => self.on_ack(now, &request),
            Event::Cancelled { invite } => self.on_cancelled(now, invite),
            Event::Response { id, response } => self.on_response(now, id, response),
            Event::StrayResponse { remote, response } => self.on_stray(remote, &response),
            Event::Timeout { id, .. } => {
                tracing::debug!("transaction timeout");
                self.on_failure(now, id, StatusCode::REQUEST_TIMEOUT);
            }
            Event::TransportError { id } => {
                self.on_failure(now, id, StatusCode::SERVICE_UNAVAILABLE);
            }
            Event::Terminated { id } => {
                self.inbound.remove(&id);
                // Relay and INVITE client txs are cleaned up on their final response.
            }
            Event::AckTimeout { call_id, .. } => {
                if let Some((key, _)) = self
                    .dialogs
                    .iter()
                    .find(|((c, _), _)| *c == call_id)
                    .map(|(_, v)| *v)
                {
                    tracing::info!(call = %key, "no ACK for our 2xx: ending call");
                    let o = Outcome::new(
                        CallResult::Answered,
                        200,
                        "no ACK for the 2xx",
                        EndedBy::Gateway,
                    );
                    self.end_call(now, key, None, o);
                }
            }
            Event::FramingError {
                remote,
                error,
                answered,
            } => {
                let reason = match error {
                    FrameError::HeadersTooLarge { .. } | FrameError::BodyTooLarge { .. } => {
                        "too_large"
                    }
                    _ => "unparsable",
                };
                self.metrics
                    .malformed
                    .inc((remote.transport.name(), reason));
                if let Some(left_out) = self.log.allow(now, "GW1209", remote.addr.ip()) {
                    tracing::info!(
                        code = "GW1209",
                        %remote,
                        %error,
                        answered,
                        left_out,
                        "GW1209 SIP message refused by the size caps or framing"
                    );
                }
            }
            Event::Overloaded { remote, method } => {
                if let Some(left_out) = self.log.allow(now, "GW1214", remote.addr.ip()) {
                    tracing::warn!(
                        code = "GW1214",
                        %remote,
                        %method,
                        left_out,
                        "GW1214 transaction limit: 503"
                    );
                }
            }
            Event::Malformed {
                remote,
                error,
                answered,
            } => {
                let reason = match error.kind {
                    mediagate_sip_proto::message::ParseErrorKind::Missing(_) => "missing_header",
                    _ => "unparsable",
                };
                self.metrics
                    .malformed
                    .inc((remote.transport.name(), reason));
                if let Some(left_out) = self.log.allow(now, "GW1208", remote.addr.ip()) {
                    tracing::info!(
                        code = "GW1208",
                        %remote,
                        %error,
                        answered,
                        left_out,
                        "GW1208 malformed SIP message refused"
                    );
                }
            }
            _ => {}
        }
    }

    fn find_dialog(&self, req: &Request) -> Option<(CallKey, Side)> {
        let call_id = req.headers.call_id()?;
        let tag = req.headers.to()?.tag()?;
        self.dialogs
            .get(&(call_id.to_owned(), tag.to_owned()))
            .copied()
    }

    fn on_request(&mut self, now: Instant, id: TransactionId, remote: Remote, req: Request) {
        let in_dialog = req.headers.to().and_then(NameAddr::tag).is_some();
        if in_dialog {
            return self.on_in_dialog(now, id, remote, req);
        }
        // Out of dialog: every request is admitted against the policy first (R-PEER-2).
        let policy = self.policy.load();
        let identity = self.identities.get(&remote).cloned();
        let admitted = match policy.admit(remote.transport, remote.addr, identity.as_deref()) {
            Ok(a) => (a.peer.name.clone(), a.plan.name.clone()),
            Err(refusal) => {
                self.metrics.admission_refusals.inc(refusal.token());
                self.verdicts.push_back((remote, Verdict::Refused));
                if let Some(left_out) = self.log.allow(now, "GW1201", remote.addr.ip()) {
                    tracing::warn!(
                        code = "GW1201",
                        %remote,
                        presented = %refusal,
                        method = %req.method,
                        left_out,
                        "GW1201 request refused"
                    );
                }
                if req.method == Method::Invite {
                    let why = refusal.to_string();
                    let status = StatusCode::FORBIDDEN;
                    let reason = format!("{} ({why})", status.reason());
                    self.reply_reason(now, id, &req, status, Some(reason));
                    let gate = Some((now, remote.addr.ip()));
                    return self.log_refusal(&req, status, &why, None, "", gate);
                }
                return self.reply_reason(
                    now,
                    id,
                    &req,
                    StatusCode::FORBIDDEN,
                    Some(format!("Forbidden ({refusal})")),
                );
            }
        };
        self.verdicts.push_back((remote, Verdict::Admitted));
        match req.method {
            Method::Invite => self.on_invite(now, id, remote, req, policy, admitted),
            Method::Options => self.reply(now, id, &req, StatusCode::OK),
            Method::Ack | Method::Cancel => {}
            Method::Bye | Method::Update | Method::Prack => {
                self.reply(now, id, &req, StatusCode::CALL_DOES_NOT_EXIST)
            }
            Method::Extension(_) => self.reply(now, id, &req, StatusCode::NOT_IMPLEMENTED),
            _ => self.reply(now, id, &req, StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        id: TransactionId,
        remote: Remote,
        req: Request,
        policy: Arc<Policy>,
        (peer_name, plan_name): (String, String),
    ) {
        let plan_mode = policy
            .dial_plan(&plan_name)
            .map(|p| (p.name.clone(), p.security));
        let pm = plan_mode.as_ref().map(|(n, m)| (n.as_str(), *m));
        if req.headers.max_forwards() == Some(0) {
            return self.refuse_invite(
                now,
                id,
                &req,
                StatusCode::TOO_MANY_HOPS,
                "Max-Forwards 0",
                pm,
                &peer_name,
            );
        }
        // RFC 3261 §8.2.2.3: of the extensions a caller may require, we support session
        // timers (RFC 4028) only.
        let required: Vec<&str> = req
            .headers
            .other("Require")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("timer"))
            .collect();
        if !required.is_empty() {
            let mut r = req.response(StatusCode::BAD_EXTENSION);
            if let Some(to) = r.headers.to_mut() {
                let tag = self.ep.new_tag();
                to.set_tag(&tag);
            }
            let at = r.headers.0.len().saturating_sub(1);
            r.headers
                .0
                .insert(at, other("Unsupported", required.join(", ")));
            let why = format!("requires {}", required.join(", "));
            self.respond(now, id, r);
            return self.log_refusal(&req, StatusCode::BAD_EXTENSION, &why, pm, &peer_name, None);
        }
        // RFC 4028 §9: a session interval below our Min-SE gets 422 with it.
        let a_timer =
            session_timer::as_uas(&req.headers, self.cfg.session_expires, self.cfg.min_se);
        if let UasDecision::TooSmall(min) = a_timer {
            let mut r = req.response(StatusCode::SESSION_INTERVAL_TOO_SMALL);
            if let Some(to) = r.headers.to_mut() {
                let tag = self.ep.new_tag();
                to.set_tag(&tag);
            }
            let at = r.headers.0.len().saturating_sub(1);
            r.headers
                .0
                .insert(at, other("Min-SE", min.as_secs().to_string()));
            self.respond(now, id, r);
            let why = format!("session interval below Min-SE {}", min.as_secs());
            return self.log_refusal(
                &req,
                StatusCode::SESSION_INTERVAL_TOO_SMALL,
                &why,
                pm,
                &peer_name,
                None,
            );
        }
        if self.draining {
            tracing::info!(
                code = "GW1213",
                "GW1213 shutting down: new call refused with 503"
            );
            SipMetrics::add(&self.metrics.calls_rejected_overload, 1);
            return self.refuse_invite(
                now,
                id,
                &req,
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
                pm,
                &peer_name,
            );
        }
        if self.calls.len() >= self.cfg.max_calls {
            if let Some(left_out) = self.log.allow(now, "GW1203", remote.addr.ip()) {
                tracing::warn!(
                    code = "GW1203",
                    calls = self.calls.len(),
                    left_out,
                    "GW1203 call limit: 503"
                );
            }
            SipMetrics::add(&self.metrics.calls_rejected_overload, 1);
            return self.refuse_invite(
                now,
                id,
                &req,
                StatusCode::SERVICE_UNAVAILABLE,
                "call limit",
                pm,
                &peer_name,
            );
        }
        let Some(plan) = policy.dial_plan(&plan_name).cloned() else {
            return self.refuse_invite(
                now,
                id,
                &req,
                StatusCode::SERVER_INTERNAL_ERROR,
                "dial plan gone",
                pm,
                &peer_name,
            );
        };
        let called = req
            .uri
            .user
            .clone()
            .or_else(|| req.headers.to().and_then(|t| t.uri.user.clone()))
            .unwrap_or_default();
        let Some(target) = plan.route(&called).cloned() else {
            let why = format!("no route for {called:?} in dial plan {}", plan.name);
            return self.refuse_invite(now, id, &req, StatusCode::NOT_FOUND, &why, pm, &peer_name);
        };
        // No SDP: a delayed offer (RFC 3261 §13.2.1): the callee's 2xx carries the offer and the
        // caller's ACK the answer.
        let offer = if is_sdp(&req.headers, &req.body) {
            match Sdp::parse(&req.body) {
                Ok(o) => Some(o),
                Err(e) => {
                    let why = e.to_string();
                    return self.refuse_invite(
                        now,
                        id,
                        &req,
                        StatusCode::BAD_REQUEST,
                        &why,
                        pm,
                        &peer_name,
                    );
                }
            }
        } else {
            None
        };
        self.next_call += 1;
        let key = CallKey(self.next_call);
        let a_secure = plan.security.requires_srtp();

        // Target: a peer, or the local endpoint.
        let (b_peer, b_remote, b_secure) = match &target {
            Target::Peer(name) => {
                let Some(peer) = policy.peer(name).cloned() else {
                    return self.refuse_invite(
                        now,
                        id,
                        &req,
                        StatusCode::SERVER_INTERNAL_ERROR,
                        "route target gone",
                        pm,
                        &peer_name,
                    );
                };
                let Some(addr) = policy.socket_addr(&peer) else {
                    let why = format!("address of peer {} unresolved", peer.name);
                    return self.refuse_invite(
                        now,
                        id,
                        &req,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &why,
                        pm,
                        &peer_name,
                    );
                };
                let secure = policy
                    .dial_plan(&peer.dial_plan)
                    .is_some_and(|p| p.security.requires_srtp());
                let remote = Remote {
                    transport: peer.transport,
                    addr,
                };
                (Some(peer), remote, secure)
            }
            // The local endpoint's leg is internal (relay ↔ endpoint on our own address):
            // plain RTP; the caller's leg keeps its mode.
            Target::Echo => (None, remote, false),
        };

        // One relay pair per audio stream of the offer (the first stream, speculatively, for
        // a delayed offer); every other stream is answered with port 0.
        let wanted: Vec<usize> = match &offer {
            Some(o) => (0..o.media.len()).filter(|i| o.is_anchorable(*i)).collect(),
            None => vec![0],
        };
        if wanted.is_empty() {
            return self.refuse_invite(
                now,
                id,
                &req,
                StatusCode::NOT_ACCEPTABLE_HERE,
                "no audio RTP stream",
                pm,
                &peer_name,
            );
        }
        let mut addrs = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            match self.media.allocate(key, i) {
                Ok((a, b)) => addrs.push((i, a, b)),
                Err(e) => {
                    self.media.release(key);
                    tracing::warn!(call = %key, %e, "media allocation failed: 503");
                    let why = format!("media: {e}");
                    return self.refuse_invite(
                        now,
                        id,
                        &req,
                        StatusCode::SERVICE_UNAVAILABLE,
                        &why,
                        pm,
                        &peer_name,
                    );
                }
            }
        }
        let mut a_media = MediaLeg::new(addrs[0].1, a_secure);
        let mut b_media = MediaLeg::new(addrs[0].2, b_secure);
        if addrs[0].0 != 0 {
            a_media.set_local(0, None);
            b_media.set_local(0, None);
        }
        for &(i, a, b) in &addrs {
            a_media.set_local(i, Some(a));
            b_media.set_local(i, Some(b));
        }
        let a_params = match offer
            .as_ref()
            .map_or(Ok(Vec::new()), |o| a_media.on_remote_offer(o))
        {
            Ok(p) => p,
            Err(e) => {
                self.media.release(key);
                let why = e.to_string();
                return self.refuse_invite(
                    now,
                    id,
                    &req,
                    StatusCode::NOT_ACCEPTABLE_HERE,
                    &why,
                    pm,
                    &peer_name,
                );
            }
        };
        let (a_source, a_latching) = policy
            .peer(&peer_name)
            .map(|p| (p.media_source, p.media_latching))
            .unwrap_or_default();
        let (b_source, b_latching) = b_peer
            .as_ref()
            .map(|p| (p.media_source, p.media_latching))
            .unwrap_or_default();
        let a_tag = self.ep.new_tag();
        let mut call = Call {
            key,
            policy: policy.clone(),
            a_peer: peer_name.clone(),
            b_peer: b_peer.as_ref().map(|p| p.name.clone()),
            state: CallState::Early,
            a: Leg {
                remote,
                dialog: None,
                media: a_media,
                source: a_source,
                latching: a_latching,
                last_sdp: None,
            },
            b: Leg {
                remote: b_remote,
                dialog: None,
                media: b_media,
                source: b_source,
                latching: b_latching,
                last_sdp: None,
            },
            a_invite: req,
            a_tx: id,
            a_tag,
            b_invite: None,
            b_tx: None,
            b_got_provisional: false,
            cancel_pending: false,
            a_answered: false,
            echo: b_peer.is_none(),
            echo_answer: None,
            b_ack_pending: None,
            streams: wanted,
            plan: plan.name.clone(),
            mode: plan.security,
            answered_at: None,
            a_timer,
            timers: [None, None],
            update_ok: [false, false],
        };
        call.update_ok[0] = session_timer::allows_update(&call.a_invite.headers);
        apply_leg(&*self.media, &call, Side::A, &a_params);
        self.inbound.insert(id, key);

        let Some(peer) = b_peer else {
            return self.answer_locally(now, id, call, offer.as_ref());
        };

        let b_offer = match offer
            .as_ref()
            .map(|o| call.b.media.local_offer(o, true))
            .transpose()
        {
            Ok(s) => s,
            Err(e) => {
                self.media.release(key);
                tracing::warn!(call = %key, %e, "cannot build offer: 500");
                let why = format!("cannot build the offer: {e}");
                let req = call.a_invite.clone();
                return self.refuse_invite(
                    now,
                    id,
                    &req,
                    StatusCode::SERVER_INTERNAL_ERROR,
                    &why,
                    pm,
                    &peer_name,
                );
            }
        };
        let invite = self.outbound_invite(&call, &peer, &called, &b_offer);
        if peer.transport == TransportKind::Tls
            && let PeerAddress::Fqdn(name) = &peer.address
        {
            self.server_names.insert(b_remote, name.clone());
        }
        call.b.last_sdp = b_offer;
        call.b_invite = Some(invite.clone());
        tracing::info!(
            code = "GW1210",
            call = %key,
            from_peer = %peer_name,
            to_peer = %peer.name,
            %called,
            "call routed"
        );
        match self.ep.send_request(now, b_remote, invite) {
            Ok(tx) => {
                call.b_tx = Some(tx);
                self.txs.insert(tx, TxUse::OutboundInvite(key));
                self.calls.insert(key, call);
            }
            Err(e) => {
                self.media.release(key);
                tracing::warn!(call = %key, %e, "outbound INVITE failed");
                let why = format!("outbound INVITE not sent: {e}");
                let req = call.a_invite.clone();
                self.refuse_invite(
                    now,
                    id,
                    &req,
                    StatusCode::SERVER_INTERNAL_ERROR,
                    &why,
                    pm,
                    &peer_name,
                );
            }
        }
    }

    /// A call routed to the local endpoint: our offer on the internal leg B goes to the
    /// endpoint, its answer sets leg B in the relay and becomes, rewritten, the caller's answer.
    fn answer_locally(
        &mut self,
        now: Instant,
        id: TransactionId,
        mut call: Call,
        offer: Option<&Sdp>,
    ) {
        let key = call.key;
        let result = match (&self.local_endpoint, offer) {
            (None, _) => Err((StatusCode::SERVICE_UNAVAILABLE, "no local endpoint")),
            // Delayed offer: the endpoint only answers offers.
            (Some(_), None) => Err((StatusCode::NOT_ACCEPTABLE_HERE, "echo needs an SDP offer")),
            (Some(le), Some(offer)) => match call.b.media.local_offer(offer, true) {
                Err(_) => Err((StatusCode::SERVER_INTERNAL_ERROR, "cannot build the offer")),
                Ok(b_offer) => match le.answer(key, &b_offer) {
                    Err(status) => Err((status, "refused by the local endpoint")),
                    Ok(answer) => {
                        call.b.last_sdp = Some(b_offer);
                        match call.b.media.on_remote_answer(&answer) {
                            Ok(pb) => {
                                let a_sdp = call.a.media.local_answer(&answer);
                                call.echo_answer = Some(answer);
                                Ok((pb, a_sdp))
                            }
                            Err(_) => {
                                le.hangup(key);
                                Err((StatusCode::SERVER_INTERNAL_ERROR, "bad local answer"))
                            }
                        }
                    }
                },
            },
        };
        match result {
            Ok((pb, a_sdp)) => {
                tracing::info!(code = "GW1210", call = %key, to_peer = "echo", "call routed");
                apply_leg(&*self.media, &call, Side::B, &pb);
                self.calls.insert(key, call);
                self.answer_a(now, key, StatusCode::OK, "OK".into(), Some(a_sdp), true);
            }
            Err((status, why)) => {
                self.inbound.remove(&id);
                self.media.release(key);
                let req = call.a_invite.clone();
                let plan = call.plan.clone();
                self.refuse_invite(
                    now,
                    id,
                    &req,
                    status,
                    why,
                    Some((&plan, call.mode)),
                    &call.a_peer,
                );
            }
        }
    }

    fn outbound_invite(
        &mut self,
        call: &Call,
        peer: &crate::policy::Peer,
        called: &str,
        sdp: &Option<Sdp>,
    ) -> Request {
        let t = peer.transport;
        let mut uri = Uri::sip(
            (!called.is_empty()).then_some(called),
            &match &peer.address {
                PeerAddress::Ip(ip) => ip_host(*ip),
                PeerAddress::Fqdn(n) => n.clone(),
            },
            Some(peer.port),
        );
        if t != TransportKind::Udp {
            uri.params.push(Param::new("transport", transport_param(t)));
        }
        let from_tag = self.ep.new_tag();
        let a = &call.a_invite.headers;
        let mut from = a
            .from()
            .cloned()
            .unwrap_or_else(|| NameAddr::new(Uri::sip(None, "mediagate.invalid", None)));
        from.params.clear();
        from.set_tag(&from_tag);
        let mut to = NameAddr::new(uri.clone());
        if let Some(t0) = a.to() {
            to.display_name = t0.display_name.clone();
        }
        let host = self
            .local(t)
            .map_or_else(|| "mediagate".to_owned(), |a| ip_host(a.ip()));
        let call_id = self.ep.new_call_id(&host);
        let mut h = mediagate_sip_proto::message::Headers::default();
        h.push(Header::Via(self.via(t)));
        h.push(Header::MaxForwards(
            a.max_forwards().unwrap_or(70).saturating_sub(1),
        ));
        h.push(Header::From(from));
        h.push(Header::To(to));
        h.push(Header::CallId(call_id));
        h.push(Header::CSeq(mediagate_sip_proto::message::CSeq {
            seq: 1,
            method: Method::Invite,
        }));
        h.push(self.contact(t));
        h.push(other("Allow", ALLOW));
        if let Some(se) = self.cfg.session_expires {
            // RFC 4028 §7.1: ask for session timers; the callee picks the refresher.
            h.push(other("Supported", "timer"));
            h.push(other("Session-Expires", se.as_secs().to_string()));
            h.push(other("Min-SE", self.cfg.min_se.as_secs().to_string()));
        }
        if sdp.is_some() {
            h.push(Header::ContentType("application/sdp".into()));
        }
        h.push(Header::ContentLength(0));
        Request {
            method: Method::Invite,
            uri,
            headers: h,
            body: sdp.as_ref().map(Sdp::to_bytes).unwrap_or_default(),
        }
    }

    fn set_leg(&self, key: CallKey, side: Side, params: &[StreamParams]) {
        if let Some(call) = self.calls.get(&key) {
            apply_leg(&*self.media, call, side, params);
        }
    }

    /// Anchors the audio streams of `sdp` that have no relay pair yet (a delayed offer, or a
    /// re-INVITE adding a stream). A stream that cannot get ports is answered with port 0.
    fn ensure_streams(&mut self, key: CallKey, sdp: &Sdp) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let missing: Vec<usize> = (0..sdp.media.len())
            .filter(|i| sdp.is_anchorable(*i) && !call.streams.contains(i))
            .collect();
        for i in missing {
            match self.media.allocate(key, i) {
                Ok((a, b)) => {
                    if let Some(call) = self.calls.get_mut(&key) {
                        call.a.media.set_local(i, Some(a));
                        call.b.media.set_local(i, Some(b));
                        call.streams.push(i);
                    }
                }
                Err(e) => {
                    tracing::warn!(call = %key, stream = i, %e, "media stream not anchored: port 0")
                }
            }
        }
    }

    /// Sends a response to A's initial INVITE, with `sdp` (already rewritten for leg A).
    fn answer_a(
        &mut self,
        now: Instant,
        key: CallKey,
        status: StatusCode,
        reason: String,
        sdp: Option<Sdp>,
        is_final_2xx: bool,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let mut r = call.a_invite.response(status);
        r.reason = reason;
        if let Some(to) = r.headers.to_mut() {
            to.set_tag(&call.a_tag);
        }
        let at = r.headers.0.len().saturating_sub(1);
        let t = call.a.remote.transport;
        let tx = call.a_tx;
        let contact = self.contact(t);
        let call = match self.calls.get_mut(&key) {
            Some(c) => c,
            None => return,
        };
        r.headers.0.insert(at, contact);
        r.headers.0.insert(at + 1, other("Allow", ALLOW));
        // RFC 3261 §12.1.1: a response that creates a dialog copies the Record-Route values
        // of the request, in order, so in-dialog requests follow the proxies (e.g. the PBX).
        let rr: Vec<Header> = call
            .a_invite
            .headers
            .record_routes()
            .cloned()
            .map(Header::RecordRoute)
            .collect();
        for (i, h) in rr.into_iter().enumerate() {
            r.headers.0.insert(at + i, h);
        }
        if let Some(sdp) = sdp {
            r.headers
                .0
                .insert(at + 2, Header::ContentType("application/sdp".into()));
            r.body = sdp.to_bytes();
            call.a.last_sdp = Some(sdp);
        }
        if is_final_2xx
            && let UasDecision::Use {
                interval,
                refresher,
                require,
            } = call.a_timer
        {
            let timer = SessionTimer::new(now, interval, refresher);
            let at = r.headers.0.len().saturating_sub(1);
            r.headers
                .0
                .insert(at, other("Session-Expires", timer.header(true)));
            if require {
                r.headers.0.insert(at, other("Require", "timer"));
            }
            call.timers[0] = Some(timer);
            self.session_due.push(std::cmp::Reverse((timer.due, key)));
        }
        let call = match self.calls.get_mut(&key) {
            Some(c) => c,
            None => return,
        };
        if is_final_2xx {
            match Dialog::new_uas(&call.a_invite, &r) {
                Ok(d) => {
                    self.dialogs.insert(
                        (d.id.call_id.clone(), d.id.local_tag.clone()),
                        (key, Side::A),
                    );
                    call.a.dialog = Some(d);
                }
                Err(e) => tracing::info!(call = %key, %e, "caller dialog not created"),
            }
            call.state = CallState::Confirmed;
            call.a_answered = true;
            call.answered_at = Some(now);
        }
        self.respond(now, tx, r);
    }

    fn on_response(&mut self, now: Instant, id: TransactionId, resp: Response) {
        let Some(use_) = self.txs.get(&id).cloned() else {
            return;
        };
        if resp.status.is_final() {
            self.txs.remove(&id);
        }
        match use_ {
            TxUse::Refresh { call, side, invite } => {
                self.on_refresh_response(now, call, side, invite, resp)
            }
            TxUse::OutboundInvite(key) => self.on_b_invite_response(now, key, resp),
            TxUse::Relay {
                call,
                from,
                server,
                method,
            } => self.on_relay_response(now, call, from, server, method, resp),
        }
    }

    fn on_b_invite_response(&mut self, now: Instant, key: CallKey, resp: Response) {
        let code = resp.status.code();
        if code == 100 {
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if resp.status.is_provisional() {
            call.b_got_provisional = true;
            if call.cancel_pending {
                call.cancel_pending = false;
                self.send_cancel_b(now, key);
                return;
            }
            if call.state != CallState::Early {
                return;
            }
            let sdp = self.b_answer_sdp(key, &resp);
            // Early media we cannot use: relay the 1xx without it.
            let sdp = sdp.unwrap_or_default();
            self.answer_a(now, key, resp.status, resp.reason.clone(), sdp, false);
            return;
        }
        if resp.status.is_success() {
            // ACK B at once (we own leg B's dialog).
            let Some(invite) = call.b_invite.clone() else {
                return;
            };
            let mut dialog = match Dialog::new_uac(&invite, &resp) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(call = %key, %e, "callee 2xx without dialog");
                    return;
                }
            };
            dialog.on_response(&resp);
            let via = self.via(call_transport(&self.calls, key, Side::B));
            let ack = dialog.create_ack(dialog.invite_seq, via);
            let call = match self.calls.get_mut(&key) {
                Some(c) => c,
                None => return,
            };
            let b_remote = call.b.remote;
            self.dialogs.insert(
                (dialog.id.call_id.clone(), dialog.id.local_tag.clone()),
                (key, Side::B),
            );
            call.b.dialog = Some(dialog);
            // RFC 4028 §7.2: the callee's 2xx says who refreshes its leg.
            call.update_ok[1] = session_timer::allows_update(&resp.headers);
            if let Some((interval, refresher)) =
                session_timer::as_uac(&resp.headers, self.cfg.session_expires)
            {
                let timer = SessionTimer::new(now, interval, refresher);
                call.timers[1] = Some(timer);
                self.session_due.push(std::cmp::Reverse((timer.due, key)));
            }
            let delayed = call.b.last_sdp.is_none() && call.state == CallState::Early;
            if delayed {
                return self.on_delayed_offer(now, key, &resp, ack);
            }
            self.ep.send_stateless(
                b_remote,
                &mediagate_sip_proto::message::Message::Request(ack),
            );
            let state = self.calls.get(&key).map(|c| c.state);
            if state == Some(CallState::Cancelling) {
                // The CANCEL race: B answered before our CANCEL landed.
                let o = Outcome::new(
                    CallResult::Cancelled,
                    487,
                    "Request Terminated",
                    EndedBy::Caller,
                );
                self.end_call(now, key, Some(Side::A), o);
                return;
            }
            match self.b_answer_sdp(key, &resp) {
                Ok(sdp) => {
                    self.answer_a(now, key, StatusCode::OK, resp.reason.clone(), sdp, true);
                }
                Err(e) => {
                    tracing::info!(call = %key, %e, "callee answer refused: BYE + 488");
                    self.fail_a(now, key, StatusCode::NOT_ACCEPTABLE_HERE);
                    let o = Outcome::new(
                        CallResult::Failed,
                        488,
                        format!("callee's answer refused: {e}"),
                        EndedBy::Gateway,
                    );
                    self.end_call(now, key, Some(Side::A), o);
                }
            }
            return;
        }
        // Final failure: relay the status to A, end the call.
        let state = call.state;
        if state == CallState::Early {
            let status = resp.status;
            let a_tx = call.a_tx;
            let inv = call.a_invite.clone();
            let tag = call.a_tag.clone();
            let mut r = inv.response(status);
            r.reason = resp.reason.clone();
            if let Some(to) = r.headers.to_mut() {
                to.set_tag(&tag);
            }
            if let Some(ra) = resp.headers.retry_after() {
                let at = r.headers.0.len().saturating_sub(1);
                r.headers.0.insert(at, Header::RetryAfter(ra.clone()));
            }
            self.respond(now, a_tx, r);
        }
        let cancelled = state == CallState::Cancelling;
        let o = Outcome::new(
            if cancelled {
                CallResult::Cancelled
            } else {
                CallResult::Failed
            },
            resp.status.code(),
            resp.reason.clone(),
            if cancelled {
                EndedBy::Caller
            } else {
                EndedBy::Callee
            },
        );
        self.finish_call(now, key, o);
    }

    /// Processes B's SDP answer (if any) and returns A's answer SDP.
    fn b_answer_sdp(&mut self, key: CallKey, resp: &Response) -> Result<Option<Sdp>, SdpError> {
        if !is_sdp(&resp.headers, &resp.body) {
            return Ok(None);
        }
        let answer = Sdp::parse(&resp.body)?;
        let Some(call) = self.calls.get_mut(&key) else {
            return Ok(None);
        };
        let pb = call.b.media.on_remote_answer(&answer)?;
        let a_sdp = call.a.media.local_answer(&answer);
        self.set_leg(key, Side::B, &pb);
        Ok(Some(a_sdp))
    }

    fn fail_a(&mut self, now: Instant, key: CallKey, status: StatusCode) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.a_answered {
            return;
        }
        let (tx, inv, tag) = (call.a_tx, call.a_invite.clone(), call.a_tag.clone());
        let mut r = inv.response(status);
        if let Some(to) = r.headers.to_mut() {
            to.set_tag(&tag);
        }
        if let Some(c) = self.calls.get_mut(&key) {
            c.a_answered = true;
        }
        self.respond(now, tx, r);
    }

    fn send_cancel_b(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let (Some(inv), remote) = (call.b_invite.clone(), call.b.remote) else {
            return;
        };
        let cancel = inv.cancel();
        if let Err(e) = self.ep.send_request(now, remote, cancel) {
            tracing::debug!(call = %key, %e, "CANCEL not sent");
        }
    }

    fn on_cancelled(&mut self, now: Instant, invite: TransactionId) {
        let Some(&key) = self.inbound.get(&invite) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.a_answered || call.state != CallState::Early {
            return;
        }
        tracing::info!(call = %key, "caller cancelled");
        self.fail_a(now, key, StatusCode::REQUEST_TERMINATED);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.state = CallState::Cancelling;
        if call.echo {
            let o = Outcome::new(
                CallResult::Cancelled,
                487,
                "Request Terminated",
                EndedBy::Caller,
            );
            self.finish_call(now, key, o);
        } else if call.b_got_provisional {
            self.send_cancel_b(now, key);
        } else {
            // RFC 3261 §9.1: no CANCEL before a provisional response.
            call.cancel_pending = true;
        }
    }

    /// Delayed offer: B's 2xx carries the offer. Rewrite it as our offer to A (in A's 2xx) and
    /// hold the ACK to B until A's ACK brings the answer.
    fn on_delayed_offer(&mut self, now: Instant, key: CallKey, resp: &Response, ack: Request) {
        let offer = if is_sdp(&resp.headers, &resp.body) {
            Sdp::parse(&resp.body).ok()
        } else {
            None
        };
        if let Some(o) = &offer {
            self.ensure_streams(key, o);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let negotiated = offer.map(|o| {
            let pb = call.b.media.on_remote_offer(&o);
            (pb, o)
        });
        let remote = call.b.remote;
        let (pb, o) = match negotiated {
            Some((Ok(pb), o)) => (pb, o),
            _ => {
                tracing::info!(call = %key, "callee 2xx without an acceptable offer: BYE + 488");
                self.ep
                    .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
                self.fail_a(now, key, StatusCode::NOT_ACCEPTABLE_HERE);
                let o = Outcome::new(
                    CallResult::Failed,
                    488,
                    "callee's 2xx without an acceptable offer",
                    EndedBy::Gateway,
                );
                return self.end_call(now, key, Some(Side::A), o);
            }
        };
        let Ok(a_offer) = call.a.media.local_offer(&o, true) else {
            self.ep
                .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
            self.fail_a(now, key, StatusCode::SERVER_INTERNAL_ERROR);
            let o = Outcome::new(
                CallResult::Failed,
                500,
                "cannot build the offer to the caller",
                EndedBy::Gateway,
            );
            return self.end_call(now, key, Some(Side::A), o);
        };
        call.b.last_sdp = Some(o);
        call.b_ack_pending = Some(ack);
        self.set_leg(key, Side::B, &pb);
        self.answer_a(
            now,
            key,
            StatusCode::OK,
            resp.reason.clone(),
            Some(a_offer),
            true,
        );
    }

    fn on_ack(&mut self, now: Instant, req: &Request) {
        let Some((key, side)) = self.find_dialog(req) else {
            return;
        };
        tracing::trace!(call = %key, side = side.name(), "ACK absorbed");
        if side != Side::A {
            return;
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(mut ack) = call.b_ack_pending.take() else {
            return;
        };
        // Delayed offer: A's ACK carries the answer; pass it on to B in our ACK.
        let answer = if is_sdp(&req.headers, &req.body) {
            Sdp::parse(&req.body).ok()
        } else {
            None
        };
        let remote = call.b.remote;
        match answer.map(|a| (call.a.media.on_remote_answer(&a), a)) {
            Some((Ok(pa), a)) => {
                let b_answer = call.b.media.local_answer(&a);
                call.b.last_sdp = Some(b_answer.clone());
                let at = ack.headers.0.len().saturating_sub(1);
                ack.headers
                    .0
                    .insert(at, Header::ContentType("application/sdp".into()));
                ack.body = b_answer.to_bytes();
                self.set_leg(key, Side::A, &pa);
                self.ep
                    .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
            }
            _ => {
                tracing::info!(call = %key, "caller ACK without an acceptable answer: BYE both");
                self.ep
                    .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
                let o = Outcome::new(
                    CallResult::Failed,
                    488,
                    "caller's ACK without an acceptable answer",
                    EndedBy::Gateway,
                );
                self.end_call(now, key, None, o);
            }
        }
    }

    fn on_stray(&mut self, _remote: Remote, resp: &Response) {
        // A retransmitted 2xx to our INVITE: re-send the ACK (RFC 3261 §13.2.2.4).
        if !resp.status.is_success() || resp.cseq_method() != Some(&Method::Invite) {
            return;
        }
        let (Some(call_id), Some(tag)) = (
            resp.headers.call_id(),
            resp.headers.from().and_then(NameAddr::tag),
        ) else {
            return;
        };
        let Some(&(key, side)) = self.dialogs.get(&(call_id.to_owned(), tag.to_owned())) else {
            return;
        };
        let t = call_transport(&self.calls, key, side);
        let via = self.via(t);
        if let Some(call) = self.calls.get_mut(&key) {
            if call.b_ack_pending.is_some() {
                return; // delayed offer: the ACK waits for the caller's answer
            }
            let leg = call.leg(side);
            if let Some(d) = &leg.dialog {
                let seq = resp.headers.cseq().map_or(d.invite_seq, |c| c.seq);
                let ack = d.create_ack(seq, via);
                let remote = leg.remote;
                self.ep
                    .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
            }
        }
    }

    fn on_in_dialog(&mut self, now: Instant, id: TransactionId, remote: Remote, req: Request) {
        let Some((key, side)) = self.find_dialog(&req) else {
            return match req.method {
                Method::Ack => {}
                Method::Options => self.reply(now, id, &req, StatusCode::OK),
                _ => self.reply(now, id, &req, StatusCode::CALL_DOES_NOT_EXIST),
            };
        };
        if let Err(why) = self.in_dialog_source_ok(key, side, remote) {
            self.metrics.admission_refusals.inc("wrong_dialog_peer");
            self.verdicts.push_back((remote, Verdict::Refused));
            if let Some(left_out) = self.log.allow(now, "GW1201", remote.addr.ip()) {
                tracing::warn!(
                    code = "GW1201",
                    %remote,
                    call = %key,
                    side = side.name(),
                    presented = %why,
                    method = %req.method,
                    left_out,
                    "GW1201 in-dialog request refused"
                );
            }
            if req.method == Method::Ack {
                return;
            }
            return self.reply_reason(
                now,
                id,
                &req,
                StatusCode::FORBIDDEN,
                Some(format!("Forbidden ({why})")),
            );
        }
        self.verdicts.push_back((remote, Verdict::Admitted));
        if let Some(call) = self.calls.get_mut(&key)
            && let Some(d) = call.leg(side).dialog.as_mut()
            && let Err(e) = d.on_request(&req)
        {
            tracing::info!(call = %key, %e, "in-dialog request refused");
            return self.reply(now, id, &req, StatusCode::SERVER_INTERNAL_ERROR);
        }
        match req.method {
            Method::Bye => {
                self.reply(now, id, &req, StatusCode::OK);
                tracing::info!(code = "GW1211", call = %key, side = side.name(), "call ended by BYE");
                let by = match side {
                    Side::A => EndedBy::Caller,
                    Side::B => EndedBy::Callee,
                };
                self.end_call(now, key, Some(side), Outcome::hangup(by));
            }
            Method::Invite | Method::Update => {
                // Any re-INVITE or UPDATE from a leg's peer refreshes its session (RFC 4028).
                self.session_refreshed(now, key, side);
                self.relay_offer(now, id, key, side, req)
            }
            Method::Options | Method::Prack => self.reply(now, id, &req, StatusCode::OK),
            Method::Ack | Method::Cancel => {}
            Method::Extension(_) => self.reply(now, id, &req, StatusCode::NOT_IMPLEMENTED),
            _ => self.reply(now, id, &req, StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// An in-dialog request must come from the peer of its leg (R-PEER-2 holds inside dialogs
    /// too: knowing a Call-ID and tags must not let anyone end or re-INVITE a call). Accepted:
    /// the leg's own connection/address, or a source that the call's policy admits as that
    /// same peer (a PBX that opened a new connection, a UDP peer sending from another port).
    fn in_dialog_source_ok(&self, key: CallKey, side: Side, remote: Remote) -> Result<(), String> {
        let Some(call) = self.calls.get(&key) else {
            return Ok(());
        };
        let (leg_remote, peer) = match side {
            Side::A => (call.a.remote, Some(&call.a_peer)),
            Side::B => (call.b.remote, call.b_peer.as_ref()),
        };
        if remote == leg_remote {
            return Ok(());
        }
        let Some(peer) = peer else {
            return Err("not the local endpoint's leg".into());
        };
        let identity = self.identities.get(&remote).cloned();
        match call
            .policy
            .admit(remote.transport, remote.addr, identity.as_deref())
        {
            Ok(a) if &a.peer.name == peer => Ok(()),
            Ok(a) => Err(format!(
                "dialog belongs to peer {peer}, request from peer {}",
                a.peer.name
            )),
            Err(refusal) => Err(format!("dialog belongs to peer {peer}: {refusal}")),
        }
    }

    /// re-INVITE or UPDATE from `side`: rewrite its offer for the other leg and relay.
    fn relay_offer(
        &mut self,
        now: Instant,
        id: TransactionId,
        key: CallKey,
        side: Side,
        req: Request,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return self.reply(now, id, &req, StatusCode::CALL_DOES_NOT_EXIST);
        };
        if call.echo && call.state == CallState::Confirmed && is_sdp(&req.headers, &req.body) {
            return self.reoffer_local(now, id, key, side, req);
        }
        if call.state != CallState::Confirmed || call.echo {
            // Mid-setup UPDATE, or a local endpoint: answer with what we have.
            let sdp = call.leg(side).last_sdp.clone();
            return self.reply_sdp(now, id, &req, sdp);
        }
        if !is_sdp(&req.headers, &req.body) {
            // No offer: answer with our current SDP for that leg, nothing to relay.
            let sdp = call.leg(side).last_sdp.clone();
            return self.reply_sdp(now, id, &req, sdp);
        }
        // RFC 3261 §14.2: one offer/answer exchange at a time per call (glare → 491).
        let busy = self.txs.values().any(|u| {
            matches!(u, TxUse::Relay { call, method, .. }
                if *call == key && matches!(method, Method::Invite | Method::Update))
        });
        if busy {
            return self.reply(now, id, &req, StatusCode::REQUEST_PENDING);
        }
        let offer = match parse_offer(&req) {
            Ok(o) => o,
            Err((status, reason)) => return self.reply_reason(now, id, &req, status, Some(reason)),
        };
        self.ensure_streams(key, &offer);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let params = match negotiate(call, side, &offer) {
            Ok(x) => x,
            Err((status, reason)) => return self.reply_reason(now, id, &req, status, Some(reason)),
        };
        let renew = params.iter().any(|p| p.key_changed);
        let o = side.other();
        let out_sdp = match call.leg(o).media.local_offer(&offer, renew) {
            Ok(s) => s,
            Err(_) => return self.reply(now, id, &req, StatusCode::SERVER_INTERNAL_ERROR),
        };
        self.set_leg(key, side, &params);
        let t = call_transport(&self.calls, key, o);
        let via = self.via(t);
        let contact = self.contact(t);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let leg = call.leg(o);
        let Some(d) = leg.dialog.as_mut() else {
            return self.reply(now, id, &req, StatusCode::SERVER_INTERNAL_ERROR);
        };
        let mut fwd = d.create_request(req.method.clone(), via);
        let at = fwd.headers.0.len().saturating_sub(1);
        fwd.headers.0.insert(at, contact);
        fwd.headers
            .0
            .insert(at + 1, Header::ContentType("application/sdp".into()));
        fwd.body = out_sdp.to_bytes();
        leg.last_sdp = Some(out_sdp);
        let remote = leg.remote;
        let method = req.method.clone();
        match self.ep.send_request(now, remote, fwd) {
            Ok(tx) => {
                self.txs.insert(
                    tx,
                    TxUse::Relay {
                        call: key,
                        from: side,
                        server: id,
                        method,
                    },
                );
            }
            Err(_) => self.reply(now, id, &req, StatusCode::SERVER_INTERNAL_ERROR),
        }
        // Keep the original request to build the final response later.
        self.pending_requests.insert(id, req);
    }

    /// re-INVITE/UPDATE with an offer from the caller of a local-endpoint call: the caller's
    /// leg is updated (new address, new key, hold) and answered from the endpoint's answer;
    /// the internal leg stays as it is.
    fn reoffer_local(
        &mut self,
        now: Instant,
        id: TransactionId,
        key: CallKey,
        side: Side,
        req: Request,
    ) {
        let offer = match parse_offer(&req) {
            Ok(o) => o,
            Err((status, reason)) => return self.reply_reason(now, id, &req, status, Some(reason)),
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return self.reply(now, id, &req, StatusCode::CALL_DOES_NOT_EXIST);
        };
        let params = match negotiate(call, side, &offer) {
            Ok(x) => x,
            Err((status, reason)) => return self.reply_reason(now, id, &req, status, Some(reason)),
        };
        // The endpoint's answer is the template, one m= line per offered one (streams the
        // endpoint does not serve answered with port 0), with the direction RFC 3264 §6.1
        // gives the offer's: a caller that holds (sendonly) gets recvonly, and the endpoint
        // stops sending.
        let mut template = call.echo_answer.clone().unwrap_or_else(|| offer.clone());
        template.media.truncate(offer.media.len());
        for m in offer.media.iter().skip(template.media.len()) {
            let mut extra = m.clone();
            extra.port = 0;
            template.media.push(extra);
        }
        let served = (0..offer.media.len()).find(|i| offer.is_anchorable(*i));
        let answer_dir = served.map_or(Direction::Inactive, |i| offer.direction(i).answer());
        template
            .session
            .retain(|l| !is_direction_line(l.kind, &l.value));
        for m in &mut template.media {
            m.lines.retain(|l| !is_direction_line(l.kind, &l.value));
            if m.port != 0 {
                m.lines.push(mediagate_sip_proto::sdp::Line {
                    kind: 'a',
                    value: answer_dir.attribute().to_owned(),
                });
            }
        }
        let answer = call.leg(side).media.local_answer(&template);
        call.leg(side).last_sdp = Some(answer.clone());
        self.set_leg(key, side, &params);
        if let Some(le) = &self.local_endpoint {
            le.set_sending(key, answer_dir.sends());
        }
        self.reply_sdp(now, id, &req, Some(answer));
    }

    /// A 200 to an in-dialog request, with `sdp` as its body; a 2xx to INVITE or UPDATE
    /// carries our Contact (RFC 3261 §12.1.1, RFC 3311 §5.2).
    fn reply_sdp(&mut self, now: Instant, id: TransactionId, req: &Request, sdp: Option<Sdp>) {
        let mut r = req.response(StatusCode::OK);
        if matches!(req.method, Method::Invite | Method::Update) {
            let t = self
                .dialogs
                .get(&(
                    req.headers.call_id().unwrap_or_default().to_owned(),
                    req.headers
                        .to()
                        .and_then(NameAddr::tag)
                        .unwrap_or_default()
                        .to_owned(),
                ))
                .map_or(TransportKind::Udp, |(k, side)| {
                    call_transport(&self.calls, *k, *side)
                });
            let at = r.headers.0.len().saturating_sub(1);
            r.headers.0.insert(at, self.contact(t));
            if let Some(&(key, side)) = self.dialogs.get(&(
                req.headers.call_id().unwrap_or_default().to_owned(),
                req.headers
                    .to()
                    .and_then(NameAddr::tag)
                    .unwrap_or_default()
                    .to_owned(),
            )) {
                self.add_session_expires(&mut r, key, side);
            }
        }
        if let Some(sdp) = sdp {
            let at = r.headers.0.len().saturating_sub(1);
            r.headers
                .0
                .insert(at, Header::ContentType("application/sdp".into()));
            r.body = sdp.to_bytes();
        }
        self.respond(now, id, r);
    }

    fn on_relay_response(
        &mut self,
        now: Instant,
        key: CallKey,
        from: Side,
        server: TransactionId,
        method: Method,
        resp: Response,
    ) {
        if resp.status.is_provisional() {
            return;
        }
        let Some(req) = self.pending_requests.remove(&server) else {
            return;
        };
        let o = from.other();
        if resp.status.is_success() && matches!(method, Method::Invite | Method::Update) {
            // Our relayed request refreshed the other leg's session.
            self.session_refreshed(now, key, o);
        }
        if resp.status.is_success() && method == Method::Invite {
            // ACK the other leg ourselves.
            let via = self.via(call_transport(&self.calls, key, o));
            if let Some(call) = self.calls.get_mut(&key) {
                let leg = call.leg(o);
                if let Some(d) = leg.dialog.as_mut() {
                    d.on_response(&resp);
                    let seq = resp.headers.cseq().map_or(d.invite_seq, |c| c.seq);
                    let ack = d.create_ack(seq, via);
                    let remote = leg.remote;
                    self.ep.send_stateless(
                        remote,
                        &mediagate_sip_proto::message::Message::Request(ack),
                    );
                }
            }
        }
        let mut r = req.response(resp.status);
        r.reason = resp.reason.clone();
        if resp.status.is_success() && is_sdp(&resp.headers, &resp.body) {
            let answer = Sdp::parse(&resp.body).ok();
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            match answer.map(|a| {
                let p = call.leg(o).media.on_remote_answer(&a);
                (p, a)
            }) {
                Some((Ok(p), a)) => {
                    let back = call.leg(from).media.local_answer(&a);
                    call.leg(from).last_sdp = Some(back.clone());
                    self.set_leg(key, o, &p);
                    let at = r.headers.0.len().saturating_sub(1);
                    r.headers
                        .0
                        .insert(at, Header::ContentType("application/sdp".into()));
                    r.body = back.to_bytes();
                }
                _ => {
                    r = req.response(StatusCode::NOT_ACCEPTABLE_HERE);
                }
            }
        }
        if resp.status.is_success() {
            let t = call_transport(&self.calls, key, from);
            let at = r.headers.0.len().saturating_sub(1);
            r.headers.0.insert(at, self.contact(t));
            self.add_session_expires(&mut r, key, from);
        }
        self.respond(now, server, r);
    }

    fn on_failure(&mut self, now: Instant, id: TransactionId, status: StatusCode) {
        let Some(use_) = self.txs.remove(&id) else {
            return;
        };
        match use_ {
            TxUse::OutboundInvite(key) => {
                tracing::info!(call = %key, %status, "callee leg failed");
                self.fail_a(now, key, status);
                let why = if status == StatusCode::REQUEST_TIMEOUT {
                    "no final answer from the callee"
                } else {
                    "the callee could not be reached"
                };
                let o = Outcome::new(CallResult::Failed, status.code(), why, EndedBy::Gateway);
                self.finish_call(now, key, o);
            }
            TxUse::Relay { server, .. } => {
                if let Some(req) = self.pending_requests.remove(&server) {
                    self.reply(now, server, &req, status);
                }
            }
            TxUse::Refresh { call, side, .. } => {
                self.session_lost(now, call, side, "the session refresh got no answer");
            }
        }
    }

    /// Acts on the session timers that are due: sends our refreshes, and ends the calls whose
    /// peer did not refresh in time (RFC 4028 §10).
    fn run_session_timers(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((due, key))) = self.session_due.peek().copied() {
            if due > now {
                break;
            }
            self.session_due.pop();
            let Some(timers) = self.calls.get(&key).map(|c| c.timers) else {
                continue;
            };
            for (side, t) in [Side::A, Side::B].into_iter().zip(timers) {
                let Some(t) = t else {
                    continue;
                };
                if t.due > now || t.refreshing {
                    continue;
                }
                match t.refresher {
                    Refresher::Us => self.send_refresh(now, key, side),
                    Refresher::Peer => {
                        let why = format!(
                            "no session refresh from the {} within {} s",
                            side.role(),
                            t.interval.as_secs()
                        );
                        self.session_lost_then(now, key, side, &why, true);
                        break;
                    }
                }
            }
        }
    }

    /// Sends our session refresh on leg `side`: an UPDATE without body when its peer allows
    /// UPDATE, else a re-INVITE with the SDP we last sent (unchanged version: no new offer).
    fn send_refresh(&mut self, now: Instant, key: CallKey, side: Side) {
        let t = call_transport(&self.calls, key, side);
        let via = self.via(t);
        let contact = self.contact(t);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let use_update = call.update_ok[side_index(side)];
        let timer = call.timers[side_index(side)];
        let leg = call.leg(side);
        let (Some(d), Some(timer)) = (leg.dialog.as_mut(), timer) else {
            return;
        };
        let method = if use_update {
            Method::Update
        } else {
            Method::Invite
        };
        let mut req = d.create_request(method.clone(), via);
        let at = req.headers.0.len().saturating_sub(1);
        req.headers.0.insert(at, contact);
        req.headers.0.insert(at + 1, other("Supported", "timer"));
        req.headers
            .0
            .insert(at + 2, other("Session-Expires", timer.header(false)));
        if method == Method::Invite
            && let Some(sdp) = leg.last_sdp.clone()
        {
            req.headers
                .0
                .insert(at + 3, Header::ContentType("application/sdp".into()));
            req.body = sdp.to_bytes();
        }
        let remote = leg.remote;
        match self.ep.send_request(now, remote, req) {
            Ok(tx) => {
                if let Some(t) = self
                    .calls
                    .get_mut(&key)
                    .and_then(|c| c.timers[side_index(side)].as_mut())
                {
                    t.refreshing = true;
                }
                self.txs.insert(
                    tx,
                    TxUse::Refresh {
                        call: key,
                        side,
                        invite: method == Method::Invite,
                    },
                );
            }
            Err(e) => {
                let why = format!("the session refresh could not be sent: {e}");
                self.session_lost(now, key, side, &why);
            }
        }
    }

    /// The answer to our session refresh on leg `side`.
    fn on_refresh_response(
        &mut self,
        now: Instant,
        key: CallKey,
        side: Side,
        invite: bool,
        resp: Response,
    ) {
        if resp.status.is_provisional() {
            return;
        }
        if resp.status.is_success() {
            let t = call_transport(&self.calls, key, side);
            let via = self.via(t);
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            let leg = call.leg(side);
            if invite && let Some(d) = leg.dialog.as_mut() {
                // We own this re-INVITE: ACK it.
                d.on_response(&resp);
                let seq = resp.headers.cseq().map_or(d.invite_seq, |c| c.seq);
                let ack = d.create_ack(seq, via);
                let remote = leg.remote;
                self.ep
                    .send_stateless(remote, &mediagate_sip_proto::message::Message::Request(ack));
            }
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            if let Some(t) = call.timers[side_index(side)].as_mut() {
                // The 2xx may change the interval (RFC 4028 §7.2).
                if let Some((interval, _)) = session_timer::session_expires(&resp.headers) {
                    t.interval = interval;
                }
                t.refreshed(now);
                let due = t.due;
                self.session_due.push(std::cmp::Reverse((due, key)));
            }
            return;
        }
        if resp.status == StatusCode::REQUEST_PENDING {
            // Glare: try again shortly.
            if let Some(t) = self
                .calls
                .get_mut(&key)
                .and_then(|c| c.timers[side_index(side)].as_mut())
            {
                t.refreshing = false;
                t.due = now + Duration::from_secs(2);
                let due = t.due;
                self.session_due.push(std::cmp::Reverse((due, key)));
            }
            return;
        }
        let why = format!(
            "the session refresh was answered {} {}",
            resp.status.code(),
            resp.reason
        );
        self.session_lost(now, key, side, &why);
    }

    /// Adds `Session-Expires` (and `Require: timer` when the peer refreshes) to our 2xx to a
    /// refresh from leg `side`'s peer (RFC 4028 §9).
    fn add_session_expires(&self, r: &mut Response, key: CallKey, side: Side) {
        let Some(t) = self
            .calls
            .get(&key)
            .and_then(|c| c.timers[side_index(side)])
        else {
            return;
        };
        let at = r.headers.0.len().saturating_sub(1);
        r.headers
            .0
            .insert(at, other("Session-Expires", t.header(true)));
        if t.refresher == Refresher::Peer {
            r.headers.0.insert(at, other("Require", "timer"));
        }
    }

    /// A leg's session is lost (its refresh failed): the call ends on both legs.
    fn session_lost(&mut self, now: Instant, key: CallKey, side: Side, why: &str) {
        self.session_lost_then(now, key, side, why, false);
    }

    fn session_lost_then(
        &mut self,
        now: Instant,
        key: CallKey,
        side: Side,
        why: &str,
        expired: bool,
    ) {
        if !self.calls.contains_key(&key) {
            return;
        }
        tracing::warn!(
            code = "GW1215",
            call = %key,
            side = side.name(),
            why,
            "GW1215 session timer: call ended"
        );
        SipMetrics::add(&self.metrics.session_expiries, 1);
        let text = if expired {
            "SIP;cause=408;text=\"Session Timer Expired\""
        } else {
            "SIP;cause=408;text=\"Session Refresh Failed\""
        };
        let mut o = Outcome::hangup(EndedBy::SessionExpired);
        o.reason = why.to_owned();
        self.end_call_with(now, key, None, Some(text), o);
    }

    /// A refresh (re-INVITE or UPDATE) came from, or was answered on, leg `side`: its session
    /// is alive.
    fn session_refreshed(&mut self, now: Instant, key: CallKey, side: Side) {
        if let Some(t) = self
            .calls
            .get_mut(&key)
            .and_then(|c| c.timers[side_index(side)].as_mut())
        {
            t.refreshed(now);
            let due = t.due;
            self.session_due.push(std::cmp::Reverse((due, key)));
        }
    }

    /// Ends the call: BYE on each confirmed leg except `except` (which already ended it).
    fn end_call(&mut self, now: Instant, key: CallKey, except: Option<Side>, outcome: Outcome) {
        self.end_call_with(now, key, except, None, outcome);
    }

    /// [`B2bua::end_call`] with a `Reason` header (RFC 3326) in the BYEs.
    fn end_call_with(
        &mut self,
        now: Instant,
        key: CallKey,
        except: Option<Side>,
        reason: Option<&str>,
        outcome: Outcome,
    ) {
        for side in [Side::A, Side::B] {
            if Some(side) == except {
                continue;
            }
            let t = call_transport(&self.calls, key, side);
            let via = self.via(t);
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            let leg = call.leg(side);
            if let Some(d) = leg.dialog.as_mut()
                && d.state != mediagate_sip_proto::DialogState::Terminated
            {
                let mut bye = d.create_request(Method::Bye, via);
                if let Some(reason) = reason {
                    let at = bye.headers.0.len().saturating_sub(1);
                    bye.headers.0.insert(at, other("Reason", reason));
                }
                let remote = leg.remote;
                if let Err(e) = self.ep.send_request(now, remote, bye) {
                    tracing::debug!(call = %key, %e, "BYE not sent");
                }
            }
        }
        self.finish_call(now, key, outcome);
    }

    /// The call is over: one `GW1220` line with both legs' Call-IDs, the dial plan and mode,
    /// the outcome, the duration and the media counters; `calls_total{result}` counted; its
    /// dialogs, the local endpoint's part and the media ports released.
    fn finish_call(&mut self, now: Instant, key: CallKey, outcome: Outcome) {
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        for leg in [&call.a, &call.b] {
            if let Some(d) = &leg.dialog {
                self.dialogs
                    .remove(&(d.id.call_id.clone(), d.id.local_tag.clone()));
            }
        }
        let summary = self.media.summary(key);
        if call.echo
            && let Some(le) = &self.local_endpoint
        {
            le.hangup(key);
        }
        self.media.release(key);
        let duration = call
            .answered_at
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        let [a, b] = summary.unwrap_or_default();
        tracing::info!(
            code = "GW1220",
            call = %key,
            a_call_id = call.a_invite.headers.call_id().unwrap_or_default(),
            b_call_id = call
                .b_invite
                .as_ref()
                .and_then(|i| i.headers.call_id())
                .unwrap_or_default(),
            from_peer = %call.a_peer,
            to_peer = call.b_peer.as_deref().unwrap_or("echo"),
            dial_plan = %call.plan,
            mode = %call.mode,
            result = outcome.result.as_str(),
            status = outcome.status,
            reason = %outcome.reason,
            ended_by = outcome.ended_by.as_str(),
            duration_secs = duration,
            a_packets = a.packets_in,
            a_packets_out = a.packets_out,
            a_lost = a.lost,
            b_packets = b.packets_in,
            b_packets_out = b.packets_out,
            b_lost = b.lost,
            "GW1220 call ended"
        );
        self.metrics.calls.inc((
            call.plan.clone(),
            call.mode.to_string(),
            outcome.result.as_str(),
        ));
    }

    /// The `GW1220` line and metric of an INVITE refused with a response already sent.
    /// The record of an INVITE refused before it became a call: one `GW1220` line with the
    /// same fields as an ended call's (no call key, no media), and
    /// `calls_total{result="refused"}`. `gate` rate-limits the line per source address: set
    /// for senders that are not peers, whose refusals an attacker can repeat at will.
    #[allow(clippy::too_many_arguments)]
    fn log_refusal(
        &mut self,
        req: &Request,
        status: StatusCode,
        why: &str,
        plan: Option<(&str, VoipSecurity)>,
        peer: &str,
        gate: Option<(Instant, IpAddr)>,
    ) {
        let (plan, mode) = plan.map_or(("", String::new()), |(p, m)| (p, m.to_string()));
        self.metrics
            .calls
            .inc((plan.to_owned(), mode.clone(), CallResult::Refused.as_str()));
        let left_out = match gate {
            None => 0,
            Some((now, ip)) => match self.log.allow(now, "GW1220", ip) {
                Some(n) => n,
                None => return,
            },
        };
        let reason = format!("{} ({why})", status.reason());
        tracing::info!(
            code = "GW1220",
            call = "",
            a_call_id = req.headers.call_id().unwrap_or_default(),
            b_call_id = "",
            from_peer = peer,
            to_peer = "",
            dial_plan = plan,
            mode = %mode,
            result = "refused",
            status = status.code(),
            reason = %reason,
            ended_by = "gateway",
            duration_secs = 0,
            a_packets = 0,
            a_packets_out = 0,
            a_lost = 0,
            b_packets = 0,
            b_packets_out = 0,
            b_lost = 0,
            left_out,
            "GW1220 call refused"
        );
    }

    /// An INVITE refused before it became a call: the response, one `GW1220` line naming the
    /// reason, and `calls_total{result="refused"}` (dial plan and mode when known).
    #[allow(clippy::too_many_arguments)]
    fn refuse_invite(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: &Request,
        status: StatusCode,
        why: &str,
        plan: Option<(&str, VoipSecurity)>,
        peer: &str,
    ) {
        let reason = format!("{} ({why})", status.reason());
        self.reply_reason(now, id, req, status, Some(reason));
        self.log_refusal(req, status, why, plan, peer, None);
    }
}

/// The SDP offer of an in-dialog request; on failure the status and reason phrase to answer
/// with (400 for SDP that does not parse).
fn parse_offer(req: &Request) -> Result<Sdp, (StatusCode, String)> {
    Sdp::parse(&req.body).map_err(|e| (StatusCode::BAD_REQUEST, format!("Bad Request ({e})")))
}

/// An offer from `side`, negotiated on that leg; on failure the status and reason phrase to
/// answer with (488 for an unacceptable offer).
fn negotiate(
    call: &mut Call,
    side: Side,
    offer: &Sdp,
) -> Result<Vec<StreamParams>, (StatusCode, String)> {
    call.leg(side).media.on_remote_offer(offer).map_err(|e| {
        (
            StatusCode::NOT_ACCEPTABLE_HERE,
            format!("Not Acceptable Here ({e})"),
        )
    })
}

/// True for a direction attribute line (`a=sendrecv`, `a=sendonly`, ...).
fn is_direction_line(kind: char, value: &str) -> bool {
    kind == 'a'
        && matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "sendrecv" | "sendonly" | "recvonly" | "inactive"
        )
}

/// Tells the media layer what `params` (one leg's negotiated streams) mean for each anchored
/// stream of `call`.
fn apply_leg(media: &dyn MediaAnchor, call: &Call, side: Side, params: &[StreamParams]) {
    let leg = match side {
        Side::A => &call.a,
        Side::B => &call.b,
    };
    for (i, p) in params.iter().enumerate() {
        if !p.anchored || !call.streams.contains(&i) {
            continue;
        }
        let m = LegMedia {
            remote_rtp: p.remote_rtp,
            remote_rtcp: p.remote_rtcp,
            rtcp_mux: p.rtcp_mux,
            keys: p.keys.clone(),
            source: leg.source,
            peer_ip: Some(leg.remote.addr.ip()),
            latching: leg.latching,
            peer_sends: p.direction.sends(),
            on_hold: p.direction != Direction::SendRecv || p.remote_rtp.is_none(),
        };
        if let Err(e) = media.set_leg(call.key, i, side, &m) {
            tracing::warn!(call = %call.key, stream = i, side = side.name(), %e, "media set_leg failed");
        }
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn call_has_b_provisional(calls: &HashMap<CallKey, Call>, key: CallKey) -> bool {
    calls.get(&key).is_some_and(|c| c.b_got_provisional)
}

fn call_transport(calls: &HashMap<CallKey, Call>, key: CallKey, side: Side) -> TransportKind {
    calls.get(&key).map_or(TransportKind::Udp, |c| match side {
        Side::A => c.a.remote.transport,
        Side::B => c.b.remote.transport,
    })
}

mod session_timer;

#[cfg(test)]
mod tests;
