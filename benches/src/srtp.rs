//! SRTP protect/unprotect: mediagate vs `webrtc-srtp` in the same group,
//! every suite × 60/172/1200-octet packets (whole RTP packet size).
//!
//! Both sides do the same work per iteration: protect a packet with a new
//! sequence number; unprotect the next packet of a pre-protected stream
//! (with a 128-packet replay window on both sides). Our unprotect includes
//! copying the packet into the work buffer, as a receive would.

use criterion::{BenchmarkId, Criterion, Throughput};
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext, SrtpProfile};
use std::hint::black_box;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::srtp_replay_protection;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Packet sizes (whole RTP packet, 12-octet header included).
pub const SIZES: [usize; 3] = [60, 172, 1200];
/// Distinct packets in an unprotect stream before contexts are rebuilt.
const STREAM: usize = 2048;

fn theirs(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpProfile::AesCm256HmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        _ => ProtectionProfile::AeadAes256Gcm,
    }
}

fn key(p: SrtpProfile) -> MasterKey {
    MasterKey::new(p, &(0..p.master_len() as u8).collect::<Vec<_>>())
        .expect("length matches profile")
}

fn webrtc_ctx(k: &MasterKey) -> Context {
    Context::new(
        k.key(),
        k.salt(),
        theirs(k.profile()),
        Some(srtp_replay_protection(128)),
        None,
    )
    .expect("valid key")
}

/// An RTP packet of `size` octets with sequence number `seq`.
pub fn rtp_packet(size: usize, seq: u16) -> Vec<u8> {
    let mut p = vec![0xa5; size];
    p[..12].copy_from_slice(&[0x80, 0x00, 0, 0, 0, 0, 0x12, 0x34, 0xca, 0xfe, 0xba, 0xbe]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Registers the SRTP benchmarks.
pub fn benchmarks(c: &mut Criterion) {
    for p in SrtpProfile::ALL {
        let k = key(p);

        let mut g = c.benchmark_group(format!("srtp/protect/{p}"));
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("mediagate", size), &size, |b, &size| {
                let mut ctx = SrtpContext::new(&k, SrtpConfig::default());
                let mut buf = rtp_packet(size, 0);
                buf.resize(size + 64, 0);
                let mut seq = 0u16;
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    buf[2..4].copy_from_slice(&seq.to_be_bytes());
                    black_box(ctx.protect_rtp(black_box(&mut buf), size).expect("protect"))
                });
            });
            g.bench_with_input(BenchmarkId::new("webrtc-srtp", size), &size, |b, &size| {
                let mut ctx = webrtc_ctx(&k);
                let mut pkt = rtp_packet(size, 0);
                let mut seq = 0u16;
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                    black_box(ctx.encrypt_rtp(black_box(&pkt)).expect("protect"))
                });
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("srtp/unprotect/{p}"));
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            // One protected stream, shared by both implementations.
            let mut tx = SrtpContext::new(&k, SrtpConfig::default());
            let wire: Vec<Vec<u8>> = (0..STREAM as u16)
                .map(|seq| {
                    let mut buf = rtp_packet(size, seq);
                    buf.resize(size + 64, 0);
                    let n = tx.protect_rtp(&mut buf, size).expect("protect");
                    buf.truncate(n);
                    buf
                })
                .collect();
            g.bench_with_input(BenchmarkId::new("mediagate", size), &size, |b, _| {
                let mut ctx = SrtpContext::new(&k, SrtpConfig::default());
                let mut buf = [0u8; 1500];
                let mut i = 0;
                b.iter(|| {
                    let w = &wire[i];
                    buf[..w.len()].copy_from_slice(w);
                    let n = ctx
                        .unprotect_rtp(black_box(&mut buf), w.len())
                        .expect("unprotect");
                    i += 1;
                    if i == STREAM {
                        i = 0;
                        ctx = SrtpContext::new(&k, SrtpConfig::default());
                    }
                    black_box(n)
                });
            });
            g.bench_with_input(BenchmarkId::new("webrtc-srtp", size), &size, |b, _| {
                let mut ctx = webrtc_ctx(&k);
                let mut i = 0;
                b.iter(|| {
                    let out = ctx.decrypt_rtp(black_box(&wire[i])).expect("unprotect");
                    i += 1;
                    if i == STREAM {
                        i = 0;
                        ctx = webrtc_ctx(&k);
                    }
                    black_box(out)
                });
            });
        }
        g.finish();
    }
}
