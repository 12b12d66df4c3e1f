//! The relay: the only module of this crate that does I/O.
//!
//! # Threading model
//!
//! ```text
//!   signaling ──► Relay (handle, any thread)
//!                   │ allocate(): bind 2×(RTP, RTCP) sockets from the port range
//!                   │ commands over a channel + mio Waker
//!                   ▼
//!   worker 0 ── mio::Poll (epoll) over its pairs' sockets ── recvmmsg batches
//!   worker 1 ──   …                                         → LegPair::handle_packet
//!   …                                                       → send_to from the other leg's socket
//! ```
//!
//! - One worker thread per core (configurable), named `mg-relay-N`. A pair
//!   (both legs of a call) lives on one worker, chosen round-robin, so a
//!   packet is received, transformed and sent by one thread with no lock and
//!   no hand-off; per-stream mutable state (ROC, replay window, counters) is
//!   owned by that worker.
//! - Signaling never touches a pair directly: it sends commands (add, set a
//!   leg, release, read stats) that the worker applies between batches.
//! - Each readiness event drains its socket with `recvmmsg` (quinn-udp, up
//!   to 32 datagrams per call). A batch shorter than 32 means the socket is
//!   drained, so no extra `EAGAIN` call is made. A socket that still has
//!   data after 8 batches is revisited after the other ready sockets, so one
//!   flooded port cannot starve the others (bounded work per wake-up).
//! - Receive buffers are allocated once per worker; packets are transformed
//!   in place and sent from the same buffer. Nothing is allocated or logged
//!   per packet.
//! - Global counters are atomics, updated once per wake-up, not per packet.

mod ports;
mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::session::{DropReason, LegSpec, LegStats, SessionConfig, Side};
use ports::PortPool;
use worker::{Command, Worker};

/// Relay settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Address the media sockets bind to (advertised in SDP).
    pub bind_ip: IpAddr,
    /// Lowest port of the media range (RTP ports are even, RTCP = RTP + 1).
    pub port_min: u16,
    /// Highest port of the media range.
    pub port_max: u16,
    /// Worker threads; default: the number of available cores.
    pub workers: usize,
    /// Per-pair settings (SRTP, restart window, media timeouts).
    pub session: SessionConfig,
    /// Wake-up coalescing: after a wake-up that relayed fewer than
    /// [`COALESCE_BELOW`] packets, a worker waits this long before polling
    /// again, so the next wake-up handles a batch (like NIC interrupt
    /// moderation). Adds at most this much delay to a packet; zero turns it
    /// off. Default 500 µs: invisible to 20 ms audio, and it cuts the
    /// per-packet wake-up cost (see BENCHMARKS.md).
    pub coalesce: Duration,
}

/// Wake-ups that relay at least this many packets are not followed by a
/// coalescing pause: the worker is busy enough to batch on its own.
pub const COALESCE_BELOW: u64 = 32;

impl RelayConfig {
    /// Defaults for `bind_ip`: ports 30000–39999, one worker per core.
    pub fn new(bind_ip: IpAddr) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            bind_ip,
            port_min: 30_000,
            port_max: 39_999,
            workers,
            session: SessionConfig::default(),
            coalesce: Duration::from_micros(500),
        }
    }

    /// Sets the wake-up coalescing pause (zero: off).
    pub fn with_coalesce(mut self, pause: Duration) -> Self {
        self.coalesce = pause;
        self
    }

    /// Sets the port range.
    pub fn with_ports(mut self, min: u16, max: u16) -> Self {
        self.port_min = min;
        self.port_max = max;
        self
    }

    /// Sets the number of worker threads.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Sets the per-pair settings.
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }
}

/// Identifies a call's media (a leg pair) in the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairId(pub u64);

/// The local addresses of a newly allocated pair, to put in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairPorts {
    /// The pair's id.
    pub id: PairId,
    /// Leg A's RTP address (its RTCP port is one above).
    pub a_rtp: SocketAddr,
    /// Leg B's RTP address (its RTCP port is one above).
    pub b_rtp: SocketAddr,
}

impl PairPorts {
    /// The RTP address of `side`.
    pub fn rtp(&self, side: Side) -> SocketAddr {
        match side {
            Side::A => self.a_rtp,
            Side::B => self.b_rtp,
        }
    }
}

/// Things the relay reports to signaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// A call's media is dead ([`crate::session::LegPair::poll_timeout`]):
    /// reported once; the pair keeps relaying until signaling ends the call
    /// and releases it.
    Timeout {
        /// The pair.
        id: PairId,
        /// The silent leg.
        side: Side,
        /// For how long.
        idle_for: Duration,
        /// The pair was on hold (the hold timeout applied).
        on_hold: bool,
    },
}

/// Relay-wide counters (Prometheus-ready), updated by the workers once per
/// wake-up.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Packets relayed (sent).
    pub packets: AtomicU64,
    /// Octets relayed (sent).
    pub bytes: AtomicU64,
    /// Receive system calls (`recvmmsg`) made, to see the batching effect.
    pub recv_calls: AtomicU64,
    /// Drops by reason, [`DropReason::ALL`] order.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Pairs currently allocated.
    pub pairs: AtomicU64,
}

impl RelayCounters {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }
}

struct WorkerHandle {
    tx: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl WorkerHandle {
    fn send(&self, cmd: Command) -> io::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "relay worker stopped"))?;
        self.waker.wake()
    }
}

