//! The media probe, sans-IO: a 50 packets/s PCMU stream towards an echo, and the bookkeeping
//! that turns what comes back into loss, round-trip times and SRTP verdicts.
//!
//! ```text
//!  driver timer ─ now ─▶ poll_transmit(now, buf) ─▶ RTP (SRTP-protected in place) ─▶ UDP
//!                         records send time by index = seq - first_seq
//!  UDP ─ from, bytes ─▶ handle_packet(now, from, buf, len)
//!                         source check → SRTP unprotect in place (secured) → RTP header
//!                         → index from seq → payload compared with what was sent → RTT
//!  driver ◀─ poll_timeout(): next send time, then the end of the drain period
//! ```
//!
//! The echo may rewrite the SSRC (the gateway's echo endpoint answers from its own stream), so
//! a returned packet is matched by sequence number and payload only. Every payload is
//! different (derived from a per-run nonce and the packet index), so a packet cannot match
//! another one's slot by accident. At most [`MAX_PACKETS`] are sent, fewer than 2^16, so the
//! index from the 16-bit sequence number is unambiguous.
//!
//! SRTP (secured tests): we protect with the key we offered and unprotect with the key the far
//! end answered. A returned packet that does not authenticate is an error, never a sample. As
//! a diagnosis, such a packet is also tried with our own key: if that works, the far end
//! reflected our SRTP unchanged (an echo that does not terminate SRTP), which is counted apart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mediagate_media::SrtpError;
use mediagate_media::rtp::{RTP_FIXED_HEADER_LEN, RtpHeader, is_rtcp};
use mediagate_media::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

use super::offer::{PCMU, SrtpKeys};
use super::sip::Ids;

/// One packet every 20 ms: 50 packets per second, as a G.711 call.
pub(crate) const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Packets per second.
pub(crate) const PACKETS_PER_SECOND: u32 = 50;
/// PCMU payload of 20 ms at 8 kHz.
pub(crate) const PAYLOAD_LEN: usize = 160;
/// Loss above this fails the media step.
pub(crate) const MAX_LOSS_PERCENT: f64 = 5.0;
/// The longest stream: 600 s (the `--duration` cap), fewer packets than sequence numbers.
pub(crate) const MAX_PACKETS: u32 = 600 * PACKETS_PER_SECOND;
/// How long to wait for echoes after the last packet was sent.
pub(crate) const DRAIN: Duration = Duration::from_secs(1);
/// The buffer the driver must pass to [`MediaProbe::poll_transmit`] and receive into.
pub(crate) const BUF_LEN: usize = 2048;

/// Parameters of one probe stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeConfig {
    /// Packets to send (at most [`MAX_PACKETS`]).
    pub(crate) packets: u32,
    /// Our SSRC.
    pub(crate) ssrc: u32,
    /// Sequence number of the first packet.
    pub(crate) first_seq: u16,
    /// RTP timestamp of the first packet.
    pub(crate) first_timestamp: u32,
    /// Seed of the payloads.
    pub(crate) nonce: u64,
    /// The far end's RTP address: where we send, and the only source we accept.
    pub(crate) remote: SocketAddr,
    /// How long to wait for echoes after the last packet.
    pub(crate) drain: Duration,
}

impl ProbeConfig {
    /// A stream of `seconds` × 50 packets to `remote`, with random SSRC, sequence number,
    /// timestamp and payload seed from `ids` (RFC 3550 §5.1 wants random initial values).
    pub(crate) fn new(seconds: u32, remote: SocketAddr, ids: &mut Ids) -> Self {
        let r = ids.next_u64();
        Self {
            packets: seconds.saturating_mul(PACKETS_PER_SECOND).min(MAX_PACKETS),
            ssrc: (r >> 32) as u32,
            first_seq: (r >> 16) as u16,
            first_timestamp: ids.next_u64() as u32,
            nonce: ids.next_u64(),
            remote,
            drain: DRAIN,
        }
    }
}

