//! The I/O driver: tokio TCP, TLS (tokio-rustls) and UDP around the sans-IO parts. It is the
//! only code of the test that reads the clock or touches a socket; every decision is made in
//! [`super::sip`], [`super::offer`] and [`super::probe`].

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediagate_pki::CertFacts;
use mediagate_sip_proto::message::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{sleep_until, timeout};

use super::offer::{Answer, Offer};
use super::probe::{BUF_LEN, MediaProbe, MediaStats, ProbeConfig};
use super::report::{Report, Step, fmt_ms, ms};
use super::sip::{
    Frame, Framer, Ids, Incoming, PONG, Signaling, StreamError, TimedOut, status_line,
};
use super::target::{Target, TargetSpec, Transport};
use super::tls::{Refusal, TlsClient, explain_io, rustls_error, version_name};
use super::{Options, describe_io};

/// How many OPTIONS the test sends (the RTT statistics are over these).
pub(crate) const OPTIONS_COUNT: u32 = 3;

/// The monotonic clock of the driver.
#[allow(clippy::disallowed_methods)] // the driver is the one place that reads the clock
fn now() -> Instant {
    Instant::now()
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Resolves the target's host (DNS unless it is an address), within `limit`. On failure, the
/// failed `resolve` step.
pub(crate) async fn resolve(spec: &TargetSpec, limit: Duration) -> Result<Target, Step> {
    if let Some(ip) = spec.ip() {
        return Ok(spec.resolved(SocketAddr::new(ip, spec.port)));
    }
    match timeout(
        limit,
        tokio::net::lookup_host((spec.host.as_str(), spec.port)),
    )
    .await
    {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(a) => Ok(spec.resolved(a)),
            None => Err(Step::fail(
                "resolve",
                format!("{} resolves to no address", spec.host),
            )),
        },
        Ok(Err(e)) => Err(Step::fail(
            "resolve",
            format!("cannot resolve {}: {e}", spec.host),
        )),
        Err(_) => Err(Step::fail(
            "resolve",
            format!(
                "cannot resolve {}: no answer within {}",
                spec.host,
                secs(limit)
            ),
        )),
    }
}

/// The steps a test of `target` with `opts` runs, in order.
pub(crate) fn planned(target: &Target, opts: &Options) -> Vec<&'static str> {
    let mut p = vec!["connect"];
    if target.transport == Transport::Tls {
        p.push("tls");
    }
    p.push("options");
    if opts.call {
        p.extend(["invite", "media", "bye"]);
    }
    p
}

/// Runs the whole test against `target`.
pub(crate) async fn run(target: &Target, opts: &Options) -> Report {
    let mut report = Report::new(
        target.uri.to_string(),
        target.transport.as_str(),
        opts.srtp,
        Some(target.addr),
        planned(target, opts),
    );
    let started = now();
    let tcp = match timeout(opts.timeout, TcpStream::connect(target.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            report.push(Step::fail(
                "connect",
                format!("TCP connect to {} failed: {}", target.addr, describe_io(&e)),
            ));
            report.finish();
            return report;
        }
        Err(_) => {
            report.push(Step::fail(
                "connect",
                format!(
                    "TCP connect to {} timed out: no answer within {}",
                    target.addr,
                    secs(opts.timeout)
                ),
            ));
            report.finish();
            return report;
        }
    };
    let connect_time = now() - started;
    let _ = tcp.set_nodelay(true);
    let local = match tcp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            report.push(Step::fail(
                "connect",
                format!("connected, but the local address is unknown: {e}"),
            ));
            report.finish();
            return report;
        }
    };
    report.push(
        Step::pass(
            "connect",
            format!(
                "TCP connection to {} from {local} in {}",
                target.addr,
                fmt_ms(connect_time)
            ),
        )
        .with("connect_ms", ms(connect_time))
        .with("local_address", local.to_string()),
    );
    match (&target.transport, &opts.tls) {
        (Transport::Tcp, _) => {
            Session::new(tcp, local, target, opts)
                .run(&mut report)
                .await
        }
        (Transport::Tls, None) => report.push(Step::fail("tls", "no TLS client configuration")),
        (Transport::Tls, Some(client)) => {
            if let Some(stream) = handshake(tcp, target, opts, client, &mut report).await {
                Session::new(stream, local, target, opts)
                    .run(&mut report)
                    .await;
            }
        }
    }
    report.finish();
    report
}

