//! The built-in `echo` endpoint (`Target::Echo`): answers calls and sends every RTP packet
//! back, and measures the media round-trip time with RTCP (RFC 3550 §6.4.1).
//!
//! ```text
//!  caller ══SRTP══▶ relay leg A ─▶ relay leg B ──RTP──▶ echo socket ─┐ (SSRC rewritten)
//!  caller ◀══SRTP══ relay leg A ◀─ relay leg B ◀──RTP───────────────┘
//!                                    RTCP: echo SR ─▶ caller; caller RR (LSR, DLSR) ─▶ RTT
//! ```
//!
//! The endpoint is leg B of an ordinary call ([`crate::b2bua::LocalEndpoint`]): the caller's
//! leg keeps its dial plan's security, so an echo call crosses the same relay path, SRTP
//! contexts and latching as a call to a peer. The endpoint itself only sees plain RTP on the
//! gateway's own address.
//!
//! - [`EchoSession`] is the sans-IO part: which packets to echo (from the relay's leg B
//!   only), the echoed stream's own SSRC (so the caller does not receive its own SSRC back,
//!   which RFC 3550 §8.2 loop detection would flag) and its own continuous sequence numbers
//!   and timestamps (so a caller that changes SSRC or restarts its sequence, e.g. after hold,
//!   still gets a stream its SRTP receiver accepts), sender reports, and RTT from the
//!   caller's report blocks.
//! - [`EchoEndpoint`] is the tokio driver: one RTP + RTCP socket pair and one task per call.
//!   It answers every offered `m=` line (the first audio stream served, the others refused
//!   with port 0), follows holds (it sends nothing while its answer says `recvonly` or
//!   `inactive`), and sends RTCP only to the address the relay's RTCP came from.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mediagate_sip_proto::message::StatusCode;
use mediagate_sip_proto::sdp::Sdp;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::b2bua::LocalEndpoint;
use crate::media::CallKey;

/// Interval between the endpoint's RTCP sender reports.
pub const SR_INTERVAL: Duration = Duration::from_secs(2);

/// RTT statistics of one echo call, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttStats {
    /// Measurements taken.
    pub samples: u64,
    /// Smallest RTT.
    pub min_us: u64,
    /// Largest RTT.
    pub max_us: u64,
    /// Sum of all RTTs (mean = sum / samples).
    pub sum_us: u64,
    /// The latest RTT.
    pub last_us: u64,
}

impl RttStats {
    fn add(&mut self, us: u64) {
        self.min_us = if self.samples == 0 {
            us
        } else {
            self.min_us.min(us)
        };
        self.max_us = self.max_us.max(us);
        self.sum_us = self.sum_us.saturating_add(us);
        self.last_us = us;
        self.samples += 1;
    }
    /// Mean RTT in microseconds (0 without samples).
    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.samples).unwrap_or(0)
    }
}

/// The sans-IO state of one echo call.
#[derive(Debug, Clone)]
pub struct EchoSession {
    ssrc: u32,
    /// Where the relay sends from (its leg B RTP address); other sources are ignored.
    relay_rtp: SocketAddr,
    /// The incoming stream being echoed: its SSRC, and what is added to its sequence numbers
    /// and timestamps to continue our own stream.
    input: Option<Input>,
    /// Our last sequence number and timestamp sent.
    last_seq: u16,
    last_ts: u32,
    /// Timestamp step between packets, as last seen (160 for 20 ms of 8 kHz audio).
    ts_step: u32,
    echoed_packets: u64,
    echoed_octets: u64,
    ignored: u64,
    last_rtp_ts: u32,
    /// NTP middle-32 of the SRs we sent (the last few), to match LSR.
    sent_sr: [u32; 4],
    sent_sr_next: usize,
    rtt: RttStats,
}

/// The incoming stream the echo follows.
#[derive(Debug, Clone, Copy)]
struct Input {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The incoming stream's last sequence number and timestamp.
    last_seq: u16,
    last_ts: u32,
}

