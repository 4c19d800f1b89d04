//! Workloads shared by the benches: the same jobs, the same dedup, the same
//! pinning, through quay and through the pools a user would build by hand.
//!
//! Every system gets `n` no-op jobs with distinct pseudo-random 64-bit IDs
//! (a fixed-seed bijection, as in the demo's `noop` scenario) and dedups
//! them at submit: quay with its seen-ID set, the hand-built pools with a
//! `DashSet` insert. Time runs from the first submit to the last job done.
#![allow(dead_code)]

use dashmap::DashSet;
use quay::{Engine, IdleStrategy, Job};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod slow;

/// The CPU's model name, for a bench's header.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// SplitMix64's finaliser: distinct, well-spread IDs.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A workload shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub producers: usize,
    pub workers: usize,
    /// Jobs per submit call (1: single submits).
    pub batch: usize,
    /// Keys (0: unkeyed).
    pub keys: u64,
}

impl Shape {
    pub const P1W1: Shape = Shape {
        producers: 1,
        workers: 1,
        batch: 1,
        keys: 0,
    };
    pub const P2W2: Shape = Shape {
        producers: 2,
        workers: 2,
        batch: 1,
        keys: 0,
    };
    pub const BATCH: Shape = Shape {
        producers: 1,
        workers: 1,
        batch: 64,
        keys: 0,
    };
    pub const KEYED: Shape = Shape {
        producers: 2,
        workers: 2,
        batch: 1,
        keys: 1_000,
    };

    pub fn name(&self) -> String {
        let mut s = format!("{}P/{}W", self.producers, self.workers);
        if self.batch > 1 {
            s += &format!(" batch {}", self.batch);
        }
        if self.keys > 0 {
            s += &format!(" keyed {}", self.keys);
        }
        s
    }
}

/// The systems compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Quay,
    CrossbeamPool,
    Flume,
    Kanal,
    StdMpsc,
    Tokio,
    Disruptor,
}

impl System {
    pub const ALL: [System; 7] = [
        System::Quay,
        System::CrossbeamPool,
        System::Flume,
        System::Kanal,
        System::StdMpsc,
        System::Tokio,
        System::Disruptor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Quay => "quay",
            System::CrossbeamPool => "crossbeam pool + DashSet",
            System::Flume => "flume pool + DashSet",
            System::Kanal => "kanal pool + DashSet",
            System::StdMpsc => "std mpsc + Mutex<Receiver>",
            System::Tokio => "tokio spawn + DashSet",
            System::Disruptor => "disruptor-rs (raw SPSC, no dedup)",
        }
    }

    /// Whether the system runs this shape at all.
    pub fn fits(self, s: Shape) -> bool {
        match self {
            System::Disruptor => s.producers == 1 && s.workers == 1 && s.keys == 0,
            System::Tokio | System::StdMpsc => s.keys == 0,
            _ => true,
        }
    }
}

pub const CHANNEL_CAP: usize = 4_096;

/// Pins the calling thread to core `i % cores` (as quay's `Pinning::Auto`
/// does for workers), so every system gets the same placement.
pub fn pin(i: usize) {
    if let Some(cores) = core_affinity::get_core_ids() {
        if !cores.is_empty() {
            core_affinity::set_for_current(cores[i % cores.len()]);
        }
    }
}

/// Runs `n` jobs through `sys` in `shape`; returns the elapsed time.
pub fn run(sys: System, shape: Shape, n: u64) -> Duration {
    match sys {
        System::Quay => quay_run(shape, n, IdleStrategy::default()),
        System::CrossbeamPool => channel_pool(
            shape,
            n,
            crossbeam::channel::bounded,
            |tx, v| tx.send(v).is_ok(),
            |rx| rx.recv().ok(),
        ),
        System::Flume => channel_pool(
            shape,
            n,
            flume::bounded,
            |tx, v| tx.send(v).is_ok(),
            |rx| rx.recv().ok(),
        ),
        System::Kanal => channel_pool(
            shape,
            n,
            kanal::bounded,
            |tx, v| tx.send(v).is_ok(),
            |rx| rx.recv().ok(),
        ),
        System::StdMpsc => std_pool(shape, n),
        System::Tokio => tokio_run(shape, n),
        System::Disruptor => disruptor_run(n),
    }
}

