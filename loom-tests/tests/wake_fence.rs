//! The wake protocol's fences (`src/sync/idle.rs`), on their own: a worker
//! going to sleep and a producer pushing one job, with the real `Idle` and
//! the real `Ring` through the loom shim.
//!
//! The worker pops, and finding nothing announces, re-checks and parks. The
//! producer pushes, then runs the protocol's check. A lost wake-up leaves
//! the worker parked with the job in the ring and nothing left to wake it,
//! and loom reports the deadlock.
//!
//! - `fenced`: the real `notify` (a `SeqCst` fence, then a load). Passes:
//!   the fences are ordered, so either the re-check sees the push or the
//!   load sees the announce.
//! - `unfenced_loses_a_wake_up`: the same with a plain load and no fence
//!   (`notify_unfenced`). Must fail: loom finds the store-buffering outcome
//!   where the producer reads no sleeper and the worker's re-check reads no
//!   job. This is the evidence that the model can tell the two apart, so
//!   that `fenced` passing means something.
#![cfg(quay_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::check;
use quay::__loom::{Idle, Ring};

fn model(name: &str, fenced: bool) {
    check(name, move || {
        let idle = Arc::new(Idle::new(1));
        let ring = Arc::new(Ring::<u64>::new(2));
        let (i, r) = (idle.clone(), ring.clone());
        let producer = thread::spawn(move || {
            assert!(r.push(7).is_ok(), "an empty ring refused a push");
            if fenced {
                i.notify(0);
            } else {
                i.notify_unfenced(0);
            }
        });
        // The worker's loop (`Worker::run` and `Worker::sleep`).
        loop {
            if ring.pop().is_some() {
                break;
            }
            idle.announce(0);
            if ring.pop().is_some() {
                idle.cancel(0);
                break;
            }
            idle.sleep(0);
        }
        producer.join().unwrap();
    });
}

#[test]
fn fenced() {
    model("wake_fence::fenced", true);
}

#[test]
#[should_panic(expected = "deadlock")]
fn unfenced_loses_a_wake_up() {
    model("wake_fence::unfenced_loses_a_wake_up", false);
}
