//! Wall-clock time as an input.
//!
//! Certificate validity is judged against wall-clock time, so the library never reads the clock
//! itself (STYLE.md §0.2): every function that needs "now" takes it as an argument, and the few
//! long-lived objects that need it on their own (the reloader's watcher thread, rustls' handshake
//! verifiers) hold a [`Clock`]. The binary supplies the one implementation that reads the system
//! clock; tests use [`FixedClock`].

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::time_provider::TimeProvider;
use rustls_pki_types::UnixTime;

/// A source of wall-clock time.
pub trait Clock: Debug + Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// A clock that returns a time set by the caller (tests, simulations).
#[derive(Debug)]
pub struct FixedClock(Mutex<SystemTime>);

impl FixedClock {
    /// A clock that stands at `now` until [`FixedClock::set`] moves it.
    pub fn new(now: SystemTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Moves the clock to `now` (forwards or backwards).
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adapts a [`Clock`] to rustls' [`TimeProvider`], so that the handshake verifiers judge
/// certificate validity with the same injected time as the rest of this crate.
#[derive(Debug, Clone)]
pub struct ClockTimeProvider(pub Arc<dyn Clock>);

impl TimeProvider for ClockTimeProvider {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(
            self.0.now().duration_since(SystemTime::UNIX_EPOCH).ok()?,
        ))
    }
}
