//! The crypto primitives the SRTP hot path could use, measured side by side
//! so the choice in `mediagate-media` is evidence-based (BENCHMARKS.md):
//! HMAC-SHA1 over a 172-octet packet + ROC, and AES-128 counter mode over
//! its 160-octet payload, and AES-128-GCM sealing it, RustCrypto vs aws-lc-rs.

use criterion::{Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use std::hint::black_box;

/// Registers the primitive benchmarks.
pub fn benchmarks(c: &mut Criterion) {
    let key = [0x42u8; 20];
    let data = [0xa5u8; 176];

    let mut g = c.benchmark_group("primitives/hmac-sha1-176");
    g.throughput(Throughput::Bytes(176));
    let rc = <Hmac<Sha1> as KeyInit>::new_from_slice(&key).expect("any key length");
    g.bench_function("rustcrypto", |b| {
        b.iter(|| {
            let mut m = rc.clone();
            m.update(black_box(&data[..172]));
            m.update(black_box(&data[172..]));
            black_box(m.finalize().into_bytes())
        })
    });
    let aws = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    g.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            let mut ctx = aws_lc_rs::hmac::Context::with_key(&aws);
            ctx.update(black_box(&data[..172]));
            ctx.update(black_box(&data[172..]));
            black_box(ctx.sign())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("primitives/aes128-ctr-160");
    g.throughput(Throughput::Bytes(160));
    let mut buf = [0u8; 160];
    let iv = [7u8; 16];
    {
        use aes::cipher::{KeyIvInit, StreamCipher};
        let k = [1u8; 16];
        g.bench_function("rustcrypto-ctr", |b| {
            b.iter(|| {
                let mut c = ctr::Ctr128BE::<aes::Aes128>::new(&k.into(), &iv.into());
                c.apply_keystream(black_box(&mut buf));
            })
        });
    }
    {
        use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
        use aws_lc_rs::iv::FixedLength;
        let k = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &[1u8; 16]).expect("key"))
            .expect("ctr");
        g.bench_function("aws-lc-rs", |b| {
            b.iter(|| {
                let ctx = EncryptionContext::Iv128(FixedLength::from(iv));
                black_box(
                    k.less_safe_encrypt(black_box(&mut buf), ctx)
                        .expect("encrypt"),
                );
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("primitives/aes128-gcm-160");
    g.throughput(Throughput::Bytes(160));
    let aad = [0x80u8; 12];
    {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        let k = aes_gcm::Aes128Gcm::new(&[1u8; 16].into());
        g.bench_function("rustcrypto", |b| {
            b.iter(|| {
                let tag = k
                    .encrypt_in_place_detached(&[3u8; 12].into(), &aad, black_box(&mut buf))
                    .expect("seal");
                black_box(tag)
            })
        });
    }
    {
        use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[1u8; 16]).expect("key"));
        g.bench_function("aws-lc-rs", |b| {
            b.iter(|| {
                let tag = k
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([3u8; 12]),
                        Aad::from(aad),
                        black_box(&mut buf),
                    )
                    .expect("seal");
                black_box(tag)
            })
        });
    }
    {
        use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[1u8; 16]).expect("key"));
        g.bench_function("ring", |b| {
            b.iter(|| {
                let tag = k
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([3u8; 12]),
                        Aad::from(aad),
                        black_box(&mut buf),
                    )
                    .expect("seal");
                black_box(tag)
            })
        });
    }
    g.finish();
}
