//! The [`Parker`]: how one worker thread sleeps and is woken.
//!
//! A token-based parker in the style of `std::thread::park`: an `unpark`
//! that comes before the `park` leaves a token, and the `park` then returns
//! at once, so a wake-up is never lost between "decided to sleep" and
//! "asleep". Built on the shim's `Mutex` and `Condvar` so loom can model it.
//!
//! # States and orderings
//!
//! `state` is `EMPTY`, `PARKED` or `NOTIFIED`.
//! - `unpark` swaps in `NOTIFIED` with `Release`; it pairs with the `Acquire`
//!   of the parking thread's CAS/swap that consumes the token, so whatever the
//!   waker did before `unpark` is visible after `park` returns.
//! - The `PARKED` transition is made under the mutex, and `unpark` takes the
//!   mutex before notifying, so the notification cannot slip in between the
//!   sleeper's check and its wait.

use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::loom::time::Deadline;
use std::time::Duration;

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

/// One thread's sleep and wake-up.
#[derive(Debug)]
pub struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
}

impl Default for Parker {
    fn default() -> Parker {
        Parker::new()
    }
}

impl Parker {
    /// A parker with no token.
    pub fn new() -> Parker {
        Parker {
            state: AtomicUsize::new(EMPTY),
            lock: Mutex::new(()),
            cvar: Condvar::new(),
        }
    }

    /// Sleeps until [`Parker::unpark`] is called, or `timeout` passes (then
    /// returns `false`). Returns at once if a token is waiting. Spurious
    /// returns are possible; callers re-check their condition.
    pub fn park(&self, timeout: Option<Duration>) -> bool {
        // Acquire pairs with the Release swap in `unpark`.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        let mut guard = relock(self.lock.lock());
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {}
            Err(_) => {
                // NOTIFIED arrived meanwhile (no one else parks here).
                // Acquire pairs with the Release swap in `unpark`.
                self.state.swap(EMPTY, Ordering::Acquire);
                return true;
            }
        }
        // A timeout too long for the OS clock is no timeout.
        let deadline = timeout.and_then(Deadline::after);
        loop {
            guard = match deadline {
                None => relock(self.cvar.wait(guard)),
                Some(d) => {
                    let left = d.remaining();
                    if left.is_zero() {
                        // Acquire pairs with `unpark`; a token that raced
                        // with the timeout is consumed, not lost.
                        let was = self.state.swap(EMPTY, Ordering::Acquire);
                        drop(guard);
                        // Under loom a timeout fires at once (see the
                        // shim's `time`): let the other threads run.
                        crate::loom::hint::spin_loop();
                        return was == NOTIFIED;
                    }
                    relock(
                        self.cvar
                            .wait_timeout(guard, left)
                            .map(|(g, _)| g)
                            .map_err(|e| {
                                let (g, _) = e.into_inner();
                                std::sync::PoisonError::new(g)
                            }),
                    )
                }
            };
            // Acquire pairs with the Release swap in `unpark`.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Wakes the parked thread, or leaves a token for its next `park`.
    /// Returns `false` if a token was already waiting: this call added
    /// nothing, the thread was woken already.
    pub fn unpark(&self) -> bool {
        // Release pairs with the Acquire that consumes the token in `park`.
        match self.state.swap(NOTIFIED, Ordering::Release) {
            NOTIFIED => false,
            EMPTY => true,
            _ => {
                // The sleeper set PARKED under the lock; taking the lock here
                // means it is now inside `wait`, so the notify reaches it.
                let _g: MutexGuard<'_, ()> = relock(self.lock.lock());
                drop(_g);
                self.cvar.notify_one();
                true
            }
        }
    }
}
