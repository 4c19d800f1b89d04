//! Capacity accounting: the engine-wide count of held jobs, the "closed"
//! bit that shutdown sets, and the waiters blocked on either.
//!
//! # Bit layout of `word` (one `AtomicU64`)
//!
//! ```text
//!  63      62 ........ 40   39 ........ 0
//! [closed] [ waiters: 23 ] [ held: 40    ]
//! ```
//!
//! - `held`: jobs accepted and not yet terminal or returned. A job waiting
//!   to retry, delayed, or waiting behind its key is held too.
//! - `waiters`: threads blocked in [`Gate::wait_until`] (blocking submits,
//!   shutdown waiting for the drain).
//! - `closed`: set once by shutdown; no acquire succeeds after it.
//!
//! Keeping all three in one word makes every decision a single RMW:
//! - an acquire is one CAS that sees `closed`, `held` and the bound together,
//!   so a job is either accepted before shutdown closes the gate (and is then
//!   accounted for) or refused with `ShuttingDown`: never both, never neither;
//! - a release's `fetch_sub` returns the waiter count, so a worker learns for
//!   free whether anyone needs waking; and a waiter's registering `fetch_add`
//!   is ordered against every release in the word's modification order, so
//!   either the release sees the waiter, or the waiter's re-check sees the
//!   room (no lost wake-up).
//!
//! # Waiters, blocking and async
//!
//! Both kinds wait on one eventcount: a sequence number under the gate's
//! lock, bumped by every wake-up. A waiter reads it, attempts, and sleeps
//! (a thread on the condvar) or parks its [`Waker`] in the list under the
//! lock only while the sequence is unchanged; a wake-up bumps the sequence
//! and takes every parked waker under the same lock. So a wake-up that
//! lands between an attempt and the sleep is never missed.
//!
//! # Room that no release announces
//!
//! A submit can also fail for want of ring or inbox room while the gate
//! has capacity; a worker frees that room when it claims jobs, which
//! releases nothing. So a waiter whose attempt failed for want of room
//! ([`Why::Room`]) is also counted in `room_waiters`, a word of its own
//! (read-mostly, so a worker's check is a cache hit), and:
//!
//! - the waiter registers (`room_waiters += 1`), then a `SeqCst` fence,
//!   then attempts again before it sleeps;
//! - a worker that claimed jobs issues a `SeqCst` fence, then loads
//!   `room_waiters`, and if it is not 0 wakes every waiter.
//!
//! The two fences are ordered in the single total order of `SeqCst`
//! operations. If the worker's fence comes first, the waiter's attempt
//! (after its fence) sees the claim and the room it freed; if the waiter's
//! comes first, the worker's load sees the registration and wakes it. A
//! plain load without the fences could miss both (store buffering); the
//! loom model `async_submit_wakes_on_ring_room` checks this.

use crate::loom::relock;
use crate::loom::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex};
use crate::loom::time::Deadline;
use crossbeam_utils::CachePadded;
use std::task::Waker;
use std::time::Duration;

const HELD_BITS: u32 = 40;
const HELD_MASK: u64 = (1 << HELD_BITS) - 1;
const WAITER: u64 = 1 << HELD_BITS;
const WAITERS_MASK: u64 = ((1 << 23) - 1) << HELD_BITS;
const CLOSED: u64 = 1 << 63;

/// Why a waiter's attempt failed: what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Capacity: every release wakes it.
    Capacity,
    /// Ring or inbox room: every claim by a worker wakes it too (a waiter
    /// for capacity alone is not woken by claims, so backpressure on a
    /// full engine costs the workers nothing).
    Room,
}

/// Why an acquire failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    Closed,
}

/// The capacity gate.
#[derive(Debug)]
pub(crate) struct Gate {
    word: CachePadded<AtomicU64>,
    limit: u64,
    /// Waiters registered (blocking and async): see "Room that no release
    /// announces" in the module docs.
    room_waiters: CachePadded<AtomicUsize>,
    /// The eventcount and the parked async wakers.
    waiters: Mutex<Waiters>,
    cvar: Condvar,
}

/// What the gate's lock guards.
#[derive(Debug, Default)]
struct Waiters {
    /// Wake sequence number: bumped by every wake-up (an eventcount).
    seq: u64,
    /// Async waiters' wakers, by ticket, parked until the next wake-up.
    wakers: Vec<(u64, Waker)>,
    next_ticket: u64,
}

/// An async waiter's registration: made by [`Gate::poll_wait`], undone by
/// [`Gate::abandon`] (the waiter's `Drop` must call it).
#[derive(Debug, Default)]
pub(crate) struct AsyncWait {
    registered: bool,
    /// Counted in `room_waiters` too.
    room: bool,
    /// This waiter's entry in `Waiters::wakers`, once it has parked.
    ticket: Option<u64>,
}

