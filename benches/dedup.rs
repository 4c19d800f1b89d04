//! Criterion: quay's seen-ID set against a plain `DashSet`: inserting 1 M
//! distinct random IDs, and the steady state where finished IDs roll out of
//! a window (quay) or are removed (DashSet) as fast as new ones arrive.

#[path = "common/mod.rs"]
mod common;

use common::mix;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dashmap::DashSet;
use quay::__private::{DedupConfig, SeenSet};
use quay::{JobId, Timestamp};
use std::time::Duration;

const N: u64 = 1_000_000;

fn dedup(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup/insert_1M_distinct");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("quay SeenSet", |b| {
        b.iter_with_large_drop(|| {
            let s = SeenSet::new(
                DedupConfig {
                    window: Duration::from_secs(300),
                    capacity: 1 << 20,
                },
                65_536,
            );
            for i in 0..N {
                s.try_insert(JobId::from(mix(i)), Timestamp::from_nanos(i));
            }
            s
        })
    });
    g.bench_function("DashSet", |b| {
        b.iter_with_large_drop(|| {
            let s = DashSet::new();
            for i in 0..N {
                s.insert(mix(i));
            }
            s
        })
    });
    g.finish();

    // Steady state: each job inserted at submit and finished later; the
    // window is 1 ms of a clock advancing 1 µs per job, so ~1 000 finished
    // IDs are remembered and the rest roll out.
    let mut g = c.benchmark_group("dedup/steady_window");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("quay SeenSet", |b| {
        let s = SeenSet::new(
            DedupConfig {
                window: Duration::from_millis(1),
                capacity: 1 << 16,
            },
            4_096,
        );
        let mut base = 0u64;
        b.iter(|| {
            for i in base..base + N {
                let t = Timestamp::from_nanos(i * 1_000);
                s.try_insert(JobId::from(mix(i)), t);
                if i >= 64 {
                    s.finish(JobId::from(mix(i - 64)), t);
                }
            }
            base += N;
        })
    });
    g.bench_function("DashSet insert+remove", |b| {
        let s = DashSet::new();
        let mut base = 0u64;
        b.iter(|| {
            for i in base..base + N {
                s.insert(mix(i));
                if i >= 1_064 {
                    s.remove(&mix(i - 1_064));
                }
            }
            base += N;
        })
    });
    g.finish();
}

criterion_group!(benches, dedup);
criterion_main!(benches);
