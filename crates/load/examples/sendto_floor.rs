//! The kernel floor under the relay's CPU-per-packet figure: what one
//! loopback `sendto` of a 172-octet packet costs the sending thread, with
//! delivery into 64 sockets that another thread drains (no blocking
//! receiver, so no wake-ups are counted). Every relayed packet needs at
//! least one such send.
//!
//! `cargo run --release -p mediagate-load --example sendto_floor`

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // a measurement program

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let rx: Vec<UdpSocket> = (0..64)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
    for s in &rx {
        s.set_nonblocking(true).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let drain = std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        let mut n = 0u64;
        while !st.load(Ordering::Relaxed) {
            for s in &rx {
                while s.recv_from(&mut b).is_ok() {
                    n += 1;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        n
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pkt = [0x80u8; 172];
    let n = 300_000u64;
    let t0 = Instant::now();
    let c0 = thread_cpu_ns();
    for i in 0..n {
        tx.send_to(&pkt, addrs[(i % 64) as usize]).unwrap();
        if i % 50 == 0 {
            // ~50 000 packets/s, like 1000 one-way G.711 streams.
            let due = Duration::from_micros(i * 20);
            let el = t0.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
    }
    let c1 = thread_cpu_ns();
    stop.store(true, Ordering::Relaxed);
    let got = drain.join().unwrap();
    println!(
        "loopback sendto: {:.2} µs of sender CPU per 172-octet packet ({got}/{n} delivered)",
        (c1 - c0) as f64 / n as f64 / 1000.0
    );
}
