//! The gate that lets an attempt run alone: one per process, since a
//! process that aborts ends every node in it. Every attempt of a node
//! that counts crash loops holds it: shared for an ordinary attempt,
//! exclusive for a suspect's (`crash.rs`), so when a process dies during
//! an exclusive attempt, no other attempt of the process was running.
//!
//! tokio's `RwLock` is fair: once an exclusive attempt waits, later
//! shared ones queue behind it, and it gets its turn when the attempts
//! before it end (each within `max_run_time`).

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::const_new(());

/// A held place at the gate; dropping it lets the next one in.
#[allow(dead_code)] // Held for its drop.
pub(crate) enum Permit {
    /// Other ordinary attempts may run alongside.
    Shared(RwLockReadGuard<'static, ()>),
    /// Nothing else of this process runs an attempt.
    Alone(RwLockWriteGuard<'static, ()>),
}

/// Waits for a place at the gate: exclusive when `alone`.
pub(crate) async fn enter(alone: bool) -> Permit {
    if alone {
        Permit::Alone(GATE.write().await)
    } else {
        Permit::Shared(GATE.read().await)
    }
}
