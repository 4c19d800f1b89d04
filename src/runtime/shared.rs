//! [`Shared`]: the state every thread may touch, and the submit protocol
//! every public submit path goes through (see `docs/design.md`, "Submit").

use crate::clock::{Clock, Timestamp};
use crate::error::{RedriveError, SubmitError, Submitted};
use crate::job::envelope::Envelope;
use crate::job::machine::Semantics;
use crate::job::{Job, JobId};
use crate::loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::loom::sync::Mutex;
use crate::loom::time::Deadline;
use crate::observe::counts::Counts;
use crate::observe::latency::{Histograms, LatencySlot};
use crate::observe::metrics::{Counters, GaugeSnapshot, MetricsSnapshot};
use crate::observe::stats::WorkerStats;
use crate::runtime::config::{Config, PinWarning};
use crate::runtime::shard::Shard;
use crate::sync::capacity::{Gate, Refused, Why};
use crate::sync::idle::Idle;
use crossbeam_utils::CachePadded;

/// One submit attempt's answer, for the waiting submits.
pub(crate) enum Attempt<T> {
    /// Accepted, a duplicate, or refused for shutdown: the final answer.
    Done(Result<Submitted, SubmitError<T>>),
    /// Refused as full, the job handed back, with what it waits for.
    Blocked(Job<T>, Why),
}

