//! [`Engine`] and [`Submitter`]: the public handles, and the submit paths.
//!
//! `Engine` owns the workers; it is `Send + Sync`, so share it by reference
//! or in an `Arc`. [`Engine::submitter`] hands out a cheap `Clone` handle
//! that can only submit, for request handlers that should not be able to
//! shut the engine down. Shutdown consumes the `Engine`, so no code can use
//! an engine after shutting it down; a `Submitter` that outlives it gets
//! [`SubmitError::ShuttingDown`] with its job back.

use crate::batch::BatchReport;
use crate::builder::{Builder, Config, PinWarning};
use crate::capacity::{Gate, Refused};
use crate::clock::{Clock, Timestamp};
use crate::dlq::{DeadLetter, OnDead};
use crate::envelope::Envelope;
use crate::error::{BuildError, JobError, RedriveError, SubmitError, Submitted};
use crate::idle::Idle;
use crate::job::{Job, JobContext, JobId};
use crate::latency::{Histograms, LatencySlot};
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::loom::sync::{Arc, Mutex};
use crate::loom::thread::{self, JoinHandle};
use crate::loom::time::Deadline;
use crate::machine::Semantics;
use crate::metrics::{Counters, GaugeSnapshot, MetricsSnapshot};
use crate::shard::Shard;
use crate::shutdown::{Counts, Shutdown};
use crate::stats::WorkerStats;
use crate::worker::Worker;
use crossbeam_utils::CachePadded;
use std::time::Duration;

/// State every thread may touch.
pub(crate) struct Shared<T> {
    pub(crate) shards: Box<[Shard<T>]>,
    pub(crate) idle: Idle,
    pub(crate) gate: Gate,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    /// Set by shutdown: workers stop after their current job.
    pub(crate) stop: AtomicBool,
    pub(crate) stats: Box<[CachePadded<WorkerStats>]>,
    pub(crate) returned: AtomicU64,
    pub(crate) redriven: AtomicU64,
    pub(crate) sem: Semantics<T>,
    /// Each worker's published latency histograms.
    pub(crate) latency: Box<[LatencySlot]>,
    pub(crate) pin_warnings: Mutex<Vec<PinWarning>>,
}

