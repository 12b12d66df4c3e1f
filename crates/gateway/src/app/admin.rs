//! The admin HTTP port (R-OPS-5): `GET /metrics` (Prometheus text format 0.0.4) and
//! `GET /health` (JSON).
//!
//! A deliberately small HTTP/1.1 server: one request per connection (`Connection: close`),
//! request head capped at 8 KiB and 5 s, only GET/HEAD. It serves scrapers and load balancer
//! probes on a management address, not browsers on the internet; a full HTTP stack would add
//! more code than it saves. Metrics are read from the counters the components keep (atomics
//! and small maps); rendering never blocks signaling or media.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mediagate_media::session::DropReason;
use mediagate_pki::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Running;

/// Largest request head we read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves until the runtime stops; returns the bound address.
pub(crate) async fn start(
    addr: SocketAddr,
    running: Arc<Running>,
    clock: Arc<dyn Clock>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(code = "GW1006", %local, "GW1006 admin HTTP listening on {local}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let running = running.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &running, clock.as_ref()).await;
            });
        }
    });
    Ok(local)
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    r: &Running,
    clock: &dyn Clock,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    let (status, ctype, body) = if !complete {
        (
            "400 Bad Request",
            "text/plain",
            "bad or incomplete request\n".to_owned(),
        )
    } else {
        route(&buf, r, clock)
    };
    let head_only = buf.starts_with(b"HEAD ");
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    if !head_only {
        resp.push_str(&body);
    }
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

fn route(req: &[u8], r: &Running, clock: &dyn Clock) -> (&'static str, &'static str, String) {
    let line = req.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
        );
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(r, clock),
        ),
        "/health" => {
            let (ok, body) = health(r, clock);
            (
                if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                },
                "application/json",
                body,
            )
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
    }
}

/// `/health`: 200 while serving (listeners up, certificate valid), 503 while draining or
/// with an expired certificate, so a load balancer stops sending new calls.
fn health(r: &Running, clock: &dyn Clock) -> (bool, String) {
    let days = r.pki.days_left(clock.now());
    let draining = r.draining.load(Ordering::Relaxed);
    let ok = !draining && days >= 0;
    let status = if draining {
        "draining"
    } else if days < 0 {
        "certificate_expired"
    } else {
        "ok"
    };
    let (facts, _) = r.pki.selected();
    let body = format!(
        "{{\"status\":\"{status}\",\"active_calls\":{},\"open_connections\":{},\"relay_pairs\":{},\"certificate\":{{\"thumbprint\":\"{}\",\"days_left\":{days}}},\"config_reloads\":{},\"config_reload_failures\":{}}}\n",
        r.server.active_calls(),
        r.server.open_connections(),
        r.relay.counters().pairs.load(Ordering::Relaxed),
        facts.sha1_thumbprint,
        r.reloads.load(Ordering::Relaxed),
        r.reload_failures.load(Ordering::Relaxed),
    );
    (ok, body)
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
            return;
        }
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
    }
}

