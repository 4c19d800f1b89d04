//! Panics from user code other than the handler: a payload's `Drop`, the
//! `on_dead` hook, the iterator given to `submit_batch`. None may kill a
//! worker, leak capacity or hang shutdown; each is counted.

mod common;

use common::wait_for;
use quay::{BatchOutcome, Engine, Job, JobError, Submitted};
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A payload whose `Drop` panics when armed.
struct Bomb {
    n: u64,
    armed: bool,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            panic!("payload {} panics in Drop", self.n);
        }
    }
}

fn bomb(n: u64, armed: bool) -> Job<Bomb> {
    Job::new(n, Bomb { n, armed })
}

/// An engine of one worker whose handler counts the jobs it completes and
/// fails (fatally) the ones numbered 1000 and up.
fn engine(ran: &Arc<AtomicU64>, dlq: usize) -> Engine<Bomb> {
    let r = ran.clone();
    Engine::<Bomb>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(1_000)
        .dlq_capacity(dlq)
        .build(move |_, b| {
            if b.n >= 1000 {
                return Err(JobError::fatal("dies"));
            }
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap()
}

/// Shuts down with a generous deadline (a dead worker would otherwise hang
/// a graceful shutdown) and checks nothing was left behind.
fn finish(engine: Engine<Bomb>, completed: u64) {
    let report = engine.shutdown_timeout(Duration::from_secs(60));
    let c = report.counts;
    assert!(report.returned.is_empty(), "jobs came back: {c:?}");
    assert_eq!((c.completed, c.held), (completed, 0), "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
}

#[test]
fn a_payload_drop_panic_after_completion_does_not_kill_the_worker() {
    let ran = Arc::new(AtomicU64::new(0));
    let engine = engine(&ran, 10);
    engine.submit(bomb(1, true)).unwrap();
    engine.submit(bomb(2, false)).unwrap();
    wait_for(|| ran.load(Ordering::Relaxed) == 2);
    wait_for(|| engine.counts().held == 0);
    assert_eq!(engine.metrics().counters.contained_panics, 1);
    finish(engine, 2);
}

#[test]
fn a_duplicates_payload_drop_panic_is_contained() {
    let ran = Arc::new(AtomicU64::new(0));
    let engine = engine(&ran, 10);
    engine.submit(bomb(1, false)).unwrap();
    // The repeat's payload is dropped by the engine: on the caller's
    // thread, behind a guard.
    assert!(matches!(
        engine.try_submit(bomb(1, true)),
        Ok(Submitted::Duplicate)
    ));
    let rep = engine.submit_batch([bomb(2, false), bomb(2, true), bomb(3, false)]);
    use BatchOutcome::*;
    assert_eq!(rep.outcomes, vec![Accepted, Duplicate, Accepted]);
    wait_for(|| engine.counts().held == 0);
    assert_eq!(engine.metrics().counters.contained_panics, 2);
    finish(engine, 3);
}

#[test]
fn a_dead_letter_pushed_out_of_a_full_dlq_may_panic_in_drop() {
    let ran = Arc::new(AtomicU64::new(0));
    let engine = engine(&ran, 1);
    engine.submit(bomb(1000, true)).unwrap();
    wait_for(|| engine.metrics().gauges.dead_letters == 1);
    // Pushes the armed one out of the DLQ (capacity 1).
    engine.submit(bomb(1001, false)).unwrap();
    engine.submit(bomb(3, false)).unwrap();
    wait_for(|| ran.load(Ordering::Relaxed) == 1);
    wait_for(|| engine.counts().held == 0);
    let c = engine.metrics().counters;
    assert_eq!((c.dead, c.dlq_dropped, c.contained_panics), (2, 1, 1));
    finish(engine, 1);
}

#[test]
fn a_panicking_on_dead_hook_is_contained() {
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .max_attempts(NonZeroU32::new(1).unwrap())
        .on_dead(|_| panic!("the hook panics"))
        .build(move |_, &n| {
            if n == 0 {
                return Err(JobError::fatal("dies"));
            }
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(0u64, 0)).unwrap();
    engine.submit(Job::new(1u64, 1)).unwrap();
    wait_for(|| ran.load(Ordering::Relaxed) == 1 && engine.counts().held == 0);
    let c = engine.metrics().counters;
    assert_eq!((c.dead, c.contained_panics), (1, 1));
    assert_eq!(engine.dead_letters().len(), 1, "the dead letter is kept");
    let report = engine.shutdown();
    assert!(report.counts.is_conserved());
}

#[test]
fn a_panicking_batch_iterator_gives_back_its_capacity() {
    let ran = Arc::new(AtomicU64::new(0));
    let engine = engine(&ran, 10);
    // The iterator claims the whole capacity (its size hint), yields ten
    // jobs, then panics.
    struct Yields(u64);
    impl Iterator for Yields {
        type Item = Job<Bomb>;
        fn next(&mut self) -> Option<Job<Bomb>> {
            self.0 += 1;
            if self.0 > 10 {
                panic!("the iterator panics");
            }
            Some(bomb(self.0, false))
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (5_000, None)
        }
    }
    let r = catch_unwind(AssertUnwindSafe(|| engine.submit_batch(Yields(0))));
    assert!(r.is_err(), "the panic reaches the caller");
    // The ten jobs yielded before the panic were submitted and run; no
    // capacity stays claimed.
    wait_for(|| ran.load(Ordering::Relaxed) == 10);
    wait_for(|| engine.counts().held == 0);
    assert!(matches!(
        engine.submit_timeout(bomb(11, false), Duration::from_secs(30)),
        Ok(Submitted::Accepted)
    ));
    finish(engine, 11);
}
