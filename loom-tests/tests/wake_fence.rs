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
//! - `a_batch_wakes_every_sleeper_it_has_work_for`: one `notify_many` for
//!   a pushed batch wakes both sleepers (one `notify` would not: see the
//!   model's docs).
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
            let a = idle.announce(0);
            if ring.pop().is_some() {
                idle.cancel(a);
                break;
            }
            idle.sleep(a);
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

/// Two workers going to sleep, and one producer pushing a batch of 16 jobs
/// to shard 0 with one `notify_many`: both workers must end up running
/// (each either sees the jobs in its re-check or is woken). With a single
/// `notify` (one wake-up for the whole batch) the second sleeper stays
/// parked behind a batch it could help with: run with `many == false`,
/// loom reports that deadlock (and then aborts while unwinding the three
/// model threads, which is why it is not kept as a `should_panic` test).
fn batch_model(name: &str, many: bool) {
    check(name, move || {
        let idle = Arc::new(Idle::new(2));
        let ring = Arc::new(Ring::<u64>::new(16));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (idle, ring) = (idle.clone(), ring.clone());
                thread::spawn(move || {
                    let a = idle.announce(w);
                    // The re-check: any job is work for this worker (a
                    // thief takes half of what it sees).
                    if ring.is_empty() {
                        idle.sleep(a);
                    } else {
                        idle.cancel(a);
                    }
                })
            })
            .collect();
        let mut batch: std::collections::VecDeque<u64> = (0..16).collect();
        assert_eq!(ring.push_batch(&mut batch), 16);
        if many {
            idle.notify_many(0, 16);
        } else {
            idle.notify(0);
        }
        for w in workers {
            w.join().unwrap();
        }
    });
}

#[test]
fn a_batch_wakes_every_sleeper_it_has_work_for() {
    batch_model("wake_fence::a_batch_wakes_every_sleeper", true);
}
