//! The lock-free building blocks, each on the `loom` shim so that loom and
//! miri check the code the engine runs:
//!
//! - `ring`: the bounded MPMC ring with stamped slots (Vyukov), with batch
//!   claims.
//! - `park`: the token parker a worker sleeps on.
//! - `idle`: [`IdleStrategy`](crate::IdleStrategy) and the sleep/wake
//!   protocol between producers and workers.
//! - `capacity`: the held-jobs gate: bound, close bit, waiters.
//! - `prefetch`: software prefetch hints.

pub(crate) mod capacity;
pub(crate) mod idle;
pub(crate) mod park;
pub(crate) mod prefetch;
pub(crate) mod ring;
