//! The job state machine, written once: the threaded engine's workers and
//! the deterministic [`Driver`](crate::job::driver::Driver) both run it, so the
//! fuzzer exercises the engine's own transitions.
//!
//! ```text
//! submit ─► Queued ──────────────┐        (unkeyed, due)
//!        ├► KeyWaiting ─► (head) ┤        (keyed, key busy)
//!        └► Delayed ─► (due) ────┤        (not yet due)
//!                                ▼
//!                             Running ─► Completed
//!                                │  ├──► Dead (Fatal, or out of attempts)
//!                                │  └──► RetryWaiting ─► (due) ─► Running
//! ```
//!
//! [`ShardCore`] is one shard's owner-only part: its key table, its timer,
//! and the jobs only it may run. [`Semantics`] is what all shards share: the
//! seen-ID set, the DLQ, the retry policy. See `docs/semantics.md`.
//!
//! An attempt's ending is turned into `settle`'s inputs here too, for both
//! kinds of handler ([`attempt`], [`async_outcome`]), and the state changes
//! are traced where they are made (`observe/trace.rs`).

use crate::clock::Timestamp;
use crate::dedup::SeenSet;
use crate::error::JobError;
use crate::exec::slots::Ended;
use crate::job::dlq::{DeadLetter, Dlq};
use crate::job::envelope::Envelope;
use crate::job::hooks::Hooks;
use crate::job::keys::KeyTable;
use crate::job::retry::{decide, Decision, RetryPolicy, Rng};
use crate::job::timer::{Timer, Waiting};
use crate::job::JobContext;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::observe::trace;
use std::collections::VecDeque;
use std::time::Duration;

/// The semantics every shard shares.
pub(crate) struct Semantics<T> {
    /// `None` when dedup is off.
    pub(crate) seen: Option<SeenSet>,
    pub(crate) dlq: Dlq<T>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_attempts: u32,
    /// `on_complete` and `on_retry` (`on_dead` is the DLQ's).
    hooks: Hooks,
    /// Panics from user code other than handlers (payload drops, the
    /// hooks) contained so far.
    contained: AtomicU64,
    /// The engine's name, for its spans and events (nothing without the
    /// `tracing` feature).
    pub(crate) lane: trace::Lane,
}

impl<T> Semantics<T> {
    pub(crate) fn new(
        config: &crate::runtime::config::Config,
        on_dead: Option<crate::job::dlq::OnDead<T>>,
    ) -> Semantics<T> {
        Semantics {
            seen: config.dedup.map(|d| SeenSet::new(d, config.capacity)),
            dlq: Dlq::new(config.dlq_capacity, on_dead),
            retry: config.retry,
            max_attempts: config.max_attempts,
            hooks: config.hooks.clone(),
            contained: AtomicU64::new(0),
            lane: trace::Lane::new(&config.name),
        }
    }

    /// Drops user data (a payload's `Drop` is user code), containing and
    /// counting a panic.
    #[inline]
    pub(crate) fn drop_user<V>(&self, v: V) {
        if crate::job::guard::drop_value(v) {
            self.count_contained(1);
        }
    }

