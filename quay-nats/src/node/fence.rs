//! The fence of one partition generation: until when its lease is known to
//! hold, and whether the generation is over. Handlers get it inside their
//! [`Token`](crate::Token); a worker checks it before it starts a job.
//!
//! Orderings: `valid_until` only grows (`fetch_max`), and `dead` and
//! `draining` only go from false to true. Each is a single word read on
//! its own: no reader combines two of them into one decision that a writer
//! could tear, so `Relaxed` would do for the words themselves. The
//! `Release` stores pair with the `Acquire` loads so that a reader that
//! sees `dead` also sees what the ending thread wrote before it (the
//! partition task's stop signal), which the drain relies on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A generation that cannot start more work: its lease could expire before
/// the job's maximum run time is over, or it was lost or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition} generation {generation} is fenced")]
pub struct Fenced {
    /// The partition.
    pub partition: u32,
    /// The generation that ended.
    pub generation: u64,
}

/// One (partition, generation)'s lease validity, as this node knows it.
#[derive(Debug)]
pub struct Fence {
    partition: u32,
    generation: u64,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the lease surely holds: the
    /// send time of the last confirmed renewal plus the TTL (the server's
    /// clock starts the TTL later than the send, so this errs early).
    valid_until: AtomicU64,
    dead: AtomicBool,
    draining: AtomicBool,
}

impl Fence {
    pub(crate) fn new(partition: u32, generation: u64, epoch: Instant, until: Instant) -> Fence {
        let f = Fence {
            partition,
            generation,
            epoch,
            valid_until: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        };
        f.extend(until);
        f
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The generation: the lease's KV revision when it was acquired.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Ok if the lease surely holds for `need` more: the generation is not
    /// over, and now + `need` is before the lease's end. A failed check ends
    /// the generation for good: a later renewal does not bring it back, so
    /// a key's jobs cannot run out of order around a gap.
    pub fn check(&self, need: Duration) -> Result<(), Fenced> {
        // Acquire: pairs with the Release in `end`.
        if !self.dead.load(Ordering::Acquire) {
            let deadline = self.nanos(Instant::now() + need);
            // Acquire: pairs with the Release `fetch_max` in `extend`.
            if deadline < self.valid_until.load(Ordering::Acquire) {
                return Ok(());
            }
            self.end();
        }
        Err(Fenced {
            partition: self.partition,
            generation: self.generation,
        })
    }

    /// Whether the generation is over.
    pub fn is_dead(&self) -> bool {
        // Acquire: pairs with the Release in `end`.
        self.dead.load(Ordering::Acquire)
    }

    /// Whether a graceful release is under way (acks are confirmed).
    pub fn is_draining(&self) -> bool {
        // Acquire: pairs with the Release in `drain`.
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn extend(&self, until: Instant) {
        // Release: pairs with the Acquire load in `check`.
        self.valid_until
            .fetch_max(self.nanos(until), Ordering::Release);
    }

    pub(crate) fn drain(&self) {
        // Release: pairs with the Acquire load in `is_draining`.
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn end(&self) {
        // Release: pairs with the Acquire loads in `check` and `is_dead`.
        self.dead.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_ends_the_generation() {
        let now = Instant::now();
        let f = Fence::new(1, 7, now, now + Duration::from_secs(10));
        assert!(f.check(Duration::from_secs(1)).is_ok());
        assert_eq!(
            f.check(Duration::from_secs(60)),
            Err(Fenced {
                partition: 1,
                generation: 7
            })
        );
        f.extend(now + Duration::from_secs(600));
        assert!(
            f.check(Duration::from_secs(1)).is_err(),
            "a renewal must not revive it"
        );
        assert!(f.is_dead());
    }
}
