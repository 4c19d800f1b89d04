//! Loom models of the token [`Parker`] (`src/park.rs`).
//!
//! A lost wake-up shows as a deadlock: the parked main thread waits on the
//! condvar forever while every other thread has finished, and loom fails the
//! model. A missing Acquire/Release pair shows as a causality violation on
//! the `UnsafeCell` the waker writes before `unpark` and the sleeper reads
//! after `park` returns.
#![cfg(quay_loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::check;
use quay::__loom::Parker;
use std::time::Duration;

struct Shared {
    parker: Parker,
    /// Written by the waker before `unpark`, read by the sleeper after
    /// `park`: plain memory, ordered only by the parker.
    data: UnsafeCell<usize>,
}

// SAFETY: `data` is written by the one waker before its `unpark` and read
// by the sleeper after `park` returns; the model checks exactly that order.
unsafe impl Sync for Shared {}

/// `unpark` racing with `park`: before it (a token is left and `park`
/// returns at once), between the sleeper's check and its wait, or while it
/// waits. `park(None)` must return every time, and the waker's write must
/// be visible when it does.
#[test]
fn unpark_races_park() {
    check("park::unpark_races_park", || {
        let s = Arc::new(Shared {
            parker: Parker::new(),
            data: UnsafeCell::new(0),
        });
        let w = s.clone();
        let waker = thread::spawn(move || {
            // SAFETY: the sleeper reads only after `park` returns.
            w.data.with_mut(|p| unsafe { *p = 42 });
            w.parker.unpark();
        });
        assert!(s.parker.park(None), "park(None) returned without a token");
        // SAFETY: the token was consumed: the waker's write happens-before.
        assert_eq!(s.data.with(|p| unsafe { *p }), 42);
        waker.join().unwrap();
    });
}

/// Two wakers, a sleeper that parks until it has seen both increments.
/// Tokens do not count (two unparks before a park leave one token), so the
/// sleeper re-checks its condition after every `park`, as the engine does;
/// whatever the interleaving, it must not sleep through the last unpark.
#[test]
fn two_wakers_no_lost_wakeup() {
    check("park::two_wakers_no_lost_wakeup", || {
        let parker = Arc::new(Parker::new());
        let count = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (p, c) = (parker.clone(), count.clone());
                thread::spawn(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                    p.unpark();
                })
            })
            .collect();
        let mut parks = 0;
        while count.load(Ordering::Relaxed) < 2 {
            parker.park(None);
            parks += 1;
            assert!(parks <= 2, "more parks returned than unparks were made");
        }
        for w in wakers {
            w.join().unwrap();
        }
    });
}

/// A park that times out at once (zero timeout) racing with `unpark`: the
/// token is either consumed by it (`true`) or left for the next park, which
/// must then return at once. A token swallowed by the timeout path would
/// leave the second `park(None)` asleep forever.
#[test]
fn timeout_does_not_swallow_token() {
    check("park::timeout_does_not_swallow_token", || {
        let parker = Arc::new(Parker::new());
        let p = parker.clone();
        let waker = thread::spawn(move || p.unpark());
        if !parker.park(Some(Duration::ZERO)) {
            assert!(parker.park(None));
        }
        waker.join().unwrap();
    });
}