/// A running relay: the control-plane handle. Cheap to share behind an
/// `Arc`; every method may be called from any thread.
pub struct Relay {
    workers: Vec<WorkerHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    ports: Arc<Mutex<PortPool>>,
    next_id: AtomicU64,
    counters: Arc<RelayCounters>,
    events: Mutex<Option<mpsc::Receiver<RelayEvent>>>,
    bind_ip: IpAddr,
    coalesce: Duration,
    /// Each pair's counters as its worker last published them (every second).
    snapshots: Snapshots,
}

/// Per-pair counters the workers publish once a second, read without a round trip to them.
pub(crate) type Snapshots = Arc<Mutex<std::collections::HashMap<PairId, [LegStats; 2]>>>;

impl Relay {
    /// Starts the worker threads.
    pub fn start(config: RelayConfig) -> io::Result<Self> {
        let ports = Arc::new(Mutex::new(PortPool::new(config.port_min, config.port_max)?));
        let counters = Arc::new(RelayCounters::default());
        let snapshots: Snapshots = Arc::default();
        let (ev_tx, ev_rx) = mpsc::channel();
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for n in 0..config.workers.max(1) {
            let (tx, rx) = mpsc::channel();
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
            let w = Worker::new(
                poll,
                rx,
                config.session.clone(),
                config.coalesce,
                worker::WorkerShared {
                    counters: counters.clone(),
                    ports: ports.clone(),
                    events_tx: ev_tx.clone(),
                    snapshots: snapshots.clone(),
                },
            );
            let t = std::thread::Builder::new()
                .name(format!("mg-relay-{n}"))
                .spawn(move || w.run())?;
            workers.push(WorkerHandle { tx, waker });
            threads.push(t);
        }
        Ok(Self {
            workers,
            threads: Mutex::new(threads),
            ports,
            next_id: AtomicU64::new(1),
            counters,
            events: Mutex::new(Some(ev_rx)),
            bind_ip: config.bind_ip,
            coalesce: config.coalesce,
            snapshots,
        })
    }

    fn worker(&self, id: PairId) -> &WorkerHandle {
        &self.workers[(id.0 as usize) % self.workers.len()]
    }

    /// Reserves media for a new call: two legs, each with an RTP and an RTCP
    /// socket from the port range. Packets are dropped (`NotReady`) until
    /// both legs are set.
    pub fn allocate(&self) -> io::Result<PairPorts> {
        let (a, a_port) = self.bind_leg()?;
        let (b, b_port) = match self.bind_leg() {
            Ok(v) => v,
            Err(e) => {
                self.lock_ports().release(a_port);
                return Err(e);
            }
        };
        let id = PairId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.worker(id).send(Command::Add {
            id,
            sockets: [a, b],
            ports: [a_port, b_port],
        })?;
        Ok(PairPorts {
            id,
            a_rtp: SocketAddr::new(self.bind_ip, a_port),
            b_rtp: SocketAddr::new(self.bind_ip, b_port),
        })
    }

    fn lock_ports(&self) -> std::sync::MutexGuard<'_, PortPool> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bind_leg(&self) -> io::Result<([UdpSocket; 2], u16)> {
        let mut pool = self.lock_ports();
        for _ in 0..pool.capacity() {
            let Some(port) = pool.take() else { break };
            let rtp = UdpSocket::bind(SocketAddr::new(self.bind_ip, port));
            let rtcp = UdpSocket::bind(SocketAddr::new(self.bind_ip, port + 1));
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => return Ok(([rtp, rtcp], port)),
                // Taken by another process: leave it marked and move on.
                _ => continue,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "media port range exhausted",
        ))
    }

    /// Sets or updates one leg of a pair (see [`crate::session::LegPair::set_leg`]).
    pub fn set_leg(&self, id: PairId, side: Side, spec: LegSpec) -> io::Result<()> {
        self.worker(id).send(Command::SetLeg { id, side, spec })
    }

    /// Releases a pair: its sockets close and its ports return to the pool.
    pub fn release(&self, id: PairId) -> io::Result<()> {
        self.worker(id).send(Command::Release { id })
    }

    /// The counters of both legs of a pair, or `None` if it does not exist.
    pub fn stats(&self, id: PairId) -> io::Result<Option<[LegStats; 2]>> {
        let (tx, rx) = mpsc::channel();
        self.worker(id).send(Command::Stats { id, reply: tx })?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "relay worker did not answer"))
    }

    /// The counters of both legs of a pair as of the last second, without asking its worker
    /// (cheap, never blocks on the worker); `None` for an unknown pair.
    pub fn stats_snapshot(&self, id: PairId) -> Option<[LegStats; 2]> {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// How many worker threads relay packets (the configured number, at least one).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The workers' wake-up coalescing pause ([`RelayConfig::coalesce`]).
    pub fn coalesce(&self) -> Duration {
        self.coalesce
    }

    /// Relay-wide counters.
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.counters
    }

    /// The event stream (dead calls). Returns it once; later calls get `None`.
    pub fn take_events(&self) -> Option<mpsc::Receiver<RelayEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Stops the workers and waits for them; every socket is closed.
    pub fn shutdown(&self) {
        for w in &self.workers {
            let _ = w.send(Command::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}
