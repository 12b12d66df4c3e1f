//! Nothing the network sends can panic the SRTP core: arbitrary bytes and
//! arbitrary lengths into every unprotect entry point, for every suite,
//! with and without MKI (R-MEDIA, "nothing panics on input from the network").

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use mediagate_media::srtp::{MasterKey, Mki, SrtpConfig, SrtpContext, SrtpProfile};
use proptest::prelude::*;

fn contexts() -> Vec<SrtpContext> {
    SrtpProfile::ALL
        .into_iter()
        .flat_map(|p| [None, Mki::new(1, 4)].map(|m| (p, m)))
        .map(|(p, m)| {
            let key = MasterKey::new(p, &vec![7u8; p.master_len()])
                .unwrap()
                .with_mki(m);
            SrtpContext::new(&key, SrtpConfig::default())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn unprotect_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), extra in 0usize..400, armed in any::<bool>()) {
        for mut ctx in contexts() {
            if armed {
                ctx.allow_restart(5);
            }
            let mut buf = data.clone();
            // `len` may exceed the buffer: that is a caller error, not a panic.
            let len = extra.min(data.len() + 8);
            let _ = ctx.unprotect_rtp(&mut buf, len);
            let mut buf = data.clone();
            let _ = ctx.unprotect_rtcp(&mut buf, len);
            // Make the packet look like RTP/RTCP v2 to get past the header checks.
            let mut buf = data.clone();
            if let Some(b) = buf.first_mut() { *b = 0x80 | (*b & 0x3f); }
            let n = buf.len();
            let _ = ctx.unprotect_rtp(&mut buf, n);
            let _ = ctx.unprotect_rtcp(&mut buf, n);
        }
    }

    #[test]
    fn protect_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), spare in 0usize..40) {
        for mut ctx in contexts() {
            let mut buf = data.clone();
            if let Some(b) = buf.first_mut() { *b = 0x80 | (*b & 0x3f); }
            let n = buf.len();
            buf.resize(n + spare, 0);
            let _ = ctx.protect_rtp(&mut buf.clone(), n);
            let _ = ctx.protect_rtcp(&mut buf, n);
        }
    }
}
