//! The only place the SIP driver reads the clock (STYLE.md §3): everything below the driver
//! takes `now` as input.

use std::time::Instant;

/// The current monotonic time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}
