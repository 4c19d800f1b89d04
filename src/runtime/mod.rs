//! The threaded runtime: who owns what, and the paths a job takes through
//! threads.
//!
//! - `config`: the checked settings. `builder`: [`Builder`](crate::Builder),
//!   which checks them.
//! - `shared`: `Shared`, the state every thread may touch, and the submit
//!   protocol.
//! - `shard`: what of a shard other threads touch (ring, inbox, overflow);
//!   `overflow`: where a job goes when a racing producer filled its ring.
//! - `worker`: the worker loop and stealing.
//! - `runner`: how a worker runs attempts: a sync handler one at a time,
//!   or an async handler's futures, many at once (`exec/`).
//! - `batch`: `submit_batch` and [`BatchReport`](crate::BatchReport).
//! - `submit_async`: [`SubmitAsync`](crate::SubmitAsync), a submit that
//!   waits for room without blocking its thread.
//! - `engine`: [`Engine`](crate::Engine) and
//!   [`Submitter`](crate::Submitter), the public handles.
//! - `shutdown`: the shutdown protocol and [`Shutdown`](crate::Shutdown).
//! - `lanes`: [`Runtime`](crate::Runtime) and [`Lane`](crate::Lane):
//!   several engines, one per job kind, with disjoint cores and one
//!   lifecycle.
//!
//! Imports run one way: `lanes` → `builder` → `engine` → `shutdown`,
//! `batch`, `submit_async`, `runner` → `worker` → `shared` → `shard`, `config`.

pub(crate) mod batch;
pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod lanes;
pub(crate) mod overflow;
pub(crate) mod runner;
pub(crate) mod shard;
pub(crate) mod shared;
pub(crate) mod shutdown;
pub(crate) mod submit_async;
pub(crate) mod worker;
