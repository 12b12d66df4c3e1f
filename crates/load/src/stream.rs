//! The generator (paced senders, one RTP stream per call and direction) and
//! the verifier (decrypt, check stream/sequence/payload, loss and jitter).
//!
//! Every packet carries, after its RTP header, a 16-octet verification
//! block: send time (ns since start), stream index, direction and the
//! extended sequence number; the rest of the payload is a pattern derived
//! from them, so corruption anywhere is detected.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cpu;
use crate::rxts::{self, RealtimeBase};
use mediagate_media::relay::PairPorts;
use mediagate_media::session::LegKeys;
use mediagate_media::srtp::{SrtpConfig, SrtpContext};

/// The verifier's pause after a wake-up that took fewer than
/// [`PAUSE_BELOW`] packets, so it takes them in batches and the relay is
/// not charged for waking it per packet (see [`crate::rxts`]).
const PAUSE: Duration = Duration::from_micros(500);
const PAUSE_BELOW: usize = 32;

/// What the generator and verifier need to know about one call.
pub(crate) struct StreamPlan {
    pub(crate) index: u32,
    pub(crate) ports: PairPorts,
    pub(crate) a_keys: Option<LegKeys>,
    pub(crate) b_keys: Option<LegKeys>,
    /// Which of the peer sockets (per side) this call's peers use.
    pub(crate) sock: usize,
}

const HDR: usize = 12;

fn ssrc(index: u32, dir: u32) -> u32 {
    0x4d47_0000u32.wrapping_add(index * 2 + dir)
}

fn pattern(index: u32, seq: u32, i: usize) -> u8 {
    (seq as u8) ^ (index as u8).rotate_left(3) ^ (i as u8)
}

struct TxStream {
    index: u32,
    dir: u32,
    dest: SocketAddr,
    from_b: bool,
    sock: usize,
    ctx: Option<SrtpContext>,
    seq: u32,
    sent: u64,
}

/// Paces packets for every stream and direction.
pub(crate) struct Sender {
    streams: Vec<TxStream>,
    size: usize,
    start: Instant,
    period: Duration,
}

impl Sender {
    pub(crate) fn new(
        plans: &[StreamPlan],
        size: usize,
        two_way: bool,
        start: Instant,
        period: Duration,
    ) -> Self {
        let mut streams = Vec::new();
        for p in plans {
            streams.push(TxStream {
                index: p.index,
                dir: 0,
                dest: p.ports.a_rtp,
                from_b: false,
                sock: p.sock,
                ctx: p
                    .a_keys
                    .as_ref()
                    .map(|k| SrtpContext::new(&k.rx, SrtpConfig::default())),
                seq: 0,
                sent: 0,
            });
            if two_way {
                streams.push(TxStream {
                    index: p.index,
                    dir: 1,
                    dest: p.ports.b_rtp,
                    from_b: true,
                    sock: p.sock,
                    ctx: p
                        .b_keys
                        .as_ref()
                        .map(|k| SrtpContext::new(&k.rx, SrtpConfig::default())),
                    seq: 0,
                    sent: 0,
                });
            }
        }
        Self {
            streams,
            size,
            start,
            period,
        }
    }

