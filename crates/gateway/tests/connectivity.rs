//! `mediagate test-connectivity` (R-OPS-3) end to end: the real binary against real peers on
//! 127.0.0.1, with ports found free at run time. SIPp (Debian `sip-tester`) is the far end;
//! stunnel (Debian `stunnel4`) puts mutual TLS in front of it with certificates from a private
//! CA generated per test (`mediagate_pki::testpki`). A missing tool fails the test with the
//! package to install.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use mediagate_pki::CertFacts;
use mediagate_pki::testpki::TestPki;

const BIN: &str = env!("CARGO_BIN_EXE_mediagate");
mod e2e;

use e2e::{Proc, free_ports, require};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sipp")
}

/// True when something listens on 127.0.0.1:`port` (TCP), from `/proc/net/tcp`.
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
}

fn wait_listening(port: u16, dir: &Path) {
    for _ in 0..200 {
        if listening(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on port {port}\n{}", dump(dir));
}

/// Every `.out`, `.log` and `.conf` file in `dir`, for failure messages.
fn dump(dir: &Path) -> String {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    let mut out = String::new();
    for p in entries {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if matches!(ext, "out" | "log" | "conf") {
            out.push_str(&format!(
                "--- {}\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            ));
        }
    }
    out
}

/// A SIPp UAS over TCP on `port` (media on `media`..+3) for `calls` calls.
fn sipp_uas(dir: &Path, scenario: &str, port: u16, media: u16, calls: u32, echo: bool) -> Proc {
    require("sipp", "sip-tester");
    let mut args: Vec<String> = [
        "-sf",
        &testdata().join(scenario).display().to_string(),
        "-t",
        "t1",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-mi",
        "127.0.0.1",
        "-mp",
        &media.to_string(),
        "-m",
        &calls.to_string(),
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        "uas_msg.log",
        "-trace_err",
        "-error_file",
        "uas_err.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if echo {
        args.push("-rtp_echo".into());
    }
    Proc::spawn("sipp-uas", 40, "sipp", &args, dir)
}

/// stunnel as a TLS server on `accept` in front of plain TCP `connect`: certificate
/// `server.crt`, client certificate required and verified against `root.pem`.
fn stunnel_server(dir: &Path, accept: u16, connect: u16) -> Proc {
    require("stunnel", "stunnel4");
    let conf = format!(
        "foreground = yes\npid = {dir}/st.pid\ndebug = info\nsyslog = no\noutput = {dir}/st.log\n\n\
         [st]\nclient = no\naccept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{connect}\n\
         cert = {dir}/server.crt\nkey = {dir}/server.key\nCAfile = {dir}/root.pem\n\
         verifyChain = yes\nrequireCert = yes\nsslVersionMin = TLSv1.2\nTIMEOUTclose = 0\n",
        dir = dir.display(),
    );
    let path = dir.join("st.conf");
    std::fs::write(&path, conf).unwrap();
    Proc::spawn("stunnel", 45, "stunnel", &[path.display().to_string()], dir)
}

/// A test directory with `certs/` and `trust/` for the binary.
struct Env {
    _root: tempfile::TempDir,
    dir: PathBuf,
    certs: PathBuf,
    trust: PathBuf,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_owned();
        let certs = dir.join("certs");
        let trust = dir.join("trust");
        std::fs::create_dir(&certs).unwrap();
        std::fs::create_dir(&trust).unwrap();
        Env {
            _root: root,
            dir,
            certs,
            trust,
        }
    }

    /// A private CA (test root → intermediate → leaves), valid now: stunnel gets the server
    /// leaf (server.test, 127.0.0.1) and trusts the root; our store gets the client leaf
    /// (pbx.test) and trusts the root too.
    fn pki(&self) -> TestPki {
        let pki = TestPki::generate(SystemTime::now());
        std::fs::write(self.dir.join("root.pem"), &pki.root_pem).unwrap();
        pki.server.write_to(&self.dir, "server");
        pki.client.write_to(&self.certs, "client");
        std::fs::write(self.trust.join("root.pem"), &pki.root_pem).unwrap();
        pki
    }

    /// Runs `mediagate --cert-dir certs --trust-dir trust test-connectivity ARGS`, bounded by
    /// `timeout` so that a hang fails the test instead of wedging it.
    fn test(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-k", "2", "60", BIN, "--cert-dir"])
            .arg(&self.certs)
            .arg("--trust-dir")
            .arg(&self.trust)
            .arg("test-connectivity")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run mediagate")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn assert_exit(o: &Output, code: i32, dir: &Path) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n{}\n{}",
        text(o),
        dump(dir)
    );
}

/// R-OPS-3: `--secured false` OPTIONS against a SIPp UAS over TCP: every step passes, the SIP
/// round trip is reported, SIPp saw three well-formed OPTIONS (it answered all of them); the
/// JSON form carries the same results for scripts.
#[test]
fn unsecured_options_against_sipp() {
    let env = Env::new();
    let port = free_ports(4);
    let uas = sipp_uas(&env.dir, "uas_options.xml", port, port + 2, 2, false);
    wait_listening(port, &env.dir);
    let target = format!("sip:probe@127.0.0.1:{port};transport=tcp");

    let o = env.test(&["--secured", "false", "--target", &target]);
    assert_exit(&o, 0, &env.dir);
    let out = text(&o);
    assert!(
        out.contains(&format!("PASS connect  TCP connection to 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(
        out.contains("PASS options  3 of 3 OPTIONS answered 2xx; SIP round trip min "),
        "{out}"
    );
    assert_eq!(out.matches("SIP/2.0 200 OK in ").count(), 3, "{out}");
    assert!(out.contains("SUMMARY PASS: 2 of 2 steps passed"), "{out}");

    let o = env.test(&["--secured", "false", "--target", &target, "--json"]);
    assert_exit(&o, 0, &env.dir);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["passed"], true, "{j}");
    assert_eq!(j["transport"], "TCP");
    assert_eq!(j["steps"][0]["step"], "connect");
    assert!(j["steps"][0]["connect_ms"].as_f64().unwrap() >= 0.0, "{j}");
    let options = &j["steps"][1];
    assert_eq!(options["result"], "pass", "{j}");
    assert_eq!(options["responses"].as_array().unwrap().len(), 3, "{j}");
    let rtt = &options["rtt_ms"];
    let (min, avg, max) = (
        rtt["min"].as_f64().unwrap(),
        rtt["avg"].as_f64().unwrap(),
        rtt["max"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= avg && avg <= max, "{j}");

    let status = uas.wait();
    let log = std::fs::read_to_string(env.dir.join("uas_msg.log")).unwrap_or_default();
    assert!(status.success(), "sipp {status}\n{}", dump(&env.dir));
    // What SIPp received: our OPTIONS with the mandatory headers.
    assert_eq!(
        log.matches("OPTIONS sip:probe@127.0.0.1:").count(),
        6,
        "{log}"
    );
    assert!(log.contains("Via: SIP/2.0/TCP 127.0.0.1:"), "{log}");
    assert!(log.contains(";branch=z9hG4bK"), "{log}");
    assert!(log.contains("Max-Forwards: 70"), "{log}");
    assert!(log.contains("CSeq: 3 OPTIONS"), "{log}");
}

/// R-OPS-3: `--secured false --call` to a SIPp UAS with `-rtp_echo`: INVITE answered with SDP
/// pointing at SIPp's media port, 3 s of PCMU at 50 packets/s echoed back with 0 % loss, media
/// round trip reported, BYE answered.
#[test]
fn unsecured_call_through_sipp_rtp_echo() {
    let env = Env::new();
    let port = free_ports(8);
    let media = port + 4;
    let uas = sipp_uas(&env.dir, "uas_options_echo.xml", port, media, 2, true);
    wait_listening(port, &env.dir);
    let o = env.test(&[
        "--secured",
        "false",
        "--target",
        &format!("sip:echo@127.0.0.1:{port}"),
        "--call",
    ]);
    assert_exit(&o, 0, &env.dir);
    let out = text(&o);
    assert!(
        out.contains("PASS invite   180 Ringing, 200 OK in ")
            && out.contains(&format!("; media to 127.0.0.1:{media} RTP/AVP\n")),
        "{out}"
    );
    assert!(
        out.contains("PASS media    150 sent, 150 echoed, loss 0.0%; media round trip min "),
        "{out}"
    );
    assert!(out.contains(" p95 "), "{out}");
    assert!(out.contains("PASS bye      SIP/2.0 200 OK in "), "{out}");
    assert!(out.contains("SUMMARY PASS: 5 of 5 steps passed"), "{out}");
    let status = uas.wait();
    assert!(status.success(), "sipp {status}\n{}", dump(&env.dir));
    let log = std::fs::read_to_string(env.dir.join("uas_msg.log")).unwrap_or_default();
    assert!(log.contains("m=audio "), "{log}");
    assert!(log.contains(" RTP/AVP 0 101"), "{log}");
    assert!(!log.contains("a=crypto"), "no keys over plain TCP: {log}");
}

/// `openssl x509 -fingerprint -sha1` of a PEM file, as the admin would compute it.
fn openssl_sha1(file: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
        .arg(file)
        .output()
        .expect("the `openssl` command-line tool is required (apt-get install -y openssl)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split('=')
        .nth(1)
        .unwrap()
        .replace(':', "")
        .to_ascii_uppercase()
}

/// R-OPS-3, R-CERT-7: `--secured true` OPTIONS through stunnel (mutual TLS, client certificate
/// required) in front of SIPp: the handshake passes both ways, and the report shows the
/// stunnel certificate's facts with the thumbprint our facts code and OpenSSL compute.
#[test]
fn secured_options_through_stunnel() {
    let env = Env::new();
    let pki = env.pki();
    let base = free_ports(6);
    let (sipp_port, tls_port) = (base, base + 1);
    let uas = sipp_uas(&env.dir, "uas_options.xml", sipp_port, base + 2, 1, false);
    let st = stunnel_server(&env.dir, tls_port, sipp_port);
    wait_listening(sipp_port, &env.dir);
    wait_listening(tls_port, &env.dir);
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:probe@127.0.0.1:{tls_port};transport=tls"),
    ]);
    assert_exit(&o, 0, &env.dir);
    let out = text(&o);
    let facts = CertFacts::from_der(&pki.server.chain()[0]).unwrap();
    let server_pem = env.dir.join("server-leaf.pem");
    std::fs::write(&server_pem, &pki.server.cert_pem).unwrap();
    assert_eq!(facts.sha1_thumbprint, openssl_sha1(&server_pem));
    assert!(out.contains("PASS tls      TLSv1."), "{out}");
    assert!(out.contains("far end verified as 127.0.0.1"), "{out}");
    assert!(out.contains("far end's certificate:"), "{out}");
    assert!(
        out.contains(&format!("thumbprint:  {} (SHA-1)", facts.sha1_thumbprint)),
        "{out}"
    );
    assert!(out.contains("subject:     CN=server.test"), "{out}");
    assert!(
        out.contains("SANs:        DNS:server.test, IP:127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("(89 days left)") || out.contains("(90 days left)"),
        "{out}"
    );
    assert!(
        out.contains("subject:     CN=pbx.test"),
        "our certificate: {out}"
    );
    assert!(
        out.contains("PASS options  3 of 3 OPTIONS answered 2xx"),
        "{out}"
    );
    assert!(out.contains("SUMMARY PASS: 3 of 3 steps passed"), "{out}");
    let status = uas.wait();
    drop(st);
    assert!(status.success(), "sipp {status}\n{}", dump(&env.dir));
    // stunnel verified our client certificate (mutual TLS).
    let st_log = std::fs::read_to_string(env.dir.join("st.log")).unwrap_or_default();
    assert!(
        st_log.contains("Certificate accepted at depth=0: CN=pbx.test"),
        "{st_log}"
    );
}

/// R-CERT-7: a trust store without the far end's CA refuses the handshake: exit 5, the reason
/// says the issuer is unknown, and the refused certificate is named.
#[test]
fn secured_untrusted_issuer_is_refused() {
    let env = Env::new();
    let pki = env.pki();
    std::fs::remove_file(env.trust.join("root.pem")).unwrap();
    std::fs::write(env.trust.join("foreign.pem"), &pki.foreign_root_pem).unwrap();
    let base = free_ports(4);
    let (backend, tls_port) = (base, base + 1);
    let _hold = TcpListener::bind((LOCALHOST, backend)).unwrap();
    let _st = stunnel_server(&env.dir, tls_port, backend);
    wait_listening(tls_port, &env.dir);
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:probe@127.0.0.1:{tls_port}"),
    ]);
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    assert!(
        out.contains("FAIL tls      handshake refused: untrusted issuer: the issuer is unknown"),
        "{out}"
    );
    assert!(out.contains("subject:     CN=server.test"), "{out}");
    assert!(out.contains("SKIP options  not run: tls failed"), "{out}");
    assert!(out.contains("connectivity test failed: tls:"), "{out}");
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:probe@127.0.0.1:{tls_port}"),
        "--json",
    ]);
    assert_exit(&o, 5, &env.dir);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["steps"][1]["refusal"], "unknown_issuer", "{j}");
}

