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
    pair.set_leg(Instant::now(), Side::A, LegSpec::plain(Some(addr(A_PEER))));
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
    // Peer behind NAT (configured so): its real source differs from the SDP
    // address; it is the address its signaling came from.
    pair.set_leg(
        Instant::now(),
        Side::A,
        LegSpec::plain(Some(addr(A_PEER)))
            .with_source(SourceFilter::PeerAddress("203.0.113.5".parse().unwrap())),
    );
    let mut pa = plain_peer();
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
    let a_ip: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::plain(Some(addr(A_PEER)))
            .with_latching(Latching::Follow)
            .with_source(SourceFilter::PeerAddress(a_ip)),
    );
    pair.set_leg(
        now,
        Side::B,
        LegSpec::plain(Some(addr(B_PEER))).with_latching(Latching::Off),
    );
    let mut p = plain_peer();
    send(&mut pair, &mut p, Side::A, "192.0.2.10:1", &rtp(1, 1, b"a"));
    let (act, _) = send(&mut pair, &mut p, Side::A, "192.0.2.10:2", &rtp(1, 2, b"a"));
    assert!(
        matches!(act, Action::Forward { .. }),
        "follow accepts a new port of the peer's address"
    );
    assert_eq!(pair.stats(Side::A).latched, Some(addr("192.0.2.10:2")));
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.2:2",
        &rtp(1, 3, b"a"),
    );
    assert_eq!(
        act,
        Action::Drop(DropReason::WrongSource),
        "never another IP"
    );
    // Off: B never latches, takes only its signalled address, and A's
    // packets keep going to B's SDP address.
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::B,
        "203.0.113.9:9",
        &rtp(2, 1, b"b"),
    );
    assert_eq!(act, Action::Drop(DropReason::UnsignalledSource));
    send(&mut pair, &mut p, Side::B, B_PEER, &rtp(2, 2, b"b"));
    let (act, _) = send(&mut pair, &mut p, Side::A, "192.0.2.10:2", &rtp(1, 4, b"a"));
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

fn at(pair: &mut LegPair, t: Instant, side: Side, src: &str, pkt: &[u8]) -> Action {
    let mut buf = pkt.to_vec();
    buf.resize(pkt.len() + 64, 0);
    pair.handle_packet(t, side, PacketKind::Rtp, addr(src), &mut buf, pkt.len())
}

