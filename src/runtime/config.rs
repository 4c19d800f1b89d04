//! [`Config`]: the checked settings an engine runs with, made by
//! [`Builder`](crate::Builder) and read by every part of the runtime.

use crate::clock::Clock;
use crate::dedup::DedupConfig;
use crate::job::retry::RetryPolicy;
use crate::sync::idle::IdleStrategy;

/// A pin the OS refused: the worker runs unpinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinWarning {
    /// The worker index.
    pub worker: usize,
    /// The core it was to be pinned to.
    pub core: usize,
}

/// The checked settings an engine runs with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
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
}
