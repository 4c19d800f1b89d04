//! [`ReadySet`]: which in-flight attempts of one worker have been woken,
//! and the [`Waker`]s that mark them.
//!
//! # Bit layout
//!
//! `bits` holds one bit per slot of the worker's [`Slots`](super::slots::Slots):
//! slot `i` is bit `i % 64` of word `i / 64`. A set bit means "poll me".
//!
//! # Protocol and orderings
//!
//! - **Waker** (any thread: a timer, an I/O driver, another task): sets its
//!   slot's bit with `fetch_or(Release)`, then calls the worker's notify,
//!   which is the engine's sleep protocol for a job only this worker may
//!   run (`Idle::notify(worker, true)`: a `SeqCst` fence, a load of the
//!   `sleeping` word, and an unpark if the worker announced it sleeps).
//! - **Worker**: takes the bits with `swap(0, Acquire)`, pairing with the
//!   waker's `Release`, so what the waker did before waking is visible to
//!   the poll. Before it parks it announces (`Idle::announce`: the count,
//!   then a `SeqCst` fence) and then re-checks the bits with
//!   [`ReadySet::any`].
//!
//! The waker's bit is sequenced before its fence, and the worker's
//! re-check after its announce's fence; the two fences are ordered in the
//! single `SeqCst` order, so either the re-check sees the bit or the
//! waker's load sees the announce (and it unparks the worker).
//! This is the same argument as a push and its notify (`sync/idle.rs`),
//! checked by the `wake` loom models.
//!
//! A waker outlives its attempt (a timer may hold it): a late wake-up sets
//! the bit of a slot that is free or holds a newer attempt, which costs
//! that attempt one spurious poll, never a missed one.

use crate::loom::sync::atomic::{AtomicU64, Ordering};
// std's `Arc`: `Waker::from` takes one (loom sees the atomics inside).
use std::sync::Arc;
use std::task::{Wake, Waker};

/// What a wake-up calls after setting its bit: wakes the worker.
pub(crate) type Notify = Box<dyn Fn() + Send + Sync>;

/// One worker's woken slots.
pub(crate) struct ReadySet {
    bits: Box<[AtomicU64]>,
    notify: Option<Notify>,
}

impl ReadySet {
    /// Room for `slots` slots; `notify` wakes the worker (`None`: nothing
    /// to wake, as in the single-threaded driver).
    pub(crate) fn new(slots: usize, notify: Option<Notify>) -> Arc<ReadySet> {
        Arc::new(ReadySet {
            bits: (0..slots.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            notify,
        })
    }

    /// A waker for slot `i`; made once per slot, reused by its attempts.
    pub(crate) fn waker(self: &Arc<ReadySet>, i: usize) -> Waker {
        Waker::from(Arc::new(SlotWaker {
            set: self.clone(),
            index: i,
        }))
    }

    fn wake(&self, i: usize) {
        // Release pairs with the Acquire swap in `take`.
        let prev = self.bits[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
        if prev & (1 << (i % 64)) != 0 {
            // Already marked and not yet taken: the worker will poll it.
            return;
        }
        if let Some(n) = &self.notify {
            n();
        }
    }

    /// Whether any slot is woken (the worker's re-check before it sleeps).
    pub(crate) fn any(&self) -> bool {
        // Acquire pairs with the waker's Release `fetch_or`.
        self.bits.iter().any(|w| w.load(Ordering::Acquire) != 0)
    }

    /// Takes the woken slots, calling `f` for each.
    pub(crate) fn take(&self, mut f: impl FnMut(usize)) {
        for (w, word) in self.bits.iter().enumerate() {
            // Relaxed first: most words are 0, and a swap would write them.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Acquire pairs with the waker's Release `fetch_or`.
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(w * 64 + b);
            }
        }
    }
}

struct SlotWaker {
    set: Arc<ReadySet>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.set.wake(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set.wake(self.index);
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn wakes_mark_bits_and_notify_once_until_taken() {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        let set = ReadySet::new(
            130,
            Some(Box::new(move || {
                c.fetch_add(1, Ordering::Relaxed);
            })),
        );
        let (w3, w129) = (set.waker(3), set.waker(129));
        assert!(!set.any());
        w3.wake_by_ref();
        w3.wake_by_ref();
        w129.wake();
        assert!(set.any());
        assert_eq!(n.load(Ordering::Relaxed), 2, "a marked slot notifies once");
        let mut got = Vec::new();
        set.take(|i| got.push(i));
        assert_eq!(got, [3, 129]);
        assert!(!set.any());
    }
}
