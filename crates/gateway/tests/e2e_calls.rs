//! Real calls through `mediagate run` (issue: the gateway as a product).
//!
//! - baresip over mutual TLS with `mediaenc=srtp-mand` into a Secured dial plan, through the
//!   gateway, to a plain-RTP SIPp UAS with `-rtp_echo` on an Unsecured peer: audio both ways;
//!   the SRTP on baresip's leg decrypts with libsrtp (pylibsrtp) with the SDP keys, the RTP
//!   on the SIPp leg is plain and carries the same audio.
//! - baresip (Secured) to the built-in echo endpoint; a SIPSecured call (TLS, plain RTP); an
//!   Unsecured call over UDP and over TCP.
//! - The gateway offers AEAD GCM to a baresip callee (baresip answers GCM only as a callee).
//! - Refusals: a client certificate from an unknown CA; a Secured peer over TCP (403); a
//!   Secured offer without crypto (488).
//! - Configuration reload while a call is up; a broken configuration is refused.
//!
//! Needs `baresip-core`, `sip-tester`, `tcpdump` and `python3-pylibsrtp` (`.ci/run` installs
//! them); a missing tool fails the test with the package to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;

use std::path::Path;
use std::time::Duration;

use e2e::*;

/// The lab: a gateway, its PKI and the peers' certificates.
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

    /// The lab configuration. Peers:
    /// - `alice` (alice.test, TLS) in `secured` (Secured), `carol` (carol.test) in
    ///   `sipsecured` (SIPSecured), `bob` (bob.test, a baresip callee on peer port 3) in
    ///   `secured`;
    /// - `sipp` (127.0.0.1, TCP, peer port 0) and `dave` (127.0.0.4, UDP) in `plain`
    ///   (Unsecured).
    ///
    /// Routes (every plan): 7… → echo, 5… → sipp, `bob` → bob (baresip answers only requests
    /// for its own user).
    fn config(&self, secured_mode: &str) -> String {
        self.config_with(secured_mode, 20)
    }

    fn config_with(&self, secured_mode: &str, max_calls: u32) -> String {
        let p = self.ports;
        let (m0, m1) = p.media();
        let routes = r#"routes = [ { prefix = "7", target = "echo" }, { prefix = "5", target = "sipp" }, { prefix = "bob", target = "bob" } ]"#;
        format!(
            r#"# e2e lab
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
max_calls = {max_calls}
shutdown_grace_secs = 3

[admin]
http = "127.0.0.1:{admin}"

[tls]
tls_peer_ports = [5061, {bob_tls}]

[[dial_plan]]
name = "secured"
voip_security = "{secured_mode}"
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
        )
    }

    fn start(&self) -> Gateway {
        Gateway::start(&self.path().join("gw"), self.ports, &self.config("Secured"))
    }

    /// A baresip caller with a certificate for `name`.test, dialling `number` over TLS; it
    /// hangs up and quits after 7 s.
    fn tls_caller(&self, name: &str, ip: &str, slot: u16, number: &str, secure: bool) -> Baresip {
        self.tls_caller_for(name, ip, slot, number, secure, 7)
    }

    /// [`Lab::tls_caller`] that quits after `secs`.
    fn tls_caller_for(
        &self,
        name: &str,
        ip: &str,
        slot: u16,
        number: &str,
        secure: bool,
        secs: u32,
    ) -> Baresip {
        let leaf = self.pki.leaf(&format!("{name}.test"));
        let enc = if secure { ";mediaenc=srtp-mand" } else { "" };
        Baresip::start(
            self.path(),
            &BaresipSpec {
                name,
                ip,
                sip_port: self.ports.peer_sip(slot),
                rtp_ports: self.ports.peer_media(slot),
                cert: Some(&leaf),
                ca_pem: Some(&self.pki.pki.root_pem),
                account: format!(";regint=0{enc};audio_codecs=pcmu"),
                dial: Some(format!(
                    "sip:{number}@127.0.0.1:{};transport=tls",
                    self.ports.tls()
                )),
                quit_after: secs,
            },
        )
    }
}

