//! mediagate sans-IO SIP core (crate doc filled in below).
pub mod framing;
pub mod message;
