//! Loom model: a stealable job is never left behind a full worker while
//! another worker sleeps (`src/sync/idle.rs`, `Asleep::Full`), with the
//! real `Idle` and the real `Ring` through the loom shim.
//!
//! Two workers. Worker 0 is full: its one slot holds an attempt whose
//! future is never woken, so it claims nothing, and its re-check looks only
//! at what is its alone (here a stop flag, in the engine its inbox and
//! timers). Worker 1 has room: it pops shard 0's ring, and finding nothing
//! announces, re-checks (a claim, as `Worker::sleep` does) and parks. The
//! producer pushes one unkeyed job to shard 0 (worker 0's) and runs the
//! wake check, then waits for worker 1 to have run it. If the wake-up goes
//! to worker 0, which takes it, claims nothing and sleeps again, worker 1
//! sleeps on and the producer waits for ever: loom reports the deadlock.
//!
//! - `a_stealable_job_goes_to_a_worker_that_can_take_it`: worker 0
//!   announces `Full` (`announce_full`, what the engine's worker does with
//!   no free slot). Passes.
//! - `every_sleeper_counted_loses_the_job`: the rule before the fix, where
//!   every sleeper counted as able to claim (worker 0 announces as if it had
//!   room). Must deadlock. Loom then aborts while unwinding the model's
//!   threads, so this runs in a child process (`old_rule_child`) and the
//!   test checks that the child reported the deadlock: the evidence that
//!   the model tells the two rules apart.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{assert_child_deadlocks, check, pop_or_sleep};
use quay::__loom::{Idle, Ring};

fn model(name: &str, full_announced: bool) {
    check(name, move || {
        let idle = Arc::new(Idle::new(2));
        let ring = Arc::new(Ring::<u64>::new(2));
        let stop = Arc::new(AtomicBool::new(false));

        // Worker 0, full: sleeps until stopped, claims nothing.
        let (i, s) = (idle.clone(), stop.clone());
        let full = thread::spawn(move || loop {
            let a = if full_announced {
                i.announce_full(0)
            } else {
                i.announce(0)
            };
            // Acquire pairs with the producer's Release store of `stop`.
            if s.load(Ordering::Acquire) {
                // A full worker is never handed a stealable job's wake-up;
                // under the old rule it may be, and has nothing to pass on
                // to (worker 1 is gone by then).
                let _ = i.cancel(a);
                break;
            }
            i.sleep(a);
        });

        // Worker 1, with room: the worker's loop (`Worker::run`, `sleep`).
        let (i, r) = (idle.clone(), ring.clone());
        let free = thread::spawn(move || pop_or_sleep(&i, &r, 1));

        assert!(ring.push(7).is_ok(), "an empty ring refused a push");
        idle.notify(0);
        free.join().unwrap();
        // Release pairs with worker 0's Acquire load.
        stop.store(true, Ordering::Release);
        idle.unpark_all();
        full.join().unwrap();
    });
}

#[test]
fn a_stealable_job_goes_to_a_worker_that_can_take_it() {
    model(
        "loom_wake_full::a_stealable_job_goes_to_a_worker_that_can_take_it",
        true,
    );
}

/// The old rule, on its own: deadlocks (loom aborts), so it is run by
/// `every_sleeper_counted_loses_the_job` in a child process.
#[test]
#[ignore = "run in a child process by every_sleeper_counted_loses_the_job"]
fn old_rule_child() {
    model("loom_wake_full::old_rule_child", false);
}

#[test]
fn every_sleeper_counted_loses_the_job() {
    assert_child_deadlocks("old_rule_child");
}