    #[cold]
    pub(crate) fn count_contained(&self, n: u64) {
        if n > 0 {
            // Relaxed: a statistic.
            self.contained.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Panics from payload drops and the hooks contained so far.
    pub(crate) fn contained(&self) -> u64 {
        self.contained.load(Ordering::Relaxed)
    }

    /// IDs the seen-ID set remembers now, live and terminal (0 with dedup
    /// off). Takes each of its shard locks in turn.
    pub(crate) fn seen_ids(&self) -> u64 {
        self.seen.as_ref().map_or(0, |s| s.len() as u64)
    }

    /// Dedup at submit: `true` if the job is new (its ID is now live).
    /// Every submit path (single, batch, driver) asks here, so a duplicate
    /// is traced here.
    #[inline]
    pub(crate) fn admit_id(&self, env: &Envelope<T>) -> bool {
        let new = match &self.seen {
            Some(s) => s.try_insert(env.job.id, env.accepted_at),
            None => true,
        };
        if !new {
            trace::duplicate(&self.lane, env.job.id);
        }
        new
    }

    /// A hint that `admit_id` of `id` is coming: starts its cache miss.
    #[inline]
    pub(crate) fn prefetch_id(&self, id: crate::job::JobId) {
        if let Some(s) = &self.seen {
            s.prefetch(id);
        }
    }

    /// Takes the newest dead letter with `id` out of the DLQ for a redrive.
    ///
    /// Under the DLQ's lock: `reserve` claims the job's capacity, then its
    /// ID is made live again whatever dedup remembers of its death, and
    /// only then is the entry removed. A refusal at either step (no room,
    /// or a job with that ID live now, when `unreserve` gives the capacity
    /// back) leaves the dead letter as and where it was, and its ID's dedup
    /// record untouched. Returns the job, due now.
    pub(crate) fn take_for_redrive(
        &self,
        id: crate::job::JobId,
        reserve: impl FnOnce() -> Result<(), crate::error::RedriveError>,
        unreserve: impl FnOnce(),
    ) -> Result<crate::job::Job<T>, crate::error::RedriveError> {
        use crate::error::RedriveError;
        let taken = self.dlq.take_if(id, |_| {
            reserve()?;
            let revived = match &self.seen {
                Some(s) => s.revive(id),
                None => true,
            };
            if !revived {
                unreserve();
                return Err(RedriveError::Live);
            }
            Ok(())
        });
        let dl = taken.ok_or(RedriveError::NotFound)??;
        // Placing cannot fail after this (engine and driver alike).
        trace::redrive(&self.lane, id);
        let mut job = dl.job;
        job.schedule = crate::job::Schedule::Now;
        Ok(job)
    }
}

/// Where an attempt left its job: [`Step::settled`](crate::Step::settled),
/// as reported by [`Driver::run_next`](crate::Driver::run_next).
///
/// `Completed` and `Dead` are terminal (the job's capacity is free, its ID
/// remembered by dedup); `Retrying` is not (the job waits in the timer for
/// its backoff, and runs again once the clock reaches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The handler returned `Ok`: terminal.
    Completed,
    /// The attempt failed and the job waits in the timer to retry.
    Retrying,
    /// Fatal, or out of attempts: terminal, in the DLQ.
    Dead,
}

impl Settled {
    /// Whether the job is finished (its capacity is free).
    pub fn is_terminal(self) -> bool {
        self != Settled::Retrying
    }
}

/// Runs one attempt (`ctx`) of a sync handler, containing a panic as a
/// transient failure with the panic's message. Returns the result and
/// whether it panicked.
#[inline]
pub(crate) fn attempt(
    lane: &trace::Lane,
    ctx: &JobContext,
    run: impl FnOnce() -> Result<(), JobError>,
) -> (Result<(), JobError>, bool) {
    match crate::job::guard::call(run) {
        Ok(r) => (r, false),
        Err(msg) => (Err(panic_error(lane, ctx, &msg)), true),
    }
}

/// A contained handler panic, as the attempt's error.
#[cold]
fn panic_error(lane: &trace::Lane, ctx: &JobContext, msg: &str) -> JobError {
    trace::panicked(lane, ctx, msg);
    JobError::Retry(format!("panic: {msg}"))
}

/// What a worker's async runner and the driver keep beside an async
/// attempt's future: the job, the handler's context, the attempt's start
/// (for latency; the driver does not record it) and its span.
pub(crate) struct InFlight<T> {
    pub(crate) env: Envelope<T>,
    pub(crate) ctx: JobContext,
    pub(crate) start: Timestamp,
    pub(crate) span: trace::Span,
}

/// How an async attempt ended, as `settle`'s inputs: the attempt, its
/// result (a panicking poll or a timeout is a transient failure) and
/// whether it panicked. `limit` is the attempt timeout. Called inside the
/// attempt's span.
pub(crate) fn async_outcome<T>(
    lane: &trace::Lane,
    e: Ended<InFlight<T>, Result<(), JobError>>,
    limit: Option<Duration>,
) -> (InFlight<T>, Result<(), JobError>, bool) {
    match e {
        Ended::Done(a, r) => (a, r, false),
        Ended::Panicked(a, msg) => {
            let err = panic_error(lane, &a.ctx, &msg);
            (a, Err(err), true)
        }
        Ended::TimedOut(a) => {
            let d = limit.unwrap_or_default();
            trace::timed_out(lane, &a.ctx, d);
            (
                a,
                Err(JobError::Retry(format!("timed out after {d:?}"))),
                false,
            )
        }
    }
}

/// When a terminal job's ID is recorded in the seen-ID set.
#[derive(Clone, Copy)]
enum Record {
    /// With the worker's next commit (completions: the common case,
    /// recorded in bulk).
    AtCommit,
    /// At once (deaths: rare, and the dead letter is visible in the DLQ
    /// right away, so a redrive must find the ID no longer live).
    Now,
}

/// One shard's owner-only state.
pub(crate) struct ShardCore<T> {
    keys: KeyTable<T>,
    timer: Timer<T>,
    /// Runnable jobs only this shard's owner may run: keyed heads and due
    /// timers.
    ready: VecDeque<Envelope<T>>,
    rng: Rng,
    /// Terminal jobs' IDs not yet recorded in the seen-ID set.
    finished: Vec<crate::job::JobId>,
    /// Working space for `finished`'s commit.
    scratch: Vec<crate::dedup::idtable::Hashed>,
}

impl<T> ShardCore<T> {
    /// A core whose key table and ready queue hold `presize` jobs before
    /// they must grow (the engine passes its ring size: a steady state that
    /// fits in a ring allocates nothing), and that holds `pending` finished
    /// IDs between commits.
    pub(crate) fn new(seed: u64, presize: usize, pending: usize) -> ShardCore<T> {
        ShardCore {
            keys: KeyTable::with_capacity(presize),
            timer: Timer::with_capacity(presize),
            ready: VecDeque::with_capacity(presize),
            rng: Rng::new(seed),
            finished: Vec::with_capacity(pending),
            scratch: Vec::with_capacity(2 * pending),
        }
    }

