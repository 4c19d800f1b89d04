//! Helpers shared by the integration tests.
#![allow(dead_code)]

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
