//! Entry point for all criterion suites: `cargo bench -p mediagate-benches`.
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn config() -> Criterion {
    // Shared, noisy 2-core machines: shorter runs, many samples, compare
    // ratios within one run (BENCHMARKS.md).
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(60)
}

criterion_group! {
    name = benches;
    config = config();
    targets = mediagate_benches::primitives::benchmarks, mediagate_benches::srtp::benchmarks,
        mediagate_benches::relay::benchmarks, mediagate_benches::sip_parse::benchmarks
}
criterion_main!(benches);
