//! The kernel floor under the relay's CPU-per-packet figure: what the
//! kernel alone charges the sending thread for one 172-octet UDP packet,
//! before any relay code runs. Every relayed packet needs at least one such
//! send, so no socket-based relay can cost less per packet than this.
//!
//! It measures, each as CPU time of the sending thread
//! (`/proc/thread-self/schedstat`) divided by the packets sent, paced at
//! 50 000 packets/s (1000 one-way G.711 streams):
//!
//! - `syscall`: a `getppid` system call (entry and exit only);
//! - `sendto`: one `sendto` per packet, round-robin over 64 destination
//!   sockets (the relay's pattern: every packet goes to another peer);
//! - `sendmmsg`: the same packets, 25 per `sendmmsg`, each with its own
//!   destination (what batching sends across peers would save);
//! - `recvfrom`: the receiving thread's CPU per packet it took off the
//!   queues (non-blocking `recvfrom` in rounds 1 ms apart, empty polls and
//!   sleeps included), i.e. the other half of what a relay pays per packet;
//! - `af_xdp`: with `--xsk IFACE`, the same frames through an AF_XDP socket's
//!   TX ring in copy mode, 25 per kick (the kernel-bypass reference point:
//!   no UDP/IP stack on the sending side).
//!
//! Without `--dest`, the destinations are 64 sockets on 127.0.0.1 that a
//! second thread drains without blocking, so no wake-up is charged to the
//! sender. With `--dest IP:PORT` the packets go to 64 consecutive ports
//! there, drained by `kernel_floor drain` (e.g. in another network
//! namespace; `scripts/kernel-floor.sh` sets that up).
//!
//! ```sh
//! cargo run --release -p mediagate-load --example kernel_floor
//! sudo scripts/kernel-floor.sh      # loopback, clean namespace, veth, AF_XDP
//! ```

// A measurement program: it talks to the kernel through raw system calls
// (sendmmsg, AF_XDP rings), which needs `unsafe`; every block says why it
// is sound.
#![allow(unsafe_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

/// Packet size, RTP header included (G.711, 20 ms).
const SIZE: usize = 172;
/// Destination sockets the packets rotate over.
const DESTS: u16 = 64;
/// Packets per `sendmmsg` call or AF_XDP kick.
const BATCH: usize = 25;

