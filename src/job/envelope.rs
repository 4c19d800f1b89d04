//! The [`Envelope`]: a job as the engine carries it, with the bookkeeping
//! that travels with it between shards, timers and attempts.

use crate::clock::Timestamp;
use crate::job::{Job, JobContext, Schedule};

/// A job in flight, with its attempt count and times.
pub(crate) struct Envelope<T> {
    pub(crate) job: Job<T>,
    /// Attempts already started.
    pub(crate) attempts: u32,
    /// When the engine accepted the job.
    pub(crate) accepted_at: Timestamp,
    /// When the job may next run, and queue wait is measured from: accept
    /// time, a delay's due time, or a retry's due time.
    pub(crate) ready_at: Timestamp,
    /// The last errors, oldest first, at most `dlq::KEPT_ERRORS`. `None` (no
    /// allocation) until an attempt fails.
    // Boxed: 8 bytes in every envelope instead of a `Vec`'s 24, for a list
    // most jobs never have; envelopes are copied into and out of rings.
    #[allow(clippy::box_collection)]
    pub(crate) errors: Option<Box<Vec<String>>>,
}

impl<T> Envelope<T> {
    /// A freshly accepted job; a delayed one is ready at its due time.
    pub(crate) fn new(job: Job<T>, now: Timestamp) -> Envelope<T> {
        let ready_at = match job.schedule {
            Schedule::Now => now,
            Schedule::After(d) => now.saturating_add(d),
            Schedule::At(t) => t.max(now),
        };
        Envelope {
            job,
            attempts: 0,
            accepted_at: now,
            ready_at,
            errors: None,
        }
    }

    /// Whether only the owner of a shard may handle it: keyed (the key's
    /// order lives with the owner) or not yet due (the owner's timer).
    #[inline]
    pub(crate) fn owner_only(&self, now: Timestamp) -> bool {
        self.job.key.is_some() || self.ready_at > now
    }

    /// Starts an attempt on `worker`: counts it and returns the context
    /// the handler sees. `default_max` is the engine's `max_attempts`, for
    /// a job that does not set its own.
    pub(crate) fn begin_attempt(&mut self, worker: usize, default_max: u32) -> JobContext {
        self.attempts += 1;
        JobContext {
            max_attempts: self.job.max_attempts_or(default_max),
            id: self.job.id,
            key: self.job.key,
            attempt: self.attempts,
            accepted_at: self.accepted_at,
            worker,
        }
    }

    /// Records a failed attempt's error, keeping the last few.
    pub(crate) fn record_error(&mut self, msg: String) {
        let errors = self.errors.get_or_insert_with(Box::default);
        if errors.len() >= crate::job::dlq::KEPT_ERRORS {
            errors.remove(0);
        }
        errors.push(msg);
    }
}
