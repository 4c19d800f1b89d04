//! The slow-handler shape: 99 % no-op jobs and 1 % jobs that block for
//! 1 ms (`thread::sleep`, like a handler's synchronous call to a slow
//! service), offered at a fixed rate by one paced producer to 2 workers.
//!
//! Why a sleep and not a spin: on a 2-core machine the producer shares a
//! core with a worker, and a 1 ms spin then fights the producer for that
//! core. The first runs spun, and every system's fast-job p99 was the
//! scheduler's time slice (1.2–1.5 ms for quay and the crossbeam pool,
//! 3.9 ms for kanal's): the table measured oversubscription, not what
//! waits behind a slow handler. A blocked handler frees its core, so what
//! is left is the question this shape asks: do fast jobs wait behind a
//! slow one that was claimed before them?
//!
//! Which jobs are slow is the same deterministic set for every system:
//! job `i` is slow when `mix(i) % 100 == 0`. Queue wait is measured as in
//! [`super::latency`]: the producer stamps each job with its *intended*
//! send time (no coordinated omission) and the worker records
//! `now - intended` when it starts the job, before a slow job's sleep.
//!
//! Placement: workers on cores 0 and 1 (quay's `Pinning::Auto`, the pools'
//! `pin(w)`: both `i % cores`), the producer on core `1 % cores`, as in
//! the queue-wait table. On a 2-core machine the producer shares core 1
//! with worker 1; it yields the core while it waits to send.

use super::{mix, pin, System, CHANNEL_CAP};
use hdrhistogram::Histogram;
use quay::{Engine, Job, LatencySummary};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Worker threads in every system.
pub const WORKERS: usize = 2;
/// One job in `SLOW_EVERY` is slow.
pub const SLOW_EVERY: u64 = 100;
/// How long a slow job blocks.
pub const SLOW_FOR: Duration = Duration::from_millis(1);
/// The offered loads, jobs/s: at 50 k/s the slow jobs alone keep half a
/// worker busy (500 × 1 ms per second).
pub const LOADS: [u64; 2] = [20_000, 50_000];
/// The systems, in the order each round runs them.
pub const SYSTEMS: [System; 3] = [System::Quay, System::CrossbeamPool, System::Kanal];

/// Whether job `i` is slow: the same set for every system.
pub fn is_slow(i: u64) -> bool {
    mix(i) % SLOW_EVERY == 0
}

/// The payload: intended send time (ns from the schedule's start) in the
/// high 63 bits, the slow flag in the low bit.
fn payload(i: u64, intended_ns: u64) -> u64 {
    (intended_ns << 1) | u64::from(is_slow(i))
}

/// Queue waits (ns) of one run: the fast jobs' and all jobs'.
pub struct Waits {
    pub fast: Histogram<u64>,
    pub all: Histogram<u64>,
}

impl Waits {
    fn new() -> Waits {
        let h = || Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        Waits {
            fast: h(),
            all: h(),
        }
    }
}

/// The schedule's start (set by the producer's first send, once the
/// system is built) and one histogram pair per worker, so the two workers
/// never contend on a lock to record.
struct Recorder {
    start: OnceLock<Instant>,
    per_worker: Vec<Mutex<Waits>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            start: OnceLock::new(),
            per_worker: (0..WORKERS).map(|_| Mutex::new(Waits::new())).collect(),
        }
    }

    fn base(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// The handler: records the job's wait, then (if slow) sleeps 1 ms.
    fn job(&self, worker: usize, v: u64) {
        let started = Instant::now();
        let now = started.duration_since(self.base()).as_nanos() as u64;
        let wait = now.saturating_sub(v >> 1).max(1);
        let slow = v & 1 == 1;
        {
            let mut w = self.per_worker[worker % WORKERS].lock().unwrap();
            w.all.saturating_record(wait);
            if !slow {
                w.fast.saturating_record(wait);
            }
        }
        if slow {
            std::thread::sleep(SLOW_FOR);
        }
    }

    fn merge(&self) -> Waits {
        let mut out = Waits::new();
        for w in &self.per_worker {
            let w = w.lock().unwrap();
            out.fast.add(&w.fast).expect("same bounds");
            out.all.add(&w.all).expect("same bounds");
        }
        out
    }

    /// The paced producer: pinned to core `1 % cores`, sends job `i` at
    /// `i / rate` s after its first send, stamped with that intended time
    /// (a late send still carries it, so a stall shows up as wait).
    fn produce(&self, rate: u64, n: u64, mut send: impl FnMut(u64, u64)) {
        pin(1);
        let base = self.base();
        for i in 0..n {
            let intended = (u128::from(i) * 1_000_000_000 / u128::from(rate)) as u64;
            let at = base + Duration::from_nanos(intended);
            // Yield rather than spin: worker 1 shares this core.
            while Instant::now() < at {
                std::thread::yield_now();
            }
            send(i, payload(i, intended));
        }
    }
}

