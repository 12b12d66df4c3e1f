//! Media-path hardening, against the real binary (`mediagate run --config FILE`).
//!
//! Each test drives the gateway with the scripted phone of `tests/phone` (SIP over TCP or
//! mutual TLS, RTP/SRTP with recognisable payload markers) or with baresip, and checks what
//! reaches whom:
//!
//! - a stranger's RTP on a plain leg before the signalled peer sends (far leg, caller leg);
//! - replayed SRTP after a same-key re-INVITE across a ROC rollover;
//! - hold/resume with an SRTP sender restarted below and above its old sequence numbers;
//!   an SSRC change with a lower sequence number through the echo endpoint; a plain far end
//!   that restarts its sequence numbers;
//! - kill -9 of either side of a call (baresip): the media timeout ends the call with BYE;
//! - SDP rules: several m= lines, port 0, multicast/broadcast c=, SAVP into non-Secured plans,
//!   OSRTP (RFC 8643), the AES-256 suite spelling;
//! - the echo endpoint's hold answer, hold against the media timeout, a STUN burst.
//!
//! Everything runs on 127.0.0.0/8 with ports from one free block per test. A failing test
//! prints the gateway's log, its metrics and the SIP transcripts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods // the tests are drivers: they read the clock
)]

mod e2e;
mod phone;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::*;
use mediagate_media::sdes::CryptoAttribute;
use mediagate_media::srtp::SrtpProfile;
use mediagate_sip_proto::sdp::Sdp;
use phone::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(ip_: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(ip_), port)
}

