//! Containment of panics from user code.
//!
//! quay calls user code in a handful of places: the handler, the payload's
//! `Drop` (when a job completes, is a duplicate, is pushed out of a full
//! DLQ, or is discarded from it), the `on_dead`, `on_complete` and
//! `on_retry` hooks, and the iterator given to `submit_batch`.
//! Every such call on a worker thread goes through this file, so that a
//! panic there is an event to count, never the death of a worker (which
//! would take its capacity, its private jobs and its inbox with it). A
//! panic's payload is user data too: its own `Drop` may panic, and is
//! contained the same way.
//!
//! The iterator of `submit_batch` runs on the caller's thread; there a
//! panic unwinds to the caller as usual, and a drop guard in `batch.rs`
//! gives back the capacity the batch had claimed.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `Err` with the panic's message.
#[inline]
pub(crate) fn call<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Ok(r),
        Err(p) => {
            let msg = message(&*p);
            drop_payload(p);
            Err(msg)
        }
    }
}

/// Drops `v` (user data: its `Drop` is user code). Returns whether that
/// panicked; the panic goes no further.
#[inline]
pub(crate) fn drop_value<V>(v: V) -> bool {
    call(move || drop(v)).is_err()
}

/// Drops a panic's payload; a payload whose own `Drop` panics is leaked
/// rather than allowed to unwind further.
fn drop_payload(p: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(p))) {
        std::mem::forget(again);
    }
}

/// The message of a panic payload, as `panic!` formats it.
fn message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_string()
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb");
        }
    }

    #[test]
    fn a_panicking_drop_is_contained_and_reported() {
        assert!(drop_value(Bomb));
        assert!(!drop_value(String::from("fine")));
    }

    #[test]
    fn a_panic_whose_payload_panics_on_drop_is_contained() {
        let r = call(|| std::panic::panic_any(Bomb));
        assert_eq!(r, Err("panicked".to_string()));
        assert_eq!(call(|| panic!("x {}", 1)), Err::<(), _>("x 1".to_string()));
    }
}
