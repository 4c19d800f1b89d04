//! A job and everything that happens to it, independent of threads:
//!
//! - `spec`: what a caller submits ([`Job`], [`JobId`], [`Key`]) and what a
//!   handler sees ([`JobContext`]).
//! - `envelope`: a job in flight, with its bookkeeping.
//! - `machine`: the state machine shared by the workers and the driver.
//! - `keys`: per-key sub-queues. `timer`: the per-shard timer heap.
//! - `retry`: [`RetryPolicy`](crate::RetryPolicy) and the backoff decision.
//! - `dlq`: the dead-letter queue and [`DeadLetter`](crate::DeadLetter).
//! - `guard`: containment of panics from user code.
//! - `hooks`: the `on_complete` and `on_retry` hooks.
//! - `status`: [`JobStatus`](crate::JobStatus), and the DLQ by ID.
//! - `driver`: the deterministic single-threaded
//!   [`Driver`](crate::Driver).

pub(crate) mod dlq;
pub(crate) mod driver;
pub(crate) mod envelope;
pub(crate) mod guard;
pub(crate) mod hooks;
pub(crate) mod keys;
pub(crate) mod machine;
pub(crate) mod retry;
mod spec;
pub(crate) mod status;
pub(crate) mod timer;

pub(crate) use spec::Schedule;
pub use spec::{Job, JobContext, JobId, Key};
