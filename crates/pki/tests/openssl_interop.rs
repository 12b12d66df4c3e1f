//! Interop with OpenSSL (`openssl` CLI, Debian package `openssl`): `s_client` against our TLS
//! server with and without a client certificate, over TLS 1.2 and 1.3, and our client against
//! `s_server -Verify 1`. Also checks our thumbprints against `openssl x509`.
//!
//! These tests FAIL (they do not skip) when `openssl` is missing.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mediagate_pki::testpki::{Leaf, TestPki};
use mediagate_pki::{CertFacts, RefusalReason};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Kills and reaps the child when dropped, so a failing test leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl() -> Command {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the `openssl` command-line tool is required by the interop tests and was not found \
         (Debian: apt-get install openssl)"
    );
    Command::new("openssl")
}

/// Files for OpenSSL: root, intermediate, and leaf/key pairs written separately.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(pki: &TestPki) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), &pki.root_pem).unwrap();
        std::fs::write(dir.path().join("foreign-root.pem"), &pki.foreign_root_pem).unwrap();
        std::fs::write(dir.path().join("intermediate.pem"), &pki.intermediate_pem).unwrap();
        Self { dir }
    }

    fn leaf(&self, name: &str, leaf: &Leaf) -> (String, String) {
        let c = self.dir.path().join(format!("{name}.pem"));
        let k = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&c, &leaf.cert_pem).unwrap();
        std::fs::write(&k, &leaf.key_pem).unwrap();
        (path(&c), path(&k))
    }

    fn file(&self, name: &str) -> String {
        path(&self.dir.path().join(name))
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `s_client` to completion (at most 20 s) and returns its stdout+stderr.
fn run_s_client(port: u16, files: &Files, client: Option<(&str, &str)>, version: &str) -> String {
    let mut cmd = openssl();
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "server.test",
            "-verify_hostname",
            "server.test",
        ])
        .args([
            "-CAfile",
            &files.file("root.pem"),
            "-verify_return_error",
            version,
        ]);
    if let Some((cert, key)) = client {
        cmd.args([
            "-cert",
            cert,
            "-key",
            key,
            "-cert_chain",
            &files.file("intermediate.pem"),
        ]);
    }
    let mut child = Reaped(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_client"),
    );
    // "quit" makes our echo server close the connection, which ends s_client.
    let mut stdin = child.0.stdin.take().unwrap();
    let _ = stdin.write_all(b"quit\n");
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "openssl s_client did not finish in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    format!("{}\n{}", out.join().unwrap(), err.join().unwrap())
}

async fn s_client_case(version: &str, with_cert: bool) {
    let pki = TestPki::generate(real_now());
    let files = Files::new(&pki);
    let (cert, key) = files.leaf("client", &pki.client);
    let (server, _, _) = our_server(&pki.server, vec![pki.root_der()], pki.now());
    let (addr, mut rx) = start_server(server).await;
    let version_owned = version.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let client = with_cert.then_some((cert.as_str(), key.as_str()));
        run_s_client(addr.port(), &files, client, &version_owned)
    })
    .await
    .unwrap();
    let v = verdict(&mut rx).await;
    let proto = if version == "-tls1_2" {
        "TLSv1.2"
    } else {
        "TLSv1.3"
    };
    if with_cert {
        match v {
            Accepted::Ok(Some(id)) => assert_eq!(id.fqdns, vec!["pbx.test".to_string()]),
            other => {
                panic!("s_client with a certificate must be accepted, got {other:?}\n{output}")
            }
        }
        assert!(
            output.contains(GREETING.trim_end()),
            "greeting reached s_client:\n{output}"
        );
        assert!(
            output.contains("Verify return code: 0 (ok)"),
            "s_client verified us:\n{output}"
        );
        assert!(output.contains(proto), "negotiated {proto}:\n{output}");
    } else {
        match v {
            Accepted::Refused(reason, _) => assert_eq!(reason, Some(RefusalReason::NoCertificate)),
            other => {
                panic!("s_client without a certificate must be refused, got {other:?}\n{output}")
            }
        }
        assert!(
            !output.contains(GREETING.trim_end()),
            "no application data without a client cert"
        );
    }
}

#[tokio::test]
async fn s_client_tls12_with_client_certificate_is_accepted() {
    s_client_case("-tls1_2", true).await;
}

#[tokio::test]
async fn s_client_tls13_with_client_certificate_is_accepted() {
    s_client_case("-tls1_3", true).await;
}

