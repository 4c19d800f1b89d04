//! [`Engine`] and [`Submitter`]: the public handles, and the submit paths.
//!
//! `Engine` owns the workers; it is `Send + Sync`, so share it by reference
//! or in an `Arc`. [`Engine::submitter`] hands out a cheap `Clone` handle
//! that can only submit, for request handlers that should not be able to
//! shut the engine down.
//!
//! The lifecycle works through a shared reference, so a signal handler or
//! another thread can drive it: [`Engine::close`] stops accepting (every
//! later submit gets [`SubmitError::ShuttingDown`] with its job back) while
//! the workers drain; [`Engine::shutdown`] waits for the drain, joins the
//! workers and reports (a second call reports nothing more);
//! [`Engine::shutdown_now`] also cuts short a graceful shutdown waiting in
//! another thread. Dropping an engine never blocks for long: see
//! [`Engine`]'s `Drop`.

use crate::clock::{Clock, Timestamp};
use crate::error::{BuildError, RedriveError, SubmitError, Submitted};
use crate::job::dlq::{DeadLetter, OnDead};
use crate::job::envelope::Envelope;
use crate::job::machine::Semantics;
use crate::job::status::JobStatus;
use crate::job::{Job, JobId};
use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicBool, AtomicU64};
use crate::loom::sync::{Arc, Mutex};
use crate::loom::thread::{self, JoinHandle};
use crate::loom::time::Deadline;
use crate::observe::counts::Counts;
use crate::observe::latency::{Histograms, LatencySlot};
use crate::observe::metrics::MetricsSnapshot;
use crate::observe::stats::WorkerStats;
use crate::runtime::batch::BatchReport;
use crate::runtime::config::{Config, PinWarning};
use crate::runtime::runner::MakeRunner;
use crate::runtime::shard::Shard;
use crate::runtime::shared::Shared;
use crate::runtime::shutdown::{Drain, Shutdown};
use crate::runtime::worker::Worker;
use crate::sync::capacity::{Gate, Why};
use crate::sync::idle::Idle;
use crossbeam_utils::CachePadded;
use std::time::Duration;

/// The job queue engine: shards, rings and pinned workers running one
/// handler.
///
/// ```
/// use quay::{Engine, Job, Submitted};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// let sent = Arc::new(AtomicU64::new(0));
/// let s = sent.clone();
/// let engine = Engine::<String>::builder()
///     .workers(2)
///     .build(move |_ctx, email: &String| {
///         assert!(email.contains('@'));
///         s.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     })
///     .unwrap();
/// for user in 0..100u64 {
///     let job = Job::new(user, format!("user{user}@example.com"));
///     assert_eq!(engine.submit(job).unwrap(), Submitted::Accepted);
/// }
/// let report = engine.shutdown();
/// assert_eq!(sent.load(Ordering::Relaxed), 100);
/// assert_eq!(report.counts.completed, 100);
/// assert!(report.counts.is_conserved());
/// ```
pub struct Engine<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    /// Taken by the first shutdown; the lock also serialises shutdowns, so
    /// a second one returns once the first has finished.
    workers: Mutex<Vec<JoinHandle<Vec<Envelope<T>>>>>,
}

impl<T: Send + 'static> std::fmt::Debug for Engine<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.shared.shards.len())
            .field("counts", &self.shared.counts())
            .finish()
    }
}

/// A cheap, clonable handle that can only submit.
pub struct Submitter<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Clone for Submitter<T> {
    fn clone(&self) -> Submitter<T> {
        Submitter {
            shared: self.shared.clone(),
        }
    }
}

