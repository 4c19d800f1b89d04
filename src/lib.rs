//! quay: a lock-free, in-memory job queue engine.
//!
//! A request path should do only the essential work and answer its user now;
//! the slow rest is dropped into quay as a [`Job`], and pinned worker threads
//! run it soon. quay is designed for what "soon" brings: duplicates, order
//! and poison.
//!
//! # Contents
//!
//! Public API:
//! - [`engine`]: [`Engine`], [`Submitter`] and the submit paths.
//! - [`builder`]: [`Builder`], [`Pinning`], settings checked into [`BuildError`].
//! - [`job`]: [`Job`], [`JobId`], [`Key`], [`JobContext`].
//! - [`error`]: [`Submitted`], [`SubmitError`], [`JobError`], [`BuildError`].
//! - [`clock`]: [`Clock`], [`ManualClock`], [`Timestamp`].
//! - [`idle`]: [`IdleStrategy`] and the sleep/wake protocol.
//! - [`shutdown`]: the shutdown protocol, [`Shutdown`] and [`Counts`].
//! - [`metrics`]: [`MetricsSnapshot`], counters, gauges, latency summaries.
//! - [`latency`]: per-worker hdrhistogram recording ([`Histograms`]).
//! - [`hgrm`]: `.hgrm` percentile output and the V2 interval log.
//! - [`driver`]: the deterministic single-threaded [`Driver`].
//! - [`dlq`]: [`DeadLetter`] and the dead-letter queue.
//! - [`retry`]: [`RetryPolicy`] and the backoff RNG.
//!
//! Internals, one concept per file:
//! - `loom`: the sync shim (std, or loom under `--cfg quay_loom`).
//! - `ring`: the bounded MPMC ring with stamped slots (Vyukov).
//! - `park`: the token parker a worker sleeps on.
//! - `capacity`: the held-jobs gate: bound, close bit, waiters.
//! - `shard`: what of a shard other threads touch: ring, inbox, overflow.
//! - `overflow`: where a job goes when a racing producer filled its ring or
//!   inbox, so that placing an admitted job never fails.
//! - `guard`: containment of panics from user code.
//! - `envelope`: a job in flight, with its bookkeeping.
//! - `worker`: the worker loop and stealing.
//! - `batch`: `submit_batch`, [`BatchReport`].
//! - `stats`: single-writer per-worker counters.
//! - `machine`: the job state machine shared by workers and the driver.
//! - `dedup`: the seen-ID set, over `idtable`: its open-addressed,
//!   cache-line-per-lookup table. `keys`: per-key queues. `timer`: the
//!   per-shard timer heap.
//!
//! Protocols and their memory orderings are explained in `docs/design.md`.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod batch;
pub mod builder;
mod capacity;
pub mod clock;
mod dedup;
pub mod dlq;
pub mod driver;
pub mod engine;
mod envelope;
pub mod error;
mod guard;
pub mod hgrm;
pub mod idle;
mod idtable;
pub mod job;
mod keys;
pub mod latency;
mod loom;
mod machine;
pub mod metrics;
mod overflow;
mod park;
mod prefetch;
pub mod retry;
mod ring;
mod shard;
pub mod shutdown;
mod stats;
mod timer;
mod worker;

pub use batch::{BatchOutcome, BatchReport};
pub use builder::{Builder, PinWarning, Pinning};
pub use clock::{Clock, ManualClock, Timestamp};
pub use dlq::DeadLetter;
pub use driver::{Driver, Step};
pub use engine::{Engine, Submitter};
pub use error::{BuildError, JobError, RedriveError, SubmitError, Submitted};
pub use hgrm::{write_hgrm, IntervalLog};
pub use idle::IdleStrategy;
pub use job::{Job, JobContext, JobId, Key};
pub use latency::Histograms;
pub use machine::{Gauges, Settled};
pub use metrics::{Counters, GaugeSnapshot, LatencySummary, MetricsSnapshot};
pub use retry::RetryPolicy;
pub use shutdown::{Counts, Shutdown};

/// Internals exposed for quay's own benches and fuzz targets only: not part
/// of the API, and may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::dedup::{DedupConfig, SeenSet};
    pub use crate::ring::Ring;
}

/// Internals exposed for the loom models in `loom-tests/` only: this module
/// exists only under `--cfg quay_loom` and is not part of the API.
#[cfg(quay_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::park::Parker;
    pub use crate::ring::Ring;

    /// Sets the calling loom thread's home index (its home shard is this
    /// modulo the shard count); 0 unless set.
    pub fn set_home(i: usize) {
        crate::loom::set_home(i)
    }
}

/// The README's examples, run as doctests so the README stays honest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
