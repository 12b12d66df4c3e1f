//! Batched receive with the kernel's arrival timestamp of every datagram
//! (`recvmmsg` + `SO_TIMESTAMPNS`).
//!
//! Why the verifier needs it: if it read the clock itself, it would have to
//! sit blocked in `epoll_wait` so that a packet is seen as it arrives. Then
//! every packet the relay sends wakes it up, and on loopback the relay's
//! thread pays for that wake-up: about a tenth of the relay's measured CPU
//! per packet was the test rig waking its own verifier. With the kernel's
//! timestamp the verifier can take packets in batches after a short pause,
//! like the relay does, and still measure latency and jitter from the moment
//! each packet reached its socket.
//!
//! The kernel switches arrival stamping on in deferred work after the first
//! socket asks; packets that arrive before that (the first milliseconds) are
//! stamped when they are read, which is what the verifier did before.
//!
//! The timestamps are `CLOCK_REALTIME`; [`RealtimeBase`] maps them onto the
//! run's monotonic start. A clock step during a run would show as one latency
//! outlier; NTP slewing over a run of minutes is far below the microsecond
//! figures reported.

// recvmmsg and control messages have no safe wrapper in std; each block
// says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// Datagrams per `recvmmsg` call.
pub(crate) const BATCH: usize = 32;
/// Receive buffer per datagram.
pub(crate) const BUF: usize = 2048;
/// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), aligned.
const CMSG_SPACE: usize = 64;

/// Asks the kernel to stamp every datagram `sock` receives.
pub(crate) fn enable(sock: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `CLOCK_REALTIME` now, in nanoseconds.
pub(crate) fn realtime_ns() -> i64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: `ts` is a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

fn timespec_ns(ts: &libc::timespec) -> i64 {
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The realtime clock's reading at the run's monotonic start, to turn kernel
/// timestamps into "nanoseconds since start" like the senders' stamps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RealtimeBase(pub(crate) i64);

impl RealtimeBase {
    /// Nanoseconds since the run's start of a kernel timestamp.
    pub(crate) fn since_start(self, realtime_ns: i64) -> i64 {
        realtime_ns - self.0
    }
}

/// One datagram of a batch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Received {
    /// Octets in the buffer.
    pub(crate) len: usize,
    /// Kernel arrival time (`CLOCK_REALTIME` ns), if the kernel gave one.
    pub(crate) stamp: Option<i64>,
}

/// Buffers for batched receives, allocated once.
pub(crate) struct Batch {
    pub(crate) bufs: Vec<[u8; BUF]>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    pub(crate) got: [Received; BATCH],
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self {
            bufs: vec![[0u8; BUF]; BATCH],
            cmsgs: vec![[0u64; CMSG_SPACE / 8]; BATCH],
            got: [Received::default(); BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; `Ok(0)` when
    /// the socket is empty.
    pub(crate) fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        // SAFETY: all-zero iovec and mmsghdr values are valid (null
        // pointers, zero lengths) and are filled in below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for ((iov, hdr), (buf, cmsg)) in iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(self.bufs.iter_mut().zip(self.cmsgs.iter_mut()))
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = BUF;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = CMSG_SPACE as _;
        }
        // SAFETY: every header points at a live iovec (into `self.bufs`)
        // and a live, 8-aligned control buffer of the length given; all
        // outlive the call, which writes only within those lengths.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (hdr, got) in hdrs.iter().zip(self.got.iter_mut()).take(n) {
            *got = Received {
                len: hdr.msg_len as usize,
                stamp: stamp(&hdr.msg_hdr),
            };
        }
        Ok(n)
    }
}

/// The `SCM_TIMESTAMPNS` value in a received message's control data.
fn stamp(msg: &libc::msghdr) -> Option<i64> {
    // SAFETY: `msg` was filled in by recvmmsg: its control pointer and the
    // length the kernel set describe initialised control data, which the
    // CMSG_* macros walk without leaving it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(timespec_ns(&ts));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_every_datagram_with_the_arrival_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        // The kernel turns arrival stamping on in deferred work; until then
        // it stamps at receive time instead.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = realtime_ns();
        for i in 0..5u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let after = realtime_ns();
        let mut b = Batch::new();
        let n = b.recv(&rx).unwrap();
        assert_eq!(n, 5);
        for (i, g) in b.got[..n].iter().enumerate() {
            assert_eq!(g.len, 100);
            assert_eq!(b.bufs[i][0], i as u8);
            let s = g.stamp.expect("a kernel timestamp");
            // Stamped on arrival, i.e. before the 20 ms pause ended, not
            // when the batch was read.
            assert!(s >= before && s <= after, "{before} <= {s} <= {after}");
        }
        // Empty socket: no error, nothing.
        assert_eq!(b.recv(&rx).unwrap(), 0);
    }

    #[test]
    fn without_timestamps_enabled_there_is_no_stamp() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[1; 10], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut b = Batch::new();
        assert_eq!(b.recv(&rx).unwrap(), 1);
        assert_eq!(b.got[0].stamp, None);
    }
}
