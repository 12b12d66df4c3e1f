//! Session timers (RFC 4028) for one leg of a B2BUA call: who refreshes, when, and when a
//! leg whose signalling path died is given up.
//!
//! Each leg negotiates its own session interval. On the caller's leg the gateway is the UAS:
//! it honours the caller's `Session-Expires`/`Min-SE` (a value below our `Min-SE` is refused
//! with 422), and picks the refresher as RFC 4028 §9 lets it: the one the caller asked for,
//! else the caller when it supports timers, else itself. On the callee's leg the gateway is the
//! UAC: it asks for its configured interval and follows what the 2xx says (and refreshes
//! itself when the callee does not support timers, §7.4). The refresher sends a refresh
//! (UPDATE, or a re-INVITE with the last SDP) at half the interval; the other side gives up at
//! the interval minus min(32 s, interval / 3) (§10) and ends the call.

use std::time::{Duration, Instant};

use mediagate_sip_proto::message::Headers;

/// `Session-Expires` and its compact form.
const SE: [&str; 2] = ["Session-Expires", "x"];
/// `Supported` and its compact form.
const SUPPORTED: [&str; 2] = ["Supported", "k"];

/// Who refreshes a leg's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    /// The gateway.
    Us,
    /// The leg's peer.
    Peer,
}

/// The session timer of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// The negotiated session interval.
    pub(crate) interval: Duration,
    /// Who refreshes.
    pub(crate) refresher: Refresher,
    /// When to act: send the refresh (we refresh), or give up (the peer refreshes).
    pub(crate) due: Instant,
    /// A refresh of ours is under way.
    pub(crate) refreshing: bool,
}

impl SessionTimer {
    /// A timer starting now.
    pub(crate) fn new(now: Instant, interval: Duration, refresher: Refresher) -> SessionTimer {
        let mut t = SessionTimer {
            interval,
            refresher,
            due: now,
            refreshing: false,
        };
        t.refreshed(now);
        t
    }

    /// The session was refreshed at `now`: schedule the next action.
    pub(crate) fn refreshed(&mut self, now: Instant) {
        self.refreshing = false;
        self.due = now
            + match self.refresher {
                Refresher::Us => self.interval / 2,
                // RFC 4028 §10: BYE before the expiry, by min(32 s, interval / 3).
                Refresher::Peer => self.interval - (self.interval / 3).min(Duration::from_secs(32)),
            };
    }

    /// The `Session-Expires` value for a message on this leg, where the leg's peer is the UAC
    /// (`peer_is_uac`: our response to its request) or we are (our request).
    pub(crate) fn header(&self, peer_is_uac: bool) -> String {
        let uac_refreshes = match self.refresher {
            Refresher::Peer => peer_is_uac,
            Refresher::Us => !peer_is_uac,
        };
        format!(
            "{};refresher={}",
            self.interval.as_secs(),
            if uac_refreshes { "uac" } else { "uas" }
        )
    }
}

fn values<'a>(h: &'a Headers, names: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    names.iter().flat_map(move |n| h.other(n))
}

/// The `Session-Expires` of a message: the interval and the `refresher` parameter (`uac`/
/// `uas`), if any. `None` without the header or with an unusable value.
pub(crate) fn session_expires(h: &Headers) -> Option<(Duration, Option<&str>)> {
    let v = values(h, &SE).next()?;
    let mut parts = v.split(';').map(str::trim);
    let secs: u64 = parts.next()?.parse().ok()?;
    let refresher = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then_some(v.trim())
    });
    (secs > 0).then_some((Duration::from_secs(secs), refresher))
}

/// The `Min-SE` of a message.
pub(crate) fn min_se(h: &Headers) -> Option<Duration> {
    let v = h.other("Min-SE").next()?;
    let secs: u64 = v.split(';').next()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// True when the message says `Supported: timer` (or requires it).
pub(crate) fn supports_timer(h: &Headers) -> bool {
    values(h, &SUPPORTED)
        .chain(h.other("Require"))
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

/// True when the message's `Allow` lists UPDATE.
pub(crate) fn allows_update(h: &Headers) -> bool {
    h.other("Allow")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("UPDATE"))
}

/// What the gateway, as UAS of the caller's INVITE, does about session timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UasDecision {
    /// No session timer on this leg (disabled in the configuration).
    None,
    /// 422 Session Interval Too Small, with our `Min-SE`.
    TooSmall(Duration),
    /// Use this interval and refresher; `require` asks the caller to `Require: timer` in our
    /// 2xx (the caller is the refresher).
    Use {
        /// The session interval.
        interval: Duration,
        /// Who refreshes.
        refresher: Refresher,
        /// Put `Require: timer` in the 2xx.
        require: bool,
    },
}

