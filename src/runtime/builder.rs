//! [`Builder`]: every engine setting, checked at `build` into a typed
//! [`BuildError`] that names the field.

use crate::clock::Clock;
use crate::dedup::DedupConfig;
use crate::error::{BuildError, JobError};
use crate::job::dlq::{DeadLetter, OnDead};
use crate::job::driver::Driver;
use crate::job::hooks::Hooks;
use crate::job::retry::RetryPolicy;
use crate::job::JobContext;
use crate::loom::sync::Arc;
pub use crate::runtime::config::PinWarning;
use crate::runtime::config::{Config, WorkerContext};
use crate::runtime::engine::Engine;
use crate::runtime::runner::{AsyncHandler, MakeRunner, SyncHandler};
use crate::sync::idle::IdleStrategy;
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

/// Which cores, if any, workers are pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Never pin.
    Off,
    /// Pin worker `i` to the `i % cores`-th core the OS reports, where the OS
    /// allows it. A pin the OS refuses becomes a [`PinWarning`], not an error.
    #[default]
    Auto,
    /// Pin worker `i` to `cores[i % cores.len()]`. Every core must exist.
    Cores(Vec<usize>),
}

impl From<bool> for Pinning {
    fn from(on: bool) -> Pinning {
        if on {
            Pinning::Auto
        } else {
            Pinning::Off
        }
    }
}

impl From<Vec<usize>> for Pinning {
    fn from(cores: Vec<usize>) -> Pinning {
        Pinning::Cores(cores)
    }
}

/// The default attempt limit.
const DEFAULT_MAX_ATTEMPTS: NonZeroU32 = match NonZeroU32::new(5) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// Builds an [`Engine`]. Start from [`Engine::builder`].
///
/// ```
/// use quay::{Engine, IdleStrategy, BuildError};
/// let err = Engine::<u32>::builder().workers(0).build(|_, _| Ok(())).unwrap_err();
/// assert_eq!(err, BuildError::ZeroWorkers);
/// ```
pub struct Builder<T> {
    name: String,
    workers: Option<usize>,
    pinning: Pinning,
    capacity: u64,
    ring_capacity: usize,
    idle: IdleStrategy,
    batch: usize,
    clock: Option<Clock>,
    dedup: bool,
    dedup_config: DedupConfig,
    /// `None`: sized from `capacity` (see `dedup_capacity`).
    dedup_capacity: Option<usize>,
    retry: RetryPolicy,
    max_attempts: NonZeroU32,
    dlq_capacity: usize,
    seed: u64,
    record_latency: bool,
    on_dead: Option<OnDead<T>>,
    hooks: Hooks,
    concurrency: usize,
    attempt_timeout: Option<Duration>,
    worker_context: Option<WorkerContext>,
    _payload: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("pinning", &self.pinning)
            .field("capacity", &self.capacity)
            .field("ring_capacity", &self.ring_capacity)
            .field("idle", &self.idle)
            .field("dedup", &self.dedup.then_some(self.dedup_config()))
            .field("retry", &self.retry)
            .field("max_attempts", &self.max_attempts)
            .field("dlq_capacity", &self.dlq_capacity)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Engine<T> {
    /// A builder with every setting at its default.
    pub fn builder() -> Builder<T> {
        Builder::new()
    }
}

impl<T> Builder<T> {
    /// The dedup settings, with the remembered-ID bound resolved.
    fn dedup_config(&self) -> DedupConfig {
        let capacity = self.dedup_capacity.unwrap_or_else(|| {
            usize::try_from(self.capacity)
                .unwrap_or(usize::MAX)
                .clamp(DEFAULT_REMEMBERED_MIN, DEFAULT_REMEMBERED_MAX)
        });
        DedupConfig {
            capacity,
            ..self.dedup_config
        }
    }
}

impl<T: Send + 'static> Default for Builder<T> {
    fn default() -> Builder<T> {
        Builder::new()
    }
}