    /// Sends until `duration` has passed; returns `(ssrc, packets sent)` per
    /// stream, the thread's CPU time, and when the last packet left (seconds
    /// since start: more than `duration` if the sender fell behind).
    #[allow(clippy::disallowed_methods)] // the load tool's own clock
    pub(crate) fn run(
        &mut self,
        (a, b): (Vec<UdpSocket>, Vec<UdpSocket>),
        duration: Duration,
        total: &AtomicU64,
    ) -> (HashMap<u32, u64>, u64, f64) {
        let n = self.streams.len() as u32;
        let mut buf = vec![0u8; self.size + 64];
        let (mut cursor, mut round) = (0u32, 0u32);
        let due = |cursor: u32, round: u32| self.period * round + self.period * cursor / n;
        let mut sent_total = 0u64;
        loop {
            let now = self.start.elapsed();
            if now >= duration {
                break;
            }
            // Everything due now, in the order the schedule staggers them.
            while due(cursor, round) <= now {
                let s = &mut self.streams[cursor as usize];
                let len = build(&mut buf, s.index, s.dir, s.seq, self.size, self.start);
                let len = match s.ctx.as_mut() {
                    Some(c) => c.protect_rtp(&mut buf, len).unwrap_or(len),
                    None => len,
                };
                let sock = if s.from_b { &b[s.sock] } else { &a[s.sock] };
                for _ in 0..100 {
                    match sock.send_to(&buf[..len], s.dest) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::yield_now()
                        }
                        _ => break,
                    }
                }
                s.seq += 1;
                s.sent += 1;
                sent_total += 1;
                cursor += 1;
                if cursor == n {
                    cursor = 0;
                    round += 1;
                }
            }
            total.store(sent_total, Ordering::Relaxed);
            let next = due(cursor, round);
            let now = self.start.elapsed();
            if next > now {
                std::thread::sleep((next - now).min(Duration::from_millis(1)));
            }
        }
        total.store(sent_total, Ordering::Relaxed);
        let sent = self
            .streams
            .iter()
            .map(|s| (ssrc(s.index, s.dir), s.sent))
            .collect();
        (
            sent,
            cpu::current_thread_ns(),
            self.start.elapsed().as_secs_f64(),
        )
    }
}

#[allow(clippy::disallowed_methods)]
fn build(buf: &mut [u8], index: u32, dir: u32, seq: u32, size: usize, start: Instant) -> usize {
    buf[0] = 0x80;
    buf[1] = 0; // PCMU
    buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[4..8].copy_from_slice(&(seq.wrapping_mul(160)).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc(index, dir).to_be_bytes());
    let t = start.elapsed().as_nanos() as u64;
    buf[12..20].copy_from_slice(&t.to_be_bytes());
    buf[20..24].copy_from_slice(&seq.to_be_bytes());
    buf[24..28].copy_from_slice(&(index * 2 + dir).to_be_bytes());
    for (i, b) in buf[28..size].iter_mut().enumerate() {
        *b = pattern(index, seq, i);
    }
    size
}

struct RxStream {
    index: u32,
    ctx: Option<SrtpContext>,
    received: u64,
    duplicates: u64,
    /// Highest sequence seen and a window of the 1024 before it.
    highest: Option<u32>,
    window: [u64; 16],
    last_transit: Option<i64>,
    jitter_ns: f64,
}

impl RxStream {
    /// Records `seq`; false if it is a duplicate.
    fn mark(&mut self, seq: u32) -> bool {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.window = [0; 16];
            self.window[0] = 1;
            return true;
        };
        if seq > h {
            let shift = (seq - h) as usize;
            let mut w = [0u64; 16];
            for bit in 0..1024usize {
                let nb = bit + shift;
                if nb < 1024 && self.window[bit / 64] >> (bit % 64) & 1 == 1 {
                    w[nb / 64] |= 1 << (nb % 64);
                }
            }
            w[0] |= 1;
            self.window = w;
            self.highest = Some(seq);
            return true;
        }
        let back = (h - seq) as usize;
        if back >= 1024 {
            return true; // too old to tell; count it
        }
        let (w, b) = (back / 64, back % 64);
        if self.window[w] >> b & 1 == 1 {
            return false;
        }
        self.window[w] |= 1 << b;
        true
    }
}

/// Verifies everything the relay delivers to the peers.
pub(crate) struct Receiver {
    streams: HashMap<u32, RxStream>,
    size: usize,
    start: Instant,
    /// Maps the kernel's receive timestamps onto `start`.
    realtime_base: RealtimeBase,
    corrupt: u64,
    latencies: LatencyHistogram,
    cpu_ns: u64,
}

