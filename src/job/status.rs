//! What quay can tell, and do, about one job by its ID, without submitting
//! anything: [`JobStatus`] and its lookup, and the dead-letter queue's
//! by-ID take and discard. The engine and the [`Driver`](crate::Driver)
//! both call these, on the same `Semantics`.

use crate::clock::Timestamp;
use crate::dedup::Known;
use crate::job::dlq::DeadLetter;
use crate::job::machine::Semantics;
use crate::job::JobId;

/// What the engine knows of a job ID now: [`Engine::status`] and
/// [`Driver::status`]. A snapshot: by the time it is read, a running
/// engine may have moved the job on.
///
/// Everything but [`DeadLetter`](JobStatus::DeadLetter) comes from the
/// seen-ID set, so with dedup off (`Builder::dedup(false)`) an ID is either
/// `DeadLetter` or `Unknown`; with a `dedup_window` of zero, a finished ID
/// is `Unknown` at once.
///
/// [`Engine::status`]: crate::Engine::status
/// [`Driver::status`]: crate::Driver::status
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Nothing is known: never accepted, forgotten (its window passed, or
    /// it was evicted at `dedup_capacity`), or dedup is off. A submit would
    /// be accepted as a new job.
    Unknown,
    /// Accepted and not yet terminal: queued, waiting behind its key,
    /// delayed, waiting to retry, or running. (A completion is recorded at
    /// its worker's next commit, so for a moment after it a completed job
    /// may still read `Live`: see `docs/semantics.md`, "Dedup".) A submit
    /// would be a `Duplicate`.
    Live,
    /// Finished (completed, or dead and since taken out of the DLQ) within
    /// the dedup window: a submit would be a `Duplicate`.
    Remembered,
    /// A dead letter with this ID is in the dead-letter queue now (whatever
    /// dedup remembers of it): a redrive may take it, unless the engine is
    /// full or closing, or a job with its ID is live again.
    DeadLetter,
}

impl<T> Semantics<T> {
    /// The status of `id` at `now`: the DLQ first, then the seen-ID set.
    pub(crate) fn status(&self, id: JobId, now: Timestamp) -> JobStatus {
        if self.dlq.contains(id) {
            return JobStatus::DeadLetter;
        }
        match self.seen.as_ref().map(|s| s.lookup(id, now)) {
            Some(Known::Live) => JobStatus::Live,
            Some(Known::Ended) => JobStatus::Remembered,
            Some(Known::Absent) | None => JobStatus::Unknown,
        }
    }

    /// Takes the newest dead letter with `id` out of the DLQ; its ID's
    /// dedup record is untouched.
    pub(crate) fn take_dead(&self, id: JobId) -> Option<DeadLetter<T>> {
        self.dlq
            .take_if(id, |_| Ok::<(), std::convert::Infallible>(()))
            .and_then(Result::ok)
    }

    /// Takes the newest dead letter with `id` out of the DLQ and drops it
    /// (its payload's `Drop` through the guard). Returns whether there was
    /// one.
    pub(crate) fn discard_dead(&self, id: JobId) -> bool {
        match self.take_dead(id) {
            Some(dl) => {
                self.drop_user(dl);
                true
            }
            None => false,
        }
    }
}
