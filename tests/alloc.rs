//! Zero heap allocations per job in the steady state, under a counting
//! global allocator. In its own test binary: the allocator is process-wide.

use quay::{Engine, IdleStrategy, Job};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to `System`, only counting allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run_and_count(idle: IdleStrategy, keyed: bool) -> u64 {
    const WARM: u64 = 200_000;
    const JOBS: u64 = 1_000_000;
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .capacity(4_096)
        .idle(idle)
        // Steady state for dedup: the seen-ID table has reached its bound
        // (here 8 192 finished IDs, passed during the warm-up); until then
        // it grows like any hash table.
        .dedup_capacity(8_192)
        .build(|_, n| {
            std::hint::black_box(n);
            Ok(())
        })
        .unwrap();
    let submit = |from: u64, to: u64| {
        for n in from..to {
            let job = Job::new(n, n);
            let job = if keyed { job.keyed(n % 64) } else { job };
            engine.submit(job).unwrap();
        }
        while engine.counts().held != 0 {
            std::thread::yield_now();
        }
    };
    submit(0, WARM);
    let before = ALLOCS.load(Ordering::Relaxed);
    submit(WARM, WARM + JOBS);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, WARM + JOBS);
    allocs
}

#[test]
fn no_allocation_per_job_in_the_steady_state() {
    // One test function: the counter is global, so tests in this binary
    // must not run concurrently.
    for (idle, keyed) in [
        (IdleStrategy::default(), false),
        (IdleStrategy::Park, false),
        (IdleStrategy::default(), true),
    ] {
        let allocs = run_and_count(idle, keyed);
        assert_eq!(
            allocs, 0,
            "{idle:?} keyed={keyed}: {allocs} allocations over 10^6 jobs"
        );
    }
}
