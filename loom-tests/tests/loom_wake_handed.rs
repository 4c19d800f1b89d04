//! Loom model: a wake-up handed to a worker whose re-check found other work
//! is passed on (`Idle::cancel` says `Handed::Yes`, then `Idle::pass_on`;
//! `src/sync/idle.rs` and `Worker::sleep`), with the real `Idle` and `Ring`
//! through the loom shim.
//!
//! Two workers. Worker 0 goes to sleep; the producer gives it job A, which
//! is its alone (a keyed job: its inbox, here a flag, with the owner's
//! wake check), then pushes job B, stealable, to shard 0's ring with the
//! unkeyed wake check, which hands worker 0 the wake-up (owner first).
//! Worker 0's re-check finds A. Worker 1 sleeps with room. A and B can only
//! finish together (each waits in its handler until the other runs), so B
//! must reach worker 1: if worker 0 keeps the handed wake-up while it runs
//! A, worker 1 sleeps on and loom reports the deadlock.
//!
//! Worker 0 may also be woken by the owner's unpark for A and find the
//! wake-up for B handed to it as it withdraws (`Idle::sleep` says so): then
//! it passes it on after its next claim, as `Worker::run` does.
//!
//! - `a_handed_wake_up_is_passed_on`: worker 0 passes it on. Passes.
//! - `a_kept_wake_up_loses_the_job`: worker 0 ignores what `cancel` and
//!   `sleep` say.
//!   Must deadlock; loom then aborts, so it runs in a child process
//!   (`kept_child`) and the test checks that the child reported the
//!   deadlock.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{assert_child_deadlocks, check, pop_or_sleep, Meet};
use quay::__loom::{Idle, Ring};

fn model(name: &str, pass_on: bool) {
    check(name, move || {
        let idle = Arc::new(Idle::new(2));
        let ring = Arc::new(Ring::<u64>::new(2));
        let inbox = Arc::new(AtomicBool::new(false));
        let meet = Arc::new(Meet::default());

        // Worker 0: its re-check finds job A, which is its alone.
        let (i, r, a, m) = (idle.clone(), ring.clone(), inbox.clone(), meet.clone());
        let owner = thread::spawn(move || {
            let has_work = |s: usize| s == 0 && !r.is_empty();
            // Takes A. A compare-exchange, not a swap: loom lets a plain
            // store fall between a swap's read and write
            // (tokio-rs/loom#254), which would lose A in the model alone.
            // Acquire pairs with the producer's Release store of A.
            let take_a = || {
                a.compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            };
            let mut handed = false;
            loop {
                // The loop's claim.
                let found = take_a();
                // A wake-up handed in the last sleep is passed on after
                // a claim that took work (`Worker::run`).
                if std::mem::take(&mut handed) && found && pass_on {
                    i.pass_on(0, has_work);
                }
                if found {
                    break;
                }
                let t = i.announce(0);
                if take_a() {
                    if i.cancel(t) && pass_on {
                        i.pass_on(0, has_work);
                    }
                    break;
                }
                handed = i.sleep(t);
            }
            m.run();
        });

        // Worker 1, with room: pops shard 0's ring.
        let (i, r, m) = (idle.clone(), ring.clone(), meet.clone());
        let thief = thread::spawn(move || {
            pop_or_sleep(&i, &r, 1);
            m.run();
        });

        // Release pairs with worker 0's Acquire compare-exchange.
        inbox.store(true, Ordering::Release);
        idle.notify_owner(0);
        assert!(ring.push(7).is_ok(), "an empty ring refused a push");
        idle.notify(0);
        owner.join().unwrap();
        thief.join().unwrap();
    });
}

#[test]
fn a_handed_wake_up_is_passed_on() {
    model("loom_wake_handed::a_handed_wake_up_is_passed_on", true);
}

/// The wake-up kept, on its own: deadlocks (loom aborts), so it is run by
/// `a_kept_wake_up_loses_the_job` in a child process.
#[test]
#[ignore = "run in a child process by a_kept_wake_up_loses_the_job"]
fn kept_child() {
    model("loom_wake_handed::kept_child", false);
}

#[test]
fn a_kept_wake_up_loses_the_job() {
    assert_child_deadlocks("kept_child");
}