/// R-CERT-7: a certificate that does not carry the expected name is refused: exit 5, name
/// mismatch.
#[test]
fn secured_wrong_server_name_is_refused() {
    let env = Env::new();
    env.pki();
    let base = free_ports(4);
    let (backend, tls_port) = (base, base + 1);
    let _hold = TcpListener::bind((LOCALHOST, backend)).unwrap();
    let _st = stunnel_server(&env.dir, tls_port, backend);
    wait_listening(tls_port, &env.dir);
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:probe@127.0.0.1:{tls_port}"),
        "--server-name",
        "gw.wrong.test",
    ]);
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    assert!(
        out.contains(
            "FAIL tls      handshake refused: name mismatch: the far end's certificate is not \
             valid for gw.wrong.test"
        ),
        "{out}"
    );
}

/// R-OPS-3: nothing listening: exit 5 and "connection refused".
#[test]
fn nothing_listening_is_connection_refused() {
    let env = Env::new();
    let port = free_ports(1);
    let o = env.test(&[
        "--secured",
        "false",
        "--target",
        &format!("sip:probe@127.0.0.1:{port}"),
    ]);
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    assert!(
        out.contains("FAIL connect  TCP connect to 127.0.0.1:")
            && out.contains("connection refused"),
        "{out}"
    );
    assert!(out.contains("SKIP options"), "{out}");
}

