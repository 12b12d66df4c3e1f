//! End-to-end harness: the real `mediagate run` binary with a TOML configuration, real peers
//! (baresip from Debian `baresip-core`, SIPp from `sip-tester`), tcpdump captures checked with
//! pylibsrtp. Everything on 127.0.0.0/8 with ports found free at run time; every process runs
//! under `timeout` and is stopped by PID.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use mediagate_pki::testpki::{Leaf, LeafSpec, TestPki};

pub use mediagate_test_support::{LOCALHOST, Proc, free_ports, require, wait_until};

/// The repository's `testdata/`.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// One GET on the admin HTTP; returns (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_owned())?;
    Some((code, body))
}

/// The value of a Prometheus sample line `name{labels} value` (exact prefix match).
pub fn metric(body: &str, sample: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Writes an 8 kHz mono 16-bit WAV of `secs` seconds of a 440 Hz tone (baresip's aufile
/// source).
pub fn write_tone(path: &Path, secs: u32) {
    let n = 8000 * secs as usize;
    let mut data = Vec::with_capacity(n * 2);
    for i in 0..n {
        let v = (f64::sin(i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0) * 8000.0) as i16;
        data.extend_from_slice(&v.to_le_bytes());
    }
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}

/// The private PKI of one test run: a root, the gateway's certificate and one per peer.
pub struct LabPki {
    pub pki: TestPki,
}

impl LabPki {
    #[allow(clippy::disallowed_methods)] // the gateway and baresip judge validity by the real clock
    pub fn new() -> LabPki {
        LabPki {
            pki: TestPki::generate(SystemTime::now()),
        }
    }

    /// A CA-issued serverAuth+clientAuth leaf for `dns` (and 127.0.0.1).
    pub fn leaf(&self, dns: &str) -> Leaf {
        let mut spec = LeafSpec::new(dns, self.pki.now(), 90);
        spec.ips.push(LOCALHOST);
        self.pki.issue(&spec)
    }

    /// Cert chain and key in one PEM (baresip's `sip_certificate`).
    pub fn write_combined(leaf: &Leaf, path: &Path) {
        std::fs::write(path, format!("{}{}", leaf.chain_pem, leaf.key_pem)).unwrap();
    }
}

/// Ports of one run, all from one free block.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub base: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            base: free_ports(200),
        }
    }
    /// Gateway SIP UDP/TCP.
    pub fn sip(&self) -> u16 {
        self.base
    }
    /// Gateway SIP TLS.
    pub fn tls(&self) -> u16 {
        self.base + 1
    }
    /// Admin HTTP.
    pub fn admin(&self) -> u16 {
        self.base + 2
    }
    /// Gateway media range (40 ports).
    pub fn media(&self) -> (u16, u16) {
        (self.base + 40, self.base + 79)
    }
    /// A peer's SIP port (`i` < 10; TLS = +1).
    pub fn peer_sip(&self, i: u16) -> u16 {
        self.base + 10 + 2 * i
    }
    /// A peer's media range (10 ports each).
    pub fn peer_media(&self, i: u16) -> (u16, u16) {
        (self.base + 100 + 10 * i, self.base + 109 + 10 * i)
    }
}

/// A running gateway.
pub struct Gateway {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
    pub proc: Proc,
}

impl Gateway {
    /// Writes `toml` to `<dir>/gateway.toml` and starts `mediagate run --config` on it; waits
    /// until `/health` answers.
    pub fn start(dir: &Path, ports: Ports, toml: &str) -> Gateway {
        Gateway::start_with(dir, ports, toml, &[])
    }

