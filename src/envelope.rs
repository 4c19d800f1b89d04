//! The [`Envelope`]: a job as the engine carries it, with the bookkeeping
//! that travels with it between shards, timers and attempts.

use crate::clock::Timestamp;
use crate::job::Job;

/// A job in flight, with its attempt count and times.
pub(crate) struct Envelope<T> {
    pub(crate) job: Job<T>,
    /// Attempts already started.
    pub(crate) attempts: u32,
    /// When the engine accepted the job.
    pub(crate) accepted_at: Timestamp,
    /// When the job last became runnable: accept, or a retry's or delay's
    /// due time. Queue wait is measured from here.
    pub(crate) ready_at: Timestamp,
}

impl<T> Envelope<T> {
    pub(crate) fn new(job: Job<T>, now: Timestamp) -> Envelope<T> {
        Envelope {
            job,
            attempts: 0,
            accepted_at: now,
            ready_at: now,
        }
    }
}
