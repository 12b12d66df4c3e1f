//! What a stream has accepted beyond the replay window: the index ranges of
//! its earlier epochs, and the content fingerprints of its recent packets.
//!
//! The replay window (RFC 3711 §3.3.2) only knows the last 64–1024 indices
//! below the highest one, and refuses everything older as "too old". That
//! is enough while a stream only moves forward. After a same-key re-INVITE
//! a peer may restart its stream (a fresh SRTP context: ROC 0 and a new
//! sequence number), possibly *below* where it was, and the receiver must
//! then tell the restarted stream's packets from replays of the old ones.
//! [`History`] is what lets [`super::SrtpContext`] do that without ever
//! accepting a packet twice.
//!
//! - **Epochs.** An epoch is the stretch of a stream between two restarts;
//!   its accepted indices all lie in `[first, highest]`. A restart retires
//!   the current epoch: its range is kept, never dropped. Beyond
//!   [`MAX_EPOCHS`] retired epochs, the two closest are merged into their
//!   hull (a larger set: safe).
//! - **Content rings.** Each epoch has a ring of fingerprints (the first
//!   four octets of the packet's authentication tag, which binds the whole
//!   packet) indexed by packet index mod the ring size. The current epoch's
//!   ring covers its last `memory` indices exactly; a retired epoch keeps a
//!   ring sized to its length (at most `memory`), and retired rings share a
//!   budget of `memory` slots, the oldest dropped first.
//!
//! For one epoch and an index it may have accepted, [`Recall`] says what the
//! ring knows: that exact packet ([`Recall::Same`], a replay), another packet
//! at that index ([`Recall::Different`]), that the index was never accepted
//! ([`Recall::Never`]), or nothing ([`Recall::Unknown`]: forgotten, refused).
//! A packet is a possible replay when **any** epoch that may hold its index
//! answers `Same` or `Unknown`.

/// Retired epochs kept apart per stream before the closest two are merged.
pub(crate) const MAX_EPOCHS: usize = 32;

/// A fingerprint of an authenticated packet: the first four octets of its
/// authentication tag (CM-32 tags are exactly four octets).
pub(crate) fn fingerprint(tag: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = tag.len().min(4);
    b[..n].copy_from_slice(&tag[..n]);
    u32::from_be_bytes(b)
}

/// What one epoch's ring knows about an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recall {
    /// This packet was accepted at this index: a replay.
    Same,
    /// Another packet was accepted at this index (the peer re-used it).
    Different,
    /// The index was never accepted in this epoch.
    Never,
    /// The ring cannot tell.
    Unknown,
}

const INDEX_BITS: u32 = 48;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Fingerprints of one epoch, one slot per `index mod size`.
#[derive(Clone, Debug, Default)]
struct Ring {
    /// `(index + 1) << 16 | fingerprint >> 16` per slot; 0 is an empty slot.
    slots: Box<[u64]>,
    /// The low half of each slot's fingerprint.
    low: Box<[u16]>,
    /// Indices below this were not recorded (a copy that kept only the top
    /// of an epoch, or a ring added late): unknown.
    floor: u64,
}

impl Ring {
    fn new(size: usize) -> Self {
        if size == 0 {
            return Self::default();
        }
        let size = size.next_power_of_two();
        Self {
            slots: vec![0; size].into_boxed_slice(),
            low: vec![0; size].into_boxed_slice(),
            floor: 0,
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, index: u64) -> usize {
        (index as usize) & (self.slots.len() - 1)
    }

    /// The 48-bit tag stored for `index`; never 0 (the empty slot) except for
    /// the last index of a key's lifetime, which is then never recalled.
    fn tag(index: u64) -> u64 {
        index.wrapping_add(1) & INDEX_MASK
    }

    fn recall(&self, index: u64, fp: u32) -> Recall {
        if self.slots.is_empty() || index < self.floor {
            return Recall::Unknown;
        }
        let i = self.slot(index);
        let packed = self.slots[i];
        let tag = packed >> 16;
        let want = Self::tag(index);
        if packed == 0 || tag < want {
            // Recording `index` would have left a tag ≥ its own here.
            return Recall::Never;
        }
        if tag > want {
            return Recall::Unknown;
        }
        let stored = ((packed as u32) << 16) | u32::from(self.low[i]);
        if stored == fp {
            Recall::Same
        } else {
            Recall::Different
        }
    }

    fn record(&mut self, index: u64, fp: u32) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.slot(index);
        self.slots[i] = (Self::tag(index) << 16) | u64::from(fp >> 16);
        self.low[i] = fp as u16;
    }

