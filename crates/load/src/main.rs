//! `mediagate-load`: drives N concurrent RTP/SRTP streams through the
//! mediagate relay at a given packet rate and size, verifies everything that
//! comes out (decrypts, checks stream, sequence and payload), and reports
//! packets/s, loss, jitter added, and the relay's CPU time per packet read
//! from `/proc` (per-thread `schedstat` of the `mg-relay-*` threads).
//!
//! The relay runs in this process on its own threads, exactly as in the
//! gateway; the generator and the verifier run on two other threads and talk
//! to it over loopback UDP only. The verifier takes the kernel's arrival
//! timestamp of every packet and reads in batches (`rxts`), so that the
//! relay's threads are not charged for waking it per packet.
//!
//! ```text
//!  mg-load-tx ──UDP──► [leg A port] ─ mg-relay-N ─ [leg B port] ──UDP──► mg-load-rx
//!     (peer A, encrypts if leg A is SRTP)       (verifies; decrypts if leg B is SRTP)
//!  with --two-way the same happens from peer B to peer A.
//! ```

// The load tool is a driver: it owns the clock (clippy.toml bans it in cores).
#![allow(clippy::disallowed_methods)]

mod cpu;
mod rtpengine;
mod rxts;
mod stream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mediagate_media::relay::{PairPorts, Relay, RelayConfig};
use mediagate_media::session::{DropReason, LegKeys, LegSpec, Side};
use mediagate_media::srtp::{MasterKey, SrtpProfile};

