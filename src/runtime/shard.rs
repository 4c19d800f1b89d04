//! A [`Shard`]: the part of one worker's queues that other threads touch.
//!
//! Each shard has two rings:
//! - `ring` holds unkeyed, immediately runnable jobs. Any producer pushes
//!   here, and any worker may pop (the owner drains it, the others steal).
//! - `inbox` holds jobs only the owner may run or schedule: keyed jobs (the
//!   key's order lives in the owner's key table) and delayed jobs (the owner's
//!   timer). Producers push; only the owner pops.
//!
//! Beside them, `overflow` takes what a full ring or inbox cannot (see
//! `overflow.rs`): once the capacity gate has admitted a job, placing it
//! cannot fail.
//!
//! The owner's private state (its local batch, key table, timer) lives in
//! the worker, not here: what is in this file is exactly what is shared.

use crate::job::envelope::Envelope;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::runtime::overflow::Overflow;
use crate::sync::ring::Ring;
use crossbeam_utils::CachePadded;

pub(crate) struct Shard<T> {
    /// Unkeyed runnable jobs: stealable.
    pub(crate) ring: Ring<Envelope<T>>,
    /// Jobs for the owner alone: keyed or delayed.
    pub(crate) inbox: Ring<Envelope<T>>,
    /// Jobs whose ring or inbox a racing producer filled (and owner-only
    /// jobs queued behind them, for order): see `overflow.rs`. Taken by the
    /// owner; its unkeyed jobs may be stolen.
    pub(crate) overflow: CachePadded<Overflow<T>>,
    /// Producer-side counts for producers whose home is this shard.
    counts: CachePadded<ProducerCounts>,
}

#[derive(Default)]
struct ProducerCounts {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected_full: AtomicU64,
    full_attempts: AtomicU64,
}

impl<T> Shard<T> {
    pub(crate) fn new(ring_capacity: usize) -> Shard<T> {
        Shard {
            ring: Ring::new(ring_capacity),
            inbox: Ring::new(ring_capacity),
            overflow: CachePadded::new(Overflow::new()),
            counts: CachePadded::new(ProducerCounts::default()),
        }
    }

    /// Places a job only the owner may take (keyed, or not yet due): in the
    /// inbox, or in the overflow if the inbox is full or the overflow
    /// already holds jobs (so a key's later jobs queue behind its earlier
    /// ones: see `overflow.rs`). Never fails.
    #[inline]
    pub(crate) fn push_owned(&self, env: Envelope<T>) {
        let env = if self.overflow.is_empty() {
            match self.inbox.push(env) {
                Ok(()) => return,
                Err(env) => env,
            }
        } else {
            env
        };
        self.overflow.push(env);
    }

    /// Jobs queued here, in the rings and the overflow (a gauge).
    pub(crate) fn queued(&self) -> usize {
        self.ring.len() + self.inbox.len() + self.overflow.len()
    }

    /// Counts `n` jobs accepted here. Called *before* the push (which
    /// cannot fail), so once the gate reads zero held jobs, every accepted
    /// count happened before (the gate's release/acquire orders it).
    #[inline]
    pub(crate) fn count_accepted(&self, n: u64) {
        // Relaxed: ordered for readers by the gate's AcqRel RMWs.
        self.counts.accepted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.counts.accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn count_duplicates(&self, n: u64) {
        // Relaxed: a statistic.
        self.counts.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_rejected_full(&self) {
        // Relaxed: a statistic.
        self.counts.rejected_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_full_attempt(&self) {
        // Relaxed: a statistic.
        self.counts.full_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn full_attempts(&self) -> u64 {
        self.counts.full_attempts.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected_full(&self) -> u64 {
        self.counts.rejected_full.load(Ordering::Relaxed)
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.counts.duplicates.load(Ordering::Relaxed)
    }
}