macro_rules! submit_api {
    () => {
        /// Submits without blocking. A refused job comes back in the error.
        #[inline]
        pub fn try_submit(&self, job: Job<T>) -> Result<Submitted, SubmitError<T>> {
            self.shared.try_submit(job)
        }

        /// Submits, waiting for room while there is none: a short spin, then
        /// a park that each release of capacity ends, and each claim of
        /// jobs by a worker (which frees ring or inbox room). Called inside
        /// a handler of this
        /// engine it does not wait (its own worker may have to free the
        /// room): it answers at once, as `try_submit` does.
        pub fn submit(&self, job: Job<T>) -> Result<Submitted, SubmitError<T>> {
            self.shared.submit_until(job, None)
        }

        /// Like [`submit`](Self::submit), giving up after `timeout` with
        /// [`SubmitError::Timeout`] (inside a handler of this engine, it
        /// answers at once, as `submit` does).
        pub fn submit_timeout(
            &self,
            job: Job<T>,
            timeout: Duration,
        ) -> Result<Submitted, SubmitError<T>> {
            self.shared.submit_until(job, Deadline::after(timeout))
        }

        /// Submits from async code, waiting for room without blocking the
        /// thread: resolves to what [`submit`](Self::submit) returns. Every
        /// release of capacity, every claim of jobs by a worker and a close
        /// wakes the task (see [`SubmitAsync`](crate::SubmitAsync)); no
        /// runtime is needed. Dropping the future unfinished submits
        /// nothing. Awaited inside a handler of this engine it answers at
        /// once, as `try_submit` does.
        ///
        /// ```
        /// # use quay::{Engine, Job, Submitted};
        /// let engine = Engine::<u32>::builder().build(|_, _| Ok(())).unwrap();
        /// let answer = futures_lite_block_on(engine.submit_async(Job::new(1u64, 7)));
        /// assert_eq!(answer.unwrap(), Submitted::Accepted);
        /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        /// #     use std::task::{Context, Poll, Wake, Waker};
        /// #     struct T(std::thread::Thread);
        /// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
        /// #     let waker = Waker::from(std::sync::Arc::new(T(std::thread::current())));
        /// #     let mut cx = Context::from_waker(&waker);
        /// #     let mut f = std::pin::pin!(f);
        /// #     loop {
        /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
        /// #         std::thread::park();
        /// #     }
        /// # }
        /// ```
        pub fn submit_async(&self, job: Job<T>) -> crate::SubmitAsync<'_, T> {
            crate::runtime::submit_async::SubmitAsync::new(&self.shared, job)
        }

        /// Submits many jobs without blocking, in order. The report says what
        /// became of each job, and hands back every refused one with its
        /// reason. A refusal (the engine full or closing) refuses the rest
        /// of the batch too, so a key's jobs are never accepted after one
        /// of its earlier jobs in the batch was refused. If the iterator
        /// panics, the jobs it yielded before are submitted and the panic
        /// goes on.
        pub fn submit_batch(&self, jobs: impl IntoIterator<Item = Job<T>>) -> BatchReport<T> {
            crate::runtime::batch::submit_batch(&self.shared, jobs)
        }

        /// The engine's clock.
        pub fn clock(&self) -> &Clock {
            &self.shared.clock
        }

        /// The current time on the engine's clock.
        pub fn now(&self) -> Timestamp {
            self.shared.clock.now()
        }
    };
}

impl<T: Send + 'static> Submitter<T> {
    submit_api!();
}

