//! Sans-IO tests of the leg model: latching, strict source, transform
//! selection, SSRC change, re-keying, RTCP, stats, idle reports.

// Tests take one real instant as an arbitrary origin; time itself is injected.
#![allow(clippy::disallowed_methods)]

use super::*;
use crate::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use std::time::{Duration, Instant};

const P: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rr(ssrc: u32, lost: u8) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[
        0, 0, 0, 9, 32, 0, 0, lost, 0, 0, 0, 50, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p
}

struct Peer {
    /// Encrypts what this peer sends (the leg's rx key).
    tx: Option<SrtpContext>,
    /// Decrypts what the relay sends this peer (the leg's tx key).
    rx: Option<SrtpContext>,
}

fn keys() -> (LegKeys, Peer) {
    let rx = MasterKey::generate(P).unwrap();
    let tx = MasterKey::generate(P).unwrap();
    let peer = Peer {
        tx: Some(SrtpContext::new(&rx, SrtpConfig::default())),
        rx: Some(SrtpContext::new(&tx, SrtpConfig::default())),
    };
    (LegKeys { rx, tx }, peer)
}

fn plain_peer() -> Peer {
    Peer { tx: None, rx: None }
}

/// Sends `pkt` from `peer` (encrypting if it is an SRTP peer) through the
/// pair on `side`; returns the action and the bytes as they leave.
fn send(
    pair: &mut LegPair,
    peer: &mut Peer,
    side: Side,
    src: &str,
    pkt: &[u8],
) -> (Action, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..pkt.len()].copy_from_slice(pkt);
    let mut len = pkt.len();
    if let Some(ctx) = peer.tx.as_mut() {
        len = ctx.protect_rtp(&mut buf, len).unwrap();
    }
    let now = Instant::now();
    let act = pair.handle_packet(now, side, PacketKind::Rtp, addr(src), &mut buf, len);
    let out = match act {
        Action::Forward { len, .. } => buf[..len].to_vec(),
        Action::Drop(_) => vec![],
    };
    (act, out)
}

fn open(peer: &mut Peer, wire: &[u8]) -> Vec<u8> {
    let mut b = wire.to_vec();
    match peer.rx.as_mut() {
        Some(ctx) => {
            let n = ctx.unprotect_rtp(&mut b, wire.len()).unwrap();
            b.truncate(n);
            b
        }
        None => b,
    }
}

const A_PEER: &str = "192.0.2.10:4000";
const B_PEER: &str = "198.51.100.20:5000";

fn pair_with(a: Option<LegKeys>, b: Option<LegKeys>) -> LegPair {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    let spec = |k: Option<LegKeys>, r: &str| match k {
        Some(k) => LegSpec::srtp(Some(addr(r)), k),
        None => LegSpec::plain(Some(addr(r))),
    };
    pair.set_leg(now, Side::A, spec(a, A_PEER));
    pair.set_leg(now, Side::B, spec(b, B_PEER));
    pair
}

#[test]
fn transform_is_chosen_at_setup_for_each_combination() {
    let (ka, _) = keys();
    let (kb, _) = keys();
    for (a, b, ab, ba) in [
        (None, None, Transform::Forward, Transform::Forward),
        (
            Some(ka.clone()),
            None,
            Transform::Decrypt,
            Transform::Encrypt,
        ),
        (
            None,
            Some(kb.clone()),
            Transform::Encrypt,
            Transform::Decrypt,
        ),
        (
            Some(ka.clone()),
            Some(kb.clone()),
            Transform::Recrypt,
            Transform::Recrypt,
        ),
    ] {
        let pair = pair_with(a, b);
        assert_eq!(pair.transform(Side::A), Some(ab));
        assert_eq!(pair.transform(Side::B), Some(ba));
    }
    assert_eq!(
        LegPair::new(SessionConfig::default()).transform(Side::A),
        None
    );
}