/// R-OPS-3: a far end that accepts the connection but never answers: the OPTIONS times out
/// after `--timeout`, exit 5.
#[test]
fn far_end_that_never_answers_times_out() {
    let env = Env::new();
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and read whatever comes, never answer.
    let silent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    let started = Instant::now();
    let o = env.test(&[
        "--secured",
        "false",
        "--target",
        &format!("sip:probe@127.0.0.1:{port}"),
        "--timeout",
        "1",
    ]);
    let took = started.elapsed();
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    assert!(
        out.contains("FAIL options  no final response to OPTIONS within 1 s (timed out)"),
        "{out}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    let got = String::from_utf8(silent.join().unwrap()).unwrap();
    assert!(got.starts_with("OPTIONS sip:probe@127.0.0.1:"), "{got}");
}

/// Usage errors exit 1 before anything is tried: a target that contradicts --secured.
#[test]
fn conflicting_target_is_a_usage_error() {
    let env = Env::new();
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        "sip:probe@127.0.0.1:5060;transport=tcp",
    ]);
    assert_exit(&o, 1, &env.dir);
    assert!(
        text(&o).contains("--secured true means TLS"),
        "{}",
        text(&o)
    );
    let o = env.test(&["--target", "sip:probe@127.0.0.1"]);
    assert_exit(&o, 1, &env.dir);
    assert!(text(&o).contains("--secured"), "{}", text(&o));
}

