//! Criterion bench suites for mediagate, one module per area, each
//! comparing with a baseline in the same run (see BENCHMARKS.md).

pub mod primitives;
pub mod relay;
pub mod sip_parse;
pub mod srtp;
