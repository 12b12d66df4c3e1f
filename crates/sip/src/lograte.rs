//! Bounded logging for events an attacker can trigger at will (a malformed datagram, a refused
//! request, a reset handshake): each is counted in the metrics every time, but logged at most
//! once per interval per (event code, source IP), and the next line says how many were left
//! out since. So a flood of 100 000 garbage datagrams from one address writes a handful of
//! lines, not 100 000, while `/metrics` still counts every one.
//!
//! Sans-IO: the caller passes `now`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// How often one (event, source) may log: once every 10 s.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sources tracked at once; beyond this, every further source shares one entry per event, so
/// memory stays bounded whatever the number of source addresses.
pub const LOG_SOURCES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Gate {
    /// When the next line may be written.
    next: Instant,
    /// Events left out since the last line.
    suppressed: u64,
}

/// The rate limit. See the module documentation.
#[derive(Debug)]
pub struct LogGate {
    interval: Duration,
    cap: usize,
    gates: HashMap<(&'static str, IpAddr), Gate>,
}

impl Default for LogGate {
    fn default() -> Self {
        LogGate::new(LOG_INTERVAL, LOG_SOURCES)
    }
}

/// The entry every source beyond the cap shares.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl LogGate {
    /// At most one line per `interval` per (event, source), `cap` sources tracked.
    pub fn new(interval: Duration, cap: usize) -> LogGate {
        LogGate {
            interval,
            cap: cap.max(1),
            gates: HashMap::new(),
        }
    }

    /// Whether event `code` from `source` may be logged now. `Some(n)`: log it, and say that
    /// `n` like it were left out since the last line; `None`: leave it out (it is counted).
    pub fn allow(&mut self, now: Instant, code: &'static str, source: IpAddr) -> Option<u64> {
        let mut key = (code, source);
        if !self.gates.contains_key(&key) && self.gates.len() >= self.cap {
            // Forget sources that have been quiet for a whole interval, else share.
            self.gates
                .retain(|_, g| g.suppressed > 0 || now < g.next + self.interval);
            if self.gates.len() >= self.cap {
                key = (code, OVERFLOW);
            }
        }
        match self.gates.get_mut(&key) {
            Some(g) if now < g.next => {
                g.suppressed += 1;
                None
            }
            Some(g) => {
                let n = g.suppressed;
                *g = Gate {
                    next: now + self.interval,
                    suppressed: 0,
                };
                Some(n)
            }
            None => {
                self.gates.insert(
                    key,
                    Gate {
                        next: now + self.interval,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn one_line_per_interval_per_event_and_source_with_the_count() {
        let t0 = crate::clock::now();
        let mut g = LogGate::new(Duration::from_secs(10), 16);
        assert_eq!(g.allow(t0, "GW1", ip(1)), Some(0));
        for k in 1..=1000 {
            assert_eq!(g.allow(t0 + Duration::from_millis(k), "GW1", ip(1)), None);
        }
        // Another event or another source has its own budget.
        assert_eq!(g.allow(t0, "GW2", ip(1)), Some(0));
        assert_eq!(g.allow(t0, "GW1", ip(2)), Some(0));
        // After the interval: one line, reporting what was left out.
        assert_eq!(
            g.allow(t0 + Duration::from_secs(10), "GW1", ip(1)),
            Some(1000)
        );
        assert_eq!(g.allow(t0 + Duration::from_secs(11), "GW1", ip(1)), None);
    }

    #[test]
    fn many_sources_share_one_entry_beyond_the_cap() {
        let t0 = crate::clock::now();
        let mut g = LogGate::new(Duration::from_secs(10), 4);
        let mut lines = 0;
        for n in 0..=255u8 {
            for k in 0..10u64 {
                if g.allow(t0 + Duration::from_micros(k), "GW1", ip(n))
                    .is_some()
                {
                    lines += 1;
                }
            }
        }
        assert!(lines <= 5, "{lines} lines for 2560 events from 256 sources");
        assert!(g.gates.len() <= 5);
    }
}
