//! `mediagate test-connectivity` (R-OPS-3): connect to a far end the way the gateway would,
//! probe it with SIP OPTIONS and, optionally, a test call with media to an echo, and report
//! every stage with its timings. Modelled on Exchange's `Test-UMConnectivity`.
//!
//! # Stages
//! ```text
//!  resolve ─▶ connect (TCP) ─▶ tls (mutual, --secured true) ─▶ options ×3
//!                                         └─▶ (--call) invite ─▶ media (--duration s) ─▶ bye
//! ```
//! Each stage becomes a [`report::Step`] (`PASS`, `FAIL` with the reason, or `SKIP` after an
//! earlier failure). The test passes, and the command exits 0, only when every stage passed.
//!
//! # Design: sans-IO core, thin driver
//! Everything that decides something is sans-IO and unit-tested with injected time:
//! - [`target`]: `--target` + `--secured` + `--server-name` → [`TargetSpec`], and the resolved
//!   [`Target`] (a plain struct, so a configured peer can fill it as well as a URI);
//! - [`sip`]: OPTIONS/INVITE/ACK/CANCEL/BYE built from `mediagate_sip_proto` messages, stream
//!   framing with `sip_proto::framing`, matching responses to the request in progress, RTTs,
//!   the dialog (`sip_proto::Dialog`) and answers to the far end's own requests;
//! - [`offer`]: the SDP offer (PCMU + telephone-event, SDES `a=crypto` when secured) and the
//!   checks on the answer, with `mediagate_media::sdes`;
//! - [`probe`]: the 50 packets/s RTP stream, SRTP in place with `SrtpContext`, matching echoes
//!   by sequence number and payload, loss and RTT statistics, SRTP verdicts;
//! - [`tls`]: the mutual-TLS client configuration (the gateway's own, from `mediagate_pki`)
//!   and rustls errors mapped to R-CERT-7 reasons;
//! - [`report`]: steps, human and JSON rendering.
//!
//! [`driver`] is the only part with sockets (tokio TCP/UDP, tokio-rustls) and the only one that
//! reads the monotonic clock; certificate dates use the injected [`mediagate_pki::Clock`].
//! Timeouts (`--timeout`) bound name resolution, the TCP connect, the TLS handshake and the
//! wait for each final response.

pub(crate) mod driver;
pub(crate) mod offer;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod sip;
pub(crate) mod target;
pub(crate) mod tls;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mediagate_pki::Clock;

pub(crate) use report::Report;
pub(crate) use target::{TargetSpec, Transport, parse_target};
pub(crate) use tls::TlsClient;

/// How to run the test, whatever the target.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Place a test call with media after the OPTIONS.
    pub(crate) call: bool,
    /// SRTP media (a Secured test); plain RTP otherwise.
    pub(crate) srtp: bool,
    /// Seconds of media.
    pub(crate) duration_secs: u32,
    /// Limit for resolution, connect, handshake and each final response.
    pub(crate) timeout: Duration,
    /// The TLS client for TLS targets.
    pub(crate) tls: Option<TlsClient>,
    /// Wall-clock time for certificate facts (days left).
    pub(crate) clock: Arc<dyn Clock>,
    /// Seed of Call-IDs, tags, branches, SSRC and payloads.
    pub(crate) seed: u64,
}

/// Resolves `spec` and runs the test on a single-threaded runtime; the finished report.
pub(crate) fn run(spec: &TargetSpec, opts: &Options) -> io::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async {
        match driver::resolve(spec, opts.timeout).await {
            Ok(target) => driver::run(&target, opts).await,
            Err(step) => {
                let mut r = Report::new(
                    spec.uri.to_string(),
                    spec.transport.as_str(),
                    opts.srtp,
                    None,
                    Vec::new(),
                );
                r.push(step);
                r.finish();
                r
            }
        }
    }))
}

/// An I/O error in an operator's words: `connection refused (os error 111)`.
pub(crate) fn describe_io(e: &io::Error) -> String {
    let what = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset by the far end",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::AddrNotAvailable => "address not available",
        io::ErrorKind::UnexpectedEof => "connection closed by the far end",
        io::ErrorKind::BrokenPipe => "connection closed by the far end (broken pipe)",
        _ => return e.to_string(),
    };
    match e.raw_os_error() {
        Some(code) => format!("{what} (os error {code})"),
        None => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_in_plain_words() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(describe_io(&refused), "connection refused (os error 111)");
        assert_eq!(
            describe_io(&io::Error::from(io::ErrorKind::TimedOut)),
            "timed out"
        );
        assert_eq!(describe_io(&io::Error::other("odd")), "odd");
    }
}
