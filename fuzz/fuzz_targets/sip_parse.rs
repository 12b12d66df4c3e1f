//! SIP parser + stream framing + endpoint input: must never panic; a message that parses must
//! re-serialize to bytes that parse back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediagate_sip_proto::framing::{Check, FramingConfig, check};
use mediagate_sip_proto::message::parse;
use mediagate_sip_proto::{Config, Endpoint, Remote, TransportKind};

fuzz_target!(|data: &[u8]| {
    // Datagram path.
    if let Ok(m) = parse(data) {
        // Serialization always writes Content-Length, so compare from the first re-serialized
        // form on: it must parse and be a fixed point.
        let once = m.to_bytes();
        let again = parse(&once).expect("re-serialized message must parse");
        assert_eq!(again.to_bytes(), once, "serialize(parse(serialize(x))) != serialize(x)");
    }
    // Stream path: cut frames until the buffer is used up or the framer stops.
    let cfg = FramingConfig { max_header_bytes: 4096, max_body_bytes: 4096 };
    let mut buf = data;
    loop {
        match check(buf, &cfg) {
            Check::Complete(len) => {
                assert!(len > 0 && len <= buf.len());
                let _ = parse(&buf[..len]);
                buf = &buf[len..];
            }
            Check::KeepAlive { len, .. } => {
                assert!(len > 0 && len <= buf.len());
                buf = &buf[len..];
            }
            Check::Incomplete | Check::Error(_) => break,
        }
    }
    // Transaction layer: the same bytes as input, then every timer.
    let start = std::time::Instant::now();
    let mut ep = Endpoint::new(Config::default());
    let remote = Remote { transport: TransportKind::Udp, addr: "192.0.2.1:5060".parse().unwrap() };
    ep.handle_input(start, remote, data);
    while ep.poll_output().is_some() {}
    let mut steps = 0;
    while let Some(t) = ep.poll_timeout() {
        ep.handle_timeout(t);
        while ep.poll_output().is_some() {}
        steps += 1;
        assert!(steps < 1000, "timers never settle");
    }
});
