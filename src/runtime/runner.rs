//! The two ways a worker runs attempts ([`Runner`]), and how each worker
//! gets its own ([`MakeRunner`]):
//!
//! - [`SyncRunner`]: a sync handler, one attempt at a time to its end, on
//!   the worker's stack: the engine's fast path, unchanged.
//! - [`AsyncRunner`]: an async handler, up to `concurrency` attempts at once
//!   as futures in the worker's [`Slots`]: an attempt that waits (on I/O, a
//!   timer) frees the thread for the next one. Its endings go through the
//!   same settle, commit and latency code as the sync path's.
//!
//! Order per key holds as it does for sync handlers: a key's next job
//! becomes runnable only when its previous one settles terminal, whenever
//! that future completes.
//!
//! Tracing (`observe/trace.rs`): an async attempt's span is entered around
//! the handler's synchronous call, kept beside the future for its
//! settling, and attached to the future itself ([`Traced`]), so every poll
//! of the attempt, and the future's drop, is inside it.

use crate::clock::Timestamp;
use crate::error::JobError;
use crate::exec::slots::{Ended, Slots};
use crate::job::envelope::Envelope;
use crate::job::machine::{async_outcome, InFlight};
use crate::job::JobContext;
use crate::loom::sync::Arc;
use crate::observe::trace::{self, Traced};
use crate::runtime::shared::Shared;
use crate::runtime::worker::{Runner, Worker};
use std::future::Future;
use std::time::Duration;

/// Makes each worker's [`Runner`], on that worker's thread.
pub(crate) trait MakeRunner<T: Send + 'static>: Send + Sync + 'static {
    type Runner: Runner<T>;
    fn make(&self, worker: usize, shared: &Arc<Shared<T>>) -> Self::Runner;
}

/// A sync handler, shared by the workers.
pub(crate) struct SyncHandler<H>(pub(crate) Arc<H>);

impl<T, H> MakeRunner<T> for SyncHandler<H>
where
    T: Send + 'static,
    H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
{
    type Runner = SyncRunner<H>;
    fn make(&self, _: usize, _: &Arc<Shared<T>>) -> SyncRunner<H> {
        SyncRunner(self.0.clone())
    }
}

/// Runs each claimed job's attempt to its end, in claim order.
pub(crate) struct SyncRunner<H>(Arc<H>);

impl<T, H> Runner<T> for SyncRunner<H>
where
    T: Send + 'static,
    H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
{
    #[inline]
    fn room(&self) -> usize {
        usize::MAX
    }
    #[inline]
    fn run_claimed(&mut self, w: &mut Worker<T>) {
        w.run_local(&*self.0);
    }
    #[inline]
    fn progress(&mut self, _: &mut Worker<T>) -> bool {
        false
    }
    #[inline]
    fn in_flight(&self) -> usize {
        0
    }
    #[inline]
    fn woken(&self) -> bool {
        false
    }
    #[inline]
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn drain(&mut self, _: &mut Worker<T>, _: &mut Vec<Envelope<T>>) {}
}

/// An async handler and its per-worker settings.
pub(crate) struct AsyncHandler<H> {
    pub(crate) handler: Arc<H>,
    /// Attempts in flight per worker.
    pub(crate) concurrency: usize,
    /// Each attempt's time limit, if any.
    pub(crate) timeout: Option<Duration>,
}

impl<T, H, F> MakeRunner<T> for AsyncHandler<H>
where
    T: Send + 'static,
    H: Fn(JobContext, &T) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + 'static,
{
    type Runner = AsyncRunner<T, H, F>;
    fn make(&self, worker: usize, shared: &Arc<Shared<T>>) -> AsyncRunner<T, H, F> {
        let s = shared.clone();
        // A woken attempt is work only this worker may do: the sleep
        // protocol's owner-only notify (see `exec/wake.rs`).
        let notify = Box::new(move || s.idle.notify(worker, true));
        AsyncRunner {
            handler: self.handler.clone(),
            slots: Slots::new(self.concurrency, Some(notify)),
            timeout: self.timeout,
        }
    }
}

