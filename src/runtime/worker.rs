//! The worker loop: one OS thread per shard, pinned when asked.
//!
//! Each turn a worker:
//! 1. moves jobs from its inbox (keyed, delayed) into its [`ShardCore`]
//!    (key table, timer), and fires due timers;
//! 2. takes the core's ready jobs, then claims a batch from its own ring, or
//!    else steals a batch from the other shards' rings, starting at its
//!    right-hand neighbour;
//! 3. runs the batch, checking `stop` between jobs; every
//!    `commit_every` endings (see [`COMMIT_MAX`]), at least every
//!    [`COMMIT_AGE`], and whenever it runs dry, records the
//!    finished IDs in the seen-ID set and gives their capacity back with
//!    one RMW;
//! 4. finding nothing, idles per the [`IdleStrategy`]: spins, then sleeps by
//!    the protocol in `idle.rs`.
//!
//! `Worker` is the owner-only state ("core" in tokio's terms); the engine's
//! `Shared` is what everyone touches.

use crate::clock::Timestamp;
use crate::error::JobError;
use crate::job::envelope::Envelope;
use crate::job::machine::{attempt, Settled, ShardCore};
use crate::job::JobContext;
use crate::loom::sync::atomic::Ordering;
use crate::loom::sync::Arc;
use crate::loom::time::Stopwatch;
use crate::observe::latency::Recorder;
use crate::observe::pauses::Pause;
use crate::observe::stats::WorkerStats;
use crate::observe::trace;
use crate::runtime::shared::Shared;
use crate::sync::idle::{Backoff, IdleStrategy};
use std::collections::VecDeque;
use std::time::Duration;

pub(crate) struct Worker<T: Send + 'static> {
    index: usize,
    shared: Arc<Shared<T>>,
    /// Claimed from a ring or the core, not yet run.
    local: VecDeque<Envelope<T>>,
    /// Claimed from the inbox, on their way into the core.
    inbox: VecDeque<Envelope<T>>,
    batch: usize,
    /// The owner-only state machine: key table, timer, ready jobs.
    core: ShardCore<T>,
    /// This worker's latency histograms, flushed to its shared slot.
    recorder: Recorder,
    /// Whether anything happened since the last `publish`.
    dirty: bool,
    /// Jobs that became terminal whose capacity is not yet released (nor
    /// their IDs recorded as finished).
    unreleased: u64,
    /// Commit once `unreleased` reaches this.
    commit_every: u64,
    /// When the oldest unreleased ending happened.
    oldest: Option<Timestamp>,
    /// When the last attempt ended, or the last claim was made if later:
    /// an attempt's length is measured from it.
    last_end: Timestamp,
    /// Whether the worker has told (`tell_idle`) that it is idle, and not
    /// found work since.
    idle_told: bool,
    /// Claims left that take one job at a time from the rings: set after a
    /// slow attempt (see [`SINGLE_CLAIMS`]).
    single_claims: u32,
}

/// Claims a worker makes one job at a time after an attempt that ran at
/// least [`EAGER_AFTER`]. A claimed job is private until it runs: behind a
/// slow handler, a batch of 32 claimed fast jobs would wait for it while
/// other workers idle. Left in the ring, they can be stolen. With no slow
/// attempt for this many claims the worker goes back to claiming batches
/// (one ring RMW for up to `batch` jobs).
const SINGLE_CLAIMS: u32 = 1024;

/// An attempt that ran at least this long is followed by a commit at once
/// (see `run_local`): beside it a commit's cost (a lock and a probe per ID,
/// well under a microsecond each) is noise.
const EAGER_AFTER: Duration = Duration::from_micros(50);

/// Longest a busy worker keeps an ending uncommitted: with slow handlers
/// the count alone would hold capacity (and IDs as live) for long.
const COMMIT_AGE: Duration = Duration::from_millis(1);

/// Most terminal jobs a busy worker lets pile up before it records their
/// IDs as finished and releases their capacity. Each commit takes the
/// seen-ID set's shard locks, pulling those lines away from producers and
/// making them wait if they come meanwhile; committing every 1 024 endings
/// (16 a shard) rather than every batch makes a producer meet a lock last
/// held by a worker once in many submits, and lets a commit's prefetches
/// overlap. Measured on the noop demo against 256 endings and 16 shards:
/// about +8% single submits, +11% batched. An idle worker commits at once,
/// and a busy one at least every [`COMMIT_AGE`].
const COMMIT_MAX: u64 = 1024;

