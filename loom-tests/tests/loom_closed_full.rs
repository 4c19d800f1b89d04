//! Loom model: a closed engine is never answered "full"
//! (`Shared::full_or_closed`, `src/runtime/shared.rs`).
//!
//! One parking worker holds job 0 in its handler, and jobs 1 and 2 fill its
//! ring of 2, so the next submit finds no room. Another thread closes the
//! engine and then raises a flag. The main thread reads the flag, then
//! submits (one job, then a batch): if the flag was up, the close happened
//! before the submit began, and the only true answer is `ShuttingDown`.
//! Before the fix the room check answered first, with a transient `Full`.
//! Whatever the interleaving, a refused job comes back and the counts are
//! conserved.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::{BatchOutcome, Job, SubmitError};

#[derive(Default)]
struct Latch {
    state: Mutex<(bool, bool)>, // (started, open)
    cv: Condvar,
}

#[test]
fn a_submit_after_close_is_shutting_down_even_when_full() {
    check(
        "loom_closed_full::a_submit_after_close_is_shutting_down_even_when_full",
        || {
            let latch = Arc::new(Latch::default());
            let l = latch.clone();
            let engine = Arc::new(parking_engine(1, 8, move |_, &n| {
                if n == 0 {
                    let mut s = l.state.lock().unwrap();
                    s.0 = true;
                    l.cv.notify_all();
                    while !s.1 {
                        s = l.cv.wait(s).unwrap();
                    }
                }
                Ok(())
            }));
            engine.try_submit(Job::new(0u64, 0)).unwrap();
            {
                let mut s = latch.state.lock().unwrap();
                while !s.0 {
                    s = latch.cv.wait(s).unwrap();
                }
            }
            for n in 1..=2u64 {
                engine.try_submit(Job::new(n, n)).unwrap();
            }
            let closed = Arc::new(AtomicBool::new(false));
            let (e, c) = (engine.clone(), closed.clone());
            let closer = thread::spawn(move || {
                e.close();
                // Release pairs with the Acquire load below.
                c.store(true, Ordering::Release);
            });
            let after_close = closed.load(Ordering::Acquire);
            match engine.try_submit(Job::new(3u64, 3)) {
                Err(SubmitError::ShuttingDown(job)) => assert_eq!(*job.payload(), 3),
                Err(SubmitError::Full(job)) => {
                    assert!(!after_close, "a closed engine answered Full");
                    assert_eq!(*job.payload(), 3);
                }
                other => panic!("{other:?}"),
            }
            let after_close = closed.load(Ordering::Acquire);
            let report = engine.submit_batch([Job::new(4u64, 4)]);
            assert_eq!(report.accepted, 0, "{report:?}");
            if after_close {
                assert_eq!(report.outcomes, [BatchOutcome::ShuttingDown]);
            }
            closer.join().unwrap();
            {
                let mut s = latch.state.lock().unwrap();
                s.1 = true;
                latch.cv.notify_all();
            }
            let c = engine.shutdown().counts;
            assert_eq!((c.accepted, c.completed, c.held), (3, 3, 0), "{c:?}");
            assert!(c.is_conserved(), "{c:?}");
        },
    );
}
