//! RTP (RFC 3550 §5.1) and RTCP (RFC 3550 §6.4) header views.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      defined by profile       |           length              |
//! |                        header extension                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use crate::error::Malformed;

/// Length of the fixed RTP header.
pub const RTP_FIXED_HEADER_LEN: usize = 12;
/// Length of the fixed RTCP header (common header + sender SSRC).
pub const RTCP_FIXED_HEADER_LEN: usize = 8;

/// A parsed view of an RTP header: the fields the relay and SRTP need,
/// computed once from a borrowed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Length of the header including CSRCs and the extension: the payload
    /// (what SRTP encrypts) starts here.
    pub header_len: usize,
    /// Whether the padding bit is set (the last payload octet is the count).
    pub padding: bool,
}

impl RtpHeader {
    /// Parses the header of the RTP packet `pkt` without copying.
    ///
    /// Checks the version, and that the CSRC list and header extension fit.
    /// Padding is not validated here: for SRTP the padding is encrypted, so
    /// it can be checked only after decryption (see [`RtpHeader::payload_len`]).
    #[inline]
    pub fn parse(pkt: &[u8]) -> Result<Self, Malformed> {
        if pkt.len() < RTP_FIXED_HEADER_LEN {
            return Err(Malformed::TooShort);
        }
        let b0 = pkt[0];
        if b0 >> 6 != 2 {
            return Err(Malformed::BadVersion);
        }
        let cc = usize::from(b0 & 0x0f);
        let mut header_len = RTP_FIXED_HEADER_LEN + 4 * cc;
        if b0 & 0x10 != 0 {
            // Extension: 16-bit profile, 16-bit length in 32-bit words.
            let ext = pkt
                .get(header_len..header_len + 4)
                .ok_or(Malformed::BadHeaderLength)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            header_len += 4 + 4 * words;
        }
        if header_len > pkt.len() {
            return Err(Malformed::BadHeaderLength);
        }
        Ok(Self {
            marker: pkt[1] & 0x80 != 0,
            payload_type: pkt[1] & 0x7f,
            sequence: u16::from_be_bytes([pkt[2], pkt[3]]),
            timestamp: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
            ssrc: u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
            header_len,
            padding: b0 & 0x20 != 0,
        })
    }

    /// Length of the payload without padding, for the plaintext packet `pkt`
    /// this header was parsed from.
    pub fn payload_len(&self, pkt: &[u8]) -> Result<usize, Malformed> {
        let body = pkt.len().saturating_sub(self.header_len);
        if !self.padding {
            return Ok(body);
        }
        let pad = usize::from(*pkt.last().ok_or(Malformed::TooShort)?);
        if pad == 0 || pad > body {
            return Err(Malformed::BadPadding);
        }
        Ok(body - pad)
    }
}

/// A parsed view of the first RTCP packet's header in a compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    /// Packet type (200 = SR, 201 = RR, 202 = SDES, 203 = BYE, 204 = APP, ...).
    pub packet_type: u8,
    /// The sender's SSRC (the second word of every RTCP packet).
    pub ssrc: u32,
}

impl RtcpHeader {
    /// Parses the first RTCP header of `pkt` without copying.
    #[inline]
    pub fn parse(pkt: &[u8]) -> Result<Self, Malformed> {
        if pkt.len() < RTCP_FIXED_HEADER_LEN {
            return Err(Malformed::TooShort);
        }
        if pkt[0] >> 6 != 2 {
            return Err(Malformed::BadVersion);
        }
        Ok(Self {
            packet_type: pkt[1],
            ssrc: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
        })
    }
}

/// Tells RTCP from RTP on a multiplexed port (RFC 5761 §4): RTCP packet types
/// 192–223 fall where RTP would have marker bit + payload types 64–95.
#[inline]
pub fn is_rtcp(pkt: &[u8]) -> bool {
    matches!(pkt.get(1), Some(pt) if (192..=223).contains(pt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csrc_and_extension() {
        let mut p = vec![
            0x80 | 0x10 | 2,
            0x80 | 8,
            0x12,
            0x34,
            0,
            0,
            0,
            1,
            0xde,
            0xad,
            0xbe,
            0xef,
        ];
        p.extend_from_slice(&[0; 8]); // 2 CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        p.extend_from_slice(b"payload");
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.header_len, 12 + 8 + 8);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert_eq!(h.sequence, 0x1234);
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.payload_len(&p).unwrap(), 7);
    }

    #[test]
    fn rejects_truncated_headers() {
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(Malformed::TooShort));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(Malformed::BadVersion));
        // CC = 15 but no CSRCs.
        let mut p = [0u8; 12];
        p[0] = 0x8f;
        assert_eq!(RtpHeader::parse(&p), Err(Malformed::BadHeaderLength));
        // Extension bit but no extension header.
        p[0] = 0x90;
        assert_eq!(RtpHeader::parse(&p), Err(Malformed::BadHeaderLength));
        // Extension length too long.
        let mut q = vec![
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
        ];
        assert_eq!(RtpHeader::parse(&q), Err(Malformed::BadHeaderLength));
        q[14] = 0;
        q[15] = 0;
        assert!(RtpHeader::parse(&q).is_ok());
    }

    #[test]
    fn padding_is_checked() {
        let mut p = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3];
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload_len(&p), Ok(1));
        *p.last_mut().unwrap() = 0;
        assert_eq!(h.payload_len(&p), Err(Malformed::BadPadding));
        *p.last_mut().unwrap() = 5;
        assert_eq!(h.payload_len(&p), Err(Malformed::BadPadding));
    }

    #[test]
    fn rtcp_mux_demux() {
        assert!(is_rtcp(&[0x80, 200]));
        assert!(is_rtcp(&[0x80, 201]));
        assert!(!is_rtcp(&[0x80, 0]));
        assert!(!is_rtcp(&[0x80, 0x80 | 8]));
        assert!(!is_rtcp(&[0x80]));
    }
}