#[test]
fn a_silent_leg_ends_the_call_once_and_the_pair_keeps_relaying() {
    let mut pair = LegPair::new(SessionConfig::default());
    let t0 = Instant::now();
    pair.set_leg(t0, Side::A, LegSpec::plain(Some(addr(A_PEER))));
    pair.set_leg(t0, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    assert_eq!(pair.poll_timeout(t0 + Duration::from_secs(10)), None);
    // A talks on; B (the callee) went silent.
    for s in 0..70u64 {
        at(
            &mut pair,
            t0 + Duration::from_secs(s),
            Side::A,
            A_PEER,
            &rtp(1, s as u16, b"a"),
        );
        if s < 59 {
            assert_eq!(pair.poll_timeout(t0 + Duration::from_secs(s)), None, "{s}");
        }
    }
    let ev = pair.poll_timeout(t0 + Duration::from_secs(60)).unwrap();
    assert_eq!(ev.side, Side::B);
    assert!(!ev.on_hold);
    assert_eq!(
        pair.poll_timeout(t0 + Duration::from_secs(61)),
        None,
        "once"
    );
    // The pair still relays after the report.
    at(
        &mut pair,
        t0 + Duration::from_secs(62),
        Side::B,
        B_PEER,
        &rtp(2, 1, b"b"),
    );
    assert_eq!(pair.stats(Side::B).rtp_in, 1);
}

#[test]
fn ringing_calls_and_held_calls_have_their_own_timeouts() {
    let mut pair = LegPair::new(SessionConfig::default());
    let t0 = Instant::now();
    // Only the caller's leg is set (ringing): no timeout however long.
    pair.set_leg(t0, Side::A, LegSpec::plain(Some(addr(A_PEER))));
    assert_eq!(pair.poll_timeout(t0 + Duration::from_secs(600)), None);
    // Answered at 600 s, then on hold: B says recvonly (A sendonly).
    let t1 = t0 + Duration::from_secs(600);
    pair.set_leg(
        t1,
        Side::A,
        LegSpec::plain(Some(addr(A_PEER))).with_direction(true, true),
    );
    pair.set_leg(
        t1,
        Side::B,
        LegSpec::plain(Some(addr(B_PEER))).with_direction(false, true),
    );
    assert_eq!(pair.poll_timeout(t1 + Duration::from_secs(600)), None);
    let ev = pair.poll_timeout(t1 + Duration::from_secs(3600)).unwrap();
    assert!(ev.on_hold);
    assert_eq!(ev.side, Side::A, "the holder said it sends");
    // Both inactive: the pair's last packet counts, with the hold timeout.
    let mut pair = LegPair::new(SessionConfig::default());
    let inactive = |r| LegSpec::plain(Some(addr(r))).with_direction(false, true);
    pair.set_leg(t0, Side::A, inactive(A_PEER));
    pair.set_leg(t0, Side::B, inactive(B_PEER));
    at(
        &mut pair,
        t0 + Duration::from_secs(100),
        Side::B,
        B_PEER,
        &rtp(2, 1, b"b"),
    );
    assert_eq!(pair.poll_timeout(t0 + Duration::from_secs(3600)), None);
    assert!(pair.poll_timeout(t0 + Duration::from_secs(3700)).is_some());
}

#[test]
fn failed_authentication_never_keeps_a_call_alive_nor_ends_it() {
    let (ka, _pa) = keys();
    let mut pair = LegPair::new(SessionConfig::default());
    let t0 = Instant::now();
    pair.set_leg(t0, Side::A, LegSpec::srtp(Some(addr(A_PEER)), ka));
    pair.set_leg(t0, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    let mut forged = rtp(1, 1, &[0u8; 40]);
    forged.extend_from_slice(&[0u8; 10]);
    for s in 0..120u64 {
        let t = t0 + Duration::from_secs(s);
        assert_eq!(
            at(&mut pair, t, Side::A, A_PEER, &forged),
            Action::Drop(DropReason::SrtpAuth)
        );
        at(&mut pair, t, Side::B, B_PEER, &rtp(2, s as u16, b"b"));
        if s < 60 {
            assert_eq!(pair.poll_timeout(t), None);
        }
    }
    // Forged packets did not count as A's media: A is dead after 60 s.
    let ev = pair.poll_timeout(t0 + Duration::from_secs(120)).unwrap();
    assert_eq!(ev.side, Side::A);
}

#[test]
fn a_stranger_cannot_take_a_plain_leg_before_it_latches() {
    let mut pair = pair_with(None, None);
    let mut p = plain_peer();
    // The stranger speaks first, to the far-facing leg B.
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::B,
        "203.0.113.66:9",
        &rtp(9, 1, b"evil"),
    );
    assert_eq!(act, Action::Drop(DropReason::UnsignalledSource));
    // Same IP as the peer, other port: still a stranger by default.
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::B,
        "198.51.100.20:5002",
        &rtp(9, 2, b"x"),
    );
    assert_eq!(act, Action::Drop(DropReason::UnsignalledSource));
    assert_eq!(pair.stats(Side::B).latched, None);
    // A's audio still goes to B's signalled address, not to the stranger.
    let (act, _) = send(&mut pair, &mut p, Side::A, A_PEER, &rtp(1, 1, b"hello"));
    assert!(matches!(act, Action::Forward { to, .. } if to == addr(B_PEER)));
    // The real B latches.
    let (act, _) = send(&mut pair, &mut p, Side::B, B_PEER, &rtp(2, 1, b"hi"));
    assert!(matches!(act, Action::Forward { to, .. } if to == addr(A_PEER)));
    assert_eq!(pair.stats(Side::B).latched, Some(addr(B_PEER)));
    assert_eq!(
        pair.stats(Side::B).dropped(DropReason::UnsignalledSource),
        2
    );
}

#[test]
fn rtcp_is_accepted_from_the_signalled_rtcp_address_only() {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::plain(Some(addr(A_PEER))).with_remote_rtcp(Some(addr("192.0.2.10:4100"))),
    );
    pair.set_leg(now, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    let rtcp = |pair: &mut LegPair, src: &str| {
        let mut buf = rr(1, 0);
        buf.resize(200, 0);
        pair.handle_packet(now, Side::A, PacketKind::Rtcp, addr(src), &mut buf, 32)
    };
    assert_eq!(
        rtcp(&mut pair, "192.0.2.10:4001"),
        Action::Drop(DropReason::UnsignalledSource)
    );
    assert!(matches!(
        rtcp(&mut pair, "192.0.2.10:4100"),
        Action::Forward { .. }
    ));
}

