//! Loom model of an async handler's wake-up (`src/exec/wake.rs`): a worker
//! whose only attempt is pending goes to sleep, and another thread (an I/O
//! driver, a timer) completes the attempt's I/O and wakes its waker at any
//! point. The wake-up sets the slot's bit and notifies the worker through
//! the sleep protocol; a lost wake-up leaves the worker asleep with the
//! attempt pending, shutdown waits for it forever, and loom reports the
//! deadlock.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex, Notify};
use loom::thread;
use loom_tests::check;
use quay::{Engine, IdleStrategy, Job, JobError, Submitted};
use std::task::{Poll, Waker};

/// One pending I/O: the handler's future parks its waker here.
#[derive(Default)]
struct Io {
    done: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// Tells the driver a waker is parked (so it need not spin).
    parked: Notify,
}

#[test]
fn woken_attempt_reaches_a_sleeping_worker() {
    check(
        "async_handlers::woken_attempt_reaches_a_sleeping_worker",
        || {
            let io = Arc::new(Io::default());
            let i = io.clone();
            let engine = Engine::<u64>::builder()
                .workers(1)
                .pin_workers(false)
                .idle(IdleStrategy::Park)
                .ring_capacity(2)
                .capacity(2)
                .concurrency(1)
                .build_async(move |_, _| {
                    let io = i.clone();
                    std::future::poll_fn(move |cx| -> Poll<Result<(), JobError>> {
                        // Acquire pairs with the driver's Release store.
                        if io.done.load(Ordering::Acquire) {
                            return Poll::Ready(Ok(()));
                        }
                        let first = io.waker.lock().unwrap().replace(cx.waker().clone());
                        if first.is_none() {
                            io.parked.notify();
                        }
                        if io.done.load(Ordering::Acquire) {
                            Poll::Ready(Ok(()))
                        } else {
                            Poll::Pending
                        }
                    })
                })
                .expect("valid settings");
            assert!(matches!(
                engine.try_submit(Job::new(1u64, 1)),
                Ok(Submitted::Accepted)
            ));
            // The I/O driver: once the attempt has parked its waker, completes
            // the I/O and wakes it.
            let driver = thread::spawn(move || loop {
                // Loom's `Notify` may wake spuriously: wait until a waker is
                // really parked.
                io.parked.wait();
                let parked = io.waker.lock().unwrap().take();
                if let Some(w) = parked {
                    // Release pairs with the future's Acquire loads.
                    io.done.store(true, Ordering::Release);
                    w.wake();
                    return;
                }
            });
            driver.join().unwrap();
            let c = engine.shutdown().counts;
            assert_eq!((c.accepted, c.completed, c.held), (1, 1, 0), "{c:?}");
            assert!(c.is_conserved(), "{c:?}");
        },
    );
}
