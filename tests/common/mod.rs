//! Helpers shared by the integration tests.
#![allow(dead_code)]

use quay::{Engine, Job};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Polls `done` until it holds. Bounded by the harness's own timeout; no
/// timing is asserted.
pub fn wait_for(mut done: impl FnMut() -> bool) {
    while !done() {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A handler gate: jobs block in `wait` until the test calls `open`.
pub struct Latch(Mutex<bool>, Condvar);

impl Latch {
    pub fn new() -> Arc<Latch> {
        Arc::new(Latch(Mutex::new(false), Condvar::new()))
    }

    pub fn wait(&self) {
        let mut open = self.0.lock().unwrap();
        while !*open {
            open = self.1.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }
}

/// One unpinned worker whose handler holds every job at the returned latch
/// until the test opens it; rings of `ring`, room for `capacity` jobs.
pub fn held_engine(ring: usize, capacity: u64) -> (Engine<u64>, Arc<Latch>) {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(ring)
        .capacity(capacity)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    (engine, latch)
}

/// How long a watchdog waits before it calls a wait a hang.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on a thread of its own and waits for its answer, failing the
/// test as a hang after [`WATCHDOG`].
pub fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(r) => r,
        Err(_) => panic!("FAIL {what}: still waiting after {WATCHDOG:?} (a hang)"),
    }
}

/// Waits until the engine's park count has stopped moving (every worker
/// has parked for good): no timing is asserted, it only makes the
/// condition "the workers sleep" hold before the step that needs it.
pub fn wait_parked<T: Send + 'static>(engine: &Engine<T>, at_least: u64) {
    let mut last = engine.metrics().counters.parks;
    let mut still = 0;
    for _ in 0..20_000 {
        std::thread::sleep(Duration::from_millis(1));
        let now = engine.metrics().counters.parks;
        if now >= at_least && now == last {
            still += 1;
            if still >= 20 {
                return;
            }
        } else {
            still = 0;
        }
        last = now;
    }
    panic!("the workers never settled into sleep");
}

/// A key whose owner, in an engine of `workers` workers, is `worker`:
/// found by running keyed jobs (a keyed job runs on its owner).
pub fn key_owned_by(workers: usize, worker: usize) -> u64 {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let probe = Engine::<u64>::builder()
        .workers(workers)
        .pin_workers(false)
        .build(move |ctx, &k| {
            let _ = tx.lock().unwrap().send((k, ctx.worker()));
            Ok(())
        })
        .unwrap();
    for k in 0..64u64 {
        probe.submit(Job::new(k, k).keyed(k)).unwrap();
    }
    let found = (0..64)
        .filter_map(|_| rx.recv_timeout(WATCHDOG).ok())
        .find(|&(_, w)| w == worker)
        .map(|(k, _)| k);
    probe.shutdown();
    found.expect("no key among 64 is owned by the worker")
}
