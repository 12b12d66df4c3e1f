//! SIP message model (RFC 3261 §7, §20, §25).
//!
//! A parsed [`Message`] owns its data: the parser copies each header value once out of the
//! receive buffer, so transactions and dialogs can keep what they need without borrowing the
//! connection's buffer. Headers the core needs are typed ([`Header`]); every other header is kept
//! verbatim, in order, as [`Header::Other`]. Multi-valued headers (Via, Contact, Route,
//! Record-Route) get one [`Header`] entry per comma-separated value.

pub(crate) mod parse;
mod serialize;
mod status;
mod uri;

pub use parse::{ParseError, ParseErrorKind, PartialHeaders, parse};
pub use status::StatusCode;
pub use uri::{InvalidUri, Scheme, Uri, ip_host};

use std::fmt;

/// `z9hG4bK`: the RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// A request method. Unknown methods parse as [`Method::Extension`] so the TU can answer 501.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// OPTIONS (RFC 3261)
    Options,
    /// REGISTER (RFC 3261)
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// INFO (RFC 6086)
    Info,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token; compared case-sensitively as RFC 3261 §7.1 requires.
    Extension(String),
}

impl Method {
    /// Parses a method token (case-sensitive). Returns `None` if `s` is not a token.
    pub fn from_token(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(parse::is_token_char) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_owned()),
        })
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `name[=value]` parameter of a URI or header. The value is kept as written (a quoted
/// string keeps its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name, as written.
    pub name: String,
    /// Parameter value, `None` for a flag parameter such as `lr` or `rport`.
    pub value: Option<String>,
}

impl Param {
    /// A parameter with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            value: Some(value.into()),
        }
    }
    /// A flag parameter without a value.
    pub fn flag(name: impl Into<String>) -> Self {
        Param {
            name: name.into(),
            value: None,
        }
    }
}

/// Finds a parameter by case-insensitive name.
pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Sets (replaces or appends) a parameter.
pub(crate) fn set_param(params: &mut Vec<Param>, name: &str, value: Option<String>) {
    if let Some(p) = params
        .iter_mut()
        .find(|p| p.name.eq_ignore_ascii_case(name))
    {
        p.value = value;
    } else {
        params.push(Param {
            name: name.to_owned(),
            value,
        });
    }
}

/// The transport named in a Via header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViaTransport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WebSocket (RFC 7118)
    Ws,
    /// Secure WebSocket (RFC 7118)
    Wss,
    /// Any other token (kept upper-case as written).
    Other(String),
}

impl ViaTransport {
    pub(crate) fn from_token(s: &str) -> ViaTransport {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => ViaTransport::Udp,
            "TCP" => ViaTransport::Tcp,
            "TLS" => ViaTransport::Tls,
            "SCTP" => ViaTransport::Sctp,
            "WS" => ViaTransport::Ws,
            "WSS" => ViaTransport::Wss,
            _ => ViaTransport::Other(s.to_owned()),
        }
    }
    /// The transport token.
    pub fn as_str(&self) -> &str {
        match self {
            ViaTransport::Udp => "UDP",
            ViaTransport::Tcp => "TCP",
            ViaTransport::Tls => "TLS",
            ViaTransport::Sctp => "SCTP",
            ViaTransport::Ws => "WS",
            ViaTransport::Wss => "WSS",
            ViaTransport::Other(s) => s,
        }
    }
}

/// One Via header value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport of the hop.
    pub transport: ViaTransport,
    /// sent-by host (an IPv6 reference keeps its brackets).
    pub host: String,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// Via parameters in order (branch, received, rport, ...).
    pub params: Vec<Param>,
}

