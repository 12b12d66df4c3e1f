//! Entry point for all criterion suites.
use criterion::{criterion_group, criterion_main};

fn placeholder(_c: &mut criterion::Criterion) {}
criterion_group!(
    benches,
    placeholder,
    mediagate_benches::sip_parse::benchmarks
);
criterion_main!(benches);