/// Runs up to `concurrency` attempts at once as futures in its slots.
///
/// A slot's future is the handler's `F` wrapped in [`Traced`], which with
/// the `tracing` feature is `tracing`'s `Instrumented<F>`, entering the
/// attempt's span for each poll and for the drop, and without it is `F`
/// itself. Wrapping the future is the simplest sound way: the slots stay
/// unaware of tracing, no poll can miss the span, and `Instrumented` needs
/// no `unsafe` of ours (the slots pin it in its box like any future).
pub(crate) struct AsyncRunner<T, H, F: Future> {
    handler: Arc<H>,
    slots: Slots<InFlight<T>, Traced<F>>,
    timeout: Option<Duration>,
}

impl<T, H, F> AsyncRunner<T, H, F>
where
    T: Send + 'static,
    H: Fn(JobContext, &T) -> F,
    F: Future<Output = Result<(), JobError>>,
{
    /// Settles an ended attempt inside its span.
    fn settle(w: &mut Worker<T>, e: Ended<InFlight<T>, F::Output>, limit: Option<Duration>) {
        let span = e.item().span.clone();
        let (terminal, now) = {
            let _in = span.enter();
            let (a, result, panicked) = async_outcome(&w.shared().sem.lane, e, limit);
            w.end(a.env, &a.ctx, result, panicked, a.start)
        };
        w.ended(terminal, now, false);
    }
}

impl<T, H, F> Runner<T> for AsyncRunner<T, H, F>
where
    T: Send + 'static,
    H: Fn(JobContext, &T) -> F,
    F: Future<Output = Result<(), JobError>>,
{
    fn room(&self) -> usize {
        self.slots.room()
    }

    fn run_claimed(&mut self, w: &mut Worker<T>) {
        while self.slots.room() > 0 {
            let Some(mut env) = w.next_claimed() else {
                break;
            };
            let (ctx, start) = w.begin(&mut env);
            let now = w.shared().clock.now();
            let deadline = self.timeout.map(|d| now.saturating_add(d));
            let span = trace::attempt_span(&w.shared().sem.lane, &ctx);
            // The handler's synchronous part is user code too.
            let made = {
                let _in = span.enter();
                crate::job::guard::call(|| (self.handler)(ctx, &env.job.payload))
            };
            let a = InFlight {
                env,
                ctx,
                start,
                span,
            };
            let ended = match made {
                Ok(fut) => {
                    let fut = trace::traced(fut, &a.span);
                    match self.slots.start(a, fut, deadline) {
                        Ok(ended) => ended,
                        // Not reached: room was checked. Settle it as a
                        // failed attempt rather than lose it.
                        Err((a, fut)) => {
                            w.count_contained(u64::from(crate::job::guard::drop_value(fut)));
                            Some(Ended::Panicked(a, "no slot".into()))
                        }
                    }
                }
                Err(msg) => Some(Ended::Panicked(a, msg)),
            };
            if let Some(e) = ended {
                Self::settle(w, e, self.timeout);
            }
            if w.stopping() {
                break;
            }
        }
        w.count_contained(self.slots.take_contained());
    }

    fn progress(&mut self, w: &mut Worker<T>) -> bool {
        let mut any = false;
        let limit = self.timeout;
        // Even with nothing in flight: a late wake-up (a waker that fired
        // after its attempt ended) leaves a bit that must be taken, or the
        // sleep's re-check would see it forever and the worker would spin
        // (found by the loom model in `loom-tests/tests/async_handlers.rs`).
        if self.slots.woken() {
            any = true;
            self.slots.poll_woken(|e| Self::settle(w, e, limit));
        }
        if limit.is_some() {
            let now = w.shared().clock.now();
            self.slots.expire(now, |e| {
                any = true;
                Self::settle(w, e, limit)
            });
        }
        w.count_contained(self.slots.take_contained());
        any
    }

    fn in_flight(&self) -> usize {
        self.slots.len()
    }

    fn woken(&self) -> bool {
        self.slots.woken()
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.slots.next_deadline()
    }

    fn drain(&mut self, w: &mut Worker<T>, out: &mut Vec<Envelope<T>>) {
        self.slots.drain(|a| out.push(a.env));
        w.count_contained(self.slots.take_contained());
    }
}