#[test]
fn nat_peers_may_send_from_their_signalling_address() {
    let mut pair = LegPair::new(SessionConfig::default());
    let now = Instant::now();
    // The SDP names a private address; media comes from the NAT's public
    // IP, which is where the peer's signaling came from.
    let nat: std::net::IpAddr = "203.0.113.5".parse().unwrap();
    pair.set_leg(
        now,
        Side::A,
        LegSpec::plain(Some(addr("10.0.0.5:4000")))
            .with_source(SourceFilter::PeerAddress(nat))
            .with_latching(Latching::Follow),
    );
    pair.set_leg(now, Side::B, LegSpec::plain(Some(addr(B_PEER))));
    let mut p = plain_peer();
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "198.18.0.1:4000",
        &rtp(1, 1, b"x"),
    );
    assert_eq!(act, Action::Drop(DropReason::UnsignalledSource), "other IP");
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.5:61000",
        &rtp(1, 2, b"x"),
    );
    assert!(matches!(act, Action::Forward { .. }));
    // B's answer goes to the latched (public) address.
    let (act, _) = send(&mut pair, &mut p, Side::B, B_PEER, &rtp(2, 1, b"y"));
    assert!(matches!(act, Action::Forward { to, .. } if to == addr("203.0.113.5:61000")));
    // Follow: the NAT binding moves to another port of the same IP.
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "203.0.113.5:61002",
        &rtp(1, 3, b"x"),
    );
    assert!(matches!(act, Action::Forward { .. }));
    assert_eq!(pair.stats(Side::A).latched, Some(addr("203.0.113.5:61002")));
    // ...but never to another IP.
    let (act, _) = send(
        &mut pair,
        &mut p,
        Side::A,
        "198.18.0.1:61002",
        &rtp(1, 4, b"x"),
    );
    assert_eq!(act, Action::Drop(DropReason::WrongSource));
}

#[test]
fn stun_is_counted_apart_from_malformed() {
    let mut pair = pair_with(None, None);
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    for src in [A_PEER, "203.0.113.66:9"] {
        let (act, _) = send(&mut pair, &mut plain_peer(), Side::A, src, &stun);
        assert_eq!(act, Action::Drop(DropReason::Stun));
    }
    assert_eq!(pair.stats(Side::A).dropped(DropReason::Stun), 2);
    assert_eq!(pair.stats(Side::A).dropped(DropReason::Malformed), 0);
}

#[test]
fn a_plain_sender_restarting_its_sequence_keeps_reaching_an_srtp_leg() {
    let (kb, mut pb) = keys();
    let mut pair = pair_with(None, Some(kb));
    let mut p = plain_peer();
    let mut out = Vec::new();
    // 50 packets from 20 000, then the same SSRC restarts at 10 (lower),
    // repeats one packet, and jumps ahead.
    let seqs: Vec<u16> = (20_000..20_050)
        .chain(10..60)
        .chain([59])
        .chain(30_000..30_010)
        .collect();
    for s in &seqs {
        let (act, wire) = send(&mut pair, &mut p, Side::A, A_PEER, &rtp(5, *s, b"audio"));
        assert!(matches!(act, Action::Forward { .. }), "seq {s}: {act:?}");
        let plain = open(&mut pb, &wire);
        out.push(u16::from_be_bytes([plain[2], plain[3]]));
    }
    // The SRTP peer sees one sequence going on from where it was: the
    // restart continues at 20 050, the repeat takes the next number, and
    // the jump ahead keeps its distance.
    assert_eq!(out[..100], (20_000..20_100).collect::<Vec<_>>()[..]);
    assert_eq!(out[100], 20_100, "the repeated packet");
    assert_eq!(out[101], 30_000 + 20_100 - 59);
}

#[test]
fn the_restart_window_closes_in_time() {
    let (ka, mut pa) = keys();
    let mut pair = pair_with(Some(ka.clone()), None);
    let t0 = Instant::now();
    // The peer talks, then a same-key re-INVITE arms the restart window.
    let mut buf = vec![0u8; 2048];
    let mut sendp = |pair: &mut LegPair, peer: &mut Peer, t: Instant, seq: u16| {
        let pkt = rtp(1, seq, b"x");
        buf[..pkt.len()].copy_from_slice(&pkt);
        let n = peer
            .tx
            .as_mut()
            .unwrap()
            .protect_rtp(&mut buf, pkt.len())
            .unwrap();
        pair.handle_packet(t, Side::A, PacketKind::Rtp, addr(A_PEER), &mut buf, n)
    };
    for s in 30_000..30_010 {
        assert!(matches!(
            sendp(&mut pair, &mut pa, t0, s),
            Action::Forward { .. }
        ));
    }
    pair.set_leg(t0, Side::A, LegSpec::srtp(Some(addr(A_PEER)), ka.clone()));
    // 31 s later the phone restarts lower with a fresh context: too late.
    let mut fresh = Peer {
        tx: Some(SrtpContext::new(&ka.rx, SrtpConfig::default())),
        rx: None,
    };
    let late = t0 + Duration::from_secs(31);
    assert_eq!(
        sendp(&mut pair, &mut fresh, late, 100),
        Action::Drop(DropReason::SrtpReplay)
    );
    // Within the window it recovers at once.
    pair.set_leg(late, Side::A, LegSpec::srtp(Some(addr(A_PEER)), ka));
    assert!(matches!(
        sendp(&mut pair, &mut fresh, late, 101),
        Action::Forward { .. }
    ));
}
