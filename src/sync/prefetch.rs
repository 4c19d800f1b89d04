//! Software prefetch hints: start a cache miss early so it overlaps other
//! work. Hints only: they never change what the program computes, and they
//! compile to nothing under miri, loom, or on other architectures.

/// Starts loading the line holding `addr` for reading. The address is only
/// a number: it is never dereferenced, so it may be stale or unmapped.
#[inline(always)]
pub(crate) fn read(addr: usize) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(quay_loom)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 target has. A
        // prefetch reads nothing the program can observe and never faults,
        // even at an unmapped address (LLVM: "prefetches have no effect on
        // the behavior of the program"), so any address is sound.
        unsafe { _mm_prefetch(addr as *const i8, _MM_HINT_T0) }
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(quay_loom))))]
    let _ = addr;
}