#[test]
fn not_ready_until_both_legs_are_set() {
    let mut pair = LegPair::new(SessionConfig::default());
    let (act, _) = send(
        &mut pair,
        &mut plain_peer(),
        Side::A,
        A_PEER,
        &rtp(1, 1, b"x"),
    );
    assert_eq!(act, Action::Drop(DropReason::NotReady));
    pair.set_leg(Instant::now(), Side::A, LegSpec::plain(None));
    let (act, _) = send(
        &mut pair,
        &mut plain_peer(),
        Side::A,
        A_PEER,
        &rtp(1, 2, b"x"),
    );
    assert_eq!(act, Action::Drop(DropReason::NotReady));
    assert_eq!(pair.stats(Side::A).dropped(DropReason::NotReady), 2);
}

#[test]
fn plain_to_srtp_and_back() {
    let (kb, mut pb) = keys();
    let mut pair = pair_with(None, Some(kb));
    let mut pa = plain_peer();
    let pkt = rtp(0x11, 7, b"hello from A");
    let (act, wire) = send(&mut pair, &mut pa, Side::A, A_PEER, &pkt);
    let Action::Forward { leg, via, to, len } = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        (leg, via, to, len),
        (Side::B, PacketKind::Rtp, addr(B_PEER), pkt.len() + 10)
    );
    assert_ne!(&wire[12..pkt.len()], &pkt[12..], "B leg carries SRTP");
    assert_eq!(
        open(&mut pb, &wire),
        pkt,
        "B's peer decrypts with the leg's tx key"
    );

    let back = rtp(0x22, 1, b"hello from B");
    let (act, wire) = send(&mut pair, &mut pb, Side::B, B_PEER, &back);
    assert!(matches!(act, Action::Forward { leg: Side::A, to, .. } if to == addr(A_PEER)));
    assert_eq!(wire, back, "A leg is plain");
    let s = pair.stats(Side::B);
    assert_eq!((s.rtp_in, s.rtp_out), (1, 1));
}

#[test]
fn srtp_to_srtp_uses_different_keys_per_leg() {
    let (ka, mut pa) = keys();
    let (kb, mut pb) = keys();
    let mut pair = pair_with(Some(ka), Some(kb));
    let pkt = rtp(5, 100, &[0x42; 160]);
    let (_, wire) = send(&mut pair, &mut pa, Side::A, A_PEER, &pkt);
    assert_eq!(open(&mut pb, &wire), pkt);
    // A's peer cannot read what goes to B: its key is not B's.
    let mut stranger = SrtpContext::new(&MasterKey::generate(P).unwrap(), SrtpConfig::default());
    let mut w = wire.clone();
    assert!(stranger.unprotect_rtp(&mut w, wire.len()).is_err());
}

#[test]
fn strict_latching_drops_other_sources() {
    let mut pair = pair_with(None, None);
    let mut pa = plain_peer();
    // Peer behind NAT: its real source differs from the SDP address.
    let nat = "203.0.113.5:61000";
    let (act, _) = send(&mut pair, &mut pa, Side::A, nat, &rtp(1, 1, b"a"));
    assert!(matches!(act, Action::Forward { .. }));
    assert_eq!(pair.stats(Side::A).latched, Some(addr(nat)));
    // Traffic to A now goes to the latched address, not the SDP one.
    let (act, _) = send(
        &mut pair,
        &mut plain_peer(),
        Side::B,
        B_PEER,
        &rtp(2, 1, b"b"),
    );
    assert!(matches!(act, Action::Forward { to, .. } if to == addr(nat)));
    // An injector from elsewhere is dropped and counted (RTP inject).
    let (act, _) = send(
        &mut pair,
        &mut pa,
        Side::A,
        "203.0.113.66:1234",
        &rtp(1, 2, b"evil"),
    );
    assert_eq!(act, Action::Drop(DropReason::WrongSource));
    assert_eq!(pair.stats(Side::A).dropped(DropReason::WrongSource), 1);
}