/// The commit period for an engine of `capacity` over `workers`: at most a
/// quarter of a worker's share of the capacity stays unreleased, so small
/// engines keep producers flowing instead of waiting for a worker to run
/// dry.
fn commit_every(capacity: u64, workers: usize) -> u64 {
    (capacity / (4 * workers as u64).max(1)).clamp(1, COMMIT_MAX)
}

/// How long a worker must have been idle before it publishes its samples
/// and gauges (and how long a dirty worker parks before it does).
const PUBLISH_IDLE: Duration = Duration::from_micros(200);

/// How a worker runs the attempts it claims: one at a time to the end
/// (a sync handler, `runner.rs`), or many at once as futures on its own
/// thread (an async handler). Made on the worker's thread, so an async
/// runner's futures need not be `Send`.
pub(crate) trait Runner<T: Send + 'static> {
    /// How many more claimed jobs it can take now.
    fn room(&self) -> usize;
    /// Runs or starts the jobs in `w.local`, up to its room.
    fn run_claimed(&mut self, w: &mut Worker<T>);
    /// Polls woken attempts and ends timed-out ones. Returns whether any
    /// attempt was polled or ended.
    fn progress(&mut self, w: &mut Worker<T>) -> bool;
    /// Attempts in flight (started, not ended).
    fn in_flight(&self) -> usize;
    /// Whether an attempt was woken since the last `progress` (the
    /// re-check before a sleep).
    fn woken(&self) -> bool;
    /// The earliest deadline of an attempt in flight.
    fn next_deadline(&self) -> Option<Timestamp>;
    /// Stops: ends every attempt in flight without an outcome, handing
    /// over their jobs.
    fn drain(&mut self, w: &mut Worker<T>, out: &mut Vec<Envelope<T>>);
}

