//! What an idle worker does, and the sleep/wake protocol that lets producers
//! skip the wake-up syscall while every worker is busy.
//!
//! The protocol (full argument with orderings in `docs/design.md`):
//!
//! - **Worker going to sleep:** set its own `asleep` flag, then *announce*
//!   with an RMW on `sleeping` (`fetch_add(1, AcqRel)`), then re-check every
//!   queue it could run from. Only if all are empty does it park.
//! - **Producer after a push:** an RMW on `sleeping` (`fetch_add(0, AcqRel)`).
//!   If it reads 0, nobody is going to sleep and nothing more is done: no
//!   syscall, no lock. Otherwise it unparks a sleeping worker that can run
//!   the job.
//!
//! Both sides use RMWs on the one word, so they are totally ordered in its
//! modification order: either the producer's RMW comes first, and the
//! worker's announce (Acquire) synchronises with it, so the re-check sees the
//! push; or the announce comes first, and the producer (Acquire) sees the
//! count and the `asleep` flag and wakes the worker. A load would not do: the
//! store-then-load pattern needs SeqCst, which loom does not model exactly.

use crate::loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::park::Parker;
use crossbeam_utils::CachePadded;
use std::time::Duration;

/// What a worker does when it finds no job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin forever. Lowest wake latency; burns a core per worker.
    BusySpin,
    /// Spin (with backoff) for `spin`, then park until woken.
    SpinThenPark {
        /// How long to spin before parking.
        spin: Duration,
    },
    /// Park at once. Least CPU; every wake-up costs a syscall.
    Park,
}

impl Default for IdleStrategy {
    fn default() -> IdleStrategy {
        IdleStrategy::SpinThenPark {
            spin: Duration::from_micros(50),
        }
    }
}

/// Exponential spin-then-yield backoff on the shim's primitives (crossbeam's
/// `Backoff` calls `std` directly, which loom could not see).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_LIMIT: u32 = 6;

    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// Spins `2^step` times while `step` is small, then yields the CPU.
    pub(crate) fn snooze(&mut self) {
        if self.step <= Self::SPIN_LIMIT {
            for _ in 0..(1u32 << self.step) {
                crate::loom::hint::spin_loop();
            }
            self.step += 1;
        } else {
            crate::loom::thread::yield_now();
        }
    }
}

/// A worker's sleep state, visible to producers.
#[derive(Debug, Default)]
pub(crate) struct Sleeper {
    asleep: AtomicBool,
    parker: Parker,
}

impl Sleeper {
    /// Returns `false` if the worker had been woken already.
    pub(crate) fn unpark(&self) -> bool {
        self.parker.unpark()
    }
}

/// The engine-wide count of workers going to sleep, and their sleepers.
#[derive(Debug)]
pub(crate) struct Idle {
    sleeping: CachePadded<AtomicUsize>,
    sleepers: Box<[CachePadded<Sleeper>]>,
    /// Unparks done by producers (slow path only).
    wakes: AtomicU64,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            sleeping: CachePadded::new(AtomicUsize::new(0)),
            sleepers: (0..workers)
                .map(|_| CachePadded::new(Sleeper::default()))
                .collect(),
            wakes: AtomicU64::new(0),
        }
    }

    /// Worker `worker` announces it is about to sleep. It must re-check its
    /// queues afterwards, then call [`Idle::sleep`] or [`Idle::cancel`].
    pub(crate) fn announce(&self, worker: usize) {
        // Relaxed: published by the Release half of the RMW below.
        self.sleepers[worker].asleep.store(true, Ordering::Relaxed);
        // AcqRel: Release publishes `asleep` to the producer RMW that reads
        // this (or a later) value; Acquire synchronises with every producer
        // RMW before it, so the re-check sees their pushes.
        self.sleeping.fetch_add(1, Ordering::AcqRel);
    }

    /// The re-check found work: undo the announcement.
    pub(crate) fn cancel(&self, worker: usize) {
        self.sleepers[worker].asleep.store(false, Ordering::Relaxed);
        // Release: ordered after the flag store for producers that read it.
        self.sleeping.fetch_sub(1, Ordering::Release);
    }

    /// Parks worker `worker` after an announcement, then withdraws it.
    /// Returns whether it was unparked (rather than timing out).
    pub(crate) fn sleep(&self, worker: usize, timeout: Option<Duration>) -> bool {
        let woken = self.sleepers[worker].parker.park(timeout);
        self.cancel(worker);
        woken
    }

    /// Called by a producer after it pushed a job to `shard`. `only_owner`
    /// is set for a job no other worker may run (a keyed job). Costs one
    /// uncontended RMW when nobody sleeps.
    #[inline]
    pub(crate) fn notify(&self, shard: usize, only_owner: bool) {
        // An RMW, not a load: see the module docs. AcqRel pairs with the
        // AcqRel `announce` of a worker going to sleep.
        if self.sleeping.fetch_add(0, Ordering::AcqRel) == 0 {
            return;
        }
        self.notify_slow(shard, only_owner);
    }

    /// Unparks done by producers.
    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    #[cold]
    fn notify_slow(&self, shard: usize, only_owner: bool) {
        // Relaxed: a statistic.
        self.wakes.fetch_add(1, Ordering::Relaxed);
        let n = self.sleepers.len();
        let owner = &self.sleepers[shard];
        // Relaxed: made visible by the Acquire RMW in `notify`.
        if only_owner {
            // A keyed job's owner is woken even if it looks awake: an unpark
            // only costs a token then, and it keeps the argument local.
            owner.unpark();
            return;
        }
        // An unkeyed job wakes one worker that is asleep and not woken yet:
        // the owner first. A sleeper that already holds a wake-up token is
        // passed over, so a burst of pushes onto one sleeping shard wakes
        // as many workers as it has jobs, not the owner again and again
        // (which would leave the others asleep behind one slow handler).
        if owner.asleep.load(Ordering::Relaxed) && owner.unpark() {
            return;
        }
        for i in 1..n {
            let s = &self.sleepers[(shard + i) % n];
            if s.asleep.load(Ordering::Relaxed) && s.unpark() {
                return;
            }
        }
        // Every worker that announced has since woken; each re-checks all
        // queues before sleeping again, so the job will be seen.
    }

    /// Wakes every worker (shutdown).
    pub(crate) fn unpark_all(&self) {
        for s in self.sleepers.iter() {
            s.unpark();
        }
    }
}
