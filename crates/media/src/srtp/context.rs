//! [`SrtpContext`]: in-place protect/unprotect of SRTP and SRTCP for one
//! master key, with per-SSRC rollover counters and replay windows.

use ring::aead::{Aad, Nonce, Tag};

use super::cipher::{SessionKeys, cm_iv, gcm_rtcp_iv, gcm_rtp_iv, hmac_sha1, tags_equal};
use super::history::{History, Recall, fingerprint};
use super::key::{MasterKey, Mki};
use super::profile::SrtpProfile;
use super::replay::{DEFAULT_REPLAY_WINDOW, ReplayCheck, ReplayWindow};
use crate::error::{Malformed, SrtpError};
use crate::rtp::{RtcpHeader, RtpHeader, estimate_index, packet_index};

/// SRTCP index field: E flag (bit 31) and a 31-bit index.
const SRTCP_E_FLAG: u32 = 0x8000_0000;
const SRTCP_INDEX_MASK: u32 = 0x7fff_ffff;
/// The fixed RTCP header SRTCP leaves in the clear (RFC 3711 §3.4).
const RTCP_CLEAR_LEN: usize = 8;
/// Natural key lifetimes (RFC 3711 §9.2): 2^48 SRTP and 2^31 SRTCP packets.
const MAX_RTP_PACKETS: u64 = 1 << 48;
/// GCM's tag is 16 octets for both SRTP and SRTCP (RFC 7714 §14.2).
const GCM_TAG_LEN: usize = 16;

/// Tunables of an [`SrtpContext`]; the defaults suit a telephony relay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SrtpConfig {
    /// Replay window size in packets (64..=1024; default 128 as libsrtp).
    pub replay_window: usize,
    /// SSRCs tracked at once; the least recently used stream is forgotten
    /// when a new one arrives beyond this (default 8: a call has one or two,
    /// plus one per SSRC change). A forgotten stream leaves a tombstone (the
    /// range of indices it used) so its packets are never accepted again;
    /// when [`MAX_FORGOTTEN`] tombstones exist, new SSRCs are refused
    /// ([`SrtpError::TooManyStreams`]) rather than forgetting more.
    pub max_streams: usize,
    /// Content memory for restarts (see [`SrtpContext::allow_restart`]): the
    /// fingerprints of the last this-many received packets of each stream
    /// are kept (10 octets each; rounded up to a power of two), so a peer
    /// that restarts its stream under the same key into indices it used
    /// recently can be told from a replay. Default 4096 (82 s of 20 ms
    /// audio, 40 KiB per received stream); 0 keeps none (such restarts are
    /// then refused until the peer's index leaves the used range).
    pub restart_memory: usize,
}

/// Tombstones of forgotten SSRCs a context keeps (see
/// [`SrtpConfig::max_streams`]).
pub const MAX_FORGOTTEN: usize = 64;
/// Content memory of each stream's SRTCP (packets): RTCP comes every few
/// seconds, so 64 covers minutes.
const RTCP_MEMORY: usize = 64;

impl Default for SrtpConfig {
    fn default() -> Self {
        Self {
            replay_window: DEFAULT_REPLAY_WINDOW,
            max_streams: 8,
            restart_memory: 4096,
        }
    }
}

/// Per-SSRC SRTP state of the current epoch (the stretch since the stream
/// started or last restarted).
#[derive(Clone, Debug)]
struct RtpState {
    /// Rollover counter of the highest index.
    roc: u32,
    /// Highest sequence number accepted (`s_l`), valid when `seen`.
    s_l: u16,
    /// Whether any packet was accepted yet; before that `roc` is the value
    /// set by [`SrtpContext::set_roc`] (or 0).
    seen: bool,
    /// The first index accepted in this epoch, valid when `seen`.
    first: u64,
    /// A restart is allowed (armed by [`SrtpContext::allow_restart`], once).
    restart: bool,
    replay: ReplayWindow,
    /// Earlier epochs and the recent packets' fingerprints.
    history: History,
}

impl RtpState {
    fn highest(&self) -> u64 {
        packet_index(self.roc, self.s_l)
    }

    /// True when the current epoch may have accepted `index`: it lies in
    /// `[first, highest]` and the window marks it, or it is below the window.
    fn may_hold(&self, index: u64) -> bool {
        if !self.seen || index < self.first {
            return false;
        }
        let delta = index as i64 - self.highest() as i64;
        delta <= 0 && self.replay.check(delta) != ReplayCheck::Fresh
    }

    /// True when `index` may have been accepted before and the content
    /// memory cannot prove the packet (fingerprint `fp`) is a new one.
    fn is_replay(&self, index: u64, fp: u32) -> bool {
        (self.may_hold(index)
            && matches!(
                self.history.recall_current(index, fp),
                Recall::Same | Recall::Unknown
            ))
            || self.history.retired_replay(index, fp)
    }

