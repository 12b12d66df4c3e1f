use super::*;

const H: u64 = 3600;
const D: u64 = 24 * H;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// notAfter for all tests: day 1000.
const NA: u64 = 1000 * D;

#[test]
fn nothing_while_more_than_30_days_left() {
    assert_eq!(due(t(NA), t(NA - 31 * D), None), ExpiryEvent::None);
    assert_eq!(due(t(NA), t(NA - 30 * D - 1), None), ExpiryEvent::None);
    assert_eq!(due(t(NA), t(0), None), ExpiryEvent::None);
}

#[test]
fn first_warning_at_exactly_30_days() {
    assert_eq!(
        due(t(NA), t(NA - 30 * D), None),
        ExpiryEvent::Warning { days_left: 30 }
    );
    assert_eq!(
        due(t(NA), t(NA - 29 * D - H), None),
        ExpiryEvent::Warning { days_left: 29 }
    );
}

#[test]
fn warnings_at_most_daily() {
    let first = t(NA - 20 * D);
    assert_eq!(
        due(t(NA), first, None),
        ExpiryEvent::Warning { days_left: 20 }
    );
    // Hourly polls during the next day: silent.
    for h in 1..24 {
        assert_eq!(
            due(t(NA), t(NA - 20 * D + h * H), Some(first)),
            ExpiryEvent::None,
            "hour {h}"
        );
    }
    // 24 h later: the next one.
    assert_eq!(
        due(t(NA), t(NA - 19 * D), Some(first)),
        ExpiryEvent::Warning { days_left: 19 }
    );
}

#[test]
fn last_day_and_the_notafter_instant_warn_with_zero_days() {
    assert_eq!(
        due(t(NA), t(NA - H), None),
        ExpiryEvent::Warning { days_left: 0 }
    );
    assert_eq!(
        due(t(NA), t(NA), None),
        ExpiryEvent::Warning { days_left: 0 }
    );
}

#[test]
fn expiry_reported_at_once_even_right_after_a_warning() {
    let warned = t(NA - H);
    assert_eq!(
        due(t(NA), t(NA + 1), Some(warned)),
        ExpiryEvent::Expired { days_ago: 0 }
    );
}

#[test]
fn expired_errors_daily() {
    let first = t(NA + 1);
    for h in 1..24 {
        assert_eq!(
            due(t(NA), t(NA + 1 + h * H), Some(first)),
            ExpiryEvent::None,
            "hour {h}"
        );
    }
    assert_eq!(
        due(t(NA), t(NA + 1 + D), Some(first)),
        ExpiryEvent::Expired { days_ago: 1 }
    );
    assert_eq!(
        due(t(NA), t(NA + 40 * D), Some(t(NA + 38 * D))),
        ExpiryEvent::Expired { days_ago: 40 }
    );
}

#[test]
fn never_reported_and_long_expired_reports() {
    assert_eq!(
        due(t(NA), t(NA + 400 * D), None),
        ExpiryEvent::Expired { days_ago: 400 }
    );
}

#[test]
fn clock_stepped_back_does_not_lose_a_report() {
    let future_last = t(NA - 5 * D);
    assert_eq!(
        due(t(NA), t(NA - 10 * D), Some(future_last)),
        ExpiryEvent::Warning { days_left: 10 }
    );
}

#[test]
fn walk_sixty_days_hourly_counts_reports() {
    // Poll hourly from 40 days before expiry to 10 days after; feed back `last`.
    let mut last = None;
    let (mut warnings, mut errors) = (0, 0);
    let mut now = NA - 40 * D;
    while now <= NA + 10 * D {
        match due(t(NA), t(now), last) {
            ExpiryEvent::None => {}
            ExpiryEvent::Warning { .. } => {
                warnings += 1;
                last = Some(t(now));
            }
            ExpiryEvent::Expired { .. } => {
                errors += 1;
                last = Some(t(now));
            }
        }
        now += H;
    }
    // At 30, 29, ..., 1 days before and at the notAfter instant (still valid): 31 warnings.
    assert_eq!(
        warnings, 31,
        "one warning per day in the last 30 days (+ the 30-day mark)"
    );
    assert_eq!(errors, 10, "one error per day after expiry");
}

#[test]
fn days_left_metric() {
    assert_eq!(days_left(t(NA), t(NA - 30 * D)), 30);
    assert_eq!(days_left(t(NA), t(NA - H)), 0);
    assert_eq!(days_left(t(NA), t(NA)), 0);
    assert_eq!(days_left(t(NA), t(NA + H)), -1);
    assert_eq!(days_left(t(NA), t(NA + D + H)), -2);
}