/// Round-trip time statistics over the matched packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RttStats {
    /// Fastest.
    pub(crate) min: Duration,
    /// Mean.
    pub(crate) avg: Duration,
    /// Slowest.
    pub(crate) max: Duration,
    /// 95th percentile (nearest rank).
    pub(crate) p95: Duration,
}

impl RttStats {
    /// Statistics of `samples`; `None` when there are none.
    pub(crate) fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let n = s.len();
        let total: Duration = s.iter().sum();
        // Nearest rank: the smallest value with at least 95 % of the samples at or below it.
        let rank = (n * 95).div_ceil(100).max(1);
        Some(Self {
            min: s[0],
            avg: total / n as u32,
            max: s[n - 1],
            p95: s[rank - 1],
        })
    }
}

/// What the probe counted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaStats {
    /// Packets sent.
    pub(crate) sent: u32,
    /// Distinct packets that came back intact (matched by sequence number and payload).
    pub(crate) received: u32,
    /// `sent - received`.
    pub(crate) lost: u32,
    /// `lost / sent` in percent (100 when nothing was sent).
    pub(crate) loss_percent: f64,
    /// Copies of packets already received.
    pub(crate) duplicates: u32,
    /// Packets whose sequence number or payload matches nothing we sent.
    pub(crate) mismatched: u32,
    /// Secured: packets that did not authenticate with the far end's key.
    pub(crate) auth_failed: u32,
    /// Secured: packets that were our own SRTP, reflected without being re-protected.
    pub(crate) reflected: u32,
    /// Packets that are not RTP, or that SRTP refused for another reason.
    pub(crate) malformed: u32,
    /// RTCP packets on the RTP port (ignored).
    pub(crate) rtcp: u32,
    /// Packets from an address other than the answer's (ignored).
    pub(crate) foreign: u32,
    /// The first such address.
    pub(crate) foreign_example: Option<SocketAddr>,
    /// Sends that failed (the socket refused them).
    pub(crate) send_errors: u32,
    /// Round trips of the received packets.
    pub(crate) rtt: Option<RttStats>,
    /// The SRTP suite in use (secured tests).
    pub(crate) suite: Option<SrtpProfile>,
}

impl MediaStats {
    /// Why the media step failed, or `None` when it passed: something must come back, loss at
    /// most [`MAX_LOSS_PERCENT`], and no packet may fail SRTP authentication or come back
    /// altered.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.sent == 0 {
            return Some(format!(
                "no packet could be sent ({} send errors)",
                self.send_errors
            ));
        }
        if self.received == 0 {
            let mut why = format!("nothing came back: 0 of {} packets echoed", self.sent);
            if self.reflected > 0 {
                why.push_str(&format!(
                    "; {} packets came back as our own SRTP, unchanged (the far end does not \
                     terminate SRTP with the key it answered)",
                    self.reflected
                ));
            }
            if self.auth_failed > 0 {
                why.push_str(&format!(
                    "; {} packets did not authenticate with the far end's key",
                    self.auth_failed
                ));
            }
            if let Some(a) = self.foreign_example {
                why.push_str(&format!(
                    "; {} packets came from other addresses (e.g. {a})",
                    self.foreign
                ));
            }
            return Some(why);
        }
        if self.auth_failed > 0 || self.reflected > 0 {
            return Some(format!(
                "{} returned packets did not authenticate as SRTP from the far end ({} of them \
                 were our own packets reflected unchanged)",
                self.auth_failed + self.reflected,
                self.reflected
            ));
        }
        if self.mismatched > 0 {
            return Some(format!(
                "{} returned packets do not match any packet sent (altered payload or sequence \
                 number)",
                self.mismatched
            ));
        }
        if self.loss_percent > MAX_LOSS_PERCENT {
            return Some(format!(
                "loss {:.1}% ({} of {} packets) is above {MAX_LOSS_PERCENT}%",
                self.loss_percent, self.lost, self.sent
            ));
        }
        None
    }
}