/// State every thread may touch.
pub(crate) struct Shared<T> {
    pub(crate) shards: Box<[Shard<T>]>,
    pub(crate) idle: Idle,
    pub(crate) gate: Gate,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    /// Set by shutdown: workers stop after their current job.
    pub(crate) stop: AtomicBool,
    /// Set by `shutdown_now`: a graceful shutdown waiting for the drain
    /// stops waiting.
    pub(crate) hurry: AtomicBool,
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
        match self.attempt_submit(job) {
            Attempt::Done(r) => r,
            Attempt::Blocked(job, _) => Err(self.refused_full(job)),
        }
    }

    /// [`try_submit`](Self::try_submit), saying what a job refused as full
    /// waits for: capacity, or ring or inbox room (see `Why`). A refusal
    /// for want of room is counted as an attempt (`full_attempts`); the
    /// call's final answer is counted by the caller (`refused_full`).
    #[inline]
    pub(crate) fn attempt_submit(&self, job: Job<T>) -> Attempt<T> {
        // Start the seen-ID set's likely cache miss now, so it overlaps the
        // room check, the capacity claim and the clock read.
        self.sem.prefetch_id(job.id);
        let now = self.clock.now();
        let env = Envelope::new(job, now);
        // No room: refused before anything is claimed or marked, so there
        // is nothing to undo (and a blocked submit's failed attempt
        // releases nothing, so it cannot wake itself). But a closed engine
        // is never answered "full": the gate is read before that answer.
        if !self.has_room(&env, now) {
            return match self.full_or_closed() {
                Refused::Closed => Attempt::Done(Err(SubmitError::ShuttingDown(env.job))),
                Refused::Full => {
                    self.count_full_attempt();
                    Attempt::Blocked(env.job, Why::Room)
                }
            };
        }
        // The gate's one word holds `closed` beside `held`: its refusal
        // says which, in that order.
        match self.gate.try_acquire(1) {
            Ok(_) => {}
            Err(Refused::Full) => {
                self.count_full_attempt();
                return Attempt::Blocked(env.job, Why::Capacity);
            }
            Err(Refused::Closed) => return Attempt::Done(Err(SubmitError::ShuttingDown(env.job))),
        }
        Attempt::Done(Ok(self.admit(env, now)))
    }

    /// What a submit that found no ring or inbox room answers: `Closed`
    /// once the gate is closed (a closed engine never answers with a
    /// transient `Full` or `Timeout`), else `Full`. The gate is read
    /// after the room check, so a close that happened before the submit
    /// began is always seen.
    #[cold]
    pub(crate) fn full_or_closed(&self) -> Refused {
        if self.gate.is_closed() {
            Refused::Closed
        } else {
            Refused::Full
        }
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

    /// Counts (and traces) a submit call whose final answer is a refusal
    /// for capacity (`Full`, `Timeout`, a batch's `Full`, an async submit
    /// given up while blocked), and hands the job back as `Full`: every
    /// such call comes through here once.
    #[cold]
    pub(crate) fn refused_full(&self, job: Job<T>) -> SubmitError<T> {
        self.count_refused_full(job.id);
        SubmitError::Full(job)
    }

    /// Counts (and traces) a call refused for capacity, its job `id`.
    #[cold]
    pub(crate) fn count_refused_full(&self, id: JobId) {
        self.shards[home_shard(self.shards.len())].count_rejected_full();
        crate::observe::trace::full(&self.sem.lane, id);
    }

    /// Counts one attempt refused for want of room or capacity (a waiting
    /// submit makes many per call).
    #[cold]
    fn count_full_attempt(&self) {
        self.shards[home_shard(self.shards.len())].count_full_attempt();
    }

    /// Dedups and places an envelope that holds one unit of capacity. A
    /// duplicate's unit is released and its payload dropped (dedup traces
    /// it: `Semantics::admit_id`).
    #[inline]
    pub(crate) fn admit(&self, env: Envelope<T>, now: Timestamp) -> Submitted {
        match self.admit_or_return(env, now) {
            Ok(()) => Submitted::Accepted,
            Err(dup) => {
                self.sem.drop_user(dup);
                Submitted::Duplicate
            }
        }
    }

    /// [`admit`](Self::admit), handing a duplicate back (its unit released
    /// and counted) for the caller to drop once it holds nothing.
    #[inline]
    pub(crate) fn admit_or_return(
        &self,
        env: Envelope<T>,
        now: Timestamp,
    ) -> Result<(), Envelope<T>> {
        if !self.sem.admit_id(&env) {
            self.gate.release(1);
            self.shards[home_shard(self.shards.len())].count_duplicates(1);
            return Err(env);
        }
        self.place(env, now);
        Ok(())
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
    pub(crate) fn submit_until(
        &self,
        mut job: Job<T>,
        deadline: Option<Deadline>,
    ) -> Result<Submitted, SubmitError<T>> {
        if crate::loom::is_worker_of(self.id()) {
            return self.try_submit(job);
        }
        let mut backoff = crate::sync::idle::Backoff::default();
        for _ in 0..16 {
            match self.attempt_submit(job) {
                Attempt::Blocked(j, _) => job = j,
                Attempt::Done(r) => return r,
            }
            backoff.snooze();
        }
        // Each attempt that fails takes no capacity and releases none, so
        // it cannot wake itself: the waiter sleeps until a worker (or a
        // duplicate, or shutdown) releases a unit, or a worker claims jobs
        // and so frees ring or inbox room (`Gate::room_freed`), if that is
        // what it waits for. A close wakes it too, and its next attempt
        // answers `ShuttingDown` (`attempt_submit` reads the gate first).
        let out = self
            .gate
            .wait_until(deadline, None, job, |j| match self.attempt_submit(j) {
                Attempt::Blocked(j, why) => Err((j, why)),
                Attempt::Done(r) => Ok(r),
            });
        out.unwrap_or_else(|j| match self.refused_full(j) {
            SubmitError::Full(j) => Err(SubmitError::Timeout(j)),
            other => Err(other),
        })
    }

    /// Cuts short a graceful shutdown's wait for the drain (`shutdown_now`
    /// from another thread).
    pub(crate) fn hurry(&self) {
        // Release pairs with the Acquire load in the shutdown's wait; the
        // wake-up's sequence bump (under the gate's lock) then makes a
        // waiter that read the old sequence re-check instead of sleeping.
        self.hurry.store(true, Ordering::Release);
        self.gate.wake_all();
    }

    /// Whether every worker is idle, the `held` jobs are all ones the
    /// workers hold but may not run yet (delayed, waiting to retry, or
    /// waiting behind their key), as each worker told when it went idle,
    /// and none of those falls due before `end` (each worker's next timer
    /// is later). Jobs still in a ring, inbox or overflow, or claimed, are
    /// in `held` but not in the sum, so the answer is no while any is left.
    pub(crate) fn only_not_due_held(&self, held: u64, end: Timestamp) -> bool {
        let mut not_due = 0;
        for s in self.stats.iter() {
            // Acquire pairs with the Release store of `idle` in the
            // worker's `tell_idle`: its gauges, stored before, are seen.
            if !s.idle.load(Ordering::Acquire) {
                return false;
            }
            // A timer due before `end` will make that worker busy again.
            if s.next_due.get() < end.as_nanos() {
                return false;
            }
            not_due += s.delayed.get() + s.retry_waiting.get() + s.key_waiting.get();
        }
        held <= not_due
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
            full_attempts: self.shards.iter().map(|s| s.full_attempts()).sum(),
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
            seen_ids: self.sem.seen_ids(),
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
        let mut pauses = crate::observe::pauses::Pauses::default();
        for slot in self.latency.iter() {
            slot.add_total_to(&mut h);
            slot.add_pauses_to(&mut pauses);
        }
        let mut m = MetricsSnapshot::new(c, g, h);
        m.pauses = pauses;
        m
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

/// The shard a producer thread prefers for unkeyed jobs: fixed per thread,
/// spread round-robin over threads, so concurrent producers rarely share a
/// ring's tail.
#[inline]
fn home_shard(shards: usize) -> usize {
    crate::loom::home_index() % shards
}