/// R-MODE-3, R-MEDIA-4: a secured `--call` through stunnel to SIPp `-rtp_echo`. SIPp accepts
/// our SDES offer (TLS carries the keys) but is no SRTP endpoint: it bounces our SRTP back
/// unchanged. TLS, OPTIONS, INVITE with the answer's key, the SRTP stream and BYE all work;
/// the media step fails because nothing comes back protected with the answered key, and says
/// that it was our own SRTP reflected.
#[test]
fn secured_call_to_an_echo_that_does_not_terminate_srtp_fails_media() {
    let env = Env::new();
    env.pki();
    let base = free_ports(8);
    let (sipp_port, tls_port, media) = (base, base + 1, base + 4);
    let uas = sipp_uas(
        &env.dir,
        "uas_options_srtp_reflect.xml",
        sipp_port,
        media,
        2,
        true,
    );
    let _st = stunnel_server(&env.dir, tls_port, sipp_port);
    wait_listening(sipp_port, &env.dir);
    wait_listening(tls_port, &env.dir);
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:echo@127.0.0.1:{tls_port};transport=tls"),
        "--call",
        "--duration",
        "1",
    ]);
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    assert!(
        out.contains(&format!(
            "; media to 127.0.0.1:{media} RTP/SAVP AES_CM_128_HMAC_SHA1_80\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "FAIL media    nothing came back: 0 of 50 packets echoed; 50 packets came back as \
             our own SRTP, unchanged"
        ),
        "{out}"
    );
    assert!(out.contains("PASS bye      SIP/2.0 200 OK in "), "{out}");
    assert!(out.contains("connectivity test failed: media:"), "{out}");
    let status = uas.wait();
    assert!(status.success(), "sipp {status}\n{}", dump(&env.dir));
    let log = std::fs::read_to_string(env.dir.join("uas_msg.log")).unwrap_or_default();
    let invite = log
        .split("-----------------------------------------------")
        .find(|m| m.contains("INVITE sip:echo@"))
        .unwrap();
    assert!(invite.contains(" RTP/SAVP 0 101"), "{invite}");
    assert!(
        invite.contains("a=crypto:1 AEAD_AES_128_GCM inline:"),
        "{invite}"
    );
    assert!(
        invite.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{invite}"
    );
}

