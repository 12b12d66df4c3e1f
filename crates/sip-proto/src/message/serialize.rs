//! Serialization: long header names, one value per line, Content-Length from the body.

use std::fmt::{self, Write as _};

use super::{Contact, Header, NameAddr, Param, Request, Response, RetryAfter, Scheme, Uri, Via};

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        match &p.value {
            Some(v) => write!(f, ";{}={}", p.name, v)?,
            None => write!(f, ";{}", p.name)?,
        }
    }
    Ok(())
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Scheme::Other(_) = self.scheme {
            return f.write_str(&self.host);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_char('@')?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        for (i, h) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{}={}", h.name, h.value.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport.as_str(), self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seconds)?;
        if let Some(c) = &self.comment {
            write!(f, " ({c})")?;
        }
        write_params(f, &self.params)
    }
}

impl fmt::Display for Header {
    /// One header line without the trailing CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Header::Via(v) => write!(f, "Via: {v}"),
            Header::From(v) => write!(f, "From: {v}"),
            Header::To(v) => write!(f, "To: {v}"),
            Header::CallId(v) => write!(f, "Call-ID: {v}"),
            Header::CSeq(c) => write!(f, "CSeq: {} {}", c.seq, c.method),
            Header::Contact(Contact::Star) => f.write_str("Contact: *"),
            Header::Contact(Contact::Addr(a)) => write!(f, "Contact: {a}"),
            Header::MaxForwards(v) => write!(f, "Max-Forwards: {v}"),
            Header::ContentLength(v) => write!(f, "Content-Length: {v}"),
            Header::ContentType(v) => write!(f, "Content-Type: {v}"),
            Header::Route(v) => write!(f, "Route: {v}"),
            Header::RecordRoute(v) => write!(f, "Record-Route: {v}"),
            Header::RetryAfter(v) => write!(f, "Retry-After: {v}"),
            Header::Other { name, value } => write!(f, "{name}: {value}"),
        }
    }
}

fn finish(mut head: String, headers: &[Header], body: &[u8]) -> Vec<u8> {
    let mut wrote_len = false;
    for h in headers {
        if let Header::ContentLength(_) = h {
            if wrote_len {
                continue;
            }
            wrote_len = true;
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        } else {
            let _ = write!(head, "{h}\r\n");
        }
    }
    if !wrote_len {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

pub(super) fn request_to_bytes(r: &Request) -> Vec<u8> {
    let head = format!("{} {} SIP/2.0\r\n", r.method, r.uri);
    finish(head, &r.headers.0, &r.body)
}

pub(super) fn response_to_bytes(r: &Response) -> Vec<u8> {
    let head = format!("SIP/2.0 {} {}\r\n", r.status, r.reason);
    finish(head, &r.headers.0, &r.body)
}
