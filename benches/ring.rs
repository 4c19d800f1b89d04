//! quay's ring against crossbeam's `ArrayQueue`, in the same run: push/pop
//! on one thread, batched, and one producer with one stealing consumer on
//! another core. This bench decided the ring choice in `docs/design.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use quay::__private::Ring;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const N: u64 = 100_000;
const CAP: usize = 4096;

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/push_pop");
    g.throughput(Throughput::Elements(N));
    g.bench_function("quay", |b| {
        let r = Ring::new(CAP);
        b.iter(|| {
            for i in 0..N {
                let _ = r.push(black_box(i));
                black_box(r.pop());
            }
        })
    });
    g.bench_function("crossbeam_array_queue", |b| {
        let q = ArrayQueue::new(CAP);
        b.iter(|| {
            for i in 0..N {
                let _ = q.push(black_box(i));
                black_box(q.pop());
            }
        })
    });
    g.finish();
}

fn batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/batch32");
    g.throughput(Throughput::Elements(N));
    g.bench_function("quay", |b| {
        let r = Ring::new(CAP);
        let mut src: VecDeque<u64> = VecDeque::with_capacity(32);
        b.iter(|| {
            for chunk in 0..N / 32 {
                src.extend((0..32).map(|i| chunk * 32 + i));
                r.push_batch(&mut src);
                r.pop_batch(32, |v| {
                    black_box(v);
                });
            }
        })
    });
    g.bench_function("crossbeam_array_queue", |b| {
        let q = ArrayQueue::new(CAP);
        b.iter(|| {
            for chunk in 0..N / 32 {
                for i in 0..32 {
                    let _ = q.push(chunk * 32 + i);
                }
                for _ in 0..32 {
                    black_box(q.pop());
                }
            }
        })
    });
    g.finish();
}

/// One producer thread, one consumer thread (the "stealer"), `N` items.
fn cross_thread<Q: Send + Sync + 'static>(
    q: Arc<Q>,
    push: fn(&Q, u64) -> bool,
    pop: fn(&Q, &mut u64) -> usize,
) {
    let done = Arc::new(AtomicBool::new(false));
    let (q2, d2) = (q.clone(), done.clone());
    let consumer = std::thread::spawn(move || {
        let mut got = 0u64;
        let mut sum = 0u64;
        while got < N {
            let n = pop(&q2, &mut sum);
            if n == 0 {
                std::hint::spin_loop();
            }
            got += n as u64;
        }
        d2.store(true, Ordering::Release);
        black_box(sum);
    });
    for i in 0..N {
        while !push(&q, i) {
            std::hint::spin_loop();
        }
    }
    consumer.join().unwrap();
}

fn stealer(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/spsc_cross_core");
    g.throughput(Throughput::Elements(N));
    for batch in [1usize, 32] {
        g.bench_with_input(BenchmarkId::new("quay", batch), &batch, |b, &batch| {
            b.iter(|| {
                let r = Arc::new(Ring::<u64>::new(CAP));
                if batch == 1 {
                    cross_thread(
                        r,
                        |r, v| r.push(v).is_ok(),
                        |r, s| {
                            r.pop().map_or(0, |v| {
                                *s += v;
                                1
                            })
                        },
                    );
                } else {
                    cross_thread(
                        r,
                        |r, v| r.push(v).is_ok(),
                        |r, s| r.pop_batch(32, |v| *s += v),
                    );
                }
            })
        });
    }
    g.bench_function(BenchmarkId::new("crossbeam_array_queue", 1), |b| {
        b.iter(|| {
            let q = Arc::new(ArrayQueue::<u64>::new(CAP));
            cross_thread(
                q,
                |q, v| q.push(v).is_ok(),
                |q, s| {
                    q.pop().map_or(0, |v| {
                        *s += v;
                        1
                    })
                },
            );
        })
    });
    g.finish();
}

criterion_group!(benches, single_thread, batched, stealer);
criterion_main!(benches);
