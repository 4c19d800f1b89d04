//! Loom models of the reliability protocols, through the public API:
//!
//! - a `Duplicate` answer while every ring is full (`src/overflow.rs`: the
//!   gate's claim is the place's reservation, so no ID is made live and
//!   then rolled back);
//! - grouped commits (capacity above 2: a worker records several endings,
//!   then releases their capacity with one RMW);
//! - a key's two jobs with a retry, on a `ManualClock`, under the default
//!   `SpinThenPark` with timed parks;
//! - `submit_batch` racing a `try_submit` for the last units;
//! - redrive racing a submit of the same ID;
//! - producers with different home shards;
//! - `shutdown_timeout` racing a submit.
//!
//! Under loom, time runs infinitely fast (`src/loom.rs`, `time`): a timed
//! park returns after a yield, a deadline has passed when first checked,
//! and nothing reads the wall clock, so every model replays the same way.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{accepted_unless_closed, check, parking_engine};
use quay::{
    BatchOutcome, Engine, IdleStrategy, Job, JobError, ManualClock, RedriveError, Submitted,
};
use std::num::NonZeroU32;
use std::time::Duration;

/// Spins (yielding to loom) until `flag` is set.
fn wait(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        thread::yield_now();
    }
}

/// One slot left (the only worker held in job 0's handler, one job in its
/// ring of 2); two threads submit ID 9. One is `Accepted`; the other is a
/// `Duplicate` of it, or `Full` (the slot gone) without touching dedup;
/// job 9 runs exactly once. Whichever submit reveals the ID, a place was
/// reserved for it first, so no reveal is ever rolled back.
#[test]
fn full_rings_same_id_twice() {
    check("reliability::full_rings_same_id_twice", || {
        let started = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicBool::new(false));
        let nines = Arc::new(AtomicUsize::new(0));
        let (s, o, n) = (started.clone(), open.clone(), nines.clone());
        let engine = parking_engine(1, 8, move |_, &job| {
            if job == 0 {
                s.store(true, Ordering::Release);
                wait(&o);
            }
            if job == 9 {
                n.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        engine.try_submit(Job::new(0u64, 0)).unwrap();
        wait(&started);
        engine.try_submit(Job::new(1u64, 1)).unwrap();
        let sub = engine.submitter();
        let other = thread::spawn(move || {
            sub.try_submit(Job::new(9u64, 9))
                .map_err(|e| format!("{e:?}"))
        });
        let mine = engine
            .try_submit(Job::new(9u64, 9))
            .map_err(|e| format!("{e:?}"));
        let theirs = other.join().unwrap();
        let mut got = [mine, theirs];
        got.sort_by_key(|r| format!("{r:?}"));
        // The first to look finds the last slot; the other is a duplicate,
        // or refused (the slot taken) without touching dedup.
        assert!(
            got == [Ok(Submitted::Accepted), Ok(Submitted::Duplicate)]
                || got == [Err("Full(JobId(0x9))".into()), Ok(Submitted::Accepted)],
            "{got:?}"
        );
        open.store(true, Ordering::Release);
        let c = engine.shutdown().counts;
        assert_eq!(
            nines.load(Ordering::Relaxed),
            1,
            "job 9 ran other than once"
        );
        assert_eq!((c.accepted, c.completed, c.held), (3, 3, 0), "{c:?}");
    });
}

/// Capacity 8 on one worker: it commits every 2 endings. Once the gate
/// reads nothing held, dedup knows every ending: a resubmit of each job is
/// a duplicate, whichever commit released it.
#[test]
fn grouped_commits_record_before_release() {
    check("reliability::grouped_commits_record_before_release", || {
        let engine = parking_engine(1, 8, |_, _| Ok(()));
        for j in [1u64, 2] {
            engine.try_submit(Job::new(j, j)).unwrap();
        }
        while engine.counts().held != 0 {
            thread::yield_now();
        }
        for j in [1u64, 2] {
            assert_eq!(
                engine.try_submit(Job::new(j, 0)).unwrap(),
                Submitted::Duplicate,
                "job {j} ended and was released, but dedup forgot it"
            );
        }
        let c = engine.shutdown().counts;
        assert_eq!((c.accepted, c.completed, c.duplicates), (2, 2, 2), "{c:?}");
    });
}

/// Two jobs of one key on a `ManualClock`, the default idle strategy: the
/// first fails once and waits in the timer (due at once: the clock stands
/// still). The second never starts before the first is terminal.
#[test]
fn keyed_retry_on_a_manual_clock() {
    check("reliability::keyed_retry_on_a_manual_clock", || {
        let log = Arc::new(loom::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        let engine = Engine::<u64>::builder()
            .workers(1)
            .pin_workers(false)
            .ring_capacity(2)
            .capacity(2)
            .clock(ManualClock::new())
            .build(move |ctx, &n| {
                l.lock().unwrap().push((n, ctx.attempt()));
                if n == 1 && ctx.attempt() == 1 {
                    return Err(JobError::RetryAfter(Duration::ZERO, "again".into()));
                }
                Ok(())
            })
            .unwrap();
        engine.try_submit(Job::new(1u64, 1).keyed(5u64)).unwrap();
        engine.try_submit(Job::new(2u64, 2).keyed(5u64)).unwrap();
        let c = engine.shutdown().counts;
        assert_eq!((c.completed, c.retried), (2, 1), "{c:?}");
        assert_eq!(*log.lock().unwrap(), [(1, 1), (1, 2), (2, 1)]);
    });
}

/// A delayed job on a `ManualClock` under the default `SpinThenPark`: the
/// worker parks with a timeout (its timer is pending) until the model
/// moves the clock; a timed park ends at once under loom, so this explores
/// the timed path with every interleaving of the clock's move.
#[test]
fn timed_park_until_a_delay_is_due() {
    check("reliability::timed_park_until_a_delay_is_due", || {
        let clock = ManualClock::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let engine = Engine::<u64>::builder()
            .workers(1)
            .pin_workers(false)
            .ring_capacity(2)
            .capacity(2)
            .clock(clock.clone())
            .build(move |_, _| {
                r.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        engine
            .try_submit(Job::new(1u64, 1).delay(Duration::from_secs(1)))
            .unwrap();
        clock.advance(Duration::from_secs(1));
        let c = engine.shutdown().counts;
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        assert_eq!((c.completed, c.held), (1, 0), "{c:?}");
    });
}

/// A batch of three and a single submit race for a gate with room for two
/// (the worker holds both until the model opens its latch). The batch's
/// refusals are a suffix, the report matches the counts, and every
/// accepted job runs.
#[test]
fn submit_batch_races_try_submit() {
    check("reliability::submit_batch_races_try_submit", || {
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        let engine = parking_engine(1, 2, move |_, _| {
            wait(&o);
            Ok(())
        });
        let sub = engine.submitter();
        let single = thread::spawn(move || sub.try_submit(Job::new(9u64, 9)).is_ok());
        let rep = engine.submit_batch((1..=3u64).map(|n| Job::new(n, n)));
        let single_ok = single.join().unwrap();
        let accepted = rep
            .outcomes
            .iter()
            .take_while(|o| **o == BatchOutcome::Accepted)
            .count();
        assert!(
            rep.outcomes[accepted..]
                .iter()
                .all(|o| *o == BatchOutcome::Full),
            "{:?}",
            rep.outcomes
        );
        assert_eq!(rep.accepted, accepted);
        assert_eq!(rep.refused.len(), 3 - accepted);
        assert_eq!(accepted + usize::from(single_ok), 2, "the gate had 2 units");
        open.store(true, Ordering::Release);
        let c = engine.shutdown().counts;
        assert_eq!((c.accepted, c.completed, c.held), (2, 2, 0), "{c:?}");
    });
}

/// A dead job's redrive races a client's submit of the same ID, with no
/// dedup window (a dead ID is forgotten at once). Either the redrive wins
/// (the submit is a duplicate of the live redriven job) or the submit does
/// (the redrive finds the ID live and leaves the dead letter in the DLQ).
/// The job never runs twice at once, and nothing is lost.
#[test]
fn redrive_races_submit() {
    check("reliability::redrive_races_submit", || {
        let attempts = Arc::new(AtomicUsize::new(0));
        let a = attempts.clone();
        let engine = Engine::<u64>::builder()
            .workers(1)
            .pin_workers(false)
            .idle(IdleStrategy::Park)
            .ring_capacity(2)
            .capacity(2)
            .max_attempts(NonZeroU32::new(1).unwrap())
            .dedup_window(Duration::ZERO)
            .build(move |_, _| {
                // Dies the first time only.
                if a.fetch_add(1, Ordering::Relaxed) == 0 {
                    return Err(JobError::fatal("no"));
                }
                Ok(())
            })
            .unwrap();
        engine.try_submit(Job::new(7u64, 7)).unwrap();
        while engine.counts().dead == 0 || engine.counts().held != 0 {
            thread::yield_now();
        }
        let sub = engine.submitter();
        let client = thread::spawn(move || sub.try_submit(Job::new(7u64, 7)).unwrap());
        let redrive = engine.redrive(7u64);
        let submitted = client.join().unwrap();
        let dead_letters = engine.drain_dead().len();
        match (redrive, submitted) {
            (Ok(()), Submitted::Duplicate) => assert_eq!(dead_letters, 0),
            (Err(RedriveError::Live), Submitted::Accepted) => assert_eq!(dead_letters, 1),
            // The client's job ran and ended before the redrive looked.
            (Ok(()), Submitted::Accepted) => assert_eq!(dead_letters, 0),
            other => panic!("{other:?}"),
        }
        let c = engine.shutdown().counts;
        assert!(c.is_conserved(), "{c:?}");
        assert_eq!(c.completed, c.accepted - 1, "{c:?}");
    });
}

/// Two workers; a producer whose home is shard 1 submits one unkeyed job
/// while both workers go to sleep. It runs exactly once (by its owner, or
/// stolen by worker 0).
#[test]
fn producer_on_another_home_shard() {
    check("reliability::producer_on_another_home_shard", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let engine = parking_engine(2, 2, move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        // The main thread is the producer (a third thread would multiply
        // the interleavings past what the bound can finish).
        quay::__loom::set_home(1);
        assert_eq!(
            engine.try_submit(Job::new(1u64, 1)).unwrap(),
            Submitted::Accepted
        );
        let c = engine.shutdown().counts;
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        assert_eq!((c.accepted, c.completed, c.held), (1, 1, 0), "{c:?}");
    });
}

/// `shutdown_timeout` (whose deadline passes at once under loom) races a
/// `try_submit`: the job is refused, or it ran, or it came back; never two
/// of these, never none.
#[test]
fn shutdown_timeout_races_try_submit() {
    check("reliability::shutdown_timeout_races_try_submit", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let engine = parking_engine(1, 2, move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let sub = engine.submitter();
        let producer =
            thread::spawn(move || accepted_unless_closed(sub.try_submit(Job::new(1u64, 1)), 1));
        let report = engine.shutdown_timeout(Duration::from_secs(3600));
        let accepted = producer.join().unwrap();
        let (runs, back) = (ran.load(Ordering::Relaxed), report.returned.len());
        if accepted {
            assert_eq!(runs + back, 1, "ran {runs}, returned {back}");
        } else {
            assert_eq!((runs, back), (0, 0));
        }
        assert!(report.counts.is_conserved(), "{:?}", report.counts);
    });
}
