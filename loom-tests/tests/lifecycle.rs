//! Loom models of the lifecycle through a shared reference:
//!
//! - `shutdown_now` in one thread hurries a graceful `shutdown` waiting in
//!   another: the hurry flag and the gate's wake-up (an eventcount bump
//!   under its mutex) must not be lost between the waiter's check and its
//!   sleep. The job is delayed on a `ManualClock` that never moves, so
//!   without the hurry the graceful shutdown would wait for ever (loom then
//!   reports a deadlock).
//! - `close` from another thread races a `try_submit`: the job is refused
//!   with `ShuttingDown`, or accepted and then run; never both, never
//!   neither.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{accepted_unless_closed, check, parking_engine};
use quay::{Engine, IdleStrategy, Job, ManualClock};
use std::time::Duration;

#[test]
fn shutdown_now_hurries_a_graceful_shutdown() {
    check(
        "lifecycle::shutdown_now_hurries_a_graceful_shutdown",
        || {
            let engine = Arc::new(
                Engine::<u64>::builder()
                    .workers(1)
                    .pin_workers(false)
                    .idle(IdleStrategy::Park)
                    .ring_capacity(2)
                    .capacity(2)
                    .clock(ManualClock::new())
                    .build(|_, _| Ok(()))
                    .unwrap(),
            );
            engine
                .try_submit(Job::new(1u64, 1).delay(Duration::from_secs(1)))
                .unwrap();
            let e = engine.clone();
            let now = thread::spawn(move || e.shutdown_now().returned.len());
            let graceful = engine.shutdown().returned.len();
            let hurried = now.join().unwrap();
            // Whichever joined the workers returns the job; the other none.
            assert_eq!(graceful + hurried, 1, "{graceful} + {hurried}");
            let c = engine.counts();
            assert_eq!(
                (c.accepted, c.completed, c.returned, c.held),
                (1, 0, 1, 0),
                "{c:?}"
            );
        },
    );
}

#[test]
fn close_races_try_submit() {
    check("lifecycle::close_races_try_submit", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let engine = Arc::new(parking_engine(1, 2, move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }));
        let e = engine.clone();
        let closer = thread::spawn(move || e.close());
        let accepted = accepted_unless_closed(engine.try_submit(Job::new(1u64, 1)), 1);
        assert!(closer.join().unwrap());
        assert!(engine.is_closed());
        let report = engine.shutdown();
        assert!(report.returned.is_empty());
        assert_eq!(ran.load(Ordering::Relaxed), usize::from(accepted));
        assert!(report.counts.is_conserved(), "{:?}", report.counts);
    });
}
