//! The relay over real UDP sockets on 127.0.0.1: plain↔plain, plain↔SRTP,
//! SRTP↔SRTP with different keys per leg, wrong-source and bad-tag packets
//! never come out, RTCP relayed, and libsrtp (pylibsrtp) decrypting what the
//! relay sends and producing what the relay accepts.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use base64::Engine as _;
use common::{libsrtp, rtcp_rr};
use mediagate_media::relay::{PairPorts, Relay, RelayConfig};
use mediagate_media::session::{DropReason, LegKeys, LegSpec, Side};
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use serde_json::json;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn relay() -> Relay {
    // A wide range: ports other processes hold are skipped.
    Relay::start(
        RelayConfig::new(LO)
            .with_ports(41_000, 44_999)
            .with_workers(2),
    )
    .unwrap()
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x08];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut b = [0u8; 2048];
    s.recv_from(&mut b).ok().map(|(n, a)| (b[..n].to_vec(), a))
}

fn keys(p: SrtpProfile) -> LegKeys {
    LegKeys {
        rx: MasterKey::generate(p).unwrap(),
        tx: MasterKey::generate(p).unwrap(),
    }
}

fn ctx(k: &MasterKey) -> SrtpContext {
    SrtpContext::new(k, SrtpConfig::default())
}

fn seal(c: &mut SrtpContext, pkt: &[u8]) -> Vec<u8> {
    let mut b = pkt.to_vec();
    b.resize(pkt.len() + 64, 0);
    let n = c.protect_rtp(&mut b, pkt.len()).unwrap();
    b.truncate(n);
    b
}

fn open(c: &mut SrtpContext, wire: &[u8]) -> Vec<u8> {
    let mut b = wire.to_vec();
    let n = c.unprotect_rtp(&mut b, wire.len()).unwrap();
    b.truncate(n);
    b
}

struct Call {
    ports: PairPorts,
    a: UdpSocket,
    b: UdpSocket,
}

fn call(r: &Relay, ka: Option<&LegKeys>, kb: Option<&LegKeys>) -> Call {
    let ports = r.allocate().unwrap();
    let (a, b) = (peer(), peer());
    let spec = |k: Option<&LegKeys>, s: &UdpSocket| match k {
        Some(k) => LegSpec::srtp(Some(s.local_addr().unwrap()), k.clone()),
        None => LegSpec::plain(Some(s.local_addr().unwrap())),
    };
    r.set_leg(ports.id, Side::A, spec(ka, &a)).unwrap();
    r.set_leg(ports.id, Side::B, spec(kb, &b)).unwrap();
    Call { ports, a, b }
}

#[test]
fn plain_to_plain_both_ways_with_rtcp() {
    let r = relay();
    let c = call(&r, None, None);
    for seq in 0..20u16 {
        let p = rtp(1, seq, &[seq as u8; 160]);
        c.a.send_to(&p, c.ports.a_rtp).unwrap();
        let (got, from) = recv(&c.b).expect("B receives A's packet");
        assert_eq!(got, p);
        assert_eq!(from, c.ports.b_rtp, "sent from leg B's own port");
        let q = rtp(2, seq, b"back");
        c.b.send_to(&q, c.ports.b_rtp).unwrap();
        assert_eq!(recv(&c.a).unwrap().0, q);
    }
    // RTCP from A's RTCP socket to leg A's RTCP port reaches B's RTCP port
    // (B's SDP port + 1).
    let b_rtcp = peer();
    let mut b_rtcp_addr = c.b.local_addr().unwrap();
    b_rtcp_addr.set_port(b_rtcp_addr.port() + 1);
    if b_rtcp.local_addr().unwrap() != b_rtcp_addr {
        // Cannot bind exactly SDP+1 in a shared test; instead signal it.
        let mut spec = LegSpec::plain(Some(c.b.local_addr().unwrap()));
        spec.remote_rtcp = Some(b_rtcp.local_addr().unwrap());
        r.set_leg(c.ports.id, Side::B, spec).unwrap();
    }
    // A sends its RTCP from its RTP socket: its SDP says so (a=rtcp), and
    // only a signalled address may send before the leg latches.
    let a_spec = LegSpec::plain(Some(c.a.local_addr().unwrap()))
        .with_remote_rtcp(Some(c.a.local_addr().unwrap()));
    r.set_leg(c.ports.id, Side::A, a_spec).unwrap();
    let mut a_rtcp_port = c.ports.a_rtp;
    a_rtcp_port.set_port(a_rtcp_port.port() + 1);
    let rr = rtcp_rr(1, 3);
    c.a.send_to(&rr, a_rtcp_port).unwrap();
    assert_eq!(recv(&b_rtcp).unwrap().0, rr);
    let [sa, sb] = r.stats(c.ports.id).unwrap().unwrap();
    assert_eq!(
        (sa.rtp_in, sa.rtcp_in, sb.rtp_out, sb.rtcp_out),
        (20, 1, 20, 1)
    );
    assert!(sa.peer_report.is_some());
    r.release(c.ports.id).unwrap();
}

#[test]
fn plain_to_srtp_and_srtp_to_plain() {
    for p in SrtpProfile::ALL {
        let r = relay();
        let kb = keys(p);
        let c = call(&r, None, Some(&kb));
        let mut b_rx = ctx(&kb.tx); // B's peer decrypts with the leg's tx key
        let mut b_tx = ctx(&kb.rx); // and encrypts with the leg's rx key
        for seq in 0..10u16 {
            let pkt = rtp(7, seq, &[0x55; 160]);
            c.a.send_to(&pkt, c.ports.a_rtp).unwrap();
            let (wire, _) = recv(&c.b).expect("B receives");
            assert_ne!(&wire[12..172], &pkt[12..], "{p}: B leg is encrypted");
            assert_eq!(open(&mut b_rx, &wire), pkt, "{p}");
            let back = rtp(8, seq, &[0x66; 160]);
            c.b.send_to(&seal(&mut b_tx, &back), c.ports.b_rtp).unwrap();
            assert_eq!(recv(&c.a).unwrap().0, back, "{p}: A leg is plain");
        }
    }
}