/// The TLS handshake step; the stream when it succeeded.
async fn handshake(
    tcp: TcpStream,
    target: &Target,
    opts: &Options,
    client: &TlsClient,
    report: &mut Report,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = target
        .server_name
        .clone()
        .unwrap_or_else(|| target.addr.ip().to_string());
    let server_name = match rustls_pki_types::ServerName::try_from(name.clone()) {
        Ok(n) => n,
        Err(e) => {
            report.push(Step::fail(
                "tls",
                format!("invalid server name {name}: {e}"),
            ));
            return None;
        }
    };
    let wall = opts.clock.now();
    let connector = tokio_rustls::TlsConnector::from(client.config.clone());
    let started = now();
    let result = timeout(opts.timeout, connector.connect(server_name, tcp)).await;
    let elapsed = now() - started;
    let ours = |s: Step| s.certificate("our_certificate", "our certificate", &client.ours, wall);
    let presented = |s: Step| match client
        .presented()
        .and_then(|der| CertFacts::from_der(&der).ok())
    {
        Some(f) => s.certificate("peer_certificate", "far end's certificate", &f, wall),
        None => s,
    };
    match result {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let version = conn
                .protocol_version()
                .map(version_name)
                .unwrap_or_default();
            let suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            let peer = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| CertFacts::from_der(der).ok());
            let mut step = Step::pass(
                "tls",
                format!(
                    "{version} {suite}, handshake in {}, far end verified as {name}",
                    fmt_ms(elapsed)
                ),
            )
            .with("handshake_ms", ms(elapsed))
            .with("tls_version", version)
            .with("cipher_suite", suite)
            .with("server_name", name.clone());
            if let Some(f) = peer {
                step = step.certificate("peer_certificate", "far end's certificate", &f, wall);
            }
            report.push(ours(step));
            Some(stream)
        }
        Ok(Err(e)) => {
            let refusal = explain_io(&e, client, &name);
            report.push(ours(presented(
                Step::fail("tls", format!("handshake refused: {}", refusal.text))
                    .with("refusal", refusal.token)
                    .with("server_name", name.clone())
                    .with("handshake_ms", ms(elapsed)),
            )));
            None
        }
        Err(_) => {
            report.push(ours(presented(
                Step::fail(
                    "tls",
                    format!(
                        "TLS handshake timed out: no answer within {}",
                        secs(opts.timeout)
                    ),
                )
                .with("server_name", name.clone()),
            )));
            None
        }
    }
}

/// Why waiting for a final response ended without one.
#[derive(Debug)]
enum WaitError {
    /// `--timeout` passed.
    Timeout(TimedOut),
    /// The far end closed the connection.
    Closed,
    /// Reading or writing failed (a TLS alert arrives this way).
    Io(io::Error),
    /// The stream is not SIP.
    Stream(StreamError),
}

/// The outcome of a request.
enum Done {
    /// Its final response.
    Final {
        response: Box<Response>,
        rtt: Duration,
    },
    /// A 2xx that cannot establish the dialog.
    Bad {
        response: Box<Response>,
        reason: String,
    },
}

