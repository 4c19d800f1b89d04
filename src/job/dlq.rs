//! The dead-letter queue: jobs that failed for good, kept for inspection
//! and redrive, bounded like Sidekiq's dead set.

use crate::clock::Timestamp;
use crate::job::{Job, JobId};
use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::Mutex;
use std::collections::VecDeque;
use std::fmt;

/// Most errors a dead letter keeps: the last ones.
pub const KEPT_ERRORS: usize = 4;

/// A job that failed for good.
pub struct DeadLetter<T> {
    /// The job, as submitted.
    pub job: Job<T>,
    /// Attempts made.
    pub attempts: u32,
    /// The last errors (at most 4), oldest first.
    pub errors: Vec<String>,
    /// When it was accepted.
    pub accepted_at: Timestamp,
    /// When it died.
    pub died_at: Timestamp,
}

impl<T> DeadLetter<T> {
    /// The last error.
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(String::as_str)
    }
}

impl<T: Clone> Clone for DeadLetter<T> {
    fn clone(&self) -> DeadLetter<T> {
        DeadLetter {
            job: Job {
                id: self.job.id,
                key: self.job.key,
                schedule: self.job.schedule,
                max_attempts: self.job.max_attempts,
                payload: self.job.payload.clone(),
            },
            attempts: self.attempts,
            errors: self.errors.clone(),
            accepted_at: self.accepted_at,
            died_at: self.died_at,
        }
    }
}

impl<T> fmt::Debug for DeadLetter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.job.id)
            .field("attempts", &self.attempts)
            .field("errors", &self.errors)
            .field("died_at", &self.died_at)
            .finish()
    }
}

/// A hook that sees every dead job before it enters the DLQ.
pub type OnDead<T> = Box<dyn Fn(&DeadLetter<T>) + Send + Sync>;

pub(crate) struct Dlq<T> {
    entries: Mutex<VecDeque<DeadLetter<T>>>,
    capacity: usize,
    dropped: AtomicU64,
    on_dead: Option<OnDead<T>>,
}

impl<T> Dlq<T> {
    pub(crate) fn new(capacity: usize, on_dead: Option<OnDead<T>>) -> Dlq<T> {
        Dlq {
            entries: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
            on_dead,
        }
    }

    /// Adds a dead job: the hook sees it first; the oldest entry is dropped
    /// (and counted) if the DLQ is full. Returns how many panics from user
    /// code (the hook, the dropped entry's `Drop`) it contained.
    pub(crate) fn push(&self, dl: DeadLetter<T>) -> u64 {
        let mut panics = 0;
        if let Some(hook) = &self.on_dead {
            // The hook is the host's code: contain its panics like a
            // handler's, so the worker survives.
            panics += u64::from(crate::job::guard::call(|| hook(&dl)).is_err());
        }
        let pushed_out = {
            let mut q = relock(self.entries.lock());
            let out = if q.len() >= self.capacity {
                // Relaxed: a statistic.
                self.dropped.fetch_add(1, Ordering::Relaxed);
                q.pop_front()
            } else {
                None
            };
            q.push_back(dl);
            out
        };
        // Outside the lock: the payload's `Drop` is user code.
        if let Some(old) = pushed_out {
            panics += u64::from(crate::job::guard::drop_value(old));
        }
        panics
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        relock(self.entries.lock()).len()
    }

    pub(crate) fn snapshot(&self) -> Vec<DeadLetter<T>>
    where
        T: Clone,
    {
        relock(self.entries.lock()).iter().cloned().collect()
    }

    pub(crate) fn drain(&self) -> Vec<DeadLetter<T>> {
        relock(self.entries.lock()).drain(..).collect()
    }

    /// Whether an entry has this ID.
    pub(crate) fn contains(&self, id: JobId) -> bool {
        relock(self.entries.lock()).iter().any(|d| d.job.id == id)
    }

    /// The IDs of every entry, oldest first.
    pub(crate) fn ids(&self) -> Vec<JobId> {
        relock(self.entries.lock())
            .iter()
            .map(|d| d.job.id)
            .collect()
    }

    /// Takes the newest dead letter with this ID out of the queue if
    /// `admit` accepts it, all under the lock, so that a refusal leaves the
    /// entry exactly as and where it was. `admit` sees the entry and says
    /// whether it may go (it must not call user code: it runs under the
    /// lock).
    pub(crate) fn take_if<E>(
        &self,
        id: JobId,
        admit: impl FnOnce(&DeadLetter<T>) -> Result<(), E>,
    ) -> Option<Result<DeadLetter<T>, E>> {
        let mut q = relock(self.entries.lock());
        let at = q.iter().rposition(|d| d.job.id == id)?;
        if let Err(e) = admit(&q[at]) {
            return Some(Err(e));
        }
        q.remove(at).map(Ok)
    }
}
