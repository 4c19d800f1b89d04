//! Latency recording: three histograms per worker, recorded with no shared
//! atomics per sample.
//!
//! Each worker records into its own buckets (`Recorder::local`, in
//! [`LogBuckets`]: hdrhistogram's layout, nanoseconds with 3 significant
//! digits). Every [`FLUSH_EVERY`] samples, once it has been idle for
//! 200 µs, and when it stops, it adds them into its [`LatencySlot`] (a
//! mutex the readers share, holding [`WideBuckets`] of the same layout,
//! from which readers build hdrhistogram histograms), visiting only the
//! chunks that hold samples, and clears them. A sample costs one
//! clock read (an attempt starts where the one before it ended: see
//! `worker.rs`) and three array increments; a reader sees every sample up
//! to the worker's last flush: at
//! most `FLUSH_EVERY` samples behind per busy worker, and exact once workers
//! have been idle for 200 µs or are joined.

use crate::clock::Timestamp;
use crate::loom::relock;
use crate::loom::sync::Mutex;
use crate::observe::buckets::{LogBuckets, WideBuckets};
use crate::observe::pauses::{Pause, Pauses};
use hdrhistogram::Histogram;

/// Samples a worker records before it publishes them.
pub(crate) const FLUSH_EVERY: u32 = 16_384;

/// The largest value recorded exactly: one hour, in nanoseconds. Larger
/// samples saturate to it.
const HIGHEST: u64 = 3_600_000_000_000;

pub(crate) fn histogram() -> Histogram<u64> {
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
/// never disagree. Kept in [`WideBuckets`] (hdrhistogram's layout) so that
/// a worker's flush is additions into the chunks it touched; readers build
/// the `Histogram`s.
#[derive(Default)]
pub(crate) struct LatencySlot {
    inner: Mutex<Published>,
}

/// Indexed `[queue_wait, service, end_to_end]`, and pauses by `Pause`.
#[derive(Default)]
struct Published {
    total: [WideBuckets; 3],
    interval: [WideBuckets; 3],
    pauses: [WideBuckets; 4],
}

impl LatencySlot {
    /// Adds this worker's published samples into `into`.
    pub(crate) fn add_total_to(&self, into: &mut Histograms) {
        let p = relock(self.inner.lock());
        let [q, s, e] = &p.total;
        q.add_to(&mut into.queue_wait);
        s.add_to(&mut into.service);
        e.add_to(&mut into.end_to_end);
    }

    /// Adds this worker's published pauses into `into`.
    pub(crate) fn add_pauses_to(&self, into: &mut Pauses) {
        let p = relock(self.inner.lock());
        let [c, pu, t, w] = &p.pauses;
        c.add_to(&mut into.commit);
        pu.add_to(&mut into.publish);
        t.add_to(&mut into.timers);
        w.add_to(&mut into.wake);
    }

    /// Adds this worker's samples since the last call into `into`, and
    /// starts a new interval.
    pub(crate) fn take_interval_into(&self, into: &mut Histograms) {
        let mut p = relock(self.inner.lock());
        let [q, s, e] = &mut p.interval;
        q.add_to(&mut into.queue_wait);
        s.add_to(&mut into.service);
        e.add_to(&mut into.end_to_end);
        for b in p.interval.iter_mut() {
            b.clear();
        }
    }
}

/// A worker's private recorder; `None` when recording is off.
pub(crate) struct Recorder {
    local: Option<Box<Local>>,
    unflushed: u32,
}

/// A worker's unpublished samples, in [`LogBuckets`] (cheap to publish).
#[derive(Default)]
struct Local {
    queue_wait: LogBuckets,
    service: LogBuckets,
    end_to_end: LogBuckets,
    /// By `Pause as usize`.
    pauses: [LogBuckets; 4],
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
        let Some(l) = self.local.as_deref_mut() else {
            return false;
        };
        let ns = |a: Timestamp, b: Timestamp| a.as_nanos().saturating_sub(b.as_nanos());
        l.queue_wait.record(ns(start, ready));
        l.service.record(ns(end, start));
        if let Some(acc) = accepted {
            l.end_to_end.record(ns(end, acc));
        }
        self.unflushed += 1;
        self.unflushed >= FLUSH_EVERY
    }

    /// Records a worker pause of `ns` nanoseconds (see `pauses.rs`).
    #[inline]
    pub(crate) fn pause(&mut self, kind: Pause, ns: u64) {
        if let Some(l) = self.local.as_deref_mut() {
            l.pauses[kind as usize].record(ns);
        }
    }

    /// Publishes the local samples to `slot` and clears them. Visits only
    /// the local buckets that hold samples (`buckets.rs`).
    pub(crate) fn flush(&mut self, slot: &LatencySlot) {
        let Some(l) = self.local.as_deref_mut() else {
            return;
        };
        let paused = l.pauses.iter().any(|b| !b.is_empty());
        if self.unflushed == 0 && !paused {
            return;
        }
        let mut guard = relock(slot.inner.lock());
        let p = &mut *guard;
        let ([tq, ts, te], [iq, is, ie]) = (&mut p.total, &mut p.interval);
        l.queue_wait.drain_into(&mut [tq, iq]);
        l.service.drain_into(&mut [ts, is]);
        l.end_to_end.drain_into(&mut [te, ie]);
        if paused {
            for (local, published) in l.pauses.iter_mut().zip(p.pauses.iter_mut()) {
                local.drain_into(&mut [published]);
            }
        }
        drop(guard);
        self.unflushed = 0;
    }
}
