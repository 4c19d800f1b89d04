//! Introspection and hooks: `status(id)` through each state, the
//! `on_complete` and `on_retry` hooks (and their panics), the DLQ by ID
//! (`take_dead`, `discard_dead`), a handler's `max_attempts` and
//! `is_last_attempt`, and the `seen_ids` gauge. Deterministic: the driver,
//! or an engine on a manual clock whose handler is held on a latch; every
//! wait is for a condition, never for time.

mod common;

use common::{wait_for, Latch};
use quay::{Driver, Engine, Job, JobError, JobStatus, ManualClock, Settled, Submitted};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(60);

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// What the engine tests' handler does with a job, by payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Signals that it started, waits on the latch, completes.
    Hold,
    Ok,
    Fatal,
}

/// A one-worker engine on `clock`, whose handler acts on its payload.
fn engine(clock: &ManualClock, latch: &Arc<Latch>, started: mpsc::Sender<u64>) -> Engine<Act> {
    let latch = latch.clone();
    let started = Mutex::new(started);
    Engine::<Act>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(64)
        .clock(clock.clone())
        .dedup_window(WINDOW)
        .build(move |ctx, act| match act {
            Act::Hold => {
                started
                    .lock()
                    .unwrap()
                    .send(ctx.id().as_u128() as u64)
                    .unwrap();
                latch.wait();
                Ok(())
            }
            Act::Ok => Ok(()),
            Act::Fatal => Err(JobError::fatal("no")),
        })
        .unwrap()
}

/// Waits until every accepted job is terminal and committed: an idle
/// engine's worker has recorded every ending in dedup before releasing it.
fn settle<T: Send + 'static>(e: &Engine<T>) {
    wait_for(|| e.counts().held == 0);
}

/// Waits until `held` is down to `n` (jobs still waiting, e.g. delayed).
fn settle_except<T: Send + 'static>(e: &Engine<T>, n: u64) {
    wait_for(|| e.counts().held == n);
}