/// A SIPp UAS answering one call on the `sipp` peer's port with a plain RTP/AVP answer and
/// echoing RTP (`-rtp_echo`).
fn sipp_echo_uas(lab: &Lab) -> Proc {
    require("sipp", "sip-tester");
    let port = lab.ports.peer_sip(0);
    let (m0, _) = lab.ports.peer_media(0);
    Proc::spawn(
        "sipp-uas",
        40,
        "sipp",
        &[
            "-sf".into(),
            testdata().join("sipp/uas.xml").display().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            m0.to_string(),
            "-rtp_echo".into(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            "-timeout".into(),
            "30s".into(),
            "-timeout_error".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            "uas_msg.log".into(),
        ],
        lab.path(),
    )
}

fn assert_call_established(log: &str, who: &str) {
    assert!(
        log.contains("Call established"),
        "{who}: call not established:\n{log}"
    );
}

/// The headline call: baresip (mutual TLS, SRTP mandatory, Secured plan) → gateway → SIPp
/// UAS (TCP, plain RTP, Unsecured peer) with RTP echo.
#[test]
fn baresip_srtp_over_tls_to_plain_sipp_through_the_gateway() {
    let lab = Lab::new();
    let gw = lab.start();
    let mut uas = sipp_echo_uas(&lab);
    std::thread::sleep(Duration::from_millis(300));
    let cap = Capture::start(
        lab.path(),
        "call",
        (lab.ports.base + 40, lab.ports.base + 199),
    );
    let mut alice = lab.tls_caller("alice", "127.0.0.2", 1, "5000", true);
    let log = alice.finish(20);
    let pcap = cap.stop();
    let _ = uas.wait_for(10);
    assert_call_established(&log, "alice");
    assert!(
        log.contains("SRTP is Enabled"),
        "alice: SRTP not enabled:\n{log}"
    );
    let (tx, rx) = baresip_packets(&log);
    assert!(
        tx > 100 && rx > 100,
        "audio both ways: tx {tx} rx {rx}\n{log}"
    );

    // Keys from the SDP: alice's own offer (her RTP port) and the gateway's answer.
    let (a0, a1) = lab.ports.peer_media(1);
    let cryptos = sdp_cryptos(&log);
    let alice_key = cryptos
        .iter()
        .find(|(port, _, _)| (a0..=a1).contains(port))
        .cloned()
        .expect("alice's a=crypto");
    let gw_key = cryptos
        .iter()
        .find(|(port, _, _)| !(a0..=a1).contains(port))
        .cloned()
        .expect("the gateway's a=crypto");
    assert_eq!(gw_key.1, alice_key.1, "answer uses the offered suite");
    let (s0, _) = lab.ports.peer_media(0);
    let report = check_pcap_json(&[
        pcap.display().to_string(),
        "--srtp-from".into(),
        alice_key.0.to_string(),
        alice_key.1.clone(),
        alice_key.2.clone(),
        "--srtp-from".into(),
        gw_key.0.to_string(),
        gw_key.1.clone(),
        gw_key.2.clone(),
        "--plain-to".into(),
        s0.to_string(),
    ]);
    let from_alice = &report["srtp"][alice_key.0.to_string()];
    let from_gw = &report["srtp"][gw_key.0.to_string()];
    let plain = &report["plain"][s0.to_string()];
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert!(n(from_alice, "rtp") > 100, "{report}");
    assert_eq!(n(from_alice, "rtp_ok"), n(from_alice, "rtp"), "{report}");
    assert!(n(from_gw, "rtp") > 100, "{report}");
    assert_eq!(
        n(from_gw, "rtp_ok"),
        n(from_gw, "rtp"),
        "every packet the gateway sent alice decrypts with the gateway's SDP key: {report}"
    );
    assert_eq!(
        n(from_gw, "rtp_plaintext_differs"),
        n(from_gw, "rtp"),
        "{report}"
    );
    assert!(n(plain, "rtp") > 100, "{report}");
    assert_eq!(n(plain, "rtp_v2"), n(plain, "rtp"), "{report}");
    assert_eq!(n(plain, "decrypts_as_srtp"), 0, "{report}");
    assert!(
        n(plain, "payload_seen_in_srtp") * 10 >= n(plain, "rtp") * 9,
        "the plain leg carries alice's (decrypted) audio: {report}"
    );
    // A call is counted when it ends (its GW1220 record): wait for the BYE to land.
    wait_until(5, "the calls to be counted", || {
        metric(
            &gw.metrics(),
            "mediagate_calls_total{dial_plan=\"secured\",mode=\"Secured\",result=\"answered\"}",
        ) >= 1.0
    });
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "mediagate_calls_total{dial_plan=\"secured\",mode=\"Secured\",result=\"answered\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(metric(&m, "mediagate_relay_packets_total") > 400.0, "{m}");
    assert_eq!(
        metric(&m, "mediagate_srtp_auth_failures_total{protocol=\"srtp\"}"),
        0.0
    );
}

/// baresip (Secured) → the built-in echo endpoint: it hears itself; the gateway logs the RTT
/// and counts echoed packets.
#[test]
fn baresip_srtp_call_to_the_echo_endpoint() {
    let lab = Lab::new();
    let gw = lab.start();
    // The relay runs with the configured settings (the lab sets 1 ms coalescing); the
    // startup summary comes right after /health is up.
    wait_until(5, "the startup summary with the relay settings", || {
        gw.log()
            .contains("relay threads 1, wake-up coalescing 1000 µs")
    });
    let mut alice = lab.tls_caller("alice", "127.0.0.2", 1, "700", true);
    let log = alice.finish(20);
    assert_call_established(&log, "alice");
    assert!(log.contains("SRTP is Enabled"), "{log}");
    let (tx, rx) = baresip_packets(&log);
    assert!(tx > 100 && rx > 100, "echoed: tx {tx} rx {rx}\n{log}");
    let m = gw.metrics();
    assert!(metric(&m, "mediagate_echo_packets_total") > 100.0, "{m}");
    assert_eq!(metric(&m, "mediagate_echo_calls_total"), 1.0, "{m}");
    wait_until(5, "the echo call to end", || gw.log().contains("GW1401"));
}

/// SIPSecured: TLS signaling, plain RTP/AVP media.
#[test]
fn sipsecured_call_is_tls_with_plain_rtp() {
    let lab = Lab::new();
    let gw = lab.start();
    let mut carol = lab.tls_caller("carol", "127.0.0.3", 2, "700", false);
    let log = carol.finish(20);
    assert_call_established(&log, "carol");
    assert!(
        !log.contains("a=crypto"),
        "no SDES keys in SIPSecured:\n{log}"
    );
    let (tx, rx) = baresip_packets(&log);
    assert!(tx > 100 && rx > 100, "tx {tx} rx {rx}");
    // A call is counted when it ends (its GW1220 record): wait for the BYE to land.
    wait_until(5, "the calls to be counted", || {
        metric(
            &gw.metrics(),
            "mediagate_calls_total{dial_plan=\"sipsecured\",mode=\"SIPSecured\",result=\"answered\"}",
        ) >= 1.0
    });
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "mediagate_calls_total{dial_plan=\"sipsecured\",mode=\"SIPSecured\",result=\"answered\"}"
        ),
        1.0,
        "{m}"
    );
}