    /// A job arrives for this shard's owner: it queues behind its key, or
    /// waits for its due time, or is ready.
    pub(crate) fn admit(&mut self, env: Envelope<T>, now: Timestamp) {
        match env.job.key {
            Some(key) => {
                if let Some(env) = self.keys.arrive(key, env) {
                    self.schedule(env, now);
                }
            }
            None => self.schedule(env, now),
        }
    }

    /// `env` may run once due (its key, if any, is already busy with it).
    /// A job due at its accept time is ready whatever `now` says: `now` may
    /// come from another core's clock, a few nanoseconds behind the
    /// producer's (TSC reads are neither fenced nor synchronised exactly).
    fn schedule(&mut self, env: Envelope<T>, now: Timestamp) {
        if env.ready_at > now && env.ready_at > env.accepted_at {
            self.timer.insert(env.ready_at, env);
        } else {
            self.ready.push_back(env);
        }
    }

    /// Moves every timer entry due at `now` to the ready queue.
    pub(crate) fn fire(&mut self, now: Timestamp) {
        while let Some((due, mut env)) = self.timer.pop_due(now) {
            env.ready_at = due;
            self.ready.push_back(env);
        }
    }

    /// Records the IDs of the jobs that completed since the last call as
    /// finished in the seen-ID set, in one grouped pass. A worker calls it
    /// when it commits (before releasing those jobs' capacity: see
    /// `worker.rs`), the driver after each step; until then the IDs stay
    /// live, which can only make a resubmit meanwhile a duplicate. (Dead
    /// jobs are recorded at once.)
    pub(crate) fn commit_finished(&mut self, sem: &Semantics<T>, now: Timestamp) {
        if let Some(s) = &sem.seen {
            if !self.finished.is_empty() {
                s.finish_all(&mut self.finished, &mut self.scratch, now);
            }
        }
    }

    pub(crate) fn pop_ready(&mut self) -> Option<Envelope<T>> {
        self.ready.pop_front()
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.timer.next_due()
    }