impl<T: Send + 'static> Engine<T> {
    submit_api!();

    pub(crate) fn start<M>(
        config: Config,
        on_dead: Option<OnDead<T>>,
        make: M,
    ) -> Result<Engine<T>, BuildError>
    where
        M: MakeRunner<T>,
    {
        let n = config.workers;
        let shared = Arc::new(Shared {
            shards: (0..n).map(|_| Shard::new(config.ring_capacity)).collect(),
            idle: Idle::new(n, config.clock.clone()),
            gate: Gate::new(config.capacity),
            clock: config.clock.clone(),
            stop: AtomicBool::new(false),
            hurry: AtomicBool::new(false),
            stats: (0..n)
                .map(|_| CachePadded::new(WorkerStats::default()))
                .collect(),
            returned: AtomicU64::new(0),
            redriven: AtomicU64::new(0),
            sem: Semantics::new(&config, on_dead),
            latency: (0..n).map(|_| LatencySlot::default()).collect(),
            pin_warnings: Mutex::new(Vec::new()),
            config,
        });
        let make = Arc::new(make);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let w = Worker::new(i, shared.clone());
            let make = make.clone();
            let spawned = thread::Builder::new()
                .name(format!("quay-{}-{i}", shared.config.name))
                .spawn(move || {
                    let shared = w.shared().clone();
                    let out = run_worker(w, &*make, i);
                    // The factory holds the user's handler: on the last
                    // worker to end, this is the handler's `Drop`, user code
                    // that must not unwind the thread with `out` in hand.
                    shared.sem.drop_user(make);
                    out
                });
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    // Stop the ones already started; nothing was accepted.
                    let engine = Engine {
                        shared,
                        workers: Mutex::new(workers),
                    };
                    drop(engine.shutdown_now());
                    return Err(BuildError::Spawn(e.to_string()));
                }
            }
        }
        Ok(Engine {
            shared,
            workers: Mutex::new(workers),
        })
    }

    pub(crate) fn shared(&self) -> &Shared<T> {
        &self.shared
    }

    /// The engine's name (see [`Builder::name`](crate::Builder::name)).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// A handle that can only submit.
    pub fn submitter(&self) -> Submitter<T> {
        Submitter {
            shared: self.shared.clone(),
        }
    }

    /// The number of workers (and shards).
    pub fn workers(&self) -> usize {
        self.shared.shards.len()
    }

    /// The engine's capacity bound.
    pub fn capacity(&self) -> u64 {
        self.shared.gate.limit()
    }

    /// Accepted, completed, dead, returned and held counts. Exact when the
    /// engine is at rest; while it runs, each count is a recent value.
    pub fn counts(&self) -> Counts {
        self.shared.counts()
    }

    /// Every worker's counters, gauges and latency histograms, merged. See
    /// [`MetricsSnapshot`] for how consistent it is.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics()
    }

    /// The latency histograms recorded since the previous call (or since
    /// build), merged over workers: one interval of an interval log.
    pub fn metrics_interval(&self) -> Histograms {
        let mut h = Histograms::default();
        for slot in self.shared.latency.iter() {
            slot.take_interval_into(&mut h);
        }
        h
    }

    /// A snapshot of the dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter<T>>
    where
        T: Clone,
    {
        self.shared.sem.dlq.snapshot()
    }

    /// Empties the dead-letter queue, handing over its entries.
    pub fn drain_dead(&self) -> Vec<DeadLetter<T>> {
        self.shared.sem.dlq.drain()
    }

    /// Dead letters dropped because the DLQ was full.
    pub fn dlq_dropped(&self) -> u64 {
        self.shared.sem.dlq.dropped()
    }

    /// Finished IDs forgotten early because dedup was at capacity.
    pub fn dedup_evicted(&self) -> u64 {
        self.shared.sem.seen.as_ref().map_or(0, |s| s.evicted())
    }

    /// Resubmits the dead job with this ID, attempts reset, bypassing
    /// dedup. On error the dead letter stays in the DLQ.
    pub fn redrive(&self, id: impl Into<JobId>) -> Result<(), RedriveError> {
        self.shared.redrive(id.into())
    }

    /// Redrives every dead letter, oldest first, until one finds no room.
    /// Returns how many were redriven.
    pub fn redrive_all(&self) -> Result<usize, RedriveError> {
        let ids: Vec<JobId> = self.shared.sem.dlq.ids();
        let mut n = 0;
        for id in ids {
            match self.shared.redrive(id) {
                Ok(()) => n += 1,
                Err(RedriveError::NotFound | RedriveError::Live) => {}
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
        }
        Ok(n)
    }

    pub(crate) fn add_pin_warnings(&self, w: Vec<PinWarning>) {
        if !w.is_empty() {
            relock(self.shared.pin_warnings.lock()).extend(w);
        }
    }

    /// The core each worker is pinned to (`None`: unpinned), by worker
    /// index. A pin the OS refused still shows here, and in
    /// [`pin_warnings`](Self::pin_warnings).
    pub fn cores(&self) -> Vec<Option<usize>> {
        self.shared.config.cores.clone()
    }

    /// Pins the OS refused so far; each such worker runs unpinned.
    pub fn pin_warnings(&self) -> Vec<PinWarning> {
        self.shared
            .pin_warnings
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Stops accepting: every later submit (and redrive) is refused with
    /// `ShuttingDown`, its job handed back. The workers go on running every
    /// held job; [`shutdown`](Self::shutdown) waits for them. Works through
    /// a shared reference, from any thread (a signal handler's, say).
    /// Returns whether this call closed the engine.
    pub fn close(&self) -> bool {
        self.shared.gate.close()
    }

    /// Whether [`close`](Self::close) or a shutdown has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.gate.is_closed()
    }

    /// Waits until the engine holds no job (queued, running, waiting behind
    /// a key, delayed or waiting to retry), or `timeout` passes. Returns
    /// whether it is idle. New submits may make it busy again at once.
    /// Called inside a handler of this engine it does not wait (the caller
    /// holds a job itself): it answers whether the engine is idle now.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let idle = || self.shared.gate.held() == 0;
        if crate::loom::is_worker_of(self.shared.id()) {
            return idle();
        }
        self.shared
            .gate
            .wait_until(Deadline::after(timeout), None, (), |()| {
                if idle() {
                    Ok(())
                } else {
                    Err(((), Why::Capacity))
                }
            })
            .is_ok()
    }

    /// Closes the engine, runs every held job (including ones that arrive
    /// from producers mid-submit), joins the workers and reports. Works
    /// through a shared reference; a later call (or one made meanwhile,
    /// which waits for this one) returns no jobs and the final counts.
    /// On a worker thread (inside a handler of this or any engine) it does
    /// not wait: it only closes the engine, and returns no jobs and the
    /// counts of the moment.
    pub fn shutdown(&self) -> Shutdown<T> {
        self.shutdown_until(None)
    }

    /// Like [`shutdown`](Self::shutdown), but once `timeout` passes the
    /// workers stop after their current job, and every job that has not run
    /// is returned.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Shutdown<T> {
        self.shutdown_until(Deadline::after(timeout))
    }

    /// Closes the engine, lets running handlers finish, joins the workers
    /// and returns every job that did not run. A graceful shutdown waiting
    /// in another thread stops waiting too: that one then reports the
    /// jobs (this call waits for it, and returns no jobs).
    pub fn shutdown_now(&self) -> Shutdown<T> {
        self.shared.hurry();
        self.shutdown_until(Deadline::after(Duration::ZERO))
    }

    /// Called on a worker thread (a handler of this engine, or of any
    /// other: another lane's, say), a shutdown does not wait: it could be
    /// waiting for its own worker, or for a lane whose handler waits for
    /// this one. It closes the engine and returns at once, with no jobs and
    /// the counts of the moment (see the methods' docs); the workers go on
    /// draining.
    pub(crate) fn shutdown_until(&self, deadline: Option<Deadline>) -> Shutdown<T> {
        if crate::loom::is_any_worker() {
            self.close();
            return Shutdown {
                returned: Vec::new(),
                counts: self.shared.counts(),
            };
        }
        let mut workers = relock(self.workers.lock());
        let handles = std::mem::take(&mut *workers);
        crate::runtime::shutdown::run(&self.shared, handles, deadline, Drain::All)
    }

    /// What the engine knows of the job with this ID now, without
    /// submitting anything: a dead letter in the DLQ, live, remembered as
    /// finished within the dedup window, or unknown. With dedup off only
    /// `DeadLetter` and `Unknown` can be told apart. See [`JobStatus`].
    pub fn status(&self, id: impl Into<JobId>) -> JobStatus {
        self.shared.sem.status(id.into(), self.shared.clock.now())
    }

    /// Takes the newest dead letter with this ID out of the DLQ and hands
    /// it over; `None` if there is none. Its ID's dedup record is untouched
    /// (within the window a resubmit is still a duplicate; use
    /// [`redrive`](Self::redrive) to run it again).
    pub fn take_dead(&self, id: impl Into<JobId>) -> Option<DeadLetter<T>> {
        self.shared.sem.take_dead(id.into())
    }

    /// Removes the newest dead letter with this ID from the DLQ and drops
    /// it (a panic in its payload's `Drop` is contained and counted in
    /// `contained_panics`). Returns whether there was one. Its ID's dedup
    /// record is untouched.
    pub fn discard_dead(&self, id: impl Into<JobId>) -> bool {
        self.shared.sem.discard_dead(id.into())
    }
}

