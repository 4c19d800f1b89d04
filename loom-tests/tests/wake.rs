//! Loom models of the sleep/wake protocol (`src/idle.rs`, the worker's
//! `sleep` in `src/worker.rs`) running in the whole engine: real workers on
//! loom threads with `IdleStrategy::Park`, a ring of 2, capacity 2.
//!
//! A job is submitted while the worker is anywhere between "found nothing"
//! and "parked". Then `shutdown()` (graceful) waits on the gate until no job
//! is held, and only after that wakes the workers. So a lost wake-up (a job
//! in a ring while every worker that may run it sleeps) leaves the main
//! thread waiting for a release that never comes: loom reports a deadlock.
//! Every model also checks that the job ran exactly once and that the
//! report's counts are conserved.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::{Engine, Job, Submitted};

/// An engine of `workers` parking workers, ring 2, capacity 2, whose handler
/// adds one to `ran[worker]`.
fn engine(workers: usize, ran: &Arc<Vec<AtomicUsize>>) -> Engine<u64> {
    let ran = ran.clone();
    parking_engine(workers, 2, move |ctx, _| {
        ran[ctx.worker()].fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

fn counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

/// Shuts down gracefully and checks that the one job ran exactly once.
/// Returns which worker ran it.
fn shutdown_and_check(engine: Engine<u64>, ran: &[AtomicUsize]) -> usize {
    let report = engine.shutdown();
    let runs: Vec<usize> = ran.iter().map(|r| r.load(Ordering::Relaxed)).collect();
    assert_eq!(runs.iter().sum::<usize>(), 1, "the job ran {runs:?} times");
    assert!(
        report.returned.is_empty(),
        "graceful shutdown returned a job"
    );
    let c = report.counts;
    assert_eq!((c.accepted, c.completed, c.held), (1, 1, 0), "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
    runs.iter().position(|&r| r == 1).unwrap_or(usize::MAX)
}

/// One worker; a producer thread submits one unkeyed job while the worker
/// goes to sleep.
#[test]
fn one_worker_unkeyed() {
    check("wake::one_worker_unkeyed", || {
        let ran = counters(1);
        let engine = engine(1, &ran);
        let submitter = engine.submitter();
        let producer = thread::spawn(move || submitter.try_submit(Job::new(1u64, 1)).is_ok());
        assert!(
            producer.join().unwrap(),
            "a job was refused by an empty engine"
        );
        shutdown_and_check(engine, &ran);
    });
}

/// One worker; a keyed job goes to the owner's inbox, and `notify` must
/// wake the owner.
#[test]
fn one_worker_keyed() {
    check("wake::one_worker_keyed", || {
        let ran = counters(1);
        let engine = engine(1, &ran);
        let submitter = engine.submitter();
        let producer = thread::spawn(move || {
            submitter
                .try_submit(Job::new(1u64, 1).keyed(7u64))
                .map_err(|e| format!("{e:?}"))
        });
        assert_eq!(producer.join().unwrap(), Ok(Submitted::Accepted));
        shutdown_and_check(engine, &ran);
    });
}

/// Two workers; the main thread submits one unkeyed job, which lands in
/// shard 0's ring (under loom every thread's home shard is 0). Worker 0 runs
/// it, or worker 1 steals it: whichever is woken (the owner if it is asleep,
/// else another sleeper) or is still awake must find it. Across all
/// interleavings both must happen.
#[test]
fn two_workers_owner_or_thief() {
    use std::sync::atomic::{AtomicUsize as StdUsize, Ordering as StdOrdering};
    static BY: [StdUsize; 2] = [StdUsize::new(0), StdUsize::new(0)];
    check("wake::two_workers_owner_or_thief", || {
        let ran = counters(2);
        let engine = engine(2, &ran);
        assert_eq!(
            engine
                .try_submit(Job::new(1u64, 1))
                .map_err(|e| format!("{e:?}")),
            Ok(Submitted::Accepted)
        );
        let w = shutdown_and_check(engine, &ran);
        BY[w].fetch_add(1, StdOrdering::Relaxed);
    });
    let by = [
        BY[0].load(StdOrdering::Relaxed),
        BY[1].load(StdOrdering::Relaxed),
    ];
    assert!(
        by[0] > 0 && by[1] > 0,
        "the model never had the job run by the owner and by the thief: {by:?}"
    );
}

/// Two workers; a keyed job goes to its key's owner's inbox, which no other
/// worker may take: `notify` must wake the owner even while another worker
/// is awake (or about to sleep). Key 7 is owned by shard 1, while the
/// producer's home shard is 0. The same worker, the owner, must run it in
/// every interleaving.
#[test]
fn two_workers_keyed_owner_only() {
    use std::sync::atomic::{AtomicUsize as StdUsize, Ordering as StdOrdering};
    static OWNER: StdUsize = StdUsize::new(usize::MAX);
    check("wake::two_workers_keyed_owner_only", || {
        let ran = counters(2);
        let engine = engine(2, &ran);
        assert_eq!(
            engine
                .try_submit(Job::new(1u64, 1).keyed(7u64))
                .map_err(|e| format!("{e:?}")),
            Ok(Submitted::Accepted)
        );
        let w = shutdown_and_check(engine, &ran);
        let owner =
            match OWNER.compare_exchange(usize::MAX, w, StdOrdering::Relaxed, StdOrdering::Relaxed)
            {
                Ok(_) => w,
                Err(owner) => owner,
            };
        assert_eq!(
            w, owner,
            "keyed job ran on worker {w}, and on {owner} in another run"
        );
    });
}