    /// [`Gateway::start`] with extra `run` options.
    pub fn start_with(dir: &Path, ports: Ports, toml: &str, extra: &[&str]) -> Gateway {
        let config = dir.join("gateway.toml");
        std::fs::write(&config, toml).unwrap();
        let mut args = vec![
            "run".to_owned(),
            "--config".into(),
            config.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn("gateway", 300, env!("CARGO_BIN_EXE_mediagate"), &args, dir);
        let gw = Gateway {
            dir: dir.to_owned(),
            config,
            ports,
            proc,
        };
        for _ in 0..200 {
            if http_get(ports.admin(), "/health").is_some() {
                return gw;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not come up:\n{}", gw.proc.output());
    }

    pub fn metrics(&self) -> String {
        http_get(self.ports.admin(), "/metrics")
            .map(|x| x.1)
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }
}

/// One baresip instance.
pub struct Baresip {
    pub dir: PathBuf,
    pub proc: Proc,
}

/// How to set up a baresip.
pub struct BaresipSpec<'a> {
    /// Instance name (its directory and log).
    pub name: &'a str,
    /// Local IP of its SIP listener, and SIP port (UDP/TCP; TLS = +1). Media is always on
    /// 127.0.0.1: baresip binds its RTP socket to the wildcard address and puts
    /// `net_interface` in its SDP, and on loopback the kernel sends from 127.0.0.1, so any
    /// other `net_interface` would make its RTP come from an address its SDP does not name,
    /// which the gateway refuses on plain legs (no RTP bleed).
    pub ip: &'a str,
    pub sip_port: u16,
    pub rtp_ports: (u16, u16),
    /// Client/server certificate (cert + key PEM) and CA file, for TLS.
    pub cert: Option<&'a Leaf>,
    pub ca_pem: Option<&'a str>,
    /// Account parameters after the AOR (`;regint=0;mediaenc=srtp-mand;...`).
    pub account: String,
    /// `/dial` target, or None for a callee.
    pub dial: Option<String>,
    /// Quit after this many seconds.
    pub quit_after: u32,
}

impl Baresip {
    pub fn start(base: &Path, spec: &BaresipSpec<'_>) -> Baresip {
        require("baresip", "baresip-core");
        let dir = base.join(spec.name);
        std::fs::create_dir_all(&dir).unwrap();
        write_tone(&dir.join("tone.wav"), 30);
        let mut config = format!(
            "poll_method epoll\n\
             sip_listen {ip}:{port}\n\
             net_interface 127.0.0.1\n\
             audio_source aufile,{tone}\n\
             audio_player aufile,{heard}\n\
             audio_alert aufile,{alert}\n\
             rtp_ports {r0}-{r1}\n\
             rtcp_mux no\n\
             rtp_stats yes\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module srtp.so\n\
             module_tmp account.so\n\
             module_app menu.so\n",
            ip = spec.ip,
            port = spec.sip_port,
            tone = dir.join("tone.wav").display(),
            heard = dir.join("heard.wav").display(),
            alert = dir.join("alert.wav").display(),
            r0 = spec.rtp_ports.0,
            r1 = spec.rtp_ports.1,
        );
        if let Some(leaf) = spec.cert {
            let pem = dir.join("cert.pem");
            LabPki::write_combined(leaf, &pem);
            config.push_str(&format!("sip_certificate {}\n", pem.display()));
        }
        if let Some(ca) = spec.ca_pem {
            let p = dir.join("ca.crt");
            std::fs::write(&p, ca).unwrap();
            config.push_str(&format!("sip_cafile {}\n", p.display()));
        }
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@{ip}>{params}\n",
                name = spec.name,
                ip = spec.ip,
                params = spec.account
            ),
        )
        .unwrap();
        std::fs::write(dir.join("contacts"), "").unwrap();
        let mut args = vec![
            "-f".to_owned(),
            dir.display().to_string(),
            "-s".into(),
            "-v".into(),
            "-t".into(),
            spec.quit_after.to_string(),
        ];
        if let Some(d) = &spec.dial {
            args.push("-e".into());
            args.push(format!("/dial {d}"));
        }
        let proc = Proc::spawn("baresip", spec.quit_after + 10, "baresip", &args, &dir);
        Baresip { dir, proc }
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }

    /// Waits for the process to quit on its own (`-t`).
    pub fn finish(&mut self, secs: u64) -> String {
        self.proc.wait_for(secs);
        self.log()
    }
}

/// baresip's `audio ... Transmit/Receive packets` counters from its `rtp_stats` table.
pub fn baresip_packets(log: &str) -> (u64, u64) {
    // Lines like: "audio           Transmit:     Receive:\n packets:  350  348"
    let mut tx = 0;
    let mut rx = 0;
    for l in log.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("packets:") {
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() >= 2 {
                tx = v[0];
                rx = v[1];
            }
        }
    }
    (tx, rx)
}

/// The `m=audio` port and `a=crypto` inline key lines of every SDP in a SIP trace, in order.
pub fn sdp_cryptos(log: &str) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    let mut port = 0u16;
    for l in log.lines() {
        let t = l.trim();
        if let Some(m) = t.strip_prefix("m=audio ") {
            port = m
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
        }
        if let Some(c) = t.strip_prefix("a=crypto:") {
            let mut f = c.split_whitespace();
            let _tag = f.next();
            let suite = f.next().unwrap_or_default().to_owned();
            let key = f
                .next()
                .and_then(|k| k.strip_prefix("inline:"))
                .map(|k| k.split('|').next().unwrap_or(k).to_owned())
                .unwrap_or_default();
            out.push((port, suite, key));
        }
    }
    out
}

/// tcpdump on `lo` for UDP in a port range, writing `<dir>/<name>.pcap`.
pub struct Capture {
    pub path: PathBuf,
    proc: Proc,
}

impl Capture {
    pub fn start(dir: &Path, name: &str, ports: (u16, u16)) -> Capture {
        require("tcpdump", "tcpdump");
        let path = dir.join(format!("{name}.pcap"));
        let proc = Proc::spawn(
            &format!("tcpdump-{name}"),
            120,
            "tcpdump",
            &[
                "-i".into(),
                "lo".into(),
                "-n".into(),
                "-U".into(),
                "-Z".into(),
                "root".into(),
                "-w".into(),
                path.display().to_string(),
                format!("udp and portrange {}-{}", ports.0, ports.1),
            ],
            dir,
        );
        let log = proc.log.clone();
        wait_until(10, "tcpdump to start", || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
        });
        Capture { path, proc }
    }

    /// Stops the capture and returns the pcap path.
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        self.proc.signal("INT");
        self.proc.wait_for(5);
        self.path.clone()
    }
}

/// Runs the `mediagate` binary with `args` in `cwd`; returns its exit code and its stdout
/// followed by its stderr.
pub fn mediagate<S: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[S]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `tests/srtp_pcap_check.py` with the system Python (where Debian's pylibsrtp lives);
/// returns its JSON report as text (panics with its output when it fails).
pub fn check_pcap(args: &[String]) -> String {
    require("/usr/bin/python3", "python3-pylibsrtp");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/srtp_pcap_check.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pcap check failed: {text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pcap check's report as JSON.
pub fn check_pcap_json(args: &[String]) -> serde_json::Value {
    serde_json::from_str(&check_pcap(args)).unwrap()
}