/// Unsecured: baresip over UDP, and SIPp over TCP, to the echo endpoint.
#[test]
fn unsecured_calls_over_udp_and_tcp() {
    let lab = Lab::new();
    let gw = lab.start();
    // dave: UDP from 127.0.0.4.
    let mut dave = Baresip::start(
        lab.path(),
        &BaresipSpec {
            name: "dave",
            ip: "127.0.0.4",
            sip_port: lab.ports.peer_sip(4),
            rtp_ports: lab.ports.peer_media(4),
            cert: None,
            ca_pem: None,
            account: ";regint=0;audio_codecs=pcmu".into(),
            dial: Some(format!(
                "sip:700@127.0.0.1:{};transport=udp",
                lab.ports.sip()
            )),
            quit_after: 6,
        },
    );
    let log = dave.finish(20);
    assert_call_established(&log, "dave (UDP)");
    let (tx, rx) = baresip_packets(&log);
    assert!(tx > 100 && rx > 100, "tx {tx} rx {rx}");
    // SIPp over TCP from 127.0.0.1 (the `sipp` peer's address) with G.711 from a pcap.
    let (m0, _) = lab.ports.peer_media(5);
    let mut uac = Proc::spawn(
        "sipp-uac",
        40,
        "sipp",
        &[
            format!("127.0.0.1:{}", lab.ports.sip()),
            "-sf".into(),
            testdata().join("sipp/uac_media.xml").display().to_string(),
            "-t".into(),
            "t1".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            lab.ports.peer_sip(5).to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            m0.to_string(),
            "-s".into(),
            "700".into(),
            "-m".into(),
            "1".into(),
            "-nostdin".into(),
            "-timeout".into(),
            "30s".into(),
            "-timeout_error".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            "uac_msg.log".into(),
        ],
        lab.path(),
    );
    let code = uac.wait_for(40);
    assert_eq!(
        code,
        Some(0),
        "SIPp over TCP to echo failed:\n{}\n{}",
        uac.output(),
        std::fs::read_to_string(lab.path().join("uac_msg.log")).unwrap_or_default()
    );
    // A call is counted when it ends (its GW1220 record): wait for the BYE to land.
    wait_until(5, "the calls to be counted", || {
        metric(
            &gw.metrics(),
            "mediagate_calls_total{dial_plan=\"plain\",mode=\"Unsecured\",result=\"answered\"}",
        ) >= 2.0
    });
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "mediagate_calls_total{dial_plan=\"plain\",mode=\"Unsecured\",result=\"answered\"}"
        ),
        2.0,
        "{m}"
    );
    assert!(metric(&m, "mediagate_sip_requests_total{method=\"INVITE\"}") >= 2.0);
}