    /// A ring of at most `size` slots holding the entries of `[lo, hi]` this
    /// ring knows (the top of the range when it does not fit).
    fn shrunk(&self, lo: u64, hi: u64, size: usize) -> Ring {
        let len = hi.saturating_sub(lo).saturating_add(1);
        let size = (len.min(size as u64) as usize).next_power_of_two();
        let mut out = Ring::new(size);
        out.floor = hi.saturating_sub(size as u64 - 1).max(lo).max(self.floor);
        for (k, &packed) in self.slots.iter().enumerate() {
            if packed == 0 {
                continue;
            }
            let index = (packed >> 16).wrapping_sub(1) & INDEX_MASK;
            if index >= out.floor && index <= hi {
                let fp = ((packed as u32) << 16) | u32::from(self.low[k]);
                out.record(index, fp);
            }
        }
        out
    }

    fn clear(&mut self) {
        self.slots.fill(0);
        self.low.fill(0);
        self.floor = 0;
    }
}

/// A retired epoch.
#[derive(Clone, Debug)]
struct Epoch {
    lo: u64,
    hi: u64,
    ring: Ring,
    /// Retirement order (older rings are dropped first).
    age: u64,
}

/// Everything a stream accepted: the current epoch's fingerprints and the
/// retired epochs. See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    /// Slots of content memory (the current ring's size; also the budget of
    /// the retired rings).
    memory: usize,
    current: Ring,
    retired: Vec<Epoch>,
    /// Hull of the retired ranges, for a quick "not retired" answer.
    hull: Option<(u64, u64)>,
    retirements: u64,
}

impl History {
    /// A history with `memory` slots of content memory (rounded up to a
    /// power of two; 0 = none: every index that may have been accepted is
    /// refused).
    pub(crate) fn new(memory: usize) -> Self {
        let memory = if memory == 0 {
            0
        } else {
            memory.next_power_of_two()
        };
        Self {
            memory,
            current: Ring::new(memory),
            ..Self::default()
        }
    }

    /// A history that starts with ranges a forgotten stream used (no content
    /// memory for them: nothing inside is accepted again).
    pub(crate) fn with_ranges(memory: usize, ranges: &[(u64, u64)]) -> Self {
        let mut h = Self::new(memory);
        for &(lo, hi) in ranges {
            h.push(Epoch {
                lo: lo.min(hi),
                hi: lo.max(hi),
                ring: Ring::default(),
                age: 0,
            });
        }
        h
    }

    /// True when the history has content memory.
    pub(crate) fn has_memory(&self) -> bool {
        self.current.len() > 0
    }

    /// Adds content memory to a history that had none; indices up to `seen`
    /// (the highest accepted so far) stay unknown to it.
    pub(crate) fn add_memory(&mut self, memory: usize, seen: Option<u64>) {
        if self.has_memory() || memory == 0 {
            return;
        }
        self.memory = memory.next_power_of_two();
        self.current = Ring::new(self.memory);
        self.current.floor = seen.map_or(0, |s| s.saturating_add(1));
    }

    /// What the current epoch's ring knows about `index`.
    #[inline]
    pub(crate) fn recall_current(&self, index: u64, fp: u32) -> Recall {
        self.current.recall(index, fp)
    }

