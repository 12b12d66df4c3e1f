//! The message parser (RFC 3261 §7, §25 grammar, RFC 4475 torture cases).
//!
//! Liberal where RFC 3261/4475 ask for it (folded lines, whitespace before the colon and around
//! `/ ; = ,`, compact header names, any case, leading zeros, extension methods, unknown schemes),
//! strict where a wrong guess is dangerous (Content-Length, CSeq range, quoting, `<>` balance,
//! whitespace inside a Request-URI). A failed parse still carries the Via/From/To/Call-ID/CSeq
//! it could read, so a 400 can be sent ([`ParseError::response`]).

use super::{
    CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Request, Response,
    RetryAfter, StatusCode, Uri, Via, ViaTransport,
};

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    #[error("empty message")]
    Empty,
    /// No blank line ends the header block.
    #[error("no end of header block")]
    NoHeaderEnd,
    /// Malformed request or status line.
    #[error("malformed start line")]
    StartLine,
    /// The SIP version is not 2.0 (answered with 505).
    #[error("SIP version not supported")]
    Version,
    /// A header that could not be parsed.
    #[error("malformed {0} header")]
    Header(String),
    /// A mandatory header is missing (RFC 3261 §8.1.1).
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header that may appear once appears more than once.
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    /// CSeq method differs from the request method (RFC 4475 §3.1.2.17 mismatch01).
    #[error("CSeq method does not match request method")]
    CSeqMismatch,
    /// Content-Length is larger than the data received (datagram) (RFC 4475 §3.1.2.2 clerr).
    #[error("Content-Length larger than the message")]
    ContentLengthExceedsData,
}

/// Header values that could be read from a message that failed to parse: enough for a 400.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialHeaders {
    /// True if the start line looked like a request (or could not be classified as a response).
    pub is_request: bool,
    /// The request method if the request line was readable.
    pub method: Option<Method>,
    /// Via values that parsed.
    pub vias: Vec<Via>,
    /// From
    pub from: Option<NameAddr>,
    /// To
    pub to: Option<NameAddr>,
    /// Call-ID
    pub call_id: Option<String>,
    /// CSeq
    pub cseq: Option<CSeq>,
}

impl PartialHeaders {
    /// What a parsed message offers for an error response.
    pub fn from_message(message: &Message) -> PartialHeaders {
        let (h, method, is_request) = match message {
            Message::Request(r) => (&r.headers, Some(r.method.clone()), true),
            Message::Response(r) => (&r.headers, None, false),
        };
        PartialHeaders {
            is_request,
            method,
            vias: h.vias().cloned().collect(),
            from: h.from().cloned(),
            to: h.to().cloned(),
            call_id: h.call_id().map(str::to_owned),
            cseq: h.cseq().cloned(),
        }
    }

    /// A stateless error response (RFC 3261 §8.2.6) to the request these headers came from;
    /// `None` for responses, ACKs, or when Via, From, To, Call-ID or CSeq is missing.
    ///
    /// The Via headers route the response (RFC 3261 §18.2.2), so they are all it needs; From,
    /// To, Call-ID and CSeq are copied when they were readable (§8.2.6.2) and left out when
    /// they are what was missing, so that a request lacking one still gets its 400.
    pub fn response(&self, status: StatusCode, reason: &str) -> Option<Response> {
        if !self.is_request || matches!(self.method, Some(Method::Ack)) || self.vias.is_empty() {
            return None;
        }
        let mut headers = Headers::default();
        for v in &self.vias {
            headers.push(Header::Via(v.clone()));
        }
        if let Some(from) = &self.from {
            headers.push(Header::From(from.clone()));
        }
        if let Some(to) = &self.to {
            headers.push(Header::To(to.clone()));
        }
        if let Some(call_id) = &self.call_id {
            headers.push(Header::CallId(call_id.clone()));
        }
        if let Some(cseq) = &self.cseq {
            headers.push(Header::CSeq(cseq.clone()));
        }
        headers.push(Header::ContentLength(0));
        Some(Response {
            status,
            reason: reason.to_owned(),
            headers,
            body: Vec::new(),
        })
    }
}

/// A parse failure, with what could be salvaged for the error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Headers read before or after the failure.
    pub partial: Box<PartialHeaders>,
}