/// quay with dedup on (the default) and latency recording on (the default).
pub fn quay_run(shape: Shape, n: u64, idle: IdleStrategy) -> Duration {
    let engine = Engine::<u64>::builder()
        .workers(shape.workers)
        .pin_workers(true)
        .idle(idle)
        .capacity(65_536)
        .build(|_, v| {
            std::hint::black_box(v);
            Ok(())
        })
        .expect("bench engine");
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..shape.producers {
            let sub = engine.submitter();
            s.spawn(move || {
                pin(shape.workers + p);
                let mut i = p as u64;
                let step = shape.producers as u64;
                if shape.batch > 1 {
                    let mut buf = Vec::with_capacity(shape.batch);
                    while i < n {
                        buf.clear();
                        while buf.len() < shape.batch && i < n {
                            buf.push(job(i, shape.keys));
                            i += step;
                        }
                        let rep = sub.submit_batch(buf.drain(..));
                        for e in rep.refused {
                            let _ = sub.submit(e.into_job());
                        }
                    }
                } else {
                    while i < n {
                        let _ = sub.submit(job(i, shape.keys));
                        i += step;
                    }
                }
            });
        }
    });
    let report = engine.shutdown();
    let elapsed = start.elapsed();
    assert_eq!(report.counts.completed, n, "quay lost jobs");
    elapsed
}

fn job(i: u64, keys: u64) -> Job<u64> {
    let j = Job::new(mix(i), i);
    if keys > 0 {
        j.keyed(i % keys)
    } else {
        j
    }
}

/// The hand-built pool: bounded channel(s), worker threads, a `DashSet` for
/// dedup at submit. Keyed: one channel per worker, chosen by key hash, so
/// each key's jobs run in order on one worker.
fn channel_pool<Tx, Rx>(
    shape: Shape,
    n: u64,
    make: impl Fn(usize) -> (Tx, Rx),
    send: impl Fn(&Tx, u64) -> bool + Sync,
    recv: impl Fn(&Rx) -> Option<u64> + Sync,
) -> Duration
where
    Tx: Clone + Send + Sync,
    Rx: Clone + Send + Sync,
{
    let channels: Vec<(Tx, Rx)> = if shape.keys > 0 {
        (0..shape.workers).map(|_| make(CHANNEL_CAP)).collect()
    } else {
        vec![make(CHANNEL_CAP)]
    };
    let seen: DashSet<u64> = DashSet::new();
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..shape.workers {
            let rx = channels[w % channels.len()].1.clone();
            let (done, recv) = (&done, &recv);
            s.spawn(move || {
                pin(w);
                let mut local = 0;
                while let Some(v) = recv(&rx) {
                    std::hint::black_box(v);
                    local += 1;
                }
                done.fetch_add(local, Ordering::Relaxed);
            });
        }
        let senders: Vec<Vec<Tx>> = (0..shape.producers)
            .map(|_| channels.iter().map(|c| c.0.clone()).collect())
            .collect();
        drop(channels);
        std::thread::scope(|ps| {
            for (p, txs) in senders.into_iter().enumerate() {
                let (seen, send) = (&seen, &send);
                ps.spawn(move || {
                    pin(shape.workers + p);
                    let mut i = p as u64;
                    while i < n {
                        let id = mix(i);
                        if seen.insert(id) {
                            let c = if shape.keys > 0 {
                                ((i % shape.keys).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
                                    as usize
                                    % txs.len()
                            } else {
                                0
                            };
                            send(&txs[c], i);
                        }
                        i += shape.producers as u64;
                    }
                    drop(txs);
                });
            }
        });
    });
    let elapsed = start.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), n, "pool lost jobs");
    elapsed
}

fn std_pool(shape: Shape, n: u64) -> Duration {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(CHANNEL_CAP);
    let rx = Arc::new(Mutex::new(rx));
    let seen: DashSet<u64> = DashSet::new();
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..shape.workers {
            let (rx, done) = (rx.clone(), &done);
            s.spawn(move || {
                pin(w);
                let mut local = 0;
                loop {
                    let v = rx.lock().unwrap().recv();
                    match v {
                        Ok(v) => {
                            std::hint::black_box(v);
                            local += 1;
                        }
                        Err(_) => break,
                    }
                }
                done.fetch_add(local, Ordering::Relaxed);
            });
        }
        std::thread::scope(|ps| {
            for p in 0..shape.producers {
                let (tx, seen) = (tx.clone(), &seen);
                ps.spawn(move || {
                    pin(shape.workers + p);
                    let mut i = p as u64;
                    while i < n {
                        if seen.insert(mix(i)) {
                            tx.send(i).unwrap();
                        }
                        i += shape.producers as u64;
                    }
                });
            }
        });
        drop(tx);
    });
    let elapsed = start.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), n);
    elapsed
}

