use super::*;

const PLAIN_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
a=x-unknown-session:keep me\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp:49171\r\n\
a=rtcp-mux\r\n\
a=sendonly\r\n\
a=x-vendor:opaque value\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";

fn secure_offer(key: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n\
         m=audio 30000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{key}\r\n\
         a=crypto:2 FOO_BAR inline:xyz\r\n"
    )
}
const KEY1: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
const KEY2: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn parse_serialize_round_trip_keeps_every_line_in_order() {
    let sdp = Sdp::parse(PLAIN_OFFER.as_bytes()).unwrap();
    assert_eq!(sdp.to_string(), PLAIN_OFFER);
    assert_eq!(sdp.media.len(), 1);
    assert_eq!(sdp.rtp_address(0), Some(addr("192.0.2.10:49170")));
    assert!(sdp.media[0].rtcp_mux());
}

#[test]
fn malformed_sdp_is_refused() {
    assert!(Sdp::parse(b"o=x\r\n").is_err());
    assert!(Sdp::parse(b"v=0\r\nbogus\r\n").is_err());
    assert!(Sdp::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
}

#[test]
fn plain_leg_offer_rewrites_address_and_port_and_strips_crypto() {
    let offer = Sdp::parse(PLAIN_OFFER.as_bytes()).unwrap();
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), false);
    let out = b.local_offer(&offer, true).unwrap().to_string();
    assert!(out.contains("o=alice 2890844526 2890844526 IN IP4 203.0.113.5\r\n"));
    assert!(out.contains("c=IN IP4 203.0.113.5\r\n"));
    assert!(out.contains("m=audio 40002 RTP/AVP 0 8 101\r\n"));
    assert!(!out.contains("crypto"), "{out}");
    assert!(!out.contains("a=rtcp:"), "{out}");
    for kept in [
        "a=x-unknown-session:keep me",
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        "a=rtcp-mux\r\na=sendonly\r\na=x-vendor:opaque value\r\n",
    ] {
        assert!(out.contains(kept), "{kept} missing in {out}");
    }
}

#[test]
fn secured_leg_offers_every_suite_with_fresh_keys_and_savp() {
    let offer = Sdp::parse(PLAIN_OFFER.as_bytes()).unwrap();
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), true);
    let sdp = b.local_offer(&offer, true).unwrap();
    assert_eq!(sdp.media[0].proto, "RTP/SAVP");
    let lines: Vec<_> = sdp.media[0].crypto_lines().collect();
    assert_eq!(lines.len(), SrtpProfile::ALL.len());
    assert!(!lines.iter().any(|l| l.contains(KEY1)), "peer key leaked");
    // Re-offer without renewal keeps the keys; with renewal changes them.
    let again = b.local_offer(&offer, false).unwrap();
    assert_eq!(
        again.media[0].crypto_lines().collect::<Vec<_>>(),
        sdp.media[0].crypto_lines().collect::<Vec<_>>()
    );
    let renewed = b.local_offer(&offer, true).unwrap();
    assert_ne!(
        renewed.media[0].crypto_lines().collect::<Vec<_>>(),
        sdp.media[0].crypto_lines().collect::<Vec<_>>()
    );
}

#[test]
fn secured_offer_without_crypto_is_not_acceptable() {
    let offer = Sdp::parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    )
    .unwrap();
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), true);
    assert_eq!(a.on_remote_offer(&offer), Err(SdpError::NoAcceptableCrypto));
    // Only unknown suites: also refused.
    let bad = Sdp::parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 FOO inline:abc\r\n",
    )
    .unwrap();
    assert_eq!(a.on_remote_offer(&bad), Err(SdpError::NoAcceptableCrypto));
}

#[test]
fn secured_to_plain_call_keys_per_leg() {
    // A (Secured) offers; B is plain. B sees no keys; A gets an answer with our own key.
    let offer = Sdp::parse(secure_offer(KEY1).as_bytes()).unwrap();
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), true);
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), false);
    let pa = a.on_remote_offer(&offer).unwrap();
    let (rx, tx) = pa[0].keys.clone().unwrap();
    assert_eq!(rx.profile(), SrtpProfile::AesCm128HmacSha1_32);
    assert_ne!(rx.key_and_salt(), tx.key_and_salt());
    let b_offer = b.local_offer(&offer, pa[0].key_changed).unwrap();
    assert_eq!(b_offer.media[0].proto, "RTP/AVP");
    assert_eq!(b_offer.media[0].crypto_lines().count(), 0);

    let b_answer = Sdp::parse(
        b"v=0\r\no=- 5 5 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    )
    .unwrap();
    let pb = b.on_remote_answer(&b_answer).unwrap();
    assert_eq!(pb[0].remote_rtp, Some(addr("198.51.100.7:6000")));
    assert!(pb[0].keys.is_none());
    let a_answer = a.local_answer(&b_answer);
    assert_eq!(a_answer.media[0].proto, "RTP/SAVP");
    assert_eq!(a_answer.media[0].port, 40000);
    let lines: Vec<_> = a_answer.media[0].crypto_lines().collect();
    assert_eq!(lines.len(), 1);
    let ours = CryptoAttribute::parse(lines[0]).unwrap();
    assert_eq!(ours.tag, 1);
    assert_eq!(ours.key, tx);
}