#[test]
fn engine_status_goes_unknown_live_remembered_unknown() {
    let clock = ManualClock::new();
    let latch = Latch::new();
    let (tx, started) = mpsc::channel();
    let e = engine(&clock, &latch, tx);
    assert_eq!(e.status(1u64), JobStatus::Unknown);
    assert_eq!(
        e.try_submit(Job::new(1u64, Act::Hold)).unwrap(),
        Submitted::Accepted
    );
    // Running: the handler is held on the latch.
    assert_eq!(started.recv().unwrap(), 1);
    assert_eq!(e.status(1u64), JobStatus::Live);
    // Delayed: never due on a manual clock that is not advanced.
    e.try_submit(Job::new(2u64, Act::Ok).delay(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(e.status(2u64), JobStatus::Live);
    latch.open();
    wait_for(|| e.counts().completed == 1);
    settle_except(&e, 1);
    assert_eq!(e.status(1u64), JobStatus::Remembered);
    // The status agrees with what a resubmit would be told.
    assert_eq!(
        e.try_submit(Job::new(1u64, Act::Ok)).unwrap(),
        Submitted::Duplicate
    );
    clock.advance(WINDOW + Duration::from_secs(1));
    assert_eq!(e.status(1u64), JobStatus::Unknown, "past the window");
    // The delayed job is now due (the window outlasts its delay).
    settle(&e);
    assert_eq!(e.status(2u64), JobStatus::Remembered);
    let report = e.shutdown();
    assert!(report.counts.is_conserved(), "{:?}", report.counts);
}

#[test]
fn engine_dead_letters_by_id() {
    let clock = ManualClock::new();
    let (tx, _started) = mpsc::channel();
    let e = engine(&clock, &Latch::new(), tx);
    e.try_submit(Job::new(3u64, Act::Fatal)).unwrap();
    e.try_submit(Job::new(4u64, Act::Fatal)).unwrap();
    settle(&e);
    assert_eq!(e.status(3u64), JobStatus::DeadLetter);
    assert_eq!(e.status(4u64), JobStatus::DeadLetter);
    // take_dead hands the entry over; the dedup record stays.
    let dl = e.take_dead(3u64).expect("a dead letter with id 3");
    assert_eq!((dl.job.id(), *dl.job.payload()), (3u64.into(), Act::Fatal));
    assert_eq!(dl.last_error(), Some("fatal: no"));
    assert!(e.take_dead(3u64).is_none(), "taken already");
    assert_eq!(e.status(3u64), JobStatus::Remembered);
    assert_eq!(
        e.try_submit(Job::new(3u64, Act::Ok)).unwrap(),
        Submitted::Duplicate
    );
    // discard_dead drops it.
    assert!(!e.discard_dead(99u64), "no such dead letter");
    assert!(e.discard_dead(4u64));
    assert!(!e.discard_dead(4u64));
    assert_eq!(e.status(4u64), JobStatus::Remembered);
    assert!(e.dead_letters().is_empty());
    let report = e.shutdown();
    assert_eq!(report.counts.dead, 2);
    assert!(report.counts.is_conserved(), "{:?}", report.counts);
}

#[test]
fn driver_status_through_retry_completion_window_and_death() {
    let mut d = Engine::<u8>::builder()
        .dedup_window(WINDOW)
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .jitter(false)
        .driver()
        .unwrap();
    assert_eq!(d.status(1u64), JobStatus::Unknown);
    d.submit(Job::new(1u64, 0)).unwrap();
    assert_eq!(d.status(1u64), JobStatus::Live, "queued");
    let step = d.run_next(|_, _| Err(JobError::retry("later"))).unwrap();
    assert_eq!(step.settled, Settled::Retrying);
    assert_eq!(d.status(1u64), JobStatus::Live, "waiting to retry");
    d.advance(Duration::from_secs(1));
    d.run_next(|_, _| Ok(())).unwrap();
    assert_eq!(d.status(1u64), JobStatus::Remembered, "recorded at once");
    d.advance(WINDOW + Duration::from_secs(1));
    assert_eq!(d.status(1u64), JobStatus::Unknown, "past the window");
    // Death, then discard: the record outlives the dead letter.
    d.submit(Job::new(2u64, 0)).unwrap();
    d.run_next(|_, _| Err(JobError::fatal("no"))).unwrap();
    assert_eq!(d.status(2u64), JobStatus::DeadLetter);
    assert!(d.discard_dead(2u64));
    assert_eq!(d.status(2u64), JobStatus::Remembered);
}

#[test]
fn without_dedup_only_dead_letters_can_be_told() {
    let mut d = Engine::<u8>::builder().dedup(false).driver().unwrap();
    d.submit(Job::new(1u64, 0)).unwrap();
    assert_eq!(d.status(1u64), JobStatus::Unknown, "live, but dedup is off");
    d.run_next(|_, _| Err(JobError::fatal("no"))).unwrap();
    assert_eq!(d.status(1u64), JobStatus::DeadLetter);
    d.take_dead(1u64).unwrap();
    assert_eq!(d.status(1u64), JobStatus::Unknown);
}

/// What the hooks saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Complete {
        id: u64,
        attempt: u32,
    },
    Retry {
        id: u64,
        attempt: u32,
        err: String,
        delay: Duration,
    },
}

fn recording_driver(log: &Arc<Mutex<Vec<Seen>>>) -> Driver<u8> {
    let (c, r) = (log.clone(), log.clone());
    Engine::<u8>::builder()
        .max_attempts(nz(2))
        .backoff(Duration::from_millis(10), Duration::from_secs(1))
        .jitter(false)
        .on_complete(move |ctx| {
            c.lock().unwrap().push(Seen::Complete {
                id: ctx.id().as_u128() as u64,
                attempt: ctx.attempt(),
            })
        })
        .on_retry(move |ctx, err, delay| {
            r.lock().unwrap().push(Seen::Retry {
                id: ctx.id().as_u128() as u64,
                attempt: ctx.attempt(),
                err: err.to_string(),
                delay,
            })
        })
        .driver()
        .unwrap()
}

