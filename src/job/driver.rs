//! [`Driver`]: the engine's state machine run deterministically on one
//! thread, with a manual clock and outcomes chosen by the caller.
//!
//! It runs the same code as the threaded engine's workers: the same
//! [`ShardCore`](crate::job::machine) (key table, timer, retry decision,
//! settlement), the same seen-ID set and the same DLQ. Only the transport
//! differs: there are no rings, no threads and one shard. That makes it the
//! fuzzer's subject (`fuzz/`), and a way for users to test how their
//! handlers' failures play out without waiting on real time.
//!
//! ```
//! use quay::{Engine, Job, JobError, Settled};
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//!
//! let mut d = Engine::<&str>::builder().max_attempts(NonZeroU32::new(2).unwrap()).driver().unwrap();
//! d.submit(Job::new(1u64, "flaky")).unwrap();
//! let step = d.run_next(|_, _| Err(JobError::retry("smtp timeout"))).unwrap();
//! assert_eq!(step.settled, Settled::Retrying);
//! assert!(d.run_next(|_, _| Ok(())).is_none(), "the retry is not due yet");
//! d.advance(Duration::from_secs(120));
//! let step = d.run_next(|_, _| Err(JobError::retry("again"))).unwrap();
//! assert_eq!((step.attempt, step.settled), (2, Settled::Dead));
//! assert_eq!(d.dead_letters()[0].last_error(), Some("retry: again"));
//! ```

use crate::clock::{Clock, ManualClock, Timestamp};
use crate::error::{JobError, RedriveError, SubmitError, Submitted};
use crate::exec::slots::{Ended, Slots};
use crate::job::dlq::{DeadLetter, OnDead};
use crate::job::envelope::Envelope;
use crate::job::machine::{
    async_outcome, attempt, DriverGauges, InFlight, Semantics, Settled, ShardCore,
};
use crate::job::status::JobStatus;
use crate::job::{Job, JobContext, JobId, Key};
use crate::observe::counts::Counts;
use crate::observe::trace;
use crate::runtime::config::Config;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An async attempt in a driver: the handler's future, in its span
/// (`observe/trace.rs`), boxed to one type.
type DynAttempt = Pin<Box<dyn Future<Output = Result<(), JobError>>>>;

/// What [`Driver::start_async`] did with the next runnable job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// The future completed in its first poll.
    Ended(Step),
    /// The future is pending: the attempt is in flight until a
    /// [`Driver::poll_async`] sees it end.
    Pending(JobId),
}

/// What one [`Driver::run_next`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The job that ran.
    pub id: JobId,
    /// Its key.
    pub key: Option<Key>,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// Whether the handler panicked.
    pub panicked: bool,
    /// Where the attempt left the job.
    pub settled: Settled,
}

/// The engine's state machine on one thread. Make one with
/// [`Builder::driver`](crate::Builder::driver).
pub struct Driver<T> {
    sem: Semantics<T>,
    core: ShardCore<T>,
    clock: ManualClock,
    capacity: u64,
    closed: bool,
    counts: Counts,
    /// Async attempts in flight, made on first use.
    in_flight: Option<Slots<InFlight<T>, DynAttempt>>,
    concurrency: usize,
    attempt_timeout: Option<Duration>,
}

impl<T> Driver<T> {
    pub(crate) fn new(config: Config, on_dead: Option<OnDead<T>>) -> Driver<T> {
        let clock = match &config.clock {
            Clock::Manual(m) => m.clone(),
            Clock::Monotonic(_) => ManualClock::new(),
        };
        Driver {
            sem: Semantics::new(&config, on_dead),
            core: ShardCore::new(config.seed, 0, 0),
            clock,
            capacity: config.capacity,
            closed: false,
            counts: Counts::default(),
            in_flight: None,
            concurrency: config.concurrency,
            attempt_timeout: config.attempt_timeout,
        }
    }