impl ParseError {
    fn new(kind: ParseErrorKind, partial: PartialHeaders) -> ParseError {
        ParseError {
            kind,
            partial: Box::new(partial),
        }
    }

    /// The status to answer with: 505 for a bad version, 400 otherwise; `None` for responses,
    /// which are dropped (RFC 4475 §3.1.2.19 bigcode).
    pub fn status(&self) -> Option<StatusCode> {
        if !self.partial.is_request {
            return None;
        }
        Some(match self.kind {
            ParseErrorKind::Version => StatusCode::VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        })
    }

    /// The stateless error response (RFC 3261 §8.2.6), if a status applies and a Via was
    /// readable to route it; its reason phrase names what was wrong (`Bad Request (missing
    /// Call-ID header)`). Never answers an ACK.
    pub fn response(&self) -> Option<Response> {
        let status = self.status()?;
        self.partial
            .response(status, &format!("{} ({})", status.reason(), self.kind))
    }
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Finds the end of a quoted string starting at `s[0] == '"'`; returns the index after the
/// closing quote.
fn quoted_end(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits at `sep` outside quoted strings and (if `angle`) outside `<>`.
fn split_outside(s: &str, sep: u8, angle: bool) -> Option<Vec<&str>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' if !in_angle => i += quoted_end(&b[i..])?,
            b'<' if angle => {
                in_angle = true;
                i += 1
            }
            b'>' if angle => {
                in_angle = false;
                i += 1
            }
            c if c == sep && !in_angle => {
                out.push(&s[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if in_angle {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

/// Parses `;name[=value]` header parameters (leading `;` already removed from each item).
fn parse_header_params(s: &str) -> Option<Vec<Param>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    let s = s.strip_prefix(';')?;
    let mut out = Vec::new();
    for item in split_outside(s, b';', false)? {
        let item = item.trim();
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
            None => (item, None),
        };
        if !is_token(name) {
            return None;
        }
        let value = match value {
            None => None,
            Some(v) if v.starts_with('"') => {
                if quoted_end(v.as_bytes())? != v.len() {
                    return None;
                }
                Some(v.to_owned())
            }
            Some(v) => {
                if v.is_empty()
                    || v.bytes()
                        .any(|b| b.is_ascii_whitespace() || b == b'"' || b == b'<' || b == b'>')
                {
                    return None;
                }
                Some(v.to_owned())
            }
        };
        out.push(Param {
            name: name.to_owned(),
            value,
        });
    }
    Some(out)
}

/// name-addr / addr-spec with header parameters.
fn parse_name_addr(s: &str) -> Option<NameAddr> {
    let s = s.trim();
    let (display_name, uri_s, rest) = if s.starts_with('"') {
        let end = quoted_end(s.as_bytes())?;
        let display = &s[..end];
        let after = s[end..].trim_start();
        let inner = after.strip_prefix('<')?;
        let close = inner.find('>')?;
        (
            Some(display.to_owned()),
            &inner[..close],
            &inner[close + 1..],
        )
    } else if let Some(lt) = s.find('<') {
        let display = s[..lt].trim();
        if !display.is_empty() && !display.split_ascii_whitespace().all(is_token) {
            return None;
        }
        let inner = &s[lt + 1..];
        let close = inner.find('>')?;
        let d = if display.is_empty() {
            None
        } else {
            Some(display.to_owned())
        };
        (d, &inner[..close], &inner[close + 1..])
    } else {
        // addr-spec: the URI cannot contain ';', ',' or '?' here (RFC 3261 §20.10).
        let end = s.find(';').unwrap_or(s.len());
        let uri = s[..end].trim_end();
        if uri.contains('?') || uri.contains(',') || uri.contains('>') {
            return None;
        }
        (None, uri, &s[end..])
    };
    let uri = Uri::parse(uri_s).ok()?;
    let params = parse_header_params(rest)?;
    Some(NameAddr {
        display_name,
        uri,
        params,
    })
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while self.i < self.s.len() && matches!(self.s.as_bytes()[self.i], b' ' | b'\t') {
            self.i += 1;
        }
        self.i > start
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.as_bytes().get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.i < self.s.len() && f(self.s.as_bytes()[self.i]) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }
}

fn parse_via(s: &str, strict_version: bool) -> Option<Via> {
    let mut c = Cursor { s: s.trim(), i: 0 };
    let proto = c.take_while(is_token_char);
    c.skip_ws();
    if !c.eat(b'/') {
        return None;
    }
    c.skip_ws();
    let version = c.take_while(is_token_char);
    c.skip_ws();
    if !c.eat(b'/') {
        return None;
    }
    c.skip_ws();
    let transport = c.take_while(is_token_char);
    if !proto.eq_ignore_ascii_case("SIP")
        || (strict_version && version != "2.0")
        || transport.is_empty()
    {
        return None;
    }
    if !c.skip_ws() {
        return None;
    }
    let host = if c.rest().starts_with('[') {
        let end = c.rest().find(']')?;
        let h = &c.rest()[..=end];
        c.i += end + 1;
        h
    } else {
        c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if host.is_empty() {
        return None;
    }
    c.skip_ws();
    let mut port = None;
    if c.eat(b':') {
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 5 {
            return None;
        }
        port = Some(digits.parse::<u16>().ok()?);
        c.skip_ws();
    }
    let params = parse_header_params(c.rest())?;
    Some(Via {
        transport: ViaTransport::from_token(transport),
        host: host.to_owned(),
        port,
        params,
    })
}

/// Lenient Via reading used only to route a 400: drops empty list elements and parameters.
fn salvage_vias(value: &str) -> Vec<Via> {
    value
        .split(',')
        .filter_map(|v| {
            let cleaned: Vec<&str> = v
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if cleaned.is_empty() {
                None
            } else {
                parse_via(&cleaned.join(";"), false)
            }
        })
        .collect()
}

fn parse_u32_limited(s: &str, max: u64) -> Option<u32> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    if v > max {
        return None;
    }
    u32::try_from(v).ok()
}

fn parse_cseq(s: &str) -> Option<CSeq> {
    let mut it = s.split_ascii_whitespace();
    let num = it.next()?;
    let method = it.next()?;
    if it.next().is_some() {
        return None;
    }
    // RFC 3261 §8.1.1.5: less than 2**31.
    let seq = parse_u32_limited(num, (1 << 31) - 1)?;
    Some(CSeq {
        seq,
        method: Method::from_token(method)?,
    })
}

fn parse_retry_after(s: &str) -> Option<RetryAfter> {
    let mut c = Cursor { s: s.trim(), i: 0 };
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seconds = parse_u32_limited(digits, u64::from(u32::MAX))?;
    c.skip_ws();
    let mut comment = None;
    if c.rest().starts_with('(') {
        let end = c.rest().find(')')?;
        comment = Some(c.rest()[1..end].to_owned());
        c.i += end + 1;
    }
    let params = parse_header_params(c.rest())?;
    Some(RetryAfter {
        seconds,
        comment,
        params,
    })
}

/// Canonical (lower-case, long) form of a header name, for the headers this crate models.
fn canonical(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "via" | "v" => "via",
        "from" | "f" => "from",
        "to" | "t" => "to",
        "call-id" | "i" => "call-id",
        "cseq" => "cseq",
        "contact" | "m" => "contact",
        "max-forwards" => "max-forwards",
        "content-length" | "l" => "content-length",
        "content-type" | "c" => "content-type",
        "route" => "route",
        "record-route" => "record-route",
        "retry-after" => "retry-after",
        _ => return None,
    })
}

/// Parses one (unfolded) header line's value into `out`.
fn parse_header(
    canon: Option<&'static str>,
    name: &str,
    value: &str,
    out: &mut Vec<Header>,
) -> Option<()> {
    match canon {
        Some("via") => {
            for v in split_outside(value, b',', true)? {
                out.push(Header::Via(parse_via(v, true)?));
            }
        }
        Some("from") => out.push(Header::From(parse_name_addr(value)?)),
        Some("to") => out.push(Header::To(parse_name_addr(value)?)),
        Some("call-id") => {
            if value.is_empty() || value.bytes().any(|b| b.is_ascii_whitespace()) {
                return None;
            }
            out.push(Header::CallId(value.to_owned()));
        }
        Some("cseq") => out.push(Header::CSeq(parse_cseq(value)?)),
        Some("contact") => {
            if value == "*" {
                out.push(Header::Contact(Contact::Star));
            } else {
                for v in split_outside(value, b',', true)? {
                    out.push(Header::Contact(Contact::Addr(parse_name_addr(v)?)));
                }
            }
        }
        Some("max-forwards") => {
            let v = parse_u32_limited(value, 255)?;
            out.push(Header::MaxForwards(u8::try_from(v).ok()?));
        }
        Some("content-length") => {
            let v = parse_u32_limited(value, u64::from(u32::MAX))?;
            out.push(Header::ContentLength(usize::try_from(v).ok()?));
        }
        Some("content-type") => {
            if !value.contains('/') {
                return None;
            }
            out.push(Header::ContentType(value.to_owned()));
        }
        Some("route") | Some("record-route") => {
            for v in split_outside(value, b',', true)? {
                let na = parse_name_addr(v)?;
                out.push(if canon == Some("route") {
                    Header::Route(na)
                } else {
                    Header::RecordRoute(na)
                });
            }
        }
        Some("retry-after") => out.push(Header::RetryAfter(parse_retry_after(value)?)),
        _ => out.push(Header::Other {
            name: name.to_owned(),
            value: value.to_owned(),
        }),
    }
    Some(())
}

/// Index just past the blank line ending the header block, if present.
pub(crate) fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses one message from `buf`, which holds one datagram or one frame cut by
/// [`crate::framing::check`].
///
/// Body rules (RFC 3261 §18.3): with Content-Length, the body is that many octets and extra
/// octets are ignored (RFC 4475 dblreq); Content-Length beyond the data is an error (clerr);
/// without Content-Length the body is the rest of the buffer (datagram semantics — stream
/// framing has already rejected a missing Content-Length).
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let buf = &buf[start..];
    let mut partial = PartialHeaders {
        is_request: !buf.starts_with(b"SIP/"),
        ..Default::default()
    };
    if buf.is_empty() {
        return Err(ParseError::new(ParseErrorKind::Empty, partial));
    }
    let Some(header_end) = find_header_end(buf) else {
        return Err(ParseError::new(ParseErrorKind::NoHeaderEnd, partial));
    };
    let text = String::from_utf8_lossy(&buf[..header_end - 4]);
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();

