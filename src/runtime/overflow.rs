//! A shard's overflow queue: where a job goes when the lock-free ring or
//! inbox it was meant for is full, so that a job holding a unit of capacity
//! is always placed.
//!
//! # Why it exists
//!
//! A submit looks for room in the ring (or inbox) its job goes to before it
//! claims capacity and marks the ID live (`shared.rs`, `try_submit`), but
//! that look is a hint: another producer may take the last slot before the
//! push. If placing could then fail, the submit would have to undo the live
//! mark, and a concurrent submit of the same ID could see that mark before
//! it was rolled back and be told `Duplicate` for a job that never entered
//! the engine. The overflow takes the job instead, so once a job is
//! admitted nothing is undone. Redrive places here too when its ring is
//! full. Its memory is bounded by the gate (every job in it holds a unit),
//! and it allocates only when used: the steady state never touches it.
//!
//! # Per-key order
//!
//! Only the shard's owner takes owner-only jobs out (other workers may
//! steal the unkeyed ones: [`Overflow::steal`]), so keyed jobs in it keep
//! their key table's order if two rules hold:
//! - a producer puts an owner-only job (keyed or delayed) here, not in the
//!   inbox, whenever this queue is not empty ([`Overflow::is_empty`]
//!   before the inbox push), so a key's later jobs queue behind its
//!   earlier ones;
//! - the owner moves jobs out of here only while the inbox is quiescent
//!   (every claimed position consumed), checked *under this lock*: a
//!   producer that pushed job 1 of a key to the inbox and then job 2 here
//!   made its inbox `tail` CAS before its unlock, so an owner whose lock
//!   sees job 2 also sees that `tail` (the lock's release/acquire, then
//!   coherence), finds the inbox not quiescent, and first pops job 1.
//!
//! # Orderings
//!
//! `len` is written under the lock with `Release` and read without it with
//! `Acquire`; a producer's push is followed by the wake protocol's fence in
//! `Idle::notify`, so an owner going to sleep sees `len` the same way it
//! sees a ring push (`docs/design.md`).

use crate::job::envelope::Envelope;
use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use crate::sync::ring::Ring;
use std::collections::VecDeque;

pub(crate) struct Overflow<T> {
    queue: Mutex<VecDeque<Envelope<T>>>,
    /// Jobs in `queue`: written under the lock, read without it.
    len: AtomicUsize,
}

impl<T> Overflow<T> {
    pub(crate) fn new() -> Overflow<T> {
        Overflow {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Whether no job waits here. A producer of an owner-only job checks it
    /// before the inbox push (see the module docs).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // Acquire pairs with the Release stores below.
        self.len.load(Ordering::Acquire) == 0
    }

    /// How many jobs wait here (a gauge).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Appends a job whose ring or inbox was full.
    #[cold]
    pub(crate) fn push(&self, env: Envelope<T>) {
        let mut q = relock(self.queue.lock());
        q.push_back(env);
        // Release: pairs with the Acquire in `is_empty`.
        self.len.store(q.len(), Ordering::Release);
    }

    /// The owner takes every job here, in order, if `inbox` (its own) is
    /// quiescent; otherwise nothing, and it tries again after popping the
    /// inbox. Returns how many it took.
    pub(crate) fn take_after(
        &self,
        inbox: &Ring<Envelope<T>>,
        sink: impl FnMut(Envelope<T>),
    ) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut q = relock(self.queue.lock());
        // Under the lock: see "Per-key order" in the module docs.
        if !inbox.is_quiescent() {
            return 0;
        }
        let n = q.len();
        q.drain(..).for_each(sink);
        // Release: pairs with the Acquire in `is_empty`.
        self.len.store(0, Ordering::Release);
        n
    }

    /// Another worker steals up to `max` jobs that any worker may run
    /// (unkeyed and due at `now`), oldest first: so a job that overflowed
    /// while every ring was full does not wait for a busy owner while
    /// others are idle. Owner-only jobs stay, in their order. Returns how
    /// many it took.
    #[cold]
    pub(crate) fn steal(
        &self,
        max: usize,
        now: crate::clock::Timestamp,
        mut sink: impl FnMut(Envelope<T>),
    ) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut q = relock(self.queue.lock());
        let mut taken = 0;
        let mut i = 0;
        while i < q.len() && taken < max {
            if q[i].owner_only(now) {
                i += 1;
                continue;
            }
            if let Some(e) = q.remove(i) {
                sink(e);
                taken += 1;
            }
        }
        // Release: pairs with the Acquire in `is_empty`.
        self.len.store(q.len(), Ordering::Release);
        taken
    }

    /// Takes every job here, whatever the inbox holds (shutdown, after the
    /// owner has stopped; the caller drains the inbox first).
    pub(crate) fn take_all(&self, out: &mut Vec<Envelope<T>>) -> usize {
        let mut q = relock(self.queue.lock());
        let n = q.len();
        out.extend(q.drain(..));
        self.len.store(0, Ordering::Release);
        n
    }
}
