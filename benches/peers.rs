//! Criterion: the same workloads as `engine`, in the same run, through the
//! pools a user would build by hand (crossbeam, flume, kanal, std mpsc,
//! tokio) and disruptor-rs for the raw 1P/1C handoff.

#[path = "common/mod.rs"]
mod common;

use common::{run, Shape, System};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const N: u64 = 200_000;

fn peers(c: &mut Criterion) {
    for shape in [Shape::P1W1, Shape::P2W2, Shape::BATCH, Shape::KEYED] {
        let mut g = c.benchmark_group(format!("peers/{}", shape.name()));
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        g.throughput(Throughput::Elements(N));
        for sys in System::ALL {
            if !sys.fits(shape) {
                continue;
            }
            g.bench_function(BenchmarkId::from_parameter(sys.name()), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run(sys, shape, N)).sum())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, peers);
criterion_main!(benches);
