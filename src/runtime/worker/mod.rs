//! The worker loop: one OS thread per shard, pinned when asked.
//!
//! Each turn a worker:
//! 1. polls its woken async attempts, if any (`runner.rs`);
//! 2. moves jobs from its inbox (keyed, delayed) into its [`ShardCore`]
//!    (key table, timer), and fires due timers, whether or not it has room
//!    to start anything (`claim.rs`);
//! 3. with room, takes the core's ready jobs, then claims a batch from its
//!    own ring, or else steals a batch from the other shards' rings,
//!    starting at its right-hand neighbour; what a claim leaves behind
//!    wakes a sleeper (`claim.rs`, "The wake follows the work");
//! 4. runs the batch, checking `stop` between jobs; every
//!    `commit_every` endings (see [`COMMIT_MAX`]), at least every
//!    [`COMMIT_AGE`], and whenever it runs dry, records the
//!    finished IDs in the seen-ID set and gives their capacity back with
//!    one RMW;
//! 5. finding nothing, idles per the [`IdleStrategy`]: spins, then sleeps by
//!    the protocol in `idle.rs` (`sleep.rs`).
//!
//! `Worker` is the owner-only state ("core" in tokio's terms); the engine's
//! `Shared` is what everyone touches. The loop is here; each concern it
//! calls on has a file: `claim` (intake, claims and steals), `commit`
//! (commit batching), `measure` (counters, latency, pauses and gauges) and
//! `sleep` (the sleep protocol's worker side).

mod claim;
mod commit;
mod measure;
mod sleep;

#[cfg(quay_loom)]
pub(crate) use claim::take_share;

use crate::clock::Timestamp;
use crate::error::JobError;
use crate::job::envelope::Envelope;
use crate::job::machine::{attempt, ShardCore};
use crate::job::JobContext;
use crate::loom::sync::atomic::Ordering;
use crate::loom::sync::Arc;
use crate::loom::time::Stopwatch;
use crate::observe::latency::Recorder;
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
    /// Jobs claimed from a ring, inbox or overflow since waiting submits
    /// were last told of the room (`Worker::room_freed`).
    freed: usize,
    /// A producer handed this worker a wake-up for a stealable job in its
    /// last sleep: after the next claim, the wake-up is passed on if jobs
    /// remain in the rings (`Worker::pass_on`).
    handed: bool,
    /// The last claim found nothing (or none was made yet): the next takes
    /// only its share of its own ring (`claim.rs`, "The wake follows the
    /// work").
    from_idle: bool,
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
            handed: false,
            from_idle: true,
            single_claims: 0,
            freed: 0,
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
            // The intake needs no slot: timers fire even when none is free.
            self.intake();
            let room = runner.room();
            // Jobs the sleep's re-check claimed run first, with no claim on
            // top: a second claim would take the share of the ring the
            // first one left for a sleeper (`claim.rs`).
            let claimed = room > 0 && (!self.local.is_empty() || self.claim(room));
            self.room_freed();
            // A handed wake-up is passed on only by a worker that took
            // work: one that found nothing was not needed, and its next
            // re-check sees anything it could take (a pass-on from it
            // would wake the next sleeper for jobs none of them may take,
            // an owner's keyed overflow, and so on round the workers).
            if std::mem::take(&mut self.handed) && claimed {
                self.pass_on();
            }
            if claimed {
                if self.idle_told {
                    self.idle_told = false;
                    // Relaxed: a reader that still sees `true` is inside
                    // the window `Drain::DueBefore` documents (a job that
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
            // Idle only with no attempt in flight: `Drain::DueBefore` reads
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
        // The runner holds the user's handler: its `Drop` is user code, and
        // a panic there must not unwind this thread with `left` in hand.
        self.shared.sem.drop_user(runner);
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
