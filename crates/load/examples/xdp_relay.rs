//! A measurement prototype, not the product: how much CPU per packet a relay
//! costs on this machine when it bypasses the kernel's UDP stack with AF_XDP
//! (ARCHITECTURE.md, "Not built yet"). It relays plain RTP into SRTP
//! (AES_CM_128_HMAC_SHA1_80, mediagate's own `SrtpContext`) in place in the
//! AF_XDP memory and sends the same frame back out, and a sink decrypts and
//! counts every packet. `scripts/xdp-relay.sh` runs the three parts in two
//! network namespaces joined by a veth pair.
//!
//! - `relay`: loads a 24-instruction XDP program on `--iface` that redirects
//!   IPv4/UDP packets for the relay's ports into one AF_XDP socket (queue 0,
//!   copy mode) and passes everything else to the kernel; then loops: pause
//!   500 µs (like the relay's wake-up coalescing), take what the RX ring holds,
//!   encrypt each RTP packet in place, rewrite Ethernet/IPv4/UDP for the way
//!   back (the sink is on the same link: MACs and IPs swapped, port mapped,
//!   IPv4 checksum recomputed, UDP checksum 0), put the frames on the TX ring,
//!   kick (copy mode sends at most 32 frames per kick, so big batches take
//!   several), and return completed frames to the fill ring. It reports its
//!   thread's CPU per packet, and the CPU of the interface's threaded-NAPI
//!   kthread when there is one (the receive work of the relay's host).
//! - `gen`: N streams of 172-octet RTP at 50 packets/s each, round-robin over
//!   64 sockets, to ports `30000 + 2i` of the relay.
//! - `sink`: one socket per stream on port `50000 + i`, drained in rounds 1 ms
//!   apart; every packet must decrypt with the stream key and be 172 octets.
//!
//! What it leaves out on purpose (a product needs them): one key for every
//! stream (one `SrtpContext` per stream, but no `LegPair`), no latching, one queue, the return address taken from the packet (no
//! next-hop lookup), IPv4 without options only.

// AF_XDP memory and the bpf(2) system call have no safe wrappers; every
// unsafe block says why it is sound.
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::disallowed_methods,
    missing_docs
)]

use std::net::{Ipv4Addr, UdpSocket};
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use clap::Parser;
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use xdpilone::xdp::XdpDesc;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

/// Relay ports: stream i arrives on `RELAY_PORT + 2i`.
const RELAY_PORT: u16 = 30_000;
/// Sink ports: stream i leaves to `SINK_PORT + i`.
const SINK_PORT: u16 = 50_000;
/// Generator source ports: `GEN_PORT..GEN_PORT + 64`.
const GEN_PORT: u16 = 40_000;
/// The test key (AES_CM_128_HMAC_SHA1_80: 16 octets key + 14 salt).
const KEY: [u8; 30] = [7; 30];
const SIZE: usize = 172;
const FRAME: usize = 2048;
const FRAMES: u32 = 32_768;
/// Ethernet + IPv4 (no options) + UDP.
const HDRS: usize = 42;

#[derive(Parser)]
struct Args {
    /// `relay`, `gen` or `sink`.
    mode: String,
    /// Streams (calls, one direction each).
    #[arg(long, default_value_t = 1000)]
    streams: u16,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// relay: the interface to attach to.
    #[arg(long, default_value = "mgx-a")]
    iface: String,
    /// gen: the relay's address.
    #[arg(long, default_value = "10.199.78.1")]
    relay: Ipv4Addr,
    /// gen and sink: this side's address.
    #[arg(long, default_value = "10.199.78.2")]
    local: Ipv4Addr,
}

fn thread_cpu_ns() -> u64 {
    cpu_ns("/proc/thread-self/schedstat")
}

fn cpu_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn context() -> SrtpContext {
    let key = MasterKey::new(SrtpProfile::AesCm128HmacSha1_80, &KEY).unwrap();
    SrtpContext::new(&key, SrtpConfig::default())
}

