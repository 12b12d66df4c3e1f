//! Expiry watch (R-CERT-5): a pure function of (notAfter, now, last report) → the event due.
//!
//! Rules:
//! - more than [`WARNING_WINDOW`] (30 days) left: nothing;
//! - 30 days or less left: a warning, then at most one per [`REPEAT`] (24 h);
//! - expired: an error at once (even if a warning was given less than a day ago: the state
//!   changed), then at most one per 24 h.
//!
//! The caller keeps `last` per certificate (reset it when the certificate changes) and calls
//! [`due`] whenever it likes (the reloader does so hourly); the function decides. A `last` in
//! the future (the clock was stepped back) counts as "long ago", so a report is never lost.

use std::time::{Duration, SystemTime};

/// A warning is due once this much validity or less remains.
pub const WARNING_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// Minimum spacing between two reports.
pub const REPEAT: Duration = Duration::from_secs(24 * 3600);
const DAY: u64 = 24 * 3600;

/// What the expiry watch asks the caller to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpiryEvent {
    /// Nothing to report now.
    None,
    /// Expires soon: log a warning (`GW2004`).
    Warning {
        /// Whole days left, rounded down (0 on the last day).
        days_left: u64,
    },
    /// Expired: log an error (`GW2005`).
    Expired {
        /// Whole days since expiry, rounded down (0 on the first day).
        days_ago: u64,
    },
}

/// Days of validity left at `now`, rounded down; negative once expired (−1 during the first day
/// after expiry). This is the value exported as a metric.
pub fn days_left(not_after: SystemTime, now: SystemTime) -> i64 {
    match not_after.duration_since(now) {
        Ok(left) => (left.as_secs() / DAY) as i64,
        Err(e) => -((e.duration().as_secs() / DAY) as i64) - 1,
    }
}

/// Which event is due at `now` for a certificate expiring at `not_after`, given when the last
/// warning or error for this certificate was reported (`None`: never).
pub fn due(not_after: SystemTime, now: SystemTime, last: Option<SystemTime>) -> ExpiryEvent {
    let repeat_due = |last: Option<SystemTime>| match last {
        None => true,
        Some(l) => match now.duration_since(l) {
            Ok(since) => since >= REPEAT,
            Err(_) => true, // `last` is in the future: the clock went back
        },
    };
    match not_after.duration_since(now) {
        Ok(left) if left > WARNING_WINDOW => ExpiryEvent::None,
        Ok(left) if left > Duration::ZERO => {
            if repeat_due(last) {
                ExpiryEvent::Warning {
                    days_left: left.as_secs() / DAY,
                }
            } else {
                ExpiryEvent::None
            }
        }
        // Exactly at notAfter the certificate is still valid (RFC 5280 is inclusive); treat the
        // instant as the last moment of the warning period.
        Ok(_) => {
            if repeat_due(last) {
                ExpiryEvent::Warning { days_left: 0 }
            } else {
                ExpiryEvent::None
            }
        }
        Err(e) => {
            let ago = e.duration();
            let first_after_expiry = last.is_none_or(|l| l <= not_after);
            if first_after_expiry || repeat_due(last) {
                ExpiryEvent::Expired {
                    days_ago: ago.as_secs() / DAY,
                }
            } else {
                ExpiryEvent::None
            }
        }
    }
}

#[cfg(test)]
mod tests;