fn tokio_run(shape: Shape, n: u64) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(shape.workers)
        .build()
        .expect("tokio runtime");
    let seen: Arc<DashSet<u64>> = Arc::new(DashSet::new());
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..shape.producers {
            let (handle, seen, done) = (rt.handle().clone(), seen.clone(), done.clone());
            s.spawn(move || {
                let mut i = p as u64;
                while i < n {
                    if seen.insert(mix(i)) {
                        let done = done.clone();
                        handle.spawn(async move {
                            std::hint::black_box(i);
                            done.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    i += shape.producers as u64;
                }
            });
        }
    });
    while done.load(Ordering::Relaxed) < n {
        std::thread::yield_now();
    }
    let elapsed = start.elapsed();
    drop(rt);
    elapsed
}

/// disruptor-rs, one producer and one consumer: the raw handoff, with no
/// job semantics at all (no dedup, no capacity accounting, no shutdown).
fn disruptor_run(n: u64) -> Duration {
    use disruptor::*;
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let start = Instant::now();
    let mut producer = build_single_producer(CHANNEL_CAP, || 0u64, BusySpin)
        .pin_at_core(0)
        .handle_events_with(move |e: &u64, _seq, _end: bool| {
            std::hint::black_box(e);
            // One writer: a plain load and store, no RMW.
            d.store(d.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        })
        .build();
    // Publish from a pinned thread of our own: pinning the caller would
    // shrink its affinity mask for every later run in this process.
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            for i in 0..n {
                producer.publish(|e| *e = i);
            }
            drop(producer); // joins the consumer after it has drained the ring
        });
    });
    let elapsed = start.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), n, "disruptor lost events");
    elapsed
}

/// Formats a jobs/s figure.
pub fn rate(jobs: u64, d: Duration) -> f64 {
    jobs as f64 / d.as_secs_f64()
}

pub mod latency {
    //! Queue wait at a fixed offered load, measured the same way for every
    //! system: a paced producer stamps each job with its *intended* send
    //! time (so a stalled producer does not hide waits: no coordinated
    //! omission), and the worker records `now - intended` when it starts
    //! the job.

