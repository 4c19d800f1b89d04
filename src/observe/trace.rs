//! quay's `tracing` instrumentation, all of it: every span and event the
//! engine emits through the [`tracing`](https://docs.rs/tracing) facade is
//! made here, and the rest of the crate calls only this module's
//! functions and types. With the `tracing` feature off they are empty
//! `#[inline(always)]` functions and zero-sized types (and
//! `Traced<F>` is `F` itself), so the engine's hot paths compile to what
//! they were without it, and the `tracing` crate is not a dependency.
//!
//! What is emitted (target `quay`; `docs/observability.md`, "Tracing"):
//!
//! | what | level | where it is called | fields |
//! |---|---|---|---|
//! | span `attempt` | trace | `Worker::run_local`, `AsyncRunner`, `Driver::run_next` / `start_async` | `id`, `key` (if any), `lane`, `attempt`, `worker` |
//! | `retry` | debug | `ShardCore::settle` | `lane`, `id`, `attempt`, `delay`, `error` |
//! | `dead` | warn | `ShardCore::settle` | `lane`, `id`, `attempts`, `error` |
//! | `panic` | warn | `machine::attempt`, `machine::async_outcome` | `lane`, `id`, `attempt`, `error` |
//! | `timeout` | debug | `machine::async_outcome` | `lane`, `id`, `attempt`, `limit` |
//! | `duplicate` | debug | `Semantics::admit_id` (every submit path) | `lane`, `id` |
//! | `full` | warn | `Shared::count_refused_full`, `Driver::submit` | `lane`, `id` |
//! | `redrive` | info | `Semantics::take_for_redrive` (engine and driver) | `lane`, `id` |
//!
//! `id` is the [`JobId`]'s hex display, `key` the [`Key`](crate::Key) as
//! a `u64`, `delay` and `limit` a `Duration`'s debug form. The span covers
//! an attempt's handler call and its settling, so the handler's own
//! events and the `retry`, `dead`, `panic` and `timeout` events are inside
//! it; an async attempt's future is wrapped in [`Traced`] so that every
//! poll (and its drop) is inside it too. Events carry `lane` and `id`
//! themselves, for subscribers that filter out the trace-level span.

use crate::error::JobError;
use crate::job::{JobContext, JobId};
use std::time::Duration;

pub(crate) use imp::*;

#[cfg(feature = "tracing")]
mod imp {
    use super::*;
    use tracing::instrument::Instrument;

    /// The engine's (lane's) name, as its spans and events carry it.
    pub(crate) struct Lane(Box<str>);

    impl Lane {
        pub(crate) fn new(name: &str) -> Lane {
            Lane(name.into())
        }
    }

    /// An attempt's span.
    pub(crate) type Span = tracing::Span;

    /// An async attempt's future, entered into its span on every poll and
    /// on its drop. `tracing`'s own wrapper: the slots box and pin it
    /// like any future (no `unsafe` here), and it needs no help from the
    /// executor, which stays unaware of tracing.
    pub(crate) type Traced<F> = tracing::instrument::Instrumented<F>;

    /// The span of the attempt `ctx` describes.
    #[inline]
    pub(crate) fn attempt_span(lane: &Lane, ctx: &JobContext) -> Span {
        tracing::trace_span!(
            target: "quay",
            "attempt",
            id = %ctx.id,
            key = ctx.key.map(crate::Key::as_u64),
            lane = &*lane.0,
            attempt = ctx.attempt,
            worker = ctx.worker,
        )
    }

    /// `fut`, entered into `span` whenever it is polled or dropped.
    #[inline]
    pub(crate) fn traced<F>(fut: F, span: &Span) -> Traced<F> {
        fut.instrument(span.clone())
    }

    #[cold]
    pub(crate) fn retry(lane: &Lane, ctx: &JobContext, delay: Duration, err: &JobError) {
        tracing::debug!(
            target: "quay",
            lane = &*lane.0,
            id = %ctx.id,
            attempt = ctx.attempt,
            delay = ?delay,
            error = %err,
            "retry"
        );
    }

    #[cold]
    pub(crate) fn dead(lane: &Lane, id: JobId, attempts: u32, err: &JobError) {
        tracing::warn!(
            target: "quay",
            lane = &*lane.0,
            id = %id,
            attempts,
            error = %err,
            "dead"
        );
    }

    #[cold]
    pub(crate) fn panicked(lane: &Lane, ctx: &JobContext, msg: &str) {
        tracing::warn!(
            target: "quay",
            lane = &*lane.0,
            id = %ctx.id,
            attempt = ctx.attempt,
            error = msg,
            "panic"
        );
    }

    #[cold]
    pub(crate) fn timed_out(lane: &Lane, ctx: &JobContext, limit: Duration) {
        tracing::debug!(
            target: "quay",
            lane = &*lane.0,
            id = %ctx.id,
            attempt = ctx.attempt,
            limit = ?limit,
            "timeout"
        );
    }

    #[cold]
    pub(crate) fn duplicate(lane: &Lane, id: JobId) {
        tracing::debug!(target: "quay", lane = &*lane.0, id = %id, "duplicate");
    }

    #[cold]
    pub(crate) fn full(lane: &Lane, id: JobId) {
        tracing::warn!(target: "quay", lane = &*lane.0, id = %id, "full");
    }

    #[cold]
    pub(crate) fn redrive(lane: &Lane, id: JobId) {
        tracing::info!(target: "quay", lane = &*lane.0, id = %id, "redrive");
    }
}

/// The same items with the feature off: zero-sized, and no code.
#[cfg(not(feature = "tracing"))]
mod imp {
    use super::*;

    pub(crate) struct Lane;

    impl Lane {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Lane {
            Lane
        }
    }

    /// Not `Copy`, as `tracing::Span` is not: the same code compiles,
    /// lint-clean, both ways.
    #[derive(Clone)]
    pub(crate) struct Span;

    /// What entering a [`Span`] returns.
    pub(crate) struct Entered;

    impl Span {
        #[inline(always)]
        pub(crate) fn enter(&self) -> Entered {
            Entered
        }
    }

    pub(crate) type Traced<F> = F;

    #[inline(always)]
    pub(crate) fn attempt_span(_: &Lane, _: &JobContext) -> Span {
        Span
    }

    #[inline(always)]
    pub(crate) fn traced<F>(fut: F, _: &Span) -> Traced<F> {
        fut
    }

    #[inline(always)]
    pub(crate) fn retry(_: &Lane, _: &JobContext, _: Duration, _: &JobError) {}

    #[inline(always)]
    pub(crate) fn dead(_: &Lane, _: JobId, _: u32, _: &JobError) {}

    #[inline(always)]
    pub(crate) fn panicked(_: &Lane, _: &JobContext, _: &str) {}

    #[inline(always)]
    pub(crate) fn timed_out(_: &Lane, _: &JobContext, _: Duration) {}

    #[inline(always)]
    pub(crate) fn duplicate(_: &Lane, _: JobId) {}

    #[inline(always)]
    pub(crate) fn full(_: &Lane, _: JobId) {}

    #[inline(always)]
    pub(crate) fn redrive(_: &Lane, _: JobId) {}
}