/// Offers `rate` jobs/s for `dur` to `sys` (quay, or the crossbeam or kanal
/// pool + DashSet) with 2 workers; returns the waits.
pub fn offered(sys: System, rate: u64, dur: Duration) -> Waits {
    let n = (rate as f64 * dur.as_secs_f64()) as u64;
    let rec = Arc::new(Recorder::new());
    match sys {
        System::Quay => {
            let r = rec.clone();
            // Default idle strategy, dedup on, unkeyed; workers pinned to
            // cores 0 and 1 (`Pinning::Auto`: worker i on core i % cores).
            let engine = Engine::<u64>::builder()
                .workers(WORKERS)
                .pin_workers(true)
                .capacity(65_536)
                .build(move |ctx, &v| {
                    r.job(ctx.worker(), v);
                    Ok(())
                })
                .expect("engine");
            std::thread::scope(|s| {
                s.spawn(|| {
                    rec.produce(rate, n, |i, v| {
                        engine
                            .submit(Job::new(mix(i), v))
                            .expect("quay refused a job");
                    })
                });
            });
            let report = engine.shutdown();
            assert_eq!(report.counts.completed, n, "quay lost jobs");
        }
        System::CrossbeamPool => pool(
            &rec,
            rate,
            n,
            crossbeam::channel::bounded,
            |tx, v| tx.send(v).is_ok(),
            |rx| rx.recv().ok(),
        ),
        System::Kanal => pool(
            &rec,
            rate,
            n,
            kanal::bounded,
            |tx, v| tx.send(v).is_ok(),
            |rx| rx.recv().ok(),
        ),
        other => panic!("slow shape: no runner for {}", other.name()),
    }
    let waits = rec.merge();
    assert_eq!(waits.all.len(), n, "{}: jobs unrecorded", sys.name());
    waits
}

/// The hand-built pool: one bounded channel, 2 worker threads pinned to
/// cores 0 and 1, a `DashSet` for dedup at submit.
fn pool<Tx, Rx>(
    rec: &Recorder,
    rate: u64,
    n: u64,
    make: impl Fn(usize) -> (Tx, Rx),
    send: impl Fn(&Tx, u64) -> bool + Sync,
    recv: impl Fn(&Rx) -> Option<u64> + Sync,
) where
    Tx: Send,
    Rx: Clone + Send,
{
    let (tx, rx) = make(CHANNEL_CAP);
    let seen = dashmap::DashSet::new();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (rx, recv) = (rx.clone(), &recv);
            s.spawn(move || {
                pin(w);
                while let Some(v) = recv(&rx) {
                    rec.job(w, v);
                }
            });
        }
        drop(rx);
        let send = &send;
        s.spawn(move || {
            rec.produce(rate, n, |i, v| {
                if seen.insert(mix(i)) {
                    assert!(send(&tx, v), "pool closed early");
                }
            });
            drop(tx);
        });
    });
}

/// Prints, for each offered load and each run (`rounds` rounds, systems
/// interleaved, every run's row), the fast jobs' p50/p99/p999/max queue
/// wait and all jobs' p99, in µs.
pub fn print_table(dur: Duration, rounds: usize) {
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    println!(
        "\nslow handler: 99% no-op jobs, 1% block (sleep) {} ms (job i slow when mix(i) % {SLOW_EVERY} == 0),",
        SLOW_FOR.as_secs_f64() * 1e3
    );
    println!(
        "1 paced producer, {WORKERS} workers, {} ms per run, {rounds} round(s) interleaved, every run shown",
        dur.as_millis()
    );
    println!(
        "threads: workers on cores 0 and 1, producer on core 1 % cores; \
         3 busy threads on {cores} cores{}",
        if cores <= 2 {
            " (the producer shares a core with a worker)"
        } else {
            ""
        }
    );
    println!("queue waits in µs; slow = how many slow jobs the run had");
    println!(
        "{:<8} {:>3} {:<26} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "offered",
        "run",
        "system",
        "fast p50",
        "fast p99",
        "fast p999",
        "fast max",
        "all p99",
        "slow"
    );
    let us = |v: u64| v as f64 / 1_000.0;
    for load in LOADS {
        for round in 1..=rounds {
            for sys in SYSTEMS {
                let w = offered(sys, load, dur);
                let (f, a) = (LatencySummary::of(&w.fast), LatencySummary::of(&w.all));
                println!(
                    "{:<8} {:>3} {:<26} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>6}",
                    format!("{}k/s", load / 1_000),
                    round,
                    sys.name(),
                    us(f.p50),
                    us(f.p99),
                    us(f.p999),
                    us(f.max),
                    us(a.p99),
                    a.count - f.count
                );
            }
        }
    }
}
