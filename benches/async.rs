//! `cargo bench --bench async`: what quay's async APIs cost and what they
//! buy, as ratios measured in one run on one machine.
//!
//! 1. **Submit overhead.** `n` no-op jobs submitted one at a time, timed
//!    over the submit loop alone (ns/job: the median over chunks of 10 000
//!    jobs, so a chunk in which the thread was preempted does not count),
//!    into an engine with room for every one of them (its capacity and its
//!    ring both hold all `n`, so no submit ever finds it full: the fast
//!    path): `try_submit` from a plain thread;
//!    `submit_async(job).await` from a task on a tokio current-thread
//!    runtime and on a multi-thread one (2 workers); and `try_submit` from a
//!    task on each runtime, which separates the runtime's own cost from
//!    `submit_async`'s. Each with dedup on (the default; with room for `n`
//!    live jobs its seen-ID table is large, so its inserts miss the cache)
//!    and off (the submit path alone). Then a small engine (capacity 1 024)
//!    that the producer keeps full, so `submit_async` really waits:
//!    throughput from the first submit to the last job done, against the
//!    blocking `submit` from a plain thread.
//! 2. **I/O-bound throughput.** Jobs that each await a 10 ms tokio timer,
//!    as jobs/s from the first submit to the last job done: quay async
//!    handlers at concurrency 64 and 5 000 per worker, the same keyed over
//!    1 000 keys, quay sync handlers that block in `std::thread::sleep`, and
//!    `tokio::spawn` per job on the same tokio runtime. Each row shows its
//!    floor: the least wall time its in-flight bound allows.
//!
//! Every figure is the best of 3 interleaved rounds (a round runs every
//! case of a table once), so a slow spell on a shared machine hits every
//! case alike. Nothing is asserted about timing; the only checks are that
//! every job was accepted and completed. `--quick` (or `QUAY_ASYNC_QUICK=1`)
//! makes every run short: a smoke test for CI.

#[path = "common/mod.rs"]
mod common;

use common::mix;
use quay::{Engine, Job, Submitted, Submitter};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::{Builder as TokioBuilder, Runtime};

/// What each I/O-bound job waits for.
const IO: Duration = Duration::from_millis(10);
/// Workers, for quay's engines and tokio's multi-thread runtimes alike.
const WORKERS: usize = 2;
/// The small engine of the waiting-submit table.
const SMALL_CAPACITY: u64 = 1_024;

/// Run sizes: full, or `--quick`.
struct Sizes {
    /// Jobs per fast-path and waiting-submit run.
    submit: u64,
    /// Jobs per async I/O-bound run (and `tokio::spawn`).
    io: u64,
    /// Jobs per sync I/O-bound run (2 workers sleeping 10 ms each).
    io_sync: u64,
    /// Keys of the keyed I/O-bound run (its jobs are spread evenly).
    keys: u64,
    /// Interleaved rounds; each figure is the best.
    reps: usize,
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var_os("QUAY_ASYNC_QUICK").is_some();
    let s = if quick {
        Sizes {
            submit: 20_000,
            io: 1_000,
            io_sync: 40,
            keys: 100,
            reps: 1,
        }
    } else {
        Sizes {
            submit: 1_000_000,
            io: 10_000,
            io_sync: 400,
            keys: 1_000,
            reps: 3,
        }
    };
    println!(
        "quay async bench{}: best of {} interleaved round(s)",
        if quick { " (--quick)" } else { "" },
        s.reps
    );
    println!(
        "machine: {}, {} cores",
        common::cpu_model(),
        core_affinity::get_core_ids().map_or(0, |c| c.len())
    );
    let current = TokioBuilder::new_current_thread()
        .build()
        .expect("tokio current-thread runtime");
    let multi = TokioBuilder::new_multi_thread()
        .worker_threads(WORKERS)
        .build()
        .expect("tokio multi-thread runtime");
    submit_overhead(&s, &current, &multi);
    waiting_submit(&s, &current, &multi);
    drop((current, multi));
    let io = TokioBuilder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("tokio multi-thread runtime with timers");
    io_bound(&s, &io);
}

// 1. Submit overhead: the fast path.

/// The fast-path cases.
#[derive(Clone, Copy)]
enum Path {
    TryThread,
    AsyncCurrent,
    AsyncMulti,
    TryCurrent,
    TryMulti,
}

