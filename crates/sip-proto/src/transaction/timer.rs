//! RFC 3261 §17 timers and a fixed-size table of deadlines (quinn `connection/timer.rs` shape).

use std::time::Instant;

/// The transaction timers of RFC 3261 Table 4 (§A). L and M (RFC 6026) are not used: the
/// 2xx/ACK exchange is handled by the UAS core (`dialog::Accepted2xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit interval, UDP only (T1, doubling).
    A,
    /// INVITE transaction timeout (64*T1).
    B,
    /// Wait time for response retransmits (>= 32 s UDP, 0 reliable).
    D,
    /// non-INVITE request retransmit interval, UDP only (T1 doubling to T2).
    E,
    /// non-INVITE transaction timeout (64*T1).
    F,
    /// INVITE response retransmit interval (T1 doubling to T2), UDP only.
    G,
    /// Wait time for ACK receipt (64*T1).
    H,
    /// Wait time for ACK retransmits (T4 UDP, 0 reliable).
    I,
    /// Wait time for non-INVITE request retransmits (64*T1 UDP, 0 reliable).
    J,
    /// Wait time for response retransmits (T4 UDP, 0 reliable).
    K,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 10] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; 10],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.index()] = Some(at);
    }
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer.index()] = None;
    }
    pub(crate) fn stop_all(&mut self) {
        self.slots = [None; 10];
    }
    #[cfg(test)]
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }
    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
    /// The earliest timer whose deadline is `<= now`, removed from the table.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (idx, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.filter(|t| *t <= now).map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)?;
        self.slots[idx] = None;
        Some(Timer::ALL[idx])
    }
}