    /// Records an accepted packet of the current epoch.
    #[inline]
    pub(crate) fn record(&mut self, index: u64, fp: u32) {
        self.current.record(index, fp);
    }

    /// True when a retired epoch may have accepted `index`.
    #[inline]
    pub(crate) fn retired(&self, index: u64) -> bool {
        match self.hull {
            Some((lo, hi)) if lo <= index && index <= hi => {
                self.retired.iter().any(|e| e.lo <= index && index <= e.hi)
            }
            _ => false,
        }
    }

    /// True when a retired epoch may have accepted `index` and cannot vouch
    /// that the packet with fingerprint `fp` is not the one it accepted.
    pub(crate) fn retired_replay(&self, index: u64, fp: u32) -> bool {
        self.retired(index)
            && self.retired.iter().any(|e| {
                e.lo <= index
                    && index <= e.hi
                    && matches!(e.ring.recall(index, fp), Recall::Same | Recall::Unknown)
            })
    }

    /// The hull of the retired ranges (a tombstone keeps only this).
    pub(crate) fn hull(&self) -> Option<(u64, u64)> {
        self.hull
    }

    /// Retires the current epoch `[lo, hi]`: its range and (a copy sized to
    /// it of) its ring are kept; the next epoch starts with an empty ring.
    pub(crate) fn retire(&mut self, lo: u64, hi: u64) {
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        self.retirements += 1;
        let len = hi - lo + 1;
        let ring = if self.memory == 0 {
            Ring::default()
        } else if len <= self.memory as u64 / 2 {
            // Short epoch: keep a small copy, reuse the big ring.
            let small = self.current.shrunk(lo, hi, self.memory);
            self.current.clear();
            small
        } else {
            std::mem::replace(&mut self.current, Ring::new(self.memory))
        };
        // A ring moved whole stays exact: a slot holds the latest index of
        // its class accepted in the epoch (a late packet is at most a window
        // behind, less than the ring), so a smaller tag means "never".
        self.push(Epoch {
            lo,
            hi,
            ring,
            age: self.retirements,
        });
        // Retired rings share a budget of `memory` slots; the oldest go.
        let mut total: usize = self.retired.iter().map(|e| e.ring.len()).sum();
        while total > self.memory {
            let Some(oldest) = self
                .retired
                .iter_mut()
                .filter(|e| e.ring.len() > 0)
                .min_by_key(|e| e.age)
            else {
                break;
            };
            total -= oldest.ring.len();
            oldest.ring = Ring::default();
        }
    }

    fn push(&mut self, e: Epoch) {
        self.hull = Some(match self.hull {
            Some((l, h)) => (l.min(e.lo), h.max(e.hi)),
            None => (e.lo, e.hi),
        });
        self.retired.push(e);
        if self.retired.len() <= MAX_EPOCHS {
            return;
        }
        // Merge the adjacent pair (by start) that costs least: ring-less
        // epochs first, then the smallest gap. The merged epoch has no ring.
        self.retired.sort_unstable_by_key(|e| e.lo);
        let cost = |a: &Epoch, b: &Epoch| {
            let rings = u64::from(a.ring.len() > 0) + u64::from(b.ring.len() > 0);
            (rings, b.lo.saturating_sub(a.hi))
        };
        let k = (0..self.retired.len() - 1)
            .min_by_key(|&k| cost(&self.retired[k], &self.retired[k + 1]))
            .unwrap_or(0);
        let b = self.retired.remove(k + 1);
        let a = &mut self.retired[k];
        a.lo = a.lo.min(b.lo);
        a.hi = a.hi.max(b.hi);
        a.ring = Ring::default();
        a.age = a.age.max(b.age);
    }

