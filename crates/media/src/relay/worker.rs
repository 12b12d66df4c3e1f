//! One relay worker thread: epoll over its pairs' sockets, batched receive,
//! in-place transform, send from the other leg's socket.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};

use super::ports::PortPool;
use super::{PairId, RelayCounters, RelayEvent, Snapshots};
use crate::session::{
    Action, DropReason, LegPair, LegSpec, LegStats, PacketKind, SessionConfig, Side,
};

/// Token of the waker that signals new commands.
pub(super) const WAKER: Token = Token(usize::MAX);
/// Receive buffer size; packets are received into the first
/// `BUF_LEN - HEADROOM` octets so SRTP/SRTCP overhead always fits.
const BUF_LEN: usize = 2048;
const HEADROOM: usize = 64;
/// Batches per socket per wake-up before it yields to other sockets.
const MAX_BATCHES: usize = 8;
/// How often media timeouts are checked.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Control-plane commands, applied between batches.
#[allow(clippy::large_enum_variant)] // a few per call, never per packet
pub(super) enum Command {
    Add {
        id: PairId,
        sockets: [[UdpSocket; 2]; 2],
        ports: [u16; 2],
    },
    SetLeg {
        id: PairId,
        side: Side,
        spec: LegSpec,
    },
    Release {
        id: PairId,
    },
    Stats {
        id: PairId,
        reply: mpsc::Sender<Option<[LegStats; 2]>>,
    },
    Shutdown,
}

struct Sock {
    io: mio::net::UdpSocket,
    state: UdpSocketState,
}

struct Slot {
    id: PairId,
    pair: LegPair,
    /// `[side][kind]`: leg A/B × RTP/RTCP.
    socks: [[Sock; 2]; 2],
    ports: [u16; 2],
}

/// Per-wake-up counter deltas, flushed to the shared atomics once.
#[derive(Default)]
struct Tally {
    packets: u64,
    bytes: u64,
    recv_calls: u64,
    drops: [u64; DropReason::COUNT],
}

pub(super) struct Worker {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    config: SessionConfig,
    coalesce: Duration,
    counters: Arc<RelayCounters>,
    ports: Arc<Mutex<PortPool>>,
    events_tx: mpsc::Sender<RelayEvent>,
    snapshots: Snapshots,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_id: HashMap<PairId, usize>,
    bufs: Vec<[u8; BUF_LEN]>,
    metas: Vec<RecvMeta>,
    /// Sockets that still had data when their batch budget ran out.
    pending: Vec<Token>,
}

fn token(slot: usize, side: Side, kind: PacketKind) -> Token {
    let s = match side {
        Side::A => 0,
        Side::B => 2,
    };
    let k = match kind {
        PacketKind::Rtp => 0,
        PacketKind::Rtcp => 1,
    };
    Token((slot << 2) | s | k)
}