/// The sum of every sample of a Prometheus family (`name` or `name{...}`).
fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            l.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The seed of a test's random choices: `MEDIA_HARDENING_SEED` to replay a run, else the
/// clock. Printed by the tests that use it.
fn seed() -> u64 {
    std::env::var("MEDIA_HARDENING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Rng::time_seed)
}

/// Relay packets sent plus dropped: moves whenever the relay handled a packet.
fn relay_seen(m: &str) -> f64 {
    metric_sum(m, "mediagate_relay_packets_total") + metric_sum(m, "mediagate_relay_drops_total")
}

/// Polls the metrics until `f` holds (at most `secs`); returns the last metrics page.
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

/// The relay's metric lines and the call gauges (for messages).
fn media_metrics(m: &str) -> String {
    m.lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("relay") || l.contains("calls_active") || l.contains("media_"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What to print when the test fails: the gateway's log, its metrics, SIP transcripts and
/// peer logs, printed by a panic hook at the moment of the panic (before unwinding drops,
/// and so stops, the peers).
struct DumpContext {
    log: PathBuf,
    admin: u16,
    sip: Vec<(String, Transcript)>,
    files: Vec<PathBuf>,
}

impl DumpContext {
    fn print(&self) {
        let metrics = http_get(self.admin, "/metrics")
            .map(|x| x.1)
            .unwrap_or_default();
        eprintln!(
            "===== gateway log =====\n{}\n===== metrics =====\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            metrics
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        );
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
                log: gw.proc.log.clone(),
                admin: gw.ports.admin(),
                sip: Vec::new(),
                files: Vec::new(),
            });
        });
        Dump
    }
    fn with(&self, f: impl FnOnce(&mut DumpContext)) {
        DUMP.with(|d| {
            if let Some(d) = d.borrow_mut().as_mut() {
                f(d);
            }
        });
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

/// The lab: a gateway, its PKI and the peers' certificates (as in `e2e_calls.rs`), plus the
/// plain TCP peer `far` (127.0.0.1, peer port 5) that the scripted UAS plays.
struct Lab {
    dir: tempfile::TempDir,
    pki: LabPki,
    ports: Ports,
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
        Lab { dir, pki, ports }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The e2e lab configuration with `far` in `plain` and the route `6…` → far in every
    /// plan; `media_extra` is appended to `[media]`.
    fn config(&self, media_extra: &str) -> String {
        let p = self.ports;
        let (m0, m1) = p.media();
        let routes = r#"routes = [ { prefix = "7", target = "echo" }, { prefix = "5", target = "sipp" }, { prefix = "6", target = "far" }, { prefix = "bob", target = "bob" } ]"#;
        format!(
            r#"# media hardening lab
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
{media_extra}
[limits]
max_calls = 20
shutdown_grace_secs = 3

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
        )
    }

    fn start(&self, media_extra: &str) -> Gateway {
        Gateway::start(
            &self.path().join("gw"),
            self.ports,
            &self.config(media_extra),
        )
    }

    /// A scripted phone over mutual TLS with the certificate of `name`.test from `from`.
    fn tls_phone(&self, name: &str, from: &str) -> Phone {
        Phone::tls(
            name,
            ip(from),
            sa("127.0.0.1", self.ports.tls()),
            &self.pki.leaf(&format!("{name}.test")),
            &self.pki.pki.root_pem,
            "gateway.test",
        )
    }

    /// alice (Secured plan) over TLS from 127.0.0.2.
    fn alice(&self) -> Phone {
        self.tls_phone("alice", "127.0.0.2")
    }

    /// A plain caller over TCP from 127.0.0.1 (admitted by address into `plain`).
    fn plain(&self) -> Phone {
        Phone::tcp("plain", ip("127.0.0.1"), sa("127.0.0.1", self.ports.sip()))
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

fn expect_status(resp: &SipMsg, code: u16, what: &str) {
    assert_eq!(
        resp.status(),
        code,
        "{what}: expected {code}, got:\n{}",
        resp.text()
    );
}

/// The SDP of a message (panics with the message otherwise).
fn sdp_of(msg: &SipMsg) -> Sdp {
    msg.sdp()
        .unwrap_or_else(|| panic!("no SDP in:\n{}", msg.text()))
}

/// A Secured call from `phone`: offers `key` from `media`, expects 200, points `media` at
/// the gateway and sets its keys (ours to send, the gateway's to receive).
fn secured_call(
    phone: &mut Phone,
    number: &str,
    media: &mut Media,
    key: &CryptoAttribute,
) -> SipMsg {
    let ok = phone.invite(number, &audio_sdp(media.addr, 1, Some(key), "sendrecv"));
    expect_status(&ok, 200, "INVITE");
    let sdp = sdp_of(&ok);
    media.set_peer(
        sdp.rtp_address(0)
            .expect("gateway media address in the 200"),
    );
    media.set_tx_key(Some(&key.key));
    let gw_key = crypto_of(&sdp, 0).unwrap_or_else(|| panic!("no a=crypto in:\n{}", ok.text()));
    media.set_rx_key(Some(&gw_key.key));
    ok
}

/// A re-INVITE from a Secured phone with `key` and direction `dir`; expects 200 and
/// re-reads the gateway's key from it.
fn secured_reinvite(
    phone: &mut Phone,
    media: &Media,
    key: &CryptoAttribute,
    version: u32,
    dir: &str,
) -> SipMsg {
    let ok = phone.reinvite(&audio_sdp(media.addr, version, Some(key), dir));
    expect_status(&ok, 200, &format!("re-INVITE {dir}"));
    let sdp = sdp_of(&ok);
    if let Some(k) = crypto_of(&sdp, 0) {
        media.set_rx_key(Some(&k.key));
    }
    ok
}

const WAIT: Duration = Duration::from_secs(2);

/// (a) A stranger sends to the far leg before the far end does: it must not capture the
/// leg.
#[test]
fn stranger_first_on_the_far_plain_leg_gets_nothing() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_0001, 1000);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_0001, 5000);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "6000", &mut caller, &key);

    let far_invite = uas.invites().into_iter().next().expect("INVITE at far");
    let gw_far = sdp_of(&far_invite).rtp_address(0).expect("far-leg address");
    far_media.set_peer(gw_far);

    // The stranger first, before anyone else sends.
    let mut stranger = Media::bind(sa("127.0.0.9", 0), 0x5757_0001, 1);
    stranger.set_peer(gw_far);
    let before = relay_seen(&gw.metrics());
    stranger.send_run(900_000..900_020, Duration::from_millis(1));
    wait_metrics(&gw, 3.0, |m| relay_seen(m) >= before + 20.0);

    caller.send_run(1..101, Duration::from_millis(2));
    let at_far = far_media.wait_markers(0, 1..101, 100, WAIT);
    far_media.send_run(2001..2101, Duration::from_millis(2));
    let at_caller = caller.wait_markers(0, 2001..2101, 100, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    let m = gw.metrics();
    let unsignalled = metric(
        &m,
        "mediagate_relay_drops_total{reason=\"unsignalled_source\"}",
    );
    let seen = format!(
        "stranger received {} packets ({} of the caller's markers); far received {at_far}/100 of \
         the caller's; caller received {at_caller}/100 of far's and {} of the stranger's; \
         unsignalled_source drops {unsignalled}\n  stranger: {}\n  far: {}\n  caller: {}\n{}",
        stranger.count(),
        stranger.markers(0, 1..101),
        caller.markers(0, 900_000..900_020),
        stranger.summary(),
        far_media.summary(),
        caller.summary(),
        media_metrics(&m)
    );
    eprintln!("{seen}");
    assert_eq!(stranger.count(), 0, "the stranger got media: {seen}");
    assert!(at_far >= 98, "caller → far: {seen}");
    assert!(at_caller >= 98, "far → caller: {seen}");
    assert!(unsignalled >= 20.0, "{seen}");
}

/// (b) A stranger sends to the caller's leg of an Unsecured call before the caller does.
#[test]
fn stranger_first_on_the_callers_plain_leg_gets_nothing() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_0002, 1000);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut caller = lab.media("127.0.0.1", 2, 0, 0xCA11_0002, 7000);
    let mut plain = lab.plain();
    dump.sip("plain caller", &plain.transcript);
    let ok = plain.invite("6000", &audio_sdp(caller.addr, 1, None, "sendrecv"));
    expect_status(&ok, 200, "INVITE");
    let gw_a = sdp_of(&ok).rtp_address(0).expect("caller-leg address");
    caller.set_peer(gw_a);
    let far_invite = uas.invites().into_iter().next().expect("INVITE at far");
    far_media.set_peer(sdp_of(&far_invite).rtp_address(0).expect("far-leg address"));

    let mut stranger = Media::bind(sa("127.0.0.9", 0), 0x5757_0002, 1);
    stranger.set_peer(gw_a);
    let before = relay_seen(&gw.metrics());
    stranger.send_run(900_000..900_020, Duration::from_millis(1));
    wait_metrics(&gw, 3.0, |m| relay_seen(m) >= before + 20.0);

    far_media.send_run(2001..2101, Duration::from_millis(2));
    let at_caller = caller.wait_markers(0, 2001..2101, 100, WAIT);
    caller.send_run(1..101, Duration::from_millis(2));
    let at_far = far_media.wait_markers(0, 1..101, 100, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    let m = gw.metrics();
    let seen = format!(
        "stranger received {} packets ({} of far's markers); caller received {at_caller}/100 of \
         far's; far received {at_far}/100 of the caller's and {} of the stranger's\n  \
         stranger: {}\n  far: {}\n  caller: {}\n{}",
        stranger.count(),
        stranger.markers(0, 2001..2101),
        far_media.markers(0, 900_000..900_020),
        stranger.summary(),
        far_media.summary(),
        caller.summary(),
        media_metrics(&m)
    );
    eprintln!("{seen}");
    assert_eq!(stranger.count(), 0, "the stranger got media: {seen}");
    assert!(at_caller >= 98, "far → caller: {seen}");
    assert!(at_far >= 98, "caller → far: {seen}");
}