/// One connection to the far end and the signaling on it.
struct Session<'a, S> {
    io: S,
    framer: Framer,
    sig: Signaling,
    ids: Ids,
    target: &'a Target,
    opts: &'a Options,
    local: SocketAddr,
    /// The far end hung up the test call.
    far_end_bye: bool,
    /// Provisional responses to the request in progress.
    provisional: Vec<StatusCode>,
    /// Anything SIP came back on this connection.
    answered: bool,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Session<'a, S> {
    fn new(io: S, local: SocketAddr, target: &'a Target, opts: &'a Options) -> Self {
        let mut ids = Ids::new(opts.seed);
        let sig_ids = Ids::new(ids.next_u64());
        Self {
            io,
            framer: Framer::default(),
            sig: Signaling::new(
                local,
                target.transport,
                target.uri.clone(),
                opts.timeout,
                sig_ids,
            ),
            ids,
            target,
            opts,
            local,
            far_end_bye: false,
            provisional: Vec::new(),
            answered: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Reads more bytes into the framer; `Ok(0)` when the far end closed. Cancel-safe.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.io.read(&mut chunk).await?;
        self.framer.push(&chunk[..n]);
        Ok(n)
    }

    /// Handles every complete message buffered; returns the final response of the request in
    /// progress if one was among them.
    async fn process(&mut self) -> Result<Option<Done>, WaitError> {
        while let Some(frame) = self.framer.next_frame().map_err(WaitError::Stream)? {
            let message = match frame {
                Frame::Ping => {
                    self.send(PONG).await.map_err(WaitError::Io)?;
                    continue;
                }
                Frame::Message(m) => *m,
            };
            self.answered = true;
            match self.sig.handle(now(), message) {
                Incoming::Provisional(r) => self.provisional.push(r.status),
                Incoming::Final { response, rtt, ack } => {
                    if let Some(ack) = ack {
                        self.send(&ack).await.map_err(WaitError::Io)?;
                    }
                    return Ok(Some(Done::Final { response, rtt }));
                }
                Incoming::BadFinal { response, reason } => {
                    return Ok(Some(Done::Bad { response, reason }));
                }
                Incoming::Retransmitted2xx { ack } => {
                    self.send(&ack).await.map_err(WaitError::Io)?
                }
                Incoming::Request {
                    answer, ends_call, ..
                } => {
                    if let Some(a) = answer {
                        self.send(&a).await.map_err(WaitError::Io)?;
                    }
                    self.far_end_bye |= ends_call;
                }
                Incoming::Unmatched(_) => {}
            }
        }
        Ok(None)
    }

    /// Sends `request` and waits for its final response (or `--timeout`).
    async fn transact(&mut self, request: Vec<u8>) -> Result<Done, WaitError> {
        self.provisional.clear();
        self.send(&request).await.map_err(WaitError::Io)?;
        loop {
            if let Some(done) = self.process().await? {
                return Ok(done);
            }
            let Some(deadline) = self.sig.deadline() else {
                return Err(WaitError::Closed);
            };
            tokio::select! {
                r = self.fill() => match r {
                    Ok(0) => return Err(WaitError::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(WaitError::Io(e)),
                },
                () = sleep_until(deadline.into()) => {
                    if let Some(t) = self.sig.handle_timeout(now()) {
                        if let Some(cancel) = &t.cancel {
                            let _ = self.send(cancel).await;
                        }
                        return Err(WaitError::Timeout(t));
                    }
                }
            }
        }
    }

    /// The TLS failure inside an I/O error on a TLS connection, explained.
    fn tls_refusal(&self, e: &io::Error) -> Option<Refusal> {
        let client = self.opts.tls.as_ref()?;
        rustls_error(e)?;
        let name = self.target.server_name.clone().unwrap_or_default();
        Some(explain_io(e, client, &name))
    }

    /// Words for a failed wait on `what` (`OPTIONS`, `INVITE`, `BYE`).
    fn wait_failure(&self, what: &str, e: &WaitError) -> String {
        match e {
            WaitError::Timeout(t) => {
                let seen: Vec<String> = t.provisional.iter().map(|s| s.to_string()).collect();
                let mut why = format!(
                    "no final response to {what} within {} (timed out)",
                    secs(self.opts.timeout)
                );
                if !seen.is_empty() {
                    why.push_str(&format!(" after {}", seen.join(", ")));
                }
                if t.cancel.is_some() {
                    why.push_str("; CANCEL sent");
                }
                why
            }
            WaitError::Closed => {
                let mut why = format!("the far end closed the connection before answering {what}");
                if self.opts.tls.is_some() && !self.answered {
                    why.push_str(
                        " (a TLS far end that refuses our certificate may close without an alert)",
                    );
                }
                why
            }
            WaitError::Io(e) => match self.tls_refusal(e) {
                Some(r) => format!(
                    "TLS failed while waiting for the answer to {what}: {}",
                    r.text
                ),
                None => format!("connection failed during {what}: {}", describe_io(e)),
            },
            WaitError::Stream(e) => e.to_string(),
        }
    }

    async fn run(mut self, report: &mut Report) {
        if self.options(report).await && self.opts.call {
            self.call(report).await;
        }
        let _ = timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }

    /// The OPTIONS step; true when it passed.
    async fn options(&mut self, report: &mut Report) -> bool {
        let mut rtts = Vec::new();
        let mut lines = Vec::new();
        let mut json = Vec::new();
        for i in 1..=OPTIONS_COUNT {
            let request = self.sig.options(now());
            match self.transact(request).await {
                Ok(Done::Final { response, rtt }) if response.status.is_success() => {
                    lines.push(format!(
                        "OPTIONS {i}: {} in {}",
                        status_line(&response),
                        fmt_ms(rtt)
                    ));
                    json.push(serde_json::json!({
                        "status": response.status.code(),
                        "reason": response.reason,
                        "rtt_ms": ms(rtt),
                    }));
                    rtts.push(rtt);
                }
                Ok(Done::Final { response, .. } | Done::Bad { response, .. }) => {
                    report.push(
                        Step::fail(
                            "options",
                            format!("OPTIONS {i} answered {}", status_line(&response)),
                        )
                        .with("status", response.status.code())
                        .with("reason", response.reason.clone()),
                    );
                    return false;
                }
                Err(WaitError::Io(e)) if i == 1 && self.tls_refusal(&e).is_some() => {
                    // TLS 1.3: the far end judges our certificate after the handshake and
                    // says so when we first send. It is the TLS step that failed.
                    if let Some(refusal) = self.tls_refusal(&e) {
                        report.revise_as_failed(
                            "tls",
                            format!(
                                "{} (reported after the handshake, when the first OPTIONS was \
                                 sent)",
                                refusal.text
                            ),
                            &[("refusal", refusal.token.into())],
                        );
                    }
                    return false;
                }
                Err(e) => {
                    report.push(Step::fail("options", self.wait_failure("OPTIONS", &e)));
                    return false;
                }
            }
        }
        let (min, max) = (
            rtts.iter().min().copied().unwrap_or_default(),
            rtts.iter().max().copied().unwrap_or_default(),
        );
        let avg = rtts.iter().sum::<Duration>() / rtts.len().max(1) as u32;
        let mut step = Step::pass(
            "options",
            format!(
                "{n} of {n} OPTIONS answered 2xx; SIP round trip min {} avg {} max {}",
                fmt_ms(min),
                fmt_ms(avg),
                fmt_ms(max),
                n = rtts.len()
            ),
        )
        .with("responses", json)
        .with(
            "rtt_ms",
            serde_json::json!({"min": ms(min), "avg": ms(avg), "max": ms(max)}),
        );
        for l in lines {
            step = step.detail(l);
        }
        report.push(step);
        true
    }

    /// The INVITE, media and BYE steps.
    async fn call(&mut self, report: &mut Report) {
        let udp = match UdpSocket::bind(SocketAddr::new(self.local.ip(), 0)).await {
            Ok(s) => s,
            Err(e) => {
                report.push(Step::fail(
                    "invite",
                    format!("cannot open a UDP socket for media: {}", describe_io(&e)),
                ));
                return;
            }
        };
        let media_local = match udp.local_addr() {
            Ok(a) => a,
            Err(e) => {
                report.push(Step::fail("invite", format!("UDP socket: {e}")));
                return;
            }
        };
        let offer = match Offer::new(media_local, self.opts.srtp, self.ids.next_u64()) {
            Ok(o) => o,
            Err(e) => {
                report.push(Step::fail("invite", format!("cannot make SRTP keys: {e}")));
                return;
            }
        };
        let invite = self.sig.invite(now(), offer.body());
        let answer = match self.transact(invite).await {
            Ok(Done::Final { response, rtt }) if response.status.is_success() => {
                let progress = self.progress(&response);
                match offer.accept(&response.body) {
                    Ok(a) => {
                        let mut step = Step::pass(
                            "invite",
                            format!(
                                "{progress} in {}; media to {} {}{}",
                                fmt_ms(rtt),
                                a.remote,
                                a.proto,
                                a.srtp
                                    .as_ref()
                                    .map(|k| format!(" {}", k.suite.sdes_name()))
                                    .unwrap_or_default()
                            ),
                        )
                        .with("status", response.status.code())
                        .with("setup_ms", ms(rtt))
                        .with("local_media", media_local.to_string())
                        .with("remote_media", a.remote.to_string())
                        .with("proto", a.proto.clone());
                        if let Some(k) = &a.srtp {
                            step = step
                                .with("srtp_suite", k.suite.sdes_name())
                                .with("crypto_tag", k.tag);
                        }
                        report.push(step);
                        a
                    }
                    Err(e) => {
                        report.push(Step::fail("invite", format!("{progress}, but {e}")));
                        self.bye(report).await;
                        return;
                    }
                }
            }
            Ok(Done::Final { response, .. }) => {
                report.push(
                    Step::fail(
                        "invite",
                        format!("INVITE answered {}", status_line(&response)),
                    )
                    .detail(format!("responses: {}", self.progress(&response)))
                    .with("status", response.status.code())
                    .with("reason", response.reason.clone()),
                );
                return;
            }
            Ok(Done::Bad { response, reason }) => {
                report.push(Step::fail(
                    "invite",
                    format!("{}: {reason}", status_line(&response)),
                ));
                return;
            }
            Err(e) => {
                report.push(Step::fail("invite", self.wait_failure("INVITE", &e)));
                return;
            }
        };
        let stats = self.media(&udp, &answer).await;
        report.push(media_step(&stats, self.far_end_bye));
        self.bye(report).await;
    }

    /// `100 Trying, 180 Ringing, 200 OK`: the responses to the request in progress.
    fn progress(&self, last: &Response) -> String {
        let mut v: Vec<String> = self
            .provisional
            .iter()
            .map(|s| format!("{s} {}", s.reason()))
            .collect();
        v.push(format!("{} {}", last.status, last.reason));
        v.join(", ")
    }

    /// The media stream: sends, receives, and keeps answering the SIP connection.
    async fn media(&mut self, udp: &UdpSocket, answer: &Answer) -> MediaStats {
        let cfg = ProbeConfig::new(self.opts.duration_secs, answer.remote, &mut self.ids);
        let mut probe = MediaProbe::new(cfg, answer.srtp.as_ref(), now());
        let mut out = vec![0u8; BUF_LEN];
        let mut inbuf = vec![0u8; BUF_LEN];
        let mut sip_open = true;
        loop {
            let t = now();
            while let Some(len) = probe.poll_transmit(t, &mut out) {
                if udp.send_to(&out[..len], probe.remote()).await.is_err() {
                    probe.send_failed();
                }
            }
            if probe.is_done(now()) || self.far_end_bye {
                break;
            }
            let Some(wake) = probe.poll_timeout() else {
                break;
            };
            tokio::select! {
                r = udp.recv_from(&mut inbuf) => {
                    if let Ok((n, from)) = r {
                        probe.handle_packet(now(), from, &mut inbuf, n);
                    }
                }
                r = self.fill(), if sip_open => {
                    match r {
                        Ok(0) | Err(_) => sip_open = false,
                        Ok(_) => {
                            if self.process().await.is_err() {
                                sip_open = false;
                            }
                        }
                    }
                }
                () = sleep_until(wake.into()) => {}
            }
        }
        probe.stats()
    }

    /// The BYE step.
    async fn bye(&mut self, report: &mut Report) {
        if self.far_end_bye {
            report.push(Step::fail(
                "bye",
                "the far end ended the call (sent BYE) before the test did",
            ));
            return;
        }
        let Some(bye) = self.sig.bye(now()) else {
            report.push(Step::fail("bye", "no established call to end"));
            return;
        };
        match self.transact(bye).await {
            Ok(Done::Final { response, rtt }) if response.status.is_success() => report.push(
                Step::pass(
                    "bye",
                    format!("{} in {}", status_line(&response), fmt_ms(rtt)),
                )
                .with("status", response.status.code())
                .with("rtt_ms", ms(rtt)),
            ),
            Ok(Done::Final { response, .. } | Done::Bad { response, .. }) => report.push(
                Step::fail("bye", format!("BYE answered {}", status_line(&response)))
                    .with("status", response.status.code()),
            ),
            Err(e) => report.push(Step::fail("bye", self.wait_failure("BYE", &e))),
        }
    }
}

/// The media step from the probe's counters.
fn media_step(s: &MediaStats, far_end_bye: bool) -> Step {
    let mut summary = format!(
        "{} sent, {} echoed, loss {:.1}%",
        s.sent, s.received, s.loss_percent
    );
    if let Some(r) = &s.rtt {
        summary.push_str(&format!(
            "; media round trip min {} avg {} max {} p95 {}",
            fmt_ms(r.min),
            fmt_ms(r.avg),
            fmt_ms(r.max),
            fmt_ms(r.p95)
        ));
    }
    if let Some(suite) = s.suite {
        summary.push_str(&format!(
            "; SRTP {} verified on {} packets",
            suite.sdes_name(),
            s.received
        ));
    }
    let failure = s
        .failure()
        .or_else(|| far_end_bye.then(|| "the far end hung up during the media test".to_owned()));
    let mut step = match failure {
        None => Step::pass("media", summary),
        Some(why) => Step::fail("media", why).detail(summary),
    };
    let counters = [
        ("duplicates", s.duplicates),
        ("mismatched", s.mismatched),
        ("auth_failed", s.auth_failed),
        ("reflected", s.reflected),
        ("malformed", s.malformed),
        ("rtcp", s.rtcp),
        ("foreign", s.foreign),
        ("send_errors", s.send_errors),
    ];
    let odd: Vec<String> = counters
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if !odd.is_empty() {
        step = step.detail(format!("also counted: {}", odd.join(", ")));
    }
    step = step
        .with("sent", s.sent)
        .with("received", s.received)
        .with("lost", s.lost)
        .with("loss_percent", s.loss_percent);
    for (k, v) in counters {
        step = step.with(k, v);
    }
    if let Some(r) = &s.rtt {
        step = step.with(
            "rtt_ms",
            serde_json::json!({
                "min": ms(r.min), "avg": ms(r.avg), "max": ms(r.max), "p95": ms(r.p95)
            }),
        );
    }
    if let Some(suite) = s.suite {
        step = step.with("srtp_suite", suite.sdes_name());
    }
    step
}
