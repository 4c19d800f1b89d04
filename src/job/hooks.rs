//! The completion and retry hooks ([`Builder::on_complete`] and
//! [`Builder::on_retry`]): their types, and their calls through the guard.
//! (`on_dead` sees a [`DeadLetter`](crate::DeadLetter), so it lives with the
//! DLQ, which calls it.)
//!
//! Neither hook sees the payload, so neither depends on the payload type:
//! they travel in the engine's `Config` and reach the state machine
//! (`machine.rs`) through `Semantics`, which calls them after it has
//! settled an attempt, on the worker (or in the driver) that ran it.
//!
//! [`Builder::on_complete`]: crate::Builder::on_complete
//! [`Builder::on_retry`]: crate::Builder::on_retry

use crate::error::JobError;
use crate::job::JobContext;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A hook that sees every completed job.
pub(crate) type OnComplete = Arc<dyn Fn(&JobContext) + Send + Sync>;

/// A hook that sees every retry scheduled: the failed attempt's context,
/// its error and the backoff before the next attempt.
pub(crate) type OnRetry = Arc<dyn Fn(&JobContext, &JobError, Duration) + Send + Sync>;

/// The hooks a builder was given.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_complete: Option<OnComplete>,
    pub(crate) on_retry: Option<OnRetry>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_complete", &self.on_complete.is_some())
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

impl Hooks {
    /// Calls `on_complete`, if set, through the guard. Returns whether it
    /// panicked (the panic goes no further).
    #[inline]
    pub(crate) fn completed(&self, ctx: &JobContext) -> bool {
        match &self.on_complete {
            Some(hook) => crate::job::guard::call(|| hook(ctx)).is_err(),
            None => false,
        }
    }

    /// Calls `on_retry`, if set, through the guard. Returns whether it
    /// panicked (the panic goes no further).
    #[inline]
    pub(crate) fn retrying(&self, ctx: &JobContext, err: &JobError, delay: Duration) -> bool {
        match &self.on_retry {
            Some(hook) => crate::job::guard::call(|| hook(ctx, err, delay)).is_err(),
            None => false,
        }
    }
}