    /// Ends the current epoch (its range goes to the history).
    fn retire(&mut self) {
        if self.seen {
            self.history.retire(self.first, self.highest());
        }
        self.seen = false;
    }

    /// The hull of every index this stream has used.
    fn hull(&self) -> Option<(u64, u64)> {
        let cur = self.seen.then(|| (self.first, self.highest()));
        hull_of(cur, self.history.hull())
    }
}

/// Per-SSRC SRTCP state, epochs as for RTP (the SRTCP index is explicit).
#[derive(Clone, Debug)]
struct RtcpState {
    /// Next index to send.
    send_index: u32,
    /// Highest index received, valid when `seen`.
    highest: u32,
    seen: bool,
    /// The first index received in this epoch, valid when `seen`.
    first: u32,
    restart: bool,
    replay: ReplayWindow,
    history: History,
}

impl RtcpState {
    fn may_hold(&self, index: u32) -> bool {
        if !self.seen || index < self.first {
            return false;
        }
        let delta = i64::from(index) - i64::from(self.highest);
        delta <= 0 && self.replay.check(delta) != ReplayCheck::Fresh
    }

    fn is_replay(&self, index: u32, fp: u32) -> bool {
        let i = u64::from(index);
        (self.may_hold(index)
            && matches!(
                self.history.recall_current(i, fp),
                Recall::Same | Recall::Unknown
            ))
            || self.history.retired_replay(i, fp)
    }

    fn hull(&self) -> Option<(u64, u64)> {
        let cur = self
            .seen
            .then(|| (u64::from(self.first), u64::from(self.highest)));
        hull_of(cur, self.history.hull())
    }
}

fn hull_of(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
        (a, b) => a.or(b),
    }
}

#[derive(Clone, Debug)]
struct Stream {
    ssrc: u32,
    last_used: u64,
    rtp: RtpState,
    rtcp: RtcpState,
}

/// What is left of a forgotten SSRC: the index ranges it used.
#[derive(Clone, Copy, Debug)]
struct Tombstone {
    ssrc: u32,
    rtp: Option<(u64, u64)>,
    rtcp: Option<(u64, u64)>,
}

impl Stream {
    fn allow_restart(&mut self, allow: bool) {
        self.rtp.restart = allow;
        self.rtcp.restart = allow;
    }

    /// A stream; `memory` is the content memory of its receive side (0 for
    /// a stream we only send).
    fn new(ssrc: u32, window: usize, memory: usize, tomb: Option<Tombstone>) -> Self {
        let rtp_ranges: Vec<(u64, u64)> = tomb.and_then(|t| t.rtp).into_iter().collect();
        let rtcp_ranges: Vec<(u64, u64)> = tomb.and_then(|t| t.rtcp).into_iter().collect();
        // SRTCP indices start at 1, as libsrtp and webrtc-srtp count; after
        // a tombstone, above everything the forgotten stream used.
        let send_index = rtcp_ranges
            .first()
            .map_or(1, |r| (r.1 as u32).saturating_add(1));
        Self {
            ssrc,
            last_used: 0,
            rtp: RtpState {
                roc: 0,
                s_l: 0,
                seen: false,
                first: 0,
                restart: false,
                replay: ReplayWindow::new(window),
                history: History::with_ranges(memory, &rtp_ranges),
            },
            rtcp: RtcpState {
                send_index,
                highest: 0,
                seen: false,
                first: 0,
                restart: false,
                replay: ReplayWindow::new(window),
                history: History::with_ranges(memory.min(RTCP_MEMORY), &rtcp_ranges),
            },
        }
    }
}

/// SRTP/SRTCP state for one master key: session keys, and per SSRC the
/// rollover counter, highest sequence number and replay windows.
///
/// All operations work in place on the caller's buffer and never allocate:
///
/// ```text
///  protect_rtp:   buf = [ header | payload | spare ... ]   len = header+payload
///              -> buf = [ header | ciphertext | MKI? | tag ]  returns new len
///  unprotect_rtp: the reverse; returns the plaintext length.
/// ```
///
/// A context serves one direction in practice (a relay leg has one for what
/// it receives and one for what it sends), but both directions work on the
/// same context, sharing per-SSRC state as libsrtp does.
///
/// State is committed only after a packet authenticated, so forged packets
/// can neither move the replay window nor create streams.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    mki: Option<Mki>,
    /// Packets still allowed under the master key (SRTP + SRTCP).
    packets_left: u64,
    config: SrtpConfig,
    streams: Vec<Stream>,
    /// Index into `streams` of the stream used last (one-entry cache).
    last: usize,
    /// Logical clock for least-recently-used eviction.
    tick: u64,
    /// Authenticated packets during which a stream restart is allowed
    /// (R-MEDIA-6); 0 means not armed.
    restart_budget: u32,
    /// Copy of a GCM packet while a restart is allowed, so a failed
    /// in-place open (which wipes the buffer) can be retried.
    scratch: Vec<u8>,
    /// Forgotten SSRCs (at most [`MAX_FORGOTTEN`]).
    forgotten: Vec<Tombstone>,
}

