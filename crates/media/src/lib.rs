//! mediagate's media hot path.
#![forbid(unsafe_code)]
