//! Latency recording: three histograms per worker, recorded with no shared
//! atomics per sample.
//!
//! Each worker records into its own [`Histograms`] (`Recorder::local`), in
//! nanoseconds with 3 significant digits. Every [`FLUSH_EVERY`] samples,
//! once it has been idle for 200 µs, and when it stops, it merges them into
//! its [`LatencySlot`] (a mutex the readers share) and clears them. A flush
//! walks every bucket of three histograms (tens of microseconds), so it must
//! stay rare and never sit between closely spaced jobs: at 16 384 samples it
//! costs about 2 ns per job. A sample costs two clock reads and three array
//! increments; a reader sees every sample up to the worker's last flush: at
//! most `FLUSH_EVERY` samples behind per busy worker, and exact once workers
//! have been idle for 200 µs or are joined.

use crate::clock::Timestamp;
use crate::loom::relock;
use crate::loom::sync::Mutex;
use hdrhistogram::Histogram;

/// Samples a worker records before it publishes them.
pub(crate) const FLUSH_EVERY: u32 = 16_384;

/// The largest value recorded exactly: one hour, in nanoseconds. Larger
/// samples saturate to it.
const HIGHEST: u64 = 3_600_000_000_000;

fn histogram() -> Histogram<u64> {
    // The bounds are constants within hdrhistogram's limits (low >= 1,
    // high >= 2 * low, sigfig <= 5), so creation cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, HIGHEST, 3).expect("constant histogram bounds are valid")
}

/// The three latency histograms, in nanoseconds.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// From accept (or a retry's or delay's due time) to the attempt's start.
    pub queue_wait: Histogram<u64>,
    /// The handler's run time, per attempt.
    pub service: Histogram<u64>,
    /// From accept to the terminal state (completed or dead).
    pub end_to_end: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Histograms {
        Histograms {
            queue_wait: histogram(),
            service: histogram(),
            end_to_end: histogram(),
        }
    }
}

impl Histograms {
    /// Adds `other`'s samples into `self`.
    pub fn add(&mut self, other: &Histograms) {
        // Same bounds on both sides: `add` cannot fail; ignore rather than
        // panic if it ever did.
        let _ = self.queue_wait.add(&other.queue_wait);
        let _ = self.service.add(&other.service);
        let _ = self.end_to_end.add(&other.end_to_end);
    }

    pub(crate) fn reset(&mut self) {
        self.queue_wait.reset();
        self.service.reset();
        self.end_to_end.reset();
    }

    /// The named histograms, for iteration: `queue_wait`, `service`,
    /// `end_to_end`.
    pub fn named(&self) -> [(&'static str, &Histogram<u64>); 3] {
        [
            ("queue_wait", &self.queue_wait),
            ("service", &self.service),
            ("end_to_end", &self.end_to_end),
        ]
    }
}

/// What readers share with one worker: everything it flushed, in total and
/// since the last `metrics_interval` call, under one lock so that the two
/// never disagree.
#[derive(Default)]
pub(crate) struct LatencySlot {
    inner: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    total: Histograms,
    interval: Histograms,
}

impl LatencySlot {
    /// Adds this worker's published samples into `into`.
    pub(crate) fn add_total_to(&self, into: &mut Histograms) {
        let p = relock(self.inner.lock());
        into.add(&p.total);
    }

    /// Adds this worker's samples since the last call into `into`, and
    /// starts a new interval.
    pub(crate) fn take_interval_into(&self, into: &mut Histograms) {
        let mut p = relock(self.inner.lock());
        into.add(&p.interval);
        p.interval.reset();
    }
}

/// A worker's private recorder; `None` when recording is off.
pub(crate) struct Recorder {
    local: Option<Box<Histograms>>,
    unflushed: u32,
}

impl Recorder {
    /// Allocated once at worker start, and not at all when off.
    pub(crate) fn new(on: bool) -> Recorder {
        Recorder {
            local: on.then(Box::default),
            unflushed: 0,
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.local.is_some()
    }

    /// Records one attempt: its wait since `ready`, its run from `start` to
    /// `end`, and, if it ended the job, the job's time since `accepted`.
    /// Returns whether it is time to flush.
    #[inline]
    pub(crate) fn attempt(
        &mut self,
        ready: Timestamp,
        start: Timestamp,
        end: Timestamp,
        accepted: Option<Timestamp>,
    ) -> bool {
        let Some(h) = self.local.as_deref_mut() else {
            return false;
        };
        let ns = |a: Timestamp, b: Timestamp| a.as_nanos().saturating_sub(b.as_nanos()).max(1);
        h.queue_wait.saturating_record(ns(start, ready));
        h.service.saturating_record(ns(end, start));
        if let Some(acc) = accepted {
            h.end_to_end.saturating_record(ns(end, acc));
        }
        self.unflushed += 1;
        self.unflushed >= FLUSH_EVERY
    }

    /// Publishes the local samples to `slot` and clears them.
    pub(crate) fn flush(&mut self, slot: &LatencySlot) {
        let Some(h) = self.local.as_deref_mut() else {
            return;
        };
        if self.unflushed == 0 {
            return;
        }
        let mut p = relock(slot.inner.lock());
        p.total.add(h);
        p.interval.add(h);
        drop(p);
        h.reset();
        self.unflushed = 0;
    }
}