/// The probe stream of one test call. See the module documentation.
pub(crate) struct MediaProbe {
    cfg: ProbeConfig,
    start: Instant,
    tx: Option<SrtpContext>,
    rx: Option<SrtpContext>,
    /// Our own key, to recognise our packets reflected unchanged.
    mirror: Option<SrtpContext>,
    suite: Option<SrtpProfile>,
    sent_at: Vec<Option<Instant>>,
    received: Vec<bool>,
    rtts: Vec<Duration>,
    next: u32,
    last_sent: Option<Instant>,
    scratch: Vec<u8>,
    stats: MediaStats,
}

impl std::fmt::Debug for MediaProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaProbe")
            .field("cfg", &self.cfg)
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Byte `i` of the payload of packet `index` of the run with `nonce`: SplitMix64 output, so
/// every packet carries different bytes.
fn fill_payload(nonce: u64, index: u32, out: &mut [u8]) {
    let mut ids = Ids::new(nonce ^ ((u64::from(index) << 32) | u64::from(index)));
    for chunk in out.chunks_mut(8) {
        let r = ids.next_u64().to_be_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

impl MediaProbe {
    /// A probe starting at `start`; `keys` for a secured test (SRTP both ways).
    pub(crate) fn new(cfg: ProbeConfig, keys: Option<&SrtpKeys>, start: Instant) -> Self {
        let n = cfg.packets as usize;
        let ctx = |k| SrtpContext::new(k, SrtpConfig::default());
        Self {
            tx: keys.map(|k| ctx(&k.tx)),
            rx: keys.map(|k| ctx(&k.rx)),
            mirror: keys.map(|k| ctx(&k.tx)),
            suite: keys.map(|k| k.suite),
            start,
            sent_at: vec![None; n],
            received: vec![false; n],
            rtts: Vec::with_capacity(n),
            next: 0,
            last_sent: None,
            scratch: vec![0; BUF_LEN],
            stats: MediaStats {
                sent: 0,
                received: 0,
                lost: 0,
                loss_percent: 100.0,
                duplicates: 0,
                mismatched: 0,
                auth_failed: 0,
                reflected: 0,
                malformed: 0,
                rtcp: 0,
                foreign: 0,
                foreign_example: None,
                send_errors: 0,
                rtt: None,
                suite: keys.map(|k| k.suite),
            },
            cfg,
        }
    }

    /// Where packets go.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.cfg.remote
    }

    fn due(&self, index: u32) -> Instant {
        self.start + PACKET_INTERVAL * index
    }

    /// The next packet if one is due at `now`, written into `buf` (at least [`BUF_LEN`]
    /// octets): its length. Call until `None`, send each to [`MediaProbe::remote`].
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        while self.next < self.cfg.packets && self.due(self.next) <= now {
            let index = self.next;
            self.next += 1;
            let seq = self.cfg.first_seq.wrapping_add(index as u16);
            let ts = self
                .cfg
                .first_timestamp
                .wrapping_add(index.wrapping_mul(PAYLOAD_LEN as u32));
            let marker = if index == 0 { 0x80 } else { 0 };
            buf[0] = 0x80;
            buf[1] = marker | PCMU;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            buf[8..12].copy_from_slice(&self.cfg.ssrc.to_be_bytes());
            let len = RTP_FIXED_HEADER_LEN + PAYLOAD_LEN;
            fill_payload(self.cfg.nonce, index, &mut buf[RTP_FIXED_HEADER_LEN..len]);
            let len = match &mut self.tx {
                Some(tx) => match tx.protect_rtp(buf, len) {
                    Ok(n) => n,
                    Err(_) => {
                        self.stats.send_errors += 1;
                        continue;
                    }
                },
                None => len,
            };
            self.sent_at[index as usize] = Some(now);
            self.last_sent = Some(now);
            self.stats.sent += 1;
            return Some(len);
        }
        None
    }

    /// The socket refused the packet [`MediaProbe::poll_transmit`] returned last: it does not
    /// count as sent.
    pub(crate) fn send_failed(&mut self) {
        if let Some(slot) = self
            .next
            .checked_sub(1)
            .and_then(|i| self.sent_at.get_mut(i as usize))
            && slot.take().is_some()
        {
            self.stats.sent -= 1;
            self.stats.send_errors += 1;
        }
    }

    /// A datagram received at `now` from `from`, in `buf[..len]` (decrypted in place).
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        if from != self.cfg.remote {
            self.stats.foreign += 1;
            self.stats.foreign_example.get_or_insert(from);
            return;
        }
        if is_rtcp(&buf[..len]) {
            self.stats.rtcp += 1;
            return;
        }
        let len = match &mut self.rx {
            None => len,
            Some(rx) => {
                let copy = len <= self.scratch.len();
                if copy {
                    self.scratch[..len].copy_from_slice(&buf[..len]);
                }
                match rx.unprotect_rtp(buf, len) {
                    Ok(n) => n,
                    Err(SrtpError::AuthenticationFailed) => {
                        let reflected = copy
                            && self
                                .mirror
                                .as_mut()
                                .is_some_and(|m| m.unprotect_rtp(&mut self.scratch, len).is_ok());
                        if reflected {
                            self.stats.reflected += 1;
                        } else {
                            self.stats.auth_failed += 1;
                        }
                        return;
                    }
                    Err(SrtpError::Replayed) => {
                        self.stats.duplicates += 1;
                        return;
                    }
                    Err(_) => {
                        self.stats.malformed += 1;
                        return;
                    }
                }
            }
        };
        let pkt = &buf[..len];
        let Ok(h) = RtpHeader::parse(pkt) else {
            self.stats.malformed += 1;
            return;
        };
        let index = u32::from(h.sequence.wrapping_sub(self.cfg.first_seq));
        let Some(sent_at) = self.sent_at.get(index as usize).copied().flatten() else {
            self.stats.mismatched += 1;
            return;
        };
        let mut expected = [0u8; PAYLOAD_LEN];
        fill_payload(self.cfg.nonce, index, &mut expected);
        if h.payload_type != PCMU || pkt[h.header_len..] != expected {
            self.stats.mismatched += 1;
            return;
        }
        let slot = &mut self.received[index as usize];
        if *slot {
            self.stats.duplicates += 1;
            return;
        }
        *slot = true;
        self.stats.received += 1;
        self.rtts.push(now.saturating_duration_since(sent_at));
    }

    fn all_back(&self) -> bool {
        self.stats.received == self.stats.sent
    }

    /// When to call again: the next send time, then the end of the drain period; `None` once
    /// [`MediaProbe::is_done`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.next < self.cfg.packets {
            return Some(self.due(self.next));
        }
        if self.all_back() {
            return None;
        }
        self.last_sent.map(|t| t + self.cfg.drain)
    }

    /// Everything was sent, and everything came back or the drain period is over.
    pub(crate) fn is_done(&self, now: Instant) -> bool {
        self.poll_timeout()
            .is_none_or(|t| now >= t && self.next >= self.cfg.packets)
    }

    /// The counters and statistics so far.
    pub(crate) fn stats(&self) -> MediaStats {
        let mut s = self.stats.clone();
        s.lost = s.sent - s.received;
        s.loss_percent = if s.sent == 0 {
            100.0
        } else {
            f64::from(s.lost) * 100.0 / f64::from(s.sent)
        };
        s.rtt = RttStats::of(&self.rtts);
        s.suite = self.suite;
        s
    }
}