#[test]
fn srtp_to_srtp_different_keys_per_leg() {
    let r = relay();
    let (ka, kb) = (
        keys(SrtpProfile::AesCm128HmacSha1_80),
        keys(SrtpProfile::AeadAes128Gcm),
    );
    let c = call(&r, Some(&ka), Some(&kb));
    let mut a_tx = ctx(&ka.rx);
    let mut b_rx = ctx(&kb.tx);
    for seq in 0..10u16 {
        let pkt = rtp(9, seq, b"secret audio");
        let sent = seal(&mut a_tx, &pkt);
        c.a.send_to(&sent, c.ports.a_rtp).unwrap();
        let (wire, _) = recv(&c.b).unwrap();
        assert_ne!(wire, sent, "re-encrypted, not forwarded");
        assert_eq!(open(&mut b_rx, &wire), pkt);
    }
}

#[test]
fn wrong_source_and_bad_tags_never_come_out() {
    let r = relay();
    let ka = keys(SrtpProfile::AesCm128HmacSha1_80);
    let c = call(&r, Some(&ka), None);
    let attacker = peer();
    let mut a_tx = ctx(&ka.rx);

    // Before latching: a forged packet from the attacker neither passes nor latches.
    let mut forged = rtp(9, 1, &[1; 50]);
    forged.extend_from_slice(&[0; 10]);
    attacker.send_to(&forged, c.ports.a_rtp).unwrap();
    // The real peer latches.
    let p0 = rtp(9, 1, b"real");
    c.a.send_to(&seal(&mut a_tx, &p0), c.ports.a_rtp).unwrap();
    assert_eq!(
        recv(&c.b).unwrap().0,
        p0,
        "first packet out is the real one"
    );
    // After latching: a genuine SRTP packet sent from another source is dropped.
    let p1 = rtp(9, 2, b"stolen");
    attacker
        .send_to(&seal(&mut a_tx, &p1), c.ports.a_rtp)
        .unwrap();
    // A tampered packet from the real source is dropped.
    let mut bad = seal(&mut a_tx, &rtp(9, 3, b"tampered"));
    bad[14] ^= 1;
    c.a.send_to(&bad, c.ports.a_rtp).unwrap();
    // Then a good one, which must be the next thing B sees.
    let p4 = rtp(9, 4, b"good");
    c.a.send_to(&seal(&mut a_tx, &p4), c.ports.a_rtp).unwrap();
    assert_eq!(recv(&c.b).unwrap().0, p4);
    assert!(recv(&c.b).is_none(), "nothing else came out");

    let [sa, _] = r.stats(c.ports.id).unwrap().unwrap();
    assert_eq!(sa.dropped(DropReason::WrongSource), 1);
    assert_eq!(sa.dropped(DropReason::SrtpAuth), 2);
    assert_eq!(sa.latched, Some(c.a.local_addr().unwrap()));
    assert_eq!(r.counters().dropped(DropReason::SrtpAuth), 2);
}

#[test]
fn released_ports_are_closed_and_reused() {
    let r = Relay::start(
        RelayConfig::new(LO)
            .with_ports(45_000, 45_011)
            .with_workers(1),
    )
    .unwrap();
    let mut ids = vec![];
    while let Ok(p) = r.allocate() {
        ids.push(p);
    }
    assert!(
        !ids.is_empty() && ids.len() <= 3,
        "6 port pairs = at most 3 calls"
    );
    r.release(ids[0].id).unwrap();
    // The worker closes the sockets asynchronously; retry briefly.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(p) = r.allocate() {
            again = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(again.is_some(), "a released pair's ports are reusable");
}

#[test]
fn libsrtp_decrypts_what_the_relay_sends_and_the_relay_accepts_libsrtp() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let r = relay();
        let kb = keys(p);
        let c = call(&r, None, Some(&kb));
        let plain: Vec<Vec<u8>> = (0..20u16)
            .map(|s| rtp(0xfeed, s, &[s as u8; 160]))
            .collect();
        let mut wire = vec![];
        for pkt in &plain {
            c.a.send_to(pkt, c.ports.a_rtp).unwrap();
            wire.push(hex::encode(recv(&c.b).unwrap().0));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        // What the relay sent on the SRTP leg decrypts in libsrtp with the
        // leg's tx key (the key the relay announced in its SDP).
        let v = libsrtp(
            &json!({"profile": p.sdes_name(), "key": b64.encode(kb.tx.key_and_salt()), "srtp": wire}),
        );
        for (i, d) in v["rtp_from_srtp"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                d.as_str().map(|h| hex::decode(h).unwrap()),
                Some(plain[i].clone()),
                "{p} packet {i}"
            );
        }
        // libsrtp protects with the peer's key (the leg's rx key); the relay
        // accepts it and forwards plain RTP to A.
        let v = libsrtp(&json!({
            "profile": p.sdes_name(),
            "key": b64.encode(kb.rx.key_and_salt()),
            "rtp": plain.iter().map(hex::encode).collect::<Vec<_>>(),
        }));
        for (i, s) in v["srtp"].as_array().unwrap().iter().enumerate() {
            c.b.send_to(&hex::decode(s.as_str().unwrap()).unwrap(), c.ports.b_rtp)
                .unwrap();
            assert_eq!(
                recv(&c.a).unwrap().0,
                plain[i],
                "{p}: relay accepted libsrtp packet {i}"
            );
        }
    }
}
