//! The demo's scenarios: sign-up (the seed's story), noop and keyed.

use crate::args::{Args, Scenario};
use crate::pool::{Ended, LaneFigures, Pool};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quay::{Counts, DeadLetter, Job, JobError, MetricsSnapshot, SubmitError, Submitter};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
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
    /// When the producer submitted it: an email's queue wait is measured
    /// from here, the same way in lanes and in one pool.
    pub at: Instant,
}

pub struct Outcome {
    /// "lanes" or "one pool".
    pub mode: &'static str,
    pub elapsed: Duration,
    pub counts: Counts,
    pub metrics: MetricsSnapshot,
    /// Per lane (one entry, "pool", for one pool).
    pub lanes: Vec<LaneFigures>,
    /// Welcome emails' queue wait (first attempts), nanoseconds (sign-up).
    pub email_wait: Histogram<u64>,
    /// Jobs refused because Ctrl-C closed the engine, handed back to the
    /// producers (never accepted, so not in `counts`).
    pub refused_at_close: u64,
    pub pin_warnings: Vec<quay::PinWarning>,
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
    email_wait: Mutex<Histogram<u64>>,
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
        Kind::WelcomeEmail => {
            if first {
                let waited = t.at.elapsed().as_nanos().max(1) as u64;
                if let Ok(mut h) = checks.email_wait.lock() {
                    h.saturating_record(waited);
                }
            }
            std::thread::sleep(Duration::from_micros(50))
        }
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

/// Checks the engine settings the run will use, without starting a
/// thread: the builder's own error (a bad `--workers`, say) comes back.
pub fn check(args: &Args) -> Result<(), String> {
    crate::pool::check_builder(args)
        .driver()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Ctrl-C presses so far: the first closes the engine (it drains), the
/// second stops it at once.
pub static PRESSES: AtomicU8 = AtomicU8::new(0);

/// What the producers share: where each kind goes, and how far they got.
struct Feed {
    subs: [Submitter<Task>; 3],
    /// Sign-up requests made so far (the burst waits for a quarter).
    requests: AtomicU64,
    /// Jobs refused because the engine closed (Ctrl-C).
    refused: AtomicU64,
}

impl Feed {
    fn sub(&self, kind: Kind) -> &Submitter<Task> {
        &self.subs[crate::pool::lane_of(kind)]
    }
}

/// Runs the scenario, in lanes or in one pool. `args` must have passed
/// [`Args::validate`] and [`check`]: every count is in range.
pub fn run(args: &Args, lanes: bool) -> Result<Outcome, String> {
    let jobs = args.jobs;
    let producers = args.producers;
    let keys = args.keys;
    let signup = args.scenario == Scenario::Signup;
    let burst = if signup { args.burst } else { 0 };
    let users = if signup {
        jobs / crate::args::JOBS_PER_REQUEST
    } else {
        0
    };
    let key_cells = match args.scenario {
        Scenario::Keyed => keys,
        Scenario::Signup | Scenario::Noop => 0,
    };
    let hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string());
    let checks = Arc::new(Checks {
        succeeded: cells(jobs + burst, "--jobs", || AtomicU8::new(0))?,
        double: AtomicU64::new(0),
        profile_done: cells(users, "--jobs", || AtomicBool::new(false))?,
        last_n: cells(key_cells, "--keys", || AtomicU64::new(u64::MAX))?,
        violations: AtomicU64::new(0),
        email_wait: Mutex::new(hist()?),
    });
    let c = checks.clone();
    let pool = Pool::start(args, lanes, move |ctx, t| handle(&c, ctx, t))?;
    let workers = pool.workers();
    // Panics are part of the demo's faults: keep stderr for the report.
    std::panic::set_hook(Box::new(|_| {}));
    let bar = progress(args, jobs + burst);
    let start = Instant::now();
    let mut request = hist()?;
    let done = AtomicBool::new(false);
    let feed = Feed {
        subs: pool.submitters(),
        requests: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    };
    let (elapsed, ended) = std::thread::scope(|s| -> Result<(Duration, Ended), String> {
        let monitor = s.spawn(|| {
            let mut closed = false;
            while !done.load(Ordering::Relaxed) {
                bar.set_position(pool.finished());
                let presses = PRESSES.load(Ordering::Relaxed);
                if presses >= 1 && !closed {
                    eprintln!("\nquay: Ctrl-C: draining (press again to stop now)");
                    pool.close();
                    closed = true;
                }
                if presses >= 2 {
                    eprintln!("quay: Ctrl-C again: stopping now, returning what did not run");
                    pool.stop_now();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let feed = &feed;
                s.spawn(move || produce(args, feed, p, producers, jobs, keys))
            })
            .collect();
        let importer = (burst > 0).then(|| {
            let feed = &feed;
            s.spawn(move || bulk_import(feed, jobs, burst, users))
        });
        for h in handles {
            let hist = h.join().map_err(|_| "a producer panicked".to_string())??;
            request.add(&hist).map_err(|e| format!("{e:?}"))?;
        }
        if let Some(h) = importer {
            h.join()
                .map_err(|_| "the bulk importer panicked".to_string())??;
        }
        // Wait for the queue to drain. Polled every 50 µs: the run's time
        // is measured here, so the poll must not round it.
        while pool.held() > 0 && PRESSES.load(Ordering::Relaxed) < 2 {
            std::thread::sleep(Duration::from_micros(50));
        }
        let elapsed = start.elapsed();
        let ended = pool.shutdown();
        done.store(true, Ordering::Relaxed);
        let _ = monitor.join();
        Ok((elapsed, ended))
    })?;
    bar.finish_and_clear();
    let _ = std::panic::take_hook();
    let metrics = MetricsSnapshot::sum(ended.lanes.iter().map(|l| &l.metrics));
    let email_wait = match checks.email_wait.lock() {
        Ok(h) => h.clone(),
        Err(e) => e.into_inner().clone(),
    };
    Ok(Outcome {
        mode: if lanes { "lanes" } else { "one pool" },
        elapsed,
        counts: ended.counts,
        metrics,
        lanes: ended.lanes,
        email_wait,
        refused_at_close: feed.refused.load(Ordering::Relaxed),
        pin_warnings: pool.pin_warnings(),
        request: signup.then_some(request),
        order_violations: checks.violations.load(Ordering::Relaxed),
        double_successes: checks.double.load(Ordering::Relaxed),
        dead: pool.dead_letters(),
        workers,
    })
}

/// A bulk import: once a quarter of the sign-ups are in, `burst` photo
/// resizes arrive at once (IDs after the sign-ups' own).
fn bulk_import(feed: &Feed, jobs: u64, burst: u64, users: u64) -> Result<(), String> {
    while feed.requests.load(Ordering::Relaxed) < users / 4 {
        if PRESSES.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    for i in 0..burst {
        let seq = jobs + i;
        let task = Task {
            kind: Kind::ResizePhoto,
            user: u64::MAX,
            seq,
            at: Instant::now(),
        };
        if !submit(feed, Job::new(mix(seq), task))? {
            return Ok(());
        }
    }
    Ok(())
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

/// Submits one job to its kind's lane, waiting for room. `Ok(false)`: the
/// engine is closed (Ctrl-C), the job came back and is counted as refused.
fn submit(feed: &Feed, job: Job<Task>) -> Result<bool, String> {
    let sub = feed.sub(job.payload().kind);
    let job = match sub.try_submit(job) {
        Ok(_) => return Ok(true),
        Err(e) => e.into_job(),
    };
    match sub.submit(job) {
        Ok(_) => Ok(true),
        Err(SubmitError::ShuttingDown(_)) => {
            feed.refused.fetch_add(1, Ordering::Relaxed);
            Ok(false)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// One producer's share of the jobs. Returns its request-latency histogram
/// (sign-up). Stops early, without error, once Ctrl-C closed the engine.
fn produce(
    args: &Args,
    feed: &Feed,
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
                if !signup_request(feed, user)? {
                    break;
                }
                // ~1% of clients retry the whole request: same job IDs.
                if roll(user, 9) < 100 && !signup_request(feed, user)? {
                    break;
                }
                hist.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                feed.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        Scenario::Noop | Scenario::Keyed => {
            // Keyed: this producer owns keys p, p + P, ... below `keys` (at
            // least one: `keys >= producers`): its submit order is their
            // accept order, which the handler checks.
            let own = keys / producers + u64::from(p < keys % producers);
            let job = |seq: u64| {
                let task = |kind| Task {
                    kind,
                    user: 0,
                    seq,
                    at: Instant::now(),
                };
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
                if !submit_all(feed, batch)? {
                    break;
                }
            }
        }
    }
    Ok(hist)
}

/// `Ok(false)`: the engine closed; the rest of the batch came back.
fn submit_all(feed: &Feed, mut jobs: impl Iterator<Item = Job<Task>>) -> Result<bool, String> {
    if jobs.size_hint() == (1, Some(1)) {
        // `--batch 1`: single submits, as a request handler makes them.
        return jobs.next().map_or(Ok(true), |job| submit(feed, job));
    }
    // Noop and keyed run in one pool: every kind goes to the same engine.
    let report = feed.subs[0].submit_batch(jobs);
    let mut refused = report.refused.into_iter();
    while let Some(e) = refused.next() {
        if !submit(feed, e.into_job())? {
            feed.refused
                .fetch_add(refused.len() as u64, Ordering::Relaxed);
            return Ok(false);
        }
    }
    Ok(true)
}

/// One web request: create the account inline (the essential work), then
/// drop the slow rest into the queue and answer. `Ok(false)`: the engine
/// closed partway (Ctrl-C).
fn signup_request(feed: &Feed, user: u64) -> Result<bool, String> {
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
        let task = Task {
            kind,
            user,
            seq,
            at: Instant::now(),
        };
        let mut job = Job::new(mix(seq), task);
        if keyed {
            job = job.keyed(user);
        }
        if !submit(feed, job)? {
            return Ok(false);
        }
    }
    Ok(true)
}
