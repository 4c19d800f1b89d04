//! Commit batching: a worker's endings become visible to dedup and give
//! their capacity back in batches, not one by one (see the worker's
//! [`COMMIT_MAX`], [`COMMIT_AGE`] and [`EAGER_AFTER`](super::EAGER_AFTER)).

#[cfg(doc)]
use super::COMMIT_MAX;
use super::{Worker, COMMIT_AGE};
use crate::clock::Timestamp;
use crate::observe::pauses::Pause;

impl<T: Send + 'static> Worker<T> {
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
    pub(super) fn commit(&mut self) {
        if self.unreleased > 0 {
            self.commit_at(self.shared.clock.now());
        }
    }

    /// Records the completed jobs' IDs, then releases the capacity of every
    /// job that ended since the last commit: once nothing is held, dedup
    /// knows every ending.
    pub(super) fn commit_at(&mut self, now: Timestamp) {
        self.core.commit_finished(&self.shared.sem, now);
        self.shared.gate.release(self.unreleased);
        self.unreleased = 0;
        self.oldest = None;
        self.paused(Pause::Commit, now);
    }
}