/// How an authenticated RTP packet is taken into its stream.
enum Take {
    /// The first packet of the stream (or after `set_roc`).
    First,
    /// In the current epoch, `delta` from the highest index.
    Normal(i64),
    /// A restart: a new epoch begins at this packet.
    Restart,
    /// A jump past the replay window: a new epoch begins here too (without
    /// using the stream's restart), so that an epoch never holds a gap wider
    /// than the window — an index in such a gap was never accepted, but once
    /// the epoch's fingerprints are gone it could not be told from one that
    /// was.
    Jump,
}

/// Largest packet for which a restart is retried with GCM.
const SCRATCH_LEN: usize = 2048;

impl SrtpContext {
    /// Creates a context for `key` (derives the session keys now).
    pub fn new(key: &MasterKey, config: SrtpConfig) -> Self {
        let profile = key.profile();
        let mut config = config;
        config.max_streams = config.max_streams.max(1);
        Self {
            profile,
            rtp: SessionKeys::derive(profile, key.key(), key.salt(), false),
            rtcp: SessionKeys::derive(profile, key.key(), key.salt(), true),
            mki: key.mki(),
            packets_left: key
                .lifetime()
                .unwrap_or(MAX_RTP_PACKETS)
                .min(MAX_RTP_PACKETS),
            streams: Vec::with_capacity(config.max_streams),
            config,
            last: 0,
            tick: 0,
            restart_budget: 0,
            scratch: Vec::new(),
            forgotten: Vec::with_capacity(MAX_FORGOTTEN),
        }
    }

    /// A context on raw session keys (the RFC 7714 vectors are given that
    /// way), the same for SRTP and SRTCP.
    #[cfg(test)]
    pub(crate) fn from_session_keys(
        profile: SrtpProfile,
        enc: &[u8],
        salt: &[u8],
        auth: &[u8],
    ) -> Self {
        Self {
            profile,
            rtp: SessionKeys::from_session(profile, enc, salt, auth),
            rtcp: SessionKeys::from_session(profile, enc, salt, auth),
            mki: None,
            packets_left: MAX_RTP_PACKETS,
            streams: Vec::with_capacity(8),
            config: SrtpConfig::default(),
            last: 0,
            tick: 0,
            restart_budget: 0,
            scratch: Vec::new(),
            forgotten: Vec::with_capacity(MAX_FORGOTTEN),
        }
    }

    /// The context's profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Octets `protect_rtp` appends (MKI + tag): the spare room the buffer
    /// needs beyond the plaintext packet.
    pub fn rtp_overhead(&self) -> usize {
        self.profile.rtp_tag_len() + self.mki_len()
    }

    /// Octets `protect_rtcp` appends (SRTCP index + MKI + tag).
    pub fn rtcp_overhead(&self) -> usize {
        4 + self.profile.rtcp_tag_len() + self.mki_len()
    }

    fn mki_len(&self) -> usize {
        self.mki.map_or(0, |m| m.len())
    }

