//! [`Slots`]: one worker's in-flight async attempts, a fixed number of
//! slots each holding an attempt's future and its bookkeeping.
//!
//! It is the executor's whole state, owned by one thread (a worker, or the
//! driver): starting an attempt polls its future at once, so an attempt
//! that never waits ends in the same call; later polls happen only for
//! slots whose waker fired ([`ReadySet`]). Every poll and every drop of a
//! future is user code and runs behind the panic guard: a panicking poll
//! ends the attempt as [`Ended::Panicked`], a panicking drop is counted.
//!
//! Futures are boxed (`Pin<Box<F>>`): one allocation per attempt, no
//! `unsafe` pinning. They need not be `Send`: they are created and polled
//! on the one thread that owns the slots.

use super::wake::{Notify, ReadySet};
use crate::clock::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// How an attempt left its slot.
pub(crate) enum Ended<E, O> {
    /// The future completed with this output.
    Done(E, O),
    /// Its poll panicked, with this message; the future is dropped.
    Panicked(E, String),
    /// Its deadline passed first; the future is dropped.
    TimedOut(E),
}

impl<E, O> Ended<E, O> {
    /// The attempt's item, however it ended.
    pub(crate) fn item(&self) -> &E {
        match self {
            Ended::Done(e, _) | Ended::Panicked(e, _) | Ended::TimedOut(e) => e,
        }
    }
}

/// What [`Slots::start`] did: `Ok(Some(_))` the attempt ended at once,
/// `Ok(None)` it waits in a slot, `Err` it is handed back (no free slot).
pub(crate) type Started<E, F> = Result<Option<Ended<E, <F as Future>::Output>>, (E, F)>;

struct Slot<E, F> {
    attempt: Option<(E, Pin<Box<F>>)>,
    deadline: Option<Timestamp>,
}

/// A fixed number of slots for in-flight futures of type `F`, each with an
/// item `E` (the job and what the caller needs to settle it).
pub(crate) struct Slots<E, F> {
    slots: Box<[Slot<E, F>]>,
    wakers: Box<[Waker]>,
    /// Free slot indexes.
    free: Vec<usize>,
    ready: Arc<ReadySet>,
    /// Live slots with a deadline.
    timed: usize,
    /// Panics contained in futures' drops since the last `take_contained`.
    contained: u64,
}

impl<E, F: Future> Slots<E, F> {
    /// `n` slots (at least 1); `notify` wakes the owner when a waker fires.
    pub(crate) fn new(n: usize, notify: Option<Notify>) -> Slots<E, F> {
        let n = n.max(1);
        let ready = ReadySet::new(n, notify);
        Slots {
            slots: (0..n)
                .map(|_| Slot {
                    attempt: None,
                    deadline: None,
                })
                .collect(),
            wakers: (0..n).map(|i| ready.waker(i)).collect(),
            // Popped from the back: slot 0 first.
            free: (0..n).rev().collect(),
            ready,
            timed: 0,
            contained: 0,
        }
    }

    /// Attempts in flight.
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Free slots.
    pub(crate) fn room(&self) -> usize {
        self.free.len()
    }

    /// Whether a waker fired since the last [`poll_woken`](Self::poll_woken).
    pub(crate) fn woken(&self) -> bool {
        self.ready.any()
    }

    /// Starts an attempt: polls `fut` once. Returns how it ended if it did
    /// at once; otherwise it waits in a slot. The caller checks `room`
    /// first; with no room the attempt is handed back as `Err`.
    pub(crate) fn start(&mut self, item: E, fut: F, deadline: Option<Timestamp>) -> Started<E, F> {
        let Some(i) = self.free.pop() else {
            return Err((item, fut));
        };
        let slot = &mut self.slots[i];
        slot.attempt = Some((item, Box::pin(fut)));
        slot.deadline = deadline;
        if deadline.is_some() {
            self.timed += 1;
        }
        Ok(self.poll_slot(i))
    }

    /// Polls every slot whose waker fired, handing each attempt that ended
    /// to `ended`.
    pub(crate) fn poll_woken(&mut self, mut ended: impl FnMut(Ended<E, F::Output>)) {
        let ready = self.ready.clone();
        ready.take(|i| {
            if let Some(e) = self.poll_slot(i) {
                ended(e);
            }
        });
    }

    /// Ends every attempt whose deadline is at or before `now` as
    /// [`Ended::TimedOut`], dropping its future.
    pub(crate) fn expire(&mut self, now: Timestamp, mut ended: impl FnMut(Ended<E, F::Output>)) {
        if self.timed == 0 {
            return;
        }
        for i in 0..self.slots.len() {
            let due = self.slots[i].deadline.is_some_and(|d| d <= now);
            if due && self.slots[i].attempt.is_some() {
                if let Some((item, fut)) = self.vacate(i) {
                    self.drop_future(fut);
                    ended(Ended::TimedOut(item));
                }
            }
        }
    }

