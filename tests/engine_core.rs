//! The engine core's contract: exactly-once when nothing fails, refusals
//! that hand the job back, lossless shutdown, panics contained, stealing,
//! typed build errors.

mod common;

use common::{wait_for, Latch};
use quay::{BuildError, Engine, IdleStrategy, Job, Pinning, SubmitError, Submitted};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[test]
fn every_job_runs_exactly_once_with_many_producers_and_workers() {
    const PRODUCERS: u64 = 6;
    const PER: u64 = 20_000;
    let runs: Arc<Vec<AtomicU32>> =
        Arc::new((0..PRODUCERS * PER).map(|_| AtomicU32::new(0)).collect());
    let r = runs.clone();
    // 4 workers and 6 producers: more threads than this machine's cores.
    let engine = Engine::<u64>::builder()
        .workers(4)
        .capacity(1_000)
        .ring_capacity(256)
        .build(move |ctx, &n| {
            assert_eq!(ctx.attempt(), 1);
            r[n as usize].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let sub = engine.submitter();
            s.spawn(move || {
                for i in 0..PER {
                    let n = p * PER + i;
                    if i % 3 == 0 {
                        let batch: Vec<_> = (0..1).map(|_| Job::new(n, n)).collect();
                        let mut rep = sub.submit_batch(batch);
                        for e in rep.refused.drain(..) {
                            assert!(matches!(e, SubmitError::Full(_)));
                            sub.submit(e.into_job()).unwrap();
                        }
                    } else {
                        assert_eq!(sub.submit(Job::new(n, n)).unwrap(), Submitted::Accepted);
                    }
                }
            });
        }
    });
    let report = engine.shutdown();
    assert!(report.returned.is_empty());
    assert_eq!(report.counts.accepted, PRODUCERS * PER);
    assert_eq!(report.counts.completed, PRODUCERS * PER);
    assert!(report.counts.is_conserved());
    for (i, c) in runs.iter().enumerate() {
        assert_eq!(c.load(Ordering::Relaxed), 1, "job {i}");
    }
}

#[test]
fn full_hands_the_job_back() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<String>::builder()
        .workers(1)
        .capacity(3)
        .pin_workers(false)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    for i in 0..3u64 {
        engine.try_submit(Job::new(i, format!("p{i}"))).unwrap();
    }
    match engine.try_submit(Job::new(99u64, "payload".to_string())) {
        Err(SubmitError::Full(job)) => {
            assert_eq!(job.id(), 99u64.into());
            assert_eq!(job.into_payload(), "payload");
        }
        other => panic!("expected Full, got {other:?}"),
    }
    // A bounded wait gives up and also hands the job back.
    match engine.submit_timeout(Job::new(98u64, "t".to_string()), Duration::from_millis(20)) {
        Err(SubmitError::Timeout(job)) => assert_eq!(job.into_payload(), "t"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    latch.open();
    // Blocking submit waits for room instead.
    for i in 3..50u64 {
        engine.submit(Job::new(i, String::new())).unwrap();
    }
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 50);
    assert!(report.counts.is_conserved());
}

#[test]
fn submit_after_shutdown_hands_the_job_back() {
    let engine = Engine::<Vec<u8>>::builder()
        .workers(2)
        .build(|_, _| Ok(()))
        .unwrap();
    let sub = engine.submitter();
    let report = engine.shutdown();
    assert_eq!(report.counts.accepted, 0);
    match sub.try_submit(Job::new("late", vec![1, 2, 3])) {
        Err(SubmitError::ShuttingDown(job)) => assert_eq!(job.into_payload(), vec![1, 2, 3]),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    match sub.submit(Job::new("late", vec![4])) {
        Err(e @ SubmitError::ShuttingDown(_)) => assert!(!e.is_transient()),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
}

#[test]
fn shutdown_now_returns_exactly_the_jobs_that_did_not_run() {
    let latch = Latch::new();
    let l = latch.clone();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let r = ran.clone();
    let engine = Engine::<u64>::builder()
        .workers(2)
        .capacity(10_000)
        .pin_workers(false)
        .build(move |_, &n| {
            l.wait();
            r.lock().unwrap().push(n);
            Ok(())
        })
        .unwrap();
    for n in 0..500u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    for n in 500..600u64 {
        // Keyed jobs go through the owner's inbox: returned too.
        engine.submit(Job::new(n, n).keyed(n % 7)).unwrap();
    }
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        latch.open();
    });
    let report = engine.shutdown_now();
    opener.join().unwrap();
    let ran: Vec<u64> = ran.lock().unwrap().clone();
    let returned: Vec<u64> = report.returned.iter().map(|j| *j.payload()).collect();
    let ran_set: HashSet<u64> = ran.iter().copied().collect();
    let ret_set: HashSet<u64> = returned.iter().copied().collect();
    assert_eq!(ran_set.len(), ran.len(), "a job ran twice");
    assert_eq!(ret_set.len(), returned.len(), "a job was returned twice");
    assert!(
        ran_set.is_disjoint(&ret_set),
        "a job both ran and was returned"
    );
    let all: HashSet<u64> = ran_set.union(&ret_set).copied().collect();
    assert_eq!(all, (0..600).collect::<HashSet<u64>>());
    assert!(
        !returned.is_empty(),
        "workers were blocked; most jobs must come back"
    );
    let c = report.counts;
    assert_eq!(c.accepted, 600);
    assert_eq!(c.completed, ran.len() as u64);
    assert_eq!(c.returned, returned.len() as u64);
    assert_eq!(c.held, 0);
    assert!(c.is_conserved());
}