/// A worker thread's body: makes its runner on this thread (an async
/// runner's futures never cross threads) and runs the loop, inside the
/// user's worker context if one is set. Returns the jobs it held.
fn run_worker<T, M>(w: Worker<T>, make: &M, i: usize) -> Vec<Envelope<T>>
where
    T: Send + 'static,
    M: MakeRunner<T>,
{
    let runner = make.make(i, w.shared());
    let Some(context) = w.shared().config.worker_context.clone() else {
        return w.run(runner);
    };
    let shared = w.shared().clone();
    let mut once = Some((w, runner));
    let mut out = None;
    let mut run = || {
        if let Some((w, r)) = once.take() {
            out = Some(w.run(r));
        }
    };
    // The caller's code: a panic before `run` is contained, one inside it
    // is the loop's own (it contains its handlers' panics).
    if crate::job::guard::call(|| (context.0)(&mut run)).is_err() {
        shared.sem.count_contained(1);
    }
    // Not called (or a panic came first): run without it.
    run();
    // The context is user state too.
    shared.sem.drop_user(context);
    out.unwrap_or_default()
}

/// The longest a dropped engine spends running jobs that are due, before it
/// returns the rest (plus the time its running handlers take to finish).
pub const DROP_GRACE: Duration = Duration::from_secs(1);