/// One-way latency histogram with fixed memory: 16 sub-buckets per power of
/// two of microseconds (≤ 6 % error), so long soak runs stay flat.
struct LatencyHistogram {
    buckets: [u64; 64 * 16],
    count: u64,
}

impl LatencyHistogram {
    fn new() -> Self {
        Self {
            buckets: [0; 64 * 16],
            count: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as usize; // ≥ 4
        let mantissa = ((us >> (exp - 4)) & 0xf) as usize;
        ((exp - 3) * 16 + mantissa).min(64 * 16 - 1)
    }

    /// The lower bound of bucket `i`, in µs.
    fn value(i: usize) -> u64 {
        if i < 16 {
            return i as u64;
        }
        let exp = i / 16 + 3;
        let mantissa = (i % 16) as u64;
        (16 | mantissa) << (exp - 4)
    }

    fn record(&mut self, us: u64) {
        self.buckets[Self::index(us)] += 1;
        self.count += 1;
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((self.count - 1) as f64 * p) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen > rank {
                return Self::value(i) as f64;
            }
        }
        0.0
    }
}

/// Totals of a verified run.
pub(crate) struct Verified {
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) corrupt: u64,
    pub(crate) duplicates: u64,
    pub(crate) jitter_mean_us: f64,
    pub(crate) jitter_max_us: f64,
    pub(crate) latency_p50_us: f64,
    pub(crate) latency_p99_us: f64,
    pub(crate) cpu_ns: u64,
}

impl Receiver {
    pub(crate) fn new(
        plans: &[StreamPlan],
        size: usize,
        start: Instant,
        realtime_base: RealtimeBase,
    ) -> Self {
        let mut streams = HashMap::new();
        for p in plans {
            // A→B arrives at peer B, encrypted (if leg B is SRTP) with leg B's tx key.
            let rx = |k: &Option<LegKeys>| {
                k.as_ref()
                    .map(|k| SrtpContext::new(&k.tx, SrtpConfig::default()))
            };
            for (dir, ctx) in [(0, rx(&p.b_keys)), (1, rx(&p.a_keys))] {
                streams.insert(
                    ssrc(p.index, dir),
                    RxStream {
                        index: p.index,
                        ctx,
                        received: 0,
                        duplicates: 0,
                        highest: None,
                        window: [0; 16],
                        last_transit: None,
                        jitter_ns: 0.0,
                    },
                );
            }
        }
        Self {
            streams,
            size,
            start,
            realtime_base,
            corrupt: 0,
            latencies: LatencyHistogram::new(),
            cpu_ns: 0,
        }
    }

    /// Receives until `stop` is set and the sockets are quiet. Arrival
    /// times are the kernel's timestamps where it gives them.
    pub(crate) fn run(&mut self, socks: Vec<UdpSocket>, stop: &AtomicBool) {
        let Ok(mut poll) = mio::Poll::new() else {
            return;
        };
        for (i, s) in socks.iter().enumerate() {
            // Without timestamps the verifier reads the clock itself.
            let _ = rxts::enable(s);
            if s.set_nonblocking(true).is_err()
                || poll
                    .registry()
                    .register(
                        &mut mio::unix::SourceFd(&s.as_raw_fd()),
                        mio::Token(i),
                        mio::Interest::READABLE,
                    )
                    .is_err()
            {
                return;
            }
        }
        let mut events = mio::Events::with_capacity(256);
        let mut batch = rxts::Batch::new();
        loop {
            let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
            if events.is_empty() && stop.load(Ordering::Relaxed) {
                break;
            }
            let mut handled = 0;
            for ev in events.iter() {
                let Some(sock) = socks.get(ev.token().0) else {
                    continue;
                };
                // Edge-triggered: drain until empty.
                while let Ok(n) = batch.recv(sock) {
                    if n == 0 {
                        break;
                    }
                    handled += n;
                    #[allow(clippy::disallowed_methods)]
                    let now = self.start.elapsed().as_nanos() as i64;
                    for i in 0..n {
                        let got = batch.got[i];
                        let arrival = got.stamp.map_or(now, |s| self.realtime_base.since_start(s));
                        self.verify(&mut batch.bufs[i], got.len.min(rxts::BUF), arrival);
                    }
                    if n < rxts::BATCH {
                        break;
                    }
                }
            }
            if handled > 0 && handled < PAUSE_BELOW {
                std::thread::sleep(PAUSE);
            }
        }
        self.cpu_ns = cpu::current_thread_ns();
    }

