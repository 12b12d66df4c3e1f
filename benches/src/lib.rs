//! Criterion bench suites for mediagate, one module per area.

pub mod sip_parse;
