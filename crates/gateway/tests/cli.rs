//! `mediagate cert …` and `mediagate trust …` end to end in temporary directories (R-CERT-8),
//! including a private PKI run with the `openssl` CLI (required: Debian package `openssl`).
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mediagate_pki::testpki::TestPki;

const BIN: &str = env!("CARGO_BIN_EXE_mediagate");

struct Env {
    _root: tempfile::TempDir,
    base: PathBuf,
    certs: PathBuf,
    trust: PathBuf,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().to_owned();
        let certs = base.join("certs");
        let trust = base.join("trust");
        std::fs::create_dir(&certs).unwrap();
        std::fs::create_dir(&trust).unwrap();
        Self {
            _root: root,
            base,
            certs,
            trust,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--cert-dir")
            .arg(&self.certs)
            .arg("--trust-dir")
            .arg(&self.trust)
            .args(args)
            .current_dir(&self.base)
            .output()
            .expect("run mediagate")
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let p = self.base.join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into_owned()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Every file under `dir` with its bytes, to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn openssl(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the `openssl` command-line tool is required (Debian: apt-get install openssl): {e}"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha1_of(file: &Path, cwd: &Path) -> String {
    let out = openssl(
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha1",
            "-in",
            file.to_str().unwrap(),
        ],
        cwd,
    );
    out.trim()
        .split('=')
        .nth(1)
        .unwrap()
        .replace(':', "")
        .to_ascii_uppercase()
}

fn real_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

#[test]
fn private_pki_round_trip_request_sign_import_show_export_trust() {
    let env = Env::new();
    let b = &env.base;
    // A private CA made with OpenSSL, as an administrator would.
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Example Private Root",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        b,
    );

    // 1. Key + CSR.
    let o = env.run(&[
        "cert",
        "request",
        "--fqdn",
        "gw.example.com",
        "--san",
        "192.0.2.7",
        "--san",
        "sip.example.com",
    ]);
    assert_exit(&o, 0);
    let key = env.certs.join("pending/gw.example.com.key");
    let csr = env.certs.join("pending/gw.example.com.csr");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let csr_text = openssl(
        &[
            "req",
            "-in",
            csr.to_str().unwrap(),
            "-noout",
            "-text",
            "-verify",
        ],
        b,
    );
    assert!(csr_text.contains("DNS:gw.example.com"), "{csr_text}");
    assert!(csr_text.contains("IP Address:192.0.2.7"), "{csr_text}");

    let o = env.run(&["cert", "show"]);
    assert_exit(&o, 4);
    assert!(
        stdout(&o).contains("pending/gw.example.com.key"),
        "{}",
        stdout(&o)
    );