    fn verify(&mut self, pkt: &mut [u8], len: usize, arrival_ns: i64) {
        if len < HDR + 16 {
            self.corrupt += 1;
            return;
        }
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let Some(st) = self.streams.get_mut(&ssrc) else {
            self.corrupt += 1;
            return;
        };
        let len = match st.ctx.as_mut() {
            Some(c) => match c.unprotect_rtp(pkt, len) {
                Ok(l) => l,
                Err(_) => {
                    self.corrupt += 1;
                    return;
                }
            },
            None => len,
        };
        let sent_ns = i64::from_be_bytes(pkt[12..20].try_into().unwrap_or([0; 8]));
        let seq = u32::from_be_bytes(pkt[20..24].try_into().unwrap_or([0; 4]));
        let tag = u32::from_be_bytes(pkt[24..28].try_into().unwrap_or([0; 4]));
        let ok = len == self.size
            && u16::from_be_bytes([pkt[2], pkt[3]]) == seq as u16
            && tag == ssrc.wrapping_sub(0x4d47_0000)
            && pkt[28..len]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(st.index, seq, i));
        if !ok {
            self.corrupt += 1;
            return;
        }
        if !st.mark(seq) {
            st.duplicates += 1;
            return;
        }
        st.received += 1;
        let transit = arrival_ns - sent_ns;
        if let Some(prev) = st.last_transit {
            let d = (transit - prev).abs() as f64;
            st.jitter_ns += (d - st.jitter_ns) / 16.0;
        }
        st.last_transit = Some(transit);
        self.latencies.record((transit / 1000).max(0) as u64);
    }

    /// Totals, given what the sender sent per SSRC.
    pub(crate) fn summary(self, sent: &HashMap<u32, u64>) -> Verified {
        let mut received = 0;
        let mut lost = 0;
        let mut dups = 0;
        let mut jit = Vec::new();
        for (ssrc, st) in &self.streams {
            let s = sent.get(ssrc).copied().unwrap_or(0);
            if s == 0 && st.received == 0 {
                continue;
            }
            received += st.received;
            dups += st.duplicates;
            lost += s.saturating_sub(st.received);
            jit.push(st.jitter_ns / 1000.0);
        }
        let pct = |p: f64| self.latencies.percentile(p);
        Verified {
            received,
            lost,
            corrupt: self.corrupt,
            duplicates: dups,
            jitter_mean_us: if jit.is_empty() {
                0.0
            } else {
                jit.iter().sum::<f64>() / jit.len() as f64
            },
            jitter_max_us: jit.iter().copied().fold(0.0, f64::max),
            latency_p50_us: pct(0.5),
            latency_p99_us: pct(0.99),
            cpu_ns: self.cpu_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LatencyHistogram;

    #[test]
    fn histogram_buckets_are_monotonic_and_close() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1000,
            12_345,
            1_000_000,
            u64::MAX / 4,
        ] {
            let i = LatencyHistogram::index(us);
            assert!(i >= last, "monotonic at {us}");
            last = i;
            let v = LatencyHistogram::value(i);
            assert!(
                v <= us && (us - v) as f64 <= us as f64 * 0.0625 + 1.0,
                "{us} -> {v}"
            );
        }
        let mut h = LatencyHistogram::new();
        for us in 1..=1000 {
            h.record(us);
        }
        let p50 = h.percentile(0.5);
        assert!((470.0..=500.0).contains(&p50), "p50 {p50}");
        assert!(h.percentile(0.99) >= 930.0);
    }
}