#[tokio::test]
async fn s_client_tls12_without_client_certificate_is_refused() {
    s_client_case("-tls1_2", false).await;
}

#[tokio::test]
async fn s_client_tls13_without_client_certificate_is_refused() {
    s_client_case("-tls1_3", false).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `s_server -www -Verify 1` and waits for its ACCEPT line.
fn start_s_server(files: &Files, server: &Leaf, client_ca: &str, version: &str) -> (Reaped, u16) {
    let (cert, key) = files.leaf("server", server);
    for _attempt in 0..5 {
        let port = free_port();
        let mut child = Reaped(
            openssl()
                .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www"])
                .args([
                    "-cert",
                    &cert,
                    "-key",
                    &key,
                    "-cert_chain",
                    &files.file("intermediate.pem"),
                ])
                .args([
                    "-CAfile",
                    &files.file(client_ca),
                    "-Verify",
                    "1",
                    "-verify_return_error",
                ])
                .arg(version)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn openssl s_server"),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("ACCEPT") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
            return (child, port);
        }
        // Port taken between probe and bind, or slow start: try another port.
    }
    panic!("openssl s_server did not start");
}

/// Our client config does a request against s_server -www; returns the response.
async fn our_client_request(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
) -> Result<String, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from(name.to_owned()).unwrap(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))??;
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    tls.flush().await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut body))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn s_server_case(version: &str) {
    let pki = TestPki::generate(real_now());
    let files = Files::new(&pki);
    let (_child, port) = start_s_server(&files, &pki.server, "root.pem", version);
    let (client, _, _) = our_client(&pki.client, vec![pki.root_der()], pki.now());
    let page = our_client_request(client, port, "server.test")
        .await
        .expect("our client is accepted by s_server -Verify 1");
    assert!(page.contains("200 ok"), "{page}");
    let proto = if version == "-tls1_2" {
        "TLSv1.2"
    } else {
        "TLSv1.3"
    };
    assert!(page.contains(proto), "negotiated {proto}: {page}");
}

#[tokio::test]
async fn our_client_against_s_server_tls12() {
    s_server_case("-tls1_2").await;
}

#[tokio::test]
async fn our_client_against_s_server_tls13() {
    s_server_case("-tls1_3").await;
}

#[tokio::test]
async fn our_client_refuses_an_untrusted_s_server_and_s_server_refuses_an_untrusted_client() {
    let pki = TestPki::generate(real_now());
    let files = Files::new(&pki);
    {
        // s_server presents a leaf from the foreign CA: we refuse it.
        let (_child, port) = start_s_server(&files, &pki.foreign, "root.pem", "-tls1_3");
        let (client, _, _) = our_client(&pki.client, vec![pki.root_der()], pki.now());
        let err = our_client_request(client, port, "foreign.test")
            .await
            .expect_err("refused");
        assert_eq!(reason_of(&err), Some(RefusalReason::UnknownIssuer), "{err}");
    }
    {
        // s_server only trusts the foreign root: it refuses our certificate.
        let (_child, port) = start_s_server(&files, &pki.server, "foreign-root.pem", "-tls1_2");
        let (client, _, _) = our_client(&pki.client, vec![pki.root_der()], pki.now());
        our_client_request(client, port, "server.test")
            .await
            .expect_err("s_server -Verify must refuse a client cert it does not trust");
    }
}

#[test]
fn thumbprints_and_serial_match_openssl() {
    let pki = TestPki::generate(real_now());
    let files = Files::new(&pki);
    let (cert, _) = files.leaf("server", &pki.server);
    let out = openssl()
        .args([
            "x509",
            "-noout",
            "-serial",
            "-fingerprint",
            "-sha1",
            "-in",
            &cert,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let sha256 = openssl()
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &cert])
        .output()
        .unwrap();
    let sha256 = String::from_utf8(sha256.stdout).unwrap();
    let facts = CertFacts::from_der(&pki.server.chain()[0]).unwrap();
    let value = |s: &str, key: &str| -> String {
        s.lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&key.to_ascii_lowercase())
            })
            .map(|l| &l[key.len()..])
            .unwrap_or_else(|| panic!("{key} in {s}"))
            .replace(':', "")
            .to_ascii_uppercase()
    };
    assert_eq!(facts.sha1_thumbprint, value(&text, "SHA1 Fingerprint="));
    assert_eq!(
        facts.sha256_fingerprint,
        value(&sha256, "SHA256 Fingerprint=")
    );
    assert_eq!(
        facts.serial.trim_start_matches('0'),
        value(&text, "serial=").trim_start_matches('0')
    );
}
