//! Per-worker counters: written only by the owning worker, read by anyone.
//!
//! Each worker's block sits on its own cache lines (`CachePadded` in the
//! engine), and a single writer needs no read-modify-write: an increment is a
//! `Relaxed` load and store, which costs what a plain add costs. Readers sum
//! the blocks; a sum is exact once the workers are joined.

use crate::loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A counter with one writer.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Relaxed: a statistic with one writer; joins order it for readers
        // that need exact values.
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Sets the value (a gauge). Only the owning worker may call this.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters one worker keeps.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) started: Counter,
    pub(crate) completed: Counter,
    pub(crate) dead: Counter,
    pub(crate) retried: Counter,
    pub(crate) failed_attempts: Counter,
    pub(crate) panicked: Counter,
    pub(crate) stolen_jobs: Counter,
    pub(crate) steal_batches: Counter,
    pub(crate) parks: Counter,
    // Gauges of the worker's private state, published at each flush.
    pub(crate) ready: Counter,
    pub(crate) key_waiting: Counter,
    pub(crate) delayed: Counter,
    pub(crate) retry_waiting: Counter,
    pub(crate) live_keys: Counter,
    /// When the worker's earliest timer falls due (engine clock, ns;
    /// `u64::MAX`: none), as of its last publish.
    pub(crate) next_due: Counter,
    /// Set by the worker when it finds nothing it may run, after storing
    /// its gauges (`Worker::tell_idle`); cleared when it finds work. Read
    /// by a dropped engine's shutdown (`Shared::only_not_due_held`).
    pub(crate) idle: AtomicBool,
}
