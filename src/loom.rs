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
            pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
            pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

    /// Under loom every thread's home is shard 0: a model must replay the
    /// same way every iteration, which a process-wide counter would break.
    pub(crate) fn home_index() -> usize {
        0
    }
}

pub(crate) use imp::*;