#[test]
fn secured_answer_must_accept_one_of_our_lines() {
    let offer = Sdp::parse(PLAIN_OFFER.as_bytes()).unwrap();
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), true);
    let sent = b.local_offer(&offer, true).unwrap();
    let none = Sdp::parse(
        b"v=0\r\no=- 5 5 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\n",
    )
    .unwrap();
    assert_eq!(b.on_remote_answer(&none), Err(SdpError::NoAcceptableCrypto));
    // Accept our tag 4 (AES_CM_128_HMAC_SHA1_80 in ALL order) with the peer's own key.
    let tag4 = sent.media[0]
        .crypto_lines()
        .find(|l| l.starts_with("4 "))
        .unwrap()
        .to_owned();
    assert!(tag4.contains("AES_CM_128_HMAC_SHA1_80"));
    let ans = format!(
        "v=0\r\no=- 5 5 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 0\r\na=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{KEY2}\r\n"
    );
    let p = b
        .on_remote_answer(&Sdp::parse(ans.as_bytes()).unwrap())
        .unwrap();
    let (rx, tx) = p[0].keys.clone().unwrap();
    assert_eq!(rx.profile(), SrtpProfile::AesCm128HmacSha1_80);
    assert_eq!(
        CryptoAttribute::parse(&tag4).unwrap().key,
        tx,
        "tx is the key we offered on the accepted tag"
    );
}

#[test]
fn reinvite_same_key_keeps_ours_new_key_renews() {
    // R-MEDIA-6: unchanged peer key line → keep our key; changed → new key.
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), true);
    let first = a
        .on_remote_offer(&Sdp::parse(secure_offer(KEY1).as_bytes()).unwrap())
        .unwrap();
    assert!(first[0].key_changed);
    let same = a
        .on_remote_offer(&Sdp::parse(secure_offer(KEY1).as_bytes()).unwrap())
        .unwrap();
    assert!(!same[0].key_changed);
    assert_eq!(first[0].keys, same[0].keys);
    let rekey = a
        .on_remote_offer(&Sdp::parse(secure_offer(KEY2).as_bytes()).unwrap())
        .unwrap();
    assert!(rekey[0].key_changed);
    let (rx1, tx1) = first[0].keys.clone().unwrap();
    let (rx2, tx2) = rekey[0].keys.clone().unwrap();
    assert_ne!(rx1, rx2);
    assert_ne!(tx1, tx2);
}

#[test]
fn hold_keeps_direction_and_zero_address() {
    let hold = Sdp::parse(
        b"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\n",
    )
    .unwrap();
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), false);
    let p = a.on_remote_offer(&hold).unwrap();
    assert_eq!(p[0].remote_rtp, None);
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), false);
    let out = b.local_offer(&hold, false).unwrap().to_string();
    assert!(out.contains("c=IN IP4 0.0.0.0\r\na=inactive\r\n"), "{out}");
    assert!(out.contains("m=audio 40002 RTP/AVP 0\r\n"), "{out}");
}

#[test]
fn savpf_maps_to_avpf_on_plain_legs() {
    assert_eq!(leg_proto("RTP/SAVPF", false), "RTP/AVPF");
    assert_eq!(leg_proto("RTP/AVP", true), "RTP/SAVP");
    assert_eq!(leg_proto("udptl", true), "udptl");
}

fn sdp(s: &str) -> Sdp {
    Sdp::parse(s.as_bytes()).unwrap()
}

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