    /// The rollover counter of `ssrc`'s highest index, if the SSRC is known.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.streams
            .iter()
            .find(|s| s.ssrc == ssrc)
            .map(|s| s.rtp.roc)
    }

    /// Sets the rollover counter for `ssrc` explicitly (R-MEDIA-6): for a
    /// stream that joins mid-session, or to carry a ROC over a re-INVITE.
    ///
    /// The next packet of `ssrc` is then taken as the first one of a new
    /// epoch with this ROC; the indices the stream accepted so far are kept
    /// in its history and never accepted again.
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), SrtpError> {
        let i = self.stream_or_insert(ssrc, true)?;
        let st = &mut self.streams[i].rtp;
        st.retire();
        st.roc = roc;
        Ok(())
    }

    /// Allows each stream of this context one restart during the next
    /// `packets` authenticated packets (0 disarms). Call it when a re-INVITE
    /// keeps the key (R-MEDIA-6): peers that put a call on hold and resume it
    /// often start a fresh SRTP context under the same key — ROC 0, a new
    /// random sequence number, possibly below where they were.
    ///
    /// While armed, a packet that the normal rules refuse (a replay-window
    /// duplicate, older than the window, or failing authentication under the
    /// estimated ROC but passing under ROC 0 or the current ROC ± 1) starts
    /// a new epoch of its stream **only if it cannot be a replay**: its index
    /// was never accepted by this stream (neither in the current epoch nor in
    /// a retired one), or the content memory holds that index with a
    /// different fingerprint (new content at a re-used index). Any index
    /// that may have been accepted and that the memory cannot vouch for is
    /// refused as [`SrtpError::Replayed`]. The same check applies, armed or
    /// not, to packets that fall into a retired epoch later on. So no packet
    /// accepted once is ever accepted again (ARCHITECTURE.md gives the
    /// argument), and the arming is bounded: in packets here, and in time by
    /// the caller (the relay disarms after a deadline).
    pub fn allow_restart(&mut self, packets: u32) {
        self.restart_budget = packets;
        for s in &mut self.streams {
            s.allow_restart(packets > 0);
        }
        if packets > 0 && self.profile.is_aead() && self.scratch.is_empty() {
            // Control-plane allocation, once per context.
            self.scratch = vec![0; SCRATCH_LEN];
        }
    }

    /// True while [`SrtpContext::allow_restart`] is armed.
    pub fn restart_allowed(&self) -> bool {
        self.restart_budget > 0
    }

    /// Number of SSRCs the context currently tracks.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return Some(self.last);
        }
        let i = self.streams.iter().position(|s| s.ssrc == ssrc)?;
        self.last = i;
        Some(i)
    }

    /// The stream of `ssrc`, created if needed. `receive`: the stream will
    /// be unprotected, so it gets its content memory (allocated once per
    /// stream, not per packet).
    fn stream_or_insert(&mut self, ssrc: u32, receive: bool) -> Result<usize, SrtpError> {
        let memory = if receive {
            self.config.restart_memory
        } else {
            0
        };
        if let Some(i) = self.find(ssrc) {
            let s = &mut self.streams[i];
            if receive && memory > 0 && !s.rtp.history.has_memory() {
                // A stream we sent on before now receives (tests, loops):
                // what it sent so far stays unknown to the new memory.
                let seen = s.rtp.seen.then(|| s.rtp.highest());
                s.rtp.history.add_memory(memory, seen);
                let seen = s.rtcp.seen.then(|| u64::from(s.rtcp.highest));
                s.rtcp.history.add_memory(memory.min(RTCP_MEMORY), seen);
            }
            return Ok(i);
        }
        let tomb = self
            .forgotten
            .iter()
            .position(|t| t.ssrc == ssrc)
            .map(|k| self.forgotten.swap_remove(k));
        let i = if self.streams.len() < self.config.max_streams {
            let mut stream = Stream::new(ssrc, self.config.replay_window, memory, tomb);
            stream.allow_restart(self.restart_budget > 0);
            self.streams.push(stream);
            self.streams.len() - 1
        } else {
            // Forget the least recently used SSRC (a stream replaced after
            // an SSRC change), keeping a tombstone of the indices it used so
            // that none of its packets is ever accepted again. Without room
            // for the tombstone, refuse the new SSRC instead.
            if self.forgotten.len() >= MAX_FORGOTTEN {
                if let Some(t) = tomb {
                    self.forgotten.push(t);
                }
                return Err(SrtpError::TooManyStreams);
            }
            let (i, _) = self
                .streams
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .unwrap_or((0, &self.streams[0]));
            let old = &self.streams[i];
            self.forgotten.push(Tombstone {
                ssrc: old.ssrc,
                rtp: old.rtp.hull(),
                rtcp: old.rtcp.hull(),
            });
            self.streams[i] = Stream::new(ssrc, self.config.replay_window, memory, tomb);
            self.streams[i].allow_restart(self.restart_budget > 0);
            i
        };
        self.last = i;
        Ok(i)
    }

    fn touch(&mut self, i: usize) {
        self.tick += 1;
        self.streams[i].last_used = self.tick;
    }

    fn use_lifetime(&mut self) -> Result<(), SrtpError> {
        if self.packets_left == 0 {
            return Err(SrtpError::KeyExpired);
        }
        self.packets_left -= 1;
        Ok(())
    }

    /// Protects the RTP packet `buf[..len]` in place and returns the SRTP
    /// packet length.
    ///
    /// `buf` must have [`Self::rtp_overhead`] octets of spare room after
    /// `len`. Sending the same index twice is refused as
    /// [`SrtpError::Replayed`] (it would reuse keystream), like libsrtp.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        let mki_len = self.mki_len();
        let out_len = len
            .checked_add(tag_len + mki_len)
            .ok_or(SrtpError::BufferTooSmall)?;
        if out_len > buf.len() {
            return Err(SrtpError::BufferTooSmall);
        }
        let h = RtpHeader::parse(&buf[..len])?;
        let i = self.stream_or_insert(h.ssrc, false)?;
        let st = &self.streams[i].rtp;
        let (roc, delta) = if st.seen {
            let (v, delta) = estimate_index(st.roc, st.s_l, h.sequence);
            if v == u32::MAX && st.roc == 0 {
                return Err(SrtpError::Replayed);
            }
            if st.replay.check(i64::from(delta)) != ReplayCheck::Fresh {
                return Err(SrtpError::Replayed);
            }
            (v, delta)
        } else {
            (st.roc, 0)
        };
        // Never encrypt under an index a forgotten epoch used (keystream).
        if st.history.retired(packet_index(roc, h.sequence)) {
            return Err(SrtpError::Replayed);
        }
        self.use_lifetime()?;

        match &self.rtp {
            SessionKeys::Cm { aes, salt, auth } => {
                let iv = cm_iv(salt, h.ssrc, packet_index(roc, h.sequence));
                aes.apply(&iv, &mut buf[h.header_len..len]);
                let tag = hmac_sha1(auth, &buf[..len], &roc.to_be_bytes());
                if let Some(mki) = self.mki {
                    buf[len..len + mki_len].copy_from_slice(mki.as_bytes());
                }
                buf[len + mki_len..out_len].copy_from_slice(&tag[..tag_len]);
            }
            SessionKeys::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, h.ssrc, roc, h.sequence);
                let (aad, payload) = buf[..len].split_at_mut(h.header_len);
                let tag = aead
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&*aad),
                        payload,
                    )
                    .map_err(|_| SrtpError::BufferTooSmall)?;
                buf[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                if let Some(mki) = self.mki {
                    buf[len + GCM_TAG_LEN..out_len].copy_from_slice(mki.as_bytes());
                }
            }
        }

        self.touch(i);
        let take = if self.streams[i].rtp.seen {
            Take::Normal(i64::from(delta))
        } else {
            Take::First
        };
        self.commit_rtp(i, roc, h.sequence, take, None);
        Ok(out_len)
    }

    /// Takes an accepted packet into stream `i`'s state; `fp` is recorded in
    /// the content memory (received packets).
    fn commit_rtp(&mut self, i: usize, roc: u32, seq: u16, take: Take, fp: Option<u32>) {
        let jump = self.config.replay_window as i64;
        let st = &mut self.streams[i].rtp;
        let index = packet_index(roc, seq);
        // A jump past the window starts a new epoch (see `Take::Jump`).
        let take = match take {
            Take::Normal(delta) if delta > jump => Take::Jump,
            t => t,
        };
        match take {
            Take::Normal(delta) => {
                st.replay.accept(delta);
                if delta > 0 {
                    st.roc = roc;
                    st.s_l = seq;
                }
                // A late packet from before the epoch's first one: the
                // epoch's range must hold every index it accepted.
                st.first = st.first.min(index);
            }
            Take::First | Take::Restart | Take::Jump => {
                // A restart or jump retires the epoch it ends; a first
                // packet has none to retire (or `set_roc` already did).
                st.retire();
                st.seen = true;
                st.roc = roc;
                st.s_l = seq;
                st.first = index;
                st.replay.reset();
                if matches!(take, Take::Restart) {
                    st.restart = false;
                }
            }
        }
        if let Some(fp) = fp {
            st.history.record(index, fp);
        }
    }

    /// Authenticates and decrypts the SRTP packet `buf[..len]` in place and
    /// returns the RTP packet length.
    ///
    /// On error nothing is committed: the packet must be dropped (and
    /// counted by the caller). See [`SrtpContext::allow_restart`] for what
    /// changes while a restart is allowed.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        let mki_len = self.mki_len();
        let pkt = buf.get_mut(..len).ok_or(SrtpError::BufferTooSmall)?;
        let body_len = len
            .checked_sub(tag_len + mki_len)
            .ok_or(SrtpError::Malformed(Malformed::TooShort))?;
        let h = RtpHeader::parse(&pkt[..body_len])?;
        let aead = self.profile.is_aead();
        if let Some(mki) = self.mki {
            let at = if aead { body_len + tag_len } else { body_len };
            if pkt[at..at + mki_len] != *mki.as_bytes() {
                return Err(SrtpError::UnknownMki);
            }
        }
        if self.packets_left == 0 {
            return Err(SrtpError::KeyExpired);
        }
        // The tag binds the whole packet: its first octets fingerprint it.
        let tag_at = if aead { body_len } else { body_len + mki_len };
        let fp = fingerprint(&pkt[tag_at..tag_at + tag_len]);

        // What the stream's state expects, without creating the stream.
        let known = self.find(h.ssrc);
        let armed = self.restart_budget > 0;
        let (roc, delta, fresh, may_restart, impossible, cur_roc) = match known
            .map(|i| &self.streams[i].rtp)
        {
            Some(st) if st.seen => {
                let (v, delta) = estimate_index(st.roc, st.s_l, h.sequence);
                // ROC 0 cannot go below zero: such a packet is older
                // than the stream (or from a restarted peer).
                let impossible = v == u32::MAX && st.roc == 0;
                let fresh = !impossible && st.replay.check(i64::from(delta)) == ReplayCheck::Fresh;
                let may_restart = armed && st.restart;
                if !fresh && !may_restart {
                    return Err(SrtpError::Replayed);
                }
                (v, delta, fresh, may_restart, impossible, st.roc)
            }
            Some(st) => (st.roc, 0, true, false, false, st.roc),
            None => (0, 0, true, false, false, 0),
        };

        // Authenticate under the expected ROC; while a restart is allowed,
        // also under ROC 0 and the current ROC ± 1.
        let mut found = None;
        if !impossible {
            match self.open_rtp(pkt, &h, body_len, roc, may_restart) {
                Ok(()) => found = Some(roc),
                Err(SrtpError::AuthenticationFailed) if may_restart => {}
                Err(e) => return Err(e),
            }
        }
        if found.is_none() {
            for cand in [0, cur_roc, cur_roc.wrapping_add(1), cur_roc.wrapping_sub(1)] {
                if (cand == roc && !impossible) || found.is_some() {
                    continue;
                }
                if self.open_rtp(pkt, &h, body_len, cand, true).is_ok() {
                    found = Some(cand);
                }
            }
        }
        let got = found.ok_or(SrtpError::AuthenticationFailed)?;
        let index = packet_index(got, h.sequence);

        // Never accept a packet twice.
        let take = match known.map(|i| &self.streams[i].rtp) {
            Some(st) if st.seen => {
                if got == roc && fresh {
                    if st.history.retired_replay(index, fp) {
                        return Err(SrtpError::Replayed);
                    }
                    Take::Normal(i64::from(delta))
                } else {
                    // Only reachable while a restart is allowed.
                    if st.is_replay(index, fp) {
                        return Err(SrtpError::Replayed);
                    }
                    Take::Restart
                }
            }
            Some(st) => {
                if st.is_replay(index, fp) {
                    return Err(SrtpError::Replayed);
                }
                Take::First
            }
            None => {
                // A forgotten SSRC's packets stay refused.
                if self.forgotten.iter().any(|t| {
                    t.ssrc == h.ssrc && t.rtp.is_some_and(|(lo, hi)| lo <= index && index <= hi)
                }) {
                    return Err(SrtpError::Replayed);
                }
                Take::First
            }
        };
        let i = match known {
            Some(i) => i,
            None => self.stream_or_insert(h.ssrc, true)?,
        };
        self.packets_left -= 1;
        self.touch(i);
        self.commit_rtp(i, got, h.sequence, take, Some(fp));
        self.restart_budget = self.restart_budget.saturating_sub(1);
        Ok(body_len)
    }

    /// Verifies and decrypts `pkt[..body_len + tag]` with rollover counter
    /// `roc`. With `keep_on_failure`, the packet is left intact when it does
    /// not authenticate so that another ROC can be tried.
    fn open_rtp(
        &mut self,
        pkt: &mut [u8],
        h: &RtpHeader,
        body_len: usize,
        roc: u32,
        keep_on_failure: bool,
    ) -> Result<(), SrtpError> {
        match &self.rtp {
            SessionKeys::Cm { aes, salt, auth } => {
                let tag_len = self.profile.rtp_tag_len();
                let mki_len = self.mki.map_or(0, |m| m.len());
                let tag_at = body_len + mki_len;
                let mac = hmac_sha1(auth, &pkt[..body_len], &roc.to_be_bytes());
                if !tags_equal(&mac[..tag_len], &pkt[tag_at..tag_at + tag_len]) {
                    return Err(SrtpError::AuthenticationFailed);
                }
                let iv = cm_iv(salt, h.ssrc, packet_index(roc, h.sequence));
                aes.apply(&iv, &mut pkt[h.header_len..body_len]);
                Ok(())
            }
            SessionKeys::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, h.ssrc, roc, h.sequence);
                let sealed = body_len + GCM_TAG_LEN;
                let backup = keep_on_failure && sealed <= self.scratch.len();
                if backup {
                    self.scratch[..sealed].copy_from_slice(&pkt[..sealed]);
                }
                let (aad, in_out) = pkt[..sealed].split_at_mut(h.header_len);
                let nonce = Nonce::assume_unique_for_key(iv);
                match aead.open_in_place(nonce, Aad::from(&*aad), in_out) {
                    Ok(_) => Ok(()),
                    Err(_) => {
                        if backup {
                            pkt[..sealed].copy_from_slice(&self.scratch[..sealed]);
                        }
                        Err(SrtpError::AuthenticationFailed)
                    }
                }
            }
        }
    }

    /// Protects the RTCP compound packet `buf[..len]` in place (always
    /// encrypted, E = 1) and returns the SRTCP packet length.
    ///
    /// `buf` must have [`Self::rtcp_overhead`] octets of spare room.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtcp_tag_len();
        let mki_len = self.mki_len();
        let out_len = len
            .checked_add(4 + tag_len + mki_len)
            .ok_or(SrtpError::BufferTooSmall)?;
        if out_len > buf.len() {
            return Err(SrtpError::BufferTooSmall);
        }
        let h = RtcpHeader::parse(&buf[..len])?;
        let i = self.stream_or_insert(h.ssrc, false)?;
        let index = self.streams[i].rtcp.send_index;
        if index > SRTCP_INDEX_MASK {
            return Err(SrtpError::KeyExpired);
        }
        self.use_lifetime()?;
        let word = (SRTCP_E_FLAG | index).to_be_bytes();

        match &self.rtcp {
            SessionKeys::Cm { aes, salt, auth } => {
                //= https://www.rfc-editor.org/rfc/rfc3711#section-3.4
                //# header (8) | encrypted portion | E | SRTCP index | MKI | tag
                let iv = cm_iv(salt, h.ssrc, u64::from(index));
                aes.apply(&iv, &mut buf[RTCP_CLEAR_LEN..len]);
                buf[len..len + 4].copy_from_slice(&word);
                let tag = hmac_sha1(auth, &buf[..len + 4], &[]);
                if let Some(mki) = self.mki {
                    buf[len + 4..len + 4 + mki_len].copy_from_slice(mki.as_bytes());
                }
                buf[len + 4 + mki_len..out_len].copy_from_slice(&tag[..tag_len]);
            }
            SessionKeys::Gcm { aead, salt } => {
                //= https://www.rfc-editor.org/rfc/rfc7714#section-9.1
                //# header (8) | ciphertext | tag (16) | E | SRTCP index | MKI
                let iv = gcm_rtcp_iv(salt, h.ssrc, index);
                let mut aad = [0u8; RTCP_CLEAR_LEN + 4];
                aad[..RTCP_CLEAR_LEN].copy_from_slice(&buf[..RTCP_CLEAR_LEN]);
                aad[RTCP_CLEAR_LEN..].copy_from_slice(&word);
                let tag: Tag = aead
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(aad),
                        &mut buf[RTCP_CLEAR_LEN..len],
                    )
                    .map_err(|_| SrtpError::BufferTooSmall)?;
                buf[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                buf[len + GCM_TAG_LEN..len + GCM_TAG_LEN + 4].copy_from_slice(&word);
                if let Some(mki) = self.mki {
                    buf[len + GCM_TAG_LEN + 4..out_len].copy_from_slice(mki.as_bytes());
                }
            }
        }
        self.touch(i);
        self.streams[i].rtcp.send_index = index + 1;
        Ok(out_len)
    }

    /// Authenticates and (when E = 1) decrypts the SRTCP packet `buf[..len]`
    /// in place and returns the RTCP packet length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtcp_tag_len();
        let mki_len = self.mki_len();
        let pkt = buf.get_mut(..len).ok_or(SrtpError::BufferTooSmall)?;
        let rtcp_len = len
            .checked_sub(4 + tag_len + mki_len)
            .filter(|n| *n >= RTCP_CLEAR_LEN)
            .ok_or(SrtpError::Malformed(Malformed::TooShort))?;
        let h = RtcpHeader::parse(&pkt[..rtcp_len])?;
        let aead = self.profile.is_aead();
        // Where the E|index word and the MKI sit differs between the suites.
        let (word_at, mki_at) = if aead {
            (rtcp_len + GCM_TAG_LEN, rtcp_len + GCM_TAG_LEN + 4)
        } else {
            (rtcp_len, rtcp_len + 4)
        };
        if let Some(mki) = self.mki
            && pkt[mki_at..mki_at + mki_len] != *mki.as_bytes()
        {
            return Err(SrtpError::UnknownMki);
        }
        if self.packets_left == 0 {
            return Err(SrtpError::KeyExpired);
        }
        let word = u32::from_be_bytes([
            pkt[word_at],
            pkt[word_at + 1],
            pkt[word_at + 2],
            pkt[word_at + 3],
        ]);
        let encrypted = word & SRTCP_E_FLAG != 0;
        let index = word & SRTCP_INDEX_MASK;
        let fp = if aead {
            fingerprint(&pkt[rtcp_len..rtcp_len + GCM_TAG_LEN])
        } else {
            let tag_at = mki_at + mki_len;
            fingerprint(&pkt[tag_at..tag_at + tag_len])
        };

        // Refuse what the window refuses before any crypto, unless a
        // restart is allowed (then judged after authentication).
        let known = self.find(h.ssrc);
        let armed = self.restart_budget > 0;
        let state = match known.map(|i| &self.streams[i].rtcp) {
            Some(st) if st.seen => {
                let delta = i64::from(index) - i64::from(st.highest);
                let fresh = st.replay.check(delta) == ReplayCheck::Fresh;
                let may_restart = armed && st.restart;
                if !fresh && !may_restart {
                    return Err(SrtpError::Replayed);
                }
                Some((delta, fresh))
            }
            _ => None,
        };

        match &self.rtcp {
            SessionKeys::Cm { aes, salt, auth } => {
                let tag_at = mki_at + mki_len;
                let mac = hmac_sha1(auth, &pkt[..rtcp_len + 4], &[]);
                if !tags_equal(&mac[..tag_len], &pkt[tag_at..tag_at + tag_len]) {
                    return Err(SrtpError::AuthenticationFailed);
                }
                if encrypted {
                    let iv = cm_iv(salt, h.ssrc, u64::from(index));
                    aes.apply(&iv, &mut pkt[RTCP_CLEAR_LEN..rtcp_len]);
                }
            }
            SessionKeys::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, h.ssrc, index);
                if !encrypted {
                    //= https://www.rfc-editor.org/rfc/rfc7714#section-9.2
                    //# the entire RTCP packet and the ESRTCP word are the AAD,
                    //# the plaintext is empty.
                    // The tag sits between the two: move the word next to
                    // the packet so that the AAD is contiguous.
                    let mut tag = [0u8; GCM_TAG_LEN];
                    tag.copy_from_slice(&pkt[rtcp_len..rtcp_len + GCM_TAG_LEN]);
                    pkt[rtcp_len..rtcp_len + 4].copy_from_slice(&word.to_be_bytes());
                    let (aad, rest) = pkt.split_at_mut(rtcp_len + 4);
                    aead.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&*aad),
                        Tag::from(tag),
                        &mut rest[..0],
                        0..,
                    )
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
                    return self
                        .commit_rtcp(known, h.ssrc, index, state, fp)
                        .map(|()| rtcp_len);
                }
                let mut aad = [0u8; RTCP_CLEAR_LEN + 4];
                aad[..RTCP_CLEAR_LEN].copy_from_slice(&pkt[..RTCP_CLEAR_LEN]);
                aad[RTCP_CLEAR_LEN..].copy_from_slice(&word.to_be_bytes());
                aead.open_in_place(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(aad),
                    &mut pkt[RTCP_CLEAR_LEN..rtcp_len + GCM_TAG_LEN],
                )
                .map_err(|_| SrtpError::AuthenticationFailed)?;
            }
        }
        self.commit_rtcp(known, h.ssrc, index, state, fp)?;
        Ok(rtcp_len)
    }

    /// Takes an authenticated SRTCP packet into its stream; `state` is the
    /// window's view before authentication (`None`: first packet).
    fn commit_rtcp(
        &mut self,
        known: Option<usize>,
        ssrc: u32,
        index: u32,
        state: Option<(i64, bool)>,
        fp: u32,
    ) -> Result<(), SrtpError> {
        let i64_index = u64::from(index);
        let take = match (known.map(|i| &self.streams[i].rtcp), state) {
            (Some(st), Some((delta, true))) => {
                if st.history.retired_replay(i64_index, fp) {
                    return Err(SrtpError::Replayed);
                }
                Take::Normal(delta)
            }
            (Some(st), Some((_, false))) => {
                // Only reachable while a restart is allowed.
                if st.is_replay(index, fp) {
                    return Err(SrtpError::Replayed);
                }
                Take::Restart
            }
            (Some(st), None) => {
                if st.is_replay(index, fp) {
                    return Err(SrtpError::Replayed);
                }
                Take::First
            }
            (None, _) => {
                if self.forgotten.iter().any(|t| {
                    t.ssrc == ssrc
                        && t.rtcp
                            .is_some_and(|(lo, hi)| lo <= i64_index && i64_index <= hi)
                }) {
                    return Err(SrtpError::Replayed);
                }
                Take::First
            }
        };
        let i = match known {
            Some(i) => i,
            None => self.stream_or_insert(ssrc, true)?,
        };
        self.packets_left -= 1;
        self.touch(i);
        let jump = self.config.replay_window as i64;
        let st = &mut self.streams[i].rtcp;
        let take = match take {
            Take::Normal(d) if d > jump => Take::Jump,
            t => t,
        };
        match take {
            Take::Normal(d) => {
                st.replay.accept(d);
                if d > 0 {
                    st.highest = index;
                }
                st.first = st.first.min(index);
            }
            Take::First | Take::Restart | Take::Jump => {
                if st.seen {
                    st.history
                        .retire(u64::from(st.first), u64::from(st.highest));
                }
                st.seen = true;
                st.first = index;
                st.highest = index;
                st.replay.reset();
                if matches!(take, Take::Restart) {
                    st.restart = false;
                }
            }
        }
        st.history.record(i64_index, fp);
        Ok(())
    }
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("mki", &self.mki)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}
