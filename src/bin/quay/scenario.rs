//! The demo's scenarios: sign-up (the seed's story), noop and keyed.

use crate::args::{Args, Scenario};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quay::{Builder, Counts, DeadLetter, Engine, Job, JobError, MetricsSnapshot, Submitter};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demo engine's capacity.
pub const CAPACITY: u64 = 65_536;

/// What a job does.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Keyed by user; must finish before the user's notification starts.
    CreateProfile,
    /// Keyed by user: about 50 µs of simulated I/O.
    WelcomeEmail,
    /// About 200 µs of CPU.
    ResizePhoto,
    /// About 5 µs.
    AnalyticsPing,
    /// Keyed by user: checks the profile job ran first.
    FirstNotification,
    /// Nothing.
    Noop,
    /// Nothing, with the per-key order check: the `n`-th job of its key.
    Keyed { key: u64, n: u64 },
}

/// A job's payload: its kind, its user, and its index for the checks.
#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub kind: Kind,
    pub user: u64,
    pub seq: u64,
}

pub struct Outcome {
    pub elapsed: Duration,
    pub counts: Counts,
    pub metrics: MetricsSnapshot,
    /// The user's wait per request (sign-up only), nanoseconds.
    pub request: Option<Histogram<u64>>,
    pub order_violations: u64,
    pub double_successes: u64,
    pub dead: Vec<DeadLetter<Task>>,
    pub workers: usize,
}

impl Outcome {
    pub fn lost(&self) -> i128 {
        let c = &self.counts;
        c.accepted as i128 - c.completed as i128 - c.dead as i128 - c.returned as i128
    }

    pub fn is_clean(&self) -> bool {
        self.lost() == 0 && self.order_violations == 0 && self.double_successes == 0
    }

    pub fn jobs_per_s(&self) -> f64 {
        (self.counts.completed + self.counts.dead) as f64 / self.elapsed.as_secs_f64()
    }
}

/// The checks every handler feeds.
struct Checks {
    /// Successes per job index: more than one is a double success.
    succeeded: Vec<AtomicU8>,
    double: AtomicU64,
    /// Per user: the profile job completed.
    profile_done: Vec<AtomicBool>,
    /// Per key: the last `n` that ran (keyed scenario).
    last_n: Vec<AtomicU64>,
    violations: AtomicU64,
}