#[test]
fn a_panicking_handler_does_not_kill_its_worker() {
    let ok = Arc::new(AtomicU64::new(0));
    let o = ok.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, &n| {
            if n % 2 == 0 {
                panic!("job {n} panics on purpose");
            }
            o.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    for n in 0..200u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    // The single worker survives every panic and keeps running jobs.
    wait_for(|| engine.counts().held == 0);
    engine.submit(Job::new(1001u64, 1001)).unwrap();
    let report = engine.shutdown();
    assert_eq!(ok.load(Ordering::Relaxed), 101);
    assert_eq!(report.counts.completed, 101);
    assert!(report.counts.is_conserved());
}

#[test]
fn idle_workers_steal_from_a_loaded_shard() {
    // Forced, not hoped for. Job 0 is delayed, so it goes to the inbox of
    // this thread's home shard, which only that shard's owner may run; its
    // handler blocks the owner. The other jobs are submitted only once the
    // owner is blocked, by this one thread, into the same home ring (it never
    // fills). While the owner stays blocked they can only run if the idle
    // worker steals them; the owner is released once all have run.
    const JOBS: u64 = 2_000;
    let (blocked_tx, blocked_rx) = mpsc::channel::<usize>();
    let (ran_tx, ran_rx) = mpsc::channel::<usize>();
    let release = Latch::new();
    let r = release.clone();
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .ring_capacity(4096)
        .idle(IdleStrategy::Park)
        .build(move |ctx, &n| {
            if n == 0 {
                blocked_tx.send(ctx.worker()).unwrap();
                r.wait();
            } else {
                ran_tx.send(ctx.worker()).unwrap();
            }
            Ok(())
        })
        .unwrap();
    engine
        .submit(Job::new(0u64, 0).delay(Duration::from_nanos(1)))
        .unwrap();
    let owner = blocked_rx.recv().unwrap();
    for n in 1..=JOBS {
        engine.submit(Job::new(n, n)).unwrap();
    }
    // Event-driven: each job reports as it runs. Should stealing not
    // happen, this waits forever rather than guessing a deadline.
    for _ in 1..=JOBS {
        let worker = ran_rx.recv().unwrap();
        assert_ne!(worker, owner, "the blocked owner ran a job");
    }
    let stolen = engine.metrics().counters.stolen_jobs;
    release.open();
    let report = engine.shutdown();
    assert_eq!(stolen, JOBS, "every job but the owner's was stolen");
    assert_eq!(report.counts.completed, JOBS + 1);
    assert!(report.counts.is_conserved());
}

#[test]
fn every_bad_setting_is_a_typed_error() {
    fn build(b: quay::Builder<u8>) -> Result<(), BuildError> {
        b.build(|_, _| Ok(())).map(drop)
    }
    let b = || Engine::<u8>::builder().pin_workers(false);
    assert_eq!(build(b().workers(0)), Err(BuildError::ZeroWorkers));
    assert_eq!(build(b().capacity(0)), Err(BuildError::Capacity(0)));
    assert_eq!(
        build(b().capacity(u64::MAX)),
        Err(BuildError::Capacity(u64::MAX))
    );
    for bad in [0usize, 1, 3, 100, 1 << 30] {
        assert_eq!(
            build(b().ring_capacity(bad)),
            Err(BuildError::RingCapacity(bad))
        );
    }
    assert_eq!(
        build(b().pin_workers(Vec::<usize>::new())),
        Err(BuildError::EmptyCoreList)
    );
    match build(b().pin_workers(vec![0, 100_000])) {
        Err(BuildError::NoSuchCore { core, .. }) => assert_eq!(core, 100_000),
        other => panic!("expected NoSuchCore, got {other:?}"),
    }
    let msg = BuildError::RingCapacity(3).to_string();
    assert!(msg.starts_with("ring_capacity"), "{msg}");
}

#[test]
fn explicit_pinning_to_real_cores_works_or_warns() {
    let cores: Vec<usize> = core_ids();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let engine = Engine::<u8>::builder()
        .workers(2)
        .pin_workers(Pinning::Cores(cores.clone()))
        .build(move |_, _| {
            r.store(true, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(1u64, 0)).unwrap();
    let warnings = engine.pin_warnings();
    let report = engine.shutdown();
    assert!(ran.load(Ordering::Relaxed));
    assert!(report.counts.is_conserved());
    // A refused pin is reported, never a panic; each names a listed core.
    assert!(warnings.iter().all(|w| cores.contains(&w.core)));
}

fn core_ids() -> Vec<usize> {
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

#[test]
fn batch_submit_reports_what_was_refused() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .capacity(10)
        .pin_workers(false)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    let rep = engine.submit_batch((0..25u64).map(|n| Job::new(n, n)));
    assert_eq!(rep.accepted, 10);
    assert_eq!(rep.refused.len(), 15);
    let back: Vec<u64> = rep
        .refused
        .into_iter()
        .map(|e| e.into_job().into_payload())
        .collect();
    assert_eq!(back, (10..25).collect::<Vec<_>>());
    latch.open();
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 10);
    assert!(report.counts.is_conserved());
}

#[test]
fn dropping_an_engine_runs_what_it_holds() {
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .build(move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    for n in 0..1_000u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    drop(engine);
    assert_eq!(ran.load(Ordering::Relaxed), 1_000);
}

#[test]
fn blocking_submit_waits_when_rings_fill_before_capacity() {
    // capacity (1 000) > total ring room (2 × 4): a submit finds room in the
    // gate but none in the rings, and must wait for a worker, not deadlock.
    let engine = Engine::<u64>::builder()
        .workers(2)
        .ring_capacity(4)
        .capacity(1_000)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .build(|_, _| Ok(()))
        .unwrap();
    std::thread::scope(|s| {
        for p in 0..3u64 {
            let sub = engine.submitter();
            s.spawn(move || {
                for i in 0..5_000u64 {
                    let n = p * 10_000 + i;
                    let job = if i % 2 == 0 {
                        Job::new(n, n).keyed(n % 5)
                    } else {
                        Job::new(n, n)
                    };
                    sub.submit(job).unwrap();
                }
            });
        }
    });
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 15_000);
    assert!(report.counts.is_conserved());
}

#[test]
fn shutdown_timeout_runs_what_it_can_then_returns_the_rest() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, &n| {
            if n == 0 {
                l.wait();
            }
            Ok(())
        })
        .unwrap();
    for n in 0..100u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    // Job 0 blocks the only worker past the deadline; it finishes (a
    // running handler is never abandoned), and the rest come back.
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        latch.open();
    });
    let report = engine.shutdown_timeout(Duration::from_millis(10));
    opener.join().unwrap();
    let c = report.counts;
    assert!(c.completed >= 1, "the running job finished");
    assert_eq!(c.returned, report.returned.len() as u64);
    assert_eq!(c.completed + c.returned, 100);
    assert!(c.is_conserved());
}

#[test]
fn a_busy_worker_releases_capacity_without_going_idle() {
    // One worker kept busy by 2 ms jobs: it never runs dry until the end,
    // so only its commit age bound (a millisecond) can release capacity
    // before then. With the count bound alone (64 / 4 = 16 endings) `held`
    // would stay at 64 until 16 jobs had ended.
    const N: u64 = 64;
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(N)
        .build(|_, _| {
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        })
        .unwrap();
    for i in 0..N {
        assert_eq!(
            engine.try_submit(Job::new(i, i)).unwrap(),
            Submitted::Accepted
        );
    }
    wait_for(|| engine.counts().completed >= 5);
    // Read `completed` first: `held` only falls meanwhile. Every ending
    // but the latest is committed (it commits as the next one ends).
    let completed = engine.counts().completed;
    let held = engine.counts().held;
    assert!(
        held <= N - completed + 1,
        "held {held} after {completed} completions"
    );
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, N);
}
