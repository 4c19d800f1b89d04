//! The sync shim: the one place quay's concurrent code gets its atomics,
//! cells, locks, thread primitives and spin hints from.
//!
//! Normally these are `std`'s. Under `--cfg quay_loom` they are loom's, so the
//! loom models in `loom-tests/` explore every interleaving of the very code the
//! engine runs. The cfg has a crate-specific name so that it never switches
//! loom on inside a dependency (plain `cfg(loom)` would).
//!
//! `UnsafeCell` follows loom's closure API (`with` / `with_mut`) in both
//! worlds, so every access to shared memory is visible to loom's checker.

#[cfg(not(quay_loom))]
mod imp {
    pub(crate) mod sync {
        pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

        pub(crate) mod atomic {
            pub(crate) use std::sync::atomic::{
                fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod cell {
        /// `std::cell::UnsafeCell` behind loom's closure API.
        #[derive(Debug)]
        pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

        impl<T> UnsafeCell<T> {
            pub(crate) const fn new(data: T) -> UnsafeCell<T> {
                UnsafeCell(std::cell::UnsafeCell::new(data))
            }

            #[inline(always)]
            pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
                f(self.0.get())
            }

            #[inline(always)]
            pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
                f(self.0.get())
            }
        }
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{yield_now, Builder, JoinHandle};
    }

    pub(crate) mod hint {
        pub(crate) use std::hint::spin_loop;
    }

    pub(crate) mod time {
        use std::time::{Duration, Instant};

        /// A point in wall-clock time that bounds a wait.
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct Deadline(Instant);

        impl Deadline {
            /// `d` from now; `None` (no deadline) if that is past what the
            /// OS clock can represent.
            pub(crate) fn after(d: Duration) -> Option<Deadline> {
                Instant::now().checked_add(d).map(Deadline)
            }

            /// The time left; zero once passed.
            pub(crate) fn remaining(&self) -> Duration {
                self.0.saturating_duration_since(Instant::now())
            }
        }

        /// How long a worker has been idle.
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct Stopwatch(Instant);

        impl Stopwatch {
            pub(crate) fn start() -> Stopwatch {
                Stopwatch(Instant::now())
            }

            pub(crate) fn elapsed(&self) -> Duration {
                self.0.elapsed()
            }
        }
    }

    std::thread_local! {
        /// The engine whose worker this thread is (its `Shared`'s address),
        /// or 0.
        static WORKER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Marks this thread as a worker of engine `id` (for its life).
    pub(crate) fn set_worker_of(id: usize) {
        WORKER_OF.with(|w| w.set(id));
    }

    /// Whether this thread is a worker of engine `id`.
    pub(crate) fn is_worker_of(id: usize) -> bool {
        WORKER_OF.with(|w| w.get() == id)
    }

    /// Whether this thread is a worker of any engine.
    pub(crate) fn is_any_worker() -> bool {
        WORKER_OF.with(|w| w.get() != 0)
    }

    /// A small number fixed per thread, handed out round-robin: a
    /// producer's home shard is this modulo the shard count.
    #[inline]
    pub(crate) fn home_index() -> usize {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local! {
            static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        HOME.with(|h| {
            let v = h.get();
            if v != usize::MAX {
                return v;
            }
            // Relaxed: only uniqueness matters, not order.
            let v = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            h.set(v);
            v
        })
    }
}

#[cfg(quay_loom)]
mod imp {
    pub(crate) mod sync {
        pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

        pub(crate) mod atomic {
            pub(crate) use loom::sync::atomic::{
                fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering,
            };
        }
    }

    pub(crate) mod cell {
        pub(crate) use loom::cell::UnsafeCell;
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{yield_now, Builder, JoinHandle};
    }

    pub(crate) mod hint {
        /// Under loom a spin is a yield, so that spinning threads let the
        /// model make progress.
        pub(crate) fn spin_loop() {
            loom::thread::yield_now();
        }
    }

    pub(crate) mod time {
        use std::time::Duration;

        /// Under loom, time runs infinitely fast: every deadline has passed
        /// by the time it is checked, and every stopwatch reads "forever".
        /// So no model reads the wall clock (loom would see different
        /// branches on replay and abort), and each timed wait is explored
        /// as the timeout firing at once, its worst case: a timed park
        /// returns after a yield, a submit's or shutdown's deadline passes
        /// at the first check, an idle worker parks (and publishes) at once.
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct Deadline;

        impl Deadline {
            pub(crate) fn after(_: Duration) -> Option<Deadline> {
                Some(Deadline)
            }

            pub(crate) fn remaining(&self) -> Duration {
                Duration::ZERO
            }
        }

        #[derive(Clone, Copy, Debug)]
        pub(crate) struct Stopwatch;

        impl Stopwatch {
            pub(crate) fn start() -> Stopwatch {
                Stopwatch
            }

            pub(crate) fn elapsed(&self) -> Duration {
                Duration::MAX
            }
        }
    }

    loom::thread_local! {
        static WORKER_OF: std::cell::Cell<usize> = std::cell::Cell::new(0);
        static HOME: std::cell::Cell<usize> = std::cell::Cell::new(0);
    }

    pub(crate) fn set_worker_of(id: usize) {
        WORKER_OF.with(|w| w.set(id));
    }

    pub(crate) fn is_worker_of(id: usize) -> bool {
        WORKER_OF.with(|w| w.get() == id)
    }

    pub(crate) fn is_any_worker() -> bool {
        WORKER_OF.with(|w| w.get() != 0)
    }

    /// Under loom a thread's home is 0 unless a model sets it with
    /// [`set_home`]: a model must replay the same way every iteration,
    /// which a process-wide counter would break.
    pub(crate) fn home_index() -> usize {
        HOME.with(|h| h.get())
    }

    /// Sets this (loom) thread's home index, for models of producers with
    /// different home shards.
    pub(crate) fn set_home(i: usize) {
        HOME.with(|h| h.set(i));
    }
}

pub(crate) use imp::*;

/// The guard of a lock, poisoned or not: a poisoned lock still guards valid
/// state, so take it rather than panic. quay's own code does not panic
/// while it holds a lock, and the one call into user code under one (a
/// payload's `Clone` in a DLQ snapshot) only reads: a panic there leaves the
/// queue as it was. Works for std's locks and loom's alike.
pub(crate) fn relock<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}