    use super::{pin, CHANNEL_CAP};
    use hdrhistogram::Histogram;
    use quay::{Engine, IdleStrategy, Job};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Clone, Copy, Debug)]
    pub enum LatSystem {
        Quay(IdleStrategy),
        CrossbeamPool,
    }

    impl LatSystem {
        pub fn name(self) -> String {
            match self {
                LatSystem::Quay(IdleStrategy::BusySpin) => "quay, busy-spin".into(),
                LatSystem::Quay(IdleStrategy::Park) => "quay, park".into(),
                LatSystem::Quay(_) => "quay, spin-then-park".into(),
                LatSystem::CrossbeamPool => "crossbeam pool + DashSet".into(),
            }
        }
    }

    /// Prints queue wait p50/p99/p999/max at 100 k, 200 k and 500 k
    /// jobs/s for quay (each idle strategy) and the crossbeam pool.
    pub fn print_table(dur: Duration) {
        use quay::LatencySummary;
        println!(
            "{:<10} {:<28} {:>9} {:>9} {:>9} {:>9}  (µs)",
            "offered", "system", "p50", "p99", "p999", "max"
        );
        let mut pauses = Vec::new();
        for load in [100_000u64, 200_000, 500_000] {
            for sys in [
                LatSystem::Quay(IdleStrategy::BusySpin),
                LatSystem::Quay(IdleStrategy::default()),
                LatSystem::Quay(IdleStrategy::Park),
                LatSystem::CrossbeamPool,
            ] {
                let (h, p) = offered_with_pauses(sys, load, dur);
                let s = LatencySummary::of(&h);
                if let Some(p) = p {
                    pauses.push((load, sys.name(), p));
                }
                let us = |v: u64| v as f64 / 1_000.0;
                println!(
                    "{:<10} {:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    format!("{}k/s", load / 1_000),
                    sys.name(),
                    us(s.p50),
                    us(s.p99),
                    us(s.p999),
                    us(s.max)
                );
            }
        }
        print_pauses(&pauses);
    }

    fn hist() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")
    }

    /// Prints quay's worker pauses (`MetricsSnapshot::pauses`) of the runs
    /// above: what a job that arrived during one waited for.
    fn print_pauses(pauses: &[(u64, String, quay::Pauses)]) {
        use quay::LatencySummary;
        println!("\nquay's worker pauses in those runs (count, p50 / p99 / max, µs)");
        println!(
            "{:<10} {:<28} {:<30} {:<30} {:<30}",
            "offered", "system", "commit", "publish", "wake"
        );
        let us = |v: u64| v as f64 / 1_000.0;
        for (load, name, p) in pauses {
            let cell = |h: &Histogram<u64>| {
                let s = LatencySummary::of(h);
                format!(
                    "{} × {:.1} / {:.1} / {:.1}",
                    h.len(),
                    us(s.p50),
                    us(s.p99),
                    us(s.max)
                )
            };
            println!(
                "{:<10} {:<28} {:<30} {:<30} {:<30}",
                format!("{}k/s", load / 1_000),
                name,
                cell(&p.commit),
                cell(&p.publish),
                cell(&p.wake)
            );
        }
    }

    /// Offers `rate` jobs/s for `dur` from one producer to one worker.
    pub fn offered(sys: LatSystem, rate: u64, dur: Duration) -> Histogram<u64> {
        offered_with_pauses(sys, rate, dur).0
    }

    /// [`offered`], with quay's worker pauses (`None` for the pool).
    fn offered_with_pauses(
        sys: LatSystem,
        rate: u64,
        dur: Duration,
    ) -> (Histogram<u64>, Option<quay::Pauses>) {
        let mut pauses = None;
        let n = (rate as f64 * dur.as_secs_f64()) as u64;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        // The schedule starts at the first send, once the system is built:
        // building it is not queueing (quay's build reserves and zeroes its
        // seen-ID tables, some milliseconds).
        let start: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let h = Arc::new(Mutex::new(hist()));
        let record = {
            let (h, start) = (h.clone(), start.clone());
            move |intended: u64| {
                let base = *start.get_or_init(Instant::now);
                let now = base.elapsed().as_nanos() as u64;
                h.lock()
                    .unwrap()
                    .saturating_record(now.saturating_sub(intended).max(1));
            }
        };
        let pace = |i: u64| -> u64 {
            let base = *start.get_or_init(Instant::now);
            let intended = base + period * i as u32;
            while Instant::now() < intended {
                std::hint::spin_loop();
            }
            intended.duration_since(base).as_nanos() as u64
        };
        match sys {
            LatSystem::Quay(idle) => {
                let engine = Engine::<u64>::builder()
                    .workers(1)
                    .pin_workers(vec![0])
                    .idle(idle)
                    .capacity(65_536)
                    .build(move |_, &t| {
                        record(t);
                        Ok(())
                    })
                    .expect("engine");
                std::thread::scope(|s| {
                    s.spawn(|| {
                        pin(1);
                        for i in 0..n {
                            let t = pace(i);
                            let _ = engine.submit(Job::new(super::mix(i), t));
                        }
                    });
                });
                engine.shutdown();
                // The workers are joined: they published everything.
                pauses = Some(engine.metrics().pauses);
            }
            LatSystem::CrossbeamPool => {
                let (tx, rx) = crossbeam::channel::bounded::<u64>(CHANNEL_CAP);
                let seen = dashmap::DashSet::new();
                std::thread::scope(|s| {
                    s.spawn(move || {
                        pin(0);
                        while let Ok(t) = rx.recv() {
                            record(t);
                        }
                    });
                    s.spawn(move || {
                        pin(1);
                        for i in 0..n {
                            let t = pace(i);
                            if seen.insert(super::mix(i)) {
                                tx.send(t).unwrap();
                            }
                        }
                    });
                });
            }
        }
        let out = h.lock().unwrap().clone();
        (out, pauses)
    }
}