#[cfg(test)]
mod tests {
    use mediagate_media::srtp::MasterKey;

    use super::*;

    #[allow(clippy::disallowed_methods)] // the test epoch; time then only moves by offsets
    fn epoch() -> Instant {
        Instant::now()
    }

    const FAR: &str = "192.0.2.9:40000";

    fn cfg(packets: u32) -> ProbeConfig {
        ProbeConfig {
            packets,
            ssrc: 0x1234_5678,
            first_seq: 65_530, // wraps during the run
            first_timestamp: 1000,
            nonce: 99,
            remote: FAR.parse().unwrap(),
            drain: Duration::from_secs(1),
        }
    }

    fn keys(suite: SrtpProfile) -> SrtpKeys {
        SrtpKeys {
            suite,
            tag: 1,
            tx: MasterKey::generate(suite).unwrap(),
            rx: MasterKey::generate(suite).unwrap(),
        }
    }

    /// The far end of a secured test: decrypts with our key, re-encrypts with its own, under
    /// a new SSRC, as a gateway echo endpoint does.
    struct SrtpEcho {
        rx: SrtpContext,
        tx: SrtpContext,
    }

    impl SrtpEcho {
        fn new(k: &SrtpKeys) -> Self {
            Self {
                rx: SrtpContext::new(&k.tx, SrtpConfig::default()),
                tx: SrtpContext::new(&k.rx, SrtpConfig::default()),
            }
        }

