//! The one place that reads the system clock (STYLE.md §0.2).

use std::time::SystemTime;

use mediagate_pki::Clock;

/// Wall-clock time from the operating system.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the injected time source of the binary
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
