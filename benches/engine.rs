//! Criterion: N no-op jobs end to end through quay with dedup on, in the
//! four shapes of `docs/performance.md`.

#[path = "common/mod.rs"]
mod common;

use common::{run, Shape, System};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

const N: u64 = 200_000;

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(N));
    for shape in [Shape::P1W1, Shape::P2W2, Shape::BATCH, Shape::KEYED] {
        g.bench_function(shape.name(), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(System::Quay, shape, N)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