/// (c) A same-key re-INVITE after the caller's SRTP index rolled over (ROC 0 → 1) must not
/// let old packets (ROC 0) be replayed, and the genuine stream goes on.
#[test]
fn replay_after_same_key_reinvite_across_a_roc_rollover_is_refused() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_0003, 1000);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_0003, 0);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "6000", &mut caller, &key);

    // Seq 0..=65535 (ROC 0), then ROC 1 seq 0..=300; the marker is the packet index.
    let total: u32 = 65_536 + 301;
    let mut stored = Vec::new();
    let started = Instant::now();
    for i in 0..total {
        let p = caller.send(i);
        if (1000..1050).contains(&i) {
            stored.push(p);
        }
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    far_media.wait_quiet(Duration::from_millis(300), Duration::from_secs(10));
    let phase1 = far_media.count();
    let last_arrived = far_media.markers(0, total - 1..total) == 1;
    eprintln!(
        "phase 1: sent {total} packets in {:?}; far received {phase1} (last one: {last_arrived})",
        started.elapsed()
    );

    // Same-key re-INVITE: identical a=crypto line, same ports, o= version 2.
    secured_reinvite(&mut alice, &caller, &key, 2, "sendrecv");
    let after = far_media.count();
    for p in &stored {
        caller.send_raw(p);
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(500));
    // The genuine stream goes on: ROC 1, seq 301..=450.
    caller.send_run(total..total + 150, Duration::from_millis(2));
    let genuine = far_media.wait_markers(after, total..total + 150, 150, WAIT);
    let replays = far_media.markers(after, 1000..1050);
    let m = gw.metrics();
    let seen = format!(
        "after the re-INVITE far received {replays} of the 50 replayed packets and {genuine}/150 \
         genuine ones (phase 1: {phase1} of {total} arrived, the last one: {last_arrived})\n  \
         far: {}\n{}",
        far_media.summary(),
        media_metrics(&m)
    );
    eprintln!("{seen}");
    assert_eq!(replays, 0, "replayed SRTP was forwarded: {seen}");
    assert_eq!(genuine, 150, "{seen}");
}

/// (d) Hold (sendonly) and resume with the same key, then the caller restarts its SRTP
/// sender (fresh context, same key and SSRC, ROC 0) at a random sequence number below or
/// above everything sent before: the echo must come back every time.
#[test]
fn hold_resume_with_a_restarted_srtp_stream_keeps_the_echo() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    eprintln!("seed {seed} (MEDIA_HARDENING_SEED)");
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let ssrc = rng.next_u64() as u32;
    let first = rng.range(10_000..20_000) as u16;
    let mut caller = lab.media("127.0.0.2", 1, 0, ssrc, first);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    caller.send_run(0..100, Duration::from_millis(5));
    let initial = caller.wait_markers(0, 0..100, 100, WAIT);
    assert!(
        initial >= 99,
        "echo before any hold: {initial}/100\n{}",
        caller.summary()
    );

    let mut high = u64::from(first) + 99;
    let mut below = vec![true; 10];
    below.extend([false; 10]);
    for i in (1..below.len()).rev() {
        below.swap(i, rng.range(0..i as u64 + 1) as usize);
    }
    let mut version = 1;
    let mut results = Vec::new();
    for (t, &down) in below.iter().enumerate() {
        version += 1;
        secured_reinvite(&mut alice, &caller, &key, version, "sendonly");
        version += 1;
        secured_reinvite(&mut alice, &caller, &key, version, "sendrecv");
        let start = if down {
            rng.range(high - 9_000..high - 200)
        } else {
            rng.range(high + 1..high + 3_000)
        };
        caller.restart(ssrc, start as u16);
        let base = (t as u32 + 1) * 1000;
        caller.send_run(base..base + 100, Duration::from_millis(5));
        let got = caller.wait_markers(0, base..base + 100, 100, Duration::from_secs(1));
        eprintln!(
            "try {t:>2}: restart at seq {start:>5} ({} the high-water mark {high}): {got}/100 echoed",
            if down { "below" } else { "above" }
        );
        results.push((t, down, start, high, got));
        high = high.max(start + 99);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.4 < 99)
        .map(|(t, down, start, high, got)| {
            format!(
                "try {t}: restart at {start} ({} {high}) → {got}/100",
                if *down { "below" } else { "above" }
            )
        })
        .collect();
    let m = gw.metrics();
    assert!(
        failed.is_empty(),
        "seed {seed}: {} of 20 restarts lost the echo:\n{}\n  caller: {}\n{}",
        failed.len(),
        failed.join("\n"),
        caller.summary(),
        media_metrics(&m)
    );
}