impl Via {
    /// A Via with a branch parameter.
    pub fn new(
        transport: ViaTransport,
        host: impl Into<String>,
        port: Option<u16>,
        branch: &str,
    ) -> Via {
        Via {
            transport,
            host: host.into(),
            port,
            params: vec![Param::new("branch", branch)],
        }
    }
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").and_then(|p| p.value.as_deref())
    }
    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        find_param(&self.params, "received").and_then(|p| p.value.as_deref())
    }
    /// The `rport` parameter: `Some(None)` when present without value (a request asking for it).
    pub fn rport(&self) -> Option<Option<u16>> {
        find_param(&self.params, "rport").map(|p| p.value.as_deref().and_then(|v| v.parse().ok()))
    }
    /// Sets `received` (RFC 3261 §18.2.1).
    pub fn set_received(&mut self, value: &str) {
        set_param(&mut self.params, "received", Some(value.to_owned()));
    }
    /// Fills in `rport` (RFC 3581).
    pub fn set_rport(&mut self, port: u16) {
        set_param(&mut self.params, "rport", Some(port.to_string()));
    }
    /// `host[:port]` as used in transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host.to_ascii_lowercase(), p),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (a quoted string keeps its quotes and escapes).
    pub display_name: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (tag, expires, q, ...).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// A bare address without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").and_then(|p| p.value.as_deref())
    }
    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        set_param(&mut self.params, "tag", Some(tag.to_owned()));
    }
    /// Builder form of [`NameAddr::set_tag`].
    pub fn with_tag(mut self, tag: &str) -> NameAddr {
        self.set_tag(tag);
        self
    }
}

/// A Contact value: an address, or `*` (REGISTER only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *`
    Star,
    /// A contact address.
    Addr(NameAddr),
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, < 2**31.
    pub seq: u32,
    /// Method; must equal the request method.
    pub method: Method,
}

/// Retry-After (RFC 3261 §20.33): seconds, optional comment and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    /// Delta seconds.
    pub seconds: u32,
    /// Comment in parentheses, without the parentheses.
    pub comment: Option<String>,
    /// Parameters such as `duration`.
    pub params: Vec<Param>,
}

/// One header field value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Header {
    /// Via (one value).
    Via(Via),
    /// From
    From(NameAddr),
    /// To
    To(NameAddr),
    /// Call-ID
    CallId(String),
    /// CSeq
    CSeq(CSeq),
    /// Contact (one value).
    Contact(Contact),
    /// Max-Forwards
    MaxForwards(u8),
    /// Content-Length
    ContentLength(usize),
    /// Content-Type, verbatim (`application/sdp`).
    ContentType(String),
    /// Route (one value).
    Route(NameAddr),
    /// Record-Route (one value).
    RecordRoute(NameAddr),
    /// Retry-After
    RetryAfter(RetryAfter),
    /// Any other header, name and value as written (folding collapsed to one space).
    Other {
        /// Header name as written.
        name: String,
        /// Value, trimmed.
        value: String,
    },
}

