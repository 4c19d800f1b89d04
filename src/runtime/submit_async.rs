//! [`SubmitAsync`]: the future of [`Engine::submit_async`](crate::Engine::submit_async),
//! a submit that waits for room without blocking its thread.
//!
//! It waits in the gate's own protocol (`sync/capacity.rs`, "Waiters,
//! blocking and async"): each poll attempts the submit; a failed attempt
//! parks the task's waker under the gate's eventcount, and every release
//! of capacity, every claim of jobs by a worker (ring or inbox room) and
//! the gate's close wakes it. It needs no runtime: it works under tokio,
//! smol or `futures::executor` alike.
//!
//! # Cancel safety
//!
//! Each attempt either places the job (and the future completes in the
//! same poll) or hands it back to the future. So dropping the future before
//! it completes hands nothing to the engine: the job is dropped with the
//! future (behind the panic guard), or taken back first with
//! [`SubmitAsync::into_job`].

use crate::error::{SubmitError, Submitted};
use crate::job::Job;
use crate::runtime::shared::{Attempt, Shared};
use crate::sync::capacity::{AsyncWait, Why};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future of [`submit_async`](crate::Engine::submit_async): resolves to
/// what [`submit`](crate::Engine::submit) would return, without blocking.
///
/// Dropping it unfinished submits nothing (see [`SubmitAsync::into_job`]
/// to get the job back).
#[must_use = "a future does nothing unless polled"]
pub struct SubmitAsync<'a, T: Send + 'static> {
    shared: &'a Shared<T>,
    /// `None` once the future has completed.
    job: Option<Job<T>>,
    wait: AsyncWait,
    /// Whether an attempt was refused for room or capacity: a future given
    /// up after that is a call refused for capacity (`rejected_full`).
    blocked: bool,
}

// The job is only ever moved, never pinned: the future is `Unpin` whatever
// `T` is.
impl<T: Send + 'static> Unpin for SubmitAsync<'_, T> {}

impl<T: Send + 'static> std::fmt::Debug for SubmitAsync<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitAsync")
            .field("id", &self.job.as_ref().map(|j| j.id()))
            .field("wait", &self.wait)
            .finish()
    }
}

impl<'a, T: Send + 'static> SubmitAsync<'a, T> {
    pub(crate) fn new(shared: &'a Shared<T>, job: Job<T>) -> SubmitAsync<'a, T> {
        SubmitAsync {
            shared,
            job: Some(job),
            wait: AsyncWait::default(),
            blocked: false,
        }
    }

    /// Gives up waiting and hands the job back; `None` if the future has
    /// already completed (the engine has, or refused, the job).
    pub fn into_job(mut self) -> Option<Job<T>> {
        self.shared.gate.abandon(&mut self.wait);
        let job = self.job.take();
        self.count_given_up(job.as_ref());
        job
    }

    /// A call given up while it waited for room is a refusal for capacity.
    fn count_given_up(&self, job: Option<&Job<T>>) {
        if let (Some(job), true) = (job, self.blocked) {
            self.shared.count_refused_full(job.id);
        }
    }
}

impl<T: Send + 'static> Future for SubmitAsync<'_, T> {
    type Output = Result<Submitted, SubmitError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let shared = this.shared;
        if this.job.is_none() {
            // Polled after completion: a caller bug, answered without a
            // panic. The job went with the first answer.
            return Poll::Pending;
        }
        // On one of this engine's own workers, never wait (as `submit`).
        if crate::loom::is_worker_of(shared.id()) {
            return match this.job.take() {
                Some(job) => Poll::Ready(shared.try_submit(job)),
                None => Poll::Pending,
            };
        }
        let slot = &mut this.job;
        let blocked = &mut this.blocked;
        shared.gate.poll_wait(&mut this.wait, cx.waker(), || {
            let Some(job) = slot.take() else {
                // Not reached: the job is put back after every refusal.
                return Err(Why::Capacity);
            };
            match shared.attempt_submit(job) {
                Attempt::Blocked(job, why) => {
                    *slot = Some(job);
                    *blocked = true;
                    Err(why)
                }
                Attempt::Done(answer) => Ok(answer),
            }
        })
    }
}

impl<T: Send + 'static> Drop for SubmitAsync<'_, T> {
    fn drop(&mut self) {
        self.shared.gate.abandon(&mut self.wait);
        let job = self.job.take();
        self.count_given_up(job.as_ref());
        if let Some(job) = job {
            // The payload's `Drop` is user code.
            self.shared.sem.drop_user(job);
        }
    }
}
