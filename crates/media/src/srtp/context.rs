//! [`SrtpContext`]: in-place protect/unprotect of SRTP and SRTCP for one
//! master key, with per-SSRC rollover counters and replay windows.

use ring::aead::{Aad, Nonce, Tag};

use super::cipher::{SessionKeys, cm_iv, gcm_rtcp_iv, gcm_rtp_iv, hmac_sha1, tags_equal};
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
    /// plus one per SSRC change).
    pub max_streams: usize,
}

impl Default for SrtpConfig {
    fn default() -> Self {
        Self {
            replay_window: DEFAULT_REPLAY_WINDOW,
            max_streams: 8,
        }
    }
}

/// Per-SSRC SRTP state.
#[derive(Clone, Debug)]
struct RtpState {
    /// Rollover counter of the highest index.
    roc: u32,
    /// Highest sequence number accepted (`s_l`), valid when `seen`.
    s_l: u16,
    /// Whether any packet was accepted yet; before that `roc` is the value
    /// set by [`SrtpContext::set_roc`] (or 0).
    seen: bool,
    replay: ReplayWindow,
}

/// Per-SSRC SRTCP state.
#[derive(Clone, Debug)]
struct RtcpState {
    /// Next index to send.
    send_index: u32,
    /// Highest index received, valid when `seen`.
    highest: u32,
    seen: bool,
    replay: ReplayWindow,
}

#[derive(Clone, Debug)]
struct Stream {
    ssrc: u32,
    last_used: u64,
    rtp: RtpState,
    rtcp: RtcpState,
}