        fn echo(&mut self, buf: &mut [u8], len: usize) -> usize {
            let n = self.rx.unprotect_rtp(buf, len).unwrap();
            assert_eq!(n, RTP_FIXED_HEADER_LEN + PAYLOAD_LEN, "plaintext RTP");
            buf[8..12].copy_from_slice(&0xfeed_f00d_u32.to_be_bytes());
            self.tx.protect_rtp(buf, n).unwrap()
        }
    }

    /// Runs the probe: every packet is echoed `delay(index)` later, or dropped when `None`.
    fn run(
        probe: &mut MediaProbe,
        t0: Instant,
        mut echo: impl FnMut(u32, &mut [u8], usize) -> Option<(Duration, usize)>,
    ) {
        let mut buf = vec![0u8; BUF_LEN];
        let mut inflight: Vec<(Instant, Vec<u8>)> = Vec::new();
        let mut now = t0;
        let mut index = 0;
        while !probe.is_done(now) {
            while let Some(len) = probe.poll_transmit(now, &mut buf) {
                if let Some((delay, n)) = echo(index, &mut buf, len) {
                    inflight.push((now + delay, buf[..n].to_vec()));
                }
                index += 1;
            }
            inflight.sort_by_key(|(at, _)| *at);
            while inflight.first().is_some_and(|(at, _)| *at <= now) {
                let (_, pkt) = inflight.remove(0);
                buf[..pkt.len()].copy_from_slice(&pkt);
                probe.handle_packet(now, FAR.parse().unwrap(), &mut buf, pkt.len());
            }
            let next = [probe.poll_timeout(), inflight.first().map(|(at, _)| *at)]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => now = t.max(now + Duration::from_micros(1)),
                None => break,
            }
        }
    }

    #[test]
    fn plain_echo_gives_zero_loss_and_exact_rtts() {
        let t0 = epoch();
        let mut p = MediaProbe::new(cfg(150), None, t0);
        run(&mut p, t0, |i, _, len| {
            Some((Duration::from_millis(u64::from(1 + i % 10)), len))
        });
        let s = p.stats();
        assert_eq!((s.sent, s.received, s.lost), (150, 150, 0));
        assert_eq!(s.loss_percent, 0.0);
        let rtt = s.rtt.unwrap();
        assert_eq!(rtt.min, Duration::from_millis(1));
        assert_eq!(rtt.max, Duration::from_millis(10));
        assert_eq!(rtt.avg, Duration::from_micros(5500));
        assert_eq!(rtt.p95, Duration::from_millis(10));
        assert_eq!(s.failure(), None);
    }

    #[test]
    fn the_stream_is_paced_at_50_per_second_with_rtp_fields_in_order() {
        let t0 = epoch();
        let mut p = MediaProbe::new(cfg(3), None, t0);
        let mut buf = vec![0u8; BUF_LEN];
        let len = p.poll_transmit(t0, &mut buf).unwrap();
        assert_eq!(len, 172);
        let h = RtpHeader::parse(&buf[..len]).unwrap();
        assert_eq!((h.payload_type, h.sequence, h.timestamp), (0, 65_530, 1000));
        assert!(h.marker);
        assert_eq!(
            p.poll_transmit(t0 + Duration::from_millis(19), &mut buf),
            None
        );
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(20)));
        p.poll_transmit(t0 + Duration::from_millis(20), &mut buf)
            .unwrap();
        let h = RtpHeader::parse(&buf[..len]).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.marker), (65_531, 1160, false));
        // Late timer: the overdue packet goes out at once.
        assert!(
            p.poll_transmit(t0 + Duration::from_millis(70), &mut buf)
                .is_some()
        );
        assert_eq!(
            p.poll_transmit(t0 + Duration::from_millis(70), &mut buf),
            None
        );
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(1070)));
        assert!(!p.is_done(t0 + Duration::from_millis(1069)));
        assert!(p.is_done(t0 + Duration::from_millis(1070)));
        let s = p.stats();
        assert_eq!((s.sent, s.received, s.lost), (3, 0, 3));
        assert!(s.failure().unwrap().contains("nothing came back"), "{s:?}");
    }

    #[test]
    fn loss_duplicates_and_altered_packets_are_counted() {
        let t0 = epoch();
        let mut p = MediaProbe::new(cfg(100), None, t0);
        run(&mut p, t0, |i, buf, len| match i {
            // 4 lost.
            10..=13 => None,
            // One altered payload: counted as mismatched and so lost too.
            20 => {
                buf[len - 1] ^= 1;
                Some((Duration::from_millis(2), len))
            }
            _ => Some((Duration::from_millis(2), len)),
        });
        let s = p.stats();
        assert_eq!((s.sent, s.received, s.lost), (100, 95, 5));
        assert_eq!(s.loss_percent, 5.0);
        assert_eq!(s.mismatched, 1);
        assert!(s.failure().unwrap().contains("do not match"), "{s:?}");
        // Loss alone above 5 % fails; at 5 % it passes.
        let mut p = MediaProbe::new(cfg(100), None, t0);
        run(&mut p, t0, |i, _, len| {
            (i % 16 != 0).then_some((Duration::from_millis(2), len))
        });
        let s = p.stats();
        assert_eq!(s.lost, 7);
        assert!(s.failure().unwrap().contains("loss 7.0%"), "{s:?}");
        let mut p = MediaProbe::new(cfg(100), None, t0);
        run(&mut p, t0, |i, _, len| {
            (i % 20 != 0).then_some((Duration::from_millis(2), len))
        });
        assert_eq!(p.stats().lost, 5);
        assert_eq!(p.stats().failure(), None);
        // A duplicate is counted, not received twice.
        let mut p = MediaProbe::new(cfg(1), None, t0);
        let mut buf = vec![0u8; BUF_LEN];
        let len = p.poll_transmit(t0, &mut buf).unwrap();
        let copy = buf.clone();
        p.handle_packet(t0, FAR.parse().unwrap(), &mut buf, len);
        buf.copy_from_slice(&copy);
        p.handle_packet(t0, FAR.parse().unwrap(), &mut buf, len);
        let s = p.stats();
        assert_eq!((s.received, s.duplicates), (1, 1));
    }

    #[test]
    fn packets_from_elsewhere_and_rtcp_are_ignored() {
        let t0 = epoch();
        let mut p = MediaProbe::new(cfg(1), None, t0);
        let mut buf = vec![0u8; BUF_LEN];
        let len = p.poll_transmit(t0, &mut buf).unwrap();
        let other: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        p.handle_packet(t0, other, &mut buf, len);
        let mut rtcp = [0x80, 200, 0, 6, 0, 0, 0, 1];
        p.handle_packet(t0, FAR.parse().unwrap(), &mut rtcp, 8);
        let s = p.stats();
        assert_eq!((s.received, s.foreign, s.rtcp), (0, 1, 1));
        assert_eq!(s.foreign_example, Some(other));
        assert!(s.failure().unwrap().contains("other addresses"), "{s:?}");
    }

    #[test]
    fn srtp_through_an_echo_that_re_keys_for_every_offered_suite() {
        for suite in [SrtpProfile::AeadAes128Gcm, SrtpProfile::AesCm128HmacSha1_80] {
            let t0 = epoch();
            let k = keys(suite);
            let mut echo = SrtpEcho::new(&k);
            let mut p = MediaProbe::new(cfg(150), Some(&k), t0);
            let mut wire_checked = false;
            run(&mut p, t0, |_, buf, len| {
                assert_eq!(len, 172 + suite.rtp_tag_len(), "{suite}");
                if !wire_checked {
                    // On the wire the payload is encrypted.
                    let mut plain = [0u8; PAYLOAD_LEN];
                    fill_payload(99, 0, &mut plain);
                    assert_ne!(&buf[12..172], &plain[..]);
                    wire_checked = true;
                }
                Some((Duration::from_millis(3), echo.echo(buf, len)))
            });
            let s = p.stats();
            assert_eq!(
                (s.sent, s.received, s.auth_failed),
                (150, 150, 0),
                "{suite}"
            );
            assert_eq!(s.suite, Some(suite));
            assert_eq!(s.rtt.unwrap().p95, Duration::from_millis(3));
            assert_eq!(s.failure(), None, "{suite}");
        }
    }

    #[test]
    fn tampered_srtp_is_an_error_and_a_reflection_is_recognised() {
        let t0 = epoch();
        let k = keys(SrtpProfile::AesCm128HmacSha1_80);
        let mut echo = SrtpEcho::new(&k);
        let mut p = MediaProbe::new(cfg(50), Some(&k), t0);
        run(&mut p, t0, |i, buf, len| {
            let n = echo.echo(buf, len);
            if i == 7 {
                buf[20] ^= 0x40; // one bit of ciphertext
            }
            Some((Duration::from_millis(1), n))
        });
        let s = p.stats();
        assert_eq!((s.received, s.auth_failed, s.reflected), (49, 1, 0));
        let why = s.failure().unwrap();
        assert!(why.contains("did not authenticate"), "{why}");

        // A far end that bounces our SRTP back unchanged: nothing authenticates with its key.
        let mut p = MediaProbe::new(cfg(20), Some(&k), t0);
        run(&mut p, t0, |_, _, len| {
            Some((Duration::from_millis(1), len))
        });
        let s = p.stats();
        assert_eq!((s.received, s.auth_failed, s.reflected), (0, 0, 20));
        let why = s.failure().unwrap();
        assert!(why.contains("our own SRTP, unchanged"), "{why}");

        // Plain RTP coming back on a secured call does not authenticate either.
        let mut p = MediaProbe::new(cfg(10), Some(&k), t0);
        let mut plain_echo = SrtpContext::new(&k.tx, SrtpConfig::default());
        run(&mut p, t0, |_, buf, len| {
            Some((
                Duration::from_millis(1),
                plain_echo.unprotect_rtp(buf, len).unwrap(),
            ))
        });
        let s = p.stats();
        assert_eq!((s.received, s.auth_failed), (0, 10));
    }

    #[test]
    fn rtt_percentile_is_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(RttStats::of(&[]), None);
        let one = RttStats::of(&ms(&[4])).unwrap();
        assert_eq!(
            (one.min, one.p95, one.max),
            (ms(&[4])[0], ms(&[4])[0], ms(&[4])[0])
        );
        let hundred: Vec<u64> = (1..=100).collect();
        let s = RttStats::of(&ms(&hundred)).unwrap();
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.avg, Duration::from_micros(50_500));
        let twenty: Vec<u64> = (1..=20).rev().collect();
        assert_eq!(
            RttStats::of(&ms(&twenty)).unwrap().p95,
            Duration::from_millis(19)
        );
    }
}