/// The gateway calls a baresip callee in a Secured plan and offers every suite, GCM first;
/// baresip (which takes GCM only as a callee) answers GCM and the call works.
#[test]
fn gateway_offers_gcm_to_a_baresip_callee() {
    let lab = Lab::new();
    let _gw = lab.start();
    let leaf = lab.pki.leaf("bob.test");
    let mut bob = Baresip::start(
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
            quit_after: 12,
        },
    );
    let bob_tls = lab.ports.peer_sip(3) + 1;
    wait_until(10, "baresip bob to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", bob_tls)).is_ok()
    });
    // The caller: alice (Secured) dials bob.
    let mut alice = lab.tls_caller("alice", "127.0.0.2", 1, "bob", true);
    let alog = alice.finish(20);
    let blog = bob.finish(20);
    assert_call_established(&alog, "alice");
    assert_call_established(&blog, "bob");
    assert!(
        blog.contains("cryptosuite=AEAD_AES_256_GCM")
            || blog.contains("cryptosuite=AEAD_AES_128_GCM"),
        "bob took a GCM suite:\n{blog}"
    );
    let (tx, rx) = baresip_packets(&blog);
    assert!(tx > 100 && rx > 100, "bob: tx {tx} rx {rx}");
}

/// Refusals: an untrusted client certificate (TLS refused, logged with the reason); a
/// Secured offer without crypto (488).
#[test]
fn refusals_unknown_ca_and_secured_offer_without_crypto() {
    let lab = Lab::new();
    let gw = lab.start();
    // A certificate from a CA the gateway does not trust.
    let foreign = &lab.pki.pki.foreign;
    let mut eve = Baresip::start(
        lab.path(),
        &BaresipSpec {
            name: "eve",
            ip: "127.0.0.2",
            sip_port: lab.ports.peer_sip(6),
            rtp_ports: lab.ports.peer_media(6),
            cert: Some(foreign),
            ca_pem: Some(&lab.pki.pki.root_pem),
            account: ";regint=0;mediaenc=srtp-mand;audio_codecs=pcmu".into(),
            dial: Some(format!(
                "sip:700@127.0.0.1:{};transport=tls",
                lab.ports.tls()
            )),
            quit_after: 4,
        },
    );
    let log = eve.finish(15);
    assert!(!log.contains("Call established"), "{log}");
    wait_until(5, "the refusal in the gateway log", || {
        gw.log().contains("GW1202") && gw.log().contains("unknown_issuer")
    });
    let m = gw.metrics();
    assert!(
        metric(
            &m,
            "mediagate_tls_handshake_refusals_total{reason=\"unknown_issuer\"}"
        ) >= 1.0,
        "{m}"
    );
    // alice is Secured but offers plain RTP/AVP: 488.
    let mut alice = lab.tls_caller("alice", "127.0.0.2", 1, "700", false);
    let log = alice.finish(15);
    assert!(!log.contains("Call established"), "{log}");
    assert!(
        log.contains("488"),
        "488 Not Acceptable Here expected:\n{log}"
    );
}

