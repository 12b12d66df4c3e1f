//! The media port range: even RTP ports, RTCP on the next odd port.

use std::io;

/// Free/used RTP ports of the range, handed out round-robin so that a port
/// just released is not reused at once (late packets of the old call).
#[derive(Debug)]
pub(crate) struct PortPool {
    first: u16,
    used: Vec<bool>,
    next: usize,
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
            used: vec![false; pairs],
            next: 0,
        })
    }

    /// Number of RTP/RTCP pairs in the range.
    pub(crate) fn capacity(&self) -> usize {
        self.used.len()
    }

    /// Marks the next free RTP port used and returns it.
    pub(crate) fn take(&mut self) -> Option<u16> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.next = (i + 1) % n;
                return Some(self.first + 2 * i as u16);
            }
        }
        None
    }

    /// Returns an RTP port to the pool.
    pub(crate) fn release(&mut self, port: u16) {
        if let Some(i) = port.checked_sub(self.first).map(|d| usize::from(d / 2))
            && let Some(u) = self.used.get_mut(i)
        {
            *u = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_round_robin_and_release() {
        let mut p = PortPool::new(30_001, 30_007).unwrap();
        assert_eq!(p.capacity(), 3);
        assert_eq!(p.take(), Some(30_002));
        assert_eq!(p.take(), Some(30_004));
        p.release(30_002);
        assert_eq!(p.take(), Some(30_006));
        assert_eq!(p.take(), Some(30_002));
        assert_eq!(p.take(), None);
        assert!(PortPool::new(5, 5).is_err());
    }
}