    /// The driver's manual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
    }

    /// Submits a job, as [`Engine::try_submit`](crate::Engine::try_submit)
    /// does: refused with `Full` at capacity, `ShuttingDown` after
    /// [`Driver::shutdown_now`]; a duplicate ID is a no-op.
    pub fn submit(&mut self, job: Job<T>) -> Result<Submitted, SubmitError<T>> {
        if self.closed {
            return Err(SubmitError::ShuttingDown(job));
        }
        if self.counts.held >= self.capacity {
            trace::full(&self.sem.lane, job.id);
            return Err(SubmitError::Full(job));
        }
        let now = self.clock.now();
        let env = Envelope::new(job, now);
        if !self.sem.admit_id(&env) {
            self.counts.duplicates += 1;
            self.sem.drop_user(env);
            return Ok(Submitted::Duplicate);
        }
        self.accept(env, now);
        Ok(Submitted::Accepted)
    }

    fn accept(&mut self, env: Envelope<T>, now: Timestamp) {
        self.counts.accepted += 1;
        self.counts.held += 1;
        self.core.admit(env, now);
    }

    /// Runs the next runnable job's attempt through `handler` (a panic is
    /// contained, as in the engine). `None` if no job is runnable now.
    pub fn run_next(
        &mut self,
        handler: impl FnOnce(&JobContext, &T) -> Result<(), JobError>,
    ) -> Option<Step> {
        if self.closed {
            return None;
        }
        self.core.fire(self.clock.now());
        let mut env = self.core.pop_ready()?;
        let ctx = env.begin_attempt(0, self.sem.max_attempts);
        // As a worker does: the span around the handler and the settling.
        let span = trace::attempt_span(&self.sem.lane, &ctx);
        let _in = span.enter();
        let (result, panicked) = attempt(&self.sem.lane, &ctx, || handler(&ctx, &env.job.payload));
        Some(self.settle(env, ctx, result, panicked))
    }

    fn settle(
        &mut self,
        env: Envelope<T>,
        ctx: JobContext,
        result: Result<(), JobError>,
        panicked: bool,
    ) -> Step {
        let now = self.clock.now();
        let settled = self.core.settle(&self.sem, env, &ctx, result, now);
        self.core.commit_finished(&self.sem, now);
        match settled {
            Settled::Completed => self.counts.completed += 1,
            Settled::Dead => self.counts.dead += 1,
            Settled::Retrying => self.counts.retried += 1,
        }
        if settled.is_terminal() {
            self.counts.held -= 1;
        }
        Step {
            id: ctx.id,
            key: ctx.key,
            attempt: ctx.attempt,
            panicked,
            settled,
        }
    }

    /// Starts the next runnable job's attempt through an async handler, as
    /// an engine built with [`build_async`](crate::Builder::build_async)
    /// does: the future is polled once at once, and if it is pending the
    /// attempt stays in flight (its key busy) until
    /// [`poll_async`](Driver::poll_async) sees it end. `None` if no job is
    /// runnable, or [`concurrency`](crate::Builder::concurrency) attempts
    /// are in flight already.
    ///
    /// The builder's [`attempt_timeout`](crate::Builder::attempt_timeout)
    /// runs on the driver's manual clock.
    pub fn start_async<H, F>(&mut self, handler: H) -> Option<Started>
    where
        H: FnOnce(JobContext, &T) -> F,
        F: Future<Output = Result<(), JobError>> + 'static,
    {
        if self.closed {
            return None;
        }
        let n = self.concurrency;
        if self
            .in_flight
            .get_or_insert_with(|| Slots::new(n, None))
            .room()
            == 0
        {
            return None;
        }
        self.core.fire(self.clock.now());
        let mut env = self.core.pop_ready()?;
        let ctx = env.begin_attempt(0, self.sem.max_attempts);
        let deadline = self
            .attempt_timeout
            .map(|d| self.clock.now().saturating_add(d));
        // As a worker does (see `runner.rs`): the span around the handler
        // call, and on the future for every poll.
        let span = trace::attempt_span(&self.sem.lane, &ctx);
        let made = {
            let _in = span.enter();
            crate::job::guard::call(|| handler(ctx, &env.job.payload))
        };
        let a = InFlight {
            env,
            ctx,
            start: Timestamp::default(),
            span,
        };
        let ended = match made {
            Err(msg) => Ended::Panicked(a, msg),
            Ok(fut) => {
                let slots = self.in_flight.as_mut()?;
                let fut: DynAttempt = Box::pin(trace::traced(fut, &a.span));
                match slots.start(a, fut, deadline) {
                    Ok(None) => return Some(Started::Pending(ctx.id)),
                    Ok(Some(e)) => e,
                    Err((a, fut)) => {
                        self.sem.drop_user(fut);
                        Ended::Panicked(a, "no slot".into())
                    }
                }
            }
        };
        let step = self.end_async(ended);
        self.count_future_drops();
        Some(Started::Ended(step))
    }

    /// Polls the async attempts whose wakers fired, and ends those whose
    /// time limit has passed on the manual clock. Returns the attempts that
    /// ended, in the order they ended.
    pub fn poll_async(&mut self) -> Vec<Step> {
        let Some(mut slots) = self.in_flight.take() else {
            return Vec::new();
        };
        let mut ended = Vec::new();
        slots.poll_woken(|e| ended.push(e));
        slots.expire(self.clock.now(), |e| ended.push(e));
        self.in_flight = Some(slots);
        let steps = ended.into_iter().map(|e| self.end_async(e)).collect();
        self.count_future_drops();
        steps
    }

    /// Async attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.as_ref().map_or(0, |s| s.len())
    }

    /// Settles an ended async attempt inside its span.
    fn end_async(&mut self, e: Ended<InFlight<T>, Result<(), JobError>>) -> Step {
        let span = e.item().span.clone();
        let _in = span.enter();
        let (a, result, panicked) = async_outcome(&self.sem.lane, e, self.attempt_timeout);
        self.settle(a.env, a.ctx, result, panicked)
    }

    fn count_future_drops(&mut self) {
        if let Some(s) = self.in_flight.as_mut() {
            self.sem.count_contained(s.take_contained());
        }
    }

    /// Whether a job is runnable now.
    pub fn has_runnable(&mut self) -> bool {
        self.core.fire(self.clock.now());
        self.core.has_ready()
    }

    /// The earliest time a waiting (delayed or retrying) job is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.core.next_due()
    }

    /// A snapshot of the dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter<T>>
    where
        T: Clone,
    {
        self.sem.dlq.snapshot()
    }

    /// Empties the dead-letter queue.
    pub fn drain_dead(&mut self) -> Vec<DeadLetter<T>> {
        self.sem.dlq.drain()
    }

    /// Takes the newest dead letter with this ID out of the DLQ, as
    /// [`Engine::take_dead`](crate::Engine::take_dead) does.
    pub fn take_dead(&mut self, id: impl Into<JobId>) -> Option<DeadLetter<T>> {
        self.sem.take_dead(id.into())
    }

    /// Removes the newest dead letter with this ID from the DLQ and drops
    /// it, as [`Engine::discard_dead`](crate::Engine::discard_dead) does.
    pub fn discard_dead(&mut self, id: impl Into<JobId>) -> bool {
        self.sem.discard_dead(id.into())
    }

    /// What the driver knows of the job with this ID now, as
    /// [`Engine::status`](crate::Engine::status) does. The driver records
    /// each completion at once, so a completed job is never `Live`.
    pub fn status(&self, id: impl Into<JobId>) -> JobStatus {
        self.sem.status(id.into(), self.clock.now())
    }

    /// Panics contained in user code other than handlers (payload drops,
    /// the hooks): the engine's `contained_panics`.
    pub fn contained_panics(&self) -> u64 {
        self.sem.contained()
    }

    /// Dead letters dropped because the DLQ was full.
    pub fn dlq_dropped(&self) -> u64 {
        self.sem.dlq.dropped()
    }

    /// Finished IDs forgotten early because dedup was at capacity.
    pub fn dedup_evicted(&self) -> u64 {
        self.sem.seen.as_ref().map_or(0, |s| s.evicted())
    }

    /// Resubmits the dead job with this ID, attempts reset, bypassing dedup.
    pub fn redrive(&mut self, id: impl Into<JobId>) -> Result<(), RedriveError> {
        let (closed, held, capacity) = (self.closed, self.counts.held, self.capacity);
        let job = self.sem.take_for_redrive(
            id.into(),
            || {
                if closed {
                    Err(RedriveError::ShuttingDown)
                } else if held >= capacity {
                    Err(RedriveError::Full)
                } else {
                    Ok(())
                }
            },
            || {},
        )?;
        let now = self.clock.now();
        self.counts.redriven += 1;
        self.accept(Envelope::new(job, now), now);
        Ok(())
    }

    /// Stops: every job not yet terminal (in flight, ready, waiting behind
    /// its key, delayed, waiting to retry) is returned, and later submits are
    /// refused.
    pub fn shutdown_now(&mut self) -> Vec<Job<T>> {
        self.closed = true;
        let mut left = Vec::new();
        // In flight first: a key's busy job before those queued behind it.
        if let Some(mut slots) = self.in_flight.take() {
            slots.drain(|a| left.push(a.env));
            self.sem.count_contained(slots.take_contained());
        }
        self.core.drain_into(&mut left);
        self.counts.returned += left.len() as u64;
        self.counts.held -= left.len() as u64;
        left.into_iter().map(|e| e.job).collect()
    }

    /// Jobs held by state, and live keys: see [`DriverGauges`] for how
    /// they relate to an engine's [`GaugeSnapshot`](crate::GaugeSnapshot).
    pub fn gauges(&self) -> DriverGauges {
        self.core.gauges()
    }

    /// The counts; `accepted == completed + dead + returned + held` always.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}
