//! A node's counters, and the report it gives at shutdown.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one node. Each is a plain event count read on its own, so
/// `Relaxed` suffices (no reader infers anything from one about another).
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) delivered: AtomicU64,
    pub(crate) swapped: AtomicU64,
    pub(crate) reacked: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) crash_looped: AtomicU64,
    pub(crate) fenced: AtomicU64,
    pub(crate) returned: AtomicU64,
    pub(crate) progress: AtomicU64,
    pub(crate) acquired: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) dlq_abandoned: AtomicU64,
    pub(crate) hook_panics: AtomicU64,
    pub(crate) ran_alone: AtomicU64,
    pub(crate) unmarked: AtomicU64,
}

impl Stats {
    pub(crate) fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> NodeStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeStats {
            delivered: r(&self.delivered),
            swapped: r(&self.swapped),
            reacked: r(&self.reacked),
            acked: r(&self.acked),
            dead: r(&self.dead),
            crash_looped: r(&self.crash_looped),
            fenced: r(&self.fenced),
            returned: r(&self.returned),
            progress: r(&self.progress),
            acquired: r(&self.acquired),
            released: r(&self.released),
            lost: r(&self.lost),
            dlq_abandoned: r(&self.dlq_abandoned),
            hook_panics: r(&self.hook_panics),
            ran_alone: r(&self.ran_alone),
            unmarked: r(&self.unmarked),
        }
    }
}

/// What a node has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStats {
    /// Deliveries received (redeliveries included).
    pub delivered: u64,
    /// Redeliveries of a job still in flight (its reply subject swapped).
    pub swapped: u64,
    /// Redeliveries of a job already terminal, acked at once.
    pub reacked: u64,
    /// Jobs completed and acked.
    pub acked: u64,
    /// Jobs published to the DLQ and terminated.
    pub dead: u64,
    /// Of those, jobs sent there by the crash-loop limit.
    pub crash_looped: u64,
    /// Jobs not started because their generation was fenced (left un-acked).
    pub fenced: u64,
    /// Jobs left un-acked at shutdown or release without running.
    pub returned: u64,
    /// `+WPI` sent.
    pub progress: u64,
    /// Leases acquired.
    pub acquired: u64,
    /// Leases released gracefully.
    pub released: u64,
    /// Leases lost (renewal refused, or fenced).
    pub lost: u64,
    /// Dead jobs whose DLQ publish was abandoned because their generation
    /// ended first (the next owner replays them).
    pub dlq_abandoned: u64,
    /// Panics contained in the `on_acquire` hook.
    pub hook_panics: u64,
    /// Attempts run alone on the node: those of crash-loop suspects.
    #[serde(default)]
    pub ran_alone: u64,
    /// Attempts run alone whose finished marker was not written (the job
    /// may be charged a death it did not cause).
    #[serde(default)]
    pub unmarked: u64,
}