#[test]
fn follow_and_off_latching_for_plain_legs() {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::plain(Some(addr(A_PEER))).with_latching(Latching::Follow),
    );
    pair.set_leg(
        now,
        Side::B,
        LegSpec::plain(Some(addr(B_PEER))).with_latching(Latching::Off),
    );
    let mut p = plain_peer();
    send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.1:1",
        &rtp(1, 1, b"a"),
    );
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.2:2",
        &rtp(1, 2, b"a"),
    );
    assert!(
        matches!(act, Action::Forward { .. }),
        "follow accepts the new source"
    );
    assert_eq!(pair.stats(Side::A).latched, Some(addr("203.0.113.2:2")));
    // Off: B never latches and A's packets keep going to B's SDP address.
    send(
        &mut pair,
        &mut p,
        Side::B,
        "203.0.113.9:9",
        &rtp(2, 1, b"b"),
    );
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.2:2",
        &rtp(1, 3, b"a"),
    );
    assert!(matches!(act, Action::Forward { to, .. } if to == addr(B_PEER)));
}

#[test]
fn srtp_leg_latches_only_after_authentication() {
    let (ka, mut pa) = keys();
    let mut pair = pair_with(Some(ka), None);
    // An attacker races the real peer with a forged packet: it does not
    // authenticate, so it neither passes nor latches.
    let mut forger = plain_peer();
    let mut forged = rtp(1, 1, &[0u8; 40]);
    forged.extend_from_slice(&[0u8; 10]);
    let (act, _) = send(
        &mut pair,
        &mut forger,
        Side::A,
        "203.0.113.66:6666",
        &forged,
    );
    assert_eq!(act, Action::Drop(DropReason::SrtpAuth));
    assert_eq!(pair.stats(Side::A).latched, None);
    // The real peer latches.
    let (act, _) = send(&mut pair, &mut pa, Side::A, A_PEER, &rtp(1, 1, b"real"));
    assert!(matches!(act, Action::Forward { .. }));
    assert_eq!(pair.stats(Side::A).latched, Some(addr(A_PEER)));
    // A valid SRTP packet replayed from another source is still refused
    // (strict even though it would authenticate).
    let (act, _) = send(
        &mut pair,
        &mut pa,
        Side::A,
        "203.0.113.66:6666",
        &rtp(1, 2, b"real"),
    );
    assert_eq!(act, Action::Drop(DropReason::WrongSource));
}

#[test]
fn srtp_legs_stay_strict_even_when_asked_to_follow() {
    let (ka, mut pa) = keys();
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::srtp(Some(addr(A_PEER)), ka).with_latching(Latching::Follow),
    );
    pair.set_leg(now, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    let (act, _) = send(&mut pair, &mut pa, Side::A, A_PEER, &rtp(1, 1, b"one"));
    assert!(matches!(act, Action::Forward { .. }));
    // A genuine, authenticating packet from a new source is still refused.
    let (act, _) = send(
        &mut pair,
        &mut pa,
        Side::A,
        "203.0.113.7:7",
        &rtp(1, 2, b"two"),
    );
    assert_eq!(act, Action::Drop(DropReason::WrongSource));
    assert_eq!(pair.stats(Side::A).latched, Some(addr(A_PEER)));
}

#[test]
fn ssrc_change_is_counted_and_handled() {
    let (ka, mut pa) = keys();
    let (kb, mut pb) = keys();
    let mut pair = pair_with(Some(ka), Some(kb));
    for s in 0..3 {
        let (_, w) = send(&mut pair, &mut pa, Side::A, A_PEER, &rtp(0xaaaa, s, b"one"));
        assert_eq!(open(&mut pb, &w), rtp(0xaaaa, s, b"one"));
    }
    // The caller's phone switches SSRC (and restarts its sequence).
    for s in 0..3 {
        let (act, w) = send(
            &mut pair,
            &mut pa,
            Side::A,
            A_PEER,
            &rtp(0xbbbb, 5000 + s, b"two"),
        );
        assert!(matches!(act, Action::Forward { .. }), "{act:?}");
        assert_eq!(open(&mut pb, &w), rtp(0xbbbb, 5000 + s, b"two"));
    }
    let st = pair.stats(Side::A);
    assert_eq!(st.ssrc, Some(0xbbbb));
    assert_eq!(st.ssrc_changes, 1);
}