impl<T: Send + 'static> Shared<T> {
    /// The one non-blocking submit every public submit goes through.
    ///
    /// The order is the protocol that keeps `Duplicate` honest (see
    /// `docs/design.md`, "Submit"): first a look for room in the queue the
    /// job would go to, and the capacity gate's claim; only then does dedup
    /// make the ID visible as live; then the job is placed, which cannot
    /// fail (a ring filled meanwhile spills into its shard's overflow).
    /// Nothing made visible is ever rolled back, so a concurrent submit of
    /// the same ID that is told `Duplicate` is told so about a job that is
    /// in the engine.
    #[inline]
    pub(crate) fn try_submit(&self, job: Job<T>) -> Result<Submitted, SubmitError<T>> {
        // Start the seen-ID set's likely cache miss now, so it overlaps the
        // room check, the capacity claim and the clock read.
        self.sem.prefetch_id(job.id);
        let now = self.clock.now();
        let env = Envelope::new(job, now);
        // No room: refused before anything is claimed or marked, so there
        // is nothing to undo (and a blocked submit's failed attempt
        // releases nothing, so it cannot wake itself).
        if !self.has_room(&env, now) {
            self.count_rejected_full();
            return Err(SubmitError::Full(env.job));
        }
        match self.gate.try_acquire(1) {
            Ok(_) => {}
            Err(Refused::Full) => {
                self.count_rejected_full();
                return Err(SubmitError::Full(env.job));
            }
            Err(Refused::Closed) => return Err(SubmitError::ShuttingDown(env.job)),
        }
        Ok(self.admit(env, now))
    }

    /// Whether the ring or inbox `env` would go to has room now: a hint (a
    /// racing producer may take it; `place` then spills into the overflow),
    /// whose cost is lines the push loads anyway.
    #[inline]
    pub(crate) fn has_room(&self, env: &Envelope<T>, now: Timestamp) -> bool {
        let n = self.shards.len();
        let home = home_shard(n);
        if env.owner_only(now) {
            let s = env.job.key.map_or(home, |k| k.shard(n));
            // Not while the overflow holds jobs: the push would join them
            // there (for order), the slow path; wait for the owner instead.
            let shard = &self.shards[s];
            return shard.overflow.is_empty() && shard.inbox.has_room();
        }
        (0..n).any(|i| self.shards[(home + i) % n].ring.has_room())
    }

    #[cold]
    pub(crate) fn count_rejected_full(&self) {
        self.shards[home_shard(self.shards.len())].count_rejected_full();
    }

    /// Dedups and places an envelope that holds one unit of capacity. A
    /// duplicate's unit is released and its payload dropped.
    #[inline]
    pub(crate) fn admit(&self, env: Envelope<T>, now: Timestamp) -> Submitted {
        if !self.sem.admit_id(&env) {
            self.gate.release(1);
            self.shards[home_shard(self.shards.len())].count_duplicates(1);
            self.sem.drop_user(env);
            return Submitted::Duplicate;
        }
        self.place(env, now);
        Submitted::Accepted
    }

    /// Puts an envelope that holds one unit of capacity into a shard:
    /// keyed and delayed jobs into their owner's inbox, others into the
    /// producer's home ring, moving on to the next ring while one is full,
    /// and into an overflow when every one is. Counts it accepted, and wakes
    /// a worker if one sleeps. Never fails.
    pub(crate) fn place(&self, env: Envelope<T>, now: Timestamp) {
        let n = self.shards.len();
        let home = home_shard(n);
        if env.owner_only(now) {
            let s = env.job.key.map_or(home, |k| k.shard(n));
            let shard = &self.shards[s];
            shard.count_accepted(1);
            shard.push_owned(env);
            self.idle.notify(s, true);
            return;
        }
        self.shards[home].count_accepted(1);
        let mut env = env;
        for i in 0..n {
            let s = (home + i) % n;
            match self.shards[s].ring.push(env) {
                Ok(()) => {
                    self.idle.notify(s, false);
                    return;
                }
                Err(back) => env = back,
            }
        }
        self.shards[home].overflow.push(env);
        // Any worker may steal it from there.
        self.idle.notify(home, false);
    }

    /// Blocks until the job is placed, refused for shutdown, or `deadline`
    /// passes. A job waits only for capacity (placing needs nothing else):
    /// a short spin, then a park on the gate that every release ends.
    ///
    /// On one of this engine's own workers (a handler submitting a
    /// follow-up job) it does not wait: that worker may be the one that must
    /// free the room, so waiting could deadlock it. It answers at once,
    /// as [`try_submit`](Self::try_submit) does.
    fn submit_until(
        &self,
        mut job: Job<T>,
        deadline: Option<Deadline>,
    ) -> Result<Submitted, SubmitError<T>> {
        if crate::loom::is_worker_of(self.id()) {
            return self.try_submit(job);
        }
        let mut backoff = crate::idle::Backoff::default();
        for _ in 0..16 {
            match self.try_submit(job) {
                Err(SubmitError::Full(j)) => job = j,
                other => return other,
            }
            backoff.snooze();
        }
        // Each attempt that fails takes no capacity and releases none, so
        // it cannot wake itself: the waiter sleeps until a worker (or a
        // duplicate, or shutdown) releases a unit, or for ring room, which
        // no release announces, until the next poll.
        let out = self.gate.wait_until(deadline, Some(ROOM_POLL), job, |j| {
            match self.try_submit(j) {
                Err(SubmitError::Full(j)) => Err(j),
                other => Ok(other),
            }
        });
        out.unwrap_or_else(|j| Err(SubmitError::Timeout(j)))
    }

    /// This engine's identity, for [`crate::loom::is_worker_of`].
    pub(crate) fn id(&self) -> usize {
        self as *const Shared<T> as usize
    }

    /// Takes the newest dead letter with `id` out of the DLQ and submits it
    /// again with its attempts reset, bypassing dedup.
    ///
    /// A refusal leaves the dead letter as and where it was (see
    /// `Semantics::take_for_redrive`); placing cannot fail after it (see
    /// [`Shared::try_submit`]).
    pub(crate) fn redrive(&self, id: JobId) -> Result<(), RedriveError> {
        let job = self.sem.take_for_redrive(
            id,
            || match self.gate.try_acquire(1) {
                Ok(_) => Ok(()),
                Err(Refused::Full) => Err(RedriveError::Full),
                Err(Refused::Closed) => Err(RedriveError::ShuttingDown),
            },
            || self.gate.release(1),
        )?;
        let now = self.clock.now();
        self.redriven.fetch_add(1, Ordering::Relaxed);
        self.place(Envelope::new(job, now), now);
        Ok(())
    }

    pub(crate) fn metrics(&self) -> MetricsSnapshot {
        let mut c = Counters {
            accepted: self.shards.iter().map(|s| s.accepted()).sum(),
            duplicates: self.shards.iter().map(|s| s.duplicates()).sum(),
            rejected_full: self.shards.iter().map(|s| s.rejected_full()).sum(),
            dlq_dropped: self.sem.dlq.dropped(),
            redriven: self.redriven.load(Ordering::Relaxed),
            returned: self.returned.load(Ordering::Relaxed),
            dedup_evicted: self.sem.seen.as_ref().map_or(0, |s| s.evicted()),
            wakes: self.idle.wakes(),
            contained_panics: self.sem.contained(),
            ..Counters::default()
        };
        let mut g = GaugeSnapshot {
            queued_per_shard: self.shards.iter().map(|s| s.queued() as u64).collect(),
            held: self.gate.held(),
            dead_letters: self.sem.dlq.len() as u64,
            ..GaugeSnapshot::default()
        };
        for s in self.stats.iter() {
            c.started += s.started.get();
            c.completed += s.completed.get();
            c.failed_attempts += s.failed_attempts.get();
            c.retried += s.retried.get();
            c.panicked += s.panicked.get();
            c.dead += s.dead.get();
            c.stolen_jobs += s.stolen_jobs.get();
            c.steal_batches += s.steal_batches.get();
            c.parks += s.parks.get();
            g.retry_waiting += s.retry_waiting.get();
            g.delayed += s.delayed.get();
            g.key_waiting += s.key_waiting.get();
            g.live_keys += s.live_keys.get();
        }
        let mut h = Histograms::default();
        for slot in self.latency.iter() {
            slot.add_total_to(&mut h);
        }
        MetricsSnapshot::new(c, g, h)
    }

    pub(crate) fn counts(&self) -> Counts {
        let mut c = Counts {
            accepted: self.shards.iter().map(|s| s.accepted()).sum(),
            returned: self.returned.load(Ordering::Relaxed),
            held: self.gate.held(),
            duplicates: self.shards.iter().map(|s| s.duplicates()).sum(),
            redriven: self.redriven.load(Ordering::Relaxed),
            ..Counts::default()
        };
        for s in self.stats.iter() {
            c.completed += s.completed.get();
            c.dead += s.dead.get();
            c.retried += s.retried.get();
        }
        c
    }
}