impl<T: Send + 'static> Builder<T> {
    pub(crate) fn new() -> Builder<T> {
        Builder {
            name: "worker".to_string(),
            workers: None,
            pinning: Pinning::Auto,
            capacity: 65_536,
            ring_capacity: 4_096,
            idle: IdleStrategy::default(),
            batch: 32,
            clock: None,
            dedup: true,
            dedup_config: DedupConfig::default(),
            dedup_capacity: None,
            retry: RetryPolicy::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            dlq_capacity: 10_000,
            seed: 0x5EED_F00D_0A11,
            record_latency: true,
            on_dead: None,
            hooks: Hooks::default(),
            concurrency: 64,
            attempt_timeout: None,
            worker_context: None,
            _payload: PhantomData,
        }
    }

    /// Turns dedup on (the default) or off. Off, a repeated ID is a new job.
    pub fn dedup(mut self, on: bool) -> Builder<T> {
        self.dedup = on;
        self
    }

    /// How long a finished job's ID stays a duplicate. Default 5 minutes,
    /// as in SQS. Zero: only live IDs are duplicates.
    pub fn dedup_window(mut self, d: Duration) -> Builder<T> {
        self.dedup_config.window = d;
        self
    }

    /// Most finished IDs remembered; the oldest are forgotten first (live
    /// IDs never are; each one forgotten early is counted in
    /// `dedup_evicted`). Default: the engine's [`capacity`](Self::capacity),
    /// at least 4 096 and at most 2^18.
    ///
    /// Memory: the seen-ID tables hold `capacity + dedup_capacity` IDs in
    /// 32-byte slots at a load of at most one half, rounded up to a power
    /// of two per shard, and are faulted in at build (so the hot path
    /// takes no page faults): 16 MiB at the defaults (capacity 65 536),
    /// 2 MiB for a lane of capacity 8 192. To keep every ID for the whole
    /// window, set it to at least the window times the peak rate of jobs
    /// finishing (5 minutes at 1 000 jobs/s: 300 000).
    pub fn dedup_capacity(mut self, n: usize) -> Builder<T> {
        self.dedup_capacity = Some(n);
        self
    }

    /// Attempts per job before it dies, unless a job overrides it with
    /// [`Job::max_attempts`](crate::Job::max_attempts), which takes a
    /// `NonZeroU32` too. Default 5.
    pub fn max_attempts(mut self, n: NonZeroU32) -> Builder<T> {
        self.max_attempts = n;
        self
    }

    /// Exponential backoff: the delay after failed attempt `n` is drawn
    /// uniformly from `[0, min(max, base · 2^(n−1))]`. Default 10 ms, 60 s.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Builder<T> {
        self.retry.base = base;
        self.retry.max_backoff = max;
        self
    }

    /// Full jitter on (the default) or off (then the delay is the cap).
    pub fn jitter(mut self, on: bool) -> Builder<T> {
        self.retry.jitter = on;
        self
    }

    /// Latency histograms on (the default) or off. Off, workers read the
    /// clock once less per attempt and record nothing.
    pub fn record_latency(mut self, on: bool) -> Builder<T> {
        self.record_latency = on;
        self
    }

    /// Seeds the backoff jitter RNGs, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Builder<T> {
        self.seed = seed;
        self
    }

    /// Most dead letters kept; when full, the oldest is dropped and
    /// counted. Default 10 000, the size of Sidekiq's dead set.
    pub fn dlq_capacity(mut self, n: usize) -> Builder<T> {
        self.dlq_capacity = n;
        self
    }

    /// A hook that sees every dead job before it enters the DLQ (and before
    /// any drop), so the host can persist it. It runs on a worker thread;
    /// its panics are contained.
    pub fn on_dead(mut self, hook: impl Fn(&DeadLetter<T>) + Send + Sync + 'static) -> Builder<T> {
        self.on_dead = Some(Box::new(hook));
        self
    }

    /// The engine's name, 1 to [`BuildError::MAX_NAME`] ASCII letters,
    /// digits, `_` or `-`: its worker threads are named `quay-<name>-<i>`,
    /// and a [`Runtime`](crate::Runtime) labels the lane's metrics with it.
    /// Default `worker`; a lane's name replaces it.
    pub fn name(mut self, name: impl Into<String>) -> Builder<T> {
        self.name = name.into();
        self
    }

    /// A hook that sees every completed job, once, after its completion is
    /// settled: its key has moved on and its ID is on its way to dedup's
    /// record (a worker records completions in groups, so until its next
    /// commit [`Engine::status`] may still say `Live`). It runs on the
    /// worker that ran the job (in the [`Driver`], inside `run_next`),
    /// before that worker runs anything else, so keep it short. Its panics
    /// are contained and counted in `contained_panics`; the job stays
    /// completed.
    pub fn on_complete(mut self, hook: impl Fn(&JobContext) + Send + Sync + 'static) -> Builder<T> {
        self.hooks.on_complete = Some(std::sync::Arc::new(hook));
        self
    }

    /// A hook that sees every retry, once, after it is scheduled (the job
    /// waits in its worker's timer): the failed attempt's context, its
    /// error (a panic's is `JobError::Retry("panic: …")`) and the backoff
    /// before the next attempt. It does not see the attempt that kills a
    /// job: that one goes to [`on_dead`](Self::on_dead). It runs on the
    /// worker (in the [`Driver`], inside `run_next`); its panics are
    /// contained and counted in `contained_panics`, and the retry stands.
    pub fn on_retry(
        mut self,
        hook: impl Fn(&JobContext, &JobError, Duration) + Send + Sync + 'static,
    ) -> Builder<T> {
        self.hooks.on_retry = Some(std::sync::Arc::new(hook));
        self
    }

    /// Worker threads, one shard each: 1 to [`BuildError::MAX_WORKERS`].
    /// Default: the available cores, at most `MAX_WORKERS`.
    ///
    /// Each worker costs memory whether or not it is busy: about 4 MB at
    /// the default settings, measured as the demo's peak RSS growing by
    /// 4.0 MB per worker from 1 to 128 workers (`/usr/bin/time -v`, noop
    /// scenario, 40-byte payload). About 1.6 MB of it is six latency
    /// histograms (three recorded, three published; 33 792 `u64` counts
    /// each), the rest mostly its two rings of `ring_capacity` slots and
    /// its presized key table and timer, so it grows with `ring_capacity`
    /// and the payload's size.
    pub fn workers(mut self, n: usize) -> Builder<T> {
        self.workers = Some(n);
        self
    }

    /// Pinning: `true`/`false`, or a core list. Default: [`Pinning::Auto`].
    pub fn pin_workers(mut self, p: impl Into<Pinning>) -> Builder<T> {
        self.pinning = p.into();
        self
    }

    /// The bound on all jobs the engine holds: queued, running, waiting
    /// behind a key, delayed or waiting to retry. Default 65 536.
    pub fn capacity(mut self, n: u64) -> Builder<T> {
        self.capacity = n;
        self
    }

    /// Slots per shard ring, a power of two. Default 4 096.
    pub fn ring_capacity(mut self, n: usize) -> Builder<T> {
        self.ring_capacity = n;
        self
    }

    /// What idle workers do. Default: spin 50 µs, then park.
    pub fn idle(mut self, s: IdleStrategy) -> Builder<T> {
        self.idle = s;
        self
    }

    /// Most jobs a worker takes from a ring in one claim: at least 1;
    /// more than `ring_capacity` is read as `ring_capacity`. Default 32.
    pub fn batch(mut self, n: usize) -> Builder<T> {
        self.batch = n;
        self
    }

    /// The engine's clock. Default: monotonic, from build.
    pub fn clock(mut self, c: impl Into<Clock>) -> Builder<T> {
        self.clock = Some(c.into());
        self
    }

    /// Checks every setting, without starting anything.
    pub(crate) fn config(&self) -> Result<Config, BuildError> {
        check_name(&self.name)?;
        let workers = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) if n > BuildError::MAX_WORKERS => return Err(BuildError::TooManyWorkers(n)),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(BuildError::MAX_WORKERS),
        };
        if self.capacity == 0 || self.capacity > BuildError::MAX_CAPACITY {
            return Err(BuildError::Capacity(self.capacity));
        }
        let r = self.ring_capacity;
        if r < 2 || !r.is_power_of_two() || r > BuildError::MAX_RING_CAPACITY {
            return Err(BuildError::RingCapacity(r));
        }
        if self.batch == 0 {
            return Err(BuildError::Batch);
        }
        if self.retry.base > self.retry.max_backoff {
            return Err(BuildError::Backoff {
                base: self.retry.base,
                max: self.retry.max_backoff,
            });
        }
        if self.dlq_capacity == 0 {
            return Err(BuildError::DlqCapacity);
        }
        if self.concurrency == 0 || self.concurrency > BuildError::MAX_CONCURRENCY {
            return Err(BuildError::Concurrency(self.concurrency));
        }
        if self.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return Err(BuildError::AttemptTimeout);
        }
        if self.dedup && self.dedup_config().capacity == 0 && !self.dedup_config.window.is_zero() {
            return Err(BuildError::DedupCapacity);
        }
        let cores = resolve_cores(&self.pinning, workers)?;
        Ok(Config {
            name: self.name.clone(),
            workers,
            cores,
            capacity: self.capacity,
            ring_capacity: r,
            idle: self.idle,
            batch: self.batch.min(r),
            clock: self.clock.clone().unwrap_or_default(),
            dedup: self.dedup.then_some(self.dedup_config()),
            retry: self.retry,
            max_attempts: self.max_attempts.get(),
            dlq_capacity: self.dlq_capacity,
            seed: self.seed,
            record_latency: self.record_latency,
            hooks: self.hooks.clone(),
            concurrency: self.concurrency,
            attempt_timeout: self.attempt_timeout,
            worker_context: self.worker_context.clone(),
        })
    }

    /// Checks the settings and starts the workers, each running `handler`.
    pub fn build<H>(self, handler: H) -> Result<Engine<T>, BuildError>
    where
        H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
    {
        let config = self.config()?;
        Engine::start(config, self.on_dead, SyncHandler(Arc::new(handler)))
    }

    /// Async attempts each worker runs at once, for an engine built with
    /// [`build_async`](Builder::build_async). Default 64; at most
    /// [`BuildError::MAX_CONCURRENCY`].
    pub fn concurrency(mut self, n: usize) -> Builder<T> {
        self.concurrency = n;
        self
    }

    /// A time limit for each attempt of an async handler, on the engine's
    /// clock: an attempt still pending then is dropped (its future's `Drop`
    /// runs) and counts as a retryable failure. Default none. A sync
    /// handler cannot be interrupted, so there it is not used.
    pub fn attempt_timeout(mut self, limit: Duration) -> Builder<T> {
        self.attempt_timeout = Some(limit);
        self
    }

    /// Runs each worker's whole loop inside `context`, which must call the
    /// `run` it is given (once): for what the handlers need on their
    /// thread, such as a tokio runtime's context for an async handler's
    /// timers and I/O:
    ///
    /// ```
    /// # use quay::Engine;
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// let handle = tokio.handle().clone();
    /// let engine = Engine::<u64>::builder()
    ///     .worker_context(move |run| {
    ///         let _entered = handle.enter();
    ///         run()
    ///     })
    ///     .build_async(|_, _| async {
    ///         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// engine.submit(quay::Job::new(1u64, 1)).unwrap();
    /// assert_eq!(engine.shutdown().counts.completed, 1);
    /// ```
    ///
    /// If `context` returns without calling `run`, or panics before it, the
    /// worker runs its loop anyway, without the context (the panic is
    /// counted in `contained_panics`): no job is stranded.
    pub fn worker_context(
        mut self,
        context: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static,
    ) -> Builder<T> {
        self.worker_context = Some(WorkerContext(std::sync::Arc::new(context)));
        self
    }

    /// Checks the settings and starts the workers, each running up to
    /// [`concurrency`](Builder::concurrency) attempts of `handler` at once
    /// on its own thread.
    ///
    /// `handler` gets the attempt's context by value and the payload by
    /// reference, and returns a future that owns what it needs (clone from
    /// the payload before the first `.await`). The future need not be
    /// `Send`: it is polled on the worker that made it, by a small executor
    /// of quay's own, so it may await any runtime-agnostic future; to use
    /// tokio's timers and I/O, enter a tokio runtime's context in it (see
    /// `docs/design.md`, "Async handlers"). Everything else holds as for
    /// [`build`](Builder::build): a key's next job starts once the previous
    /// one is terminal, a panicking poll is a failed attempt, and shutdown
    /// waits for the attempts in flight (or returns their jobs).
    ///
    /// ```
    /// use quay::{Engine, Job, JobError};
    ///
    /// let engine = Engine::<String>::builder()
    ///     .workers(1)
    ///     .concurrency(16)
    ///     .build_async(|ctx, email: &String| {
    ///         let email = email.clone();
    ///         async move {
    ///             // `.await` the mail server's answer here.
    ///             if email.is_empty() {
    ///                 return Err(JobError::fatal("no address"));
    ///             }
    ///             let _ = ctx.attempt();
    ///             Ok(())
    ///         }
    ///     })
    ///     .unwrap();
    /// engine.submit(Job::new(1u64, "ana@example.com".to_string())).unwrap();
    /// assert_eq!(engine.shutdown().counts.completed, 1);
    /// ```
    pub fn build_async<H, F>(self, handler: H) -> Result<Engine<T>, BuildError>
    where
        H: Fn(JobContext, &T) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), JobError>> + 'static,
    {
        let config = self.config()?;
        let make = self.async_handler(handler);
        Engine::start(config, self.on_dead, make)
    }

    pub(crate) fn async_handler<H>(&self, handler: H) -> AsyncHandler<H> {
        AsyncHandler {
            handler: Arc::new(handler),
            concurrency: self.concurrency,
            timeout: self.attempt_timeout,
        }
    }

    /// Checks the settings, lets a [`Runtime`](crate::Runtime) choose the
    /// workers' cores from the pinning asked for, and starts the workers.
    pub(crate) fn build_with_cores<M, C>(self, cores: C, make: M) -> Result<Engine<T>, BuildError>
    where
        M: MakeRunner<T>,
        C: FnOnce(&Pinning, usize) -> Result<(Vec<Option<usize>>, Vec<PinWarning>), BuildError>,
    {
        let mut config = self.config()?;
        let (assigned, warnings) = cores(&self.pinning, config.workers)?;
        config.cores = assigned;
        let engine = Engine::start(config, self.on_dead, make)?;
        engine.add_pin_warnings(warnings);
        Ok(engine)
    }

    /// Checks the settings and makes a deterministic single-threaded
    /// [`Driver`] with the same semantics, on a manual clock (the builder's,
    /// if it was given one). Thread settings are checked but unused.
    pub fn driver(self) -> Result<Driver<T>, BuildError> {
        let config = self.config()?;
        Ok(Driver::new(config, self.on_dead))
    }
}