/// The fast-path cases in table order, with their names.
const PATHS: [(Path, &str); 5] = [
    (Path::TryThread, "(a)  try_submit, plain thread"),
    (
        Path::AsyncCurrent,
        "(b)  submit_async().await, current-thread task",
    ),
    (
        Path::AsyncMulti,
        "(c)  submit_async().await, multi-thread task",
    ),
    (Path::TryCurrent, "(d1) try_submit, current-thread task"),
    (Path::TryMulti, "(d2) try_submit, multi-thread task"),
];

/// One worker running a no-op handler, unpinned (as tokio's threads are),
/// with room for `capacity` jobs in the gate and in its ring (at least the
/// default 4 096 slots): no submit of `capacity` jobs can find it full.
fn engine(capacity: u64, dedup: bool) -> Engine<u64> {
    Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(capacity)
        .dedup(dedup)
        .ring_capacity((capacity as usize).next_power_of_two().max(4_096))
        .build(|_, v| {
            std::hint::black_box(v);
            Ok(())
        })
        .expect("bench engine")
}

fn job(i: u64) -> Job<u64> {
    Job::new(mix(i), i)
}

/// Jobs per timed chunk of a submit loop.
const CHUNK: u64 = 10_000;

/// The chunks `[start, end)` of `0..n`.
fn chunks(n: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..n.div_ceil(CHUNK)).map(move |c| (c * CHUNK, ((c + 1) * CHUNK).min(n)))
}

/// `try_submit`s `n` jobs: each chunk's ns/job, and how many were accepted.
fn try_loop(sub: &Submitter<u64>, n: u64) -> (Vec<f64>, u64) {
    let (mut per_job, mut accepted) = (Vec::new(), 0);
    for (lo, hi) in chunks(n) {
        let start = Instant::now();
        for i in lo..hi {
            accepted += u64::from(matches!(sub.try_submit(job(i)), Ok(Submitted::Accepted)));
        }
        per_job.push(start.elapsed().as_nanos() as f64 / (hi - lo) as f64);
    }
    (per_job, accepted)
}

/// `submit_async(..).await`s `n` jobs one at a time, as `try_loop`.
async fn async_loop(sub: Submitter<u64>, n: u64) -> (Vec<f64>, u64) {
    let (mut per_job, mut accepted) = (Vec::new(), 0);
    for (lo, hi) in chunks(n) {
        let start = Instant::now();
        for i in lo..hi {
            let r = sub.submit_async(job(i)).await;
            accepted += u64::from(matches!(r, Ok(Submitted::Accepted)));
        }
        per_job.push(start.elapsed().as_nanos() as f64 / (hi - lo) as f64);
    }
    (per_job, accepted)
}

/// The median: a chunk in which the thread was preempted is an outlier.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs `fut` as a spawned task on `rt` and waits for its output.
fn in_task<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut)).expect("bench task")
}

/// One fast-path run: the median chunk's ns/job and the engine's failed
/// attempts for lack of room (`rejected_full`, 0 on the fast path).
fn fast_run(path: Path, n: u64, dedup: bool, rts: [&Runtime; 2]) -> (f64, u64) {
    let [current, multi] = rts;
    let engine = engine(n, dedup);
    let sub = engine.submitter();
    let (t, accepted) = match path {
        Path::TryThread => try_loop(&sub, n),
        Path::AsyncCurrent => in_task(current, async_loop(sub, n)),
        Path::AsyncMulti => in_task(multi, async_loop(sub, n)),
        Path::TryCurrent => in_task(current, async move { try_loop(&sub, n) }),
        Path::TryMulti => in_task(multi, async move { try_loop(&sub, n) }),
    };
    let full = engine.metrics().counters.rejected_full;
    let report = engine.shutdown();
    assert_eq!((accepted, report.counts.completed), (n, n), "jobs lost");
    (median(t), full)
}

