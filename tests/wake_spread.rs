//! Wake-ups that follow the work (`docs/design.md`, "The wake follows the
//! work" and "The wake protocol"), against the public API: a batch onto
//! sleeping workers spreads over all of them, and a wake-up handed to a
//! busy worker is passed on once, not round the idle workers.
//!
//! Each test forces its condition (handlers that can only finish together,
//! a blocked owner, a redriven keyed job in its overflow) and bounds every
//! wait with a watchdog; no timing is asserted.

mod common;

use common::{key_owned_by, wait_for, wait_parked, within, Latch};
use quay::{Engine, IdleStrategy, Job, JobError};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// 6. A batch pushed onto a sleeping engine spreads over its workers: the
///    worker woken for it claims only its share (a ring's jobs over the
///    workers), and what it leaves wakes the next. Each job waits (bounded)
///    until a job is running on every worker at once: if any worker
///    claimed more than one of `workers` jobs, that never happens.
fn a_batch_spreads_over(workers: usize, jobs: u64) {
    let running = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let gave_up = Arc::new(AtomicBool::new(false));
    let (r, o, g) = (running.clone(), overlapped.clone(), gave_up.clone());
    let ran_on = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let w = ran_on.clone();
    let engine = Engine::<u64>::builder()
        .workers(workers)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .build(move |ctx, _| {
            w.lock().unwrap().insert(ctx.worker());
            r.fetch_add(1, Ordering::SeqCst);
            // Bounded: after 10 s without every worker running, the test
            // has failed; the rest of the jobs then end at once.
            for _ in 0..10_000 {
                if r.load(Ordering::SeqCst) >= workers {
                    o.store(true, Ordering::SeqCst);
                }
                if o.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            g.store(true, Ordering::SeqCst);
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    wait_parked(&engine, workers as u64);
    let report = engine.submit_batch((0..jobs).map(|n| Job::new(n, n)));
    assert_eq!(report.accepted, jobs as usize);
    let c = within("the batch's jobs run", move || engine.shutdown().counts);
    assert_eq!(c.completed, jobs, "{c:?}");
    assert!(
        overlapped.load(Ordering::SeqCst),
        "FAIL: {workers} workers never all ran the batch's jobs at once (one claimed more than its share while another slept)"
    );
    assert_eq!(
        ran_on.lock().unwrap().len(),
        workers,
        "every worker ran jobs"
    );
}

#[test]
fn a_batch_onto_a_sleeping_engine_runs_on_both_workers() {
    a_batch_spreads_over(2, 8);
}

/// Four workers, four jobs: every claim may take one job only. (A claim of
/// half the ring took two, and the fourth worker slept.)
#[test]
fn a_batch_onto_four_sleeping_workers_runs_on_all_four() {
    a_batch_spreads_over(4, 4);
}

/// A wake-up handed to a worker for a stealable job is passed on only by a
/// worker that took work. Worker 0 is blocked in a keyed job, its inbox is
/// full of keyed jobs, and a redriven keyed dead letter waits in its
/// overflow (redrive places without a room check): jobs no other worker
/// may take. One unkeyed submit then hands a sleeper a wake-up. A worker
/// that passed it on whenever the overflow was not empty, work taken or
/// not, woke the next idle worker for jobs it could not take, which passed
/// it on again, round the five idle workers for as long as worker 0 was
/// busy: tens of thousands of parks a second. The count of parks after the
/// job ran is bounded by a few per worker, not by time.
#[test]
fn a_handed_wake_up_is_not_passed_round_the_idle_workers() {
    const WORKERS: usize = 6;
    let latch = Latch::new();
    let l = latch.clone();
    let k0 = key_owned_by(WORKERS, 0);
    let engine = Engine::<u64>::builder()
        .workers(WORKERS)
        .pin_workers(false)
        .ring_capacity(4)
        .idle(IdleStrategy::Park)
        .max_attempts(NonZeroU32::new(1).unwrap())
        .build(move |_, &p| match p {
            1 => {
                l.wait();
                Ok(())
            }
            2 => Err(JobError::fatal("dead letter to redrive")),
            _ => Ok(()),
        })
        .unwrap();
    engine.submit(Job::new(50u64, 2).keyed(k0)).unwrap();
    wait_for(|| engine.metrics().counters.dead == 1);
    // Worker 0 blocks on a keyed job; then its inbox fills with keyed jobs.
    engine.submit(Job::new(1u64, 1).keyed(k0)).unwrap();
    wait_for(|| engine.metrics().counters.started == 2);
    let mut queued = 0u64;
    while queued < 100
        && engine
            .try_submit(Job::new(100 + queued, 0).keyed(k0))
            .is_ok()
    {
        queued += 1;
    }
    assert!(queued < 100, "the inbox never filled");
    engine.redrive(50u64).unwrap();
    wait_parked(&engine, WORKERS as u64 - 1);
    let before = engine.metrics().counters.parks;
    // One unkeyed job: a producer hands a sleeping worker its wake-up.
    engine.submit(Job::new(9_999u64, 0)).unwrap();
    wait_for(|| engine.metrics().counters.completed == 1);
    // Settled: the park count stops moving (with the loop it did not for
    // as long as worker 0 was held: `wait_parked` then fails).
    let engine = within("the idle workers settle", move || {
        wait_parked(&engine, 0);
        engine
    });
    let parks = engine.metrics().counters.parks - before;
    latch.open();
    let c = within("shutdown", move || engine.shutdown().counts);
    assert!(c.is_conserved(), "{c:?}");
    assert!(
        parks <= 4 * WORKERS as u64,
        "FAIL: {parks} parks after one unkeyed job while worker 0 was blocked (a pass-on loop)"
    );
}
