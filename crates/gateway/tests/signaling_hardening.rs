//! Signaling and connection hardening, against the real binary (`mediagate run --config FILE`).
//!
//! What is checked, with the scripted phone of `tests/phone` (SIP over TCP, mutual TLS or
//! UDP), raw sockets, SIPp (`sip-tester`) and the gateway's `/metrics` and log:
//!
//! - connections: an idle connection (stranger or peer address) is closed after
//!   `[limits] admission_timeout_ms` (also at its default), CRLF keep-alives do not keep a
//!   stranger's connection open, a TLS connection whose requests were all refused is closed
//!   after the 403, strangers cannot use up `max_connections` (a peer still gets in), the
//!   stranger quotas (`max_stranger_connections`, `max_stranger_connections_per_ip`) and
//!   `plain_peers_only` refuse at accept, a stalled half message is cut after
//!   `partial_message_timeout_ms`; every close is counted in
//!   `mediagate_connections_closed_total{reason}`;
//! - messages: a flood of garbage datagrams is counted (`mediagate_sip_malformed_total`) but
//!   not logged line by line; a request missing a mandatory header gets a 400 naming it (and
//!   the TCP connection stays usable); oversized UDP requests are refused; a UDP-only peer is
//!   refused over TCP;
//! - RFC 4028 session timers with SIPp (the caller refreshes; the caller stops refreshing and
//!   the gateway ends the call; the gateway refreshes towards a far end);
//! - unique Call-IDs, tags and branches across processes and restarts;
//! - one `GW1220` call record per call (answered, refused, failed) and
//!   `mediagate_calls_total{result}`;
//! - no Rust `Debug` rendering in the log or in any response.
//!
//! Everything runs on 127.0.0.0/8 with ports from one free block per gateway. A failing test
//! prints the gateway's log, its metrics and the SIP transcripts; most tests collect every
//! failed expectation (with the values seen) before failing, so one run shows all of them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods // the tests are drivers: they read the clock
)]

mod e2e;
mod phone;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::*;
use mediagate_media::sdes::CryptoAttribute;
use mediagate_media::srtp::SrtpProfile;
use mediagate_sip_proto::sdp::Sdp;
use phone::*;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(ip_: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(ip_), port)
}

/// A string unique in this process and across runs (clock seed + counter).
fn uniq() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(Rng::time_seed);
    format!(
        "{:08x}{:x}",
        seed & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Renderings of Rust's `Debug` that must never reach a log line or a response.
const DEBUG_RENDERINGS: [&str; 4] = ["Some(", "{ ", "[\"", "Remote {"];

/// The `Debug` renderings found in `text`.
fn debug_renderings(text: &str, patterns: &[&str]) -> Vec<String> {
    patterns
        .iter()
        .filter(|p| text.contains(**p))
        .map(|p| format!("{p:?}"))
        .collect()
}

/// One Prometheus sample.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut v = String::new();
        let mut esc = false;
        let mut end = r.len();
        for (i, c) in r.char_indices() {
            if esc {
                v.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                end = i;
                break;
            } else {
                v.push(c);
            }
        }
        out.push((k.trim_start_matches(',').trim().to_owned(), v));
        rest = r.get(end + 1..).unwrap_or_default();
    }
    out
}

