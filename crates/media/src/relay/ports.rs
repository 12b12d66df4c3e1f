//! The media port range: even RTP ports, RTCP on the next odd port.
//!
//! Ports are handed out at random (R-MEDIA-1: a stranger cannot guess the
//! next call's ports from the last one's), and a released port rests in a
//! queue before it can be taken again, so late packets of an ended call do
//! not reach the next one.

use std::collections::VecDeque;
use std::io;

use ring::rand::{SecureRandom, SystemRandom};

/// Free/used RTP ports of the range.
#[derive(Debug)]
pub(crate) struct PortPool {
    first: u16,
    capacity: usize,
    /// Free pair numbers (RTP port = first + 2 × n), any order.
    free: Vec<u16>,
    /// Released pair numbers, oldest first, resting before reuse.
    resting: VecDeque<u16>,
    /// How many released ports rest before the oldest is free again.
    rest: usize,
    rng: SystemRandom,
}

impl PortPool {
    pub(crate) fn new(min: u16, max: u16) -> io::Result<Self> {
        let first = min + (min % 2);
        if max <= first {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("media port range {min}-{max} holds no RTP/RTCP port pair"),
            ));
        }
        let pairs = usize::from((max - first).div_ceil(2));
        Ok(Self {
            first,
            capacity: pairs,
            free: (0..pairs as u16).collect(),
            resting: VecDeque::new(),
            rest: (pairs / 8).min(256),
            rng: SystemRandom::new(),
        })
    }

    /// Number of RTP/RTCP pairs in the range.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// A random free RTP port, marked used. With no free port left, the
    /// port that has rested longest.
    pub(crate) fn take(&mut self) -> Option<u16> {
        let n = if self.free.is_empty() {
            self.resting.pop_front()?
        } else {
            let mut r = [0u8; 4];
            // getrandom(2) does not fail on Linux ≥ 3.17; fall back to the
            // first free port rather than refuse the call.
            let k = match self.rng.fill(&mut r) {
                Ok(()) => u32::from_le_bytes(r) as usize % self.free.len(),
                Err(_) => 0,
            };
            self.free.swap_remove(k)
        };
        Some(self.first + 2 * n)
    }

    /// Returns an RTP port to the pool (after it has rested).
    pub(crate) fn release(&mut self, port: u16) {
        let Some(n) = port.checked_sub(self.first).map(|d| d / 2) else {
            return;
        };
        if usize::from(n) >= self.capacity || self.free.contains(&n) || self.resting.contains(&n) {
            return;
        }
        self.resting.push_back(n);
        while self.resting.len() > self.rest {
            if let Some(old) = self.resting.pop_front() {
                self.free.push(old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn even_ports_all_handed_out_once() {
        let mut p = PortPool::new(30_001, 30_007).unwrap();
        assert_eq!(p.capacity(), 3);
        let got: HashSet<u16> = (0..3).map(|_| p.take().unwrap()).collect();
        assert_eq!(got, HashSet::from([30_002, 30_004, 30_006]));
        assert_eq!(p.take(), None);
        p.release(30_004);
        assert_eq!(p.take(), Some(30_004));
        assert!(PortPool::new(5, 5).is_err());
    }

    #[test]
    fn ports_are_not_sequential() {
        let mut p = PortPool::new(30_000, 39_999).unwrap();
        let ports: Vec<u16> = (0..50).map(|_| p.take().unwrap()).collect();
        let sequential = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(sequential < 5, "{ports:?}");
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 50);
    }

    #[test]
    fn a_released_port_rests_before_reuse() {
        let mut p = PortPool::new(30_000, 30_199).unwrap(); // 100 pairs, 12 rest
        let all: Vec<u16> = (0..100).map(|_| p.take().unwrap()).collect();
        let victim = all[0];
        p.release(victim);
        for &q in &all[1..13] {
            p.release(q);
        }
        // 13 released, 12 rest: only the oldest (the victim) is free now.
        assert_eq!(p.take(), Some(victim));
        assert_eq!(p.take(), Some(all[1]), "nothing free: the longest-resting");
    }
}
