//! A TCP byte stream cut at every possible size, framed with `framing::check` and fed to the
//! endpoint, yields exactly the messages that were sent; keep-alive pings get pongs
//! (R-SIP-1 framing by Content-Length on streams).

use std::time::Instant;

use mediagate_sip_proto::framing::{Check, FramingConfig, check};
use mediagate_sip_proto::{Config, Endpoint, Event, Output, Remote, TransportKind};

#[allow(clippy::disallowed_methods)] // test epoch only
fn t0() -> Instant {
    Instant::now()
}

const INVITE: &[u8] = include_bytes!("../../../testdata/sip/invite-sdp.sip");

fn options(n: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:gw.example.com SIP/2.0\r\nv: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKopt{n}\r\n\
         f: <sip:pbx@example.com>;tag=p\r\nt: <sip:gw.example.com>\r\ni: opt{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn stream_cut_at_every_chunk_size() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n"); // RFC 5626 ping
    stream.extend_from_slice(INVITE);
    stream.extend_from_slice(&options(1));
    stream.extend_from_slice(b"\r\n"); // pong from the peer
    stream.extend_from_slice(&options(2));
    let remote = Remote {
        transport: TransportKind::Tcp,
        addr: "10.0.0.1:40000".parse().expect("addr"),
    };
    for chunk in 1..=stream.len() {
        let mut ep = Endpoint::new(Config::default());
        let mut buf: Vec<u8> = Vec::new();
        let (mut requests, mut pongs) = (Vec::new(), 0);
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match check(&buf, &FramingConfig::default()) {
                    Check::Incomplete => break,
                    Check::KeepAlive { len, pong } => {
                        pongs += usize::from(pong);
                        buf.drain(..len);
                    }
                    Check::Complete(len) => {
                        ep.handle_input(t0(), remote, &buf[..len]);
                        buf.drain(..len);
                    }
                    Check::Error(e) => panic!("chunk {chunk}: {e}"),
                }
            }
            while let Some(o) = ep.poll_output() {
                if let Output::Event(Event::Request { request, .. }) = o {
                    requests.push(request.method.to_string());
                }
            }
        }
        assert!(buf.is_empty(), "chunk {chunk}: {} bytes left", buf.len());
        assert_eq!(requests, ["INVITE", "OPTIONS", "OPTIONS"], "chunk {chunk}");
        // A ping split across reads looks like two pongs; only whole pings are answered.
        assert!(pongs <= 1, "chunk {chunk}");
        if chunk >= 4 {
            assert_eq!(pongs, 1, "chunk {chunk}");
        }
    }
}
