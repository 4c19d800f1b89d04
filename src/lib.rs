//! quay: a lock-free, in-memory job queue engine.
//!
//! A request path should do only the essential work and answer its user now;
//! the slow rest is dropped into quay as a [`Job`], and pinned worker threads
//! run it soon. quay is designed for what "soon" brings: duplicates, order
//! and poison.
//!
//! # Quick start
//!
//! Build an engine around one handler, submit jobs (keyed ones run one at a
//! time per key, in submit order), and shut down with an accounting of
//! every job:
//!
//! ```
//! use quay::{Engine, Job, JobError, Submitted};
//!
//! let engine = Engine::<u64>::builder()
//!     .workers(2)
//!     .build(|_ctx, cents: &u64| {
//!         if *cents == 0 {
//!             return Err(JobError::fatal("nothing to charge")); // to the DLQ
//!         }
//!         Ok(()) // charge the card, idempotently
//!     })
//!     .unwrap();
//!
//! // Keyed: customer 7's charges run one at a time, in this order.
//! let first = Job::new("charge:order-1", 2_500).keyed("customer-7");
//! assert_eq!(engine.submit(first).unwrap(), Submitted::Accepted);
//! engine.submit(Job::new("charge:order-2", 990).keyed("customer-7")).unwrap();
//! // Unkeyed: runs on whichever worker is free.
//! engine.submit(Job::new("receipt:order-1", 1)).unwrap();
//!
//! // The client retried order 1: same ID, so nothing runs twice.
//! let again = Job::new("charge:order-1", 2_500).keyed("customer-7");
//! assert_eq!(engine.submit(again).unwrap(), Submitted::Duplicate);
//!
//! // Shutdown runs what is held and accounts for every accepted job.
//! let report = engine.shutdown();
//! assert!(report.counts.is_conserved());
//! assert_eq!(report.counts.accepted, 3);
//! assert_eq!(report.counts.completed, 3);
//! assert_eq!(report.counts.duplicates, 1);
//! ```
//!
//! The `examples/` folder has runnable programs: sharing a [`Submitter`]
//! across producer threads, handling every error, reading metrics, writing
//! an [`IntervalLog`], and redriving a dead letter
//! (`cargo run --example submitter`, …).
//!
//! # Contents
//!
//! The public API is re-exported here; the modules are folders by concept,
//! and imports among them run one way (`docs/design.md` has the map):
//!
//! - `runtime/`: the threaded engine. [`Engine`], [`Submitter`],
//!   [`Builder`], the submit paths (and [`SubmitAsync`]), the worker loop, [`BatchReport`],
//!   [`Shutdown`].
//! - `job/`: a job and what happens to it, independent of threads: [`Job`],
//!   [`JobId`], [`Key`], [`JobContext`], the state machine, per-key queues,
//!   timers, [`RetryPolicy`], the DLQ ([`DeadLetter`]), [`JobStatus`] and
//!   the deterministic [`Driver`].
//! - `dedup/`: the seen-ID set and its open-addressed table.
//! - `sync/`: the lock-free building blocks: the MPMC ring, the parker, the
//!   sleep/wake protocol ([`IdleStrategy`]), the capacity gate.
//! - `observe/`: [`Counts`], [`MetricsSnapshot`], latency [`Histograms`],
//!   `.hgrm` output and the [`IntervalLog`]; with the `tracing` feature,
//!   the spans and events (`observe/trace.rs`).
//! - [`clock`]: [`Clock`], [`ManualClock`], [`Timestamp`].
//! - [`error`]: [`Submitted`], [`SubmitError`], [`JobError`],
//!   [`BuildError`], [`RedriveError`].
//! - `loom`: the sync shim (std, or loom under `--cfg quay_loom`).
//!
//! Protocols and their memory orderings are explained in `docs/design.md`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod clock;
mod dedup;
pub mod error;
mod exec;
mod job;
mod loom;
mod observe;
mod runtime;
mod sync;

pub use clock::{Clock, ManualClock, Timestamp};
pub use error::{BuildError, JobError, RedriveError, SubmitError, Submitted};
pub use job::dlq::DeadLetter;
pub use job::driver::{Driver, Started, Step};
pub use job::machine::{DriverGauges, Settled};
pub use job::retry::RetryPolicy;
pub use job::status::JobStatus;
pub use job::{Job, JobContext, JobId, Key};
pub use observe::counts::Counts;
pub use observe::hgrm::{write_hgrm, IntervalLog};
pub use observe::latency::Histograms;
pub use observe::metrics::{Counters, GaugeSnapshot, LatencySummary, MetricsSnapshot};
pub use observe::pauses::Pauses;
pub use runtime::batch::{BatchOutcome, BatchReport};
pub use runtime::builder::{Builder, Pinning};
pub use runtime::config::{PinWarning, PinWarningKind};
pub use runtime::engine::DROP_GRACE;
pub use runtime::engine::{Engine, Submitter};
pub use runtime::lanes::{Lane, LaneShutdown, Runtime, RuntimeMetrics, RuntimeShutdown};
pub use runtime::shutdown::Shutdown;
pub use runtime::submit_async::SubmitAsync;
pub use sync::idle::IdleStrategy;

/// Internals exposed for quay's own benches and fuzz targets only: not part
/// of the API, and may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::dedup::{DedupConfig, SeenSet};
    pub use crate::sync::ring::Ring;
}