/// (e) The caller changes SSRC and starts again at a lower sequence number: the echo goes
/// on.
#[test]
fn ssrc_change_with_a_lower_seq_through_the_echo() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0x0000_0A0A, 30_000);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    caller.send_run(1..101, Duration::from_millis(2));
    let first = caller.wait_markers(0, 1..101, 100, WAIT);
    caller.ssrc = 0x0000_0B0B;
    caller.seq = 100;
    caller.send_run(1001..1101, Duration::from_millis(2));
    let second = caller.wait_markers(0, 1001..1101, 100, WAIT);
    let m = gw.metrics();
    let seen = format!(
        "SSRC X from seq 30000: {first}/100 echoed; SSRC Y from seq 100: {second}/100 echoed\n  \
         caller: {}\n{}",
        caller.summary(),
        media_metrics(&m)
    );
    eprintln!("{seen}");
    assert!(first >= 99, "{seen}");
    assert!(second >= 99, "{seen}");
}

/// (e) The plain far end restarts its sequence numbers (same SSRC): 100 packets from
/// `first_seq`, then 100 from seq 10; the Secured caller gets the second run.
fn plain_far_end_restart(first_seq: u16) {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut far_media = lab.media("127.0.0.1", 5, 0, 0x0000_0C0C, first_seq);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_0005, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "6000", &mut caller, &key);
    let far_invite = uas.invites().into_iter().next().expect("INVITE at far");
    far_media.set_peer(sdp_of(&far_invite).rtp_address(0).expect("far-leg address"));
    // The caller speaks first (symmetric RTP: the far leg is then surely set up).
    caller.send_run(1..21, Duration::from_millis(2));
    far_media.wait_markers(0, 1..21, 20, WAIT);
    far_media.send_run(2001..2101, Duration::from_millis(2));
    let first = caller.wait_markers(0, 2001..2101, 100, WAIT);
    far_media.seq = 10;
    far_media.send_run(3001..3101, Duration::from_millis(2));
    let second = caller.wait_markers(0, 3001..3101, 100, WAIT);
    let m = gw.metrics();
    let seen = format!(
        "far SSRC Z from seq {first_seq}: caller got {first}/100; then from seq 10: {second}/100\n  \
         caller: {}\n{}",
        caller.summary(),
        media_metrics(&m)
    );
    eprintln!("{seen}");
    assert!(first >= 99, "{seen}");
    assert!(second >= 99, "{seen}");
}

/// (e) As specified: 40 000 → 10 (a jump back of more than half the sequence space).
#[test]
fn plain_far_end_restarts_its_sequence_from_40000_to_10() {
    plain_far_end_restart(40_000);
}

/// (e) The same with a jump back of less than half the sequence space: 20 000 → 10.
#[test]
fn plain_far_end_restarts_its_sequence_from_20000_to_10() {
    plain_far_end_restart(20_000);
}

/// A baresip caller with the certificate of `name`.test dialling `number` over TLS.
fn baresip_caller(lab: &Lab, name: &str, from: &str, slot: u16, number: &str) -> Baresip {
    let leaf = lab.pki.leaf(&format!("{name}.test"));
    Baresip::start(
        lab.path(),
        &BaresipSpec {
            name,
            ip: from,
            sip_port: lab.ports.peer_sip(slot),
            rtp_ports: lab.ports.peer_media(slot),
            cert: Some(&leaf),
            ca_pem: Some(&lab.pki.pki.root_pem),
            account: ";regint=0;mediaenc=srtp-mand;audio_codecs=pcmu".into(),
            dial: Some(format!(
                "sip:{number}@127.0.0.1:{};transport=tls",
                lab.ports.tls()
            )),
            quit_after: 60,
        },
    )
}