/// The `/metrics` body.
pub(crate) fn render_metrics(r: &Running, clock: &dyn Clock) -> String {
    let mut o = Out(String::with_capacity(4096));
    let sip = r.server.metrics();
    let cfg = r.config.load();

    o.family(
        "mediagate_dial_plan_info",
        "gauge",
        "Configured dial plans and their VoIP security mode.",
    );
    for p in &cfg.dial_plans {
        let mode = p.voip_security.to_string();
        o.sample(
            "mediagate_dial_plan_info",
            &[("dial_plan", &p.name), ("mode", &mode)],
            1,
        );
    }
    o.family(
        "mediagate_calls_total",
        "counter",
        "Calls that ended, by the caller's dial plan, its mode and the result \
         (answered, failed, cancelled, refused).",
    );
    for ((plan, mode, result), n) in sip.calls.snapshot() {
        o.sample(
            "mediagate_calls_total",
            &[("dial_plan", &plan), ("mode", &mode), ("result", result)],
            n,
        );
    }
    o.family(
        "mediagate_sip_malformed_total",
        "counter",
        "SIP messages that could not be parsed or framed, by transport and reason \
         (unparsable, missing_header, too_large).",
    );
    for ((transport, reason), n) in sip.malformed.snapshot() {
        o.sample(
            "mediagate_sip_malformed_total",
            &[("transport", transport), ("reason", reason)],
            n,
        );
    }
    o.family(
        "mediagate_connections_closed_total",
        "counter",
        "Stream connections the gateway closed or saw closed, by reason.",
    );
    for (reason, n) in sip.connections_closed.snapshot() {
        o.sample(
            "mediagate_connections_closed_total",
            &[("reason", reason)],
            n,
        );
    }
    o.family(
        "mediagate_session_expiries_total",
        "counter",
        "Calls ended because a session timer (RFC 4028) expired without a refresh.",
    );
    o.sample(
        "mediagate_session_expiries_total",
        &[],
        sip.session_expiries.load(Ordering::Relaxed),
    );
    o.family("mediagate_calls_active", "gauge", "Calls in progress.");
    o.sample("mediagate_calls_active", &[], r.server.active_calls());
    o.family(
        "mediagate_calls_rejected_overload_total",
        "counter",
        "INVITEs refused with 503 (call limit reached or shutting down).",
    );
    o.sample(
        "mediagate_calls_rejected_overload_total",
        &[],
        sip.calls_rejected_overload.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_sip_requests_total",
        "counter",
        "SIP requests received, by method.",
    );
    for (m, n) in sip.requests.snapshot() {
        o.sample("mediagate_sip_requests_total", &[("method", &m)], n);
    }
    o.family(
        "mediagate_sip_responses_total",
        "counter",
        "SIP responses sent, by status code.",
    );
    for (code, n) in sip.responses.snapshot() {
        o.sample(
            "mediagate_sip_responses_total",
            &[("code", &code.to_string())],
            n,
        );
    }
    o.family(
        "mediagate_sip_admission_refusals_total",
        "counter",
        "Requests refused with 403 by the peer allow-list, by reason.",
    );
    for (reason, n) in sip.admission_refusals.snapshot() {
        o.sample(
            "mediagate_sip_admission_refusals_total",
            &[("reason", reason)],
            n,
        );
    }
    o.family(
        "mediagate_tls_handshakes_total",
        "counter",
        "Inbound TLS handshakes completed.",
    );
    o.sample(
        "mediagate_tls_handshakes_total",
        &[],
        sip.tls_handshakes.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_tls_handshake_refusals_total",
        "counter",
        "Inbound TLS handshakes refused, by reason.",
    );
    for (reason, n) in sip.tls_refusals.snapshot() {
        o.sample(
            "mediagate_tls_handshake_refusals_total",
            &[("reason", reason)],
            n,
        );
    }
    o.family(
        "mediagate_connections_refused_total",
        "counter",
        "Stream connections refused by the connection caps.",
    );
    o.sample(
        "mediagate_connections_refused_total",
        &[],
        sip.connections_capped.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_connections_open",
        "gauge",
        "Stream connections open (TCP and TLS, inbound and outbound).",
    );
    o.sample(
        "mediagate_connections_open",
        &[],
        r.server.open_connections(),
    );

    let rc = r.relay.counters();
    o.family(
        "mediagate_relay_packets_total",
        "counter",
        "Media packets relayed (sent).",
    );
    o.sample(
        "mediagate_relay_packets_total",
        &[],
        rc.packets.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_relay_bytes_total",
        "counter",
        "Media octets relayed (sent).",
    );
    o.sample(
        "mediagate_relay_bytes_total",
        &[],
        rc.bytes.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_relay_drops_total",
        "counter",
        "Media packets dropped, by reason (srtp_auth = SRTP authentication failures).",
    );
    for reason in DropReason::ALL {
        o.sample(
            "mediagate_relay_drops_total",
            &[("reason", reason.as_str())],
            rc.dropped(reason),
        );
    }
    o.family(
        "mediagate_srtp_auth_failures_total",
        "counter",
        "SRTP and SRTCP packets that failed authentication (dropped, never forwarded).",
    );
    o.sample(
        "mediagate_srtp_auth_failures_total",
        &[("protocol", "srtp")],
        rc.dropped(DropReason::SrtpAuth),
    );
    o.sample(
        "mediagate_srtp_auth_failures_total",
        &[("protocol", "srtcp")],
        rc.dropped(DropReason::SrtcpAuth),
    );
    o.family(
        "mediagate_media_timeouts_total",
        "counter",
        "Calls ended because a leg's media stopped (media timeout, GW3003).",
    );
    o.sample(
        "mediagate_media_timeouts_total",
        &[],
        r.server.metrics().media_timeouts.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_relay_pairs",
        "gauge",
        "Media leg pairs allocated.",
    );
    o.sample(
        "mediagate_relay_pairs",
        &[],
        rc.pairs.load(Ordering::Relaxed),
    );

    let ec = r.echo.counters();
    o.family(
        "mediagate_echo_calls_total",
        "counter",
        "Calls answered by the echo endpoint.",
    );
    o.sample(
        "mediagate_echo_calls_total",
        &[],
        ec.calls.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_echo_packets_total",
        "counter",
        "RTP packets echoed.",
    );
    o.sample(
        "mediagate_echo_packets_total",
        &[],
        ec.packets.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_echo_rtt_seconds",
        "summary",
        "Media round-trip time measured by the echo endpoint with RTCP.",
    );
    let samples = ec.rtt_samples.load(Ordering::Relaxed);
    let sum_us = ec.rtt_sum_us.load(Ordering::Relaxed);
    o.sample("mediagate_echo_rtt_seconds_sum", &[], sum_us as f64 / 1e6);
    o.sample("mediagate_echo_rtt_seconds_count", &[], samples);

    let days = r.pki.days_left(clock.now());
    let (facts, _) = r.pki.selected();
    o.family(
        "mediagate_certificate_days_to_expiry",
        "gauge",
        "Whole days until the certificate in use expires (negative: expired).",
    );
    o.sample(
        "mediagate_certificate_days_to_expiry",
        &[("thumbprint", &facts.sha1_thumbprint)],
        days,
    );
    o.family(
        "mediagate_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    o.sample(
        "mediagate_config_reloads_total",
        &[("result", "applied")],
        r.reloads.load(Ordering::Relaxed),
    );
    o.sample(
        "mediagate_config_reloads_total",
        &[("result", "refused")],
        r.reload_failures.load(Ordering::Relaxed),
    );
    o.family(
        "mediagate_draining",
        "gauge",
        "1 while shutting down (new calls get 503).",
    );
    o.sample(
        "mediagate_draining",
        &[],
        u8::from(r.draining.load(Ordering::Relaxed)),
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }
}