    /// An attempt of `env` (its `attempts` already counts it), whose
    /// handler saw `ctx`, ended with `result` at `now`: retry, complete or
    /// bury it. Once the new state is recorded, the matching hook sees it
    /// (`on_complete`, `on_retry`; `on_dead` runs as the DLQ takes the
    /// job), through the guard: a panic there is counted, and changes
    /// nothing about the job.
    pub(crate) fn settle(
        &mut self,
        sem: &Semantics<T>,
        mut env: Envelope<T>,
        ctx: &JobContext,
        result: Result<(), JobError>,
        now: Timestamp,
    ) -> Settled {
        let err = match result {
            Ok(()) => {
                self.conclude(sem, &env, now, Record::AtCommit);
                sem.drop_user(env);
                if sem.hooks.completed(ctx) {
                    sem.count_contained(1);
                }
                return Settled::Completed;
            }
            Err(e) => e,
        };
        let max = env.job.max_attempts_or(sem.max_attempts);
        let decision = decide(&err, env.attempts, max, &sem.retry, &mut self.rng);
        env.record_error(err.to_string());
        match decision {
            Decision::RetryAfter(d) => {
                env.ready_at = now.saturating_add(d);
                // The key (if any) stays busy: it waits with its job.
                self.timer.insert(env.ready_at, env);
                trace::retry(&sem.lane, ctx, d, &err);
                if sem.hooks.retrying(ctx, &err, d) {
                    sem.count_contained(1);
                }
                Settled::Retrying
            }
            Decision::Dead => {
                trace::dead(&sem.lane, env.job.id, env.attempts, &err);
                self.conclude(sem, &env, now, Record::Now);
                let panics = sem.dlq.push(DeadLetter {
                    attempts: env.attempts,
                    errors: env.errors.map_or_else(Vec::new, |e| *e),
                    accepted_at: env.accepted_at,
                    died_at: now,
                    job: env.job,
                });
                sem.count_contained(panics);
                Settled::Dead
            }
        }
    }

    /// A job became terminal: its ID is remembered (at the next commit, or
    /// at once), its key moves on.
    fn conclude(&mut self, sem: &Semantics<T>, env: &Envelope<T>, now: Timestamp, when: Record) {
        if let Some(seen) = &sem.seen {
            match when {
                Record::AtCommit => self.finished.push(env.job.id),
                Record::Now => seen.finish(env.job.id, now),
            }
        }
        if let Some(key) = env.job.key {
            if let Some(next) = self.keys.next(key) {
                self.schedule(next, now);
            }
        }
    }

    /// How many jobs this core holds, by state.
    pub(crate) fn gauges(&self) -> DriverGauges {
        DriverGauges {
            ready: self.ready.len(),
            key_waiting: self.keys.queued(),
            delayed: self.timer.count(Waiting::Delayed),
            retry_waiting: self.timer.count(Waiting::Retry),
            live_keys: self.keys.live_keys(),
        }
    }

    /// Empties everything (shutdown), handing over every job it holds.
    /// A key's jobs come out in accept order: its busy job (ready, or in
    /// the timer to retry or wait for its delay) before those queued behind
    /// it.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Envelope<T>>) {
        out.extend(self.ready.drain(..));
        self.timer.drain_into(out);
        self.keys.drain_into(out);
    }
}

/// How many jobs a [`Driver`](crate::Driver) holds, by state: what
/// [`Driver::gauges`](crate::Driver::gauges) returns.
///
/// These are the figures one shard's owner keeps privately. An engine's
/// [`GaugeSnapshot`](crate::GaugeSnapshot) sums the same figures over its
/// workers (`key_waiting`, `delayed`, `retry_waiting`, `live_keys`; `ready`
/// is part of its `queued_per_shard`), beside figures a driver does not
/// have (`held`, `dead_letters` and the like: see [`Driver::counts`](crate::Driver::counts)
/// and [`Driver::dead_letters`](crate::Driver::dead_letters)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverGauges {
    /// Runnable, owner-only (keyed heads, due timers).
    pub ready: usize,
    /// Waiting behind a busy key.
    pub key_waiting: usize,
    /// Waiting for a delay's due time.
    pub delayed: usize,
    /// Waiting to retry.
    pub retry_waiting: usize,
    /// Keys with jobs (state for other keys is freed).
    pub live_keys: usize,
}
