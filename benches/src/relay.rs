//! The in-process relay path: receive buffer → pair lookup → transform →
//! send buffer, for each transform (forward = null cipher, decrypt, encrypt,
//! recrypt) and suite, 172-octet packets. No sockets: this isolates what the
//! relay adds on top of the kernel's per-packet cost (see the load runs in
//! BENCHMARKS.md for the whole path).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use mediagate_media::session::{
    Action, LegKeys, LegPair, LegSpec, PacketKind, SessionConfig, Side,
};
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};

const SIZE: usize = 172;
/// Pairs in the table, as a worker with 1000 calls would hold.
const PAIRS: usize = 1000;
/// Distinct packets in the replayed stream.
const STREAM: usize = 2048;

fn keys(p: SrtpProfile) -> LegKeys {
    LegKeys {
        rx: MasterKey::generate(p).expect("rng"),
        tx: MasterKey::generate(p).expect("rng"),
    }
}

/// Registers the relay-path benchmarks.
#[allow(clippy::disallowed_methods)] // benches take a real instant as `now`
pub fn benchmarks(c: &mut Criterion) {
    let a_peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
    let b_peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut g = c.benchmark_group("relay/path-172");
    g.throughput(Throughput::Elements(1));
    let mut cases: Vec<(String, Option<SrtpProfile>, Option<SrtpProfile>)> =
        vec![("forward (null cipher)".into(), None, None)];
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ] {
        cases.push((format!("encrypt/{p}"), None, Some(p)));
        cases.push((format!("decrypt/{p}"), Some(p), None));
        cases.push((format!("recrypt/{p}"), Some(p), Some(p)));
    }
    for (name, a, b) in cases {
        let now = Instant::now();
        let ka = a.map(keys);
        let kb = b.map(keys);
        let make_pair = || {
            let mut pair = LegPair::new(SessionConfig::default());
            let spec = |k: &Option<LegKeys>, addr| match k {
                Some(k) => LegSpec::srtp(Some(addr), k.clone()),
                None => LegSpec::plain(Some(addr)),
            };
            pair.set_leg(now, Side::A, spec(&ka, a_peer));
            pair.set_leg(now, Side::B, spec(&kb, b_peer));
            pair
        };
        let mut pairs: Vec<LegPair> = (0..PAIRS).map(|_| make_pair()).collect();
        // What peer A sends: a stream protected beforehand (if leg A is SRTP).
        let mut sender = ka
            .as_ref()
            .map(|k| SrtpContext::new(&k.rx, SrtpConfig::default()));
        let wire: Vec<Vec<u8>> = (0..STREAM as u16)
            .map(|seq| {
                let mut w = vec![0xa5u8; SIZE + 64];
                w[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0xca, 0xfe, 0, 1]);
                w[2..4].copy_from_slice(&seq.to_be_bytes());
                let n = match sender.as_mut() {
                    Some(s) => s.protect_rtp(&mut w, SIZE).expect("protect"),
                    None => SIZE,
                };
                w.truncate(n);
                w
            })
            .collect();
        let mut buf = vec![0u8; 2048];
        let mut i = 0;
        let target = PAIRS / 2;
        g.bench_function(BenchmarkId::from_parameter(&name), |bch| {
            bch.iter(|| {
                let w = &wire[i];
                buf[..w.len()].copy_from_slice(w); // the receive
                let pair = &mut pairs[black_box(target)];
                let len = match pair.handle_packet(
                    now,
                    Side::A,
                    PacketKind::Rtp,
                    a_peer,
                    &mut buf,
                    w.len(),
                ) {
                    Action::Forward { len, .. } => len,
                    Action::Drop(r) => panic!("{name}: dropped {r:?}"),
                };
                i += 1;
                if i == STREAM {
                    // Replay protection would refuse the stream again: start
                    // the pair over (amortized over STREAM packets).
                    i = 0;
                    pairs[target] = make_pair();
                }
                black_box(len)
            })
        });
    }
    g.finish();
}