/// Internals exposed for the loom models in `loom-tests/` only: this module
/// exists only under `--cfg quay_loom` and is not part of the API.
#[cfg(quay_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::park::Parker;
    pub use crate::sync::ring::Ring;

    /// The capacity gate, for the models of its async waiters
    /// (`loom-tests/tests/async_submit.rs`): the real gate's methods.
    #[derive(Debug)]
    pub struct Gate(crate::sync::capacity::Gate);

    /// An async waiter's registration with a [`Gate`].
    #[derive(Debug, Default)]
    pub struct AsyncWait(crate::sync::capacity::AsyncWait);

    impl Gate {
        /// A gate with room for `limit` jobs.
        pub fn new(limit: u64) -> Gate {
            Gate(crate::sync::capacity::Gate::new(limit))
        }

        /// Takes one unit of room; `false` when full or closed.
        pub fn try_acquire(&self) -> bool {
            self.0.try_acquire(1).is_ok()
        }

        /// Gives back `n` units.
        pub fn release(&self, n: u64) {
            self.0.release(n)
        }

        /// What a worker calls after it claimed jobs.
        pub fn room_freed(&self) {
            self.0.room_freed()
        }

        /// One poll of an async waiter (see `Gate::poll_wait`): `attempt`
        /// returns `Some` on success, or `None` having failed for want of
        /// capacity (`room == false`) or of ring room (`room == true`).
        pub fn poll_wait<R>(
            &self,
            wait: &mut AsyncWait,
            waker: &std::task::Waker,
            room: bool,
            mut attempt: impl FnMut() -> Option<R>,
        ) -> std::task::Poll<R> {
            use crate::sync::capacity::Why;
            let why = if room { Why::Room } else { Why::Capacity };
            self.0
                .poll_wait(&mut wait.0, waker, || attempt().ok_or(why))
        }

        /// Undoes a waiter's registration.
        pub fn abandon(&self, wait: &mut AsyncWait) {
            self.0.abandon(&mut wait.0)
        }
    }

    /// The sleep/wake protocol's two sides (`src/sync/idle.rs`), for the
    /// model that shows its fences are needed
    /// (`loom-tests/tests/wake_fence.rs`): the real methods.
    #[derive(Debug)]
    pub struct Idle(crate::sync::idle::Idle);

    impl Idle {
        /// The protocol's state for `workers` workers.
        pub fn new(workers: usize) -> Idle {
            Idle(crate::sync::idle::Idle::new(
                workers,
                crate::clock::Clock::default(),
            ))
        }

        /// A worker with room to claim announces it is going to sleep
        /// (then re-checks, and ends the announcement with `cancel` or
        /// `sleep`).
        pub fn announce(&self, worker: usize) -> Announced {
            Announced(self.0.announce(worker, true))
        }

        /// The re-check found work. Returns whether a producer handed this
        /// worker a wake-up meanwhile (which the engine's worker passes on).
        pub fn cancel(&self, a: Announced) -> bool {
            self.0.cancel(a.0) == crate::sync::idle::Handed::Yes
        }

        /// A worker with no free slot announces it is going to sleep: it is
        /// woken only for work that is its alone.
        pub fn announce_full(&self, worker: usize) -> Announced {
            Announced(self.0.announce(worker, false))
        }

        /// Passes on a handed wake-up: the wake check for the first shard
        /// from `from` on for which `has_work` says yes.
        pub fn pass_on(&self, from: usize, has_work: impl Fn(usize) -> bool) {
            self.0.pass_on(from, has_work)
        }

        /// Wakes every worker (what shutdown does).
        pub fn unpark_all(&self) {
            self.0.unpark_all()
        }

        /// Parks until unparked, then withdraws the announcement. Returns
        /// whether a producer handed this worker a wake-up for a stealable
        /// job (which the engine's worker passes on after its next claim).
        pub fn sleep(&self, a: Announced) -> bool {
            self.0.sleep(a.0, None).0 == crate::sync::idle::Handed::Yes
        }

        /// A producer's check after an unkeyed push to `shard`.
        pub fn notify(&self, shard: usize) {
            self.0.notify(shard, false)
        }

        /// A producer's check after a keyed push to `shard`'s owner.
        pub fn notify_owner(&self, shard: usize) {
            self.0.notify(shard, true)
        }

        /// A producer's check after pushing `jobs` unkeyed jobs at once.
        pub fn notify_many(&self, shard: usize, jobs: usize) {
            self.0.notify_many(shard, jobs)
        }

        /// The same without the fence: a plain load (unsound).
        pub fn notify_unfenced(&self, shard: usize) {
            self.0.notify_unfenced(shard, false)
        }
    }

    /// A worker's announcement that it is going to sleep.
    #[derive(Debug)]
    pub struct Announced(crate::sync::idle::Announced);

    /// A worker's claim from shard `shard`'s ring (`take_from` in
    /// `src/runtime/worker/claim.rs`), for the model of a batch's spread
    /// (`loom-tests/tests/loom_batch_spread.rs`): pops up to `max` items
    /// into `sink`, at most the ring's jobs over `workers`, and runs `idle`'s
    /// wake check for what it leaves. Returns how many it took.
    pub fn take_share<T>(
        ring: &Ring<T>,
        idle: &Idle,
        shard: usize,
        workers: usize,
        max: usize,
        sink: impl FnMut(T),
    ) -> usize {
        crate::runtime::worker::take_share(ring, &idle.0, shard, workers, max, sink)
    }

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
