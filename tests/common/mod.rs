//! Helpers shared by the integration tests.
#![allow(dead_code)]

use quay::Engine;
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