use stream::{Receiver, Sender, StreamPlan};

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(name = "mediagate-load", version, about)]
struct Args {
    /// Concurrent calls (leg pairs).
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Packets per second per stream and direction (50 = 20 ms G.711).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// RTP packet size in octets, header included (172 = G.711 20 ms).
    #[arg(long, default_value_t = 172)]
    size: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Crypto on leg A: `none` or an SDES suite name.
    #[arg(long, default_value = "none")]
    a: String,
    /// Crypto on leg B: `none` or an SDES suite name.
    #[arg(long, default_value = "AES_CM_128_HMAC_SHA1_80")]
    b: String,
    /// Send from B to A too (two-way calls).
    #[arg(long)]
    two_way: bool,
    /// Relay worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Media port range of the relay, `MIN-MAX`.
    #[arg(long, default_value = "20000-29999")]
    ports: String,
    /// Seconds between progress lines (0 = none).
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
    /// Relay wake-up coalescing pause in microseconds (0 = off).
    #[arg(long, default_value_t = 500)]
    coalesce_us: u64,
    /// Drive an rtpengine instead of the built-in relay: its NG control
    /// address (e.g. 127.0.0.1:2223). Its CPU is read from /proc/PID/stat.
    #[arg(long)]
    rtpengine: Option<SocketAddr>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_suite(s: &str) -> Result<Option<SrtpProfile>, String> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("plain") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        let names: Vec<_> = SrtpProfile::ALL.iter().map(|p| p.sdes_name()).collect();
        format!(
            "unknown crypto suite {s:?}; use none or one of {}",
            names.join(", ")
        )
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                report.print();
            }
            if report.verified_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("mediagate-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// The outcome of a run.
struct Report {
    streams: usize,
    directions: u32,
    seconds: f64,
    /// The schedule: streams × directions × packets/s per stream.
    offered_pps: f64,
    /// When the generator's last packet left; above `seconds` when it fell
    /// behind its schedule (the CPU was taken), so the relay saw less.
    send_seconds: f64,
    sent: u64,
    received: u64,
    lost: u64,
    corrupt: u64,
    duplicates: u64,
    jitter_mean_us: f64,
    jitter_max_us: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
    relayed: u64,
    relay_cpu_ns: u64,
    relay_drops: Vec<(&'static str, u64)>,
    recv_calls: u64,
    load_cpu_ns: u64,
}

impl Report {
    fn verified_ok(&self) -> bool {
        self.corrupt == 0 && self.received > 0
    }

    fn cpu_per_packet_us(&self) -> f64 {
        if self.relayed == 0 {
            0.0
        } else {
            self.relay_cpu_ns as f64 / self.relayed as f64 / 1000.0
        }
    }

    fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.sent as f64
        }
    }

    /// Whether the generator sent noticeably less than its schedule (it
    /// had no CPU left): then the relay was not offered the rate asked for.
    fn fell_behind(&self) -> bool {
        self.sent_pps() < self.offered_pps * 0.98
    }

    /// Packets per second the generator actually sent.
    fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.send_seconds.max(self.seconds)
    }

    fn print(&self) {
        println!("--- mediagate-load report ---");
        println!(
            "streams {} x {} direction(s), {:.1} s; offered {:.0} packets/s, sent {:.0} packets/s",
            self.streams,
            self.directions,
            self.seconds,
            self.offered_pps,
            self.sent_pps()
        );
        if self.fell_behind() {
            println!(
                "WARNING: the generator fell behind its schedule (no CPU left for it): it sent \
                 {} packets in {:.1} s, not {:.0} in {:.1} s; the relay was offered less than asked",
                self.sent,
                self.send_seconds,
                self.offered_pps * self.seconds,
                self.seconds
            );
        }
        println!(
            "sent {}  received {}  lost {} ({:.4} %)  corrupt {}  duplicates {}",
            self.sent,
            self.received,
            self.lost,
            self.loss_pct(),
            self.corrupt,
            self.duplicates
        );
        println!(
            "jitter (RFC 3550, added by the path) mean {:.1} µs max {:.1} µs; one-way latency p50 {:.1} µs p99 {:.1} µs",
            self.jitter_mean_us, self.jitter_max_us, self.latency_p50_us, self.latency_p99_us
        );
        println!(
            "relay: {} packets relayed, CPU {:.3} s = {:.2} µs per packet; {:.2} packets per recvmmsg call",
            self.relayed,
            self.relay_cpu_ns as f64 / 1e9,
            self.cpu_per_packet_us(),
            if self.recv_calls == 0 {
                0.0
            } else {
                self.relayed as f64 / self.recv_calls as f64
            }
        );
        let drops: Vec<String> = self
            .relay_drops
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        println!(
            "relay drops: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(" ")
            }
        );
        println!(
            "load generator + verifier CPU {:.3} s",
            self.load_cpu_ns as f64 / 1e9
        );
    }

    fn to_json(&self) -> String {
        let drops: serde_json::Map<String, serde_json::Value> = self
            .relay_drops
            .iter()
            .map(|(r, n)| ((*r).to_string(), (*n).into()))
            .collect();
        serde_json::json!({
            "streams": self.streams,
            "directions": self.directions,
            "seconds": self.seconds,
            "offered_pps": self.offered_pps,
            "send_seconds": self.send_seconds,
            "sent_pps": self.sent_pps(),
            "fell_behind": self.fell_behind(),
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "loss_pct": self.loss_pct(),
            "corrupt": self.corrupt,
            "duplicates": self.duplicates,
            "jitter_mean_us": self.jitter_mean_us,
            "jitter_max_us": self.jitter_max_us,
            "latency_p50_us": self.latency_p50_us,
            "latency_p99_us": self.latency_p99_us,
            "relayed": self.relayed,
            "relay_cpu_ns": self.relay_cpu_ns,
            "relay_cpu_per_packet_us": self.cpu_per_packet_us(),
            "relay_drops": drops,
            "recv_calls": self.recv_calls,
            "load_cpu_ns": self.load_cpu_ns,
        })
        .to_string()
    }
}

