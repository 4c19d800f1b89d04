//! `submit_batch`: many jobs in one call, with one clock read, one capacity
//! claim per run of the iterator's size hint and one ring claim per run of
//! unkeyed jobs; and [`BatchReport`], what became of each job.
//!
//! # Order and refusals
//!
//! Capacity is claimed before any job it covers is deduped or placed, and
//! placing never fails once it is claimed (`overflow.rs`). So the only
//! refusals are a claim that finds the engine full or closed, and from
//! that job on, every job of the batch is refused: the refused jobs are a
//! suffix of the batch, and no key can have its job `n` refused and its
//! job `n + 1` accepted.
//!
//! # A panicking iterator
//!
//! The iterator is the caller's code. If it panics, the jobs it yielded
//! before are submitted as if the batch had ended there (staged jobs are
//! flushed, unused capacity is given back) by the [`Batch`] guard's `Drop`,
//! and the panic goes on to the caller.

use crate::error::{SubmitError, Submitted};
use crate::job::envelope::Envelope;
use crate::job::Job;
use crate::runtime::shared::Shared;
use crate::sync::capacity::Refused;
use std::collections::VecDeque;

/// What [`submit_batch`](crate::Engine::submit_batch) did with one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Accepted: it will run.
    Accepted,
    /// Skipped: the engine has, or recently had, a job with its ID.
    Duplicate,
    /// Refused: the engine was at capacity. The job is in
    /// [`BatchReport::refused`].
    Full,
    /// Refused: the engine is shutting down. The job is in
    /// [`BatchReport::refused`].
    ShuttingDown,
}

/// What [`submit_batch`](crate::Engine::submit_batch) did with each job.
#[derive(Debug)]
pub struct BatchReport<T> {
    /// Jobs accepted.
    pub accepted: usize,
    /// Jobs skipped as duplicates.
    pub duplicates: usize,
    /// Jobs refused, each handed back with its reason, in submit order:
    /// always the batch's last jobs.
    pub refused: Vec<SubmitError<T>>,
    /// Each job's outcome, in submit order: `outcomes[i]` is the `i`-th
    /// job's. A caller that must acknowledge every job reads it here.
    pub outcomes: Vec<BatchOutcome>,
}

pub(crate) fn submit_batch<T: Send + 'static>(
    shared: &Shared<T>,
    jobs: impl IntoIterator<Item = Job<T>>,
) -> BatchReport<T> {
    let mut jobs = jobs.into_iter();
    let n = shared.shards.len();
    let mut batch = Batch {
        shared,
        home: crate::loom::home_index() % n,
        now: shared.clock.now(),
        staged: VecDeque::new(),
        room: 0,
        unused: 0,
        report: BatchReport {
            accepted: 0,
            duplicates: 0,
            refused: Vec::new(),
            // A hint only: an iterator may overstate it.
            outcomes: Vec::with_capacity(jobs.size_hint().0.min(1 << 16)),
        },
    };
    while let Some(job) = jobs.next() {
        let env = Envelope::new(job, batch.now);
        let refused = if !batch.room_for(&env) {
            Some(Refused::Full)
        } else if batch.unused == 0 {
            let want = jobs.size_hint().0.saturating_add(1) as u64;
            match shared.gate.try_acquire(want) {
                Ok(granted) => {
                    batch.unused = granted;
                    None
                }
                Err(why) => Some(why),
            }
        } else {
            None
        };
        if let Some(why) = refused {
            // Outcomes in submit order: the staged jobs' first.
            batch.flush();
            batch.refuse(env.job, why);
            for job in jobs.by_ref() {
                batch.refuse(job, why);
            }
            break;
        }
        batch.unused -= 1;
        batch.take(env);
    }
    batch.finish()
}

/// A batch in progress, and the guard that finishes it if the iterator
/// panics: staged jobs each hold a unit of capacity, and `unused` more
/// units are claimed and not yet used.
struct Batch<'a, T: Send + 'static> {
    shared: &'a Shared<T>,
    home: usize,
    now: crate::clock::Timestamp,
    /// Unkeyed jobs not yet deduped or pushed, in submit order.
    staged: VecDeque<Envelope<T>>,
    /// Ring room counted for unkeyed jobs and not yet used.
    room: usize,
    unused: u64,
    report: BatchReport<T>,
}

