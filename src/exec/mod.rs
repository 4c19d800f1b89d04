//! The per-worker async executor: how a worker (or the driver) runs many
//! attempts of async handlers at once on its own thread.
//!
//! - `slots`: [`Slots`](slots::Slots), the in-flight attempts, each a
//!   boxed future in a slot with its job; polls behind the panic guard.
//! - `wake`: [`ReadySet`](wake::ReadySet), the woken slots' bitmap, and
//!   the wakers that set it and wake the worker through the engine's sleep
//!   protocol.
//!
//! Why a local executor and not a tokio runtime per worker:
//! `docs/design.md`, "Async handlers".

pub(crate) mod slots;
pub(crate) mod wake;