#[test]
fn every_offered_stream_is_answered_and_only_audio_rtp_is_anchored() {
    let offer = sdp(&format!(
        "{HEAD}m=audio 4000 RTP/AVP 0\r\nm=audio 0 RTP/AVP 0\r\nm=video 4004 RTP/AVP 96\r\n\
         m=audio 4006 RTP/AVP 8\r\nm=application 5000 UDP/BFCP *\r\n"
    ));
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), false);
    let p = a.on_remote_offer(&offer).unwrap();
    let anchored: Vec<bool> = p.iter().map(|s| s.anchored).collect();
    assert_eq!(anchored, [true, false, false, true, false]);
    assert_eq!(p[3].remote_rtp, Some(addr("192.0.2.1:4006")));
    assert_eq!(p[2].remote_rtp, None, "video is not a media target");
    a.set_local(3, Some(addr("203.0.113.5:40010")));
    let ans = a.local_answer(&offer);
    let ports: Vec<u16> = ans.media.iter().map(|m| m.port).collect();
    assert_eq!(ports, [40000, 0, 0, 40010, 0], "{ans}");
    assert_eq!(ans.media.len(), offer.media.len());
}

#[test]
fn multicast_and_broadcast_targets_are_refused_zero_is_hold() {
    for c in ["224.2.1.1/127", "255.255.255.255", "ff0e::1"] {
        let fam = if c.contains(':') { "IP6" } else { "IP4" };
        let offer = sdp(&format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN {fam} {c}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        ));
        let mut a = MediaLeg::new(addr("203.0.113.5:40000"), false);
        assert!(
            matches!(a.on_remote_offer(&offer), Err(SdpError::UnusableAddress(_))),
            "{c}"
        );
        assert_eq!(offer.rtp_address(0), None, "{c} is never a target");
    }
    let hold = sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
    );
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), false);
    let p = a.on_remote_offer(&hold).unwrap();
    assert_eq!(p[0].remote_rtp, None);
    assert_eq!(p[0].direction, Direction::SendOnly);
}

#[test]
fn savp_into_a_plain_leg_is_refused_osrtp_is_answered_plain() {
    let savp = sdp(&secure_offer(KEY1));
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), false);
    assert_eq!(a.on_remote_offer(&savp), Err(SdpError::SrtpNotAllowed));
    // RTP/AVP with a=crypto (RFC 8643) on a plain leg: plain, no crypto.
    let osrtp = sdp(PLAIN_OFFER);
    let p = a.on_remote_offer(&osrtp).unwrap();
    assert!(p[0].keys.is_none());
    let ans = a.local_answer(&osrtp);
    assert_eq!(ans.media[0].proto, "RTP/AVP");
    assert_eq!(ans.media[0].crypto_lines().count(), 0);
}

#[test]
fn osrtp_on_a_secured_leg_answers_avp_with_one_crypto_line() {
    let offer = sdp(&format!(
        "{HEAD}m=audio 4000 RTP/AVP 0\r\na=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{KEY1}\r\n"
    ));
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), true);
    let p = a.on_remote_offer(&offer).unwrap();
    assert!(p[0].keys.is_some());
    let ans = a.local_answer(&offer);
    assert_eq!(ans.media[0].proto, "RTP/AVP");
    let lines: Vec<_> = ans.media[0].crypto_lines().collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("7 AES_CM_128_HMAC_SHA1_80 inline:"));
    // A Secured leg still offers RTP/SAVP towards its own peer.
    let mut b = MediaLeg::new(addr("203.0.113.5:40002"), true);
    assert_eq!(
        b.local_offer(&offer, true).unwrap().media[0].proto,
        "RTP/SAVP"
    );
}

#[test]
fn the_answer_repeats_the_offered_suite_spelling() {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 46]);
    let offer = sdp(&format!(
        "{HEAD}m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_256_HMAC_SHA1_80 inline:{key}\r\n"
    ));
    let mut a = MediaLeg::new(addr("203.0.113.5:40000"), true);
    a.on_remote_offer(&offer).unwrap();
    let ans = a.local_answer(&offer).to_string();
    assert!(
        ans.contains("a=crypto:1 AES_CM_256_HMAC_SHA1_80 inline:"),
        "{ans}"
    );
}

#[test]
fn directions_and_rtcp_attribute() {
    let offer = sdp(&format!(
        "{HEAD}a=recvonly\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4011 IN IP4 192.0.2.9\r\n\
         m=audio 4002 RTP/AVP 0\r\na=inactive\r\na=rtcp:4003\r\n"
    ));
    assert_eq!(offer.direction(0), Direction::RecvOnly, "session level");
    assert_eq!(offer.direction(1), Direction::Inactive, "media level wins");
    assert_eq!(offer.rtcp_address(0), Some(addr("192.0.2.9:4011")));
    assert_eq!(offer.rtcp_address(1), Some(addr("192.0.2.1:4003")));
    assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
    assert_eq!(Direction::RecvOnly.answer(), Direction::SendOnly);
    assert_eq!(Direction::Inactive.answer(), Direction::Inactive);
    assert!(Direction::SendOnly.sends() && !Direction::RecvOnly.sends());
}