fn submit_overhead(s: &Sizes, current: &Runtime, multi: &Runtime) {
    let n = s.submit;
    println!(
        "\n1. submit overhead, fast path: {n} no-op jobs one at a time, 1 quay worker, \
         capacity and ring hold all {n} (never full); ns/job of the submit loop alone, \
         the median over its {CHUNK}-job chunks; tokio multi-thread = {WORKERS} workers"
    );
    // [dedup on, dedup off] × path; rounds interleave every run.
    let mut best = [[(f64::MAX, 0u64); PATHS.len()]; 2];
    for _ in 0..s.reps {
        for (row, dedup) in best.iter_mut().zip([true, false]) {
            for (b, &(p, _)) in row.iter_mut().zip(&PATHS) {
                let r = fast_run(p, n, dedup, [current, multi]);
                if r.0 < b.0 {
                    *b = r;
                }
            }
        }
    }
    let ns = |d: usize, i: usize| best[d][i].0;
    println!(
        "{:<50} {:>14} {:>7} {:>15} {:>7} {:>14}",
        "submit path", "dedup on ns/job", "× (a)", "dedup off ns/job", "× (a)", "full attempts"
    );
    for (i, (_, name)) in PATHS.iter().enumerate() {
        println!(
            "{:<50} {:>15.1} {:>7.2} {:>16.1} {:>7.2} {:>14}",
            name,
            ns(0, i),
            ns(0, i) / ns(0, 0),
            ns(1, i),
            ns(1, i) / ns(1, 0),
            best[0][i].1 + best[1][i].1
        );
    }
    for (d, what) in ["dedup on", "dedup off"].iter().enumerate() {
        println!(
            "submit_async's own cost over try_submit in the same kind of task, {what}: \
             {:+.1} ns/job current-thread ((b) − (d1)), {:+.1} ns/job multi-thread ((c) − (d2))",
            ns(d, 1) - ns(d, 3),
            ns(d, 2) - ns(d, 4)
        );
    }
    println!(
        "dedup on is quay's default; with room for {n} live jobs its seen-ID table is sized \
         for them, so each submit's insert tends to miss the cache. dedup off leaves the \
         submit path alone. full attempts: submits that found the engine full (0: the fast path)."
    );
}

// 1b. A small engine kept full: submit_async really waits.

#[derive(Clone, Copy)]
enum Wait {
    Blocking,
    AsyncCurrent,
    AsyncMulti,
}

/// The waiting cases in table order, with their names.
const WAITS: [(Wait, &str); 3] = [
    (Wait::Blocking, "submit (blocking), plain thread"),
    (Wait::AsyncCurrent, "submit_async().await, current-thread"),
    (Wait::AsyncMulti, "submit_async().await, multi-thread"),
];

/// One waiting run: time from the first submit to the last job done (the
/// shutdown's return, as in `benches/compare.rs`) and failed attempts.
fn wait_run(w: Wait, n: u64, rts: [&Runtime; 2]) -> (Duration, u64) {
    let [current, multi] = rts;
    let engine = engine(SMALL_CAPACITY, true);
    let sub = engine.submitter();
    let start = Instant::now();
    let accepted = match w {
        Wait::Blocking => (0..n)
            .map(|i| u64::from(matches!(sub.submit(job(i)), Ok(Submitted::Accepted))))
            .sum(),
        Wait::AsyncCurrent => in_task(current, async_loop(sub, n)).1,
        Wait::AsyncMulti => in_task(multi, async_loop(sub, n)).1,
    };
    let full = engine.metrics().counters.rejected_full;
    let report = engine.shutdown();
    let t = start.elapsed();
    assert_eq!((accepted, report.counts.completed), (n, n), "jobs lost");
    (t, full)
}

fn waiting_submit(s: &Sizes, current: &Runtime, multi: &Runtime) {
    let n = s.submit;
    println!(
        "\n1b. a small engine kept full: {n} no-op jobs one at a time (submit_async from a \
         task on each runtime), 1 quay worker, capacity {SMALL_CAPACITY}; time from the \
         first submit to the last job done"
    );
    let mut best = [(Duration::MAX, 0u64); WAITS.len()];
    for _ in 0..s.reps {
        for (b, &(w, _)) in best.iter_mut().zip(&WAITS) {
            let r = wait_run(w, n, [current, multi]);
            if r.0 < b.0 {
                *b = r;
            }
        }
    }
    let rate = |i: usize| n as f64 / best[i].0.as_secs_f64();
    println!(
        "{:<50} {:>12} {:>9} {:>10} {:>14}",
        "submit path", "jobs/s", "ns/job", "× submit", "full attempts"
    );
    for (i, (_, name)) in WAITS.iter().enumerate() {
        println!(
            "{:<50} {:>12.0} {:>9.1} {:>10.2} {:>14}",
            name,
            rate(i),
            1e9 / rate(i),
            rate(i) / rate(0),
            best[i].1
        );
    }
    println!(
        "full attempts: submit attempts that found the engine full (the engine's \
         rejected_full; a waiting submit tries again, so one wait may count more than once); \
         × submit: jobs/s over the blocking submit's (higher is faster)"
    );
}