/// A peer of a Secured plan that sends over plain TCP is refused with 403 (R-MODE-2): alice
/// (alice.test resolves to 127.0.0.2) writes an INVITE over TCP from 127.0.0.2.
#[test]
fn secured_peer_over_tcp_is_refused_with_403() {
    use std::io::{Read as _, Write as _};
    let lab = Lab::new();
    let gw = lab.start();
    let mut s = connect_from(
        "127.0.0.2:0".parse().unwrap(),
        format!("127.0.0.1:{}", lab.ports.sip()).parse().unwrap(),
    );
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let req = format!(
        "INVITE sip:700@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bKtcp1\r\nFrom: <sip:alice@alice.test>;tag=t1\r\nTo: <sip:700@127.0.0.1>\r\nCall-ID: tcp-refused\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5060;transport=tcp>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 403"), "{resp}");
    assert!(
        resp.contains("Secured"),
        "the reason names the mode: {resp}"
    );
    wait_until(5, "GW1201 in the log", || gw.log().contains("GW1201"));
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "mediagate_sip_admission_refusals_total{reason=\"wrong_transport\"}"
        ),
        1.0,
        "{m}"
    );
}

/// A TCP connection from a chosen loopback source address.
fn connect_from(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(local).unwrap();
        let st = s.connect(remote).await.unwrap().into_std().unwrap();
        st.set_nonblocking(false).unwrap();
        st
    })
}