/// The default bound on remembered finished IDs is the engine's capacity,
/// kept within these.
const DEFAULT_REMEMBERED_MIN: usize = 1 << 12;
const DEFAULT_REMEMBERED_MAX: usize = 1 << 18;

/// Checks an engine or lane name.
pub(crate) fn check_name(name: &str) -> Result<(), BuildError> {
    let ok = (1..=BuildError::MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BuildError::Name(name.to_string()))
    }
}

/// The cores the OS reports this process may run on, in its order.
pub(crate) fn os_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// The core (if any) each worker is pinned to.
fn resolve_cores(p: &Pinning, workers: usize) -> Result<Vec<Option<usize>>, BuildError> {
    let available = os_cores;
    match p {
        Pinning::Off => Ok(vec![None; workers]),
        Pinning::Auto => {
            let cores = available();
            Ok((0..workers)
                .map(|i| (!cores.is_empty()).then(|| cores[i % cores.len()]))
                .collect())
        }
        Pinning::Cores(list) => {
            if list.is_empty() {
                return Err(BuildError::EmptyCoreList);
            }
            let cores = available();
            if let Some(&bad) = list.iter().find(|c| !cores.contains(c)) {
                return Err(BuildError::NoSuchCore {
                    core: bad,
                    available: cores,
                });
            }
            Ok((0..workers).map(|i| Some(list[i % list.len()])).collect())
        }
    }
}