#[test]
fn driver_hooks_see_each_completion_and_retry_once() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut d = recording_driver(&log);
    d.submit(Job::new(1u64, 0)).unwrap();
    d.submit(Job::new(2u64, 0)).unwrap();
    assert!(log.lock().unwrap().is_empty(), "nothing ran yet");
    // Job 1 fails with the policy's backoff: 10 ms without jitter.
    d.run_next(|_, _| Err(JobError::retry("smtp"))).unwrap();
    assert_eq!(
        log.lock().unwrap().pop(),
        Some(Seen::Retry {
            id: 1,
            attempt: 1,
            err: "retry: smtp".into(),
            delay: Duration::from_millis(10),
        })
    );
    // Job 2 asks for its own delay, then dies on its last attempt: the
    // death goes to on_dead, not on_retry.
    d.run_next(|_, _| Err(JobError::RetryAfter(Duration::from_secs(3), "busy".into())))
        .unwrap();
    assert_eq!(
        log.lock().unwrap().pop(),
        Some(Seen::Retry {
            id: 2,
            attempt: 1,
            err: "retry after 3s: busy".into(),
            delay: Duration::from_secs(3),
        })
    );
    d.advance(Duration::from_millis(10));
    let step = d.run_next(|_, _| Ok(())).unwrap();
    assert_eq!((step.id, step.settled), (1u64.into(), Settled::Completed));
    assert_eq!(
        log.lock().unwrap().pop(),
        Some(Seen::Complete { id: 1, attempt: 2 })
    );
    d.advance(Duration::from_secs(3));
    let step = d.run_next(|_, _| Err(JobError::retry("again"))).unwrap();
    assert_eq!(step.settled, Settled::Dead);
    assert!(log.lock().unwrap().is_empty(), "a death is not a retry");
    assert_eq!(d.contained_panics(), 0);
}

#[test]
fn engine_hooks_see_each_completion_and_retry_once() {
    let completed = Arc::new(Mutex::new(Vec::new()));
    let retried = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (completed.clone(), retried.clone());
    let e = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .on_complete(move |ctx| c.lock().unwrap().push(ctx.id().as_u128() as u64))
        .on_retry(move |ctx, err, delay| {
            r.lock().unwrap().push((
                ctx.id().as_u128() as u64,
                ctx.attempt(),
                err.to_string(),
                delay,
            ))
        })
        .build(|ctx, n| {
            if *n == 7 && ctx.attempt() == 1 {
                return Err(JobError::RetryAfter(Duration::ZERO, "once".into()));
            }
            Ok(())
        })
        .unwrap();
    for n in 0..10u64 {
        e.submit(Job::new(n, n)).unwrap();
    }
    let report = e.shutdown();
    assert_eq!((report.counts.completed, report.counts.retried), (10, 1));
    let mut done = completed.lock().unwrap().clone();
    done.sort_unstable();
    assert_eq!(done, (0..10).collect::<Vec<u64>>(), "each completion once");
    assert_eq!(
        *retried.lock().unwrap(),
        vec![(7, 1, "retry after 0ns: once".to_string(), Duration::ZERO)]
    );
}

#[test]
fn panicking_hooks_are_contained_and_counted() {
    // The driver.
    let mut d = Engine::<u8>::builder()
        .on_complete(|_| panic!("on_complete"))
        .on_retry(|_, _, _| panic!("on_retry"))
        .driver()
        .unwrap();
    d.submit(Job::new(1u64, 0)).unwrap();
    let step = d.run_next(|_, _| Err(JobError::RetryAfter(Duration::ZERO, "x".into())));
    assert_eq!(step.unwrap().settled, Settled::Retrying, "the retry stands");
    assert_eq!(d.contained_panics(), 1);
    let step = d.run_next(|_, _| Ok(())).unwrap();
    assert_eq!(step.settled, Settled::Completed, "the completion stands");
    assert_eq!(d.contained_panics(), 2);
    let c = d.counts();
    assert_eq!((c.completed, c.retried, c.held), (1, 1, 0));
    assert!(c.is_conserved(), "{c:?}");
    // The engine: its worker survives, the accounting is unchanged.
    let e = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .on_complete(|_| panic!("on_complete"))
        .on_retry(|_, _, _| panic!("on_retry"))
        .build(|ctx, n| {
            if *n % 2 == 0 && ctx.attempt() == 1 {
                return Err(JobError::RetryAfter(Duration::ZERO, "once".into()));
            }
            Ok(())
        })
        .unwrap();
    for n in 0..6u64 {
        e.submit(Job::new(n, n)).unwrap();
    }
    settle(&e);
    assert_eq!(e.metrics().counters.contained_panics, 6 + 3);
    let report = e.shutdown();
    let c = report.counts;
    assert_eq!((c.completed, c.retried, c.dead, c.held), (6, 3, 0, 0));
    assert!(c.is_conserved(), "{c:?}");
}