/// The requests `method` that a baresip received from `from` (`TLS IP:PORT -> `), from its
/// SIP trace (`-s`): each as its text up to the blank line.
fn baresip_received(log: &str, method: &str, from: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let start = format!("{method} sip:");
    (1..lines.len())
        .filter(|&i| lines[i].starts_with(&start) && lines[i - 1].contains(from))
        .map(|i| {
            lines[i..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The call is gone from the gateway: no call, no relay pair, the timeout counted.
fn assert_call_torn_down(gw: &Gateway, deadline: Instant, what: &str) {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let m = wait_metrics(gw, left, |m| {
        metric(m, "mediagate_calls_active") == 0.0 && metric(m, "mediagate_relay_pairs") == 0.0
    });
    let seen = media_metrics(&m);
    assert_eq!(metric(&m, "mediagate_calls_active"), 0.0, "{what}: {seen}");
    assert_eq!(metric(&m, "mediagate_relay_pairs"), 0.0, "{what}: {seen}");
    assert!(
        metric_sum(&m, "mediagate_media_timeouts_total") >= 1.0,
        "{what}: media timeout not counted: {seen}"
    );
    assert!(
        gw.log().contains("GW3003"),
        "{what}: no GW3003 in the gateway log"
    );
}

const TIMEOUT_SECS: u64 = 5;

/// (f) kill -9 of a baresip caller (TLS, SRTP) talking to a far end that echoes: within
/// the media timeout + 5 s the far end gets a BYE with a Reason and the call is gone.
#[test]
fn kill_9_of_the_caller_ends_the_call_on_media_timeout() {
    let lab = Lab::new();
    let gw = lab.start(&format!("timeout_secs = {TIMEOUT_SECS}\n"));
    let dump = Dump::new(&gw);
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_0006, 1);
    far_media.set_echo(true);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let alice = baresip_caller(&lab, "alice", "127.0.0.2", 1, "6000");
    dump.file(&alice.proc.log);
    wait_until(15, "media from alice at the far end", || {
        far_media.count() >= 50
    });
    alice.proc.signal("KILL");
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(TIMEOUT_SECS + 5);
    let bye = uas.wait_request("BYE", 1, deadline.saturating_duration_since(Instant::now()));
    let bye = bye.unwrap_or_else(|| {
        panic!(
            "no BYE at the far end within {} s of kill -9 of the caller\n  far: {}",
            TIMEOUT_SECS + 5,
            far_media.summary()
        )
    });
    eprintln!("BYE at the far end {:?} after the kill", killed.elapsed());
    assert!(
        bye.header("Reason").is_some(),
        "the BYE carries no Reason:\n{}",
        bye.text()
    );
    assert_call_torn_down(&gw, deadline, "after kill -9 of the caller");
}

/// (f) kill -9 of a baresip callee (`bob`, Secured) while the caller keeps sending: the
/// caller gets a BYE within the media timeout + 5 s and the call is gone.
#[test]
fn kill_9_of_the_callee_ends_the_call_on_media_timeout() {
    let lab = Lab::new();
    let gw = lab.start(&format!("timeout_secs = {TIMEOUT_SECS}\n"));
    let dump = Dump::new(&gw);
    let leaf = lab.pki.leaf("bob.test");
    let bob = Baresip::start(
        lab.path(),
        &BaresipSpec {
            name: "bob",
            ip: "127.0.0.1",
            sip_port: lab.ports.peer_sip(3),
            rtp_ports: lab.ports.peer_media(3),
            cert: Some(&leaf),
            ca_pem: Some(&lab.pki.pki.root_pem),
            account: ";regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=pcmu".into(),
            dial: None,
            quit_after: 60,
        },
    );
    dump.file(&bob.proc.log);
    let bob_tls = lab.ports.peer_sip(3) + 1;
    wait_until(10, "baresip bob to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", bob_tls)).is_ok()
    });
    let alice = baresip_caller(&lab, "alice", "127.0.0.2", 1, "bob");
    dump.file(&alice.proc.log);
    wait_until(15, "the call to be up with media both ways", || {
        alice.log().contains("Call established")
            && bob.log().contains("Call established")
            && metric(&gw.metrics(), "mediagate_relay_packets_total") >= 100.0
    });
    bob.proc.signal("KILL");
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(TIMEOUT_SECS + 5);
    // baresip's SIP trace (-s) shows the BYE it receives from the gateway, and it logs
    // `<aor>: Call with <peer> terminated (duration: N secs)` (libre reports a received BYE
    // as `session closed: Connection reset by peer`).
    let gw_tls = format!("TLS 127.0.0.1:{} -> ", lab.ports.tls());
    let left = deadline.saturating_duration_since(Instant::now());
    let ended = (0..left.as_millis() / 50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let log = alice.log();
        !baresip_received(&log, "BYE", &gw_tls).is_empty() && log.contains("terminated (duration:")
    });
    assert!(
        ended,
        "alice got no BYE within {} s of kill -9 of the callee",
        TIMEOUT_SECS + 5
    );
    eprintln!("alice's call closed {:?} after the kill", killed.elapsed());
    let bye = baresip_received(&alice.log(), "BYE", &gw_tls).remove(0);
    assert!(
        bye.lines().any(|l| l.starts_with("Reason:")),
        "the BYE carries no Reason:\n{bye}"
    );
    assert_call_torn_down(&gw, deadline, "after kill -9 of the callee");
}

/// The `m=` lines of an SDP: (media, port, proto).
fn m_lines(sdp: &Sdp) -> Vec<(String, u16, String)> {
    sdp.media
        .iter()
        .map(|m| (m.media.clone(), m.port, m.proto.clone()))
        .collect()
}