impl Checks {
    fn success(&self, seq: u64) {
        if self.succeeded[seq as usize].fetch_add(1, Ordering::Relaxed) > 0 {
            self.double.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// SplitMix64's finaliser: a bijection on u64, so distinct inputs give
/// distinct, well-spread IDs (no sequential-ID cache advantage).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fault drawn from a job's index: reproducible run to run.
fn roll(seq: u64, salt: u64) -> u64 {
    mix(seq ^ salt.rotate_left(32)) % 10_000
}

fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

fn handle(checks: &Checks, ctx: &quay::JobContext, t: &Task) -> Result<(), JobError> {
    let first = ctx.attempt() == 1;
    let faulty = !matches!(t.kind, Kind::Noop | Kind::Keyed { .. });
    if faulty {
        // ~0.2% poison (never the profile or notification: their order is
        // what the check watches): always fails, ends in the DLQ.
        let keyed_order = matches!(t.kind, Kind::CreateProfile | Kind::FirstNotification);
        if !keyed_order && roll(t.seq, 1) < 20 {
            return Err(JobError::retry("poison: upstream rejects this payload"));
        }
        // ~3% transient: the first attempt fails, the retry succeeds.
        if first && roll(t.seq, 2) < 300 {
            return Err(JobError::retry("transient: connection reset"));
        }
        // A few panic on their first attempt.
        if first && matches!(t.kind, Kind::ResizePhoto) && roll(t.seq, 3) < 10 {
            panic!("resize: corrupt image header (job {})", t.seq);
        }
    }
    match t.kind {
        Kind::CreateProfile => checks.profile_done[t.user as usize].store(true, Ordering::Release),
        Kind::WelcomeEmail => std::thread::sleep(Duration::from_micros(50)),
        Kind::ResizePhoto => spin_for(Duration::from_micros(200)),
        Kind::AnalyticsPing => spin_for(Duration::from_micros(5)),
        Kind::FirstNotification => {
            if !checks.profile_done[t.user as usize].load(Ordering::Acquire) {
                checks.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
        Kind::Noop => {}
        Kind::Keyed { key, n } => {
            let last = checks.last_n[key as usize].swap(n, Ordering::AcqRel);
            if last.wrapping_add(1) != n {
                checks.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    checks.success(t.seq);
    Ok(())
}

/// `n` cells made by `cell`, or an error naming `what` if memory for them
/// cannot be had (instead of aborting on a huge `--jobs` or `--keys`).
fn cells<C>(n: u64, what: &str, cell: impl Fn() -> C) -> Result<Vec<C>, String> {
    let too_many =
        || format!("{what}: {n} is too many (cannot allocate the demo's checks for them)");
    let len = usize::try_from(n).map_err(|_| too_many())?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_many())?;
    v.extend((0..len).map(|_| cell()));
    Ok(v)
}

/// The demo's engine settings.
fn builder(args: &Args) -> Builder<Task> {
    let mut b = Engine::<Task>::builder()
        .pin_workers(args.pin())
        .idle(args.idle_strategy())
        .capacity(CAPACITY)
        .dedup_window(args.dedup_window)
        .backoff(Duration::from_millis(1), Duration::from_millis(50));
    if let Some(w) = args.workers {
        b = b.workers(w);
    }
    b
}

/// Checks the engine settings the run will use, without starting a
/// thread: the builder's own error (a bad `--workers`, say) comes back.
pub fn check(args: &Args) -> Result<(), String> {
    builder(args).driver().map(drop).map_err(|e| e.to_string())
}

/// Runs the scenario. `args` must have passed [`Args::validate`] and
/// [`check`]: every count is in range.
pub fn run(args: &Args) -> Result<Outcome, String> {
    let jobs = args.jobs;
    let producers = args.producers;
    let keys = args.keys;
    let users = match args.scenario {
        Scenario::Signup => jobs / crate::args::JOBS_PER_REQUEST,
        Scenario::Noop | Scenario::Keyed => 0,
    };
    let key_cells = match args.scenario {
        Scenario::Keyed => keys,
        Scenario::Signup | Scenario::Noop => 0,
    };
    let checks = Arc::new(Checks {
        succeeded: cells(jobs, "--jobs", || AtomicU8::new(0))?,
        double: AtomicU64::new(0),
        profile_done: cells(users, "--jobs", || AtomicBool::new(false))?,
        last_n: cells(key_cells, "--keys", || AtomicU64::new(u64::MAX))?,
        violations: AtomicU64::new(0),
    });
    let c = checks.clone();
    let engine = builder(args)
        .build(move |ctx, t| handle(&c, ctx, t))
        .map_err(|e| e.to_string())?;
    let workers = engine.workers();
    // Panics are part of the demo's faults: keep stderr for the report.
    std::panic::set_hook(Box::new(|_| {}));
    let bar = progress(args, jobs);
    let start = Instant::now();
    let mut request =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let done = AtomicBool::new(false);
    let elapsed = std::thread::scope(|s| -> Result<Duration, String> {
        let monitor = s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let c = engine.counts();
                bar.set_position(c.completed + c.dead);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let sub = engine.submitter();
                s.spawn(move || produce(args, &sub, p, producers, jobs, keys))
            })
            .collect();
        for h in handles {
            let hist = h.join().map_err(|_| "a producer panicked".to_string())??;
            request.add(&hist).map_err(|e| format!("{e:?}"))?;
        }
        // Wait for the queue to drain, then stop the monitor.
        // Polled every 50 µs: the run's time is measured here, so the poll
        // must not round it (the monitor's 100 ms sleep stays out of it).
        while engine.counts().held > 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
        let elapsed = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let _ = monitor.join();
        Ok(elapsed)
    })?;
    bar.finish_and_clear();
    let _ = std::panic::take_hook();
    let metrics = engine.metrics();
    let dead = engine.dead_letters();
    let report = engine.shutdown();
    Ok(Outcome {
        elapsed,
        counts: report.counts,
        metrics,
        request: (args.scenario == Scenario::Signup).then_some(request),
        order_violations: checks.violations.load(Ordering::Relaxed),
        double_successes: checks.double.load(Ordering::Relaxed),
        dead,
        workers,
    })
}

fn progress(args: &Args, jobs: u64) -> ProgressBar {
    if args.quiet || args.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(jobs), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} jobs {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Paces a producer at its share of `--rate`.
struct Pacer {
    period: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64, producers: u64, jobs_per_tick: u64) -> Pacer {
        let period = (rate > 0).then(|| {
            Duration::from_secs_f64(jobs_per_tick as f64 * producers as f64 / rate as f64)
        });
        Pacer {
            period,
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        let Some(p) = self.period else { return };
        self.next += p;
        // Sleep through most of the gap (a spinning producer would steal a
        // core from the workers), then spin the last stretch for precision.
        let left = self.next.saturating_duration_since(Instant::now());
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        }
        while Instant::now() < self.next {
            std::hint::spin_loop();
        }
    }
}

fn submit(sub: &Submitter<Task>, job: Job<Task>) -> Result<(), String> {
    let job = match sub.try_submit(job) {
        Ok(_) => return Ok(()),
        Err(e) => e.into_job(),
    };
    sub.submit(job).map(drop).map_err(|e| e.to_string())
}

/// One producer's share of the jobs. Returns its request-latency histogram
/// (sign-up).
fn produce(
    args: &Args,
    sub: &Submitter<Task>,
    p: u64,
    producers: u64,
    jobs: u64,
    keys: u64,
) -> Result<Histogram<u64>, String> {
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    match args.scenario {
        Scenario::Signup => {
            let requests = jobs / crate::args::JOBS_PER_REQUEST;
            let mut pace = Pacer::new(args.rate(), producers, crate::args::JOBS_PER_REQUEST);
            for user in (p..requests).step_by(producers as usize) {
                pace.wait();
                let t0 = Instant::now();
                signup_request(sub, user)?;
                // ~1% of clients retry the whole request: same job IDs.
                if roll(user, 9) < 100 {
                    signup_request(sub, user)?;
                }
                hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
            }
        }
        Scenario::Noop | Scenario::Keyed => {
            // Keyed: this producer owns keys p, p + P, ... below `keys` (at
            // least one: `keys >= producers`): its submit order is their
            // accept order, which the handler checks.
            let own = keys / producers + u64::from(p < keys % producers);
            let job = |seq: u64| {
                let task = |kind| Task { kind, user: 0, seq };
                if args.scenario == Scenario::Noop {
                    return Job::new(mix(seq), task(Kind::Noop));
                }
                let i = seq / producers;
                let key = p + producers * (i % own);
                Job::new(mix(seq), task(Kind::Keyed { key, n: i / own })).keyed(key)
            };
            let mut pace = Pacer::new(args.rate(), producers, args.batch as u64);
            let mut mine = (p..jobs).step_by(producers as usize).peekable();
            while mine.peek().is_some() {
                pace.wait();
                let batch = mine.by_ref().take(args.batch).map(job);
                submit_all(sub, batch)?;
            }
        }
    }
    Ok(hist)
}

fn submit_all(
    sub: &Submitter<Task>,
    mut jobs: impl Iterator<Item = Job<Task>>,
) -> Result<(), String> {
    if jobs.size_hint() == (1, Some(1)) {
        // `--batch 1`: single submits, as a request handler makes them.
        return jobs.next().map_or(Ok(()), |job| submit(sub, job));
    }
    let report = sub.submit_batch(jobs);
    for e in report.refused {
        submit(sub, e.into_job())?;
    }
    Ok(())
}

/// One web request: create the account inline (the essential work), then
/// drop the slow rest into the queue and answer.
fn signup_request(sub: &Submitter<Task>, user: u64) -> Result<(), String> {
    // Inline: validate and insert the account row (~2 µs of CPU).
    spin_for(Duration::from_micros(2));
    let seq0 = user * 5;
    let jobs = [
        (Kind::CreateProfile, true),
        (Kind::WelcomeEmail, true),
        (Kind::ResizePhoto, false),
        (Kind::AnalyticsPing, false),
        (Kind::FirstNotification, true),
    ];
    for (i, (kind, keyed)) in jobs.into_iter().enumerate() {
        let seq = seq0 + i as u64;
        let task = Task { kind, user, seq };
        let mut job = Job::new(mix(seq), task);
        if keyed {
            job = job.keyed(user);
        }
        submit(sub, job)?;
    }
    Ok(())
}
