//! Reliability under backpressure, blocking submits, slow handlers and
//! redrive: each test forces the condition it checks (a worker held on a
//! latch, a full engine), and fails on the code before the fix it guards.

mod common;

use common::{wait_for, Latch};
use quay::{
    BatchOutcome, Engine, IdleStrategy, Job, JobError, RedriveError, SubmitError, Submitted,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// One unpinned worker whose handler holds every job at the returned latch
/// until the test opens it; rings of `ring`, room for `capacity` jobs.
fn held_engine(ring: usize, capacity: u64) -> (Engine<u64>, Arc<Latch>) {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(ring)
        .capacity(capacity)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    (engine, latch)
}

/// Rings of 2 and a worker held on a latch: every ring is full while the
/// gate has room. Pairs of threads race to submit the same ID. A
/// `Duplicate` answer must name a job the engine has: every such ID runs.
#[test]
fn duplicate_is_answered_only_for_a_job_the_engine_has() {
    const PAIRS: u64 = 20_000;
    let latch = Latch::new();
    let l = latch.clone();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..PAIRS).map(|_| AtomicU8::new(0)).collect());
    let r = runs.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(2)
        .capacity(2 * PAIRS + 8)
        .build(move |_, &n| {
            l.wait();
            r[n as usize].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let barrier = Barrier::new(2);
    let answers: Vec<Vec<Result<Submitted, String>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let sub = engine.submitter();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (0..PAIRS)
                        .map(|n| sub.try_submit(Job::new(n, n)).map_err(|e| format!("{e:?}")))
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    latch.open();
    let report = engine.shutdown();
    assert!(report.returned.is_empty());
    for n in 0..PAIRS as usize {
        let (a, b) = (&answers[0][n], &answers[1][n]);
        let dup = matches!(a, Ok(Submitted::Duplicate)) || matches!(b, Ok(Submitted::Duplicate));
        let ran = runs[n].load(Ordering::Relaxed);
        if dup {
            assert_eq!(ran, 1, "job {n}: answered {a:?} and {b:?}, ran {ran} times");
        }
        // The gate had room for both: neither may be refused.
        assert!(a.is_ok() && b.is_ok(), "job {n}: {a:?} {b:?}");
    }
    let c = report.counts;
    assert_eq!((c.accepted, c.duplicates), (PAIRS, PAIRS));
    assert!(c.is_conserved(), "{c:?}");
}

/// A submit that finds every ring full but capacity free is accepted at
/// once (the job waits in its shard's overflow), instead of spinning on
/// the rings.
#[test]
fn full_rings_with_free_capacity_accept_at_once() {
    let (engine, latch) = held_engine(2, 1_000);
    for n in 0..100u64 {
        let job = if n % 2 == 0 {
            Job::new(n, n).key(n % 3)
        } else {
            Job::new(n, n)
        };
        assert_eq!(
            engine.submit_timeout(job, Duration::from_secs(30)).unwrap(),
            Submitted::Accepted
        );
    }
    assert_eq!(engine.metrics().counters.rejected_full, 0);
    latch.open();
    let c = engine.shutdown().counts;
    assert_eq!(c.completed, 100);
    assert!(c.is_conserved());
}

/// Unkeyed jobs that overflowed a full ring are stolen by an idle worker
/// while their shard's owner is busy: they do not wait for it.
#[test]
fn an_idle_worker_steals_unkeyed_jobs_from_an_overflow() {
    const N: u64 = 50;
    let latch = Latch::new();
    let l = latch.clone();
    let ran = Arc::new(AtomicU8::new(0));
    let r = ran.clone();
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .ring_capacity(2)
        .capacity(1_000)
        .build(move |_, &n| {
            if n == 0 {
                l.wait();
            } else {
                r.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    // Job 0 is due after 1 ns: it goes to the home shard's inbox, so only
    // that shard's owner can run it, and it holds that owner.
    engine
        .submit(Job::new(0u64, 0).delay(Duration::from_nanos(1)))
        .unwrap();
    wait_for(|| engine.metrics().counters.started == 1);
    // Both rings hold 2: the rest overflow into the home shard.
    for n in 1..=N {
        engine.submit(Job::new(n, n)).unwrap();
    }
    wait_for(|| u64::from(ran.load(Ordering::Relaxed)) == N);
    latch.open();
    let c = engine.shutdown().counts;
    assert_eq!(c.completed, N + 1);
    assert!(c.is_conserved());
}

/// At capacity, a blocked `submit_timeout` sleeps until its deadline: it
/// tries a bounded number of times (no release ever comes), then hands
/// the job back with `Timeout`.
#[test]
fn a_blocked_submit_sleeps_until_its_deadline() {
    let (engine, latch) = held_engine(4_096, 1);
    engine.submit(Job::new(1u64, 1)).unwrap();
    let before = engine.metrics().counters.rejected_full;
    match engine.submit_timeout(Job::new(2u64, 2), Duration::from_millis(200)) {
        Err(SubmitError::Timeout(job)) => assert_eq!(job.into_payload(), 2),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let attempts = engine.metrics().counters.rejected_full - before;
    // 16 spins, the wait's first attempt and one after registering: a
    // waiter is woken only by a release, and none came.
    assert!(attempts <= 20, "{attempts} attempts while blocked");
    latch.open();
    assert!(engine.shutdown().counts.is_conserved());
}

/// A handler that submits a follow-up into an engine it fills itself is
/// refused with `Full` at once, not deadlocked; one that submits into its
/// own key's full inbox is accepted (the overflow takes it) and the
/// follow-ups run in order.
#[test]
fn a_submit_from_a_handler_never_deadlocks_its_worker() {
    let (tx, rx) = mpsc::channel::<Result<Submitted, String>>();
    let tx = Mutex::new(tx);
    let cell: Arc<Mutex<Option<quay::Submitter<u64>>>> = Arc::new(Mutex::new(None));
    let c = cell.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(1)
        .build(move |_, &n| {
            if n == 0 {
                let sub = c.lock().unwrap().clone().unwrap();
                let r = sub.submit(Job::new(1u64, 1)).map_err(|e| format!("{e:?}"));
                tx.lock().unwrap().send(r).unwrap();
            }
            Ok(())
        })
        .unwrap();
    *cell.lock().unwrap() = Some(engine.submitter());
    engine.submit(Job::new(0u64, 0)).unwrap();
    let r = rx.recv().unwrap();
    assert!(r.as_ref().is_err_and(|e| e.starts_with("Full")), "{r:?}");
    drop(cell.lock().unwrap().take());
    assert!(engine.shutdown().counts.is_conserved());

    // Own key, own inbox (ring of 2), room in the gate.
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let cell: Arc<Mutex<Option<quay::Submitter<u64>>>> = Arc::new(Mutex::new(None));
    let c = cell.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(2)
        .capacity(100)
        .build(move |_, &n| {
            o.lock().unwrap().push(n);
            if n == 0 {
                let sub = c.lock().unwrap().clone().unwrap();
                for m in 1..=10u64 {
                    assert_eq!(
                        sub.submit(Job::new(m, m).key(7u64)).unwrap(),
                        Submitted::Accepted
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    *cell.lock().unwrap() = Some(engine.submitter());
    engine.submit(Job::new(0u64, 0).key(7u64)).unwrap();
    wait_for(|| order.lock().unwrap().len() == 11);
    drop(cell.lock().unwrap().take());
    assert_eq!(*order.lock().unwrap(), (0..=10).collect::<Vec<u64>>());
    assert!(engine.shutdown().counts.is_conserved());
}

/// A job that ran long is committed before the next attempt starts: while
/// a slow job runs, the one before it holds no capacity.
#[test]
fn a_slow_next_handler_does_not_hold_a_finished_job() {
    let latch = Latch::new();
    let l = latch.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(1_000)
        .build(move |_, &n| {
            match n {
                // Runs long (at least 2 ms), then completes.
                1 => std::thread::sleep(Duration::from_millis(2)),
                // Runs until the test lets it go.
                _ => {
                    started_tx.lock().unwrap().send(()).unwrap();
                    l.wait();
                }
            }
            Ok(())
        })
        .unwrap();
    engine
        .submit_batch([Job::new(1u64, 1), Job::new(2u64, 2)])
        .outcomes
        .iter()
        .for_each(|o| assert_eq!(*o, BatchOutcome::Accepted));
    started_rx.recv().unwrap();
    let c = engine.counts();
    assert_eq!((c.completed, c.held), (1, 1), "{c:?}");
    // Its ID is recorded as finished: a resubmit is a duplicate.
    assert_eq!(
        engine.try_submit(Job::new(1u64, 1)).unwrap(),
        Submitted::Duplicate
    );
    latch.open();
    assert!(engine.shutdown().counts.is_conserved());
}

/// Two dead letters; the engine full. A redrive refused for capacity
/// leaves the DLQ exactly as it was: same order, attempts and errors.
/// Then, with capacity free and every ring full, a redrive succeeds.
#[test]
fn a_refused_redrive_leaves_the_dead_letter_as_it_was() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(2)
        .capacity(1)
        .max_attempts(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build(move |_, &n| match n {
            10 | 11 => Err(JobError::retry(format!("boom {n}"))),
            _ => {
                l.wait();
                Ok(())
            }
        })
        .unwrap();
    for n in [10u64, 11] {
        engine.submit(Job::new(n, n)).unwrap();
        wait_for(|| engine.counts().held == 0);
    }
    let snapshot = |e: &Engine<u64>| -> Vec<(u64, u32, Vec<String>)> {
        e.dead_letters()
            .into_iter()
            .map(|d| (*d.job.payload(), d.attempts, d.errors))
            .collect()
    };
    let before = snapshot(&engine);
    assert_eq!(before.len(), 2);
    engine.submit(Job::new(0u64, 0)).unwrap(); // fills the engine
                                               // The newer one: put back at the front, it would become the oldest.
    assert_eq!(engine.redrive(11u64), Err(RedriveError::Full));
    assert_eq!(snapshot(&engine), before, "the DLQ changed");
    assert_eq!(engine.redrive(10u64), Err(RedriveError::Full));
    assert_eq!(snapshot(&engine), before, "the DLQ changed");
    // The dead IDs are still remembered: a client's resubmit is a duplicate.
    latch.open();
    wait_for(|| engine.counts().held == 0);
    assert_eq!(
        engine.try_submit(Job::new(11u64, 0)).unwrap(),
        Submitted::Duplicate
    );
    engine.shutdown();

    // Capacity free, rings full (worker held): the redrive goes through.
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(2)
        .capacity(100)
        .max_attempts(1)
        .build(move |_, &n| {
            if n == 9 {
                return Err(JobError::fatal("no"));
            }
            l.wait();
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(9u64, 9)).unwrap();
    wait_for(|| engine.dead_letters().len() == 1);
    for n in 0..5u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    assert_eq!(engine.redrive(9u64), Ok(()));
    assert!(engine.dead_letters().is_empty());
    latch.open();
    let c = engine.shutdown().counts;
    assert_eq!((c.redriven, c.dead), (1, 2), "{c:?}");
    assert!(c.is_conserved());
}

/// A batch refused part-way refuses the rest: no key has a job refused and
/// a later one accepted; the report says what became of each job.
#[test]
fn batch_reports_each_job_and_refuses_a_suffix() {
    let (engine, latch) = held_engine(2, 5);
    engine.submit(Job::new(100u64, 0)).unwrap();
    let jobs = vec![
        Job::new(1u64, 1).key(1u64),
        Job::new(100u64, 0), // a duplicate of the running job
        Job::new(2u64, 2),
        Job::new(3u64, 3).key(1u64),
        Job::new(4u64, 4).key(1u64),
        Job::new(5u64, 5).key(1u64),
        Job::new(6u64, 6),
    ];
    let rep = engine.submit_batch(jobs);
    use BatchOutcome::*;
    assert_eq!(
        rep.outcomes,
        vec![Accepted, Duplicate, Accepted, Accepted, Accepted, Full, Full]
    );
    assert_eq!((rep.accepted, rep.duplicates, rep.refused.len()), (4, 1, 2));
    let back: Vec<u64> = rep
        .refused
        .into_iter()
        .map(|e| match e {
            SubmitError::Full(j) => j.into_payload(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(back, vec![5, 6]);
    latch.open();
    assert!(engine.shutdown().counts.is_conserved());
}

/// Shutdown hands back a key's jobs in accept order, the key's head first
/// even when it waits in the timer to retry.
#[test]
fn shutdown_returns_each_keys_jobs_in_accept_order() {
    let latch = Latch::new();
    let l = latch.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .ring_capacity(2)
        .idle(IdleStrategy::Park)
        .build(move |_, &n| match n {
            // The head of key 1 fails once and waits an hour to retry.
            0 => Err(JobError::RetryAfter(
                Duration::from_secs(3600),
                "later".into(),
            )),
            // Key 2's head holds the worker.
            100 => {
                started_tx.lock().unwrap().send(()).unwrap();
                l.wait();
                Ok(())
            }
            _ => Ok(()),
        })
        .unwrap();
    engine.submit(Job::new(0u64, 0).key(1u64)).unwrap();
    wait_for(|| engine.metrics().counters.retried == 1);
    // Key 1's followers reach the key table (the worker is free) ...
    for n in 1..=6u64 {
        engine.submit(Job::new(n, n).key(1u64)).unwrap();
    }
    wait_for(|| engine.metrics().gauges.key_waiting == 6);
    // ... key 2's wait in the inbox and the overflow behind a held worker.
    engine.submit(Job::new(100u64, 100).key(2u64)).unwrap();
    started_rx.recv().unwrap();
    for n in 1..=6u64 {
        engine.submit(Job::new(100 + n, 100 + n).key(2u64)).unwrap();
    }
    let opener = std::thread::spawn(move || latch.open());
    let report = engine.shutdown_now();
    opener.join().unwrap();
    let mut by_key: HashMap<u64, Vec<u64>> = HashMap::new();
    for j in &report.returned {
        let k = if *j.payload() >= 100 { 2 } else { 1 };
        by_key.entry(k).or_default().push(*j.payload());
    }
    assert_eq!(by_key[&1], (0..=6).collect::<Vec<u64>>());
    assert_eq!(by_key[&2], (101..=106).collect::<Vec<u64>>());
    assert!(report.counts.is_conserved());
}
