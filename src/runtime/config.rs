//! [`Config`]: the checked settings an engine runs with, made by
//! [`Builder`](crate::Builder) and read by every part of the runtime.

use crate::clock::Clock;
use crate::dedup::DedupConfig;
use crate::job::retry::RetryPolicy;
use crate::sync::idle::IdleStrategy;

/// A pin that did not happen as asked: the worker runs unpinned, or
/// shares its core with another lane's worker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PinWarning {
    /// The engine's (lane's) name.
    pub lane: String,
    /// The worker index within its lane.
    pub worker: usize,
    /// The core it was to be pinned to.
    pub core: usize,
    /// What happened.
    pub kind: PinWarningKind,
}

/// What a [`PinWarning`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinWarningKind {
    /// The OS refused the pin: the worker runs unpinned.
    Refused,
    /// A [`Runtime`](crate::Runtime) had no free core left for this
    /// worker: it is pinned to a core another lane's worker uses too.
    Shared,
}

/// The checked settings an engine runs with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The engine's (lane's) name: worker threads are `quay-<name>-<i>`.
    pub(crate) name: String,
    pub(crate) workers: usize,
    // Read by `Worker::pin`, which loom builds compile out.
    #[cfg_attr(quay_loom, allow(dead_code))]
    pub(crate) cores: Vec<Option<usize>>,
    pub(crate) capacity: u64,
    pub(crate) ring_capacity: usize,
    pub(crate) idle: IdleStrategy,
    pub(crate) batch: usize,
    pub(crate) clock: Clock,
    /// `None`: dedup off.
    pub(crate) dedup: Option<DedupConfig>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_attempts: u32,
    pub(crate) dlq_capacity: usize,
    pub(crate) seed: u64,
    pub(crate) record_latency: bool,
    /// `on_complete` and `on_retry` (`on_dead` depends on the payload
    /// type, so it travels beside the config).
    pub(crate) hooks: crate::job::hooks::Hooks,
    /// Async attempts in flight per worker (async handlers only).
    pub(crate) concurrency: usize,
    /// Each async attempt's time limit, if any.
    pub(crate) attempt_timeout: Option<std::time::Duration>,
    /// Runs each worker's loop inside the caller's context, if set.
    pub(crate) worker_context: Option<WorkerContext>,
}

/// A wrapper around each worker's whole loop (see
/// [`Builder::worker_context`](crate::Builder::worker_context)).
#[derive(Clone)]
pub(crate) struct WorkerContext(pub(crate) std::sync::Arc<ContextFn>);

/// The caller's wrapper: it gets the worker's loop as `run`.
pub(crate) type ContextFn = dyn Fn(&mut dyn FnMut()) + Send + Sync;

impl std::fmt::Debug for WorkerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerContext(..)")
    }
}
