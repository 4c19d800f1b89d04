//! What an idle worker does, and the sleep/wake protocol that lets producers
//! skip the wake-up syscall while every worker is busy.
//!
//! The protocol (full argument with orderings in `docs/design.md`, "The
//! wake protocol"), a Dekker-style store-buffering pair of `SeqCst` fences,
//! as in crossbeam's `Sleep` and tokio's idle counting:
//!
//! - **Worker going to sleep:** set its own state ([`Asleep`]: whether it
//!   has room to claim), count itself in `sleeping` (an RMW: workers change it, producers only read it), then
//!   a `SeqCst` fence, then re-check every queue it could run from. Only if
//!   all are empty does it park.
//! - **Producer after a push:** a `SeqCst` fence, then a plain load of
//!   `sleeping`. If it reads 0, nobody is going to sleep and nothing more is
//!   done: no syscall, no lock, and no write to a shared line (an RMW here,
//!   as before, made every submit take the one `sleeping` line exclusive,
//!   bouncing it between producers). Otherwise it unparks a sleeping worker
//!   that can run the job.
//!
//! The two fences are ordered in the single total order of `SeqCst`
//! operations. If the producer's fence comes first, the worker's re-check
//! (after its fence) sees the push; if the worker's comes first, the
//! producer's load (after its fence) sees the count and the state, and
//! wakes it if it can run the job: a worker that announced it has no free
//! slot ([`Asleep::Full`]) is woken only for work that is its alone, so a
//! stealable job goes to a sleeper that can take it (the loom model
//! `loom-tests/tests/loom_wake_full.rs` checks this, and that the rule
//! before it, every sleeper counted, loses the job).
//! Without the fences both loads may read the old values (store
//! buffering: each side's store still in its own buffer), and a job sits
//! in a ring while every worker that may run it sleeps. The loom model
//! `loom-tests/tests/wake_fence.rs` runs this very code both ways: fenced
//! it passes, and with the producer's plain load and no fence
//! ([`Idle::notify_unfenced`], for that model only) loom finds the lost
//! wake-up.
//!
//! **The hand-over.** A producer takes a sleeper's wake-up for a stealable
//! job with a compare-exchange from [`Asleep::CanClaim`] to
//! [`Asleep::Handed`], never with a plain load: a load may read a
//! `CanClaim` the worker has already withdrawn, and the wake-up would be
//! counted on a worker that is busy with other work while another
//! sleeps. The worker's withdraw is a swap that reads what it ends. A
//! worker that was handed a wake-up ([`Idle::cancel`] or [`Idle::sleep`]
//! says [`Handed::Yes`]) passes it on ([`Idle::pass_on`]) after a claim
//! that took work, if jobs remain: it may be busy with other work (what its
//! re-check found, or a keyed job the same unpark was for). Loom found
//! the plain load's loss (`loom-tests/tests/loom_batch_spread.rs`) and
//! shows each pass-on is needed (`loom-tests/tests/loom_wake_handed.rs`).

use crate::clock::{Clock, Timestamp};
use crate::loom::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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

/// What a worker announced of itself before sleeping, as producers read
/// it: one byte of a [`Sleeper`] (the typed view of its `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Asleep {
    /// Awake: any push it could run, its own re-check or next turn sees.
    No = 0,
    /// Going to sleep with room to claim: woken for any job it may run.
    CanClaim = 1,
    /// Going to sleep with no free slot (an async worker at full
    /// concurrency): it claims nothing when woken, so it is woken only for
    /// what is its alone (an attempt's wake-up, a keyed job), never for
    /// stealable work, which must go to a worker that can take it.
    Full = 2,
    /// Was [`CanClaim`](Asleep::CanClaim), and a producer took it for a
    /// stealable job (`Idle::notify_slow`, a compare-exchange): this worker
    /// owns that wake-up now, and no other producer counts it again. If its
    /// re-check had found other work meanwhile, it passes the wake-up on
    /// ([`Idle::cancel`] says so).
    Handed = 3,
}

/// A worker's sleep state, visible to producers.
#[derive(Debug, Default)]
pub(crate) struct Sleeper {
    /// An [`Asleep`].
    state: AtomicU8,
    parker: Parker,
    /// When a producer last unparked it (the engine clock's nanoseconds), for
    /// the `wake` pause; 0: not since it last looked.
    woken_at: AtomicU64,
}

impl Sleeper {
    /// Returns `false` if the worker had been woken already.
    pub(crate) fn unpark(&self) -> bool {
        self.parker.unpark()
    }