    // Unfold (RFC 3261 §7.3.1): a line starting with SP/HT continues the previous one.
    let mut unfolded: Vec<String> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match unfolded.last_mut() {
                Some(prev) => {
                    prev.push(' ');
                    prev.push_str(line.trim_start());
                }
                None => return Err(ParseError::new(ParseErrorKind::StartLine, partial)),
            }
        } else {
            unfolded.push(line.to_owned());
        }
    }

    let mut first_error: Option<ParseErrorKind> = None;
    let mut headers = Vec::with_capacity(unfolded.len() + 4);
    let mut salvaged_vias = Vec::new();
    for line in &unfolded {
        let Some(colon) = line.find(':') else {
            first_error.get_or_insert(ParseErrorKind::Header(line.chars().take(32).collect()));
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        let value = line[colon + 1..].trim_matches([' ', '\t']);
        if !is_token(name) {
            first_error.get_or_insert(ParseErrorKind::Header(name.chars().take(32).collect()));
            continue;
        }
        let canon = canonical(name);
        let before = headers.len();
        if parse_header(canon, name, value, &mut headers).is_none() {
            headers.truncate(before);
            if canon == Some("via") {
                salvaged_vias.extend(salvage_vias(value));
            }
            first_error.get_or_insert(ParseErrorKind::Header(canon.unwrap_or(name).to_owned()));
        }
    }
    let headers = Headers(headers);

    // Salvage for the error response.
    partial.vias = headers.vias().cloned().collect();
    if partial.vias.is_empty() {
        // A broken Via (RFC 4475 badinv01) still tells where a 400 must go.
        partial.vias = salvaged_vias;
    }
    partial.from = headers.from().cloned();
    partial.to = headers.to().cloned();
    partial.call_id = headers.call_id().map(str::to_owned);
    partial.cseq = headers.cseq().cloned();

    // Start line.
    enum Start {
        Req(Method, Uri),
        Resp(StatusCode, String),
    }
    let start = if let Some(rest) = start_line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if version != "2.0" {
            return Err(ParseError::new(ParseErrorKind::StartLine, partial));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| code.parse::<u16>().ok())
            .flatten()
            .and_then(StatusCode::new);
        match status {
            Some(s) => Start::Resp(s, reason.to_owned()),
            None => return Err(ParseError::new(ParseErrorKind::StartLine, partial)),
        }
    } else {
        let parsed = (|| {
            let (m, rest) = start_line.split_once(' ')?;
            let (uri, version) = rest.rsplit_once(' ')?;
            let method = Method::from_token(m)?;
            Some((method, uri, version))
        })();
        let Some((method, uri_s, version)) = parsed else {
            return Err(ParseError::new(ParseErrorKind::StartLine, partial));
        };
        partial.method = Some(method.clone());
        if !version.starts_with("SIP/") || version.len() < 5 {
            return Err(ParseError::new(ParseErrorKind::StartLine, partial));
        }
        if version != "SIP/2.0" {
            return Err(ParseError::new(ParseErrorKind::Version, partial));
        }
        // No LWS inside the Request-URI, no escaped headers in it (RFC 4475 lwsruri, escruri).
        let uri = match Uri::parse(uri_s) {
            Ok(u) if u.headers.is_empty() => u,
            _ => return Err(ParseError::new(ParseErrorKind::StartLine, partial)),
        };
        Start::Req(method, uri)
    };

    if let Some(kind) = first_error {
        return Err(ParseError::new(kind, partial));
    }

    // Mandatory and single-valued headers.
    let count = |f: fn(&Header) -> bool| headers.iter().filter(|h| f(h)).count();
    type IsHeader = fn(&Header) -> bool;
    let checks: [(&'static str, IsHeader); 4] = [
        ("From", |h| matches!(h, Header::From(_))),
        ("To", |h| matches!(h, Header::To(_))),
        ("Call-ID", |h| matches!(h, Header::CallId(_))),
        ("CSeq", |h| matches!(h, Header::CSeq(_))),
    ];
    if headers.top_via().is_none() {
        return Err(ParseError::new(ParseErrorKind::Missing("Via"), partial));
    }
    for (name, f) in checks {
        match count(f) {
            0 => return Err(ParseError::new(ParseErrorKind::Missing(name), partial)),
            1 => {}
            _ => return Err(ParseError::new(ParseErrorKind::Duplicate(name), partial)),
        }
    }
    // RFC 3261 §8.1.1: a request carries Max-Forwards. RFC 2543 did not require it, and RFC
    // 4475 §3.3.13 (inv2543) asks that such old requests be served: an RFC 2543 request is
    // told by its branch without the RFC 3261 magic cookie.
    if let Start::Req(method, _) = &start
        && *method != Method::Ack
        && count(|h| matches!(h, Header::MaxForwards(_))) == 0
        && headers
            .top_via()
            .and_then(|v| v.branch())
            .is_some_and(|b| b.starts_with("z9hG4bK"))
    {
        return Err(ParseError::new(
            ParseErrorKind::Missing("Max-Forwards"),
            partial,
        ));
    }
    let lengths: Vec<usize> = headers
        .iter()
        .filter_map(|h| {
            if let Header::ContentLength(l) = h {
                Some(*l)
            } else {
                None
            }
        })
        .collect();
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        return Err(ParseError::new(
            ParseErrorKind::Duplicate("Content-Length"),
            partial,
        ));
    }
    let available = &buf[header_end..];
    let body = match lengths.first() {
        Some(&len) if len > available.len() => {
            return Err(ParseError::new(
                ParseErrorKind::ContentLengthExceedsData,
                partial,
            ));
        }
        Some(&len) => available[..len].to_vec(),
        None => available.to_vec(),
    };

    Ok(match start {
        Start::Req(method, uri) => {
            if headers.cseq().map(|c| &c.method) != Some(&method) {
                return Err(ParseError::new(ParseErrorKind::CSeqMismatch, partial));
            }
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        }
        Start::Resp(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}
