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

use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::{Condvar, Mutex};
use crate::loom::time::Deadline;
use crossbeam_utils::CachePadded;
use std::time::Duration;

const HELD_BITS: u32 = 40;
const HELD_MASK: u64 = (1 << HELD_BITS) - 1;
const WAITER: u64 = 1 << HELD_BITS;
const WAITERS_MASK: u64 = ((1 << 23) - 1) << HELD_BITS;
const CLOSED: u64 = 1 << 63;

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
    /// Wake sequence number: bumped by every wake-up (an eventcount).
    seq: Mutex<u64>,
    cvar: Condvar,
}

impl Gate {
    /// `limit` is at most `BuildError::MAX_CAPACITY` (checked by the builder).
    pub(crate) fn new(limit: u64) -> Gate {
        Gate {
            word: CachePadded::new(AtomicU64::new(0)),
            limit: limit.min(HELD_MASK),
            seq: Mutex::new(0),
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
        // value before its attempt will not sleep (see `wait_until`).
        *relock(self.seq.lock()) += 1;
        self.cvar.notify_all();
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
    /// with a waiter registered, and on close. It runs without the gate's
    /// lock held, so it may itself acquire and release capacity.
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
        mut attempt: impl FnMut(S) -> Result<R, S>,
    ) -> Result<R, S> {
        let poll = poll.filter(|_| !cfg!(quay_loom));
        let mut state = match attempt(state) {
            Ok(r) => return Ok(r),
            Err(s) => s,
        };
        // AcqRel: registers as a waiter, ordered against every `release` in
        // the word; see the module docs.
        let prev = self.word.fetch_add(WAITER, Ordering::AcqRel);
        debug_assert!(prev & WAITERS_MASK != WAITERS_MASK, "too many waiters");
        let out = 'outer: loop {
            let seen = *relock(self.seq.lock());
            state = match attempt(state) {
                Ok(r) => break Ok(r),
                Err(s) => s,
            };
            // Here too, not only before a sleep: releases that keep coming
            // (and do not make the attempt succeed) must not keep a waiter
            // past its deadline.
            if deadline.is_some_and(|d| d.remaining().is_zero()) {
                break 'outer Err(state);
            }
            let mut guard = relock(self.seq.lock());
            while *guard == seen {
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
        // Relaxed: deregistering publishes nothing.
        self.word.fetch_sub(WAITER, Ordering::Relaxed);
        out
    }
}