/// An incoming sequence number this far behind the last one is a restart, not reordering.
const RESTART_BEHIND: u16 = 100;

impl EchoSession {
    /// A session with our `ssrc` that echoes what the relay sends from `relay_rtp`.
    pub fn new(ssrc: u32, relay_rtp: SocketAddr) -> EchoSession {
        EchoSession {
            ssrc,
            relay_rtp,
            input: None,
            last_seq: (ssrc >> 16) as u16,
            last_ts: ssrc.rotate_left(7),
            ts_step: 160,
            echoed_packets: 0,
            echoed_octets: 0,
            ignored: 0,
            last_rtp_ts: 0,
            sent_sr: [0; 4],
            sent_sr_next: 0,
            rtt: RttStats::default(),
        }
    }

    /// An RTP packet arrived from `from`: returns true when it is to be sent back (as
    /// rewritten in place: our SSRC, and our own sequence numbers and timestamps, which go on
    /// without a jump back when the caller changes SSRC or restarts its sequence). Packets
    /// from anyone but the relay, and anything that is not RTP version 2, are ignored.
    pub fn on_rtp(&mut self, from: SocketAddr, pkt: &mut [u8]) -> bool {
        if from.ip() != self.relay_rtp.ip() || pkt.len() < 12 || pkt[0] >> 6 != 2 {
            self.ignored += 1;
            return false;
        }
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let restart = match &self.input {
            Some(i) if i.ssrc == ssrc => {
                // Far behind the last one: the caller restarted its sequence.
                let behind = i.last_seq.wrapping_sub(seq);
                behind > RESTART_BEHIND && behind < 0x8000
            }
            _ => true,
        };
        if restart {
            // The first stream is echoed with its own numbers (a caller can match what comes
            // back by sequence number); after a change, our stream goes on from where it is:
            // the next number, one packet time later.
            let (seq_offset, ts_offset) = if self.echoed_packets == 0 {
                (0, 0)
            } else {
                (
                    self.last_seq.wrapping_add(1).wrapping_sub(seq),
                    self.last_ts.wrapping_add(self.ts_step).wrapping_sub(ts),
                )
            };
            self.input = Some(Input {
                ssrc,
                seq_offset,
                ts_offset,
                last_seq: seq,
                last_ts: ts,
            });
        }
        let Some(input) = self.input.as_mut() else {
            return false;
        };
        let ahead = seq.wrapping_sub(input.last_seq);
        if ahead != 0 && ahead < 0x8000 {
            let step = ts.wrapping_sub(input.last_ts) / u32::from(ahead);
            if (1..=8000).contains(&step) {
                self.ts_step = step;
            }
            input.last_seq = seq;
            input.last_ts = ts;
        }
        let out_seq = seq.wrapping_add(input.seq_offset);
        let out_ts = ts.wrapping_add(input.ts_offset);
        pkt[2..4].copy_from_slice(&out_seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&out_ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if out_seq.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        self.last_rtp_ts = out_ts;
        self.echoed_packets += 1;
        self.echoed_octets += (pkt.len() - 12) as u64;
        true
    }

    /// Builds our compound RTCP packet (SR + SDES CNAME) for NTP time `ntp` (64-bit, RFC 3550
    /// format) into `out`; returns its length.
    pub fn sender_report(&mut self, ntp: u64, out: &mut [u8; 64]) -> usize {
        // SR: V=2, RC=0, PT=200, length 6 (28 bytes).
        out[0] = 0x80;
        out[1] = 200;
        out[2..4].copy_from_slice(&6u16.to_be_bytes());
        out[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        out[8..16].copy_from_slice(&ntp.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_rtp_ts.to_be_bytes());
        out[20..24].copy_from_slice(&(self.echoed_packets as u32).to_be_bytes());
        out[24..28].copy_from_slice(&(self.echoed_octets as u32).to_be_bytes());
        // SDES: V=2, SC=1, PT=202; chunk: SSRC, CNAME "echo", END, pad to 32 bits.
        let cname = b"echo@mediagate";
        let chunk = 4 + 2 + cname.len() + 1;
        let chunk_padded = chunk.div_ceil(4) * 4;
        let sdes_len = 4 + chunk_padded;
        let s = 28;
        out[s] = 0x81;
        out[s + 1] = 202;
        out[s + 2..s + 4].copy_from_slice(&((sdes_len / 4 - 1) as u16).to_be_bytes());
        out[s + 4..s + 8].copy_from_slice(&self.ssrc.to_be_bytes());
        out[s + 8] = 1; // CNAME
        out[s + 9] = cname.len() as u8;
        out[s + 10..s + 10 + cname.len()].copy_from_slice(cname);
        for b in &mut out[s + 10 + cname.len()..s + sdes_len] {
            *b = 0;
        }
        self.sent_sr[self.sent_sr_next % self.sent_sr.len()] = ntp_middle(ntp);
        self.sent_sr_next += 1;
        s + sdes_len
    }

    /// A (compound) RTCP packet arrived at time `ntp`: every report block about our SSRC whose
    /// LSR matches an SR we sent gives an RTT sample. Returns the samples taken. Malformed
    /// input is ignored.
    pub fn on_rtcp(&mut self, ntp: u64, pkt: &[u8]) -> usize {
        let now = ntp_middle(ntp);
        let mut taken = 0;
        let mut rest = pkt;
        while rest.len() >= 8 {
            if rest[0] >> 6 != 2 {
                break;
            }
            let rc = usize::from(rest[0] & 0x1f);
            let pt = rest[1];
            let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            if len > rest.len() {
                break;
            }
            let blocks_at = match pt {
                200 => 28,
                201 => 8,
                _ => usize::MAX,
            };
            if blocks_at != usize::MAX {
                for i in 0..rc {
                    let b = blocks_at + i * 24;
                    let Some(block) = rest.get(b..b + 24) else {
                        break;
                    };
                    let ssrc = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                    let lsr = u32::from_be_bytes([block[16], block[17], block[18], block[19]]);
                    let dlsr = u32::from_be_bytes([block[20], block[21], block[22], block[23]]);
                    if ssrc != self.ssrc || lsr == 0 || !self.sent_sr.contains(&lsr) {
                        continue;
                    }
                    let rtt = now.wrapping_sub(lsr).wrapping_sub(dlsr);
                    // A negative (wrapped) result means clocks or DLSR are off: skip it.
                    if rtt < 0x8000_0000 {
                        self.rtt.add(u64::from(rtt) * 1_000_000 / 65_536);
                        taken += 1;
                    }
                }
            }
            rest = &rest[len..];
        }
        taken
    }

    /// RTT statistics so far.
    pub fn rtt(&self) -> RttStats {
        self.rtt
    }
    /// Packets echoed so far.
    pub fn echoed(&self) -> u64 {
        self.echoed_packets
    }
    /// Packets ignored (not from the relay, or not RTP).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (the LSR/DLSR unit: 1/65536 s).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Totals over all echo calls, for metrics.
#[derive(Debug, Default)]
pub struct EchoCounters {
    /// Calls answered.
    pub calls: AtomicU64,
    /// Calls in progress.
    pub active: AtomicU64,
    /// RTP packets echoed.
    pub packets: AtomicU64,
    /// RTT samples taken.
    pub rtt_samples: AtomicU64,
    /// Sum of RTT samples, microseconds.
    pub rtt_sum_us: AtomicU64,
}

struct CallTask {
    stop: oneshot::Sender<()>,
    /// False while the caller holds (our answer `recvonly`/`inactive`): nothing is sent.
    sending: Arc<AtomicBool>,
}

/// The echo endpoint: a [`LocalEndpoint`] that binds one RTP/RTCP socket pair per call on
/// `ip` and runs one small task per call on the tokio runtime it was created in.
pub struct EchoEndpoint {
    ip: IpAddr,
    runtime: tokio::runtime::Handle,
    calls: Mutex<HashMap<CallKey, CallTask>>,
    counters: Arc<EchoCounters>,
}

impl std::fmt::Debug for EchoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoEndpoint")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl EchoEndpoint {
    /// An endpoint with sockets on `ip` (the gateway's media address). Must be called inside a
    /// tokio runtime.
    pub fn new(ip: IpAddr) -> EchoEndpoint {
        EchoEndpoint {
            ip,
            runtime: tokio::runtime::Handle::current(),
            calls: Mutex::new(HashMap::new()),
            counters: Arc::new(EchoCounters::default()),
        }
    }

    /// Totals over all calls.
    pub fn counters(&self) -> &Arc<EchoCounters> {
        &self.counters
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// An RTP socket on an even port with the next (odd) port free for RTCP.
    fn bind_pair(&self) -> std::io::Result<(StdUdpSocket, StdUdpSocket)> {
        let mut last = None;
        for _ in 0..64 {
            let rtp = StdUdpSocket::bind(SocketAddr::new(self.ip, 0))?;
            let port = rtp.local_addr()?.port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            match StdUdpSocket::bind(SocketAddr::new(self.ip, port + 1)) {
                Ok(rtcp) => return Ok((rtp, rtcp)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no even/odd port pair")))
    }

    /// The answer to `offer`: one `m=` line per offered one (RFC 3264 §6); the first audio
    /// RTP stream with a port is served on `port`, every other stream is refused with port 0.
    fn answer_sdp(&self, port: u16, offer: &Sdp, session_id: u64) -> Option<Sdp> {
        let served = (0..offer.media.len()).find(|i| offer.is_anchorable(*i))?;
        let family = if self.ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut text = format!(
            "v=0\r\no=mediagate-echo {session_id} 1 IN {family} {ip}\r\ns=echo\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
            ip = self.ip,
        );
        for (i, m) in offer.media.iter().enumerate() {
            let p = if i == served { port } else { 0 };
            text.push_str(&format!(
                "m={} {p} {} {}\r\n",
                m.media,
                m.proto,
                m.formats.join(" ")
            ));
            if i != served {
                continue;
            }
            for l in &m.lines {
                if matches!(l.attribute(), Some("rtpmap" | "fmtp" | "ptime")) {
                    text.push_str(&format!("a={}\r\n", l.value));
                }
            }
            text.push_str(&format!(
                "a={}\r\n",
                offer.direction(i).answer().attribute()
            ));
        }
        Sdp::parse(text.as_bytes()).ok()
    }
}

impl LocalEndpoint for EchoEndpoint {
    fn answer(&self, call: CallKey, offer: &Sdp) -> Result<Sdp, StatusCode> {
        let served = (0..offer.media.len())
            .find(|i| offer.is_anchorable(*i))
            .ok_or(StatusCode::NOT_ACCEPTABLE_HERE)?;
        let Some(relay_rtp) = offer.rtp_address(served) else {
            return Err(StatusCode::NOT_ACCEPTABLE_HERE);
        };
        let (rtp, rtcp) = self.bind_pair().map_err(|e| {
            tracing::warn!(%call, %e, "echo: no socket");
            StatusCode::SERVICE_UNAVAILABLE
        })?;
        let port = rtp
            .local_addr()
            .map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?
            .port();
        let answer = self
            .answer_sdp(port, offer, call.0)
            .ok_or(StatusCode::NOT_ACCEPTABLE_HERE)?;
        let ssrc = ssrc_for(call);
        let session = EchoSession::new(ssrc, relay_rtp);
        let (stop, stopped) = oneshot::channel();
        let sending = Arc::new(AtomicBool::new(offer.direction(served).answer().sends()));
        let counters = self.counters.clone();
        let _guard = self.runtime.enter();
        let (rtp, rtcp) = match (prepare(rtp), prepare(rtcp)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(StatusCode::SERVICE_UNAVAILABLE),
        };
        self.runtime.spawn(run_call(
            call,
            session,
            rtp,
            rtcp,
            stopped,
            sending.clone(),
            counters,
        ));
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, CallTask { stop, sending });
        Ok(answer)
    }

    fn hangup(&self, call: CallKey) {
        let task = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&call);
        if let Some(t) = task {
            let _ = t.stop.send(());
            self.counters.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn set_sending(&self, call: CallKey, sending: bool) {
        if let Some(t) = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call)
        {
            t.sending.store(sending, Ordering::Relaxed);
        }
    }
}

fn prepare(s: StdUdpSocket) -> std::io::Result<UdpSocket> {
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// A per-call SSRC that differs from call to call (no RNG needed: the caller never sees it
/// as a secret).
fn ssrc_for(call: CallKey) -> u32 {
    let x = call.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6d67_6563_686f;
    (x >> 32) as u32 ^ x as u32
}

/// NTP time now (RFC 3550 timestamp format).
#[allow(clippy::disallowed_methods)] // the driver owns the clock
fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

async fn run_call(
    call: CallKey,
    mut session: EchoSession,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    mut stopped: oneshot::Receiver<()>,
    sending: Arc<AtomicBool>,
    counters: Arc<EchoCounters>,
) {
    let mut buf = vec![0u8; 2048];
    let mut cbuf = vec![0u8; 2048];
    let mut sr = [0u8; 64];
    let mut tick = tokio::time::interval(SR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // RTCP goes only to where the relay's RTCP comes from (latched), never to an SDP address.
    let mut rtcp_peer: Option<SocketAddr> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            r = rtp.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if !sending.load(Ordering::Relaxed) {
                    // On hold (our answer is recvonly/inactive): nothing goes back.
                    continue;
                }
                if session.on_rtp(from, &mut buf[..n]) && rtp.send_to(&buf[..n], from).await.is_ok() {
                    counters.packets.fetch_add(1, Ordering::Relaxed);
                }
            }
            r = rtcp.recv_from(&mut cbuf) => {
                let Ok((n, from)) = r else { continue };
                if from.ip() != session.relay_rtp.ip() {
                    continue;
                }
                rtcp_peer = Some(from);
                let before = session.rtt();
                if session.on_rtcp(ntp_now(), &cbuf[..n]) > 0 {
                    let after = session.rtt();
                    counters.rtt_samples.fetch_add(after.samples - before.samples, Ordering::Relaxed);
                    counters.rtt_sum_us.fetch_add(after.sum_us - before.sum_us, Ordering::Relaxed);
                    tracing::debug!(%call, rtt_us = after.last_us, "echo: media round trip");
                }
            }
            _ = tick.tick() => {
                if let Some(to) = rtcp_peer
                    && session.echoed() > 0
                    && sending.load(Ordering::Relaxed)
                {
                    let n = session.sender_report(ntp_now(), &mut sr);
                    let _ = rtcp.send_to(&sr[..n], to).await;
                }
            }
        }
    }
    let rtt = session.rtt();
    tracing::info!(
        code = "GW1401",
        %call,
        echoed = session.echoed(),
        ignored = session.ignored(),
        rtt_samples = rtt.samples,
        rtt_min_ms = rtt.min_us as f64 / 1000.0,
        rtt_mean_ms = rtt.mean_us() as f64 / 1000.0,
        rtt_max_ms = rtt.max_us as f64 / 1000.0,
        "echo call ended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    const RELAY: &str = "127.0.0.1:30002";

    #[test]
    fn echoes_only_rtp_from_the_relay_with_our_ssrc() {
        let mut s = EchoSession::new(0xabcd, RELAY.parse().unwrap());
        let mut p = rtp(7, 0x1111);
        assert!(s.on_rtp(RELAY.parse().unwrap(), &mut p));
        assert_eq!(&p[8..12], &0xabcdu32.to_be_bytes());
        assert_eq!(
            &p[2..4],
            &7u16.to_be_bytes(),
            "the first stream keeps its numbers"
        );
        assert!(p[12..].iter().all(|b| *b == 0xd5), "payload kept");
        let mut q = rtp(8, 0x1111);
        assert!(!s.on_rtp("192.0.2.9:30002".parse().unwrap(), &mut q));
        assert!(!s.on_rtp(RELAY.parse().unwrap(), &mut [0x80, 0, 1]));
        assert!(!s.on_rtp(RELAY.parse().unwrap(), &mut rtp(9, 1)[..11].to_vec()));
        let mut v1 = rtp(10, 1);
        v1[0] = 0x40;
        assert!(!s.on_rtp(RELAY.parse().unwrap(), &mut v1));
        assert_eq!((s.echoed(), s.ignored()), (1, 4));
    }

    fn seq_ts(p: &[u8]) -> (u16, u32) {
        (
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        )
    }

    /// The echoed stream is ours: continuous sequence numbers and timestamps whatever the
    /// caller does (SSRC change, restart lower, reordering), so the caller's SRTP receiver
    /// never sees a number twice.
    #[test]
    fn echoed_stream_is_continuous_across_ssrc_changes_and_restarts() {
        let relay: SocketAddr = RELAY.parse().unwrap();
        let mut s = EchoSession::new(0xabcd, relay);
        let mut out = Vec::new();
        let mut send = |s: &mut EchoSession, seq: u16, ssrc: u32| {
            let mut p = rtp(seq, ssrc);
            p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            assert!(s.on_rtp(relay, &mut p));
            assert_eq!(&p[8..12], &0xabcdu32.to_be_bytes());
            out.push(seq_ts(&p));
        };
        for seq in 30_000..30_010 {
            send(&mut s, seq, 1);
        }
        for seq in 100..110 {
            send(&mut s, seq, 2); // new SSRC, lower sequence
        }
        for seq in 5..10 {
            send(&mut s, seq, 2); // same SSRC restarts lower
        }
        assert_eq!(out[0].0, 30_000, "the first stream keeps its numbers");
        for w in out.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1), "{out:?}");
            assert_eq!(w[1].1, w[0].1.wrapping_add(160), "{out:?}");
        }
        // Reordering by a few packets keeps the caller's order (no restart).
        let mut p = rtp(8, 2);
        p[4..8].copy_from_slice(&(8u32 * 160).to_be_bytes());
        assert!(s.on_rtp(relay, &mut p));
        assert_eq!(seq_ts(&p).0, out.last().unwrap().0.wrapping_sub(1));
    }

    #[test]
    fn sender_report_is_a_valid_compound_packet() {
        let mut s = EchoSession::new(0xabcd, RELAY.parse().unwrap());
        s.on_rtp(RELAY.parse().unwrap(), &mut rtp(1, 5));
        let mut out = [0u8; 64];
        let n = s.sender_report(0x1122_3344_5566_7788, &mut out);
        assert_eq!(n % 4, 0);
        // SR length field: 6 words + 1.
        assert_eq!(
            (out[0], out[1], u16::from_be_bytes([out[2], out[3]])),
            (0x80, 200, 6)
        );
        assert_eq!(&out[8..16], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(u32::from_be_bytes([out[20], out[21], out[22], out[23]]), 1);
        let sdes_words = usize::from(u16::from_be_bytes([out[30], out[31]])) + 1;
        assert_eq!(28 + sdes_words * 4, n, "lengths add up");
        assert_eq!(out[29], 202);
        assert_eq!(&out[38..52], b"echo@mediagate");
    }

    /// The caller's RR about our SSRC: RTT = arrival − LSR − DLSR (RFC 3550 §6.4.1).
    #[test]
    fn rtt_from_the_callers_receiver_report() {
        let mut s = EchoSession::new(0xabcd, RELAY.parse().unwrap());
        let mut out = [0u8; 64];
        let sent_ntp: u64 = 0x0000_1000_8000_0000; // 4096.5 s
        s.sender_report(sent_ntp, &mut out);
        let lsr = (sent_ntp >> 16) as u32;
        let dlsr: u32 = 65_536 / 10; // the caller held it 100 ms
        let rr = |ssrc: u32, lsr: u32, dlsr: u32| {
            let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 9];
            let mut block = [0u8; 24];
            block[0..4].copy_from_slice(&ssrc.to_be_bytes());
            block[16..20].copy_from_slice(&lsr.to_be_bytes());
            block[20..24].copy_from_slice(&dlsr.to_be_bytes());
            p.extend_from_slice(&block);
            p
        };
        // Arrives 130 ms after the SR left: RTT 30 ms.
        let arrival = sent_ntp + (((130u64 << 32) / 1000) & !0xffff);
        assert_eq!(s.on_rtcp(arrival, &rr(0xabcd, lsr, dlsr)), 1);
        let r = s.rtt();
        assert_eq!(r.samples, 1);
        assert!((29_900..=30_100).contains(&r.last_us), "{r:?}");
        // Another SSRC, an unknown LSR, no LSR, garbage: no sample, no panic.
        assert_eq!(s.on_rtcp(arrival, &rr(0x9999, lsr, dlsr)), 0);
        assert_eq!(s.on_rtcp(arrival, &rr(0xabcd, lsr + 1, dlsr)), 0);
        assert_eq!(s.on_rtcp(arrival, &rr(0xabcd, 0, 0)), 0);
        for n in 0..32 {
            let mut g = rr(0xabcd, lsr, dlsr);
            g.truncate(n);
            assert_eq!(s.on_rtcp(arrival, &g), 0, "truncated to {n}");
        }
        let mut bad = rr(0xabcd, lsr, dlsr);
        bad[3] = 200; // length beyond the packet
        assert_eq!(s.on_rtcp(arrival, &bad), 0);
        assert_eq!(s.rtt().samples, 1);
    }

    #[tokio::test]
    async fn endpoint_answers_and_echoes_over_udp() {
        let relay = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        relay
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let offer = Sdp::parse(
            format!(
                "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
                relay_addr.port()
            )
            .as_bytes(),
        )
        .unwrap();
        let ep = EchoEndpoint::new("127.0.0.1".parse().unwrap());
        let answer = ep.answer(CallKey(1), &offer).unwrap();
        let text = String::from_utf8(answer.to_bytes()).unwrap();
        assert!(text.contains("RTP/AVP 8 101"), "{text}");
        assert!(text.contains("a=fmtp:101 0-15"), "{text}");
        let echo_addr = answer.rtp_address(0).unwrap();
        assert_eq!(echo_addr.port() % 2, 0);
        let relay = tokio::net::UdpSocket::from_std({
            relay.set_nonblocking(true).unwrap();
            relay
        })
        .unwrap();
        let mut last: Option<u16> = None;
        for seq in 0..20u16 {
            relay.send_to(&rtp(seq, 0x1111), echo_addr).await.unwrap();
            let mut b = [0u8; 512];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, echo_addr);
            assert_eq!(n, 172);
            let out = u16::from_be_bytes([b[2], b[3]]);
            if let Some(l) = last {
                assert_eq!(out, l.wrapping_add(1));
            }
            last = Some(out);
            assert_ne!(&b[8..12], &0x1111u32.to_be_bytes());
        }
        // On hold (our answer recvonly) nothing comes back.
        ep.set_sending(CallKey(1), false);
        relay.send_to(&rtp(20, 0x1111), echo_addr).await.unwrap();
        let mut b = [0u8; 512];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), relay.recv_from(&mut b))
                .await
                .is_err(),
            "nothing echoed on hold"
        );
        assert_eq!(ep.active_calls(), 1);
        ep.hangup(CallKey(1));
        ep.hangup(CallKey(1));
        assert_eq!(ep.active_calls(), 0);
        assert_eq!(ep.counters().packets.load(Ordering::Relaxed), 20);
        assert_eq!(ep.counters().active.load(Ordering::Relaxed), 0);
    }
}