/// How often a blocked submit looks for ring or inbox room between
/// releases: a worker frees ring room when it claims jobs, and capacity
/// (which wakes the waiter at once) only when it commits their endings.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// The shard a producer thread prefers for unkeyed jobs: fixed per thread,
/// spread round-robin over threads, so concurrent producers rarely share a
/// ring's tail.
#[inline]
fn home_shard(shards: usize) -> usize {
    crate::loom::home_index() % shards
}

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
    workers: Vec<JoinHandle<Vec<Envelope<T>>>>,
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
        /// a park that each release of capacity ends, and that looks again
        /// for ring room every millisecond. Called inside a handler of this
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

        /// Submits many jobs without blocking, in order. The report says what
        /// became of each job, and hands back every refused one with its
        /// reason. A refusal (the engine full or closing) refuses the rest
        /// of the batch too, so a key's jobs are never accepted after one
        /// of its earlier jobs in the batch was refused. If the iterator
        /// panics, the jobs it yielded before are submitted and the panic
        /// goes on.
        pub fn submit_batch(&self, jobs: impl IntoIterator<Item = Job<T>>) -> BatchReport<T> {
            crate::batch::submit_batch(&self.shared, jobs)
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

    /// A builder with every setting at its default.
    pub fn builder() -> Builder<T> {
        Builder::new()
    }

    pub(crate) fn start<H>(
        config: Config,
        on_dead: Option<OnDead<T>>,
        handler: H,
    ) -> Result<Engine<T>, BuildError>
    where
        H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
    {
        let n = config.workers;
        let shared = Arc::new(Shared {
            shards: (0..n).map(|_| Shard::new(config.ring_capacity)).collect(),
            idle: Idle::new(n),
            gate: Gate::new(config.capacity),
            clock: config.clock.clone(),
            stop: AtomicBool::new(false),
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
        let handler = Arc::new(handler);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let w = Worker::new(i, shared.clone(), handler.clone());
            let spawned = thread::Builder::new()
                .name(format!("quay-worker-{i}"))
                .spawn(move || w.run());
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    // Stop the ones already started; nothing was accepted.
                    let engine = Engine { shared, workers };
                    drop(engine.shutdown_now());
                    return Err(BuildError::Spawn(e.to_string()));
                }
            }
        }
        Ok(Engine { shared, workers })
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

    /// Pins the OS refused so far; each such worker runs unpinned.
    pub fn pin_warnings(&self) -> Vec<PinWarning> {
        self.shared
            .pin_warnings
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Stops accepting, runs every held job (including ones that arrive
    /// from producers mid-submit), joins the workers and reports.
    pub fn shutdown(self) -> Shutdown<T> {
        self.shutdown_inner(None)
    }

    /// Like [`shutdown`](Self::shutdown), but once `timeout` passes the
    /// workers stop after their current job, and every job that has not run
    /// is returned.
    pub fn shutdown_timeout(self, timeout: Duration) -> Shutdown<T> {
        self.shutdown_inner(Deadline::after(timeout))
    }

    /// Stops accepting, lets running handlers finish, joins the workers and
    /// returns every job that did not run.
    pub fn shutdown_now(self) -> Shutdown<T> {
        self.shutdown_inner(Deadline::after(Duration::ZERO))
    }

    fn shutdown_inner(mut self, deadline: Option<Deadline>) -> Shutdown<T> {
        crate::shutdown::run(&self.shared, std::mem::take(&mut self.workers), deadline)
    }
}

impl<T: Send + 'static> Drop for Engine<T> {
    /// Dropping an engine that was not shut down runs a full graceful
    /// [`shutdown`](Engine::shutdown): it blocks until every held job has
    /// run. No job is dropped silently.
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            drop(crate::shutdown::run(
                &self.shared,
                std::mem::take(&mut self.workers),
                None,
            ));
        }
    }
}
