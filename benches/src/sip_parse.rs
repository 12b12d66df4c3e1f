//! SIP message parsing, stream framing and serialization of a typical PBX INVITE with SDP
//! (testdata/sip/invite-sdp.sip).

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use mediagate_sip_proto::framing::{Check, FramingConfig, check};
use mediagate_sip_proto::message::parse;

const INVITE: &[u8] = include_bytes!("../../testdata/sip/invite-sdp.sip");

/// Registers the SIP benches.
pub fn benchmarks(c: &mut Criterion) {
    let cfg = FramingConfig::default();
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("frame+parse invite-sdp", |b| {
        b.iter(|| {
            let buf = black_box(INVITE);
            let Check::Complete(len) = check(buf, &cfg) else {
                panic!("not one frame")
            };
            parse(&buf[..len]).expect("parses")
        })
    });
    g.bench_function("frame invite-sdp", |b| {
        b.iter(|| check(black_box(INVITE), &cfg))
    });
    let msg = parse(INVITE).expect("parses");
    g.bench_function("serialize invite-sdp", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
    g.finish();
}