// 2. I/O-bound throughput.

/// Counts jobs down to zero; `wait` returns once the last one is done.
struct Done {
    left: AtomicU64,
    all: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn new(n: u64) -> Arc<Done> {
        Arc::new(Done {
            left: AtomicU64::new(n),
            all: Mutex::new(false),
            cv: Condvar::new(),
        })
    }

    fn hit(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.all.lock().expect("done lock") = true;
            self.cv.notify_all();
        }
    }

    fn wait(&self) {
        let mut all = self.all.lock().expect("done lock");
        while !*all {
            all = self.cv.wait(all).expect("done lock");
        }
    }
}

/// The I/O-bound cases.
#[derive(Clone, Copy)]
enum Io {
    Async64,
    Async5000,
    Sync,
    Spawn,
    Keyed,
}

/// The I/O-bound cases in table order, with their names.
const IOS: [(Io, &str); 5] = [
    (Io::Async64, "(a) quay async, concurrency 64"),
    (Io::Async5000, "(b) quay async, concurrency 5000"),
    (Io::Sync, "(c) quay sync, thread::sleep"),
    (Io::Spawn, "(d) tokio::spawn per job"),
    (Io::Keyed, "(e) quay async keyed, concurrency 5000"),
];

impl Io {
    fn jobs(self, s: &Sizes) -> u64 {
        match self {
            Io::Sync => s.io_sync,
            _ => s.io,
        }
    }

    /// The most jobs that can wait on their timer at once.
    fn in_flight(self, s: &Sizes) -> u64 {
        let n = self.jobs(s);
        let w = WORKERS as u64;
        match self {
            Io::Async64 => 64 * w,
            Io::Async5000 => 5_000 * w,
            Io::Sync => w,
            Io::Spawn => n,
            // A key runs one job at a time.
            Io::Keyed => (5_000 * w).min(s.keys),
        }
        .min(n)
    }

    /// The least wall time: jobs / in flight × 10 ms (keyed: a key's jobs
    /// run one after another, jobs / keys × 10 ms, the same bound).
    fn floor(self, s: &Sizes) -> Duration {
        IO.mul_f64(self.jobs(s) as f64 / self.in_flight(s) as f64)
    }
}

/// An engine of `WORKERS` workers whose async handler awaits a 10 ms tokio
/// timer, each worker inside `rt`'s context (for the timer driver).
fn io_engine(rt: &Runtime, concurrency: usize, done: &Arc<Done>) -> Engine<u64> {
    let handle = rt.handle().clone();
    let done = done.clone();
    Engine::<u64>::builder()
        .workers(WORKERS)
        .pin_workers(false)
        .concurrency(concurrency)
        .worker_context(move |run| {
            let _entered = handle.enter();
            run()
        })
        .build_async(move |_, _| {
            let done = done.clone();
            async move {
                tokio::time::sleep(IO).await;
                done.hit();
                Ok(())
            }
        })
        .expect("bench engine")
}

/// Submits `n` jobs (keyed over `keys` if nonzero) and waits for the last
/// to be done: the wall time, and the time the submits took. Then shuts
/// down and checks every job ran.
fn time_quay(engine: Engine<u64>, n: u64, keys: u64, done: &Done) -> [Duration; 2] {
    let start = Instant::now();
    for i in 0..n {
        let j = job(i);
        let j = if keys > 0 { j.keyed(i % keys) } else { j };
        assert!(matches!(engine.submit(j), Ok(Submitted::Accepted)));
    }
    let submitted = start.elapsed();
    done.wait();
    let t = start.elapsed();
    assert_eq!(engine.shutdown().counts.completed, n, "jobs lost");
    [t, submitted]
}