impl Gate {
    /// `limit` is at most `BuildError::MAX_CAPACITY` (checked by the builder).
    pub(crate) fn new(limit: u64) -> Gate {
        Gate {
            word: CachePadded::new(AtomicU64::new(0)),
            limit: limit.min(HELD_MASK),
            room_waiters: CachePadded::new(AtomicUsize::new(0)),
            waiters: Mutex::new(Waiters::default()),
            cvar: Condvar::new(),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes up to `n` units of room; returns how many (at least 1).
    #[inline]
    pub(crate) fn try_acquire(&self, n: u64) -> Result<u64, Refused> {
        // Relaxed: the CAS below re-validates; no data rides on this word.
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            if cur & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            let held = cur & HELD_MASK;
            let room = self.limit - held.min(self.limit);
            if room == 0 {
                return Err(Refused::Full);
            }
            let take = n.min(room);
            // AcqRel pairs with `close` (Release) and the RMWs of `release`:
            // an acquire ordered after `close` in the word's modification
            // order sees `closed`.
            match self.word.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(take),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back `n` units: jobs that became terminal or were returned.
    #[inline]
    pub(crate) fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        // AcqRel: Release so a waiter whose registering RMW reads this value
        // sees the jobs' terminal state; Acquire to read current waiters.
        let prev = self.word.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev & HELD_MASK >= n, "capacity released twice");
        if prev & WAITERS_MASK != 0 {
            self.wake_waiters();
        }
    }

    #[cold]
    fn wake_waiters(&self) {
        // Bumping the sequence under the lock: a waiter that read the old
        // value before its attempt will not sleep or park its waker (see
        // `wait_until`, `poll_wait`).
        let wakers = {
            let mut w = relock(self.waiters.lock());
            w.seq += 1;
            std::mem::take(&mut w.wakers)
        };
        self.cvar.notify_all();
        // Outside the lock: a waker is the caller's executor's code.
        // A waker that panics is contained: the gate's state is already
        // consistent, and the caller may be a worker.
        for (_, waker) in wakers {
            let _ = crate::job::guard::call(|| waker.wake());
        }
    }

    /// A worker claimed jobs from a ring, inbox or overflow: the room it
    /// freed wakes the waiters, if any (see "Room that no release
    /// announces"). A fence and a load of a read-mostly word when none
    /// wait.
    #[inline]
    pub(crate) fn room_freed(&self) {
        // SeqCst fence: pairs with the waiter's fence in `register`; the
        // claim's stores come before it, the load of the count after.
        fence(Ordering::SeqCst);
        // Relaxed: the fences order it (module docs).
        if self.room_waiters.load(Ordering::Relaxed) != 0 {
            self.wake_waiters();
        }
    }

    /// Registers a waiter, before its first waiting attempt: it is counted
    /// in the word, so every release wakes it.
    fn register_waiter(&self) {
        // AcqRel: registers as a waiter, ordered against every `release` in
        // the word; see the module docs.
        let prev = self.word.fetch_add(WAITER, Ordering::AcqRel);
        debug_assert!(prev & WAITERS_MASK != WAITERS_MASK, "too many waiters");
    }

    fn deregister_waiter(&self) {
        // Relaxed: deregistering publishes nothing.
        self.word.fetch_sub(WAITER, Ordering::Relaxed);
    }

    /// Registers a waiter for room, after an attempt failed for want of it
    /// and before the next: every claim then wakes it.
    fn register_room(&self) {
        // Relaxed: ordered by the fence below.
        self.room_waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the fence in `room_freed`.
        fence(Ordering::SeqCst);
    }

    fn deregister_room(&self) {
        // Relaxed: deregistering publishes nothing.
        self.room_waiters.fetch_sub(1, Ordering::Relaxed);
    }

    fn seq(&self) -> u64 {
        relock(self.waiters.lock()).seq
    }

    /// Closes the gate: every later acquire is refused. Returns whether this
    /// call closed it (false if it was already closed).
    pub(crate) fn close(&self) -> bool {
        // AcqRel: ordered in the word against every acquire CAS.
        let prev = self.word.fetch_or(CLOSED, Ordering::AcqRel);
        if prev & WAITERS_MASK != 0 {
            self.wake_waiters();
        }
        prev & CLOSED == 0
    }

    /// Whether the gate is closed.
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire pairs with the AcqRel `fetch_or` of `close`.
        self.word.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Wakes every waiter to re-run its attempt: for a condition the
    /// waiters check that no release announces (shutdown's hurry flag).
    /// The caller changes the condition first; the bump under the lock
    /// then pairs with the waiter's read of the sequence before its
    /// attempt, so the waiter either sees the change or does not sleep.
    pub(crate) fn wake_all(&self) {
        self.wake_waiters();
    }

    /// Jobs currently held.
    pub(crate) fn held(&self) -> u64 {
        // Acquire pairs with the Release of `release`.
        self.word.load(Ordering::Acquire) & HELD_MASK
    }

    /// Blocks until `attempt(state)` succeeds, or `deadline` passes; then
    /// hands the state back. `attempt` is re-run after every release seen
    /// with a waiter registered, on close, and (once it has failed for
    /// [`Why::Room`]) after every claim. It runs without the gate's lock
    /// held, so it may itself acquire and release capacity.
    ///
    /// An eventcount: the mutex guards a wake sequence number. A waiter
    /// reads the sequence *before* its attempt and sleeps only while the
    /// sequence is unchanged, so a release that lands between the attempt
    /// and the sleep is never missed.
    ///
    /// With `poll`, a waiter also re-attempts after that long without a
    /// release: for room that no release announces (a ring a worker has
    /// popped). Under loom, `poll` is ignored: the models check the
    /// eventcount alone.
    pub(crate) fn wait_until<S, R>(
        &self,
        deadline: Option<Deadline>,
        poll: Option<Duration>,
        state: S,
        mut attempt: impl FnMut(S) -> Result<R, (S, Why)>,
    ) -> Result<R, S> {
        let poll = poll.filter(|_| !cfg!(quay_loom));
        let mut state = match attempt(state) {
            Ok(r) => return Ok(r),
            Err((s, _)) => s,
        };
        self.register_waiter();
        let mut room = false;
        let out = 'outer: loop {
            let seen = self.seq();
            state = match attempt(state) {
                Ok(r) => break Ok(r),
                Err((s, Why::Room)) if !room => {
                    // Registered for claims now: attempt once more first.
                    self.register_room();
                    room = true;
                    state = s;
                    continue;
                }
                Err((s, _)) => s,
            };
            // Here too, not only before a sleep: releases that keep coming
            // (and do not make the attempt succeed) must not keep a waiter
            // past its deadline.
            if deadline.is_some_and(|d| d.remaining().is_zero()) {
                break 'outer Err(state);
            }
            let mut guard = relock(self.waiters.lock());
            while guard.seq == seen {
                let left = match deadline {
                    None => None,
                    Some(d) => {
                        let left = d.remaining();
                        if left.is_zero() {
                            break 'outer Err(state);
                        }
                        Some(left)
                    }
                };
                let wait = match (left, poll) {
                    (Some(l), Some(p)) => Some(l.min(p)),
                    (l, p) => l.or(p),
                };
                guard = match wait {
                    None => relock(self.cvar.wait(guard)),
                    Some(w) => {
                        let (g, timed_out) = match self.cvar.wait_timeout(guard, w) {
                            Ok((g, t)) => (g, t.timed_out()),
                            Err(e) => {
                                let (g, t) = e.into_inner();
                                (g, t.timed_out())
                            }
                        };
                        if timed_out && poll.is_some_and(|p| w >= p) {
                            // The poll: attempt again.
                            break;
                        }
                        g
                    }
                };
            }
        };
        self.deregister_waiter();
        if room {
            self.deregister_room();
        }
        out
    }

