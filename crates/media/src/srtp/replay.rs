//! Sliding replay window (RFC 3711 §3.3.2), fixed size, no heap.
//!
//! Bit `i` of the window records whether index `highest - i` was accepted.
//! The window is checked before authentication and updated only after the
//! packet authenticated, so forged packets cannot move it.

/// Largest supported replay window, in packets.
pub const MAX_REPLAY_WINDOW: usize = 1024;
/// Smallest supported replay window (RFC 3711 §3.3.2 asks for at least 64).
pub const MIN_REPLAY_WINDOW: usize = 64;
/// Default replay window: 128 packets, libsrtp's size, ~2.5 s of 20 ms audio.
pub const DEFAULT_REPLAY_WINDOW: usize = 128;

const WORDS: usize = MAX_REPLAY_WINDOW / 64;

/// Outcome of a replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayCheck {
    /// Not seen yet and inside (or ahead of) the window.
    Fresh,
    /// Already received.
    Duplicate,
    /// Older than the window.
    TooOld,
}

/// A replay window of `size` packets relative to the highest accepted index.
#[derive(Clone, Debug)]
pub(crate) struct ReplayWindow {
    bits: [u64; WORDS],
    size: u32,
}

impl ReplayWindow {
    /// A window of `size` packets, clamped to the supported range.
    pub(crate) fn new(size: usize) -> Self {
        let size = size.clamp(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW);
        Self {
            bits: [0; WORDS],
            size: size as u32,
        }
    }

    fn words(&self) -> usize {
        (self.size as usize).div_ceil(64)
    }

    /// Checks a packet `delta` positions from the highest accepted index
    /// (`delta > 0` is newer than anything seen).
    #[inline]
    pub(crate) fn check(&self, delta: i64) -> ReplayCheck {
        if delta > 0 {
            return ReplayCheck::Fresh;
        }
        let back = delta.unsigned_abs();
        if back >= u64::from(self.size) {
            return ReplayCheck::TooOld;
        }
        let back = back as usize;
        if self.bits[back / 64] & (1 << (back % 64)) != 0 {
            ReplayCheck::Duplicate
        } else {
            ReplayCheck::Fresh
        }
    }

    /// Records an authenticated packet `delta` positions from the highest
    /// index; a positive `delta` makes it the new highest.
    #[inline]
    pub(crate) fn accept(&mut self, delta: i64) {
        if delta > 0 {
            self.shift(delta.unsigned_abs());
            self.bits[0] |= 1;
        } else {
            let back = delta.unsigned_abs();
            if back < u64::from(self.size) {
                let back = back as usize;
                self.bits[back / 64] |= 1 << (back % 64);
            }
        }
    }

    /// Forgets everything and records a single first packet.
    pub(crate) fn reset(&mut self) {
        self.bits = [0; WORDS];
        self.bits[0] = 1;
    }

    fn shift(&mut self, by: u64) {
        let words = self.words();
        if words <= 2 {
            // The default 128-packet window: one 128-bit shift.
            let w = u128::from(self.bits[0]) | (u128::from(self.bits[1]) << 64);
            let w = if by >= 128 { 0 } else { w << by };
            self.bits[0] = w as u64;
            self.bits[1] = (w >> 64) as u64;
            return;
        }
        if by >= u64::from(self.size) {
            self.bits[..words].fill(0);
            return;
        }
        let by = by as usize;
        let (w, b) = (by / 64, by % 64);
        for i in (0..words).rev() {
            let hi = if i >= w { self.bits[i - w] << b } else { 0 };
            let lo = if b != 0 && i > w {
                self.bits[i - w - 1] >> (64 - b)
            } else {
                0
            };
            self.bits[i] = hi | lo;
        }
        // Bits beyond `size` in the last word are harmless: check() never
        // looks past `size`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_and_too_old() {
        let mut w = ReplayWindow::new(128);
        w.reset();
        assert_eq!(w.check(0), ReplayCheck::Duplicate);
        assert_eq!(w.check(1), ReplayCheck::Fresh);
        w.accept(1);
        assert_eq!(w.check(0), ReplayCheck::Duplicate);
        assert_eq!(w.check(-1), ReplayCheck::Duplicate);
        assert_eq!(w.check(-2), ReplayCheck::Fresh);
        w.accept(-2);
        assert_eq!(w.check(-2), ReplayCheck::Duplicate);
        assert_eq!(w.check(-127), ReplayCheck::Fresh);
        assert_eq!(w.check(-128), ReplayCheck::TooOld);
    }

    #[test]
    fn shifts_across_words() {
        for size in [64, 128, 200, 1024] {
            let mut w = ReplayWindow::new(size);
            w.reset();
            // Accept every third index going forward, then check them all.
            let mut accepted = vec![0i64];
            let mut highest = 0i64;
            for step in [3, 3, 70, 1, 64, 5] {
                highest += step;
                w.accept(step);
                accepted.push(highest);
            }
            for back in 0..(size as i64) {
                let idx = highest - back;
                let expect = if accepted.contains(&idx) {
                    ReplayCheck::Duplicate
                } else {
                    ReplayCheck::Fresh
                };
                assert_eq!(w.check(-back), expect, "size {size} back {back}");
            }
            assert_eq!(w.check(-(size as i64)), ReplayCheck::TooOld);
        }
    }

    #[test]
    fn big_jump_clears() {
        let mut w = ReplayWindow::new(128);
        w.reset();
        w.accept(10_000);
        assert_eq!(w.check(0), ReplayCheck::Duplicate);
        for back in 1..128 {
            assert_eq!(w.check(-back), ReplayCheck::Fresh);
        }
    }

    #[test]
    fn size_is_clamped() {
        assert_eq!(ReplayWindow::new(1).size as usize, MIN_REPLAY_WINDOW);
        assert_eq!(ReplayWindow::new(1 << 20).size as usize, MAX_REPLAY_WINDOW);
    }
}