impl<T: Send + 'static> Batch<'_, T> {
    /// Whether the queue `env` would go to has room (a hint, as in
    /// `Shared::has_room`): for unkeyed jobs, the free ring slots counted
    /// once and used up, then counted again.
    fn room_for(&mut self, env: &Envelope<T>) -> bool {
        if env.owner_only(self.now) {
            return self.shared.has_room(env, self.now);
        }
        if self.room == 0 {
            self.room = self.shared.shards.iter().map(|s| s.ring.room()).sum();
            // Jobs staged but not yet pushed take room too.
            self.room = self.room.saturating_sub(self.staged.len());
        }
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        true
    }

    /// A job that holds a unit of capacity.
    fn take(&mut self, env: Envelope<T>) {
        if env.owner_only(self.now) {
            // Keep submit order: flush unkeyed jobs staged before it.
            self.flush();
            let outcome = self.shared.admit(env, self.now);
            self.record(outcome);
        } else {
            // Dedup comes at the flush: by then every staged ID's line has
            // been on its way in since it was staged, and the batch's cache
            // misses overlap instead of queueing.
            self.shared.sem.prefetch_id(env.job.id);
            self.staged.push_back(env);
        }
    }

    fn record(&mut self, s: Submitted) {
        match s {
            Submitted::Accepted => {
                self.report.accepted += 1;
                self.report.outcomes.push(BatchOutcome::Accepted);
            }
            Submitted::Duplicate => {
                self.report.duplicates += 1;
                self.report.outcomes.push(BatchOutcome::Duplicate);
            }
        }
    }

    fn refuse(&mut self, job: Job<T>, why: Refused) {
        let (outcome, err) = match why {
            Refused::Full => {
                self.shared.count_rejected_full(job.id);
                (BatchOutcome::Full, SubmitError::Full(job))
            }
            Refused::Closed => (BatchOutcome::ShuttingDown, SubmitError::ShuttingDown(job)),
        };
        self.report.outcomes.push(outcome);
        self.report.refused.push(err);
    }

    /// Dedups the staged envelopes in submit order and pushes the new ones
    /// into the rings from `home` on; what finds no ring room goes to the
    /// home shard's overflow. Never refuses.
    fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let shared = self.shared;
        // Dedup in submit order, rotating the kept ones to the back of the
        // same deque (no allocation).
        for _ in 0..self.staged.len() {
            let Some(env) = self.staged.pop_front() else {
                break;
            };
            if shared.sem.admit_id(&env) {
                self.staged.push_back(env);
                self.record(Submitted::Accepted);
            } else {
                shared.gate.release(1);
                shared.shards[self.home].count_duplicates(1);
                shared.sem.drop_user(env);
                self.record(Submitted::Duplicate);
            }
        }
        let fresh = &mut self.staged;
        if !fresh.is_empty() {
            let n = shared.shards.len();
            shared.shards[self.home].count_accepted(fresh.len() as u64);
            for i in 0..n {
                let s = (self.home + i) % n;
                let pushed = shared.shards[s].ring.push_batch(fresh);
                if pushed > 0 {
                    // As many sleepers as the jobs can keep busy.
                    shared.idle.notify_many(s, pushed);
                }
                if fresh.is_empty() {
                    break;
                }
            }
            if !fresh.is_empty() {
                let spilled = fresh.len();
                for env in fresh.drain(..) {
                    shared.shards[self.home].overflow.push(env);
                }
                // Any worker may steal them from there.
                shared.idle.notify_many(self.home, spilled);
            }
        }
    }

    /// Flushes, gives back unused capacity, and hands over the report.
    fn finish(mut self) -> BatchReport<T> {
        self.flush();
        self.shared.gate.release(std::mem::take(&mut self.unused));
        BatchReport {
            accepted: self.report.accepted,
            duplicates: self.report.duplicates,
            refused: std::mem::take(&mut self.report.refused),
            outcomes: std::mem::take(&mut self.report.outcomes),
        }
    }
}

impl<T: Send + 'static> Drop for Batch<'_, T> {
    /// After `finish`, nothing is left. During a panic from the caller's
    /// iterator: the jobs yielded so far are submitted, unused capacity is
    /// given back, and refused jobs (user data) are dropped behind a guard.
    fn drop(&mut self) {
        self.flush();
        self.shared.gate.release(std::mem::take(&mut self.unused));
        for e in self.report.refused.drain(..) {
            self.shared.sem.drop_user(e);
        }
    }
}