    /// Number of retired epochs (tests).
    #[cfg(test)]
    pub(crate) fn epoch_count(&self) -> usize {
        self.retired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_ring_tells_same_different_never_and_unknown() {
        let mut h = History::new(8);
        h.record(3, 0xdead_beef);
        assert_eq!(h.recall_current(3, 0xdead_beef), Recall::Same);
        assert_eq!(h.recall_current(3, 0x1234_5678), Recall::Different);
        // Same slot, a later index never recorded: never accepted.
        assert_eq!(h.recall_current(11, 1), Recall::Never);
        h.record(11, 7);
        // Index 3 was overwritten by 11: unknown now.
        assert_eq!(h.recall_current(3, 0xdead_beef), Recall::Unknown);
        assert_eq!(h.recall_current(11, 7), Recall::Same);
        // Index 0 and the empty slot are told apart.
        assert_eq!(h.recall_current(0, 0), Recall::Never);
        h.record(0, 0);
        assert_eq!(h.recall_current(0, 0), Recall::Same);
    }

    #[test]
    fn without_memory_nothing_is_vouched_for() {
        let mut h = History::new(0);
        h.record(1, 1);
        assert_eq!(h.recall_current(1, 1), Recall::Unknown);
        h.retire(0, 10);
        assert!(h.retired_replay(5, 1));
        assert!(!h.retired_replay(11, 1));
    }

    #[test]
    fn retired_epochs_keep_their_fingerprints() {
        let mut h = History::new(64);
        for i in 100..110 {
            h.record(i, i as u32 * 3);
        }
        h.retire(100, 109);
        // New content at an old index: fine. The old packet: a replay.
        assert!(!h.retired_replay(105, 1));
        assert!(h.retired_replay(105, 315));
        // Outside the old range: not retired at all.
        assert!(!h.retired(99) && !h.retired(110));
        // The restarted epoch re-uses 105 with new content, and retires too.
        h.record(105, 1);
        h.retire(105, 105);
        assert!(h.retired_replay(105, 1));
        assert!(h.retired_replay(105, 315));
        assert!(!h.retired_replay(105, 2));
    }

    #[test]
    fn a_long_epoch_keeps_only_its_top_and_the_rest_is_unknown() {
        let mut h = History::new(16);
        for i in 0..100 {
            h.record(i, 1000 + i as u32);
        }
        h.retire(0, 99);
        assert!(!h.retired_replay(99, 5));
        assert!(h.retired_replay(99, 1099));
        assert!(!h.retired_replay(84, 5));
        // Below what the ring covers: unknown, refused.
        assert!(h.retired_replay(83, 5));
        assert!(h.retired_replay(0, 5));
    }

    #[test]
    fn retired_rings_share_one_budget_oldest_dropped_first() {
        let mut h = History::new(16);
        for epoch in 0..4u64 {
            let lo = epoch * 1000;
            for i in lo..lo + 8 {
                h.record(i, 7);
            }
            h.retire(lo, lo + 7);
        }
        // Four 8-slot rings in a 16-slot budget: the two oldest lost theirs.
        assert!(h.retired_replay(3, 8));
        assert!(h.retired_replay(1003, 8));
        assert!(!h.retired_replay(2003, 8));
        assert!(!h.retired_replay(3003, 8));
    }

    #[test]
    fn epochs_merge_into_supersets() {
        let mut h = History::new(0);
        for k in 0..(MAX_EPOCHS as u64 + 10) {
            h.retire(1000 * k + 100, 1000 * k + 150);
        }
        assert!(h.epoch_count() <= MAX_EPOCHS);
        for k in 0..(MAX_EPOCHS as u64 + 10) {
            for i in [100, 125, 150] {
                assert!(h.retired(1000 * k + i), "{k} {i}");
            }
        }
        assert_eq!(h.hull(), Some((100, 1000 * (MAX_EPOCHS as u64 + 9) + 150)));
    }

    #[test]
    fn a_ring_added_late_does_not_vouch_for_the_past() {
        let mut h = History::new(0);
        h.add_memory(16, Some(40));
        assert_eq!(h.recall_current(40, 1), Recall::Unknown);
        assert_eq!(h.recall_current(41, 1), Recall::Never);
    }
}