#[derive(Parser)]
struct Args {
    /// `drain` receives on 64 ports from `--bind` for `--seconds`.
    mode: Option<String>,
    /// Send to 64 ports from this address instead of local sockets.
    #[arg(long)]
    dest: Option<SocketAddrV4>,
    /// Local address to send from (or, with `drain`, the first port to drain).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddrV4,
    /// Packets per measurement.
    #[arg(long, default_value_t = 300_000)]
    packets: u64,
    /// `drain`: how long to receive.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Also measure AF_XDP TX on this interface (needs `--dest`, `--src-mac`,
    /// `--dst-mac`; root).
    #[arg(long)]
    xsk: Option<String>,
    /// AF_XDP: this interface's MAC address.
    #[arg(long)]
    src_mac: Option<String>,
    /// AF_XDP: the next hop's MAC address.
    #[arg(long)]
    dst_mac: Option<String>,
    /// Print one JSON object per measurement.
    #[arg(long)]
    json: bool,
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Sleeps until packet `sent` is due at 50 000 packets/s.
fn pace(t0: Instant, sent: u64) {
    let due = Duration::from_micros(sent * 20);
    let el = t0.elapsed();
    if due > el {
        std::thread::sleep(due - el);
    }
}

fn report(args: &Args, what: &str, cpu_ns: u64, n: u64) {
    let us = cpu_ns as f64 / n as f64 / 1000.0;
    let whose = if what == "recvfrom" {
        "receiver"
    } else {
        "sender"
    };
    if args.json {
        println!(r#"{{"what":"{what}","packets":{n},"cpu_us_per_packet":{us:.3}}}"#);
    } else {
        println!("{what:<10} {us:>6.2} µs of {whose} CPU per packet ({n} packets)");
    }
}

fn main() {
    let args = Args::parse();
    if args.mode.as_deref() == Some("drain") {
        drain(&args);
        return;
    }
    let n = args.packets;

    // 1. A null system call.
    let c0 = thread_cpu_ns();
    for _ in 0..1_000_000 {
        // SAFETY: getppid takes no arguments and cannot fail.
        unsafe { libc::getppid() };
    }
    report(&args, "syscall", thread_cpu_ns() - c0, 1_000_000);

    // Destinations: local drained sockets, or 64 ports at --dest.
    let stop = Arc::new(AtomicBool::new(false));
    let (dests, drainer) = match args.dest {
        Some(d) => (
            (0..DESTS)
                .map(|i| SocketAddrV4::new(*d.ip(), d.port() + i))
                .collect::<Vec<_>>(),
            None,
        ),
        None => {
            let rx: Vec<UdpSocket> = (0..DESTS)
                .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
                .collect();
            let addrs = rx
                .iter()
                .map(|s| match s.local_addr().unwrap() {
                    SocketAddr::V4(a) => a,
                    SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
                })
                .collect();
            let st = stop.clone();
            (
                addrs,
                Some(std::thread::spawn(move || drain_sockets(&rx, &st))),
            )
        }
    };
    let tx = UdpSocket::bind(args.bind).unwrap();
    let pkt = [0x80u8; SIZE];

    // 2. sendto, one packet per call.
    let t0 = Instant::now();
    let c0 = thread_cpu_ns();
    for i in 0..n {
        tx.send_to(&pkt, dests[(i % DESTS as u64) as usize])
            .unwrap();
        if i % 50 == 0 {
            pace(t0, i);
        }
    }
    report(&args, "sendto", thread_cpu_ns() - c0, n);

    // 3. sendmmsg, BATCH packets per call, each to its own destination.
    let mut names: Vec<libc::sockaddr_in> = dests.iter().map(|a| sockaddr(*a)).collect();
    let mut iov = libc::iovec {
        iov_base: pkt.as_ptr() as *mut libc::c_void,
        iov_len: SIZE,
    };
    let t0 = Instant::now();
    let c0 = thread_cpu_ns();
    let mut sent = 0u64;
    while sent < n {
        // SAFETY: an all-zero mmsghdr is a valid empty message header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (k, m) in msgs.iter_mut().enumerate() {
            let name = &mut names[(sent as usize + k) % DESTS as usize];
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live sockaddr_in and at `iov`,
        // which points at `pkt`; all outlive the call.
        let r = unsafe { libc::sendmmsg(tx.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        assert!(r > 0, "sendmmsg: {}", std::io::Error::last_os_error());
        sent += r as u64;
        pace(t0, sent);
    }
    report(&args, "sendmmsg", thread_cpu_ns() - c0, sent);

    // 4. AF_XDP TX.
    if let Some(ifname) = &args.xsk {
        match xsk::measure(&args, ifname, &dests, n) {
            Ok(cpu) => report(&args, "af_xdp", cpu, n),
            Err(e) => eprintln!("af_xdp: {e}"),
        }
    }

    stop.store(true, Ordering::Relaxed);
    if let Some(d) = drainer {
        let (got, cpu) = d.join().unwrap();
        // The receiving side of the same packets: recvfrom after the data is
        // queued (delivery was charged to the sender above).
        report(&args, "recvfrom", cpu, got.max(1));
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Drains without blocking in the kernel: a sleep between rounds, so the
/// sender never pays for waking the receiver. Returns the packets received
/// and this thread's CPU time (receives, empty polls and sleeps included).
fn drain_sockets(rx: &[UdpSocket], stop: &AtomicBool) -> (u64, u64) {
    for s in rx {
        s.set_nonblocking(true).unwrap();
    }
    let mut b = [0u8; 2048];
    let mut n = 0u64;
    let c0 = thread_cpu_ns();
    while !stop.load(Ordering::Relaxed) {
        for s in rx {
            while s.recv_from(&mut b).is_ok() {
                n += 1;
            }
        }
        // Rounds 1 ms apart: few empty polls per packet (64 sockets), and
        // the queues stay far below their limits at 50 000 packets/s.
        std::thread::sleep(Duration::from_millis(1));
    }
    (n, thread_cpu_ns() - c0)
}

fn drain(args: &Args) {
    let rx: Vec<UdpSocket> = (0..DESTS)
        .map(|i| UdpSocket::bind(SocketAddrV4::new(*args.bind.ip(), args.bind.port() + i)).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let secs = args.seconds;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        st.store(true, Ordering::Relaxed);
    });
    // Only the count: this process also idles before and after the sender's
    // runs, so its CPU per packet would mean nothing.
    let (n, _) = drain_sockets(&rx, &stop);
    eprintln!("drained {n} packets");
}

mod xsk {
    //! AF_XDP copy-mode TX through `xdpilone` (no libbpf; TX needs no XDP
    //! program).

    use super::{Args, BATCH, DESTS, SIZE, SocketAddrV4, pace, thread_cpu_ns};
    use std::ffi::CString;
    use std::num::NonZeroU32;
    use std::ptr::NonNull;
    use std::time::Instant;
    use xdpilone::xdp::XdpDesc;
    use xdpilone::{BufIdx, IfInfo, Socket, SocketConfig, Umem, UmemConfig};

    /// `XDP_COPY` bind flag (copy mode: works on every driver, veth included).
    const XDP_COPY: u16 = 1 << 1;
    const UMEM_LEN: usize = 1 << 22;

    #[repr(C, align(4096))]
    struct Area([u8; UMEM_LEN]);

    fn mac(s: &str) -> Result<[u8; 6], String> {
        let v = s
            .split(':')
            .map(|x| u8::from_str_radix(x, 16))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad MAC {s}: {e}"))?;
        v.try_into().map_err(|_| format!("bad MAC {s}"))
    }

    fn checksum(words: &[u8]) -> u16 {
        let mut sum: u32 = words
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Writes an Ethernet + IPv4 + UDP frame carrying SIZE payload octets.
    fn frame(b: &mut [u8], macs: ([u8; 6], [u8; 6]), src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
        let (smac, dmac) = macs;
        b[0..6].copy_from_slice(&dmac);
        b[6..12].copy_from_slice(&smac);
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (20 + 8 + SIZE) as u16;
        let ip = &mut b[14..34];
        ip[0] = 0x45;
        ip[1] = 0xb8; // DSCP EF, as RTP should carry
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // DF
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let c = checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp = &mut b[34..42];
        udp[0..2].copy_from_slice(&src.port().to_be_bytes());
        udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + SIZE) as u16).to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]); // no UDP checksum (IPv4 allows it)
        b[42..42 + SIZE].fill(0x80);
        (42 + SIZE) as u32
    }

    pub(super) fn measure(
        args: &Args,
        ifname: &str,
        dests: &[SocketAddrV4],
        n: u64,
    ) -> Result<u64, String> {
        let e =
            |what: &'static str| move |e: xdpilone::Errno| format!("{what}: errno {}", e.get_raw());
        let macs = (
            mac(args.src_mac.as_deref().ok_or("--src-mac is needed")?)?,
            mac(args.dst_mac.as_deref().ok_or("--dst-mac is needed")?)?,
        );
        if args.dest.is_none() {
            return Err("--dest is needed".into());
        }
        let src = SocketAddrV4::new(*args.bind.ip(), 40_000);
        let area: &'static mut Area = Box::leak(Box::new(Area([0; UMEM_LEN])));
        let mem = NonNull::from(&mut area.0[..]);
        // SAFETY: the area is page-aligned and leaked, so it outlives the
        // UMEM and every socket bound to it.
        let umem = unsafe { Umem::new(UmemConfig::default(), mem) }.map_err(e("umem"))?;
        let name = CString::new(ifname).map_err(|_| "bad interface name")?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(e("interface"))?;
        info.set_queue(0);
        let sock = Socket::with_shared(&info, &umem).map_err(e("socket"))?;
        let mut device = umem.fq_cq(&sock).map_err(e("fill/completion rings"))?;
        let rxtx = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: None,
                    tx_size: NonZeroU32::new(2048),
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | XDP_COPY,
                },
            )
            .map_err(e("tx ring"))?;
        let mut tx = rxtx.map_tx().map_err(e("map tx"))?;
        umem.bind(&rxtx).map_err(e("bind"))?;

        let mut descs = Vec::new();
        for (i, d) in dests.iter().enumerate().take(DESTS as usize) {
            let mut f = umem.frame(BufIdx(i as u32)).ok_or("umem too small")?;
            // SAFETY: frame i is ours alone until it is put on the TX ring.
            let len = frame(unsafe { f.addr.as_mut() }, macs, src, *d);
            descs.push(XdpDesc {
                addr: f.offset,
                len,
                options: 0,
            });
        }
        let t0 = Instant::now();
        let c0 = thread_cpu_ns();
        let (mut sent, mut done) = (0u64, 0u64);
        while done < n {
            if sent < n {
                let want = (n - sent).min(BATCH as u64) as u32;
                let mut w = tx.transmit(want);
                let k = w.insert((0..).map(|j| descs[((sent + j) % u64::from(DESTS)) as usize]));
                w.commit();
                drop(w);
                sent += u64::from(k);
                if tx.needs_wakeup() {
                    tx.wake();
                }
            }
            let mut r = device.complete(4096);
            while r.read().is_some() {
                done += 1;
            }
            r.release();
            pace(t0, sent);
        }
        Ok(thread_cpu_ns() - c0)
    }
}