impl<T: Send + 'static> Worker<T> {
    pub(crate) fn new(index: usize, shared: Arc<Shared<T>>) -> Worker<T> {
        let batch = shared.config.batch;
        let seed = shared.config.seed;
        let record = shared.config.record_latency;
        let presize = (shared.config.ring_capacity as u64).min(shared.config.capacity) as usize;
        let commit_every = commit_every(shared.config.capacity, shared.config.workers);
        Worker {
            index,
            shared,
            // Allocated once: ring claims and inbox drains never exceed it.
            local: VecDeque::with_capacity(2 * batch),
            inbox: VecDeque::with_capacity(batch),
            batch,
            core: ShardCore::new(
                seed.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                presize,
                // Under `commit_every` pending, plus one claim's worth.
                commit_every as usize + 2 * batch,
            ),
            recorder: Recorder::new(record),
            dirty: false,
            unreleased: 0,
            commit_every,
            oldest: None,
            last_end: Timestamp::default(),
            idle_told: false,
            single_claims: 0,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<T>> {
        &self.shared
    }

    fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.index]
    }

    /// Runs until shutdown; returns the jobs it held privately, unrun.
    pub(crate) fn run<R: Runner<T>>(mut self, mut runner: R) -> Vec<Envelope<T>> {
        self.pin();
        crate::loom::set_worker_of(self.shared.id());
        let mut backoff = Backoff::default();
        let mut idle_since: Option<Stopwatch> = None;
        loop {
            // Acquire pairs with the Release store in shutdown.
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            // Async attempts first: their endings free slots for claims.
            let mut busy = runner.progress(&mut self);
            let room = runner.room();
            if room > 0 && self.fill(room) {
                if self.idle_told {
                    self.idle_told = false;
                    // Relaxed: a reader that still sees `true` is inside
                    // the window `Drain::DueOnly` documents (a job that
                    // fell due just now).
                    self.stats().idle.store(false, Ordering::Relaxed);
                }
                self.dirty = true;
                runner.run_claimed(&mut self);
                busy = true;
            }
            if busy {
                idle_since = None;
                backoff.reset();
                continue;
            }
            // Nothing to run: make every ending visible before idling.
            self.commit();
            // Idle only with no attempt in flight: `Drain::DueOnly` reads
            // the flag as "holds nothing it may run now".
            if !self.idle_told && runner.in_flight() == 0 {
                self.tell_idle();
            }
            let idle_for = idle_since.get_or_insert_with(Stopwatch::start).elapsed();
            // Publish once the worker has really gone idle, never between
            // closely spaced jobs: a flush walks whole histograms.
            if self.dirty && idle_for >= PUBLISH_IDLE {
                self.publish();
            }
            match self.shared.config.idle {
                IdleStrategy::BusySpin => crate::loom::hint::spin_loop(),
                IdleStrategy::Park => self.sleep(&runner),
                IdleStrategy::SpinThenPark { spin } => {
                    if idle_for < spin {
                        backoff.snooze();
                    } else {
                        self.sleep(&runner);
                    }
                }
            }
        }
        self.commit();
        self.publish();
        // A key's busy job (in flight) before the jobs queued behind it.
        let mut left = Vec::new();
        runner.drain(&mut self, &mut left);
        left.extend(self.local.drain(..));
        self.core.drain_into(&mut left);
        left
    }

    #[cfg(not(quay_loom))]
    fn pin(&self) {
        if let Some(core) = self.shared.config.cores[self.index] {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                let w = crate::runtime::config::PinWarning {
                    lane: self.shared.config.name.clone(),
                    worker: self.index,
                    core,
                    kind: crate::runtime::config::PinWarningKind::Refused,
                };
                match self.shared.pin_warnings.lock() {
                    Ok(mut v) => v.push(w),
                    Err(e) => e.into_inner().push(w),
                }
            }
        }
    }

    #[cfg(quay_loom)]
    fn pin(&self) {}

    /// Claims up to `limit` jobs (and at most a batch) into `local`: one at
    /// a time from the rings while `single_claims` lasts. Returns whether
    /// there is any.
    fn fill(&mut self, limit: usize) -> bool {
        let limit = limit.min(self.batch);
        let ring_limit = if self.single_claims > 0 { 1 } else { limit };
        let me = &self.shared.shards[self.index];
        let inbox = &mut self.inbox;
        let mut claimed = me.inbox.pop_batch(self.batch, |e| inbox.push_back(e));
        // The overflow only once the inbox is quiescent: see `overflow.rs`.
        claimed += me.overflow.take_after(&me.inbox, |e| inbox.push_back(e));
        // The clock after the claim. A job due at its accept time is ready
        // whatever this reads (see `ShardCore::schedule`): the producer's
        // clock read may be a few ns ahead of this core's.
        let now = self.shared.clock.now();
        self.last_end = now;
        // Jobs that only join a busy key change the gauges too.
        self.dirty |= !self.inbox.is_empty();
        for e in self.inbox.drain(..) {
            self.core.admit(e, now);
        }
        if self.core.next_due().is_some_and(|due| due <= now) {
            self.core.fire(now);
            self.paused(Pause::Timers, now);
        }
        while self.local.len() < limit {
            match self.core.pop_ready() {
                Some(e) => self.local.push_back(e),
                None => break,
            }
        }
        // Ring jobs only while nothing else is claimed in single mode: left
        // in the ring they stay stealable.
        let room = ring_limit.saturating_sub(self.local.len());
        let local = &mut self.local;
        let me = &self.shared.shards[self.index];
        let popped = me.ring.pop_batch(room, |e| local.push_back(e));
        claimed += popped;
        if claimed > 0 {
            // Ring or inbox room that a waiting submit may need.
            self.shared.gate.room_freed();
        }
        if popped > 0 {
            self.claimed_now();
        }
        if !self.local.is_empty() {
            return true;
        }
        self.steal(ring_limit)
    }

    /// Jobs were just claimed from a ring (which counts down
    /// `single_claims`): the first one's attempt starts
    /// now, as far as latency is concerned (each later one starts when the
    /// one before it ends: one clock read per claim, not per job). Jobs
    /// pushed after `fill`'s first read would otherwise start "before" they
    /// were accepted.
    fn claimed_now(&mut self) {
        self.single_claims = self.single_claims.saturating_sub(1);
        if self.recorder.is_on() {
            self.last_end = self.shared.clock.now();
        }
    }

    /// Steals from the first other shard that has any: up to half of its
    /// ring's jobs (at least one, at most `limit`), so the owner and any
    /// other thief keep work too, or else the unkeyed jobs in its overflow.
    fn steal(&mut self, limit: usize) -> bool {
        let n = self.shared.shards.len();
        for i in 1..n {
            let victim = &self.shared.shards[(self.index + i) % n];
            let local = &mut self.local;
            let half = victim.ring.len().div_ceil(2).clamp(1, limit.max(1));
            let mut got = victim.ring.pop_batch(half, |e| local.push_back(e));
            if got == 0 && !victim.overflow.is_empty() {
                let now = self.shared.clock.now();
                got = victim.overflow.steal(limit, now, |e| local.push_back(e));
            }
            if got > 0 {
                self.shared.gate.room_freed();
                self.claimed_now();
                let st = &self.shared.stats[self.index];
                st.stolen_jobs.add(got as u64);
                st.steal_batches.add(1);
                return true;
            }
        }
        false
    }

    /// Takes the next claimed job, if any.
    pub(crate) fn next_claimed(&mut self) -> Option<Envelope<T>> {
        self.local.pop_front()
    }

    /// Whether shutdown asked the worker to stop (a hint between jobs).
    pub(crate) fn stopping(&self) -> bool {
        // Relaxed: a hint to stop early; the Acquire load at the top of
        // the loop is what orders shutdown.
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Runs the claimed jobs through a sync handler until done or told to
    /// stop.
    pub(crate) fn run_local<H>(&mut self, handler: &H)
    where
        H: Fn(&JobContext, &T) -> Result<(), JobError>,
    {
        while let Some(mut env) = self.local.pop_front() {
            // The attempt starts where the last one ended (or at the claim):
            // one clock read per attempt, at its end.
            let start = self.last_end;
            let ctx = self.begin_at(&mut env);
            // The attempt's span (`observe/trace.rs`; nothing without the
            // feature), around the handler and the settling: the handler's
            // events and a retry's or death's are inside it.
            let (terminal, now) = {
                let lane = &self.shared.sem.lane;
                let span = trace::attempt_span(lane, &ctx);
                let _in = span.enter();
                let (result, panicked) = attempt(lane, &ctx, || handler(&ctx, &env.job.payload));
                self.end(env, &ctx, result, panicked, start)
            };
            // An attempt that ran long makes a commit cheap beside it, and
            // tells that the next one may be long too: commit now rather
            // than hold these endings through it.
            let slow = now.saturating_since(self.last_end) >= EAGER_AFTER;
            if slow {
                self.single_claims = SINGLE_CLAIMS;
            }
            self.last_end = now;
            self.ended(terminal, now, slow);
            if self.stopping() {
                break;
            }
        }
    }

    /// Counts an ending, and commits if one is due: `commit_every` endings
    /// pending, the oldest pending for [`COMMIT_AGE`], or (`eager`) a slow
    /// attempt just ended.
    pub(crate) fn ended(&mut self, terminal: bool, now: Timestamp, eager: bool) {
        if terminal {
            self.unreleased += 1;
            self.oldest.get_or_insert(now);
        }
        let old = self
            .oldest
            .is_some_and(|t| now.saturating_since(t) >= COMMIT_AGE);
        if self.unreleased >= self.commit_every || old || (eager && self.unreleased > 0) {
            self.commit_at(now);
        }
    }

    /// Commits now (the worker ran dry, or is stopping).
    fn commit(&mut self) {
        if self.unreleased > 0 {
            self.commit_at(self.shared.clock.now());
        }
    }

    /// Records the completed jobs' IDs, then releases the capacity of every
    /// job that ended since the last commit: once nothing is held, dedup
    /// knows every ending.
    fn commit_at(&mut self, now: Timestamp) {
        self.core.commit_finished(&self.shared.sem, now);
        self.shared.gate.release(self.unreleased);
        self.unreleased = 0;
        self.oldest = None;
        self.paused(Pause::Commit, now);
    }

    /// The clock, read only when latency is recorded (else the epoch).
    fn now_if_recording(&self) -> Timestamp {
        if self.recorder.is_on() {
            self.shared.clock.now()
        } else {
            Timestamp::default()
        }
    }

    /// Records a pause of kind `kind` that began at `since` and ends now
    /// (`observe/pauses.rs`): a clock read, with latency recording on.
    fn paused(&mut self, kind: Pause, since: Timestamp) {
        if self.recorder.is_on() {
            let ns = self.shared.clock.now().as_nanos();
            self.recorder
                .pause(kind, ns.saturating_sub(since.as_nanos()));
        }
    }

    /// Starts an attempt of `env`: counts it, and returns the handler's
    /// context and the start time (read only when latency is recorded).
    pub(crate) fn begin(&mut self, env: &mut Envelope<T>) -> (JobContext, Timestamp) {
        let ctx = self.begin_at(env);
        (ctx, self.now_if_recording())
    }

    /// Starts an attempt of `env` whose start time the caller knows.
    fn begin_at(&mut self, env: &mut Envelope<T>) -> JobContext {
        let ctx = env.begin_attempt(self.index, self.shared.sem.max_attempts);
        self.stats().started.add(1);
        ctx
    }

    /// An attempt that began at `start` ended with `result`: settles it
    /// (retry, complete or bury), counts it and records its latency.
    /// Returns whether the job is now terminal, and the time it ended.
    pub(crate) fn end(
        &mut self,
        env: Envelope<T>,
        ctx: &JobContext,
        result: Result<(), JobError>,
        panicked: bool,
        start: Timestamp,
    ) -> (bool, Timestamp) {
        let shared = &*self.shared;
        let st = &shared.stats[self.index];
        if result.is_err() {
            st.failed_attempts.add(1);
        }
        if panicked {
            st.panicked.add(1);
        }
        let (ready, accepted) = (env.ready_at, env.accepted_at);
        let now = shared.clock.now();
        let settled = self.core.settle(&shared.sem, env, ctx, result, now);
        match settled {
            Settled::Completed => st.completed.add(1),
            Settled::Dead => st.dead.add(1),
            Settled::Retrying => st.retried.add(1),
        }
        let terminal = settled.is_terminal();
        if self
            .recorder
            .attempt(ready, start, now, terminal.then_some(accepted))
        {
            self.publish();
        }
        (terminal, now)
    }

    /// Publishes this worker's latency samples and gauges to readers.
    /// Stores the gauges, then says the worker is idle: everything it holds
    /// now, it may not run yet (see `Shared::only_not_due_held`). Once per
    /// stretch of idleness.
    fn tell_idle(&mut self) {
        self.store_gauges();
        self.idle_told = true;
        // Release pairs with the Acquire load in `only_not_due_held`.
        self.stats().idle.store(true, Ordering::Release);
    }

    fn store_gauges(&self) {
        let g = self.core.gauges();
        let st = &self.shared.stats[self.index];
        st.ready.set(g.ready as u64);
        st.key_waiting.set(g.key_waiting as u64);
        st.delayed.set(g.delayed as u64);
        st.retry_waiting.set(g.retry_waiting as u64);
        st.live_keys.set(g.live_keys as u64);
    }

    fn publish(&mut self) {
        self.dirty = false;
        let since = self.now_if_recording();
        self.recorder.flush(&self.shared.latency[self.index]);
        self.store_gauges();
        // Published with the next flush.
        self.paused(Pause::Publish, since);
    }

    /// The sleep protocol's worker side (see `idle.rs`). The re-check after
    /// the announce is `fill` itself: it sees exactly the jobs it could take.
    /// (A check by ring length would count a position a producer has claimed
    /// but not yet published, and the worker would spin instead of parking;
    /// that producer's `notify` comes after its publish and wakes us.)
    fn sleep<R: Runner<T>>(&mut self, runner: &R) {
        self.shared.idle.announce(self.index);
        // Acquire pairs with the Release store in shutdown. A woken attempt
        // is work too (see `exec/wake.rs`).
        if self.shared.stop.load(Ordering::Acquire)
            || runner.woken()
            || (runner.room() > 0 && self.fill(runner.room()))
        {
            self.shared.idle.cancel(self.index);
            return;
        }
        self.stats().parks.add(1);
        let mut timeout = self.timer_timeout();
        if let Some(due) = runner.next_deadline() {
            let t = self.until(due);
            timeout = Some(timeout.map_or(t, |o| o.min(t)));
        }
        if self.dirty {
            // Wake once more after `PUBLISH_IDLE` to publish, then sleep
            // for good: at rest, readers see everything.
            timeout = Some(timeout.map_or(PUBLISH_IDLE, |t| t.min(PUBLISH_IDLE)));
        }
        if let Some(at) = self.shared.idle.sleep(self.index, timeout) {
            self.paused(Pause::Wake, at);
        }
    }

    /// How long a sleep may last before the earliest timer is due.
    fn timer_timeout(&self) -> Option<Duration> {
        let due = self.core.next_due()?;
        Some(self.until(due))
    }

    /// How long until `due`. A manual clock moves by hand, so then the
    /// worker polls every millisecond.
    fn until(&self, due: Timestamp) -> Duration {
        let clock = &self.shared.clock;
        if clock.is_manual() {
            Duration::from_millis(1)
        } else {
            due.saturating_since(clock.now())
        }
    }

    /// Counts panics contained in user code other than handlers.
    pub(crate) fn count_contained(&self, n: u64) {
        self.shared.sem.count_contained(n);
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    #[test]
    fn commit_period_is_a_quarter_of_a_workers_share_capped() {
        assert_eq!(commit_every(65_536, 1), COMMIT_MAX);
        assert_eq!(commit_every(65_536, 16), COMMIT_MAX);
        assert_eq!(commit_every(4_096, 2), 512);
        assert_eq!(commit_every(64, 2), 8);
        // Never zero: a tiny engine commits every ending.
        assert_eq!(commit_every(3, 4), 1);
        assert_eq!(commit_every(1, 1), 1);
    }
}