    /// One poll of an async waiter: [`wait_until`](Gate::wait_until)'s
    /// loop, with the waker parked in the list instead of a sleep.
    /// `attempt` returns `Ok` on success, else what it waits for. Returns
    /// `Ready` with its success, or
    /// `Pending` with the waker parked: the next wake-up (a release, a
    /// claim, a close) wakes it. The caller keeps `wait` and, when it is
    /// dropped unfinished, calls [`abandon`](Gate::abandon).
    pub(crate) fn poll_wait<R>(
        &self,
        wait: &mut AsyncWait,
        waker: &Waker,
        mut attempt: impl FnMut() -> Result<R, Why>,
    ) -> std::task::Poll<R> {
        use std::task::Poll;
        if !wait.registered {
            // The first attempt, unregistered: the fast path.
            if let Ok(r) = attempt() {
                return Poll::Ready(r);
            }
            self.register_waiter();
            wait.registered = true;
        }
        loop {
            let seen = self.seq();
            match attempt() {
                Ok(r) => {
                    self.abandon(wait);
                    return Poll::Ready(r);
                }
                Err(Why::Room) if !wait.room => {
                    // Registered for claims now: attempt once more first.
                    self.register_room();
                    wait.room = true;
                    continue;
                }
                Err(_) => {}
            }
            let mut w = relock(self.waiters.lock());
            if w.seq != seen {
                // A wake-up since the attempt began: attempt again.
                continue;
            }
            // Parked until the next wake-up takes the list. A waker parked
            // by an earlier poll (and not yet taken) is replaced.
            if let Some(t) = wait.ticket {
                if let Some(slot) = w.wakers.iter_mut().find(|(k, _)| *k == t) {
                    if !slot.1.will_wake(waker) {
                        slot.1 = waker.clone();
                    }
                    return Poll::Pending;
                }
            }
            let t = w.next_ticket;
            w.next_ticket += 1;
            w.wakers.push((t, waker.clone()));
            wait.ticket = Some(t);
            return Poll::Pending;
        }
    }

    /// Undoes an async waiter's registration: it finished, or its future
    /// was dropped. Idempotent.
    pub(crate) fn abandon(&self, wait: &mut AsyncWait) {
        if let Some(t) = wait.ticket.take() {
            let waker = {
                let mut w = relock(self.waiters.lock());
                w.wakers
                    .iter()
                    .position(|(k, _)| *k == t)
                    .map(|i| w.wakers.swap_remove(i).1)
            };
            // Outside the lock: a waker's `Drop` is the executor's code.
            drop(waker);
        }
        if std::mem::take(&mut wait.registered) {
            self.deregister_waiter();
        }
        if std::mem::take(&mut wait.room) {
            self.deregister_room();
        }
    }
}