#[test]
fn reinvite_with_same_key_keeps_state_and_tolerates_roc_reset() {
    let (ka, _) = keys();
    let mut pair = pair_with(Some(ka.clone()), None);
    let mut sender = SrtpContext::new(&ka.rx, SrtpConfig::default());
    let push = |pair: &mut LegPair, sender: &mut SrtpContext, seq: u16| {
        let mut buf = vec![0u8; 256];
        let p = rtp(9, seq, b"v");
        buf[..p.len()].copy_from_slice(&p);
        let n = sender.protect_rtp(&mut buf, p.len()).unwrap();
        pair.handle_packet(
            Instant::now(),
            Side::A,
            PacketKind::Rtp,
            addr(A_PEER),
            &mut buf,
            n,
        )
    };
    // Cross a wrap: the leg's context is at ROC 1.
    for s in 65_530..=65_535u16 {
        assert!(matches!(
            push(&mut pair, &mut sender, s),
            Action::Forward { .. }
        ));
    }
    assert!(matches!(
        push(&mut pair, &mut sender, 0),
        Action::Forward { .. }
    ));
    // Re-INVITE (hold/resume) keeping the same keys: context kept...
    pair.set_leg(
        Instant::now(),
        Side::A,
        LegSpec::srtp(Some(addr(A_PEER)), ka.clone()),
    );
    assert!(
        matches!(push(&mut pair, &mut sender, 1), Action::Forward { .. }),
        "state kept"
    );
    // ...and a peer that restarts its SRTP state (ROC 0) is tolerated.
    let mut restarted = SrtpContext::new(&ka.rx, SrtpConfig::default());
    assert!(
        matches!(push(&mut pair, &mut restarted, 300), Action::Forward { .. }),
        "ROC reset tolerated"
    );

    // A re-INVITE with a new key starts fresh state: the old key no longer works.
    let (k2, _) = keys();
    pair.set_leg(
        Instant::now(),
        Side::A,
        LegSpec::srtp(Some(addr(A_PEER)), k2.clone()),
    );
    assert_eq!(
        push(&mut pair, &mut sender, 2),
        Action::Drop(DropReason::SrtpAuth)
    );
    let mut new_sender = SrtpContext::new(&k2.rx, SrtpConfig::default());
    assert!(matches!(
        push(&mut pair, &mut new_sender, 2),
        Action::Forward { .. }
    ));
}

#[test]
fn reinvite_to_a_new_address_relatches() {
    let mut pair = pair_with(None, None);
    let mut p = plain_peer();
    send(&mut pair, &mut p, Side::A, A_PEER, &rtp(1, 1, b"a"));
    pair.set_leg(
        Instant::now(),
        Side::A,
        LegSpec::plain(Some(addr("192.0.2.99:7000"))),
    );
    assert_eq!(pair.stats(Side::A).latched, None);
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "192.0.2.99:7000",
        &rtp(1, 2, b"a"),
    );
    assert!(matches!(act, Action::Forward { .. }));
}