fn decode(t: Token) -> (usize, Side, PacketKind) {
    let side = if t.0 & 2 == 0 { Side::A } else { Side::B };
    let kind = if t.0 & 1 == 0 {
        PacketKind::Rtp
    } else {
        PacketKind::Rtcp
    };
    (t.0 >> 2, side, kind)
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn kidx(kind: PacketKind) -> usize {
    match kind {
        PacketKind::Rtp => 0,
        PacketKind::Rtcp => 1,
    }
}

/// What every worker shares with the [`super::Relay`] handle and the other workers.
pub(super) struct WorkerShared {
    /// Relay-wide packet and drop counters.
    pub(super) counters: Arc<RelayCounters>,
    /// The media port pool (ports go back to it when a pair is removed).
    pub(super) ports: Arc<Mutex<PortPool>>,
    /// Timeouts and other events for the signaling side.
    pub(super) events_tx: mpsc::Sender<RelayEvent>,
    /// Per-pair counters published once a second.
    pub(super) snapshots: Snapshots,
}

impl Worker {
    pub(super) fn new(
        poll: Poll,
        commands: mpsc::Receiver<Command>,
        config: SessionConfig,
        coalesce: Duration,
        shared: WorkerShared,
    ) -> Self {
        let WorkerShared {
            counters,
            ports,
            events_tx,
            snapshots,
        } = shared;
        Self {
            poll,
            commands,
            config,
            coalesce,
            counters,
            ports,
            events_tx,
            snapshots,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            bufs: vec![[0u8; BUF_LEN]; BATCH_SIZE],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
            pending: Vec::new(),
        }
    }

    /// The driver reads the clock; everything below it takes `now`.
    #[allow(clippy::disallowed_methods)]
    fn now() -> Instant {
        Instant::now()
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_idle = Self::now() + IDLE_CHECK;
        loop {
            let timeout = if self.pending.is_empty() {
                Some(IDLE_CHECK)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing_error(&e);
                return;
            }
            let now = Self::now();
            // Commands first: a leg set before a packet was sent must apply
            // to that packet.
            if events.iter().any(|e| e.token() == WAKER) && !self.apply_commands(now) {
                return;
            }
            let mut tally = Tally::default();
            let pending = std::mem::take(&mut self.pending);
            for t in pending {
                self.drain(t, now, &mut tally);
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.drain(ev.token(), now, &mut tally);
                }
            }
            self.flush(&tally);
            let handled = tally.packets + tally.drops.iter().sum::<u64>();
            if !self.coalesce.is_zero()
                && handled > 0
                && handled < super::COALESCE_BELOW
                && self.pending.is_empty()
            {
                // Let packets accumulate so the next wake-up handles a batch.
                std::thread::sleep(self.coalesce);
            }
            if now >= next_idle {
                self.check_idle(now);
                next_idle = now + IDLE_CHECK;
            }
        }
    }

    fn flush(&self, t: &Tally) {
        let c = &self.counters;
        if t.packets > 0 {
            c.packets.fetch_add(t.packets, Ordering::Relaxed);
            c.bytes.fetch_add(t.bytes, Ordering::Relaxed);
        }
        if t.recv_calls > 0 {
            c.recv_calls.fetch_add(t.recv_calls, Ordering::Relaxed);
        }
        for (a, d) in c.drops.iter().zip(t.drops) {
            if d > 0 {
                a.fetch_add(d, Ordering::Relaxed);
            }
        }
    }

    /// Receives from one socket in batches and relays every packet.
    fn drain(&mut self, t: Token, now: Instant, tally: &mut Tally) {
        let (slot_i, side, kind) = decode(t);
        for _ in 0..MAX_BATCHES {
            let Some(Some(slot)) = self.slots.get_mut(slot_i) else {
                return;
            };
            let sock = &slot.socks[idx(side)][kidx(kind)];
            let n = {
                let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] = {
                    let mut it = self.bufs.iter_mut();
                    std::array::from_fn(|_| match it.next() {
                        Some(b) => IoSliceMut::new(&mut b[..BUF_LEN - HEADROOM]),
                        None => IoSliceMut::new(&mut []),
                    })
                };
                match sock
                    .state
                    .recv((&sock.io).into(), &mut iovs, &mut self.metas)
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // Any other error (e.g. ENOBUFS) is transient for a
                    // datagram socket; retry, bounded by MAX_BATCHES, so
                    // queued packets are not left waiting for the next edge.
                    Err(_) => continue,
                }
            };
            tally.recv_calls += 1;
            for i in 0..n {
                let meta = self.metas[i];
                let stride = meta.stride.max(1);
                if meta.len <= stride {
                    relay_one(
                        slot,
                        side,
                        kind,
                        meta.addr,
                        &mut self.bufs[i],
                        meta.len,
                        now,
                        tally,
                    );
                } else {
                    // GRO coalesced several datagrams: relay each from a
                    // copy with headroom (rare; not on the normal path).
                    let mut seg = [0u8; BUF_LEN];
                    let mut off = 0;
                    while off < meta.len {
                        let l = stride.min(meta.len - off).min(BUF_LEN - HEADROOM);
                        seg[..l].copy_from_slice(&self.bufs[i][off..off + l]);
                        relay_one(slot, side, kind, meta.addr, &mut seg, l, now, tally);
                        off += stride;
                    }
                }
            }
            if n < BATCH_SIZE {
                return; // drained: the next datagram raises a new edge
            }
        }
        self.pending.push(t);
    }

    /// Applies queued commands; returns false on shutdown.
    fn apply_commands(&mut self, now: Instant) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Add { id, sockets, ports } => {
                    if let Err(e) = self.add(id, sockets, ports) {
                        // The sockets are closed by now; give the ports back.
                        tracing_error(&e);
                        let mut pool = self.ports.lock().unwrap_or_else(|p| p.into_inner());
                        for p in ports {
                            pool.release(p);
                        }
                    }
                }
                Command::SetLeg { id, side, spec } => {
                    if let Some(Some(slot)) =
                        self.by_id.get(&id).and_then(|i| self.slots.get_mut(*i))
                    {
                        slot.pair.set_leg(now, side, spec);
                    }
                }
                Command::Release { id } => self.remove(id),
                Command::Stats { id, reply } => {
                    let stats = self
                        .by_id
                        .get(&id)
                        .and_then(|i| self.slots.get(*i))
                        .and_then(Option::as_ref)
                        .map(|s| [s.pair.stats(Side::A).clone(), s.pair.stats(Side::B).clone()]);
                    let _ = reply.send(stats);
                }
                Command::Shutdown => {
                    let ids: Vec<_> = self.by_id.keys().copied().collect();
                    for id in ids {
                        self.remove(id);
                    }
                    return false;
                }
            }
        }
        true
    }

    fn add(&mut self, id: PairId, sockets: [[UdpSocket; 2]; 2], ports: [u16; 2]) -> io::Result<()> {
        let mk = |s: UdpSocket| -> io::Result<Sock> {
            s.set_nonblocking(true)?;
            let state = UdpSocketState::new((&s).into())?;
            Ok(Sock {
                io: mio::net::UdpSocket::from_std(s),
                state,
            })
        };
        let [[a_rtp, a_rtcp], [b_rtp, b_rtcp]] = sockets;
        let mut socks = [[mk(a_rtp)?, mk(a_rtcp)?], [mk(b_rtp)?, mk(b_rtcp)?]];
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for side in [Side::A, Side::B] {
            for kind in [PacketKind::Rtp, PacketKind::Rtcp] {
                let s = &mut socks[idx(side)][kidx(kind)];
                if let Err(e) = self.poll.registry().register(
                    &mut s.io,
                    token(i, side, kind),
                    Interest::READABLE,
                ) {
                    // Closing the sockets removes any registration made.
                    self.free.push(i);
                    return Err(e);
                }
            }
        }
        self.slots[i] = Some(Slot {
            id,
            pair: LegPair::new(self.config.clone()),
            socks,
            ports,
        });
        self.by_id.insert(id, i);
        self.counters.pairs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&mut self, id: PairId) {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(i) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(mut slot) = self.slots.get_mut(i).and_then(Option::take) {
            for s in slot.socks.iter_mut().flatten() {
                let _ = self.poll.registry().deregister(&mut s.io);
            }
            let ports = slot.ports;
            drop(slot); // closes the sockets before the ports are reused
            let mut pool = self.ports.lock().unwrap_or_else(|p| p.into_inner());
            for p in ports {
                pool.release(p);
            }
            self.free.push(i);
            self.counters.pairs.fetch_sub(1, Ordering::Relaxed);
        }
        self.pending.retain(|t| decode(*t).0 != i);
    }

    fn check_idle(&mut self, now: Instant) {
        // Publish every pair's counters (once a second, one lock per worker).
        let fresh: Vec<(PairId, [LegStats; 2])> = self
            .slots
            .iter()
            .flatten()
            .map(|s| {
                (
                    s.id,
                    [s.pair.stats(Side::A).clone(), s.pair.stats(Side::B).clone()],
                )
            })
            .collect();
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(fresh);
        for slot in self.slots.iter_mut().flatten() {
            if let Some(ev) = slot.pair.poll_timeout(now) {
                let _ = self.events_tx.send(RelayEvent::Timeout {
                    id: slot.id,
                    side: ev.side,
                    idle_for: ev.idle_for,
                    on_hold: ev.on_hold,
                });
            }
        }
    }
}

/// The per-packet path: transform in place, send from the other leg.
#[allow(clippy::too_many_arguments)]
#[inline]
fn relay_one(
    slot: &mut Slot,
    side: Side,
    kind: PacketKind,
    src: std::net::SocketAddr,
    buf: &mut [u8; BUF_LEN],
    len: usize,
    now: Instant,
    tally: &mut Tally,
) {
    match slot.pair.handle_packet(now, side, kind, src, buf, len) {
        Action::Forward { leg, via, to, len } => {
            let out = &slot.socks[idx(leg)][kidx(via)];
            match out.io.send_to(&buf[..len], to) {
                Ok(_) => {
                    tally.packets += 1;
                    tally.bytes += len as u64;
                }
                Err(_) => {
                    slot.pair.count_send_failure(side);
                    tally.drops[DropReason::SendFailed as usize] += 1;
                }
            }
        }
        Action::Drop(reason) => tally.drops[reason as usize] += 1,
    }
}

fn tracing_error(e: &io::Error) {
    // Control-plane failures only; nothing is logged per packet.
    tracing::error!(code = "GW3001", error = %e, "GW3001 relay worker error");
}