/// (g) An offer with two audio streams and a video stream: one relay port per audio stream,
/// video refused (port 0) on both legs, and media on the second audio stream.
#[test]
fn offer_with_two_audio_streams_and_video() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut far1 = lab.media("127.0.0.1", 5, 0, 0xFA00_0071, 1);
    let mut far2 = lab.media("127.0.0.1", 5, 2, 0xFA00_0072, 1);
    let answer = format!(
        "{}m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 96\r\n",
        sdp_session(ip("127.0.0.1"), 1, "127.0.0.1"),
        far1.addr.port(),
        far2.addr.port()
    );
    let uas = lab.far(&answer);
    dump.sip("far", &uas.transcript);
    let mut c1 = lab.media("127.0.0.1", 2, 0, 0xCA11_0071, 1);
    let mut c2 = lab.media("127.0.0.1", 2, 2, 0xCA11_0072, 1);
    let offer = format!(
        "{}m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        sdp_session(ip("127.0.0.1"), 1, "127.0.0.1"),
        c1.addr.port(),
        c2.addr.port()
    );
    let mut plain = lab.plain();
    dump.sip("plain caller", &plain.transcript);
    let ok = plain.invite("6000", &offer);
    expect_status(&ok, 200, "INVITE");
    let far_offer = sdp_of(&uas.invites().into_iter().next().expect("INVITE at far"));
    let answer_a = sdp_of(&ok);
    for (what, sdp) in [
        ("INVITE to far", &far_offer),
        ("200 to the caller", &answer_a),
    ] {
        let m = m_lines(sdp);
        assert_eq!(m.len(), 3, "{what}: three m= lines: {m:?}\n{sdp}");
        assert!(
            m[0].1 != 0 && m[1].1 != 0,
            "{what}: audio ports: {m:?}\n{sdp}"
        );
        assert_ne!(
            m[0].1, m[1].1,
            "{what}: one port per audio stream: {m:?}\n{sdp}"
        );
        assert_eq!(m[2].0, "video", "{what}: {m:?}");
        assert_eq!(m[2].1, 0, "{what}: video refused with port 0: {m:?}\n{sdp}");
    }
    c1.set_peer(answer_a.rtp_address(0).unwrap());
    c2.set_peer(answer_a.rtp_address(1).unwrap());
    far1.set_peer(far_offer.rtp_address(0).unwrap());
    far2.set_peer(far_offer.rtp_address(1).unwrap());
    c2.send_run(1..101, Duration::from_millis(2));
    let at_far = far2.wait_markers(0, 1..101, 100, WAIT);
    far2.send_run(2001..2101, Duration::from_millis(2));
    let at_caller = c2.wait_markers(0, 2001..2101, 100, WAIT);
    let seen = format!(
        "second audio stream: far got {at_far}/100, caller got {at_caller}/100\n  {}\n  {}\n  \
         {}\n  {}\n{}",
        c1.summary(),
        c2.summary(),
        far1.summary(),
        far2.summary(),
        media_metrics(&gw.metrics())
    );
    eprintln!("{seen}");
    assert!(at_far >= 98, "{seen}");
    assert!(at_caller >= 98, "{seen}");
}

/// (g) A disabled stream (port 0) first: it stays disabled in the answer, the second stream
/// is answered; beyond the SDP, media flows on the second stream.
#[test]
fn port_zero_stream_stays_disabled() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut far2 = lab.media("127.0.0.1", 5, 2, 0xFA00_0081, 1);
    let answer = format!(
        "{}m=audio 0 RTP/AVP 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        sdp_session(ip("127.0.0.1"), 1, "127.0.0.1"),
        far2.addr.port()
    );
    let uas = lab.far(&answer);
    dump.sip("far", &uas.transcript);
    let mut c2 = lab.media("127.0.0.1", 2, 2, 0xCA11_0081, 1);
    let offer = format!(
        "{}m=audio 0 RTP/AVP 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        sdp_session(ip("127.0.0.1"), 1, "127.0.0.1"),
        c2.addr.port()
    );
    let mut plain = lab.plain();
    dump.sip("plain caller", &plain.transcript);
    let ok = plain.invite("6000", &offer);
    expect_status(&ok, 200, "INVITE");
    let a = sdp_of(&ok);
    let m = m_lines(&a);
    assert_eq!(m.len(), 2, "{m:?}\n{a}");
    assert_eq!(m[0].1, 0, "the disabled stream stays disabled: {m:?}\n{a}");
    assert_ne!(m[1].1, 0, "the second stream is answered: {m:?}\n{a}");
    let far_offer = sdp_of(&uas.invites().into_iter().next().expect("INVITE at far"));
    c2.set_peer(a.rtp_address(1).unwrap());
    far2.set_peer(far_offer.rtp_address(1).expect("far leg: second stream"));
    c2.send_run(1..101, Duration::from_millis(2));
    let at_far = far2.wait_markers(0, 1..101, 100, WAIT);
    far2.send_run(2001..2101, Duration::from_millis(2));
    let at_caller = c2.wait_markers(0, 2001..2101, 100, WAIT);
    let seen = format!(
        "second stream: far got {at_far}/100, caller got {at_caller}/100\n  {}\n  {}\n{}",
        c2.summary(),
        far2.summary(),
        media_metrics(&gw.metrics())
    );
    eprintln!("{seen}");
    assert!(at_far >= 98, "{seen}");
    assert!(at_caller >= 98, "{seen}");
}

/// (g) Multicast and broadcast connection addresses are refused with 488.
#[test]
fn multicast_and_broadcast_connection_addresses_get_488() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_0091, 1);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut plain = lab.plain();
    dump.sip("plain caller", &plain.transcript);
    let mut got = Vec::new();
    for c in ["224.2.1.1/127", "255.255.255.255"] {
        plain.new_call();
        let offer = format!(
            "{}m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            sdp_session(ip("127.0.0.1"), 1, c)
        );
        got.push((c, plain.invite("6000", &offer).status()));
    }
    eprintln!("{got:?}");
    assert!(
        got.iter().all(|(_, s)| *s == 488),
        "final responses (488 expected for both): {got:?}"
    );
}

