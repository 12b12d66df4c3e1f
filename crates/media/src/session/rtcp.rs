//! RTCP report blocks (RFC 3550 §6.4): where the relay reads a peer's view
//! of loss and jitter for per-leg statistics (R-MEDIA-5).
//!
//! ```text
//!  SR: V P RC PT=200 length | SSRC | NTP(8) RTP ts(4) pkts(4) octets(4) | report blocks
//!  RR: V P RC PT=201 length | SSRC | report blocks
//!  report block (24): SSRC | fraction lost(8) cumulative lost(24) | ext. highest seq |
//!                     interarrival jitter | LSR | DLSR
//! ```

/// One RTCP reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The SSRC the report is about.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it
    /// negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
}

/// The last report block of the compound RTCP packet `pkt`, if any. Stops
/// quietly at anything malformed.
pub(crate) fn last_report_block(mut pkt: &[u8]) -> Option<ReportBlock> {
    let mut last = None;
    while pkt.len() >= 8 {
        if pkt[0] >> 6 != 2 {
            break;
        }
        let rc = usize::from(pkt[0] & 0x1f);
        let pt = pkt[1];
        let words = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) + 1;
        let Some(this) = pkt.get(..words * 4) else {
            break;
        };
        let first = match pt {
            200 => 28,
            201 => 8,
            _ => usize::MAX,
        };
        if first != usize::MAX {
            for i in 0..rc {
                let Some(b) = this.get(first + 24 * i..first + 24 * (i + 1)) else {
                    break;
                };
                let lost = u32::from_be_bytes([0, b[5], b[6], b[7]]);
                // Sign-extend the 24-bit cumulative loss.
                let lost = ((lost << 8) as i32) >> 8;
                last = Some(ReportBlock {
                    ssrc: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    fraction_lost: b[4],
                    cumulative_lost: lost,
                    highest_seq: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                    jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
                });
            }
        }
        pkt = &pkt[this.len()..];
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(ssrc: u32, lost: [u8; 3], jitter: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.push(64);
        p.extend_from_slice(&lost);
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&jitter.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn reads_rr_in_a_compound_packet() {
        // SR without blocks, then RR with one, then SDES.
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&[0; 24]);
        p.extend(rr(0xabcd, [0, 0, 5], 77));
        p.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 1]);
        let b = last_report_block(&p).unwrap();
        assert_eq!(b.ssrc, 0xabcd);
        assert_eq!(b.fraction_lost, 64);
        assert_eq!(b.cumulative_lost, 5);
        assert_eq!(b.jitter, 77);
        assert_eq!(b.highest_seq, 1000);
    }

    #[test]
    fn negative_loss_and_garbage() {
        let b = last_report_block(&rr(1, [0xff, 0xff, 0xff], 0)).unwrap();
        assert_eq!(b.cumulative_lost, -1);
        assert_eq!(last_report_block(&[0x81, 201, 0, 7, 1, 2]), None);
        let mut p = rr(1, [0, 0, 1], 0);
        p.truncate(20); // length field says 32
        assert_eq!(last_report_block(&p), None);
        assert_eq!(last_report_block(&[0x40; 40]), None);
    }
}