/// A payload that counts its drops.
struct Counted(Arc<AtomicU64>, u8);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A payload whose `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("Bomb dropped");
    }
}

#[test]
fn driver_take_and_discard_dead_by_id() {
    let drops = Arc::new(AtomicU64::new(0));
    // Dedup off, so one ID can die twice: `take_dead` takes the newest.
    let mut d = Engine::<Counted>::builder().dedup(false).driver().unwrap();
    for v in [1, 2] {
        d.submit(Job::new(7u64, Counted(drops.clone(), v))).unwrap();
        d.run_next(|_, _| Err(JobError::fatal("no"))).unwrap();
    }
    assert!(d.take_dead(8u64).is_none());
    let newest = d.take_dead(7u64).unwrap();
    assert_eq!(newest.job.payload().1, 2);
    assert_eq!(drops.load(Ordering::Relaxed), 0, "handed back, not dropped");
    drop(newest);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    assert!(d.discard_dead(7u64), "the older one");
    assert_eq!(drops.load(Ordering::Relaxed), 2, "dropped by discard");
    assert!(!d.discard_dead(7u64));
    assert_eq!(d.contained_panics(), 0);

    // A payload whose Drop panics: discarded, contained and counted.
    let mut d = Engine::<Bomb>::builder().driver().unwrap();
    d.submit(Job::new(1u64, Bomb)).unwrap();
    d.run_next(|_, _| Err(JobError::fatal("no"))).unwrap();
    assert!(d.discard_dead(1u64));
    assert_eq!(d.contained_panics(), 1);
}

#[test]
fn handler_sees_its_attempt_limit() {
    let mut d = Engine::<u8>::builder()
        .max_attempts(nz(3))
        .backoff(Duration::ZERO, Duration::ZERO)
        .driver()
        .unwrap();
    d.submit(Job::new(1u64, 0)).unwrap();
    d.submit(Job::new(2u64, 0).max_attempts(nz(1))).unwrap();
    let mut seen = Vec::new();
    while let Some(_step) = d.run_next(|ctx, _| {
        let id = ctx.id().as_u128() as u64;
        seen.push((id, ctx.attempt(), ctx.max_attempts(), ctx.is_last_attempt()));
        Err(JobError::retry("x"))
    }) {}
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![
            (1, 1, 3, false),
            (1, 2, 3, false),
            (1, 3, 3, true),
            (2, 1, 1, true),
        ]
    );
    assert_eq!(d.counts().dead, 2);

    // The engine's handler sees the same.
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let e = Engine::<u8>::builder()
        .workers(1)
        .pin_workers(false)
        .max_attempts(nz(4))
        .build(move |ctx, _| {
            let m = (ctx.max_attempts(), ctx.is_last_attempt());
            tx.lock().unwrap().send(m).unwrap();
            Ok(())
        })
        .unwrap();
    e.submit(Job::new(1u64, 0)).unwrap();
    e.submit(Job::new(2u64, 0).max_attempts(nz(1))).unwrap();
    drop(e.shutdown());
    // Every attempt ran before shutdown returned.
    let mut got: Vec<(u32, bool)> = rx.try_iter().collect();
    got.sort_unstable();
    assert_eq!(got, vec![(1, true), (4, false)]);
}

#[test]
fn seen_ids_gauge_counts_live_and_finished_ids() {
    let clock = ManualClock::new();
    let latch = Latch::new();
    let (tx, started) = mpsc::channel();
    let e = engine(&clock, &latch, tx);
    assert_eq!(e.metrics().gauges.seen_ids, 0);
    e.submit(Job::new(100u64, Act::Hold)).unwrap();
    started.recv().unwrap();
    assert_eq!(e.metrics().gauges.seen_ids, 1, "a live ID");
    for n in 0..5u64 {
        e.submit(Job::new(n, Act::Ok)).unwrap();
    }
    // A duplicate adds nothing.
    assert_eq!(
        e.submit(Job::new(0u64, Act::Ok)).unwrap(),
        Submitted::Duplicate
    );
    assert_eq!(e.metrics().gauges.seen_ids, 6);
    latch.open();
    settle(&e);
    assert_eq!(
        e.metrics().gauges.seen_ids,
        6,
        "finished, within the window"
    );
    drop(e.shutdown());

    // With dedup off there is no set.
    let e = Engine::<u8>::builder()
        .workers(1)
        .pin_workers(false)
        .dedup(false)
        .build(|_, _| Ok(()))
        .unwrap();
    e.submit(Job::new(1u64, 0)).unwrap();
    settle(&e);
    assert_eq!(e.metrics().gauges.seen_ids, 0);
    drop(e.shutdown());
}