    /// A producer's claim on this sleeper for a stealable job: moves
    /// `CanClaim` to `Handed`. An RMW, not a load: it reads the latest state
    /// (a plain load may read a `CanClaim` the worker has already withdrawn,
    /// and a wake-up spent on a worker that is busy with other work is a
    /// wake-up lost for the job; loom found that, `loom_batch_spread.rs`).
    /// Release on success pairs with the Acquire swap in `Idle::withdraw`:
    /// the push this wake-up is for is visible to the worker that takes it.
    fn take_wake(&self) -> bool {
        self.state
            .compare_exchange(
                Asleep::CanClaim as u8,
                Asleep::Handed as u8,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// A producer's unpark, stamped with `now` when it gave the token.
    fn unpark_at(&self, now: &Clock) -> bool {
        // The stamp first: the unpark's Release (the parker's token) then
        // publishes it to the woken worker's Acquire in `park`.
        let t = now.now().as_nanos().max(1);
        // Relaxed: published by the unpark below. A stamp of an unpark that
        // found the worker awake is cleared at its next announce.
        self.woken_at.store(t, Ordering::Relaxed);
        self.parker.unpark()
    }
}

/// What [`Idle::cancel`] found: whether a producer handed the cancelling
/// worker a wake-up for a stealable job during its re-check.
#[must_use = "a handed wake-up must be passed on (`Idle::pass_on`)"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Nobody took the announcement.
    No,
    /// A producer did: pass it on.
    Yes,
}

/// Evidence that a worker has announced it is going to sleep: made only by
/// [`Idle::announce`], consumed only by [`Idle::sleep`] or
/// [`Idle::cancel`]. The protocol's rule (announce, re-check, then sleep or
/// cancel) is held by the compiler: a re-check that forgets to do either
/// leaves a token unused, which `#[must_use]` reports.
#[must_use = "an announcement must end in `Idle::sleep` or `Idle::cancel`"]
#[derive(Debug)]
pub(crate) struct Announced {
    worker: usize,
}

/// Jobs in one push per extra worker woken (`Idle::notify_many`): a woken
/// thief takes a share of a ring's jobs (see `Worker::steal`), so one
/// sleeper per this many keeps a batch spread without waking workers that
/// find nothing.
pub(crate) const WAKE_PER: usize = 8;

/// The engine-wide count of workers going to sleep, and their sleepers.
#[derive(Debug)]
pub(crate) struct Idle {
    sleeping: CachePadded<AtomicUsize>,
    sleepers: Box<[CachePadded<Sleeper>]>,
    /// Unparks done by producers (slow path only).
    wakes: AtomicU64,
    /// Stamps producers' unparks (slow path only).
    clock: Clock,
}

impl Idle {
    pub(crate) fn new(workers: usize, clock: Clock) -> Idle {
        Idle {
            clock,
            sleeping: CachePadded::new(AtomicUsize::new(0)),
            sleepers: (0..workers)
                .map(|_| CachePadded::new(Sleeper::default()))
                .collect(),
            wakes: AtomicU64::new(0),
        }
    }

    /// Worker `worker` announces it is about to sleep; `can_claim` says
    /// whether it has room to take a job if woken. It must then re-check
    /// every queue it could run from, and end the announcement with
    /// [`Idle::sleep`] or [`Idle::cancel`] (the token holds it to that).
    pub(crate) fn announce(&self, worker: usize, can_claim: bool) -> Announced {
        let s = &self.sleepers[worker];
        // A stamp left by an unpark that found the worker awake (its token
        // then ends the coming park at once) is not this sleep's wake-up:
        // without this, the `wake` pause would count the whole busy spell
        // since. Relaxed: only this worker reads the stamp.
        s.woken_at.store(0, Ordering::Relaxed);
        let state = if can_claim {
            Asleep::CanClaim
        } else {
            Asleep::Full
        };
        // Relaxed: ordered before the producer's load by the fence below.
        s.state.store(state as u8, Ordering::Relaxed);
        // Relaxed: ordered by the fence below (an RMW only because several
        // workers count themselves in it).
        self.sleeping.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the producer's fence in `notify`. The
        // flag and count stores come before it, the re-check's loads after.
        fence(Ordering::SeqCst);
        Announced { worker }
    }

    /// The re-check found work: undo the announcement. Returns
    /// [`Handed::Yes`] if a producer handed this worker a wake-up for a
    /// stealable job meanwhile: the worker is busy with the work it found,
    /// so it must pass the wake-up on ([`Idle::pass_on`] after its claim),
    /// or the job it was for waits behind that work while another worker
    /// sleeps.
    pub(crate) fn cancel(&self, token: Announced) -> Handed {
        self.withdraw(token.worker)
    }

    /// Ends an announcement: returns whether a producer had taken it.
    fn withdraw(&self, worker: usize) -> Handed {
        // Acquire pairs with the Release compare-exchange of `take_wake`:
        // the handed wake-up's push is visible to the pass-on check.
        let was = self.sleepers[worker]
            .state
            .swap(Asleep::No as u8, Ordering::Acquire);
        // Relaxed: ordered by the fences (module docs). A producer that
        // still reads the count as set finds no `CanClaim` to take.
        self.sleeping.fetch_sub(1, Ordering::Relaxed);
        if was == Asleep::Handed as u8 {
            Handed::Yes
        } else {
            Handed::No
        }
    }