fn main() {
    let args = Args::parse();
    match args.mode.as_str() {
        "relay" => relay(&args),
        "gen" => generate(&args),
        "sink" => sink(&args),
        other => panic!("unknown mode {other:?}: relay, gen or sink"),
    }
}

fn generate(args: &Args) {
    let n = u64::from(args.streams);
    let socks: Vec<UdpSocket> = (0..64)
        .map(|i| UdpSocket::bind((args.local, GEN_PORT + i)).unwrap())
        .collect();
    let mut seq = vec![0u16; usize::from(args.streams)];
    let mut pkt = [0u8; SIZE];
    let (t0, c0) = (Instant::now(), thread_cpu_ns());
    let (mut sent, mut i) = (0u64, 0u16);
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        // Everything due by now at 50 packets/s per stream, then a pause.
        let due = t0.elapsed().as_nanos() as u64 * n / 20_000_000;
        while sent < due {
            let s = &mut seq[usize::from(i)];
            pkt[0] = 0x80;
            pkt[2..4].copy_from_slice(&s.to_be_bytes());
            pkt[8..12].copy_from_slice(&(0x1000_0000 + u32::from(i)).to_be_bytes());
            *s = s.wrapping_add(1);
            socks[usize::from(i % 64)]
                .send_to(&pkt, (args.relay, RELAY_PORT + 2 * i))
                .unwrap();
            sent += 1;
            i = (i + 1) % args.streams;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!(
        "gen: sent {sent} packets in {:.1} s, {:.2} µs of CPU per packet",
        t0.elapsed().as_secs_f64(),
        (thread_cpu_ns() - c0) as f64 / sent.max(1) as f64 / 1000.0
    );
}

fn sink(args: &Args) {
    let socks: Vec<UdpSocket> = (0..args.streams)
        .map(|i| {
            let s = UdpSocket::bind((args.local, SINK_PORT + i)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut ctxs: Vec<SrtpContext> = socks.iter().map(|_| context()).collect();
    let (mut ok, mut bad) = (0u64, 0u64);
    let mut b = [0u8; 2048];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        for (s, ctx) in socks.iter().zip(ctxs.iter_mut()) {
            while let Ok(len) = s.recv(&mut b) {
                match ctx.unprotect_rtp(&mut b, len) {
                    Ok(SIZE) => ok += 1,
                    _ => bad += 1,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("sink: {ok} packets decrypted and checked, {bad} bad");
}

mod bpf {
    //! The XDP program, as bytecode, and the bpf(2) calls that load it.

    use std::io;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        }
    }

    /// `bpf(cmd, attr)` with a zero-padded 128-octet attribute block.
    fn bpf(cmd: i32, attr: &mut [u8; 128]) -> io::Result<i32> {
        // SAFETY: `attr` is a live 128-octet buffer and its size is passed;
        // the pointers written into it (by the callers) point at live data.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as i32)
        }
    }

    fn put32(a: &mut [u8; 128], off: usize, v: u32) {
        a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put64(a: &mut [u8; 128], off: usize, v: u64) {
        a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }

    const XDP_PASS: i32 = 2;

    /// Creates the XSKMAP, loads the program for ports `min..=max` and
    /// attaches it to `ifindex` with a BPF link (detached when the process
    /// exits). Returns the map's fd.
    pub(super) fn attach(ifindex: u32, min: u16, max: u16) -> io::Result<i32> {
        // BPF_MAP_CREATE: BPF_MAP_TYPE_XSKMAP, u32 key (queue), u32 value (fd), 1 entry.
        let mut a = [0u8; 128];
        for (off, v) in [(0, 17), (4, 4), (8, 4), (12, 1)] {
            put32(&mut a, off, v);
        }
        let map = bpf(0, &mut a)?;
        let mut prog = vec![
            insn(0xbf, 6, 1, 0, 0),              // r6 = ctx
            insn(0x61, 2, 6, 0, 0),              // r2 = ctx->data
            insn(0x61, 3, 6, 4, 0),              // r3 = ctx->data_end
            insn(0xbf, 4, 2, 0, 0),              // r4 = r2
            insn(0x07, 4, 0, 0, 42),             // r4 += eth + ip + udp
            insn(0x2d, 4, 3, 0, 0),              // if r4 > r3: pass
            insn(0x69, 5, 2, 12, 0),             // r5 = ethertype
            insn(0x55, 5, 0, 0, 0x0008),         // if r5 != IPv4 (0x0800 BE): pass
            insn(0x71, 5, 2, 14, 0),             // r5 = version/IHL
            insn(0x55, 5, 0, 0, 0x45),           // if r5 != 0x45 (no options): pass
            insn(0x71, 5, 2, 23, 0),             // r5 = protocol
            insn(0x55, 5, 0, 0, 17),             // if r5 != UDP: pass
            insn(0x69, 5, 2, 36, 0),             // r5 = UDP destination port (BE)
            insn(0xdc, 5, 0, 0, 16),             // r5 = be16(r5)
            insn(0xa5, 5, 0, 0, i32::from(min)), // if r5 < min: pass
            insn(0x25, 5, 0, 0, i32::from(max)), // if r5 > max: pass
            insn(0x61, 2, 6, 16, 0),             // r2 = ctx->rx_queue_index
            insn(0x18, 1, 1, 0, map),            // r1 = the map (ld_imm64, pseudo map fd)
            insn(0x00, 0, 0, 0, 0),              //   (second half of ld_imm64)
            insn(0xb7, 3, 0, 0, XDP_PASS),       // r3 = XDP_PASS if the queue has no socket
            insn(0x85, 0, 0, 0, 51),             // r0 = bpf_redirect_map(r1, r2, r3)
            insn(0x95, 0, 0, 0, 0),              // return r0
            insn(0xb7, 0, 0, 0, XDP_PASS),       // pass: r0 = XDP_PASS
            insn(0x95, 0, 0, 0, 0),              // return r0
        ];
        let pass = prog.len() as i16 - 2;
        for (k, i) in prog.iter_mut().enumerate() {
            if matches!(i.code, 0x2d | 0x55 | 0xa5 | 0x25) {
                i.off = pass - k as i16 - 1;
            }
        }
        let license = b"Dual MIT/GPL\0";
        let mut log = vec![0u8; 1 << 16];
        // BPF_PROG_LOAD: BPF_PROG_TYPE_XDP.
        let mut a = [0u8; 128];
        put32(&mut a, 0, 6);
        put32(&mut a, 4, prog.len() as u32);
        put64(&mut a, 8, prog.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, 1);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        let fd = bpf(5, &mut a).map_err(|e| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            io::Error::other(format!(
                "XDP program refused: {e}: {}",
                String::from_utf8_lossy(&log[..end])
            ))
        })?;
        // BPF_LINK_CREATE: attach type BPF_XDP (37), default mode.
        let mut a = [0u8; 128];
        put32(&mut a, 0, fd as u32);
        put32(&mut a, 4, ifindex);
        put32(&mut a, 8, 37);
        bpf(28, &mut a)?;
        Ok(map)
    }

    /// `map[key] = value` (BPF_MAP_UPDATE_ELEM).
    pub(super) fn update(map: i32, key: u32, value: u32) -> io::Result<()> {
        let mut a = [0u8; 128];
        put32(&mut a, 0, map as u32);
        put64(&mut a, 8, &key as *const u32 as u64);
        put64(&mut a, 16, &value as *const u32 as u64);
        bpf(2, &mut a).map(|_| ())
    }
}

/// The IPv4 header checksum.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Encrypts the RTP packet in frame `f` (`len` octets with headers) and
/// turns the frame around; returns the new frame length.
fn turn_around(ctxs: &mut [SrtpContext], f: &mut [u8], len: usize) -> Option<usize> {
    if len < HDRS + 12 {
        return None;
    }
    let dport = u16::from_be_bytes([f[36], f[37]]);
    let stream = dport.checked_sub(RELAY_PORT)? / 2;
    let ctx = ctxs.get_mut(usize::from(stream))?;
    let rtp = ctx.protect_rtp(&mut f[HDRS..], len - HDRS).ok()?;
    // Ethernet: back to the sender. IPv4: addresses swapped, new length.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[0..6]);
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&mac);
    let mut ip = [0u8; 4];
    ip.copy_from_slice(&f[26..30]);
    f.copy_within(30..34, 26);
    f[30..34].copy_from_slice(&ip);
    f[16..18].copy_from_slice(&((20 + 8 + rtp) as u16).to_be_bytes());
    f[24..26].fill(0);
    let c = ip_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    // UDP: from the relay port to the stream's sink port; no checksum.
    f[34..36].copy_from_slice(&dport.to_be_bytes());
    f[36..38].copy_from_slice(&(SINK_PORT + stream).to_be_bytes());
    f[38..40].copy_from_slice(&((8 + rtp) as u16).to_be_bytes());
    f[40..42].fill(0);
    Some(HDRS + rtp)
}

/// CPU time of the interface's threaded-NAPI kthreads (`napi/<iface>-N`).
fn napi_cpu_ns(iface: &str) -> u64 {
    let prefix = format!("napi/{iface}-");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            comm.starts_with(&prefix)
                .then(|| cpu_ns(&format!("/proc/{pid}/schedstat")))
        })
        .sum()
}

fn relay(args: &Args) {
    let name = std::ffi::CString::new(args.iface.as_str()).unwrap();
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "no interface {}", args.iface);
    let max_port = RELAY_PORT + 2 * args.streams;
    let map = bpf::attach(ifindex, RELAY_PORT, max_port).unwrap();

    // The UMEM: FRAMES frames of FRAME octets, page-aligned, never freed.
    let layout = std::alloc::Layout::from_size_align(FRAME * FRAMES as usize, 4096).unwrap();
    // SAFETY: the layout has a non-zero size.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!base.is_null());
    let area = NonNull::slice_from_raw_parts(NonNull::new(base).unwrap(), layout.size());
    let config = UmemConfig {
        fill_size: FRAMES,
        complete_size: FRAMES,
        frame_size: FRAME as u32,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page-aligned and never freed, so it outlives the
    // UMEM and every socket on it.
    let umem = unsafe { Umem::new(config, area) }
        .map_err(|e| e.get_raw())
        .expect("umem");
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex)
        .map_err(|e| e.get_raw())
        .expect("interface");
    info.set_queue(0);
    let sock = Socket::with_shared(&info, &umem)
        .map_err(|e| e.get_raw())
        .expect("socket");
    let mut dev = umem
        .fq_cq(&sock)
        .map_err(|e| e.get_raw())
        .expect("fill/completion rings");
    let rxtx = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: NonZeroU32::new(4096),
                tx_size: NonZeroU32::new(4096),
                bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | 1 << 1, // XDP_COPY
            },
        )
        .map_err(|e| e.get_raw())
        .expect("rx/tx rings");
    let mut rx = rxtx.map_rx().map_err(|e| e.get_raw()).expect("map rx");
    let mut tx = rxtx.map_tx().map_err(|e| e.get_raw()).expect("map tx");
    umem.bind(&rxtx).map_err(|e| e.get_raw()).expect("bind");
    bpf::update(map, 0, rx.as_raw_fd() as u32).unwrap();
    {
        let mut f = dev.fill(FRAMES);
        f.insert((0..u64::from(FRAMES)).map(|k| k * FRAME as u64));
        f.commit();
    }
    eprintln!(
        "relay: XDP on {} for ports {RELAY_PORT}-{max_port}",
        args.iface
    );

    // One SRTP context per stream, as the relay has one per leg.
    let mut ctxs: Vec<SrtpContext> = (0..args.streams).map(|_| context()).collect();
    let mut out: Vec<XdpDesc> = Vec::with_capacity(4096);
    let mut done: Vec<u64> = Vec::with_capacity(4096);
    let (mut relayed, mut dropped, mut kicks) = (0u64, 0u64, 0u64);
    let mut start: Option<(u64, u64)> = None;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_micros(500));
        loop {
            out.clear();
            let mut r = rx.receive(256);
            while let Some(d) = r.read() {
                let off = d.addr as usize;
                // SAFETY: the kernel handed this frame to us on the RX ring:
                // it lies within the UMEM, starts `off % FRAME` into its
                // chunk, and nobody else touches it until we put it on the TX
                // or fill ring.
                let f =
                    unsafe { std::slice::from_raw_parts_mut(base.add(off), FRAME - off % FRAME) };
                match turn_around(&mut ctxs, f, d.len as usize) {
                    Some(len) => out.push(XdpDesc {
                        addr: d.addr,
                        len: len as u32,
                        options: 0,
                    }),
                    None => {
                        dropped += 1;
                        done.push(d.addr);
                    }
                }
            }
            r.release();
            drop(r);
            if out.is_empty() {
                break;
            }
            if start.is_none() {
                start = Some((thread_cpu_ns(), napi_cpu_ns(&args.iface)));
            }
            // The ring reservation may hand out fewer slots than free (its
            // view of the kernel's side is cached), and copy mode sends at
            // most 32 frames per kick: insert and kick until all are taken
            // (bounded; what is left is dropped and counted).
            let mut sent = 0;
            for _ in 0..64 {
                let mut w = tx.transmit((out.len() - sent) as u32);
                sent += w.insert(out[sent..].iter().copied()) as usize;
                w.commit();
                drop(w);
                tx.wake();
                kicks += 1;
                if sent == out.len() && tx.pending() == 0 {
                    break;
                }
            }
            done.extend(out[sent..].iter().map(|d| d.addr));
            dropped += (out.len() - sent) as u64;
            relayed += sent as u64;
            recycle(&mut dev, &mut done);
        }
        recycle(&mut dev, &mut done);
    }
    let (c0, n0) = start.unwrap_or((thread_cpu_ns(), 0));
    let cpu = thread_cpu_ns() - c0;
    let napi = napi_cpu_ns(&args.iface).saturating_sub(n0);
    let per = |ns: u64| ns as f64 / relayed.max(1) as f64 / 1000.0;
    let stats = dev.statistics_v2().map_or_else(
        |_| "n/a".to_string(),
        |s| {
            format!(
                "rx_dropped {} rx_ring_full {} fill_ring_empty {}",
                s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty_descs
            )
        },
    );
    println!(
        "relay: {relayed} packets relayed ({dropped} dropped), {:.2} µs of relay-thread CPU per \
         packet, {:.2} µs of {}'s NAPI thread per packet, {:.1} packets per kick; XSK: {stats}",
        per(cpu),
        per(napi),
        args.iface,
        relayed as f64 / kicks.max(1) as f64
    );
}

/// Completed TX frames and dropped RX frames go back to the fill ring.
fn recycle(dev: &mut xdpilone::DeviceQueue, done: &mut Vec<u64>) {
    let mut c = dev.complete(FRAMES);
    while let Some(a) = c.read() {
        done.push(a);
    }
    c.release();
    drop(c);
    if !done.is_empty() {
        let mut f = dev.fill(done.len() as u32);
        let n = f.insert(done.iter().copied()) as usize;
        f.commit();
        done.drain(..n);
    }
}