    // A second request for the same name must not overwrite the pending key.
    let before = snapshot(&env.certs);
    let o = env.run(&["cert", "request", "--fqdn", "gw.example.com"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("already pending"), "{}", stderr(&o));
    assert_eq!(snapshot(&env.certs), before);

    // 2. The CA signs it (copying the requested SANs and EKU).
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "20",
            "-copy_extensions",
            "copy",
            "-out",
            "signed.pem",
        ],
        b,
    );
    let signed = b.join("signed.pem");
    let thumb = sha1_of(&signed, b);

    // 3. Import: the pending key is found and moved in.
    let o = env.run(&["cert", "import", signed.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(&thumb), "{}", stdout(&o));
    assert!(!key.exists(), "pending key consumed");
    let installed: Vec<_> = std::fs::read_dir(&env.certs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(installed.len(), 2, "{installed:?}");
    let key_file = installed
        .iter()
        .find(|p| p.extension().unwrap() == "key")
        .unwrap();
    assert_eq!(
        std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Importing it again changes nothing.
    let before = snapshot(&env.certs);
    let o = env.run(&["cert", "import", signed.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(snapshot(&env.certs), before);

    // 4. Show: the CA-issued certificate is in use, with the facts admins compare.
    let o = env.run(&["cert", "show"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains(&thumb),
        "SHA-1 thumbprint as openssl prints it (no colons): {out}"
    );
    assert!(out.contains("CA-issued"), "{out}");
    assert!(out.contains("Example Private Root"), "{out}");
    assert!(out.contains("DNS:sip.example.com"), "{out}");

    // 5. Export for the PBX; never overwrite.
    let o = env.run(&["cert", "export", "--out", "gw-export.pem"]);
    assert_exit(&o, 0);
    assert_eq!(sha1_of(&b.join("gw-export.pem"), b), thumb);
    std::fs::write(b.join("exists.pem"), "precious").unwrap();
    let o = env.run(&["cert", "export", "--out", "exists.pem"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("exists.pem"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(b.join("exists.pem")).unwrap(),
        "precious"
    );

    // 6. Trust the private root; import is idempotent; list shows it.
    let o = env.run(&["trust", "import", "ca.pem"]);
    assert_exit(&o, 0);
    let o = env.run(&["trust", "import", "ca.pem"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("Already trusted"), "{}", stdout(&o));
    let o = env.run(&["trust", "list"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("Example Private Root"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("(1)"), "{}", stdout(&o));
    // And openssl agrees the exported certificate chains to the trusted root.
    let verify = openssl(&["verify", "-CAfile", "ca.pem", "gw-export.pem"], b);
    assert!(verify.contains("OK"), "{verify}");
}

#[test]
fn bad_certificate_imports_are_refused_with_the_file_and_reason_and_change_nothing() {
    let env = Env::new();
    let pki = TestPki::generate(real_now());
    // A usable certificate already installed, which must survive every failed import.
    pki.server.write_to(&env.certs, "current");
    let before = snapshot(&env.certs);

    let garbage = env.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n",
    );
    let text = env.write("notes.pem", "just some text\n");
    let mismatch = env.write(
        "mismatch.pem",
        &format!("{}{}", pki.client.chain_pem, pki.server.key_pem),
    );
    let nokey = env.write("nokey.pem", &pki.client.chain_pem);
    let expired = env.write(
        "expired.pem",
        &format!("{}{}", pki.expired.chain_pem, pki.expired.key_pem),
    );
    let future = env.write(
        "future.pem",
        &format!(
            "{}{}",
            pki.not_yet_valid.chain_pem, pki.not_yet_valid.key_pem
        ),
    );
    let server_only = env.write(
        "serveronly.pem",
        &format!("{}{}", pki.server_only.chain_pem, pki.server_only.key_pem),
    );
    let cases: [(&str, &str, &str); 8] = [
        (&garbage, "garbage.pem", "malformed PEM"),
        (&text, "notes.pem", "no PEM certificate or private key"),
        (&mismatch, "mismatch.pem", "does not match"),
        (&nokey, "nokey.pem", "no private key"),
        (&expired, "expired.pem", "expired"),
        (&future, "future.pem", "not valid yet"),
        (
            &server_only,
            "serveronly.pem",
            "does not allow both serverAuth and clientAuth",
        ),
        (
            "/nonexistent/signed.pem",
            "/nonexistent/signed.pem",
            "cannot read",
        ),
    ];
    for (path, name, reason) in cases {
        let o = env.run(&["cert", "import", path]);
        assert_exit(&o, 2);
        let err = stderr(&o);
        assert!(err.contains(name), "error names the file {name}: {err}");
        assert!(
            err.contains(reason),
            "error for {name} says {reason:?}: {err}"
        );
        assert_eq!(snapshot(&env.certs), before, "{name}: store unchanged");
    }

    // A good import with the key in the file works next to it.
    let good = env.write(
        "good.pem",
        &format!("{}{}", pki.client.chain_pem, pki.client.key_pem),
    );
    assert_exit(&env.run(&["cert", "import", &good]), 0);
}

#[test]
fn show_lists_unusable_candidates_with_reasons_and_exit_4_when_none_usable() {
    let env = Env::new();
    let pki = TestPki::generate(real_now());
    pki.expired.write_to(&env.certs, "old");
    std::fs::write(env.certs.join("broken.crt"), "garbage").unwrap();
    let o = env.run(&["cert", "show"]);
    assert_exit(&o, 4);
    let out = stdout(&o);
    assert!(out.contains("old.crt: expired"), "{out}");
    assert!(out.contains("broken.crt: unreadable"), "{out}");
    assert_exit(&env.run(&["cert", "export", "--out", "x.pem"]), 4);
    assert!(!env.base.join("x.pem").exists());

    // Ranked output once usable certificates exist: CA-issued before self-signed.
    pki.self_signed.write_to(&env.certs, "ss");
    pki.server.write_to(&env.certs, "ca");
    let o = env.run(&["cert", "show"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    let ca = out.find("1. ").unwrap();
    let ss = out.find("2. ").unwrap();
    assert!(
        out[ca..ss].contains("ca.crt") && out[ss..].contains("ss.crt"),
        "{out}"
    );
}

#[test]
fn missing_directories_and_usage_errors() {
    let env = Env::new();
    for args in [
        &["--cert-dir", "/nonexistent/mg-certs", "cert", "show"][..],
        &[
            "--cert-dir",
            "/nonexistent/mg-certs",
            "cert",
            "request",
            "--fqdn",
            "gw.example.com",
        ][..],
        &["--trust-dir", "/nonexistent/mg-trust", "trust", "list"][..],
    ] {
        let o = Command::new(BIN)
            .args(args)
            .current_dir(&env.base)
            .output()
            .unwrap();
        assert_exit(&o, 3);
        assert!(
            stderr(&o).contains("/nonexistent/mg-"),
            "names the directory: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    }
    // No command means `run`; an unknown one is a usage error.
    assert_exit(&env.run(&["frobnicate"]), 1);
    assert_exit(&env.run(&["cert", "frobnicate"]), 1);
    assert_exit(&env.run(&["cert", "request"]), 1);
    let o = env.run(&["cert", "request", "--fqdn", "bad name!"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("bad name!"), "{}", stderr(&o));
    assert_exit(&env.run(&["--help"]), 0);
}

#[test]
fn trust_import_refuses_non_roots_expired_and_garbage() {
    let env = Env::new();
    let pki = TestPki::generate(real_now());
    let leaf = env.write("leaf.pem", &pki.client.cert_pem);
    let o = env.run(&["trust", "import", &leaf]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("neither a CA certificate nor self-signed"),
        "{}",
        stderr(&o)
    );
    let garbage = env.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    );
    let o = env.run(&["trust", "import", &garbage]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("garbage.pem"), "{}", stderr(&o));
    // A root + a leaf in one file: nothing is written (all validated first).
    let mixed = env.write(
        "mixed.pem",
        &format!("{}{}", pki.root_pem, pki.client.cert_pem),
    );
    assert_exit(&env.run(&["trust", "import", &mixed]), 2);
    assert!(snapshot(&env.trust).is_empty());

    // Roots and a peer's self-signed certificate are accepted.
    let root = env.write("root.pem", &pki.root_pem);
    assert_exit(&env.run(&["trust", "import", &root]), 0);
    let peer = env.write("peer.pem", &pki.self_signed.cert_pem);
    assert_exit(&env.run(&["trust", "import", &peer]), 0);
    let o = env.run(&["trust", "list"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("self-signed peer"), "{}", stdout(&o));

    // A broken file in the trust store is reported by name.
    std::fs::write(env.trust.join("broken.pem"), "garbage").unwrap();
    let o = env.run(&["trust", "list"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("broken.pem"), "{}", stderr(&o));
}