fn io_run(case: Io, s: &Sizes, rt: &Runtime) -> [Duration; 2] {
    let n = case.jobs(s);
    let done = Done::new(n);
    match case {
        Io::Async64 => time_quay(io_engine(rt, 64, &done), n, 0, &done),
        Io::Async5000 => time_quay(io_engine(rt, 5_000, &done), n, 0, &done),
        Io::Keyed => time_quay(io_engine(rt, 5_000, &done), n, s.keys, &done),
        Io::Sync => {
            let d = done.clone();
            let engine = Engine::<u64>::builder()
                .workers(WORKERS)
                .pin_workers(false)
                .build(move |_, _| {
                    std::thread::sleep(IO);
                    d.hit();
                    Ok(())
                })
                .expect("bench engine");
            time_quay(engine, n, 0, &done)
        }
        Io::Spawn => {
            let start = Instant::now();
            for _ in 0..n {
                let d = done.clone();
                rt.spawn(async move {
                    tokio::time::sleep(IO).await;
                    d.hit();
                });
            }
            let submitted = start.elapsed();
            done.wait();
            [start.elapsed(), submitted]
        }
    }
}

fn io_bound(s: &Sizes, rt: &Runtime) {
    println!(
        "\n2. I/O-bound: each job awaits a 10 ms timer (tokio::time::sleep; sync: \
         std::thread::sleep); {WORKERS} quay workers inside a {WORKERS}-worker tokio \
         runtime's context; {} jobs ({} for sync; keyed: over {} keys, {} per key); \
         wall time from the first submit to the last job done",
        s.io,
        s.io_sync,
        s.keys,
        s.io / s.keys
    );
    let mut best = [[Duration::MAX; 2]; IOS.len()];
    for _ in 0..s.reps {
        for (b, &(c, _)) in best.iter_mut().zip(&IOS) {
            *b = (*b).min(io_run(c, s, rt));
        }
    }
    let rate = |i: usize| IOS[i].0.jobs(s) as f64 / best[i][0].as_secs_f64();
    let spawn = rate(3);
    println!(
        "{:<40} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "case",
        "jobs",
        "in flight",
        "floor ms",
        "wall ms",
        "submit ms",
        "jobs/s",
        "ceiling/s",
        "% ceil",
        "× spawn"
    );
    for (i, (c, name)) in IOS.iter().enumerate() {
        let floor = c.floor(s);
        let ceiling = c.jobs(s) as f64 / floor.as_secs_f64();
        // Two decimals, four below 0.1 (the sync row's ratio is tiny).
        let x = rate(i) / spawn;
        println!(
            "{:<40} {:>6} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>10.0} {:>7.0}% {:>8}",
            name,
            c.jobs(s),
            c.in_flight(s),
            floor.as_secs_f64() * 1e3,
            best[i][0].as_secs_f64() * 1e3,
            best[i][1].as_secs_f64() * 1e3,
            rate(i),
            ceiling,
            100.0 * rate(i) / ceiling,
            format!("{x:.*}", if x < 0.1 { 4 } else { 2 })
        );
    }
    let a = Io::Async64;
    println!(
        "floor: the least wall time the in-flight bound allows, jobs / in flight × 10 ms. \
         (a) holds at most 64 × {WORKERS} = {} in flight, so its floor is {} / {} × 10 ms = \
         {:.2} s; (b) and (d) ≈ 10 ms; (c) {WORKERS} blocked threads: {} / {WORKERS} × 10 ms = \
         {:.1} s, so it runs fewer jobs and compares by jobs/s; (e) a key's {} jobs run one \
         after another: {} × 10 ms = {:.0} ms. The wall time includes submitting every \
         job from one thread (submit ms: until the last submit returned, of the same run).",
        a.in_flight(s),
        a.jobs(s),
        a.in_flight(s),
        a.floor(s).as_secs_f64(),
        s.io_sync,
        Io::Sync.floor(s).as_secs_f64(),
        s.io / s.keys,
        s.io / s.keys,
        Io::Keyed.floor(s).as_secs_f64() * 1e3
    );
    println!(
        "× spawn: jobs/s over tokio::spawn's. tokio::spawn gives no per-key order and no \
         dedup (and no retries, DLQ or accounting); every quay row dedups each job's ID at \
         submit, and (e) runs each key's jobs one at a time, in order."
    );
}