    /// Passes on a handed wake-up ([`Handed::Yes`]) from a worker that
    /// found other work: the wake check runs for the first shard, from
    /// `from` on, whose ring or overflow holds jobs. The job the wake-up was
    /// for is visible here (the Acquire in `withdraw`), so if it is still
    /// waiting, a sleeper that can take it is woken (or, if one is going
    /// to sleep, its re-check sees it: the fences).
    pub(crate) fn pass_on(&self, from: usize, has_work: impl Fn(usize) -> bool) {
        let n = self.sleepers.len();
        if let Some(s) = (0..n).map(|i| (from + i) % n).find(|&s| has_work(s)) {
            self.notify(s, false);
        }
    }

    /// Parks the announced worker, then withdraws the announcement.
    /// Returns whether a producer handed it a wake-up for a stealable job
    /// (the worker passes it on after its next claim if jobs remain: it may
    /// have been woken for work of its own as well, which it then takes
    /// first), and, if an unpark woke it, when that unpark was given (for
    /// the `wake` pause).
    pub(crate) fn sleep(
        &self,
        token: Announced,
        timeout: Option<Duration>,
    ) -> (Handed, Option<Timestamp>) {
        let worker = token.worker;
        let s = &self.sleepers[worker];
        let woken = s.parker.park(timeout);
        let handed = self.withdraw(worker);
        // Relaxed: the token's Acquire in `park` made the stamp visible.
        let at = s.woken_at.swap(0, Ordering::Relaxed);
        (
            handed,
            (woken && at != 0).then(|| Timestamp::from_nanos(at)),
        )
    }

    /// Called by a producer after it pushed a job to `shard`. `only_owner`
    /// is set for a job no other worker may run (a keyed job). Costs a
    /// `SeqCst` fence and a load of a read-mostly word when nobody sleeps.
    #[inline]
    pub(crate) fn notify(&self, shard: usize, only_owner: bool) {
        self.notify_jobs::<true>(shard, only_owner, 1);
    }

    /// `notify` for `jobs` unkeyed jobs pushed at once (`push_batch`): wakes
    /// up to one sleeping worker per [`WAKE_PER`] jobs, so a large batch onto
    /// a sleeping engine is not left to one worker.
    #[inline]
    pub(crate) fn notify_many(&self, shard: usize, jobs: usize) {
        self.notify_jobs::<true>(shard, false, jobs);
    }

    /// The protocol's producer side without its fence: a plain load, which
    /// the store-buffering outcome defeats. Exists only for the loom model
    /// that shows the fence is needed (`loom-tests/tests/wake_fence.rs`).
    #[cfg(quay_loom)]
    pub(crate) fn notify_unfenced(&self, shard: usize, only_owner: bool) {
        self.notify_jobs::<false>(shard, only_owner, 1);
    }

    #[inline]
    fn notify_jobs<const FENCED: bool>(&self, shard: usize, only_owner: bool, jobs: usize) {
        if FENCED {
            // SeqCst fence: pairs with the fence in `announce`. The push's
            // stores come before it, the load of the count after.
            fence(Ordering::SeqCst);
        }
        // Relaxed: the fences order it (module docs).
        if self.sleeping.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.notify_slow(shard, only_owner, jobs);
    }

    /// Unparks done by producers.
    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    #[cold]
    fn notify_slow(&self, shard: usize, only_owner: bool, jobs: usize) {
        // Relaxed: a statistic.
        self.wakes.fetch_add(1, Ordering::Relaxed);
        let n = self.sleepers.len();
        let owner = &self.sleepers[shard];
        // Relaxed flag loads: made visible by the fences (`notify_jobs`).
        if only_owner {
            // A keyed job's owner is woken even if it looks awake: an unpark
            // only costs a token then, and it keeps the argument local.
            owner.unpark_at(&self.clock);
            return;
        }
        // Unkeyed jobs wake workers that are asleep with room to claim and
        // not handed a wake-up yet: the owner first. Each wake-up is taken
        // by a compare-exchange (`take_wake`), so a burst of pushes onto
        // one sleeping shard wakes as many workers as it has jobs, not the
        // owner again and again (which would leave the others asleep
        // behind one slow handler), and a worker that has withdrawn is
        // never counted. A sleeper with no free slot is passed over too: it
        // would take the wake-up, claim nothing and sleep again, while one
        // that could run the job slept on.
        let mut want = jobs.div_ceil(WAKE_PER).max(1);
        for i in 0..n {
            let s = &self.sleepers[(shard + i) % n];
            if s.take_wake() {
                // The token may find it awake in its re-check: then its
                // `cancel` says `Handed::Yes` and it passes this on.
                s.unpark_at(&self.clock);
                want -= 1;
                if want == 0 {
                    return;
                }
            }
        }
        // Every worker that announced with room has since woken; each
        // re-checks all queues before sleeping again, so the jobs will be
        // seen. (A full worker that announced is not one of them: it takes
        // work again once a slot frees, which wakes it.)
    }

    /// Wakes every worker (shutdown).
    pub(crate) fn unpark_all(&self) {
        for s in self.sleepers.iter() {
            s.unpark();
        }
    }
}
