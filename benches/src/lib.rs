//! Criterion bench suites for mediagate, one module per area.