/// (g) RTP/SAVP with SDES offered into a plan without SRTP: 488 (Unsecured over TCP,
/// SIPSecured over TLS as carol).
#[test]
fn savp_offer_into_unsecured_and_sipsecured_plans_gets_488() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let far_media = lab.media("127.0.0.1", 5, 0, 0xFA00_00A1, 1);
    let uas = lab.far(&audio_sdp(far_media.addr, 1, None, "sendrecv"));
    dump.sip("far", &uas.transcript);
    let mut plain = lab.plain();
    dump.sip("plain caller", &plain.transcript);
    let key = new_key();
    let plain_status = plain
        .invite(
            "6000",
            &audio_sdp(sa("127.0.0.1", 40000), 1, Some(&key), "sendrecv"),
        )
        .status();
    let mut carol = lab.tls_phone("carol", "127.0.0.3");
    dump.sip("carol", &carol.transcript);
    let carol_status = carol
        .invite(
            "6000",
            &audio_sdp(sa("127.0.0.3", 40000), 1, Some(&key), "sendrecv"),
        )
        .status();
    let seen = format!("Unsecured (TCP): {plain_status}; SIPSecured (TLS, carol): {carol_status}");
    eprintln!("{seen}");
    assert_eq!(plain_status, 488, "{seen}");
    assert_eq!(carol_status, 488, "{seen}");
}

/// (g) OSRTP (RFC 8643): RTP/AVP with a=crypto into the Secured plan is answered RTP/AVP
/// with exactly one a=crypto, and the media is SRTP with that key.
#[test]
fn osrtp_offer_is_answered_rtp_avp_with_one_crypto() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00B1, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    let offer = audio_sdp(caller.addr, 1, Some(&key), "sendrecv").replace("RTP/SAVP", "RTP/AVP");
    let ok = alice.invite("700", &offer);
    expect_status(&ok, 200, "OSRTP INVITE");
    let a = sdp_of(&ok);
    assert_eq!(a.media[0].proto, "RTP/AVP", "answer:\n{a}");
    let cryptos: Vec<&str> = a.media[0].crypto_lines().collect();
    assert_eq!(cryptos.len(), 1, "exactly one a=crypto:\n{a}");
    caller.set_peer(a.rtp_address(0).unwrap());
    caller.set_tx_key(Some(&key.key));
    caller.set_rx_key(Some(&CryptoAttribute::parse(cryptos[0]).unwrap().key));
    caller.send_run(1..101, Duration::from_millis(2));
    let got = caller.wait_markers(0, 1..101, 100, WAIT);
    let seen = format!(
        "{got}/100 echoed and decrypted with the answer's key\n  {}\n{}",
        caller.summary(),
        media_metrics(&gw.metrics())
    );
    eprintln!("{seen}");
    assert!(got >= 98, "{seen}");
}

/// (g) The AES-256 suite offered as `AES_CM_256_HMAC_SHA1_80` is answered in the offered
/// spelling.
#[test]
fn aes_cm_256_suite_is_answered_in_the_offered_spelling() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00C1, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = CryptoAttribute::generate(1, SrtpProfile::AesCm256HmacSha1_80).unwrap();
    let line = key
        .to_string()
        .replace("AES_256_CM_HMAC_SHA1_80", "AES_CM_256_HMAC_SHA1_80");
    assert!(line.contains("AES_CM_256_HMAC_SHA1_80"), "{line}");
    let mut offer = audio_sdp(caller.addr, 1, None, "sendrecv").replace("RTP/AVP", "RTP/SAVP");
    offer = offer.replace(
        "a=sendrecv\r\n",
        &format!("a=crypto:{line}\r\na=sendrecv\r\n"),
    );
    let ok = alice.invite("700", &offer);
    expect_status(&ok, 200, "INVITE");
    let a = sdp_of(&ok);
    let answered: Vec<&str> = a.media[0].crypto_lines().collect();
    assert_eq!(answered.len(), 1, "{a}");
    let suite = answered[0].split_whitespace().nth(1).unwrap_or_default();
    assert_eq!(
        suite, "AES_CM_256_HMAC_SHA1_80",
        "the answer names the offered spelling:\n{a}"
    );
}

/// (h) The echo endpoint answers hold with recvonly (and a Contact), echoes nothing while
/// on hold, and sendrecv again after the resume.
#[test]
fn echo_endpoint_answers_hold_with_recvonly() {
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00D1, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    let hold = secured_reinvite(&mut alice, &caller, &key, 2, "sendonly");
    let hold_dir = direction_of(&sdp_of(&hold), 0);
    assert_eq!(hold_dir, "recvonly", "hold answer:\n{}", hold.text());
    assert!(
        hold.header("Contact").is_some(),
        "no Contact:\n{}",
        hold.text()
    );
    let before = caller.count();
    caller.send_run(1000..1050, Duration::from_millis(2));
    std::thread::sleep(Duration::from_millis(300));
    let on_hold = caller.count() - before;
    assert!(
        on_hold <= 2,
        "echoed while on hold: {on_hold}\n  {}",
        caller.summary()
    );
    let resume = secured_reinvite(&mut alice, &caller, &key, 3, "sendrecv");
    assert_eq!(
        direction_of(&sdp_of(&resume), 0),
        "sendrecv",
        "resume answer:\n{}",
        resume.text()
    );
    assert!(
        resume.header("Contact").is_some(),
        "no Contact:\n{}",
        resume.text()
    );
    caller.send_run(2000..2100, Duration::from_millis(2));
    let got = caller.wait_markers(0, 2000..2100, 100, WAIT);
    assert!(
        got >= 98,
        "echo after resume: {got}/100\n  {}\n{}",
        caller.summary(),
        media_metrics(&gw.metrics())
    );
}

