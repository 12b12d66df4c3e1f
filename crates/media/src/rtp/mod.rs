//! Zero-copy views over RTP and RTCP headers, and sequence-number extension.
//!
//! Nothing here copies a packet: views borrow the receive buffer and expose
//! the fields the hot path needs (SSRC, sequence number, header length).

mod header;
mod seq;

pub use header::{RTCP_FIXED_HEADER_LEN, RTP_FIXED_HEADER_LEN, RtcpHeader, RtpHeader, is_rtcp};
pub use seq::{estimate_index, packet_index};