    /// The earliest deadline of an attempt in flight.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        if self.timed == 0 {
            return None;
        }
        self.slots
            .iter()
            .filter(|s| s.attempt.is_some())
            .filter_map(|s| s.deadline)
            .min()
    }

    /// Ends every attempt in flight without an outcome (shutdown): drops
    /// each future and hands its item to `f`, in slot order.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(E)) {
        for i in 0..self.slots.len() {
            if let Some((item, fut)) = self.vacate(i) {
                self.drop_future(fut);
                f(item);
            }
        }
    }

    /// Panics contained in futures' drops since the last call.
    pub(crate) fn take_contained(&mut self) -> u64 {
        std::mem::take(&mut self.contained)
    }

    fn poll_slot(&mut self, i: usize) -> Option<Ended<E, F::Output>> {
        let waker = &self.wakers[i];
        let (_, fut) = self.slots[i].attempt.as_mut()?;
        let mut cx = Context::from_waker(waker);
        let polled = crate::job::guard::call(|| fut.as_mut().poll(&mut cx));
        match polled {
            Ok(Poll::Pending) => None,
            Ok(Poll::Ready(out)) => {
                let (item, fut) = self.vacate(i)?;
                self.drop_future(fut);
                Some(Ended::Done(item, out))
            }
            Err(msg) => {
                let (item, fut) = self.vacate(i)?;
                self.drop_future(fut);
                Some(Ended::Panicked(item, msg))
            }
        }
    }

    /// Empties slot `i`, freeing it.
    fn vacate(&mut self, i: usize) -> Option<(E, Pin<Box<F>>)> {
        let slot = &mut self.slots[i];
        let out = slot.attempt.take()?;
        if slot.deadline.take().is_some() {
            self.timed -= 1;
        }
        self.free.push(i);
        Some(out)
    }

    /// A future's `Drop` is user code.
    fn drop_future(&mut self, fut: Pin<Box<F>>) {
        if crate::job::guard::drop_value(fut) {
            self.contained += 1;
        }
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Ready after `n` polls, waking itself each time.
    struct Countdown(u32);

    impl Future for Countdown {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.0 == 0 {
                return Poll::Ready(7);
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn starts_polls_woken_and_frees_slots() {
        let mut s: Slots<u64, Countdown> = Slots::new(2, None);
        assert!(matches!(
            s.start(1, Countdown(0), None),
            Ok(Some(Ended::Done(1, 7)))
        ));
        assert!(matches!(s.start(2, Countdown(2), None), Ok(None)));
        assert!(matches!(s.start(3, Countdown(1), None), Ok(None)));
        assert_eq!(s.room(), 0);
        assert!(s.start(4, Countdown(0), None).is_err(), "full: handed back");
        let mut done = Vec::new();
        while s.len() > 0 {
            assert!(s.woken());
            s.poll_woken(|e| match e {
                Ended::Done(i, _) => done.push(i),
                _ => unreachable!(),
            });
        }
        assert_eq!(done, [3, 2]);
    }

    #[test]
    fn deadlines_expire_and_drain_returns_items() {
        let t0 = Timestamp::default();
        let t1 = t0.saturating_add(Duration::from_millis(5));
        let mut s: Slots<u64, std::future::Pending<u32>> = Slots::new(3, None);
        assert!(s
            .start(1, std::future::pending(), Some(t1))
            .unwrap()
            .is_none());
        assert!(s.start(2, std::future::pending(), None).unwrap().is_none());
        assert_eq!(s.next_deadline(), Some(t1));
        let mut out = Vec::new();
        s.expire(t0, |_| out.push(0));
        assert!(out.is_empty());
        s.expire(t1, |e| {
            if let Ended::TimedOut(i) = e {
                out.push(i)
            }
        });
        assert_eq!(out, [1]);
        assert_eq!(s.next_deadline(), None);
        s.drain(|i| out.push(i));
        assert_eq!(out, [1, 2]);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_panicking_poll_ends_the_attempt() {
        struct Boom;
        impl Future for Boom {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                panic!("boom")
            }
        }
        let mut s: Slots<u64, Boom> = Slots::new(1, None);
        match s.start(9, Boom, None) {
            Ok(Some(Ended::Panicked(9, msg))) => assert!(msg.contains("boom")),
            _ => panic!("expected a contained panic"),
        }
        assert_eq!(s.room(), 1);
    }
}
