//! Stream framing by Content-Length (RFC 3261 §18.3) with size caps, and CRLF keep-alives
//! (RFC 5626 §3.5.1).
//!
//! Call [`check`] on the bytes buffered for a TCP/TLS connection. It never copies and never
//! allocates; it only finds where the next message ends:
//!
//! | result | driver action |
//! |---|---|
//! | [`Check::Incomplete`] | read more (the header-block cap bounds how much it buffers) |
//! | [`Check::KeepAlive`] | consume `len`; if `pong`, send `"\r\n"` |
//! | [`Check::Complete`] | `parse(&buf[..len])`, consume `len` |
//! | [`Check::Error`] | see [`FrameError`]: answer if it can, then resync or close |

use crate::message::parse::find_header_end;

/// Size caps for one message. See `docs/signaling.md` for the defaults' rationale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingConfig {
    /// Largest header block (start line to blank line), bytes. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Largest body, bytes. Default 64 KiB.
    pub max_body_bytes: usize,
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Outcome of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Need more bytes.
    Incomplete,
    /// A keep-alive of `len` bytes at the front. `pong` is true for a double-CRLF ping, which
    /// must be answered with a single CRLF; a lone CRLF is a pong (or stray line ending).
    KeepAlive {
        /// Bytes to consume.
        len: usize,
        /// Answer with `"\r\n"`.
        pong: bool,
    },
    /// One complete message occupies `buf[..len]`.
    Complete(usize),
    /// The stream is not well framed.
    Error(FrameError),
}

/// Framing errors on a stream, each with the action the driver must take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header block exceeds `max_header_bytes` without ending. Nothing parseable to answer:
    /// close the connection.
    #[error("header block exceeds {max} bytes")]
    HeadersTooLarge {
        /// The configured cap.
        max: usize,
    },
    /// Content-Length exceeds `max_body_bytes`. `buf[..header_len]` is a full header block:
    /// parse it to answer 413 (request), then close — the body is never read.
    #[error("body of {content_length} bytes exceeds the cap")]
    BodyTooLarge {
        /// Length of the header block including the blank line.
        header_len: usize,
        /// The announced body length.
        content_length: usize,
    },
    /// Content-Length is missing. Per RFC 3261 §18.3 it is mandatory on streams. The message is
    /// taken as having no body: `buf[..header_len]` can be parsed and answered with 400, and the
    /// stream resyncs after it.
    #[error("missing Content-Length on a stream")]
    MissingContentLength {
        /// Length of the header block including the blank line.
        header_len: usize,
    },
    /// Content-Length is negative, not a number, or given twice with different values
    /// (RFC 4475 ncl). The message boundary is unknown: answer 400 from the header block
    /// (`buf[..header_len]`) if possible, then close (RFC 4475 §3.1.2.3).
    #[error("invalid Content-Length")]
    InvalidContentLength {
        /// Length of the header block including the blank line.
        header_len: usize,
    },
}

/// Finds the next frame at the front of `buf`. See the module docs for the contract.
pub fn check(buf: &[u8], config: &FramingConfig) -> Check {
    if buf.starts_with(b"\r\n\r\n") {
        return Check::KeepAlive { len: 4, pong: true };
    }
    if buf.starts_with(b"\r\n") {
        return Check::KeepAlive {
            len: 2,
            pong: false,
        };
    }
    if buf == b"\r" {
        return Check::Incomplete;
    }
    let window = &buf[..buf.len().min(config.max_header_bytes)];
    let Some(header_len) = find_header_end(window) else {
        if buf.len() >= config.max_header_bytes {
            return Check::Error(FrameError::HeadersTooLarge {
                max: config.max_header_bytes,
            });
        }
        return Check::Incomplete;
    };
    let content_length = match scan_content_length(&buf[..header_len]) {
        Ok(Some(l)) => l,
        Ok(None) => return Check::Error(FrameError::MissingContentLength { header_len }),
        Err(()) => return Check::Error(FrameError::InvalidContentLength { header_len }),
    };
    if content_length > config.max_body_bytes {
        return Check::Error(FrameError::BodyTooLarge {
            header_len,
            content_length,
        });
    }
    let total = header_len + content_length;
    if buf.len() >= total {
        Check::Complete(total)
    } else {
        Check::Incomplete
    }
}

/// Finds Content-Length (or `l`) in a header block, tolerating folding, any case and
/// whitespace before the colon. `Err` for an invalid or conflicting value.
fn scan_content_length(block: &[u8]) -> Result<Option<usize>, ()> {
    let mut found: Option<usize> = None;
    let mut lines = block.split(|&b| b == b'\n').peekable();
    lines.next(); // start line
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value: Vec<u8> = line[colon + 1..].to_vec();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                value.push(b' ');
                value.extend_from_slice(next.strip_suffix(b"\r").unwrap_or(next));
                lines.next();
            } else {
                break;
            }
        }
        let v = trim(&value);
        if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n: usize = std::str::from_utf8(v)
            .map_err(|_| ())?
            .parse()
            .map_err(|_| ())?;
        match found {
            Some(prev) if prev != n => return Err(()),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// True if a datagram is a keep-alive (only CRLFs), which is silently consumed.
pub fn is_keepalive_datagram(buf: &[u8]) -> bool {
    !buf.is_empty() && buf.iter().all(|&b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests;