/// Every sample of a Prometheus text page.
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value = value.trim().parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)),
                None => (head, Vec::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The sum of family `name`'s samples whose labels include every pair of `want` (label order
/// does not matter); 0 when there is none.
fn msum(body: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(body)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// The sample lines of the families whose name starts with `prefix` (for messages).
fn metric_lines(body: &str, prefix: &str) -> String {
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .collect();
    if lines.is_empty() {
        format!("(no {prefix}* samples)")
    } else {
        lines.join("; ")
    }
}

/// `mediagate_connections_closed_total{reason}`.
fn closed(m: &str, reason: &str) -> f64 {
    msum(
        m,
        "mediagate_connections_closed_total",
        &[("reason", reason)],
    )
}

/// Polls the metrics until `f` holds (at most `secs`); returns the last page.
fn wait_metrics(gw: &Gateway, secs: f64, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let m = gw.metrics();
        if f(&m) || Instant::now() >= deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Expectations of one test: each is printed as it is checked, the failed ones are collected
/// and [`Checks::finish`] fails the test with all of them (and what was seen).
struct Checks {
    test: &'static str,
    failed: Vec<String>,
}

impl Checks {
    fn new(test: &'static str) -> Checks {
        Checks {
            test,
            failed: Vec::new(),
        }
    }
    /// Records `what` as passed or failed; returns `ok`.
    fn check(&mut self, ok: bool, what: impl Into<String>) -> bool {
        let what = what.into();
        eprintln!(
            "[{}] {}: {what}",
            self.test,
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            self.failed.push(what);
        }
        ok
    }
    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{}: {} expectation(s) failed:\n  - {}",
            self.test,
            self.failed.len(),
            self.failed.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Failure dump: gateway logs, metrics, SIP transcripts, peer logs
// ---------------------------------------------------------------------------------------------

/// What to print when a test fails, printed by a panic hook at the moment of the panic
/// (before unwinding drops, and so stops, the gateway and the peers).
struct DumpContext {
    gateways: Vec<(String, PathBuf, u16)>,
    sip: Vec<(String, Transcript)>,
    files: Vec<PathBuf>,
}

impl DumpContext {
    fn print(&self) {
        for (name, log, admin) in &self.gateways {
            let metrics = http_get(*admin, "/metrics")
                .map(|x| x.1)
                .unwrap_or_default();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            // A flood test can make the log huge: its head and tail are what matter.
            let shown = if lines.len() > 600 {
                format!(
                    "{}\n... ({} lines left out) ...\n{}",
                    lines[..300].join("\n"),
                    lines.len() - 600,
                    lines[lines.len() - 300..].join("\n")
                )
            } else {
                log.clone()
            };
            eprintln!(
                "===== {name}: log ({} lines) =====\n{shown}\n===== {name}: metrics =====\n{}",
                lines.len(),
                metrics
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        for (name, t) in &self.sip {
            eprintln!("===== SIP transcript: {name} =====\n{}", t.text());
        }
        for f in &self.files {
            eprintln!(
                "===== {} =====\n{}",
                f.display(),
                std::fs::read_to_string(f).unwrap_or_default()
            );
        }
    }
}

thread_local! {
    static DUMP: std::cell::RefCell<Option<DumpContext>> = const { std::cell::RefCell::new(None) };
}

/// The test thread's failure dump (see [`DumpContext`]); cleared when dropped.
struct Dump;

impl Dump {
    fn new(gw: &Gateway) -> Dump {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default(info);
                DUMP.with(|d| {
                    if let Ok(d) = d.try_borrow()
                        && let Some(d) = d.as_ref()
                    {
                        d.print();
                    }
                });
            }));
        });
        DUMP.with(|d| {
            *d.borrow_mut() = Some(DumpContext {
                gateways: Vec::new(),
                sip: Vec::new(),
                files: Vec::new(),
            });
        });
        let dump = Dump;
        dump.gateway("gateway", gw);
        dump
    }
    fn with(&self, f: impl FnOnce(&mut DumpContext)) {
        DUMP.with(|d| {
            if let Some(d) = d.borrow_mut().as_mut() {
                f(d);
            }
        });
    }
    /// Adds a gateway (its log and metrics).
    fn gateway(&self, name: &str, gw: &Gateway) {
        let entry = (name.to_owned(), gw.proc.log.clone(), gw.ports.admin());
        self.with(|d| d.gateways.push(entry));
    }
    /// Adds a SIP transcript.
    fn sip(&self, name: &str, t: &Transcript) {
        let (name, t) = (name.to_owned(), t.clone());
        self.with(|d| d.sip.push((name, t)));
    }
    /// Adds a peer's log file.
    fn file(&self, path: &Path) {
        let path = path.to_owned();
        self.with(|d| d.files.push(path));
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        DUMP.with(|d| d.borrow_mut().take());
    }
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// The lab of `media_hardening.rs`: a gateway with its PKI; dial plans `secured`,
/// `sipsecured` and `plain`; TLS peers alice (127.0.0.2), bob and carol (127.0.0.3) by
/// `[hosts]`; plain TCP peers `sipp` (peer port 0) and `far` (peer port 5) at 127.0.0.1; the
/// plain UDP peer `dave` at 127.0.0.4 (peer port 4); and the plain UDP peer `busy` at
/// 127.0.0.5 (peer port 6) for the identifier test. Routes in every plan: `7…` → echo,
/// `5…` → sipp, `6…` → far, `8…` → busy, `bob` → bob; nothing else routes.
struct Lab {
    dir: tempfile::TempDir,
    pki: LabPki,
    ports: Ports,
    /// The gateway's media range (by default the 40 ports of [`Ports::media`]).
    media: (u16, u16),
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let pki = LabPki::new();
        let ports = Ports::new();
        let gw = dir.path().join("gw");
        std::fs::create_dir_all(gw.join("certs")).unwrap();
        std::fs::create_dir_all(gw.join("trust")).unwrap();
        pki.leaf("gateway.test")
            .write_to(&gw.join("certs"), "gateway");
        std::fs::write(gw.join("trust/root.pem"), &pki.pki.root_pem).unwrap();
        Lab {
            dir,
            pki,
            ports,
            media: ports.media(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The gateway's SIP UDP/TCP address.
    fn sip(&self) -> SocketAddr {
        sa("127.0.0.1", self.ports.sip())
    }

    /// The gateway's SIP TLS address.
    fn tls(&self) -> SocketAddr {
        sa("127.0.0.1", self.ports.tls())
    }

    /// The configuration; `limits` is appended to `[limits]` (which holds `max_calls = 20`
    /// unless `limits` sets it).
    fn config(&self, limits: &str) -> String {
        let p = self.ports;
        let (m0, m1) = self.media;
        let routes = r#"routes = [ { prefix = "7", target = "echo" }, { prefix = "5", target = "sipp" }, { prefix = "6", target = "far" }, { prefix = "8", target = "busy" }, { prefix = "bob", target = "bob" } ]"#;
        let max_calls = if limits.contains("max_calls") {
            ""
        } else {
            "max_calls = 20\n"
        };
        format!(
            r#"# signaling hardening lab
[gateway]
fqdn = "gateway.test"
addresses = ["127.0.0.1"]
data_dir = "{gw}"
cert_dir = "certs"
trust_dir = "trust"

[listen]
udp = "127.0.0.1:{sip}"
tcp = "127.0.0.1:{sip}"
tls = "127.0.0.1:{tls}"

[media]
address = "127.0.0.1"
port_min = {m0}
port_max = {m1}
workers = 1
wakeup_coalesce_us = 1000

[limits]
{max_calls}shutdown_grace_secs = 3
{limits}
[admin]
http = "127.0.0.1:{admin}"

[tls]
tls_peer_ports = [5061, {bob_tls}]

[[dial_plan]]
name = "secured"
voip_security = "Secured"
{routes}

[[dial_plan]]
name = "sipsecured"
voip_security = "SIPSecured"
{routes}

[[dial_plan]]
name = "plain"
voip_security = "Unsecured"
{routes}

[[peer]]
name = "alice"
address = "alice.test"
port = 5061
dial_plan = "secured"

[[peer]]
name = "bob"
address = "bob.test"
port = {bob_tls}
dial_plan = "secured"

[[peer]]
name = "carol"
address = "carol.test"
port = 5061
dial_plan = "sipsecured"

[[peer]]
name = "sipp"
address = "127.0.0.1"
port = {sipp}
transport = "tcp"
dial_plan = "plain"

[[peer]]
name = "dave"
address = "127.0.0.4"
port = {dave}
transport = "udp"
dial_plan = "plain"

[[peer]]
name = "far"
address = "127.0.0.1"
port = {far}
transport = "tcp"
dial_plan = "plain"

[[peer]]
name = "busy"
address = "127.0.0.5"
port = {busy}
transport = "udp"
dial_plan = "plain"

[hosts]
"alice.test" = "127.0.0.2"
"bob.test" = "127.0.0.1"
"carol.test" = "127.0.0.3"
"#,
            gw = self.path().join("gw").display(),
            sip = p.sip(),
            tls = p.tls(),
            admin = p.admin(),
            bob_tls = p.peer_sip(3) + 1,
            sipp = p.peer_sip(0),
            dave = p.peer_sip(4),
            far = p.peer_sip(5),
            busy = p.peer_sip(6),
        )
    }

    /// Starts the gateway with `limits` added to `[limits]`.
    fn start(&self, limits: &str) -> Gateway {
        self.start_with(limits, &[])
    }

    /// [`Lab::start`] with extra `run` options (`--log-json`).
    fn start_with(&self, limits: &str, extra: &[&str]) -> Gateway {
        self.start_in("gw", limits, extra)
    }

    /// Starts a gateway whose log goes to `<lab>/<sub>/gateway.out` (the data directory is
    /// always `<lab>/gw`): a restarted gateway keeps the first one's log.
    fn start_in(&self, sub: &str, limits: &str, extra: &[&str]) -> Gateway {
        let dir = self.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        Gateway::start_with(&dir, self.ports, &self.config(limits), extra)
    }

    /// A scripted phone over mutual TLS with the certificate of `cert_name` from `from`.
    fn try_tls_phone(&self, name: &str, cert_name: &str, from: &str) -> Result<Phone, String> {
        Phone::try_tls(
            name,
            ip(from),
            self.tls(),
            &self.pki.leaf(cert_name),
            &self.pki.pki.root_pem,
            "gateway.test",
        )
    }

    /// A plain caller over TCP from 127.0.0.1 (admitted by address into `plain`).
    fn plain(&self) -> Phone {
        Phone::tcp("plain", ip("127.0.0.1"), self.sip())
    }

    /// The scripted UAS playing `far`, answering with `sdp`.
    fn far(&self, sdp: &str) -> Uas {
        Uas::listen(sa("127.0.0.1", self.ports.peer_sip(5)), sdp)
    }

    /// A media endpoint on `ip` at the first port of peer media block `slot` (+`offset`).
    fn media(&self, ip_: &str, slot: u16, offset: u16, ssrc: u32, seq: u16) -> Media {
        Media::bind(sa(ip_, self.ports.peer_media(slot).0 + offset), ssrc, seq)
    }
}

fn new_key() -> CryptoAttribute {
    CryptoAttribute::generate(1, SrtpProfile::AesCm128HmacSha1_80).unwrap()
}

/// The SDP of a message (panics with the message otherwise).
fn sdp_of(msg: &SipMsg) -> Sdp {
    msg.sdp()
        .unwrap_or_else(|| panic!("no SDP in:\n{}", msg.text()))
}

/// A plain offer at `ip:port` (nobody needs to send media to it).
fn plain_offer(ip_: &str, port: u16) -> String {
    audio_sdp(sa(ip_, port), 1, None, "sendrecv")
}

// ---------------------------------------------------------------------------------------------
// Hand-made SIP over raw sockets
// ---------------------------------------------------------------------------------------------

/// A request to `sip:{user}@gw` built by hand: Via (sent-by `via`, branch `z9hG4bK{branch}`,
/// rport), Max-Forwards, From, To, Call-ID (`{branch}@test`), CSeq, Contact, then `extra`
/// header lines, Content-Type and Content-Length. Headers named in `omit` are left out.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    user: &str,
    gw: SocketAddr,
    transport: &str,
    via: SocketAddr,
    branch: &str,
    omit: &[&str],
    extra: &[String],
    body: &str,
) -> String {
    let tl = transport.to_ascii_lowercase();
    let uri = format!("sip:{user}@{}:{};transport={tl}", gw.ip(), gw.port());
    let mut headers: Vec<(&str, String)> = vec![
        (
            "Via",
            format!("SIP/2.0/{transport} {via};branch=z9hG4bK{branch};rport"),
        ),
        ("Max-Forwards", "70".into()),
        ("From", format!("<sip:tester@{}>;tag=f{branch}", via.ip())),
        ("To", format!("<sip:{user}@{}>", gw.ip())),
        ("Call-ID", format!("{branch}@test")),
        ("CSeq", format!("1 {method}")),
        ("Contact", format!("<sip:tester@{via};transport={tl}>")),
    ];
    headers.retain(|(n, _)| !omit.iter().any(|o| o.eq_ignore_ascii_case(n)));
    let mut s = format!("{method} {uri} SIP/2.0\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    if !body.is_empty() {
        s.push_str("Content-Type: application/sdp\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// A one-line summary of a response (status line, or "no response").
fn status_line(r: Option<&SipMsg>) -> String {
    r.map_or_else(|| "no response".to_owned(), |m| m.first.clone())
}

/// Waits up to `timeout` for a final response on `sock` whose top Via branch is
/// `z9hG4bK{branch}`; every message received meanwhile goes to `seen`.
fn udp_wait_final(
    sock: &UdpSocket,
    branch: &str,
    timeout: Duration,
    seen: &mut Vec<SipMsg>,
) -> Option<SipMsg> {
    let want = format!("z9hG4bK{branch}");
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(m) = SipMsg::from_bytes(&buf[..n]) else {
            continue;
        };
        seen.push(m.clone());
        if !m.is_request() && m.status() >= 200 && m.branch().as_deref() == Some(want.as_str()) {
            return Some(m);
        }
    }
    None
}

/// A raw TCP connection to the gateway that sends hand-made requests and cuts what comes
/// back into messages.
struct RawTcp {
    s: TcpStream,
    buf: Vec<u8>,
    closed: bool,
    /// Every message received.
    received: Vec<SipMsg>,
}

impl RawTcp {
    fn new(s: TcpStream) -> RawTcp {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        RawTcp {
            s,
            buf: Vec::new(),
            closed: false,
            received: Vec::new(),
        }
    }
    fn connect(from: &str, to: SocketAddr) -> RawTcp {
        RawTcp::new(connect_from(ip(from), to))
    }
    fn local(&self) -> SocketAddr {
        self.s.local_addr().unwrap()
    }
    /// Writes `bytes`; false (and `closed`) when the connection is gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.s.write_all(bytes).is_err() {
            self.closed = true;
        }
        !self.closed
    }
    /// Reads once (up to the read timeout); false when the connection closed.
    fn pump(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                while let Some(m) = take_message(&mut self.buf) {
                    self.received.push(m);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        !self.closed
    }
    /// Waits up to `timeout` for a final response whose top Via branch is `z9hG4bK{branch}`.
    fn wait_final(&mut self, branch: &str, timeout: Duration) -> Option<SipMsg> {
        let want = format!("z9hG4bK{branch}");
        let deadline = Instant::now() + timeout;
        let mut from = 0;
        loop {
            for m in &self.received[from..] {
                if !m.is_request()
                    && m.status() >= 200
                    && m.branch().as_deref() == Some(want.as_str())
                {
                    return Some(m.clone());
                }
            }
            from = self.received.len();
            if Instant::now() >= deadline || !self.pump() {
                return None;
            }
        }
    }
    /// Sends an OPTIONS from this connection's address and waits for its final response.
    fn options(&mut self, gw: SocketAddr, timeout: Duration) -> Option<SipMsg> {
        let branch = uniq();
        let req = request(
            "OPTIONS",
            "gateway",
            gw,
            "TCP",
            self.local(),
            &branch,
            &[],
            &[],
            "",
        );
        if !self.send(req.as_bytes()) {
            return None;
        }
        self.wait_final(&branch, timeout)
    }
    /// Waits until the gateway closes the connection (EOF or reset), reading and discarding
    /// what arrives (a keep-alive's CRLF pong, responses); with `keepalive` it writes a
    /// CRLFCRLF every 200 ms meanwhile. Returns the time from `since` at which it closed, or
    /// `None` if it is still open at `since + limit`.
    fn wait_closed(
        &mut self,
        since: Instant,
        limit: Duration,
        keepalive: bool,
    ) -> Option<Duration> {
        let deadline = since + limit;
        let mut next_ping = Instant::now();
        while Instant::now() < deadline {
            if keepalive && Instant::now() >= next_ping {
                next_ping += Duration::from_millis(200);
                if !self.send(b"\r\n\r\n") {
                    return Some(since.elapsed());
                }
            }
            if !self.pump() {
                return Some(since.elapsed());
            }
        }
        None
    }
}

/// "closed after X s" / "still open after Y s" for messages.
fn closed_text(t: Option<Duration>, limit: Duration) -> String {
    match t {
        Some(d) => format!("closed after {:.2} s", d.as_secs_f64()),
        None => format!("still open after {:.1} s", limit.as_secs_f64()),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON log events
// ---------------------------------------------------------------------------------------------

/// The `--log-json` lines of `log` whose `fields.code` is `code`.
fn events(log: &str, code: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["code"] == code)
        .collect()
}

/// A field of an event as text (strings as they are, numbers printed; `<missing>`).
fn fstr(e: &serde_json::Value, k: &str) -> String {
    match &e["fields"][k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<missing>".into(),
        v => v.to_string(),
    }
}

/// A field of an event as a number (a number, or a string that parses).
fn fnum(e: &serde_json::Value, k: &str) -> Option<f64> {
    match &e["fields"][k] {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Waits up to `secs` for the GW1220 lines that `select` picks to reach `n`; returns them.
fn wait_gw1220(
    gw: &Gateway,
    secs: f64,
    n: usize,
    select: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let found: Vec<_> = events(&gw.log(), "GW1220")
            .into_iter()
            .filter(|e| select(e))
            .collect();
        if found.len() >= n || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The GW1220 fields, for messages.
fn gw1220_text(e: &serde_json::Value) -> String {
    e["fields"].to_string()
}

/// Every GW1220 field the record must carry.
const GW1220_FIELDS: [&str; 14] = [
    "call",
    "a_call_id",
    "b_call_id",
    "dial_plan",
    "mode",
    "result",
    "status",
    "reason",
    "ended_by",
    "duration_secs",
    "a_packets",
    "b_packets",
    "a_lost",
    "b_lost",
];

/// The GW1220 fields missing from `e`.
fn missing_fields(e: &serde_json::Value) -> Vec<&'static str> {
    GW1220_FIELDS
        .iter()
        .copied()
        .filter(|k| e["fields"].get(*k).is_none())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1, 2: connections that never produce an admitted request
// ---------------------------------------------------------------------------------------------

/// Test 1: `admission_timeout_ms = 1000`: an idle plain TCP connection from a stranger
/// (127.0.0.9) and one from a configured peer's address (127.0.0.1) are closed within 2.5 s
/// (and not before 0.8 s); a peer's connection that sends an OPTIONS at once gets 200 and
/// stays open past 2.5 s (and still answers); both closes are counted as
/// `admission_timeout`.
#[test]
fn idle_connections_are_closed_after_the_admission_timeout() {
    let lab = Lab::new();
    let gw = lab.start("admission_timeout_ms = 1000\n");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("idle");
    let to = lab.sip();
    let limit = Duration::from_secs(4);

    let mut stranger = RawTcp::connect("127.0.0.9", to);
    let t_stranger = Instant::now();
    let mut peer_idle = RawTcp::connect("127.0.0.1", to);
    let t_peer = Instant::now();
    let mut peer_busy = RawTcp::connect("127.0.0.1", to);
    let t_busy = Instant::now();
    let first = peer_busy.options(to, Duration::from_secs(2));
    let (stranger_closed, peer_closed, busy_closed) = std::thread::scope(|s| {
        let a = s.spawn(|| stranger.wait_closed(t_stranger, limit, false));
        let b = s.spawn(|| peer_idle.wait_closed(t_peer, limit, false));
        let busy = peer_busy.wait_closed(t_busy, Duration::from_secs(3), false);
        (a.join().unwrap(), b.join().unwrap(), busy)
    });
    let second = if busy_closed.is_none() {
        peer_busy.options(to, Duration::from_secs(2))
    } else {
        None
    };

    let within = |t: Option<Duration>| {
        t.is_some_and(|d| d >= Duration::from_millis(800) && d <= Duration::from_millis(2500))
    };
    c.check(
        within(stranger_closed),
        format!(
            "idle connection from the stranger 127.0.0.9 closed within 0.8–2.5 s: {}",
            closed_text(stranger_closed, limit)
        ),
    );
    c.check(
        within(peer_closed),
        format!(
            "idle connection from the peer address 127.0.0.1 closed within 0.8–2.5 s: {}",
            closed_text(peer_closed, limit)
        ),
    );
    c.check(
        first.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "OPTIONS at once from the peer address: 200, got {}",
            status_line(first.as_ref())
        ),
    );
    c.check(
        busy_closed.is_none(),
        format!(
            "the peer's connection with an admitted OPTIONS stays open for 3 s: {}",
            closed_text(busy_closed, Duration::from_secs(3))
        ),
    );
    c.check(
        second.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "a second OPTIONS on it after 3 s: 200, got {}",
            status_line(second.as_ref())
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "admission_timeout") >= 2.0);
    c.check(
        closed(&m, "admission_timeout") >= 2.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"admission_timeout\"}} >= 2: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    c.finish();
}

/// Tests 1 and 2 at the default `admission_timeout_ms` (5000, nothing configured: today's keys
/// only): an idle stranger's connection and one that sends only CRLFCRLF keep-alives every
/// 200 ms are closed within 4–7.5 s.
#[test]
fn idle_connections_are_closed_at_the_default_admission_timeout() {
    let lab = Lab::new();
    let gw = lab.start("");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("idle-default");
    let to = lab.sip();
    let limit = Duration::from_secs(9);
    let mut idle = RawTcp::connect("127.0.0.9", to);
    let t_idle = Instant::now();
    let mut pinging = RawTcp::connect("127.0.0.9", to);
    let t_ping = Instant::now();
    let (idle_closed, ping_closed) = std::thread::scope(|s| {
        let a = s.spawn(|| idle.wait_closed(t_idle, limit, false));
        let b = pinging.wait_closed(t_ping, limit, true);
        (a.join().unwrap(), b)
    });
    let within = |t: Option<Duration>| {
        t.is_some_and(|d| d >= Duration::from_secs(4) && d <= Duration::from_millis(7500))
    };
    c.check(
        within(idle_closed),
        format!(
            "idle connection from 127.0.0.9 closed within 4–7.5 s (default 5000 ms): {}",
            closed_text(idle_closed, limit)
        ),
    );
    c.check(
        within(ping_closed),
        format!(
            "connection from 127.0.0.9 sending only CRLFCRLF every 200 ms closed within 4–7.5 s: {}",
            closed_text(ping_closed, limit)
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "admission_timeout") >= 2.0);
    c.check(
        closed(&m, "admission_timeout") >= 2.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"admission_timeout\"}} >= 2: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    c.finish();
}

/// Test 2: Keep-alives are not admitted requests: a stranger (127.0.0.9) that sends CRLFCRLF
/// every 200 ms is closed within 2.5 s all the same (`admission_timeout_ms = 1000`).
#[test]
fn keepalives_alone_do_not_keep_a_strangers_connection_open() {
    let lab = Lab::new();
    let gw = lab.start("admission_timeout_ms = 1000\n");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("keepalive");
    let limit = Duration::from_secs(4);
    let mut s = RawTcp::connect("127.0.0.9", lab.sip());
    let t0 = Instant::now();
    let closed_at = s.wait_closed(t0, limit, true);
    c.check(
        closed_at
            .is_some_and(|d| d >= Duration::from_millis(800) && d <= Duration::from_millis(2500)),
        format!(
            "stranger sending CRLFCRLF every 200 ms closed within 0.8–2.5 s: {}",
            closed_text(closed_at, limit)
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "admission_timeout") >= 1.0);
    c.check(
        closed(&m, "admission_timeout") >= 1.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"admission_timeout\"}} >= 1: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 3: refused connections
// ---------------------------------------------------------------------------------------------

/// Test 3: A TLS client whose certificate is valid (issued by the gateway's trusted CA) but names
/// no peer (`stranger.test`) sends OPTIONS: 403, whose reason phrase has no Rust `Debug`
/// rendering, and the gateway closes the connection within 1 s (counted as `refused`).
#[test]
fn a_refused_tls_connection_is_closed_after_the_403() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut c = Checks::new("refused-tls");
    let mut stranger = lab
        .try_tls_phone("stranger", "stranger.test", "127.0.0.9")
        .unwrap_or_else(|e| panic!("the TLS handshake must succeed (valid certificate): {e}"));
    dump.sip("stranger (TLS)", &stranger.transcript);
    let r = stranger.options("gateway", Duration::from_secs(3));
    let t403 = Instant::now();
    c.check(
        r.as_ref().is_some_and(|r| r.status() == 403),
        format!(
            "OPTIONS from stranger.test: 403, got {}",
            status_line(r.as_ref())
        ),
    );
    let deadline = t403 + Duration::from_secs(3);
    while !stranger.is_closed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed_after = stranger.is_closed().then(|| t403.elapsed());
    c.check(
        closed_after.is_some_and(|d| d <= Duration::from_secs(1)),
        format!(
            "connection closed by the gateway within 1 s of the 403: {}",
            closed_text(closed_after, Duration::from_secs(3))
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "refused") >= 1.0);
    c.check(
        closed(&m, "refused") >= 1.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"refused\"}} >= 1: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    let reason = r.as_ref().map(SipMsg::reason).unwrap_or_default();
    let found = debug_renderings(&reason, &DEBUG_RENDERINGS[..3]);
    c.check(
        found.is_empty(),
        format!("403 reason phrase without Debug renderings: {reason:?} contains {found:?}"),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 4: strangers cannot lock out peers
// ---------------------------------------------------------------------------------------------

/// Test 4: `max_connections = 300`: 300 idle plain TCP connections from 50 stranger addresses
/// (127.0.0.10–59, 6 each; the gateway may refuse some) are held open; meanwhile alice (TLS
/// peer, 127.0.0.2) connects, gets 200 to OPTIONS and places an SRTP call to the echo
/// endpoint that echoes ≥ 95 of 100 packets. Strangers were refused at accept because their
/// quota was full (`stranger_quota`).
#[test]
fn strangers_cannot_lock_out_a_configured_peer() {
    let lab = Lab::new();
    let gw = lab.start("max_connections = 300\n");
    let dump = Dump::new(&gw);
    let mut c = Checks::new("lockout");
    let sources: Vec<IpAddr> = (10..60)
        .flat_map(|i| std::iter::repeat_n(ip(&format!("127.0.0.{i}")), 6))
        .collect();
    let conns = connect_many(&sources, lab.sip());
    let failed = conns.iter().filter(|r| r.is_err()).count();
    let strangers: Vec<TcpStream> = conns.into_iter().filter_map(Result::ok).collect();
    // Until the gateway has taken every connection (accepted and kept, or refused).
    let m = wait_metrics(&gw, 5.0, |m| {
        msum(m, "mediagate_connections_open", &[])
            + msum(m, "mediagate_connections_refused_total", &[])
            + closed(m, "stranger_quota")
            >= 300.0
    });
    // Which stranger connections are still open (a read would block) right now.
    let open = strangers
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 64];
            let mut r: &TcpStream = s;
            let open = matches!(r.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            open
        })
        .count();
    eprintln!(
        "stranger connections: {} connected ({failed} connect errors), {open} still open; {}; {}",
        strangers.len(),
        metric_lines(&m, "mediagate_connections"),
        metric_lines(&m, "mediagate_connections_closed_total")
    );
    c.check(
        open >= 50,
        format!("at least 50 stranger connections are held open while alice connects: {open}"),
    );

    match lab.try_tls_phone("alice", "alice.test", "127.0.0.2") {
        Err(e) => {
            c.check(false, format!("alice connects over TLS: {e}"));
        }
        Ok(mut alice) => {
            dump.sip("alice", &alice.transcript);
            let r = alice.options("gateway", Duration::from_secs(3));
            c.check(
                r.as_ref().is_some_and(|r| r.status() == 200),
                format!("alice's OPTIONS: 200, got {}", status_line(r.as_ref())),
            );
            let mut media = lab.media("127.0.0.2", 1, 0, 0xA11C_0404, 100);
            let key = new_key();
            let ok = alice.invite("7000", &audio_sdp(media.addr, 1, Some(&key), "sendrecv"));
            if c.check(
                ok.status() == 200,
                format!("alice's SRTP call to echo: 200, got {}", ok.first),
            ) {
                let sdp = sdp_of(&ok);
                media.set_peer(sdp.rtp_address(0).expect("media address in the 200"));
                media.set_tx_key(Some(&key.key));
                let gw_key = crypto_of(&sdp, 0).expect("a=crypto in the 200");
                media.set_rx_key(Some(&gw_key.key));
                media.send_run(1..101, Duration::from_millis(5));
                let echoed = media.wait_markers(0, 1..101, 100, Duration::from_secs(3));
                c.check(
                    echoed >= 95,
                    format!(
                        "echo returned {echoed}/100 SRTP packets ({})",
                        media.summary()
                    ),
                );
                let bye = alice.bye();
                c.check(bye.status() == 200, format!("BYE: {}", bye.first));
            }
        }
    }
    let m = gw.metrics();
    c.check(
        closed(&m, "stranger_quota") > 0.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"stranger_quota\"}} > 0: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    drop(strangers);
    c.finish();
}

/// Opens one plain TCP connection from each of `sources` (in order) and waits `settle`:
/// which of them are still open then (true) and which the gateway closed (false).
fn open_after(sources: &[&str], to: SocketAddr, settle: Duration) -> (Vec<TcpStream>, Vec<bool>) {
    let ips: Vec<IpAddr> = sources.iter().map(|s| ip(s)).collect();
    let conns: Vec<TcpStream> = connect_many(&ips, to)
        .into_iter()
        .map(|r| r.expect("TCP connect"))
        .collect();
    std::thread::sleep(settle);
    let open = conns
        .iter()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 64];
            let mut r: &TcpStream = s;
            let open = matches!(r.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            open
        })
        .collect();
    (conns, open)
}

/// The stranger quotas with small values (`max_stranger_connections = 5`,
/// `max_stranger_connections_per_ip = 2`): three idle connections each from 127.0.0.10, .11
/// and .12, one after the other: the first two of .10 and of .11 and the first of .12 are
/// kept, the other four are closed at accept (within 1 s, long before the admission timeout)
/// and counted as `stranger_quota`; a peer's connection (127.0.0.1) is not subject to the
/// quota (OPTIONS 200); when a stranger's connection goes away its place is free again.
#[test]
fn stranger_quotas_per_address_and_in_total() {
    let lab = Lab::new();
    let gw = lab.start("max_stranger_connections = 5\nmax_stranger_connections_per_ip = 2\n");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("stranger-quota");
    let sources = [
        "127.0.0.10",
        "127.0.0.10",
        "127.0.0.10",
        "127.0.0.11",
        "127.0.0.11",
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.12",
        "127.0.0.12",
    ];
    let (mut conns, open) = open_after(&sources, lab.sip(), Duration::from_secs(1));
    let want = [true, true, false, true, true, false, true, false, false];
    c.check(
        open == want,
        format!(
            "kept (true) / closed at accept (false), in connect order {sources:?}: want {want:?}, \
             got {open:?}"
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "stranger_quota") >= 4.0);
    c.check(
        closed(&m, "stranger_quota") == 4.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"stranger_quota\"}} == 4: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    let mut peer = RawTcp::connect("127.0.0.1", lab.sip());
    let r = peer.options(lab.sip(), Duration::from_secs(2));
    c.check(
        r.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "a peer's connection while the stranger quota is full: OPTIONS 200, got {}",
            status_line(r.as_ref())
        ),
    );
    // .12's kept connection goes away: a new one from .12 is kept.
    let before = msum(&gw.metrics(), "mediagate_connections_open", &[]);
    drop(conns.remove(6));
    wait_metrics(&gw, 3.0, |m| {
        msum(m, "mediagate_connections_open", &[]) < before
    });
    let (_again, open) = open_after(&["127.0.0.12"], lab.sip(), Duration::from_secs(1));
    c.check(
        open == [true],
        format!("after a stranger's connection closed, a new one is kept: {open:?}"),
    );
    drop(conns);
    c.finish();
}

/// `plain_peers_only = true`: plain TCP connections from 127.0.0.9 (no peer) and from
/// 127.0.0.2 (alice's address, but alice is a TLS peer, not a plain one) are closed at
/// accept (within 1 s, with nothing sent) and counted as `not_a_peer`; the plain peers'
/// address (127.0.0.1) still gets 200 to OPTIONS, and alice over TLS too.
#[test]
fn plain_peers_only_closes_other_addresses_at_accept() {
    let lab = Lab::new();
    let gw = lab.start("plain_peers_only = true\n");
    let dump = Dump::new(&gw);
    let mut c = Checks::new("plain-peers-only");
    let (_conns, open) = open_after(
        &["127.0.0.9", "127.0.0.2"],
        lab.sip(),
        Duration::from_secs(1),
    );
    c.check(
        open == [false, false],
        format!("plain TCP from 127.0.0.9 and 127.0.0.2 closed at accept: open after 1 s {open:?}"),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "not_a_peer") >= 2.0);
    c.check(
        closed(&m, "not_a_peer") >= 2.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"not_a_peer\"}} >= 2: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    let mut peer = RawTcp::connect("127.0.0.1", lab.sip());
    let r = peer.options(lab.sip(), Duration::from_secs(2));
    c.check(
        r.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "plain peer address: OPTIONS 200, got {}",
            status_line(r.as_ref())
        ),
    );
    match lab.try_tls_phone("alice", "alice.test", "127.0.0.2") {
        Ok(mut alice) => {
            dump.sip("alice", &alice.transcript);
            let r = alice.options("gateway", Duration::from_secs(3));
            c.check(
                r.as_ref().is_some_and(|r| r.status() == 200),
                format!(
                    "alice over TLS: OPTIONS 200, got {}",
                    status_line(r.as_ref())
                ),
            );
        }
        Err(e) => {
            c.check(false, format!("alice over TLS: {e}"));
        }
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 5: slowloris
// ---------------------------------------------------------------------------------------------

/// Test 5: `partial_message_timeout_ms = 1000`: half a request from a peer address, then
/// nothing: closed within 2.5 s and counted as `partial_message_timeout`.
#[test]
fn a_stalled_half_message_is_cut_and_counted() {
    let lab = Lab::new();
    let gw = lab.start("partial_message_timeout_ms = 1000\n");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("slowloris");
    let mut s = RawTcp::connect("127.0.0.1", lab.sip());
    let req = request(
        "OPTIONS",
        "gateway",
        lab.sip(),
        "TCP",
        s.local(),
        &uniq(),
        &[],
        &[],
        "",
    );
    let half = &req.as_bytes()[..req.len() / 2];
    s.send(half);
    let t0 = Instant::now();
    let limit = Duration::from_secs(4);
    let closed_at = s.wait_closed(t0, limit, false);
    c.check(
        closed_at
            .is_some_and(|d| d >= Duration::from_millis(800) && d <= Duration::from_millis(2500)),
        format!(
            "connection holding {} octets of a request closed within 0.8–2.5 s: {}",
            half.len(),
            closed_text(closed_at, limit)
        ),
    );
    let m = wait_metrics(&gw, 2.0, |m| closed(m, "partial_message_timeout") >= 1.0);
    c.check(
        closed(&m, "partial_message_timeout") >= 1.0,
        format!(
            "mediagate_connections_closed_total{{reason=\"partial_message_timeout\"}} >= 1: {}",
            metric_lines(&m, "mediagate_connections_closed_total")
        ),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 6, 7, 8: malformed, incomplete and oversized messages
// ---------------------------------------------------------------------------------------------

/// `RcvbufErrors` of `/proc/net/snmp` (UDP datagrams the kernel dropped, host-wide).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Test 6: 100 000 garbage datagrams (random octets, 20–200 long, first octet ≥ 0x80 so that none
/// is a keep-alive or a SIP message by chance) from four source ports of 127.0.0.1, paced in
/// bursts of 100 so the kernel drops none (each burst waits until
/// `mediagate_sip_malformed_total{transport="udp"}` has counted it): every one is counted,
/// and the log grows by at most 100 lines. If the counter stalls for 10 s the failure is
/// recorded and the flood goes on paced by time (5 ms per 100), so the log's growth over the
/// whole flood is still reported.
#[test]
fn a_garbage_flood_is_counted_not_logged() {
    const TOTAL: u64 = 100_000;
    const BURST: u64 = 100;
    let lab = Lab::new();
    let gw = lab.start("");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("flood");
    let seed = std::env::var("SIGNALING_HARDENING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Rng::time_seed);
    eprintln!("seed {seed} (SIGNALING_HARDENING_SEED)");
    let mut rng = Rng::new(seed);
    let socks: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind(sa("127.0.0.1", 0)).unwrap())
        .collect();
    let malformed = |m: &str| msum(m, "mediagate_sip_malformed_total", &[("transport", "udp")]);
    std::thread::sleep(Duration::from_millis(300));
    let lines_before = gw.log().lines().count();
    let base = malformed(&gw.metrics());
    let drops_before = udp_rcvbuf_errors();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut stalled = None;
    let mut buf = [0u8; 200];
    while sent < TOTAL {
        for _ in 0..BURST {
            let len = rng.range(20..201) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next_u64() as u8;
            }
            buf[0] |= 0x80;
            socks[(sent % 4) as usize]
                .send_to(&buf[..len], lab.sip())
                .unwrap();
            sent += 1;
        }
        if stalled.is_some() {
            // The counter does not keep up (or does not exist): go on, paced by time, so
            // the log's growth over the whole flood is still seen.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let m = wait_metrics(&gw, 10.0, |m| malformed(m) - base >= sent as f64);
        if malformed(&m) - base < sent as f64 {
            stalled = Some(format!(
                "after {sent} datagrams the counter stood at +{} for 10 s",
                malformed(&m) - base
            ));
        }
    }
    // Until the log stops growing (at most 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = usize::MAX;
    while Instant::now() < deadline {
        let n = gw.log().lines().count();
        if n == last {
            break;
        }
        last = n;
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = gw.metrics();
    let counted = malformed(&m) - base;
    let grown = gw.log().lines().count().saturating_sub(lines_before);
    let kernel_drops = udp_rcvbuf_errors().saturating_sub(drops_before);
    let seen = format!(
        "{sent} datagrams sent in {:.1} s; mediagate_sip_malformed_total{{transport=\"udp\"}} \
         +{counted} ({}); the log grew by {grown} lines; host UDP RcvbufErrors +{kernel_drops}",
        started.elapsed().as_secs_f64(),
        metric_lines(&m, "mediagate_sip_malformed_total")
    );
    eprintln!("{seen}");
    c.check(
        stalled.is_none(),
        format!(
            "the counter keeps up with every burst: {} ({seen})",
            stalled.as_deref().unwrap_or("yes")
        ),
    );
    c.check(
        sent == TOTAL && counted == TOTAL as f64,
        format!("exactly {TOTAL} counted: {seen}"),
    );
    c.check(
        grown <= 100,
        format!("log grew by at most 100 lines: {seen}"),
    );
    c.finish();
}

/// The headers left out, one at a time, in test 7.
const MANDATORY: [&str; 5] = ["Call-ID", "CSeq", "From", "To", "Max-Forwards"];

/// Test 7: OPTIONS and INVITE (to echo), each missing one of Call-ID, CSeq, From, To and
/// Max-Forwards, over UDP from dave's address (127.0.0.4) and over TCP from the plain peers'
/// address (127.0.0.1): each gets a 400 whose reason phrase names the missing header, sent
/// back by the Via; over TCP a valid OPTIONS after each still gets 200 on the same
/// connection; all of them are counted as `missing_header`.
#[test]
fn requests_missing_a_mandatory_header_get_400_naming_it() {
    let lab = Lab::new();
    let gw = lab.start("");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("missing-header");
    let to = lab.sip();
    let wait = Duration::from_millis(1500);
    let cases: Vec<(&str, &str)> = ["OPTIONS", "INVITE"]
        .iter()
        .flat_map(|m| MANDATORY.iter().map(move |h| (*m, *h)))
        .collect();
    let body_for = |method: &str, ip_: &str| {
        if method == "INVITE" {
            plain_offer(ip_, 4000)
        } else {
            String::new()
        }
    };
    let judge = |r: Option<&SipMsg>, header: &str| {
        r.is_some_and(|r| {
            r.status() == 400
                && r.reason()
                    .to_ascii_lowercase()
                    .contains(&header.to_ascii_lowercase())
        })
    };

    let dave_port = lab.ports.peer_sip(4);
    let (udp_results, tcp_results) = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            let sock = UdpSocket::bind(sa("127.0.0.4", dave_port)).unwrap();
            let via = sock.local_addr().unwrap();
            let mut out = Vec::new();
            for (method, header) in &cases {
                let branch = uniq();
                let req = request(
                    method,
                    "7000",
                    to,
                    "UDP",
                    via,
                    &branch,
                    &[header],
                    &[],
                    &body_for(method, "127.0.0.4"),
                );
                sock.send_to(req.as_bytes(), to).unwrap();
                let r = udp_wait_final(&sock, &branch, wait, &mut Vec::new());
                out.push((*method, *header, r));
            }
            out
        });
        let mut conn = RawTcp::connect("127.0.0.1", to);
        let mut out = Vec::new();
        for (method, header) in &cases {
            if conn.closed {
                conn = RawTcp::connect("127.0.0.1", to);
            }
            let branch = uniq();
            let req = request(
                method,
                "7000",
                to,
                "TCP",
                conn.local(),
                &branch,
                &[header],
                &[],
                &body_for(method, "127.0.0.1"),
            );
            conn.send(req.as_bytes());
            let r = conn.wait_final(&branch, wait);
            let after = if conn.closed {
                None
            } else {
                conn.options(to, wait)
            };
            out.push((*method, *header, r, after, conn.closed));
        }
        (udp.join().unwrap(), out)
    });

    for (method, header, r) in &udp_results {
        c.check(
            judge(r.as_ref(), header),
            format!(
                "UDP {method} without {header}: 400 naming {header}, got {}",
                status_line(r.as_ref())
            ),
        );
    }
    for (method, header, r, after, closed_) in &tcp_results {
        c.check(
            judge(r.as_ref(), header),
            format!(
                "TCP {method} without {header}: 400 naming {header}, got {}",
                status_line(r.as_ref())
            ),
        );
        c.check(
            !closed_ && after.as_ref().is_some_and(|a| a.status() == 200),
            format!(
                "TCP connection usable after {method} without {header}: OPTIONS got {}{}",
                status_line(after.as_ref()),
                if *closed_ { " (connection closed)" } else { "" }
            ),
        );
    }
    let m = wait_metrics(&gw, 2.0, |m| {
        msum(
            m,
            "mediagate_sip_malformed_total",
            &[("transport", "udp"), ("reason", "missing_header")],
        ) >= 10.0
            && msum(
                m,
                "mediagate_sip_malformed_total",
                &[("transport", "tcp"), ("reason", "missing_header")],
            ) >= 10.0
    });
    for t in ["udp", "tcp"] {
        c.check(
            msum(
                &m,
                "mediagate_sip_malformed_total",
                &[("transport", t), ("reason", "missing_header")],
            ) >= 10.0,
            format!(
                "mediagate_sip_malformed_total{{transport=\"{t}\",reason=\"missing_header\"}} >= 10: {}",
                metric_lines(&m, "mediagate_sip_malformed_total")
            ),
        );
    }
    c.finish();
}

/// Test 8: Over UDP from dave: an OPTIONS with one 60 000-octet header line and one with 5 000
/// header lines are not answered 200 (413, or no answer) and are counted as `too_large`; an
/// ordinary OPTIONS from the same socket gets 200 (the control).
#[test]
fn oversized_udp_requests_are_refused_and_counted() {
    let lab = Lab::new();
    let gw = lab.start("");
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("udp-size");
    let to = lab.sip();
    let sock = UdpSocket::bind(sa("127.0.0.4", lab.ports.peer_sip(4))).unwrap();
    let via = sock.local_addr().unwrap();
    let wait = Duration::from_secs(2);

    let branch = uniq();
    let req = request("OPTIONS", "gateway", to, "UDP", via, &branch, &[], &[], "");
    sock.send_to(req.as_bytes(), to).unwrap();
    let r = udp_wait_final(&sock, &branch, wait, &mut Vec::new());
    c.check(
        r.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "control: an ordinary OPTIONS from dave gets 200, got {}",
            status_line(r.as_ref())
        ),
    );

    let long_line = vec![format!("Subject: {}", "a".repeat(60_000))];
    let many: Vec<String> = (0..5000).map(|i| format!("X{i}: 1")).collect();
    for (what, extra) in [
        ("a 60 000-octet header line", long_line),
        ("5 000 header lines", many),
    ] {
        let branch = uniq();
        let req = request(
            "OPTIONS",
            "gateway",
            to,
            "UDP",
            via,
            &branch,
            &[],
            &extra,
            "",
        );
        sock.send_to(req.as_bytes(), to)
            .unwrap_or_else(|e| panic!("send {} octets: {e}", req.len()));
        let r = udp_wait_final(&sock, &branch, wait, &mut Vec::new());
        c.check(
            r.as_ref().is_none_or(|r| r.status() == 413),
            format!(
                "OPTIONS with {what} ({} octets): 413 or no answer, got {}",
                req.len(),
                status_line(r.as_ref())
            ),
        );
    }
    let m = wait_metrics(&gw, 2.0, |m| {
        msum(
            m,
            "mediagate_sip_malformed_total",
            &[("transport", "udp"), ("reason", "too_large")],
        ) >= 2.0
    });
    c.check(
        msum(
            &m,
            "mediagate_sip_malformed_total",
            &[("transport", "udp"), ("reason", "too_large")],
        ) >= 2.0,
        format!(
            "mediagate_sip_malformed_total{{transport=\"udp\",reason=\"too_large\"}} >= 2: {}",
            metric_lines(&m, "mediagate_sip_malformed_total")
        ),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 9: a peer's transport is enforced inbound
// ---------------------------------------------------------------------------------------------

/// Test 9: dave is a plain peer with `transport = "udp"` (127.0.0.4): over TCP from its address,
/// OPTIONS and INVITE get 403 whose reason phrase mentions the transport; over UDP both
/// work (200, and the call ends with BYE).
#[test]
fn a_udp_peer_is_refused_over_tcp() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut c = Checks::new("peer-transport");
    let mentions_transport = |r: &SipMsg| {
        let reason = r.reason().to_ascii_lowercase();
        ["transport", "tcp", "udp"]
            .iter()
            .any(|w| reason.contains(w))
    };

    let mut tcp = Phone::tcp("dave-over-tcp", ip("127.0.0.4"), lab.sip());
    dump.sip("dave over TCP", &tcp.transcript);
    let r = tcp.options("gateway", Duration::from_secs(3));
    c.check(
        r.as_ref()
            .is_some_and(|r| r.status() == 403 && mentions_transport(r)),
        format!(
            "OPTIONS over TCP from dave: 403 naming the transport, got {}",
            status_line(r.as_ref())
        ),
    );
    // A new connection: the gateway may close one whose requests were all refused.
    let mut tcp = Phone::tcp("dave-over-tcp", ip("127.0.0.4"), lab.sip());
    dump.sip("dave over TCP (INVITE)", &tcp.transcript);
    let inv = tcp.invite("7000", &plain_offer("127.0.0.4", lab.ports.peer_media(4).0));
    c.check(
        inv.status() == 403 && mentions_transport(&inv),
        format!(
            "INVITE over TCP from dave: 403 naming the transport, got {}",
            inv.first
        ),
    );
    if inv.status() == 200 {
        tcp.bye();
    }

    let mut udp = Phone::udp("dave", sa("127.0.0.4", lab.ports.peer_sip(4)), lab.sip());
    dump.sip("dave over UDP", &udp.transcript);
    let r = udp.options("gateway", Duration::from_secs(3));
    c.check(
        r.as_ref().is_some_and(|r| r.status() == 200),
        format!(
            "OPTIONS over UDP from dave: 200, got {}",
            status_line(r.as_ref())
        ),
    );
    let inv = udp.invite(
        "7000",
        &plain_offer("127.0.0.4", lab.ports.peer_media(4).0 + 2),
    );
    c.check(
        inv.status() == 200,
        format!("INVITE over UDP from dave: 200, got {}", inv.first),
    );
    if inv.status() == 200 {
        let bye = udp.bye();
        c.check(bye.status() == 200, format!("BYE over UDP: {}", bye.first));
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 10: RFC 4028 session timers
// ---------------------------------------------------------------------------------------------

/// True while process `pid` runs (it exists and is not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// The session-timer settings of test 10.
const SESSION_TIMERS: &str = "session_expires_secs = 4\nmin_se_secs = 2\n";

/// A SIPp UAC over TCP from the `sipp` peer's address and port, calling `number` with
/// `scenario` (a file of `testdata/sipp`); returns the process and its message and screen
/// files.
fn sipp_uac(lab: &Lab, scenario: &str, number: &str) -> (Proc, PathBuf, PathBuf) {
    require("sipp", "sip-tester");
    let stem = scenario.trim_end_matches(".xml");
    let dir = lab.path().join(format!("sipp-{stem}"));
    std::fs::create_dir_all(&dir).unwrap();
    let messages = dir.join("messages.log");
    let screen = dir.join("screen.log");
    let proc = Proc::spawn(
        "sipp-uac",
        60,
        "sipp",
        &[
            format!("127.0.0.1:{}", lab.ports.sip()),
            "-sf".into(),
            testdata().join("sipp").join(scenario).display().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            lab.ports.peer_sip(0).to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            lab.ports.peer_media(0).0.to_string(),
            "-s".into(),
            number.into(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            // No default behaviour: an aborted call is not cleaned up by SIPp's own BYE.
            "-nd".into(),
            "-timeout".into(),
            "40s".into(),
            "-timeout_error".into(),
            "-trace_err".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            messages.display().to_string(),
            "-trace_screen".into(),
            "-screen_file".into(),
            screen.display().to_string(),
        ],
        &dir,
    );
    (proc, messages, screen)
}

/// Test 10 (a): A SIPp UAC (TCP, peer `sipp`) calls echo with `Supported: timer`,
/// `Session-Expires: 4;refresher=uac`, `Min-SE: 2` and refreshes with a re-INVITE every 2 s
/// for 12 s, then BYE: the call stays up throughout (SIPp gets no request from the gateway
/// and every refresh is answered 200) and ends by the caller's BYE (GW1220 `ended_by`
/// `caller`).
#[test]
fn session_timer_refreshed_by_the_caller_keeps_the_call() {
    let lab = Lab::new();
    let gw = lab.start_with(SESSION_TIMERS, &["--log-json"]);
    let dump = Dump::new(&gw);
    let mut c = Checks::new("session-timer-refreshed");
    let (mut sipp, messages, screen) = sipp_uac(&lab, "uac_timer_refresh.xml", "7000");
    dump.file(&sipp.log);
    dump.file(&messages);
    dump.file(&screen);
    let code = sipp.wait_for(45);
    c.check(
        code == Some(0),
        format!(
            "SIPp: the call with six refreshes and the caller's BYE succeeded (exit {code:?}; {})",
            std::fs::read_to_string(&screen)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    let records = wait_gw1220(&gw, 3.0, 1, |_| true);
    c.check(
        records.len() == 1,
        format!("one GW1220 record, got {}", records.len()),
    );
    if let Some(e) = records.first() {
        c.check(
            fstr(e, "ended_by") == "caller"
                && fstr(e, "result") == "answered"
                && fnum(e, "duration_secs").is_some_and(|d| d >= 11.0),
            format!(
                "GW1220 ended_by caller, result answered, duration_secs >= 11: {}",
                gw1220_text(e)
            ),
        );
    }
    let m = gw.metrics();
    c.check(
        msum(&m, "mediagate_session_expiries_total", &[]) == 0.0,
        format!(
            "no session expired: {}",
            metric_lines(&m, "mediagate_session_expiries_total")
        ),
    );
    c.finish();
}

/// Test 10 (b): The same UAC stops refreshing after the first 200/ACK: within
/// session_expires + 3 s (7 s; SIPp's scenario waits that long for it) the gateway sends it
/// a BYE (SIPp answers 200) and ends the echo leg: no call and no relay pair left while SIPp
/// still holds its connection, the expiry counted, GW1220 `ended_by` `session_expired`.
#[test]
fn session_timer_not_refreshed_ends_the_call() {
    let lab = Lab::new();
    let gw = lab.start_with(SESSION_TIMERS, &["--log-json"]);
    let dump = Dump::new(&gw);
    let mut c = Checks::new("session-timer-expired");
    let (mut sipp, messages, screen) = sipp_uac(&lab, "uac_timer_no_refresh.xml", "7000");
    dump.file(&sipp.log);
    dump.file(&messages);
    dump.file(&screen);
    // The call comes up, then both legs must be gone while SIPp still holds its connection
    // (its scenario pauses 2 s after answering the BYE): the gateway ended them, not a
    // connection close.
    let t0 = Instant::now();
    let mut up = false;
    let mut gone = None;
    let mut m = String::new();
    while t0.elapsed() < Duration::from_secs(15) {
        m = gw.metrics();
        let active = msum(&m, "mediagate_calls_active", &[]);
        let pairs = msum(&m, "mediagate_relay_pairs", &[]);
        if active >= 1.0 {
            up = true;
        } else if up && pairs == 0.0 {
            gone = Some((t0.elapsed(), running(sipp.pid())));
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    c.check(up, "the call came up (mediagate_calls_active 1)");
    c.check(
        gone.is_some_and(|(_, running)| running),
        format!(
            "no call and no relay pair left while SIPp is still connected: {} ({}; {})",
            match gone {
                Some((t, r)) => format!(
                    "gone {:.1} s after the INVITE, SIPp {}",
                    t.as_secs_f64(),
                    if r { "still running" } else { "already gone" }
                ),
                None => "still there after 15 s".into(),
            },
            metric_lines(&m, "mediagate_calls_active"),
            metric_lines(&m, "mediagate_relay_pairs")
        ),
    );
    let code = sipp.wait_for(45);
    c.check(
        code == Some(0),
        format!(
            "SIPp received the gateway's BYE within 7 s of its ACK and answered it (exit {code:?}; {})",
            std::fs::read_to_string(&screen)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    let m = gw.metrics();
    c.check(
        msum(&m, "mediagate_session_expiries_total", &[]) >= 1.0,
        format!(
            "mediagate_session_expiries_total >= 1: {}",
            metric_lines(&m, "mediagate_session_expiries_total")
        ),
    );
    let records = wait_gw1220(&gw, 3.0, 1, |_| true);
    c.check(
        records.len() == 1 && fstr(&records[0], "ended_by") == "session_expired",
        format!(
            "one GW1220 with ended_by session_expired: {:?}",
            records.iter().map(gw1220_text).collect::<Vec<_>>()
        ),
    );
    c.finish();
}

/// Test 10 (c): A call to the `far` UAS whose 200 carries `Session-Expires: 4;refresher=uac`
/// (and `Require: timer`): the gateway, the UAC of that leg, refreshes it: the UAS receives
/// at least 2 refresh requests (re-INVITE or UPDATE carrying Session-Expires) within 8 s and
/// the call stays up (no BYE either way, one call active), until the caller's BYE.
#[test]
fn session_timer_refreshed_by_the_gateway_towards_the_far_end() {
    let lab = Lab::new();
    let gw = lab.start(SESSION_TIMERS);
    let dump = Dump::new(&gw);
    let mut c = Checks::new("session-timer-gateway-refreshes");
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_1010, 1);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    uas.set_extra_headers(&["Session-Expires: 4;refresher=uac", "Require: timer"]);
    dump.sip("far (UAS)", &uas.transcript);
    let caller_media = lab.media("127.0.0.1", 2, 0, 0xCA11_1010, 1);
    let mut caller = lab.plain();
    dump.sip("caller", &caller.transcript);
    let ok = caller.invite("6000", &audio_sdp(caller_media.addr, 1, None, "sendrecv"));
    assert_eq!(ok.status(), 200, "call to far: {}", ok.text());
    let t0 = Instant::now();
    let refreshes = || {
        uas.requests()
            .into_iter()
            .filter(|r| {
                let in_dialog = r.header("To").and_then(SipMsg::tag_of).is_some();
                ((r.method() == "INVITE" && in_dialog) || r.method() == "UPDATE")
                    && r.header("Session-Expires").is_some()
            })
            .count()
    };
    while t0.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = refreshes();
    let byes_far = uas
        .requests()
        .iter()
        .filter(|r| r.method() == "BYE")
        .count();
    let byes_caller = caller
        .requests()
        .iter()
        .filter(|r| r.method() == "BYE")
        .count();
    let m = gw.metrics();
    c.check(
        n >= 2,
        format!(
            "the far end received >= 2 refreshes (re-INVITE/UPDATE with Session-Expires) in 8 s: {n} \
             (requests at far: {:?})",
            uas.requests()
                .iter()
                .map(|r| r.first.clone())
                .collect::<Vec<_>>()
        ),
    );
    c.check(
        byes_far == 0 && byes_caller == 0 && msum(&m, "mediagate_calls_active", &[]) == 1.0,
        format!(
            "the call stays up for 8 s: BYE at far {byes_far}, at the caller {byes_caller}, {}",
            metric_lines(&m, "mediagate_calls_active")
        ),
    );
    let bye = caller.bye();
    c.check(bye.status() == 200, format!("caller's BYE: {}", bye.first));
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 11: unique identifiers across processes
// ---------------------------------------------------------------------------------------------

/// What one run of test 11 collected.
#[derive(Debug, Default)]
struct IdRun {
    /// Outbound INVITEs at the busy peer: (Call-ID, From tag, Via branch), retransmissions
    /// removed.
    invites: Vec<(String, String, String)>,
    /// The To tag of the gateway's final response to each of our INVITEs.
    to_tags: Vec<String>,
    /// Final statuses the caller received, by code.
    statuses: BTreeMap<u16, u64>,
    /// INVITEs sent, and those without a final response.
    sent: u64,
    unanswered: u64,
    secs: f64,
}

/// The busy peer: answers every INVITE at once with 486 (to the address it came from),
/// ignores everything else, and records each INVITE's Call-ID, From tag and branch.
fn busy_responder(
    sock: UdpSocket,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(String, String, String)> {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let tag = format!("busy{}", uniq());
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(m) = SipMsg::from_bytes(&buf[..n]) else {
            continue;
        };
        if !m.is_request() || m.method() != "INVITE" {
            continue;
        }
        let key = (
            m.header("Call-ID").unwrap_or_default().to_owned(),
            m.header("From")
                .and_then(SipMsg::tag_of)
                .unwrap_or_default(),
            m.branch().unwrap_or_default(),
        );
        if seen.insert(key.clone()) {
            out.push(key);
        }
        let resp = m.response(486, "Busy Here", &tag, &[], "");
        let _ = sock.send_to(resp.as_bytes(), from);
    }
    out
}

/// The caller: INVITEs to `8000` over UDP from dave's address, at most `window` without a
/// final response, until `total` of them were forwarded and answered 486. A 503 (no media
/// ports free for a moment: they rest after release) is counted and the INVITE is sent again
/// (a new one) after a short pause. Every final response is ACKed; the To tags are recorded.
fn busy_caller(lab: &Lab, total: u64, window: u64, run: &mut IdRun) {
    let sock = UdpSocket::bind(sa("127.0.0.4", lab.ports.peer_sip(4))).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let via = sock.local_addr().unwrap();
    let to = lab.sip();
    let body = plain_offer("127.0.0.4", 4000);
    let prefix = uniq();
    // Call-ID → branch, for INVITEs without a final response yet.
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut busy = 0u64;
    let mut buf = vec![0u8; 65_536];
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while busy < total && last_progress.elapsed() < Duration::from_secs(10) {
        while busy + (pending.len() as u64) < total && (pending.len() as u64) < window {
            let branch = format!("{prefix}x{}", run.sent);
            let req = request("INVITE", "8000", to, "UDP", via, &branch, &[], &[], &body);
            sock.send_to(req.as_bytes(), to).unwrap();
            pending.insert(format!("{branch}@test"), branch);
            run.sent += 1;
        }
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(m) = SipMsg::from_bytes(&buf[..n]) else {
            continue;
        };
        if m.is_request() || m.status() < 200 {
            continue;
        }
        let call_id = m.header("Call-ID").unwrap_or_default().to_owned();
        let branch = match pending.remove(&call_id) {
            Some(b) => {
                last_progress = Instant::now();
                done.insert(call_id.clone());
                *run.statuses.entry(m.status()).or_insert(0) += 1;
                if m.status() == 486 {
                    busy += 1;
                } else if m.status() == 503 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if let Some(t) = m.header("To").and_then(SipMsg::tag_of) {
                    run.to_tags.push(t);
                }
                b
            }
            // A retransmission of a final response already ACKed: ACK again.
            None if done.contains(&call_id) => m
                .branch()
                .and_then(|b| b.strip_prefix("z9hG4bK").map(str::to_owned))
                .unwrap_or_default(),
            None => continue,
        };
        let ack = format!(
            "ACK sip:8000@{to};transport=udp SIP/2.0\r\n\
             Via: SIP/2.0/UDP {via};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            m.header("From").unwrap_or_default(),
            m.header("To").unwrap_or_default(),
        );
        sock.send_to(ack.as_bytes(), to).unwrap();
    }
    run.unanswered = pending.len() as u64;
    run.secs = started.elapsed().as_secs_f64();
}

/// One run: the busy responder on 127.0.0.5 and the caller on 127.0.0.4 through `lab`'s
/// gateway.
fn id_run(lab: &Lab, total: u64) -> IdRun {
    let responder = UdpSocket::bind(sa("127.0.0.5", lab.ports.peer_sip(6))).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut run = IdRun::default();
    std::thread::scope(|s| {
        let r = s.spawn(|| busy_responder(responder, &stop));
        busy_caller(lab, total, 16, &mut run);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        run.invites = r.join().unwrap();
    });
    run
}

/// Test 11: Two gateways (own ports and configuration) started together, then one restarted:
/// through each of the three processes 10 000 INVITEs over UDP from dave to the busy peer,
/// which answers 486 at once. The Call-IDs, From tags and Via branches of the gateway's
/// outbound INVITEs and the To tags of its 486s to the caller never repeat, within a run or
/// across runs; tags and branch suffixes (after `z9hG4bK`) are at least 16 characters, and
/// Call-IDs at least 16 before any `@`.
#[test]
fn identifiers_are_unique_across_processes_and_restarts() {
    const TOTAL: u64 = 10_000;
    let labs = [Lab::new(), Lab::new()].map(|mut lab| {
        // A block of its own with 1000 media ports (250 pairs; released ports rest before
        // they are taken again) for 16 calls at a time.
        lab.ports = Ports {
            base: free_ports(1200),
        };
        lab.media = (lab.ports.base + 200, lab.ports.base + 1199);
        lab
    });
    let limits = "max_calls = 100\n";
    let (gw_a, gw_b) = std::thread::scope(|s| {
        let a = s.spawn(|| labs[0].start(limits));
        let b = s.spawn(|| labs[1].start(limits));
        (a.join().unwrap(), b.join().unwrap())
    });
    let dump = Dump::new(&gw_a);
    dump.gateway("gateway B", &gw_b);
    let (run_a, run_b) = std::thread::scope(|s| {
        let a = s.spawn(|| id_run(&labs[0], TOTAL));
        let b = s.spawn(|| id_run(&labs[1], TOTAL));
        (a.join().unwrap(), b.join().unwrap())
    });
    drop(gw_a);
    let gw_a2 = labs[0].start_in("gw-restarted", limits, &[]);
    dump.gateway("gateway A restarted", &gw_a2);
    let run_a2 = id_run(&labs[0], TOTAL);

    let mut c = Checks::new("unique-ids");
    let runs = [("A", &run_a), ("B", &run_b), ("A restarted", &run_a2)];
    for (name, r) in &runs {
        eprintln!(
            "run {name}: {} INVITEs sent in {:.1} s, finals {:?}, {} unanswered; {} outbound \
             INVITEs, {} To tags; first outbound {:?}, first To tag {:?}",
            r.sent,
            r.secs,
            r.statuses,
            r.unanswered,
            r.invites.len(),
            r.to_tags.len(),
            r.invites.first(),
            r.to_tags.first()
        );
        c.check(
            r.statuses.get(&486).copied() == Some(TOTAL) && r.invites.len() as u64 == TOTAL,
            format!(
                "run {name}: {TOTAL} INVITEs forwarded and answered 486 (503s retried): finals \
                 {:?}, {} unanswered, {} distinct outbound INVITEs",
                r.statuses,
                r.unanswered,
                r.invites.len()
            ),
        );
    }
    // Every value with the runs it came from.
    type Get = fn(&IdRun) -> Vec<String>;
    let kinds: [(&str, Get); 4] = [
        ("Call-ID", |r| {
            r.invites.iter().map(|i| i.0.clone()).collect()
        }),
        ("From tag", |r| {
            r.invites.iter().map(|i| i.1.clone()).collect()
        }),
        ("Via branch", |r| {
            r.invites.iter().map(|i| i.2.clone()).collect()
        }),
        ("To tag", |r| r.to_tags.clone()),
    ];
    for (kind, get) in &kinds {
        let mut where_: HashMap<String, Vec<&str>> = HashMap::new();
        let mut short = Vec::new();
        for (name, r) in &runs {
            for v in get(r) {
                let random = match *kind {
                    "Call-ID" => v.split('@').next().unwrap_or_default().to_owned(),
                    "Via branch" => v.strip_prefix("z9hG4bK").unwrap_or(&v).to_owned(),
                    _ => v.clone(),
                };
                if random.len() < 16 && short.len() < 5 {
                    short.push(v.clone());
                }
                where_.entry(v).or_default().push(name);
            }
        }
        let total: usize = runs.iter().map(|(_, r)| get(r).len()).sum();
        let repeats: Vec<(&String, &Vec<&str>)> =
            where_.iter().filter(|(_, runs)| runs.len() > 1).collect();
        let across = repeats
            .iter()
            .filter(|(_, r)| r.iter().collect::<HashSet<_>>().len() > 1)
            .count();
        let mut examples: Vec<String> = repeats
            .iter()
            .take(3)
            .map(|(v, r)| format!("{v} in {r:?}"))
            .collect();
        examples.sort();
        c.check(
            repeats.is_empty(),
            format!(
                "{kind} values never repeat: {total} values, {} distinct, {} repeated ({across} across \
                 processes), e.g. {examples:?}",
                where_.len(),
                repeats.len()
            ),
        );
        let long_enough = short.is_empty();
        c.check(
            long_enough,
            format!(
                "{kind} values carry at least 16 characters of randomness{}: too short e.g. {short:?}",
                match *kind {
                    "Call-ID" => " before the @",
                    "Via branch" => " after z9hG4bK",
                    _ => "",
                }
            ),
        );
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 12: one call record per call
// ---------------------------------------------------------------------------------------------

/// Test 12: With `--log-json`, from a plain caller (TCP, 127.0.0.1): an answered call to echo,
/// with RTP, ended by the caller's BYE after more than a second; an INVITE to a number with
/// no route (404); a call to `far` answered 486. Each ends with exactly one GW1220 record
/// carrying every field, with `result` answered / refused / failed, the final status, who
/// ended it, and `mediagate_calls_total{result}` counts each once.
#[test]
fn every_call_ends_with_one_call_record() {
    let lab = Lab::new();
    let gw = lab.start_with("", &["--log-json"]);
    let dump = Dump::new(&gw);
    let mut c = Checks::new("call-records");
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_1212, 1);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    uas.set_invite_status(486, "Busy Here");
    dump.sip("far (UAS)", &uas.transcript);
    let mut caller = lab.plain();
    dump.sip("caller", &caller.transcript);

    // Answered, with media, ended by the caller.
    let mut media = lab.media("127.0.0.1", 2, 0, 0xCA11_1212, 1);
    let ok = caller.invite("7000", &audio_sdp(media.addr, 1, None, "sendrecv"));
    assert_eq!(ok.status(), 200, "call to echo: {}", ok.text());
    let answered_id = caller.call_id().to_owned();
    media.set_peer(
        sdp_of(&ok)
            .rtp_address(0)
            .expect("media address in the 200"),
    );
    media.send_run(1..61, Duration::from_millis(20));
    let echoed = media.wait_markers(0, 1..61, 55, Duration::from_secs(2));
    eprintln!("echo returned {echoed}/60 ({})", media.summary());
    let bye = caller.bye();
    assert_eq!(bye.status(), 200, "BYE: {}", bye.text());

    // Refused: no route.
    caller.new_call();
    let no_route = caller.invite("999", &audio_sdp(media.addr, 1, None, "sendrecv"));
    let refused_id = caller.call_id().to_owned();
    c.check(
        no_route.status() == 404,
        format!("INVITE to 999 (no route): 404, got {}", no_route.first),
    );

    // Failed: far answers 486.
    caller.new_call();
    let busy = caller.invite("6000", &audio_sdp(media.addr, 1, None, "sendrecv"));
    let failed_id = caller.call_id().to_owned();
    c.check(
        busy.status() == 486,
        format!("INVITE to far: 486, got {}", busy.first),
    );

    let ids = [&answered_id, &refused_id, &failed_id];
    let all = wait_gw1220(&gw, 5.0, 3, |e| {
        ids.iter().any(|id| fstr(e, "a_call_id") == **id)
    });
    let of = |id: &str| -> Vec<serde_json::Value> {
        all.iter()
            .filter(|e| fstr(e, "a_call_id") == id)
            .cloned()
            .collect()
    };
    let expect_one = |c: &mut Checks, what: &str, id: &str| -> Option<serde_json::Value> {
        let found = of(id);
        c.check(
            found.len() == 1,
            format!(
                "{what} call (Call-ID {id}): exactly one GW1220, got {} (all GW1220: {:?})",
                found.len(),
                events(&gw.log(), "GW1220")
                    .iter()
                    .map(gw1220_text)
                    .collect::<Vec<_>>()
            ),
        );
        let e = found.into_iter().next()?;
        let missing = missing_fields(&e);
        c.check(
            missing.is_empty(),
            format!(
                "{what} GW1220 carries every field: missing {missing:?} in {}",
                gw1220_text(&e)
            ),
        );
        Some(e)
    };

    if let Some(e) = expect_one(&mut c, "answered", &answered_id) {
        c.check(
            fstr(&e, "result") == "answered"
                && fnum(&e, "status") == Some(200.0)
                && fstr(&e, "ended_by") == "caller"
                && !fstr(&e, "a_call_id").is_empty()
                // The echo leg has no SIP dialog: its b_call_id is present and empty.
                && fstr(&e, "b_call_id").is_empty()
                && fstr(&e, "to_peer") == "echo"
                && fstr(&e, "dial_plan") == "plain"
                && fstr(&e, "mode") == "Unsecured"
                && fnum(&e, "duration_secs").is_some_and(|d| d >= 1.0)
                && fnum(&e, "a_packets").is_some_and(|p| p > 0.0),
            format!(
                "answered: result answered, status 200, ended_by caller, a_call_id, an empty \
                 b_call_id and to_peer echo, plain/Unsecured, duration_secs >= 1, a_packets > 0: {}",
                gw1220_text(&e)
            ),
        );
    }
    if let Some(e) = expect_one(&mut c, "refused", &refused_id) {
        c.check(
            fstr(&e, "result") == "refused"
                && fnum(&e, "status") == Some(404.0)
                && !["", "<missing>"].contains(&fstr(&e, "reason").as_str())
                && ["", "<missing>"].contains(&fstr(&e, "b_call_id").as_str()),
            format!(
                "refused: result refused, status 404, a reason, no b_call_id: {}",
                gw1220_text(&e)
            ),
        );
    }
    if let Some(e) = expect_one(&mut c, "failed", &failed_id) {
        c.check(
            fstr(&e, "result") == "failed"
                && fnum(&e, "status") == Some(486.0)
                && !["", "<missing>", "echo"].contains(&fstr(&e, "to_peer").as_str())
                && !["", "<missing>"].contains(&fstr(&e, "b_call_id").as_str()),
            format!(
                "failed: result failed, status 486, a peer as to_peer with its own Call-ID: {}",
                gw1220_text(&e)
            ),
        );
    }
    let m = gw.metrics();
    for result in ["answered", "refused", "failed"] {
        let n = msum(
            &m,
            "mediagate_calls_total",
            &[
                ("dial_plan", "plain"),
                ("mode", "Unsecured"),
                ("result", result),
            ],
        );
        c.check(
            n == 1.0,
            format!(
                "mediagate_calls_total{{dial_plan=\"plain\",mode=\"Unsecured\",result=\"{result}\"}} \
                 == 1, got {n}: {}",
                metric_lines(&m, "mediagate_calls_total")
            ),
        );
    }
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 13: no Debug renderings
// ---------------------------------------------------------------------------------------------

/// Test 13: After a mixed workload — a TLS client whose certificate names no peer, a stranger
/// over TCP, dave over TCP (wrong transport), requests missing a header over UDP and TCP, an
/// echo call with media, and a call refused for want of a route — neither the gateway's
/// whole log nor any response received contains `Some(`, `{ `, `["` or `Remote {`.
#[test]
fn no_debug_renderings_in_logs_or_responses() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut c = Checks::new("no-debug");
    let to = lab.sip();
    let mut responses: Vec<(String, SipMsg)> = Vec::new();

    // A TLS client with a valid certificate that names no peer.
    match lab.try_tls_phone("stranger", "stranger.test", "127.0.0.9") {
        Ok(mut p) => {
            dump.sip("stranger (TLS)", &p.transcript);
            if let Some(r) = p.options("gateway", Duration::from_secs(3)) {
                responses.push(("TLS stranger OPTIONS".into(), r));
            }
        }
        Err(e) => panic!("stranger.test's TLS handshake must succeed: {e}"),
    }
    // A stranger over TCP, and dave over TCP.
    for (who, from) in [("stranger-tcp", "127.0.0.9"), ("dave-tcp", "127.0.0.4")] {
        let mut p = Phone::tcp(who, ip(from), to);
        if let Some(r) = p.options("gateway", Duration::from_secs(3)) {
            responses.push((format!("{who} OPTIONS"), r));
        }
        // A new connection: the gateway may close one whose requests were all refused.
        let mut p = Phone::tcp(who, ip(from), to);
        let r = p.invite("7000", &plain_offer(from, 4000));
        responses.push((format!("{who} INVITE"), r));
    }
    // Missing headers over UDP (dave) and TCP (127.0.0.1).
    let sock = UdpSocket::bind(sa("127.0.0.4", lab.ports.peer_sip(4))).unwrap();
    let mut tcp = RawTcp::connect("127.0.0.1", to);
    for header in MANDATORY {
        let branch = uniq();
        let via = sock.local_addr().unwrap();
        let req = request(
            "OPTIONS",
            "gateway",
            to,
            "UDP",
            via,
            &branch,
            &[header],
            &[],
            "",
        );
        sock.send_to(req.as_bytes(), to).unwrap();
        let mut seen = Vec::new();
        udp_wait_final(&sock, &branch, Duration::from_millis(700), &mut seen);
        responses.extend(
            seen.into_iter()
                .map(|m| (format!("UDP without {header}"), m)),
        );
        if tcp.closed {
            tcp = RawTcp::connect("127.0.0.1", to);
        }
        let branch = uniq();
        let req = request(
            "INVITE",
            "7000",
            to,
            "TCP",
            tcp.local(),
            &branch,
            &[header],
            &[],
            &plain_offer("127.0.0.1", 4000),
        );
        tcp.send(req.as_bytes());
        tcp.wait_final(&branch, Duration::from_millis(700));
    }
    responses.extend(
        tcp.received
            .iter()
            .cloned()
            .map(|m| ("TCP without a header".to_owned(), m)),
    );
    // An echo call with media, and a call with no route.
    let mut caller = lab.plain();
    dump.sip("caller", &caller.transcript);
    let mut media = lab.media("127.0.0.1", 2, 0, 0xCA11_1313, 1);
    let ok = caller.invite("7000", &audio_sdp(media.addr, 1, None, "sendrecv"));
    if ok.status() == 200 {
        media.set_peer(sdp_of(&ok).rtp_address(0).expect("media address"));
        media.send_run(1..26, Duration::from_millis(20));
        responses.push(("echo call BYE".into(), caller.bye()));
    }
    responses.push(("echo call INVITE".into(), ok));
    caller.new_call();
    responses.push((
        "no-route INVITE".into(),
        caller.invite("999", &audio_sdp(media.addr, 1, None, "sendrecv")),
    ));
    std::thread::sleep(Duration::from_millis(500));

    let log = gw.log();
    let offending: Vec<&str> = log
        .lines()
        .filter(|l| !debug_renderings(l, &DEBUG_RENDERINGS).is_empty())
        .collect();
    c.check(
        offending.is_empty(),
        format!(
            "no log line renders Debug ({} of {} lines do), e.g.:\n      {}",
            offending.len(),
            log.lines().count(),
            offending
                .iter()
                .take(8)
                .copied()
                .collect::<Vec<_>>()
                .join("\n      ")
        ),
    );
    let bad: Vec<String> = responses
        .iter()
        .filter(|(_, r)| !debug_renderings(&r.text(), &DEBUG_RENDERINGS).is_empty())
        .map(|(what, r)| format!("{what}: {}", r.first))
        .collect();
    c.check(
        bad.is_empty(),
        format!(
            "no response renders Debug ({} of {} do): {bad:?}",
            bad.len(),
            responses.len()
        ),
    );
    c.finish();
}

// ---------------------------------------------------------------------------------------------
// 14: failed TLS handshakes
// ---------------------------------------------------------------------------------------------

/// Test 14: 300 connections from one stranger address to the TLS port whose handshakes fail,
/// half by sending bytes that are not TLS and half by closing after the first octets of a
/// record: every one is counted in `mediagate_tls_handshake_refusals_total`, and the log gets
/// at most a few GW1202 lines (one per 10 s per source, with `left_out`), not 300.
#[test]
fn failed_tls_handshakes_are_counted_not_logged() {
    const N: usize = 300;
    let lab = Lab::new();
    let gw = lab.start_with("", &["--log-json"]);
    let _dump = Dump::new(&gw);
    let mut c = Checks::new("tls-failures");
    let refusals = |m: &str| msum(m, "mediagate_tls_handshake_refusals_total", &[]);
    let before = refusals(&gw.metrics());
    let lines_before = events(&gw.log(), "GW1202").len();
    // In rounds of 4, within the strangers' quota of 8 per address.
    const ROUND: usize = 4;
    let mut sent = 0;
    while sent < N {
        let sources = vec![ip("127.0.0.9"); ROUND];
        for conn in connect_many(&sources, lab.tls()) {
            let mut s = conn.expect("TCP connect to the TLS port");
            let bytes: &[u8] = if sent % 2 == 0 {
                b"OPTIONS sip:gateway SIP/2.0\r\n\r\n"
            } else {
                // A handshake record header announcing 512 octets, then the client goes away.
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
            };
            let _ = s.write_all(bytes);
            drop(s);
            sent += 1;
        }
        wait_metrics(&gw, 5.0, |m| refusals(m) - before >= sent as f64);
    }
    let m = wait_metrics(&gw, 10.0, |m| refusals(m) - before >= N as f64);
    let counted = refusals(&m) - before;
    c.check(
        counted == N as f64,
        format!(
            "every failed handshake counted: +{counted} of {N}: {}",
            metric_lines(&m, "mediagate_tls_handshake_refusals_total")
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = gw.log();
    let lines = events(&log, "GW1202").len() - lines_before;
    c.check(
        (1..=3).contains(&lines),
        format!("1 to 3 GW1202 lines for {N} failed handshakes from one source, got {lines}"),
    );
    c.finish();
}
