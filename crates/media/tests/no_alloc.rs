//! Proves R-MEDIA-3 for the SRTP core: protect and unprotect (SRTP and
//! SRTCP, every suite, with MKI, across a wrap, and on the refusal paths)
//! make zero heap allocations per packet. A counting global allocator
//! counts this thread's allocations around the hot loop.
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition
#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use mediagate_media::srtp::{MasterKey, Mki, SrtpConfig, SrtpContext, SrtpProfile};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn protect_and_unprotect_allocate_nothing() {
    for p in SrtpProfile::ALL {
        for mki in [None, Mki::new(3, 2)] {
            let key = MasterKey::generate(p).unwrap().with_mki(mki);
            let mut tx = SrtpContext::new(&key, SrtpConfig::default());
            let mut rx = SrtpContext::new(&key, SrtpConfig::default());
            rx.allow_restart(10); // exercises the GCM scratch path too
            let mut buf = [0u8; 1500];
            let mut wrong = [0u8; 1500];
            let mut rtcp = [0u8; 1500];
            // A stream's first received packet allocates its content memory
            // for restarts (SrtpConfig::restart_memory): once per SSRC, not
            // per packet. Warm up with one packet of the SSRC and one SRTCP.
            buf[..12].copy_from_slice(&[0x80, 0, 0xfd, 0xe7, 0, 0, 0, 0, 0, 0, 0, 7]);
            let n = tx.protect_rtp(&mut buf, 172).unwrap();
            assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(172));
            rtcp[..8].copy_from_slice(&[0x81, 201, 0, 7, 0, 0, 0, 7]);
            let m = tx.protect_rtcp(&mut rtcp, 32).unwrap();
            assert_eq!(rx.unprotect_rtcp(&mut rtcp, m), Ok(32));

            let before = allocs();
            for i in 0..2000u32 {
                let seq = 65_000u16.wrapping_add(i as u16);
                // RTP: header + 160 octets of payload.
                buf[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                let n = tx.protect_rtp(&mut buf, 172).unwrap();
                wrong[..n].copy_from_slice(&buf[..n]);
                wrong[20] ^= 1;
                assert!(rx.unprotect_rtp(&mut wrong, n).is_err());
                assert_eq!(rx.unprotect_rtp(&mut buf, n), Ok(172));
                // Replay refusal path.
                assert!(rx.unprotect_rtp(&mut wrong, n).is_err());
                // SRTCP.
                rtcp[..8].copy_from_slice(&[0x81, 201, 0, 7, 0, 0, 0, 7]);
                let m = tx.protect_rtcp(&mut rtcp, 32).unwrap();
                assert_eq!(rx.unprotect_rtcp(&mut rtcp, m), Ok(32));
            }
            let after = allocs();
            assert_eq!(
                after - before,
                0,
                "{p} (MKI {mki:?}): allocations in the hot loop"
            );
        }
    }
}

#[test]
fn the_counter_does_count() {
    // Guard against a counter that cannot fail.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 64]);
    drop(v);
    assert!(allocs() > before);
}