#[test]
fn rtcp_is_relayed_reprotected_and_read_for_stats() {
    let (ka, mut pa) = keys();
    let (kb, mut pb) = keys();
    let mut pair = pair_with(Some(ka.clone()), Some(kb.clone()));
    let mut buf = vec![0u8; 256];
    let report = rr(0x77, 3);
    buf[..report.len()].copy_from_slice(&report);
    let n = pa
        .tx
        .as_mut()
        .unwrap()
        .protect_rtcp(&mut buf, report.len())
        .unwrap();
    let src = "192.0.2.10:4001";
    let act = pair.handle_packet(
        Instant::now(),
        Side::A,
        PacketKind::Rtcp,
        addr(src),
        &mut buf,
        n,
    );
    let Action::Forward { leg, via, to, len } = act else {
        panic!("{act:?}")
    };
    assert_eq!(
        (leg, via, to),
        (Side::B, PacketKind::Rtcp, addr("198.51.100.20:5001"))
    );
    let m = pb
        .rx
        .as_mut()
        .unwrap()
        .unprotect_rtcp(&mut buf, len)
        .unwrap();
    assert_eq!(&buf[..m], &report[..]);
    let st = pair.stats(Side::A);
    assert_eq!(st.rtcp_in, 1);
    let rb = st.peer_report.unwrap();
    assert_eq!(
        (rb.ssrc, rb.cumulative_lost, rb.jitter),
        (9, 3, 12),
        "block about SSRC 9 from reporter 0x77"
    );

    // A bad SRTCP packet is counted apart from SRTP and never forwarded.
    buf[..n].fill(0x81);
    let act = pair.handle_packet(
        Instant::now(),
        Side::A,
        PacketKind::Rtcp,
        addr(src),
        &mut buf,
        n,
    );
    assert_eq!(act, Action::Drop(DropReason::SrtcpAuth));
    let st = pair.stats(Side::A);
    assert_eq!(
        (
            st.dropped(DropReason::SrtcpAuth),
            st.dropped(DropReason::SrtpAuth)
        ),
        (1, 0)
    );
}

#[test]
fn rtcp_mux_demuxes_on_the_rtp_port() {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::plain(Some(addr(A_PEER))).with_rtcp_mux(true),
    );
    pair.set_leg(
        now,
        Side::B,
        LegSpec::plain(Some(addr(B_PEER))).with_rtcp_mux(true),
    );
    let mut buf = vec![0u8; 256];
    let report = rr(1, 0);
    buf[..report.len()].copy_from_slice(&report);
    let act = pair.handle_packet(
        now,
        Side::A,
        PacketKind::Rtp,
        addr(A_PEER),
        &mut buf,
        report.len(),
    );
    assert!(matches!(act, Action::Forward { via: PacketKind::Rtp, to, .. } if to == addr(B_PEER)));
    assert_eq!(pair.stats(Side::A).rtcp_in, 1);
}

#[test]
fn no_destination_and_malformed_are_counted() {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    pair.set_leg(now, Side::A, LegSpec::plain(Some(addr(A_PEER))));
    pair.set_leg(now, Side::B, LegSpec::plain(None)); // e.g. c=0.0.0.0 on hold
    let (act, _) = send(
        &mut pair,
        &mut plain_peer(),
        Side::A,
        A_PEER,
        &rtp(1, 1, b"a"),
    );
    assert_eq!(act, Action::Drop(DropReason::NoDestination));
    let (act, _) = send(&mut pair, &mut plain_peer(), Side::A, A_PEER, &[0x40, 0, 0]);
    assert_eq!(act, Action::Drop(DropReason::Malformed));
    let st = pair.stats(Side::A);
    assert_eq!(st.dropped_total(), 2);
}

#[test]
fn idle_leg_is_reported_once_and_kept() {
    let mut pair = pair_with(None, None);
    let t0 = Instant::now();
    pair.set_leg(t0, Side::A, LegSpec::plain(Some(addr(A_PEER))));
    pair.set_leg(t0, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    assert_eq!(pair.poll_idle(t0 + Duration::from_secs(10)), None);
    let mut buf = rtp(1, 1, b"a");
    buf.resize(100, 0);
    pair.handle_packet(
        t0 + Duration::from_secs(20),
        Side::A,
        PacketKind::Rtp,
        addr(A_PEER),
        &mut buf,
        13,
    );
    let ev = pair.poll_idle(t0 + Duration::from_secs(31)).unwrap();
    assert_eq!(ev.side, Side::B);
    assert_eq!(
        pair.poll_idle(t0 + Duration::from_secs(32)),
        None,
        "reported once"
    );
    let ev = pair.poll_idle(t0 + Duration::from_secs(51)).unwrap();
    assert_eq!(ev.side, Side::A);
    // The pair still relays after the report.
    pair.handle_packet(
        t0 + Duration::from_secs(52),
        Side::B,
        PacketKind::Rtp,
        addr(B_PEER),
        &mut buf,
        13,
    );
    assert_eq!(pair.stats(Side::B).rtp_in, 1);
}
