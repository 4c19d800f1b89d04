//! Worker pauses: how long a worker spends on each kind of work that is not
//! a job, one histogram per kind, so a latency tail can be traced to its
//! cause.
//!
//! A job that arrives while its worker is in one of these waits for it, so
//! each is a floor under some queue waits:
//!
//! - `commit`: a grouped commit (the finished IDs recorded in the seen-ID
//!   set, their capacity released): every `commit_every` endings, at least
//!   every millisecond while busy, and whenever the worker runs dry;
//! - `publish`: a worker folding its local latency samples into the shared
//!   histograms (every 16 384 samples, and after 200 µs idle);
//! - `timers`: from the claim's clock read to due retries and delayed jobs
//!   moved to the ready queue, which includes admitting the claimed inbox
//!   jobs into the key table (only timed when something was due);
//! - `wake`: from a producer's unpark of a sleeping worker to the worker
//!   running again (the futex wake-up and the scheduler's delay; only for
//!   wake-ups a producer made, not timeouts).
//!
//! Recorded by each worker into its own [`Pauses`] with no shared atomics,
//! and published with its latency samples (`latency.rs`). Each record costs
//! one or two clock reads on paths that are already rare per job: a commit
//! covers up to 1 024 jobs, a publish 16 384, and a wake-up follows a park.

use hdrhistogram::Histogram;

/// One histogram per kind of worker pause, in nanoseconds (3 significant
/// digits, up to an hour). Read them from
/// [`MetricsSnapshot::pauses`](crate::MetricsSnapshot::pauses).
#[derive(Clone, Debug)]
pub struct Pauses {
    /// Grouped commits: finished IDs recorded, capacity released.
    pub commit: Histogram<u64>,
    /// Latency samples folded into the shared histograms.
    pub publish: Histogram<u64>,
    /// Due retries and delayed jobs moved to the ready queue.
    pub timers: Histogram<u64>,
    /// From a producer's unpark to the worker running again.
    pub wake: Histogram<u64>,
}

impl Default for Pauses {
    fn default() -> Pauses {
        let h = crate::observe::latency::histogram;
        Pauses {
            commit: h(),
            publish: h(),
            timers: h(),
            wake: h(),
        }
    }
}

/// Which pause a sample is (the index of its local buckets in
/// `latency::Recorder`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pause {
    Commit = 0,
    Publish = 1,
    Timers = 2,
    Wake = 3,
}

impl Pauses {
    /// Adds `other`'s samples into `self`.
    pub fn add(&mut self, other: &Pauses) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.commit.add(&other.commit);
        let _ = self.publish.add(&other.publish);
        let _ = self.timers.add(&other.timers);
        let _ = self.wake.add(&other.wake);
    }

    /// The named histograms, for iteration: `commit`, `publish`, `timers`,
    /// `wake`.
    pub fn named(&self) -> [(&'static str, &Histogram<u64>); 4] {
        [
            ("commit", &self.commit),
            ("publish", &self.publish),
            ("timers", &self.timers),
            ("wake", &self.wake),
        ]
    }
}