/// R-CERT-7 from the other side: the far end refuses *our* certificate (issued by a CA it
/// does not trust): exit 5, and the TLS step says the far end refused our certificate.
#[test]
fn far_end_refusing_our_certificate_is_reported() {
    let env = Env::new();
    let pki = env.pki();
    std::fs::remove_file(env.certs.join("client.crt")).unwrap();
    std::fs::remove_file(env.certs.join("client.key")).unwrap();
    pki.foreign.write_to(&env.certs, "foreign");
    std::fs::write(env.trust.join("foreign.pem"), &pki.foreign_root_pem).unwrap();
    let base = free_ports(4);
    let (backend, tls_port) = (base, base + 1);
    let _hold = TcpListener::bind((LOCALHOST, backend)).unwrap();
    let _st = stunnel_server(&env.dir, tls_port, backend);
    wait_listening(tls_port, &env.dir);
    let o = env.test(&[
        "--secured",
        "true",
        "--target",
        &format!("sip:probe@127.0.0.1:{tls_port}"),
        "--timeout",
        "3",
    ]);
    assert_exit(&o, 5, &env.dir);
    let out = text(&o);
    // With TLS 1.3 the verdict comes after the handshake; it is still the TLS step that fails.
    assert!(
        out.contains("FAIL tls      the far end refused our certificate (TLS alert "),
        "{out}"
    );
    assert!(out.contains("CN=foreign.test"), "{out}");
    assert!(out.contains("SKIP options  not run: tls failed"), "{out}");
}

/// A secured test needs a certificate to present: an empty store exits 4 (as `cert show`), a
/// missing trust store directory exits 3, before any connection is made.
#[test]
fn secured_test_needs_our_certificate_and_a_trust_store() {
    let env = Env::new();
    let target = "sip:probe@127.0.0.1:5061";
    let o = env.test(&["--secured", "true", "--target", target]);
    assert_exit(&o, 4, &env.dir);
    assert!(text(&o).contains("no usable certificate"), "{}", text(&o));
    env.pki();
    std::fs::remove_dir_all(&env.trust).unwrap();
    let o = env.test(&["--secured", "true", "--target", target]);
    assert_exit(&o, 3, &env.dir);
    assert!(text(&o).contains("--trust-dir"), "{}", text(&o));
}
