//! Call-rate load: SIPp UAC → B2BUA (in process, fake media) → SIPp UAS over TCP, at
//! increasing rates; reports the highest rate with zero failed calls and SIPp's response-time
//! percentiles (INVITE → 200, measured by the caller).
//!
//! Not part of the default run (it takes a minute and wants a release build):
//! `scripts/sipp-load.sh` or
//! `cargo test --release -p mediagate-sip --test load -- --ignored --nocapture`.
//! `LOAD_RATES=500,1000,1500` and `LOAD_SECONDS=5` override the steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mediagate_sip::VoipSecurity;
use mediagate_sip_proto::TransportKind;

struct Step {
    rate: u32,
    calls: u32,
    achieved: f64,
    ok: bool,
    successful: u64,
    failed: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn stat(screen: &str, label: &str) -> u64 {
    // "  Successful call    |        0                  |     5000"
    screen
        .lines()
        .filter(|l| l.trim_start().starts_with(label))
        .filter_map(|l| l.rsplit('|').next()?.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

fn percentiles(dir: &std::path::Path) -> (f64, f64, f64, f64) {
    let mut v: Vec<f64> = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with("_rtt.csv") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines().skip(1) {
            if let Some(ms) = line.split(';').nth(1).and_then(|f| f.trim().parse().ok()) {
                v.push(ms);
            }
        }
    }
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9), p(0.99), v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "load test: run scripts/sipp-load.sh (release build)"]
async fn sipp_call_rate_over_tcp() {
    require("sipp", "sip-tester");
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mediagate_sip=warn")
        .try_init();
    let rates: Vec<u32> = std::env::var("LOAD_RATES")
        .unwrap_or_else(|_| "500,1000,2000,3000,4000,5000,6000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seconds: u32 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut steps = Vec::new();
    for rate in rates {
        let dir = tempfile::tempdir().unwrap();
        let base = free_ports(10);
        let (uas_port, uac_port, uas_media, uac_media) = (base, base + 1, base + 2, base + 6);
        let (gw, _media) = gateway(
            plain_transport(),
            vec![plan("plain", VoipSecurity::Unsecured, "uas")],
            vec![
                peer("uac", "127.0.0.1", uac_port, TransportKind::Tcp, "plain"),
                peer("uas", "127.0.0.1", uas_port, TransportKind::Tcp, "plain"),
            ],
            vec![5061],
        )
        .await;
        let calls = rate * seconds;
        // Local copies: SIPp writes <scenario>_<pid>_rtt.csv next to the scenario name.
        for f in ["uac.xml", "uas.xml"] {
            std::fs::copy(testdata().join(f), dir.path().join(f)).unwrap();
        }
        let uas_args: Vec<String> = [
            "-sf",
            "uas.xml",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &uas_media.to_string(),
            "-nostdin",
            "-max_socket",
            "4096",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let uas = Proc::spawn("sipp-uas", seconds + 60, "sipp", &uas_args, dir.path());
        wait_listening(uas_port, false, dir.path()).await;
        let target = gw.local_addr(TransportKind::Tcp).unwrap().to_string();
        let uac_args: Vec<String> = [
            target.as_str(),
            "-sf",
            "uac.xml",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &uac_media.to_string(),
            "-s",
            "100",
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            &(rate * 4).to_string(),
            "-d",
            "0",
            "-nostdin",
            "-timeout",
            &format!("{}s", seconds + 30),
            "-timeout_error",
            "-trace_screen",
            "-screen_file",
            "uac_screen.log",
            "-trace_rtt",
            "-rtt_freq",
            "100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t0 = tokio::time::Instant::now();
        let uac = Proc::spawn("sipp-uac", seconds + 45, "sipp", &uac_args, dir.path());
        let status = wait(uac).await;
        // Achieved rate: SIPp slows down rather than fail when it cannot keep up.
        let elapsed = t0.elapsed().as_secs_f64();
        drop(uas);
        let screen = read(dir.path(), "uac_screen.log");
        let successful = stat(&screen, "Successful call");
        let failed = stat(&screen, "Failed call");
        let (p50, p90, p99, max) = percentiles(dir.path());
        let ok = status.success() && failed == 0 && successful == u64::from(calls);
        let achieved = successful as f64 / elapsed;
        println!(
            "rate {rate:>5}/s: {successful}/{calls} ok, {failed} failed, exit {status}, {elapsed:.1} s wall ({achieved:.0} calls/s achieved); INVITE->200 ms p50 {p50:.1} p90 {p90:.1} p99 {p99:.1} max {max:.1}"
        );
        steps.push(Step {
            rate,
            calls,
            achieved,
            ok,
            successful,
            failed,
            p50,
            p90,
            p99,
            max,
        });
        gw.shutdown().await;
        if !ok {
            break;
        }
    }
    println!(
        "\n| target rate (calls/s) | achieved (calls/s, wall) | calls | ok | failed | p50 ms | p90 ms | p99 ms | max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &steps {
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.rate, s.achieved, s.calls, s.successful, s.failed, s.p50, s.p90, s.p99, s.max
        );
    }
    let best = steps.iter().filter(|s| s.ok).map(|s| s.rate).max();
    println!("\nhighest rate with zero failed calls: {best:?} calls/s");
    assert!(best.is_some(), "no step passed");
}