impl<T: Send + 'static> Drop for Engine<T> {
    /// Dropping an engine that was not shut down closes it and runs the
    /// jobs that are due, and those that fall due within [`DROP_GRACE`]
    /// (1 s, on the engine's clock) of the drop, for at most that grace
    /// plus the time running handlers take to finish. Jobs that fall due
    /// later (delayed, waiting to retry, or waiting behind such a job's
    /// key) are not waited for. Every job that did not run is counted as returned, its
    /// payload dropped, and one line on stderr says how many: call
    /// [`shutdown`](Engine::shutdown) to get them back instead. Dropped by
    /// one of its own handlers (which cannot join its own worker), it
    /// closes at once and a thread of its own does the rest.
    fn drop(&mut self) {
        let handles = std::mem::take(relock(self.workers.get_mut()));
        if handles.is_empty() {
            return;
        }
        #[cfg(not(quay_loom))]
        if crate::loom::is_worker_of(self.shared.id()) {
            // Dropped by one of its own handlers (the last `Arc` released
            // there): that worker cannot join itself. A thread of its own
            // does the drop's shutdown once the handler has returned.
            self.shared.gate.close();
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quay-{}-drop", shared.config.name))
                .spawn(move || drop_shutdown(&shared, handles));
            if spawned.is_err() {
                // No thread to be had: the workers drain what they hold
                // (the engine is closed) and are never joined.
                eprintln!("quay: engine dropped by its own handler; its workers are not joined");
            }
            return;
        }
        drop_shutdown(&self.shared, handles);
    }
}

/// `Drop`'s shutdown: the due jobs run, for at most [`DROP_GRACE`]; the
/// rest are counted as returned and their payloads dropped.
fn drop_shutdown<T: Send + 'static>(
    shared: &Shared<T>,
    handles: Vec<JoinHandle<Vec<Envelope<T>>>>,
) {
    // The grace's end on the engine's clock: what falls due before it runs.
    let end = shared.clock.now().saturating_add(DROP_GRACE);
    let report = crate::runtime::shutdown::run(
        shared,
        handles,
        Deadline::after(DROP_GRACE),
        Drain::DueBefore(end),
    );
    let n = report.returned.len();
    for job in report.returned {
        shared.sem.drop_user(job);
    }
    #[cfg(not(quay_loom))]
    if n > 0 {
        eprintln!(
            "quay: engine {:?} dropped without shutdown: {n} jobs did not run (delayed, \
             waiting to retry or behind those on their key, or not reached within the grace); \
             counted as returned. Call shutdown() to get them back",
            shared.config.name
        );
    }
    #[cfg(quay_loom)]
    let _ = n;
}