/// The headers of a message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// Appends a header.
    pub fn push(&mut self, h: Header) {
        self.0.push(h);
    }
    /// Iterates all headers.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }
    /// All Via values, topmost first.
    pub fn vias(&self) -> impl Iterator<Item = &Via> {
        self.0.iter().filter_map(|h| {
            if let Header::Via(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// The topmost Via.
    pub fn top_via(&self) -> Option<&Via> {
        self.vias().next()
    }
    /// The topmost Via, mutable.
    pub fn top_via_mut(&mut self) -> Option<&mut Via> {
        self.0.iter_mut().find_map(|h| {
            if let Header::Via(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// From
    pub fn from(&self) -> Option<&NameAddr> {
        self.0.iter().find_map(|h| {
            if let Header::From(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// To
    pub fn to(&self) -> Option<&NameAddr> {
        self.0
            .iter()
            .find_map(|h| if let Header::To(v) = h { Some(v) } else { None })
    }
    /// To, mutable (to add a tag).
    pub fn to_mut(&mut self) -> Option<&mut NameAddr> {
        self.0
            .iter_mut()
            .find_map(|h| if let Header::To(v) = h { Some(v) } else { None })
    }
    /// Call-ID
    pub fn call_id(&self) -> Option<&str> {
        self.0.iter().find_map(|h| {
            if let Header::CallId(v) = h {
                Some(v.as_str())
            } else {
                None
            }
        })
    }
    /// CSeq
    pub fn cseq(&self) -> Option<&CSeq> {
        self.0.iter().find_map(|h| {
            if let Header::CSeq(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// Contact values in order.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.0.iter().filter_map(|h| {
            if let Header::Contact(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// First Contact address (not `*`).
    pub fn contact(&self) -> Option<&NameAddr> {
        self.contacts().find_map(|c| {
            if let Contact::Addr(a) = c {
                Some(a)
            } else {
                None
            }
        })
    }
    /// Max-Forwards
    pub fn max_forwards(&self) -> Option<u8> {
        self.0.iter().find_map(|h| {
            if let Header::MaxForwards(v) = h {
                Some(*v)
            } else {
                None
            }
        })
    }
    /// Content-Length
    pub fn content_length(&self) -> Option<usize> {
        self.0.iter().find_map(|h| {
            if let Header::ContentLength(v) = h {
                Some(*v)
            } else {
                None
            }
        })
    }
    /// Content-Type
    pub fn content_type(&self) -> Option<&str> {
        self.0.iter().find_map(|h| {
            if let Header::ContentType(v) = h {
                Some(v.as_str())
            } else {
                None
            }
        })
    }
    /// Route values in order.
    pub fn routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.0.iter().filter_map(|h| {
            if let Header::Route(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// Record-Route values in order.
    pub fn record_routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.0.iter().filter_map(|h| {
            if let Header::RecordRoute(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// Retry-After
    pub fn retry_after(&self) -> Option<&RetryAfter> {
        self.0.iter().find_map(|h| {
            if let Header::RetryAfter(v) = h {
                Some(v)
            } else {
                None
            }
        })
    }
    /// Values of an unmodelled header by case-insensitive name.
    pub fn other<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter_map(move |h| match h {
            Header::Other { name: n, value } if n.eq_ignore_ascii_case(name) => {
                Some(value.as_str())
            }
            _ => None,
        })
    }
    /// Removes every header for which `f` returns true.
    pub fn retain(&mut self, f: impl FnMut(&Header) -> bool) {
        self.0.retain(f);
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method from the request line.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// Headers in order.
    pub headers: Headers,
    /// Body (Content-Length octets).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase as received (may be empty).
    pub reason: String,
    /// Headers in order.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The headers of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

impl Request {
    /// Builds a response to this request per RFC 3261 §8.2.6.2: Via, From, To, Call-ID and CSeq
    /// copied; the caller adds a To tag where needed.
    pub fn response(&self, status: StatusCode) -> Response {
        let mut headers = Headers::default();
        for h in self.headers.iter() {
            match h {
                Header::Via(_)
                | Header::From(_)
                | Header::To(_)
                | Header::CallId(_)
                | Header::CSeq(_) => headers.push(h.clone()),
                _ => {}
            }
        }
        // 100 Trying copies Timestamp (§8.2.6.1); harmless on other responses.
        for v in self.headers.other("Timestamp") {
            if status.code() == 100 {
                headers.push(Header::Other {
                    name: "Timestamp".into(),
                    value: v.to_owned(),
                });
            }
        }
        headers.push(Header::ContentLength(0));
        Response {
            status,
            reason: status.reason().to_owned(),
            headers,
            body: Vec::new(),
        }
    }

    /// Builds a CANCEL for this INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To,
    /// CSeq number, top Via and Route set.
    pub fn cancel(&self) -> Request {
        let mut headers = Headers::default();
        if let Some(v) = self.headers.top_via() {
            headers.push(Header::Via(v.clone()));
        }
        for h in self.headers.iter() {
            match h {
                Header::From(_)
                | Header::To(_)
                | Header::CallId(_)
                | Header::Route(_)
                | Header::MaxForwards(_) => headers.push(h.clone()),
                Header::CSeq(c) => headers.push(Header::CSeq(CSeq {
                    seq: c.seq,
                    method: Method::Cancel,
                })),
                _ => {}
            }
        }
        headers.push(Header::ContentLength(0));
        Request {
            method: Method::Cancel,
            uri: self.uri.clone(),
            headers,
            body: Vec::new(),
        }
    }

    /// Serializes to wire bytes (Content-Length rewritten to the body length).
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize::request_to_bytes(self)
    }
}

impl Response {
    /// Serializes to wire bytes (Content-Length rewritten to the body length).
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize::response_to_bytes(self)
    }
    /// The CSeq method this response answers.
    pub fn cseq_method(&self) -> Option<&Method> {
        self.headers.cseq().map(|c| &c.method)
    }
}

impl Message {
    /// Serializes to wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}