/// The gateway as UAS of `invite` (RFC 4028 §9), with its configured interval (None:
/// disabled) and `Min-SE`.
pub(crate) fn as_uas(invite: &Headers, ours: Option<Duration>, min: Duration) -> UasDecision {
    let Some(ours) = ours else {
        return UasDecision::None;
    };
    let asked = session_expires(invite);
    if let Some((se, _)) = asked
        && se < min
    {
        return UasDecision::TooSmall(min);
    }
    // The caller's Min-SE raises our interval; its Session-Expires caps it.
    let floor = min_se(invite).unwrap_or(min).max(min);
    let interval = match asked {
        Some((se, _)) => se.min(ours.max(floor)),
        None => ours.max(floor),
    };
    let supports = supports_timer(invite);
    let refresher = match asked.and_then(|(_, r)| r) {
        Some(r) if r.eq_ignore_ascii_case("uac") => Refresher::Peer,
        Some(r) if r.eq_ignore_ascii_case("uas") => Refresher::Us,
        _ if supports => Refresher::Peer,
        _ => Refresher::Us,
    };
    UasDecision::Use {
        interval,
        refresher,
        require: refresher == Refresher::Peer,
    }
}

/// The gateway as UAC of the callee's leg, given the callee's 2xx (RFC 4028 §7.2, §7.4):
/// `None` when disabled.
pub(crate) fn as_uac(ok: &Headers, ours: Option<Duration>) -> Option<(Duration, Refresher)> {
    let ours = ours?;
    Some(match session_expires(ok) {
        Some((se, Some(r))) if r.eq_ignore_ascii_case("uas") => (se, Refresher::Peer),
        Some((se, _)) => (se, Refresher::Us),
        // The callee does not do session timers: we refresh, at our interval.
        None => (ours, Refresher::Us),
    })
}

#[cfg(test)]
mod tests {
    use mediagate_sip_proto::message::Header;

    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in list {
            h.push(Header::Other {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            });
        }
        h
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn uas_honours_the_callers_request_and_its_min_se() {
        let ours = Some(S(1800));
        let min = S(90);
        // Nothing asked, no timer support: we refresh at our interval.
        assert_eq!(
            as_uas(&headers(&[]), ours, min),
            UasDecision::Use {
                interval: S(1800),
                refresher: Refresher::Us,
                require: false
            }
        );
        // Supported: timer, no refresher asked: the caller refreshes.
        assert_eq!(
            as_uas(&headers(&[("Supported", "100rel, timer")]), ours, min),
            UasDecision::Use {
                interval: S(1800),
                refresher: Refresher::Peer,
                require: true
            }
        );
        // The caller's interval, with the refresher it asks for (compact forms too).
        assert_eq!(
            as_uas(
                &headers(&[("x", "300;refresher=uas"), ("k", "timer")]),
                ours,
                min
            ),
            UasDecision::Use {
                interval: S(300),
                refresher: Refresher::Us,
                require: false
            }
        );
        // Below our Min-SE: 422.
        assert_eq!(
            as_uas(&headers(&[("Session-Expires", "30")]), ours, min),
            UasDecision::TooSmall(S(90))
        );
        // Disabled.
        assert_eq!(as_uas(&headers(&[]), None, min), UasDecision::None);
    }

    #[test]
    fn uac_follows_the_callees_answer() {
        let ours = Some(S(1800));
        assert_eq!(
            as_uac(&headers(&[("Session-Expires", "600;refresher=uas")]), ours),
            Some((S(600), Refresher::Peer))
        );
        assert_eq!(
            as_uac(&headers(&[("Session-Expires", "600;refresher=uac")]), ours),
            Some((S(600), Refresher::Us))
        );
        assert_eq!(as_uac(&headers(&[]), ours), Some((S(1800), Refresher::Us)));
        assert_eq!(as_uac(&headers(&[]), None), None);
    }

    #[test]
    fn due_times_and_headers() {
        let t0 = crate::clock::now();
        let us = SessionTimer::new(t0, S(90), Refresher::Us);
        assert_eq!(us.due, t0 + S(45));
        assert_eq!(
            us.header(false),
            "90;refresher=uac",
            "our request: we (UAC) refresh"
        );
        assert_eq!(
            us.header(true),
            "90;refresher=uas",
            "our response: we (UAS) refresh"
        );
        let peer = SessionTimer::new(t0, S(90), Refresher::Peer);
        assert_eq!(peer.due, t0 + S(60), "90 - min(32, 30)");
        assert_eq!(peer.header(true), "90;refresher=uac");
        let long = SessionTimer::new(t0, S(1800), Refresher::Peer);
        assert_eq!(long.due, t0 + S(1768));
    }
}
