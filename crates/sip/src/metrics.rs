//! Signaling counters for the admin HTTP `/metrics` (R-OPS-5).
//!
//! Counters are plain atomics and small labelled maps behind a mutex. Nothing here is on the
//! media hot path: a counter moves once per SIP message, call or TLS handshake. The gateway
//! renders them in the Prometheus text format; this crate only counts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with one label set `K` (e.g. a status code or a reason token).
#[derive(Debug)]
pub struct Labelled<K: Ord + Clone>(Mutex<BTreeMap<K, u64>>);

impl<K: Ord + Clone> Default for Labelled<K> {
    fn default() -> Self {
        Labelled(Mutex::new(BTreeMap::new()))
    }
}

impl<K: Ord + Clone> Labelled<K> {
    /// Adds one to the counter of `key`.
    pub fn inc(&self, key: K) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(0) += 1;
    }
    /// Every label and its count, in label order.
    pub fn snapshot(&self) -> Vec<(K, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
    /// The count of `key` (0 when never counted).
    pub fn get(&self, key: &K) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// Everything the signaling side counts. Shared (`Arc`) between the transport tasks, the core
/// task and the admin HTTP.
#[derive(Debug, Default)]
pub struct SipMetrics {
    /// Calls, counted when they end, by the caller's dial plan, its mode and the result
    /// (`answered`, `failed`, `cancelled`, `refused`; R-MODE: who called in which mode). Calls
    /// refused before their plan was known (admission) have an empty plan and mode.
    pub calls: Labelled<(String, String, &'static str)>,
    /// Messages that could not be accepted, by transport and reason (`unparsable`,
    /// `missing_header`, `too_large`): every one is counted, while the log is rate-limited.
    pub malformed: Labelled<(&'static str, &'static str)>,
    /// Calls ended because a session timer ran out (RFC 4028).
    pub session_expiries: AtomicU64,
    /// Calls in progress.
    pub active_calls: AtomicU64,
    /// INVITEs refused with 503 (call limit or draining).
    pub calls_rejected_overload: AtomicU64,
    /// Requests refused by admission (403), by reason token (R-PEER-2, R-MODE-2).
    pub admission_refusals: Labelled<&'static str>,
    /// Responses we sent, by status code.
    pub responses: Labelled<u16>,
    /// Requests received, by method.
    pub requests: Labelled<String>,
    /// Inbound TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    /// Inbound TLS handshakes refused, by reason token (`unknown_issuer`, `expired`,
    /// `no_certificate`, `timeout`, ...; R-CERT-7).
    pub tls_refusals: Labelled<&'static str>,
    /// Stream connections refused by the connection caps (R-SIP-5).
    pub connections_capped: AtomicU64,
    /// Stream connections open now.
    pub open_connections: AtomicU64,
    /// Inbound stream connections closed (or refused at accept), by reason: `peer_closed`,
    /// `io_error`, `admission_timeout`, `refused`, `partial_message_timeout`, `framing_error`,
    /// `cap`, `stranger_quota`, `not_a_peer`, `tls_handshake_failed`, `tls_handshake_timeout`.
    pub connections_closed: Labelled<&'static str>,
    /// Calls ended because a leg's media stopped (media timeout, `GW3003`).
    pub media_timeouts: AtomicU64,
}

impl SipMetrics {
    /// Counts an outgoing message: responses by status code (a cheap look at the status line).
    pub(crate) fn on_transmit(&self, bytes: &[u8]) {
        if let Some(code) = status_code(bytes) {
            self.responses.inc(code);
        }
    }
    /// Counts an incoming request by method (a cheap look at the request line).
    pub(crate) fn on_receive(&self, bytes: &[u8]) {
        if bytes.starts_with(b"SIP/") {
            return;
        }
        let Some(sp) = bytes.iter().take(32).position(|b| *b == b' ') else {
            return;
        };
        let m = &bytes[..sp];
        if !m.is_empty() && m.iter().all(u8::is_ascii_uppercase) {
            self.requests.inc(String::from_utf8_lossy(m).into_owned());
        }
    }
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The status code of a response (`SIP/2.0 200 OK`), `None` for requests and garbage.
fn status_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_responses_and_requests_from_the_first_line() {
        let m = SipMetrics::default();
        m.on_transmit(b"SIP/2.0 200 OK\r\n");
        m.on_transmit(b"SIP/2.0 200 OK\r\n");
        m.on_transmit(b"SIP/2.0 403 Forbidden (x)\r\n");
        m.on_transmit(b"INVITE sip:a@b SIP/2.0\r\n");
        m.on_transmit(b"SIP/2.0 2x0 bad\r\n");
        m.on_transmit(b"SIP/2.0 ");
        assert_eq!(m.responses.snapshot(), vec![(200, 2), (403, 1)]);
        m.on_receive(b"INVITE sip:a@b SIP/2.0\r\n");
        m.on_receive(b"SIP/2.0 180 Ringing\r\n");
        m.on_receive(b"\x00\x01 garbage");
        m.on_receive(b"");
        assert_eq!(m.requests.snapshot(), vec![("INVITE".to_owned(), 1)]);
    }
}
