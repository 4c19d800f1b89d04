//! Loom models of the async waiters of the capacity gate
//! (`src/sync/capacity.rs`, "Waiters, blocking and async"), and of
//! `submit_async` through the public API.
//!
//! Each model awaits with `loom::future::block_on`, which parks the model
//! thread until its waker is woken: a lost wake-up leaves it parked with
//! nothing left to wake it, and loom reports the deadlock.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::__loom::{AsyncWait, Gate, Ring};
use quay::{Job, Submitted};

/// An async waiter on a full gate, and a release on another thread: the
/// release wakes the parked waker, or the waiter's attempt sees the room.
#[test]
fn async_waiter_wakes_on_release() {
    check("async_submit::async_waiter_wakes_on_release", || {
        let gate = Arc::new(Gate::new(1));
        assert!(gate.try_acquire());
        let g = gate.clone();
        let releaser = thread::spawn(move || g.release(1));
        let mut wait = AsyncWait::default();
        loom::future::block_on(std::future::poll_fn(|cx| {
            gate.poll_wait(&mut wait, cx.waker(), false, || {
                gate.try_acquire().then_some(())
            })
        }));
        releaser.join().unwrap();
        gate.abandon(&mut wait);
    });
}

/// Room that no release announces: a full ring, a gate with capacity, and
/// a worker that pops the ring and then calls `room_freed`. The waiter
/// registers, fences, and attempts the push; the worker fences and loads
/// the waiter count. Either the push sees the freed slot or the worker
/// sees the waiter. With either fence removed (or a plain load and no
/// fence in `room_freed`), this model deadlocks: the store-buffering
/// outcome where each side misses the other.
#[test]
fn async_submit_wakes_on_ring_room() {
    check("async_submit::async_submit_wakes_on_ring_room", || {
        let gate = Arc::new(Gate::new(100));
        // The smallest ring, full.
        let ring = Arc::new(Ring::<u64>::new(2));
        ring.push(1).unwrap();
        ring.push(2).unwrap();
        let (g, r) = (gate.clone(), ring.clone());
        let worker = thread::spawn(move || {
            let mut got = 0;
            r.pop_batch(1, |_| got += 1);
            assert_eq!(got, 1);
            g.room_freed();
        });
        let mut wait = AsyncWait::default();
        let mut job = Some(3u64);
        loom::future::block_on(std::future::poll_fn(|cx| {
            gate.poll_wait(&mut wait, cx.waker(), true, || {
                let v = job.take()?;
                match ring.push(v) {
                    Ok(()) => Some(()),
                    Err(v) => {
                        job = Some(v);
                        None
                    }
                }
            })
        }));
        worker.join().unwrap();
        gate.abandon(&mut wait);
        let mut left = Vec::new();
        ring.pop_batch(2, |v| left.push(v));
        assert_eq!(left, [2, 3]);
    });
}

/// `submit_async` into a full engine (one worker, room for one job, the
/// held job latched), awaited while the main thread opens the latch at any
/// point: the worker's release or its claim must wake the task.
#[test]
fn submit_async_into_full_engine() {
    check("async_submit::submit_async_into_full_engine", || {
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        let engine = parking_engine(1, 1, move |_, _| {
            while !o.load(Ordering::Acquire) {
                thread::yield_now();
            }
            Ok(())
        });
        assert!(matches!(
            engine.try_submit(Job::new(1u64, 1)),
            Ok(Submitted::Accepted)
        ));
        let submitter = engine.submitter();
        let waiter = thread::spawn(move || {
            let answer = loom::future::block_on(submitter.submit_async(Job::new(2u64, 2)));
            assert!(matches!(answer, Ok(Submitted::Accepted)), "{answer:?}");
        });
        // Release: the handler's Acquire spin reads it.
        open.store(true, Ordering::Release);
        waiter.join().unwrap();
        let c = engine.shutdown().counts;
        assert_eq!((c.accepted, c.completed, c.held), (2, 2, 0), "{c:?}");
        assert!(c.is_conserved(), "{c:?}");
    });
}
