//! The lifecycle through a shared reference: `close` from another thread,
//! `wait_idle`, `shutdown(&self)` twice, `shutdown_now` hurrying a graceful
//! shutdown, a shutdown called inside a handler, and a bounded `Drop`.

mod common;

use common::Latch;
use quay::{Engine, Job, ManualClock, SubmitError, Submitted};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

fn held_engine() -> (Arc<Engine<u64>>, Arc<Latch>, Arc<AtomicU64>) {
    let latch = Latch::new();
    let started = Arc::new(AtomicU64::new(0));
    let (l, s) = (latch.clone(), started.clone());
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, _| {
            s.fetch_add(1, Ordering::SeqCst);
            l.wait();
            Ok(())
        })
        .unwrap();
    (Arc::new(engine), latch, started)
}

#[test]
fn close_from_another_thread_refuses_new_jobs_and_drains_the_rest() {
    let (engine, latch, started) = held_engine();
    for i in 0..5u64 {
        engine.submit(Job::new(i, i)).unwrap();
    }
    common::wait_for(|| started.load(Ordering::SeqCst) == 1);
    let e = engine.clone();
    // A signal handler's thread, say: it has only a shared reference.
    let closed_here = std::thread::spawn(move || e.close()).join().unwrap();
    assert!(closed_here);
    assert!(engine.is_closed());
    assert!(!engine.close(), "already closed");
    match engine.try_submit(Job::new(99u64, 99)) {
        Err(SubmitError::ShuttingDown(job)) => assert_eq!(*job.payload(), 99),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    match engine.submit(Job::new(100u64, 100)) {
        Err(SubmitError::ShuttingDown(job)) => assert_eq!(*job.payload(), 100),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    // Closed, the held jobs still run.
    latch.open();
    assert!(engine.wait_idle(Duration::from_secs(60)));
    let report = engine.shutdown();
    assert_eq!(report.counts.accepted, 5);
    assert_eq!(report.counts.completed, 5);
    assert!(report.returned.is_empty());
    assert!(report.counts.is_conserved());
}

#[test]
fn wait_idle_times_out_while_a_job_is_held_and_returns_once_idle() {
    let (engine, latch, started) = held_engine();
    engine.submit(Job::new(1u64, 1)).unwrap();
    common::wait_for(|| started.load(Ordering::SeqCst) == 1);
    assert!(!engine.wait_idle(Duration::ZERO));
    assert!(!engine.wait_idle(Duration::from_millis(1)));
    latch.open();
    assert!(engine.wait_idle(Duration::from_secs(60)));
    assert_eq!(engine.counts().held, 0);
    drop(engine.shutdown());
}

#[test]
fn a_second_shutdown_reports_no_jobs_and_the_final_counts() {
    let (engine, latch, _) = held_engine();
    for i in 0..3u64 {
        engine.submit(Job::new(i, i)).unwrap();
    }
    latch.open();
    let first = engine.shutdown();
    let second = engine.shutdown();
    assert_eq!(first.counts.completed, 3);
    assert!(second.returned.is_empty());
    assert_eq!(second.counts, first.counts);
    assert!(second.counts.is_conserved());
}

#[test]
fn shutdown_now_cuts_short_a_graceful_shutdown_in_another_thread() {
    // A job delayed on a manual clock that never moves: a graceful
    // shutdown waits for it for ever unless `shutdown_now` hurries it.
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .clock(ManualClock::new())
        .build(|_, _| Ok(()))
        .unwrap();
    engine
        .submit(Job::new(1u64, 1).delay(Duration::from_secs(3)))
        .unwrap();
    let (graceful, now) = std::thread::scope(|s| {
        let graceful = s.spawn(|| engine.shutdown());
        common::wait_for(|| engine.is_closed());
        let now = s.spawn(|| engine.shutdown_now());
        (graceful.join().unwrap(), now.join().unwrap())
    });
    // Whichever joined the workers returns the job; the other none.
    assert_eq!(graceful.returned.len() + now.returned.len(), 1);
    let c = engine.counts();
    assert_eq!((c.accepted, c.completed, c.returned, c.held), (1, 0, 1, 0));
    assert!(c.is_conserved());
}

#[test]
fn a_shutdown_inside_a_handler_closes_and_returns_at_once() {
    let cell: Arc<OnceLock<Arc<Engine<u64>>>> = Arc::new(OnceLock::new());
    let answer = Arc::new(Mutex::new(None));
    let (c, a) = (cell.clone(), answer.clone());
    let engine = Arc::new(
        Engine::<u64>::builder()
            .workers(1)
            .pin_workers(false)
            .build(move |_, &n| {
                if n == 0 {
                    let me = c.get().expect("set before the first submit");
                    let report = me.shutdown();
                    *a.lock().unwrap() = Some((report.returned.len(), me.is_closed()));
                }
                Ok(())
            })
            .unwrap(),
    );
    assert!(cell.set(engine.clone()).is_ok());
    assert_eq!(
        engine.submit(Job::new(0u64, 0)).unwrap(),
        Submitted::Accepted
    );
    common::wait_for(|| answer.lock().unwrap().is_some());
    assert_eq!(*answer.lock().unwrap(), Some((0, true)));
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 1);
    assert!(report.counts.is_conserved());
    // The engine holds itself through the handler's cell; the test's
    // clones are all that remain to drop.
}

/// Counts drops of its payload.
struct Tracked(Arc<AtomicU64>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn drop_does_not_wait_for_jobs_that_are_not_due() {
    let ran = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    // The manual clock never moves: the delayed job is never due, nor the
    // job behind it on its key. Before `Drop` was bounded, dropping this
    // engine waited for them for ever.
    let clock = ManualClock::new();
    let engine = Engine::<Tracked>::builder()
        .workers(1)
        .pin_workers(false)
        .clock(clock.clone())
        .build(move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    for i in 0..10u64 {
        engine
            .submit(Job::new(i, Tracked(dropped.clone())))
            .unwrap();
    }
    engine
        .submit(
            Job::new(100u64, Tracked(dropped.clone()))
                .keyed(7u64)
                .delay(Duration::from_secs(3)),
        )
        .unwrap();
    // Due, but behind the delayed job on key 7.
    engine
        .submit(Job::new(101u64, Tracked(dropped.clone())).keyed(7u64))
        .unwrap();
    // The due jobs run before the drop here, so that nothing below depends
    // on how fast they run (the drop itself waits for due jobs for at most
    // `DROP_GRACE` of wall-clock time).
    common::wait_for(|| ran.load(Ordering::SeqCst) == 10);
    drop(engine);
    assert_eq!(ran.load(Ordering::SeqCst), 10, "neither key-7 job ran");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        12,
        "every payload dropped once"
    );
}

#[test]
fn an_engine_dropped_by_its_own_handler_finishes_in_a_thread_of_its_own() {
    let cell: Arc<Mutex<Option<Engine<u64>>>> = Arc::new(Mutex::new(None));
    let ran = Arc::new(AtomicU64::new(0));
    let (c, r) = (cell.clone(), ran.clone());
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, &n| {
            r.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                // The last owner lets go inside a handler: the worker
                // cannot join itself.
                drop(c.lock().unwrap().take());
            }
            Ok(())
        })
        .unwrap();
    let sub = engine.submitter();
    *cell.lock().unwrap() = Some(engine);
    sub.submit(Job::new(0u64, 0)).unwrap();
    // The drop happens on the worker; the job that triggered it ends, and
    // the engine's own thread joins the worker. Nothing hangs or panics.
    common::wait_for(|| cell.lock().unwrap().is_none() && ran.load(Ordering::SeqCst) == 1);
}