fn run(args: &Args) -> Result<Report, String> {
    let a_suite = parse_suite(&args.a)?;
    let b_suite = parse_suite(&args.b)?;
    if args.streams == 0 || args.rate == 0 {
        return Err("--streams and --rate must be at least 1".into());
    }
    if !(28..=1400).contains(&args.size) {
        return Err(
            "--size must be 28..=1400 octets (header + 16-octet verification block)".into(),
        );
    }
    let (pmin, pmax) = args
        .ports
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("--ports {:?} is not MIN-MAX", args.ports))?;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut cfg = RelayConfig::new(lo)
        .with_ports(pmin, pmax)
        .with_coalesce(Duration::from_micros(args.coalesce_us));
    if let Some(w) = args.workers {
        cfg = cfg.with_workers(w);
    }
    let (relay, mut engine) = match args.rtpengine {
        None => (
            Some(Relay::start(cfg).map_err(|e| format!("relay: {e}"))?),
            None,
        ),
        Some(ng) => (None, Some(rtpengine::Rtpengine::connect(ng)?)),
    };
    let relay_cpu = || match &relay {
        Some(_) => cpu::thread_cpu_ns("mg-relay"),
        None => rtpengine::process_cpu_ns("rtpengine").unwrap_or(0),
    };
    let relayed_now = || {
        relay
            .as_ref()
            .map_or(0, |r| r.counters().packets.load(Ordering::Relaxed))
    };

    // Peer sockets: a few per side, shared by the streams (the relay tells
    // legs apart by its own ports; peers by SSRC).
    let k = args.streams.clamp(1, 64);
    let bind = || -> Result<UdpSocket, String> {
        let s = UdpSocket::bind((lo, 0)).map_err(|e| format!("bind: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(s)
    };
    let a_socks: Vec<UdpSocket> = (0..k).map(|_| bind()).collect::<Result<_, _>>()?;
    let b_socks: Vec<UdpSocket> = (0..k).map(|_| bind()).collect::<Result<_, _>>()?;

    let mut plans = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let a_addr = a_socks[i % k].local_addr().map_err(|e| e.to_string())?;
        let b_addr = b_socks[i % k].local_addr().map_err(|e| e.to_string())?;
        if let Some(eng) = engine.as_mut() {
            let leg = eng.setup(i as u32, a_addr, b_addr, a_suite, b_suite)?;
            plans.push(StreamPlan {
                index: i as u32,
                ports: leg.ports,
                a_keys: leg.a_keys,
                b_keys: leg.b_keys,
                sock: i % k,
            });
            continue;
        }
        let Some(relay) = relay.as_ref() else {
            unreachable!("one of relay or engine")
        };
        let ports: PairPorts = relay
            .allocate()
            .map_err(|e| format!("allocate stream {i}: {e}"))?;
        let keys = |p: Option<SrtpProfile>| -> Result<Option<LegKeys>, String> {
            p.map(|p| {
                Ok(LegKeys {
                    rx: MasterKey::generate(p).map_err(|e| e.to_string())?,
                    tx: MasterKey::generate(p).map_err(|e| e.to_string())?,
                })
            })
            .transpose()
        };
        let (ka, kb) = (keys(a_suite)?, keys(b_suite)?);
        let spec = |k: &Option<LegKeys>, addr: SocketAddr| match k {
            Some(k) => LegSpec::srtp(Some(addr), k.clone()),
            None => LegSpec::plain(Some(addr)),
        };
        relay
            .set_leg(ports.id, Side::A, spec(&ka, a_addr))
            .map_err(|e| e.to_string())?;
        relay
            .set_leg(ports.id, Side::B, spec(&kb, b_addr))
            .map_err(|e| e.to_string())?;
        plans.push(StreamPlan {
            index: i as u32,
            ports,
            a_keys: ka,
            b_keys: kb,
            sock: i % k,
        });
    }
    // Let the workers apply the setup commands before traffic starts.
    std::thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    let realtime_base = rxts::RealtimeBase(rxts::realtime_ns());
    let stop_rx = Arc::new(AtomicBool::new(false));
    let sent_total = Arc::new(AtomicU64::new(0));
    let directions = if args.two_way { 2 } else { 1 };
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let duration = Duration::from_secs_f64(args.duration);

    let mut receiver = Receiver::new(&plans, args.size, start, realtime_base);
    let rx_socks: Vec<UdpSocket> = b_socks
        .iter()
        .chain(if args.two_way {
            a_socks.iter()
        } else {
            [].iter()
        })
        .map(|s| s.try_clone().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let rx_stop = stop_rx.clone();
    let rx_thread = std::thread::Builder::new()
        .name("mg-load-rx".into())
        .spawn(move || {
            receiver.run(rx_socks, &rx_stop);
            receiver
        })
        .map_err(|e| e.to_string())?;

    let mut sender = Sender::new(&plans, args.size, args.two_way, start, period);
    let tx_sent = sent_total.clone();
    let tx_socks: (Vec<UdpSocket>, Vec<UdpSocket>) = (
        a_socks
            .iter()
            .map(|s| s.try_clone().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
        b_socks
            .iter()
            .map(|s| s.try_clone().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    );
    let tx_thread = std::thread::Builder::new()
        .name("mg-load-tx".into())
        .spawn(move || sender.run(tx_socks, duration, &tx_sent))
        .map_err(|e| e.to_string())?;

    // Progress while it runs.
    let relay_cpu0 = relay_cpu();
    let relayed0 = relayed_now();
    if args.progress > 0.0 {
        let mut last = (Instant::now(), relayed0, relay_cpu0);
        while !tx_thread.is_finished() {
            std::thread::sleep(Duration::from_secs_f64(args.progress).min(duration));
            let now = Instant::now();
            let relayed = relayed_now();
            let cpu_ns = relay_cpu();
            let dt = now.duration_since(last.0).as_secs_f64();
            let dp = relayed - last.1;
            eprintln!(
                "t={:5.1}s sent {:>9} relayed {:>9} ({:>8.0} pkt/s) relay CPU {:5.1} % ({:.2} µs/pkt)",
                now.duration_since(start).as_secs_f64(),
                sent_total.load(Ordering::Relaxed),
                relayed,
                dp as f64 / dt,
                100.0 * (cpu_ns - last.2) as f64 / 1e9 / dt,
                if dp == 0 {
                    0.0
                } else {
                    (cpu_ns - last.2) as f64 / dp as f64 / 1000.0
                }
            );
            last = (now, relayed, cpu_ns);
        }
    }
    let (sent, tx_cpu_ns, send_seconds) = tx_thread.join().map_err(|_| "sender thread panicked")?;
    // Drain: give in-flight packets time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    let relay_cpu_ns = relay_cpu() - relay_cpu0;
    let relayed = relayed_now() - relayed0;
    stop_rx.store(true, Ordering::Relaxed);
    let receiver = rx_thread.join().map_err(|_| "receiver thread panicked")?;
    let v = receiver.summary(&sent);
    let load_cpu_ns = tx_cpu_ns + v.cpu_ns;
    // rtpengine has no counter we can read: count what arrived verified.
    let relayed = if relay.is_some() { relayed } else { v.received };
    let report = Report {
        streams: args.streams,
        directions,
        seconds: args.duration,
        offered_pps: args.streams as f64 * f64::from(directions) * f64::from(args.rate),
        send_seconds,
        sent: sent.values().sum(),
        received: v.received,
        lost: v.lost,
        corrupt: v.corrupt,
        duplicates: v.duplicates,
        jitter_mean_us: v.jitter_mean_us,
        jitter_max_us: v.jitter_max_us,
        latency_p50_us: v.latency_p50_us,
        latency_p99_us: v.latency_p99_us,
        relayed,
        relay_cpu_ns,
        relay_drops: relay.as_ref().map_or_else(Vec::new, |r| {
            DropReason::ALL
                .iter()
                .map(|d| (d.as_str(), r.counters().dropped(*d)))
                .collect()
        }),
        recv_calls: relay
            .as_ref()
            .map_or(0, |r| r.counters().recv_calls.load(Ordering::Relaxed)),
        load_cpu_ns,
    };
    if let Some(r) = relay {
        r.shutdown();
    }
    Ok(report)
}