impl Stream {
    fn new(ssrc: u32, window: usize) -> Self {
        Self {
            ssrc,
            last_used: 0,
            rtp: RtpState {
                roc: 0,
                s_l: 0,
                seen: false,
                replay: ReplayWindow::new(window),
            },
            // SRTCP indices start at 1, as libsrtp and webrtc-srtp count.
            rtcp: RtcpState {
                send_index: 1,
                highest: 0,
                seen: false,
                replay: ReplayWindow::new(window),
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
    /// Authenticated packets during which a rollover-counter reset is
    /// tolerated (R-MEDIA-6); 0 means not armed.
    roc_reset_budget: u32,
    /// Copy of a GCM packet while a ROC reset is tolerated, so a failed
    /// in-place open (which wipes the buffer) can be retried.
    scratch: Vec<u8>,
}

/// Largest packet for which a tolerated ROC reset is retried with GCM.
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
            roc_reset_budget: 0,
            scratch: Vec::new(),
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
            roc_reset_budget: 0,
            scratch: Vec::new(),
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
    /// The next packet of `ssrc` is then taken as the first one of the
    /// stream with this ROC; the replay window restarts.
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) {
        let i = self.stream_or_insert(ssrc);
        let st = &mut self.streams[i].rtp;
        st.roc = roc;
        st.seen = false;
    }

    /// Tolerates a peer that resets its rollover counter (or restarts its
    /// sequence numbers) under the same key, as some do after hold/resume
    /// (R-MEDIA-6). Call it when a re-INVITE keeps the key.
    ///
    /// For the next `packets` authenticated packets, a packet that fails
    /// authentication with the estimated ROC is retried with ROC 0 and the
    /// neighbours of the current ROC; on success the stream restarts from
    /// that packet. Outside this window nothing is retried, so old packets
    /// cannot be replayed by guessing another ROC.
    pub fn tolerate_roc_reset(&mut self, packets: u32) {
        self.roc_reset_budget = packets;
        if packets > 0 && self.profile.is_aead() && self.scratch.is_empty() {
            // Control-plane allocation, once per context.
            self.scratch = vec![0; SCRATCH_LEN];
        }
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

    fn stream_or_insert(&mut self, ssrc: u32) -> usize {
        if let Some(i) = self.find(ssrc) {
            return i;
        }
        let stream = Stream::new(ssrc, self.config.replay_window);
        let i = if self.streams.len() < self.config.max_streams {
            self.streams.push(stream);
            self.streams.len() - 1
        } else {
            // Forget the least recently used SSRC (a stream replaced after
            // an SSRC change); no allocation, the slot is reused.
            let (i, _) = self
                .streams
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_used)
                .unwrap_or((0, &self.streams[0]));
            self.streams[i] = stream;
            i
        };
        self.last = i;
        i
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
        let i = self.stream_or_insert(h.ssrc);
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

        self.commit_rtp(i, roc, h.sequence, delta);
        Ok(out_len)
    }

    fn commit_rtp(&mut self, i: usize, roc: u32, seq: u16, delta: i32) {
        self.touch(i);
        let st = &mut self.streams[i].rtp;
        if !st.seen {
            st.seen = true;
            st.roc = roc;
            st.s_l = seq;
            st.replay.reset();
        } else {
            st.replay.accept(i64::from(delta));
            if delta > 0 {
                st.roc = roc;
                st.s_l = seq;
            }
        }
    }

    /// Authenticates and decrypts the SRTP packet `buf[..len]` in place and
    /// returns the RTP packet length.
    ///
    /// On error nothing is committed: the packet must be dropped (and
    /// counted by the caller).
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        let mki_len = self.mki_len();
        let pkt = buf.get_mut(..len).ok_or(SrtpError::BufferTooSmall)?;
        let body_len = len
            .checked_sub(tag_len + mki_len)
            .ok_or(SrtpError::Malformed(Malformed::TooShort))?;
        let h = RtpHeader::parse(&pkt[..body_len])?;
        if let Some(mki) = self.mki {
            let at = if self.profile.is_aead() {
                body_len + tag_len
            } else {
                body_len
            };
            if pkt[at..at + mki_len] != *mki.as_bytes() {
                return Err(SrtpError::UnknownMki);
            }
        }
        if self.packets_left == 0 {
            return Err(SrtpError::KeyExpired);
        }

        // Estimate the index from the stream's state, without creating it.
        let known = self.find(h.ssrc);
        let (roc, delta, seen) = match known.map(|i| &self.streams[i].rtp) {
            Some(st) if st.seen => {
                let (v, delta) = estimate_index(st.roc, st.s_l, h.sequence);
                let check = if v == u32::MAX && st.roc == 0 {
                    ReplayCheck::TooOld
                } else {
                    st.replay.check(i64::from(delta))
                };
                if check != ReplayCheck::Fresh && self.roc_reset_budget == 0 {
                    return Err(SrtpError::Replayed);
                }
                (v, delta, true)
            }
            Some(st) => (st.roc, 0, false),
            None => (0, 0, false),
        };

        let retry = seen && self.roc_reset_budget > 0;
        let accepted = match self.open_rtp(pkt, &h, body_len, roc, retry) {
            Ok(())
                if known.is_some_and(|i| {
                    let st = &self.streams[i].rtp;
                    seen && st.replay.check(i64::from(delta)) != ReplayCheck::Fresh
                }) =>
            {
                // Only reachable while a ROC reset is tolerated: the packet
                // authenticated but is a replay under the current ROC.
                return Err(SrtpError::Replayed);
            }
            Ok(()) => None,
            Err(SrtpError::AuthenticationFailed) if retry => {
                let Some(i) = known else {
                    return Err(SrtpError::AuthenticationFailed);
                };
                let cur = self.streams[i].rtp.roc;
                let mut found = None;
                for cand in [0, cur, cur.wrapping_add(1), cur.wrapping_sub(1)] {
                    if cand == roc || found.is_some() {
                        continue;
                    }
                    if self.open_rtp(pkt, &h, body_len, cand, true).is_ok() {
                        found = Some(cand);
                    }
                }
                Some(found.ok_or(SrtpError::AuthenticationFailed)?)
            }
            Err(e) => return Err(e),
        };
        self.packets_left -= 1;

        let i = match known {
            Some(i) => i,
            None => self.stream_or_insert(h.ssrc),
        };
        match accepted {
            Some(new_roc) => {
                // The peer restarted its index space: start the stream over.
                self.streams[i].rtp.seen = false;
                self.commit_rtp(i, new_roc, h.sequence, 0);
                self.roc_reset_budget = 0;
            }
            None => {
                self.commit_rtp(i, roc, h.sequence, delta);
                self.roc_reset_budget = self.roc_reset_budget.saturating_sub(1);
            }
        }
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
        let i = self.stream_or_insert(h.ssrc);
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

        let known = self.find(h.ssrc);
        let delta = match known.map(|i| &self.streams[i].rtcp) {
            Some(st) if st.seen => {
                let delta = i64::from(index) - i64::from(st.highest);
                if st.replay.check(delta) != ReplayCheck::Fresh {
                    return Err(SrtpError::Replayed);
                }
                Some(delta)
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
                        .commit_rtcp(known, h.ssrc, index, delta)
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
        self.commit_rtcp(known, h.ssrc, index, delta)?;
        Ok(rtcp_len)
    }

    fn commit_rtcp(
        &mut self,
        known: Option<usize>,
        ssrc: u32,
        index: u32,
        delta: Option<i64>,
    ) -> Result<(), SrtpError> {
        self.packets_left -= 1;
        let i = match known {
            Some(i) => i,
            None => self.stream_or_insert(ssrc),
        };
        self.touch(i);
        let st = &mut self.streams[i].rtcp;
        match delta {
            Some(d) => {
                st.replay.accept(d);
                if d > 0 {
                    st.highest = index;
                }
            }
            None => {
                st.seen = true;
                st.highest = index;
                st.replay.reset();
            }
        }
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
