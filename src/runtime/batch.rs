//! `submit_batch`: many jobs in one call, with one clock read and one
//! capacity claim per chunk and one ring claim per run of unkeyed jobs; and
//! [`BatchReport`], what became of each job.
//!
//! # Chunks: nothing held across the caller's code
//!
//! The iterator is the caller's code, and its `next` may block (a channel's
//! `iter()`). So the batch never holds anything of the engine's across a
//! call to it: no capacity, and no job staged but not yet placed. It pulls
//! a chunk first (the jobs the iterator's size hint says it has, at most
//! [`CHUNK`], and at least one), and only then claims capacity for the
//! chunk, dedups and places it, and gives back what it did not use. A
//! chunk's jobs wait for the rest of the chunk only while the iterator
//! promises more (its lower bound); a `Vec`'s jobs go 64 at a time, a
//! channel's one at a time. A shutdown or drop meanwhile never waits for
//! the caller's iterator: the chunk in hand is not in the engine yet, and
//! is refused with `ShuttingDown` once it is offered.
//!
//! # Order and refusals
//!
//! Capacity is claimed before any job it covers is deduped or placed, and
//! placing never fails once it is claimed (`overflow.rs`). So the only
//! refusals are a claim or a room check that finds the engine full or
//! closed (closed read first: see `Shared::full_or_closed`), and from
//! that job on, every job of the batch is refused: the refused jobs are a
//! suffix of the batch, and no key can have its job `n` refused and its
//! job `n + 1` accepted.
//!
//! # A panicking iterator
//!
//! If the iterator panics, the jobs it yielded before are submitted as if
//! the batch had ended there (the chunk in hand is offered) by the
//! [`Batch`] guard's `Drop`, and the panic goes on to the caller. A
//! duplicate's payload (its `Drop` is user code too) is dropped only once
//! its chunk is placed and its unused capacity given back.

use crate::error::{SubmitError, Submitted};
use crate::job::envelope::Envelope;
use crate::job::Job;
use crate::runtime::shared::Shared;
use crate::sync::capacity::Refused;
use std::collections::VecDeque;

/// Most jobs pulled from the iterator before they are offered: enough for
/// a batch's cache misses to overlap, and for one capacity claim and one
/// ring claim to cover many jobs.
pub(crate) const CHUNK: usize = 64;

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
        now: crate::clock::Timestamp::default(),
        chunk: Vec::new(),
        staged: VecDeque::new(),
        dups: Vec::new(),
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
    // Here, before each call into the iterator, the batch holds nothing of
    // the engine's (module docs).
    while let Some(job) = jobs.next() {
        batch.chunk.push(job);
        while batch.chunk.len() < CHUNK && jobs.size_hint().0 > 0 {
            match jobs.next() {
                Some(job) => batch.chunk.push(job),
                None => break,
            }
        }
        if let Some(why) = batch.offer() {
            for job in jobs.by_ref() {
                batch.refuse(job, why);
            }
            break;
        }
    }
    batch.finish()
}

/// A batch in progress, and the guard that finishes it if the iterator
/// panics. Between chunks it holds only the caller's jobs (`chunk`) and
/// the report; while a chunk is offered, staged jobs each hold a unit of
/// capacity, and `unused` more units are claimed and not yet used.
struct Batch<'a, T: Send + 'static> {
    shared: &'a Shared<T>,
    home: usize,
    now: crate::clock::Timestamp,
    /// Jobs pulled from the iterator and not yet offered: not in the engine.
    chunk: Vec<Job<T>>,
    /// Unkeyed jobs not yet deduped or pushed, in submit order.
    staged: VecDeque<Envelope<T>>,
    /// Duplicates, whose payloads are dropped once the chunk is placed.
    dups: Vec<Envelope<T>>,
    /// Ring room counted for unkeyed jobs and not yet used.
    room: usize,
    unused: u64,
    report: BatchReport<T>,
}

impl<T: Send + 'static> Batch<'_, T> {
    /// Offers the chunk in hand: claims capacity for it, dedups and places
    /// it, then gives back what it did not use and drops the duplicates'
    /// payloads. Returns the refusal, if one cut it short (the chunk's
    /// later jobs are refused too).
    fn offer(&mut self) -> Option<Refused> {
        let mut chunk = std::mem::take(&mut self.chunk);
        // One clock read per chunk: a chunk may come long after the one
        // before (a blocking iterator), and its jobs are accepted now.
        self.now = self.shared.clock.now();
        // Count ring room afresh for each chunk.
        self.room = 0;
        let mut refused = None;
        let mut rest = chunk.drain(..);
        while let Some(job) = rest.next() {
            let env = Envelope::new(job, self.now);
            let why = if !self.room_for(&env) {
                Some(self.shared.full_or_closed())
            } else if self.unused == 0 {
                match self.shared.gate.try_acquire(rest.len() as u64 + 1) {
                    Ok(granted) => {
                        self.unused = granted;
                        None
                    }
                    Err(why) => Some(why),
                }
            } else {
                None
            };
            if let Some(why) = why {
                // Outcomes in submit order: the staged jobs' first.
                self.flush();
                self.refuse(env.job, why);
                for job in rest.by_ref() {
                    self.refuse(job, why);
                }
                refused = Some(why);
                break;
            }
            self.unused -= 1;
            self.take(env);
        }
        drop(rest);
        self.flush();
        self.shared.gate.release(std::mem::take(&mut self.unused));
        // Nothing of the engine's is held now: the payloads' `Drop`s may run.
        for env in self.dups.drain(..) {
            self.shared.sem.drop_user(env);
        }
        // The allocation, for the next chunk.
        self.chunk = chunk;
        refused
    }

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
            let outcome = match self.shared.admit_or_return(env, self.now) {
                Ok(()) => Submitted::Accepted,
                Err(dup) => {
                    self.dups.push(dup);
                    Submitted::Duplicate
                }
            };
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
            Refused::Full => (BatchOutcome::Full, self.shared.refused_full(job)),
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
                self.dups.push(env);
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

    /// Hands over the report (every chunk has been offered).
    fn finish(mut self) -> BatchReport<T> {
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
    /// iterator: the jobs yielded so far (the chunk in hand) are offered,
    /// and refused jobs (user data) are dropped behind a guard.
    fn drop(&mut self) {
        if !self.chunk.is_empty() {
            self.offer();
        }
        for e in self.report.refused.drain(..) {
            self.shared.sem.drop_user(e);
        }
    }
}
