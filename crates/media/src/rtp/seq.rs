//! Packet-index estimation (RFC 3711 §3.3.1 and Appendix A).
//!
//! SRTP's 48-bit packet index is `ROC * 2^16 + SEQ`; only SEQ is on the wire,
//! so a receiver guesses the rollover counter from the highest sequence
//! number it has authenticated (`s_l`).

//= https://www.rfc-editor.org/rfc/rfc3711#appendix-A
//# if (s_l < 2^15)
//#   if (SEQ - s_l > 2^15)
//#     v = ROC - 1
//#   else
//#     v = ROC
//# else
//#   if (s_l - 2^15 > SEQ)
//#     v = ROC + 1
//#   else
//#     v = ROC

/// Estimates the rollover counter `v` of a packet with sequence number `seq`,
/// given the current `roc` and the highest authenticated sequence number `s_l`.
///
/// Returns `(v, delta)` where `delta` is the signed distance of the packet's
/// index from the highest index (`> 0`: newer, `<= 0`: older or equal). `v`
/// wraps like the 32-bit ROC does (`ROC - 1` at ROC 0 is `u32::MAX`, whose
/// negative `delta` the replay check then refuses).
#[inline]
pub fn estimate_index(roc: u32, s_l: u16, seq: u16) -> (u32, i32) {
    let d = i32::from(seq) - i32::from(s_l);
    if d > 1 << 15 {
        (roc.wrapping_sub(1), d - (1 << 16))
    } else if d < -(1 << 15) {
        (roc.wrapping_add(1), d + (1 << 16))
    } else {
        (roc, d)
    }
}

/// The 48-bit SRTP packet index `ROC * 2^16 + SEQ`.
#[inline]
pub fn packet_index(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a_cases() {
        // In-order, same ROC.
        assert_eq!(estimate_index(5, 100, 101), (5, 1));
        // Reordered, same ROC.
        assert_eq!(estimate_index(5, 100, 90), (5, -10));
        // Wrap forward: s_l near the top, SEQ small.
        assert_eq!(estimate_index(5, 65530, 3), (6, 9));
        // Late packet from before the wrap: s_l small, SEQ near the top.
        assert_eq!(estimate_index(6, 3, 65530), (5, -9));
        // Boundaries of the 2^15 half-window.
        assert_eq!(estimate_index(1, 0, 32768), (1, 32768));
        assert_eq!(estimate_index(1, 0, 32769), (0, -32767));
        assert_eq!(estimate_index(1, 32768, 0), (1, -32768));
        assert_eq!(estimate_index(1, 32769, 0), (2, 32767));
        // ROC 0 cannot go below zero: v wraps and delta is negative.
        assert_eq!(estimate_index(0, 10, 65000), (u32::MAX, -546));
    }

    #[test]
    fn index_is_48_bits() {
        assert_eq!(packet_index(u32::MAX, 0xffff), 0xffff_ffff_ffff);
        assert_eq!(packet_index(1, 2), 0x1_0002);
    }
}