/// (i) A call on hold (inactive) outlives the media timeout (hold has its own, longer
/// timeout) and resumes.
#[test]
fn hold_keeps_the_call_past_the_media_timeout() {
    let lab = Lab::new();
    let gw = lab.start("timeout_secs = 3\nhold_timeout_secs = 60\n");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00E1, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    caller.send_run(1..21, Duration::from_millis(2));
    let first = caller.wait_markers(0, 1..21, 20, WAIT);
    assert!(first >= 19, "echo before hold: {first}/20");
    secured_reinvite(&mut alice, &caller, &key, 2, "inactive");
    // 8 s of silence on hold: no BYE may come.
    let bye = alice.wait_request("BYE", Duration::from_secs(8));
    assert!(
        bye.is_none(),
        "the call on hold was ended:\n{}",
        bye.map(|b| b.text()).unwrap_or_default()
    );
    let m = gw.metrics();
    assert_eq!(
        metric(&m, "mediagate_calls_active"),
        1.0,
        "{}",
        media_metrics(&m)
    );
    secured_reinvite(&mut alice, &caller, &key, 3, "sendrecv");
    caller.send_run(1001..1101, Duration::from_millis(2));
    let got = caller.wait_markers(0, 1001..1101, 100, WAIT);
    assert!(
        got >= 98,
        "echo after resume: {got}/100\n  {}",
        caller.summary()
    );
}

/// (i) Without hold, silence longer than the media timeout ends the call with a BYE that
/// carries a Reason.
#[test]
fn silence_without_hold_ends_the_call() {
    let lab = Lab::new();
    let gw = lab.start("timeout_secs = 3\nhold_timeout_secs = 60\n");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00E2, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    caller.send_run(1..21, Duration::from_millis(2));
    let first = caller.wait_markers(0, 1..21, 20, WAIT);
    assert!(first >= 19, "echo: {first}/20");
    let silent = Instant::now();
    let bye = alice
        .wait_request("BYE", Duration::from_secs(3 + 3))
        .unwrap_or_else(|| panic!("no BYE within 6 s of silence (timeout_secs = 3)"));
    eprintln!("BYE {:?} after the last packet", silent.elapsed());
    assert!(
        bye.header("Reason").is_some(),
        "the BYE carries no Reason:\n{}",
        bye.text()
    );
    let m = wait_metrics(&gw, 2.0, |m| metric(m, "mediagate_calls_active") == 0.0);
    assert_eq!(
        metric(&m, "mediagate_calls_active"),
        0.0,
        "{}",
        media_metrics(&m)
    );
}

/// A STUN binding request (RFC 5389): type 0x0001, length 0, magic cookie, random
/// transaction id.
fn stun_binding_request(rng: &mut Rng) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    p.extend_from_slice(&rng.next_u64().to_be_bytes());
    p.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    p
}

/// (j) 1000 STUN binding requests to the caller-facing media port during a call: each is
/// counted as a `stun` drop (none as malformed) and media keeps flowing.
#[test]
fn stun_burst_is_counted_as_stun_and_media_keeps_flowing() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    eprintln!("seed {seed} (MEDIA_HARDENING_SEED)");
    let lab = Lab::new();
    let gw = lab.start("");
    let dump = Dump::new(&gw);
    let mut caller = lab.media("127.0.0.2", 1, 0, 0xA11C_00F1, 100);
    let mut alice = lab.alice();
    dump.sip("alice", &alice.transcript);
    let key = new_key();
    secured_call(&mut alice, "700", &mut caller, &key);
    caller.send_run(1..51, Duration::from_millis(2));
    let first = caller.wait_markers(0, 1..51, 50, WAIT);
    assert!(first >= 49, "echo before the burst: {first}/50");
    let stun = "mediagate_relay_drops_total{reason=\"stun\"}";
    let malformed = "mediagate_relay_drops_total{reason=\"malformed\"}";
    let m0 = gw.metrics();
    let seen0 = relay_seen(&m0);
    for i in 0..1000 {
        caller.send_raw(&stun_binding_request(&mut rng));
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Wait until the relay has handled all 1000 (counted somewhere), then read the counters.
    let m1 = wait_metrics(&gw, 3.0, |m| relay_seen(m) >= seen0 + 1000.0);
    let d_stun = metric(&m1, stun) - metric(&m0, stun);
    let d_malformed = metric(&m1, malformed) - metric(&m0, malformed);
    caller.send_run(1001..1101, Duration::from_millis(2));
    let after = caller.wait_markers(0, 1001..1101, 100, WAIT);
    let seen = format!(
        "after 1000 STUN requests: stun drops +{d_stun}, malformed drops +{d_malformed}; echo \
         after the burst {after}/100\n  {}\n{}",
        caller.summary(),
        media_metrics(&m1)
    );
    eprintln!("{seen}");
    assert_eq!(d_stun, 1000.0, "{seen}");
    assert_eq!(d_malformed, 0.0, "{seen}");
    assert!(after >= 98, "{seen}");
}