/// Reload while a call is up: the call survives; a broken file is refused and the running
/// configuration stays; a valid change (the secured plan becomes SIPSecured) applies to new
/// calls.
#[test]
fn reload_keeps_calls_and_refuses_broken_config() {
    let lab = Lab::new();
    let gw = lab.start();
    let mut alice = lab.tls_caller_for("alice", "127.0.0.2", 1, "700", true, 9);
    wait_until(10, "the call to be up", || {
        alice.log().contains("Call established")
    });
    // A broken file: refused, logged with file/key/problem.
    std::fs::write(&gw.config, "[gateway]\nfqdn = 42\n").unwrap();
    wait_until(5, "the refusal", || gw.log().contains("GW1302"));
    // A valid change while the call is up, made with the admin command (R-OPS-4) on the
    // restored file: the secured plan becomes SIPSecured.
    std::fs::write(&gw.config, lab.config("Secured")).unwrap();
    wait_until(5, "the restored file to load", || {
        gw.log().contains("GW1301")
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .arg("--config")
        .arg(&gw.config)
        .args([
            "dialplan",
            "set",
            "secured",
            "--voip-security",
            "SIPSecured",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read_to_string(&gw.config)
            .unwrap()
            .starts_with("# e2e lab"),
        "comments kept"
    );
    wait_until(5, "the edit to be picked up", || {
        gw.log().matches("GW1301 configuration reloaded").count() >= 2
    });
    // R-MODE-5: the reload logs each dial plan with its new mode and listeners.
    assert!(
        gw.log().lines().any(|l| l.contains("GW1113")
            && l.contains("dial_plan=secured")
            && l.contains("mode=SIPSecured")),
        "{}",
        gw.log()
    );
    // SIGHUP reloads too.
    gw.proc.signal("HUP");
    wait_until(5, "the SIGHUP reload", || {
        gw.log()
            .lines()
            .any(|l| l.contains("GW1301") && l.contains("trigger=\"SIGHUP\""))
    });
    let log = alice.finish(20);
    assert_call_established(&log, "alice");
    let (tx, rx) = baresip_packets(&log);
    assert!(
        tx > 300 && rx > 300,
        "the call kept its media across the reloads: tx {tx} rx {rx}\n{log}\n{}\n{}",
        gw.log(),
        gw.metrics()
    );
    assert!(log.contains("SRTP is Enabled"), "{log}");
    // New calls use the new mode: a SRTP-mandatory offer is still accepted by a SIPSecured
    // plan? No: SIPSecured answers RTP/AVP, which baresip with srtp-mand refuses. A plain
    // caller now works.
    let mut alice2 = lab.tls_caller("alice", "127.0.0.2", 7, "700", false);
    let log2 = alice2.finish(20);
    assert_call_established(&log2, "alice after the reload (SIPSecured)");
    let m = gw.metrics();
    assert_eq!(
        metric(&m, "mediagate_config_reloads_total{result=\"refused\"}"),
        1.0,
        "{m}"
    );
    assert!(metric(&m, "mediagate_config_reloads_total{result=\"applied\"}") >= 1.0);
}

/// `mediagate test-connectivity` against the running gateway (R-OPS-3): secured (mutual TLS
/// with alice's certificate, SRTP call to echo), not secured (TCP from the `sipp` peer's
/// address, plain RTP), and a refused client certificate (exit 5).
#[test]
fn test_connectivity_against_the_gateway() {
    let lab = Lab::new();
    let _gw = lab.start();
    let tool = lab.path().join("tool");
    std::fs::create_dir_all(tool.join("certs")).unwrap();
    std::fs::create_dir_all(tool.join("trust")).unwrap();
    lab.pki
        .leaf("alice.test")
        .write_to(&tool.join("certs"), "alice");
    std::fs::write(tool.join("trust/root.pem"), &lab.pki.pki.root_pem).unwrap();
    let run = |args: &[String]| mediagate(&tool, args);
    let stores = |certs: &str| -> Vec<String> {
        vec![
            "--cert-dir".into(),
            tool.join(certs).display().to_string(),
            "--trust-dir".into(),
            tool.join("trust").display().to_string(),
        ]
    };
    let mut secured = stores("certs");
    secured.extend([
        "test-connectivity".into(),
        "--secured".into(),
        "true".into(),
        "--target".into(),
        format!("sip:700@127.0.0.1:{};transport=tls", lab.ports.tls()),
        "--server-name".into(),
        "gateway.test".into(),
        "--call".into(),
        "--duration".into(),
        "2".into(),
    ]);
    let (code, out) = run(&secured);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("far end verified as gateway.test"), "{out}");
    assert!(out.contains("RTP/SAVP"), "{out}");
    assert!(out.contains("verified on"), "SRTP checked: {out}");
    assert!(out.contains("loss 0.0%"), "{out}");

    let (code, out) = run(&[
        "test-connectivity".into(),
        "--secured".into(),
        "false".into(),
        "--target".into(),
        format!("sip:700@127.0.0.1:{};transport=tcp", lab.ports.sip()),
        "--call".into(),
        "--duration".into(),
        "2".into(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("RTP/AVP"), "{out}");

    // A client certificate from a CA the gateway does not trust: refused, exit 5.
    std::fs::create_dir_all(tool.join("foreign")).unwrap();
    lab.pki
        .pki
        .foreign
        .write_to(&tool.join("foreign"), "foreign");
    let mut refused = stores("foreign");
    refused.extend(secured[4..].iter().cloned());
    let (code, out) = run(&refused);
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

/// The embedded demo configuration (R-OPS-1) on free ports: the gateway generates its
/// self-signed certificate, trusts it (demo only), and `test-connectivity` with the same
/// configuration passes secured (mutual TLS + SRTP to echo) and not, also by `--peer`.
#[test]
fn demo_configuration_calls_its_echo_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();
    let (m0, m1) = ports.media();
    let toml = mediagate_config::Config::DEFAULT_TOML
        .replace("5060", &ports.sip().to_string())
        .replace("5061", &ports.tls().to_string())
        .replace("9090", &ports.admin().to_string())
        .replace("port_min = 30000", &format!("port_min = {m0}"))
        .replace("port_max = 30999", &format!("port_max = {m1}"));
    assert!(
        toml.contains(&ports.tls().to_string()),
        "the demo listens on TLS"
    );
    let gw = Gateway::start(dir.path(), ports, &toml);
    assert!(
        gw.log().contains("GW2002"),
        "self-signed generated: {}",
        gw.log()
    );
    assert!(gw.log().contains("GW1005"), "{}", gw.log());
    let config = gw.config.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        mediagate(dir.path(), &all)
    };
    let tls_target = format!("sip:echo@localhost:{};transport=tls", ports.tls());
    let (code, out) = run(&[
        "test-connectivity",
        "--secured",
        "true",
        "--target",
        &tls_target,
        "--call",
        "--duration",
        "2",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified on"), "{out}");
    let tcp_target = format!("sip:echo@127.0.0.1:{};transport=tcp", ports.sip());
    let (code, out) = run(&[
        "test-connectivity",
        "--secured",
        "false",
        "--target",
        &tcp_target,
        "--call",
        "--duration",
        "2",
    ]);
    assert_eq!(code, Some(0), "{out}");
    // By peer name: `localhost` is the demo's Secured peer.
    let (code, out) = run(&[
        "test-connectivity",
        "--secured",
        "true",
        "--peer",
        "localhost",
        "--call",
        "--duration",
        "1",
    ]);
    assert_eq!(code, Some(0), "{out}");
    // A call is counted when it ends (its GW1220 record): wait for the BYE to land.
    wait_until(5, "the calls to be counted", || {
        metric(
            &gw.metrics(),
            "mediagate_calls_total{dial_plan=\"demo-secured\",mode=\"Secured\",result=\"answered\"}",
        ) >= 2.0
    });
    let m = gw.metrics();
    assert_eq!(
        metric(
            &m,
            "mediagate_calls_total{dial_plan=\"demo-secured\",mode=\"Secured\",result=\"answered\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "mediagate_calls_total{dial_plan=\"demo-unsecured\",mode=\"Unsecured\",result=\"answered\"}"
        ),
        1.0,
        "{m}"
    );
    // The generated certificate is valid for a year (R-CERT-5 metric).
    let days: i64 = m
        .lines()
        .find(|l| l.starts_with("mediagate_certificate_days_to_expiry{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("days to expiry exported");
    assert!((360..=366).contains(&days), "{m}");
    let (code, health) = http_get(ports.admin(), "/health").unwrap();
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
}

/// The call limit (R-SIP-5) and graceful shutdown: with max_calls = 1 a second call gets 503;
/// on SIGTERM new calls get 503 (shutting down), the call in progress gets the grace period
/// and then a BYE, and the gateway exits 0.
#[test]
fn call_limit_and_graceful_shutdown() {
    let lab = Lab::new();
    let mut gw = Gateway::start(
        &lab.path().join("gw"),
        lab.ports,
        &lab.config_with("Secured", 1),
    );
    let alice = lab.tls_caller_for("alice", "127.0.0.2", 1, "700", true, 30);
    wait_until(10, "the call to be up", || {
        alice.log().contains("Call established")
    });
    let probe = |lab: &Lab| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
            .args([
                "test-connectivity",
                "--secured",
                "false",
                "--target",
                &format!("sip:700@127.0.0.1:{};transport=tcp", lab.ports.sip()),
                "--call",
                "--duration",
                "1",
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = probe(&lab);
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("503"), "over the call limit: {out}");
    let m = gw.metrics();
    assert_eq!(
        metric(&m, "mediagate_calls_rejected_overload_total"),
        1.0,
        "{m}"
    );

    gw.proc.signal("TERM");
    wait_until(5, "draining", || gw.log().contains("GW1003"));
    let (code, health) = http_get(lab.ports.admin(), "/health").unwrap();
    assert_eq!(code, 503, "load balancers stop sending calls: {health}");
    assert!(health.contains("draining"), "{health}");
    let (code, out) = probe(&lab);
    assert_eq!(code, Some(5), "{out}");
    assert!(
        out.contains("503") && out.contains("shutting down"),
        "{out}"
    );
    // The grace period (3 s) ends the call with a BYE; the gateway exits 0.
    let code = gw.proc.wait_for(15);
    assert_eq!(code, Some(0), "{}\n{}", gw.log(), alice.log());
    let log = gw.log();
    assert!(log.contains("GW1212"), "BYE at the deadline: {log}");
    assert!(log.contains("GW1004"), "{log}");
    wait_until(5, "alice to see the BYE", || {
        let l = alice.log();
        l.contains("BYE sip:") || l.contains("Call terminated") || l.contains("closed")
    });
    let l = alice.log();
    assert!(l.contains("BYE"), "{l}");
}

/// `--log-json` (R-OPS-5): every log line is a JSON object whose fields carry the event code.
#[test]
fn json_logs_carry_event_codes_as_fields() {
    let lab = Lab::new();
    let gw = Gateway::start_with(
        &lab.path().join("gw"),
        lab.ports,
        &lab.config("Secured"),
        &["--log-json"],
    );
    let log = gw.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let codes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["code"].as_str())
        .collect();
    for code in ["GW2001", "GW1112", "GW1113", "GW1006"] {
        assert!(codes.contains(&code), "{code} missing: {codes:?}\n{log}");
    }
    let plan = events
        .iter()
        .find(|e| e["fields"]["code"] == "GW1113" && e["fields"]["dial_plan"] == "secured")
        .expect("GW1113 for the secured plan");
    assert_eq!(plan["fields"]["mode"], "Secured");
}
