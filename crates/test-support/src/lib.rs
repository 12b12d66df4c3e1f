//! What the integration tests of several crates share: real peers (SIPp, stunnel, baresip,
//! tcpdump, the `mediagate` binary) run as child processes under `timeout` with their output in a
//! file, ports found free at run time on 127.0.0.1, and a clear failure (never a skip) when a
//! tool is missing. Test code: it panics on anything unexpected, and a panic is the test's
//! failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// 127.0.0.1: every test peer listens here.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Fails (never skips) with the Debian package to install when a tool is missing.
pub fn require(bin: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` not found: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

/// `n` consecutive ports free for both TCP and UDP on 127.0.0.1.
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..500 {
        let base = {
            let s = UdpSocket::bind((LOCALHOST, 0)).unwrap();
            s.local_addr().unwrap().port() & !1
        };
        if base < 10_000 || base.checked_add(n).is_none_or(|end| end > 60_000) {
            continue;
        }
        let ok = (base..base + n).all(|p| {
            TcpListener::bind((LOCALHOST, p)).is_ok() && UdpSocket::bind((LOCALHOST, p)).is_ok()
        });
        if ok {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// A child process under `timeout`, output to `<dir>/<name>.out`, stopped by PID (TERM, then
/// KILL) on drop.
pub struct Proc {
    /// What the test calls it; also the log file's stem.
    pub name: String,
    /// `<dir>/<name>.out`: the process's stdout and stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `program` with `args` in `cwd`, killed by `timeout` after `secs` seconds.
    pub fn spawn(name: &str, secs: u32, program: &str, args: &[String], cwd: &Path) -> Proc {
        let log = cwd.join(format!("{name}.out"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("timeout")
            .arg("-k")
            .arg("2")
            .arg(secs.to_string())
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Proc {
            name: name.into(),
            log,
            child: Some(child),
        }
    }

    /// Waits for the process (bounded by its `timeout`).
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// The PID of the `timeout` wrapper (0 once waited for).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal to the program itself, not to its `timeout` wrapper: `timeout` would
    /// forward it but then, with `-k`, KILL the program two seconds later.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let child = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| pid.to_string());
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child)
            .status();
    }

    /// Waits up to `secs` for the process to exit; returns its exit code (None: still running
    /// or killed by a signal).
    pub fn wait_for(&mut self, secs: u64) -> Option<i32> {
        let c = self.child.as_mut()?;
        for _ in 0..secs * 20 {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Everything the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                for _ in 0..60 {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Waits until `cond` holds (polling every 50 ms) or panics after `secs` with `what`.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs}s waiting for {what}");
}
