//! The job contract: dedup, per-key order, retries, backoff, DLQ, redrive,
//! delays, shutdown leftovers and conservation. The manual clock is used
//! wherever time matters; nothing here asserts a timing.

mod common;

use common::{wait_for, Latch};
use quay::{Engine, Job, JobError, JobId, ManualClock, Settled, SubmitError, Submitted};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn t01_duplicate_while_live() {
    let latch = Latch::new();
    let l = latch.clone();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let engine = Engine::<u32>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, _| {
            l.wait();
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        engine.submit(Job::new("order-7", 1)).unwrap(),
        Submitted::Accepted
    );
    assert_eq!(
        engine.submit(Job::new("order-7", 2)).unwrap(),
        Submitted::Duplicate
    );
    assert_eq!(
        engine.try_submit(Job::new("order-7", 3)).unwrap(),
        Submitted::Duplicate
    );
    latch.open();
    let report = engine.shutdown();
    assert_eq!(runs.load(Ordering::Relaxed), 1);
    assert_eq!((report.counts.accepted, report.counts.duplicates), (1, 2));
    assert!(report.counts.is_conserved());
}

#[test]
fn t02_t03_duplicate_within_window_then_new_after_it() {
    let clock = ManualClock::new();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let engine = Engine::<()>::builder()
        .workers(1)
        .pin_workers(false)
        .clock(clock.clone())
        .dedup_window(Duration::from_secs(60))
        .build(move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(42u64, ())).unwrap();
    // Nothing held: the job is terminal and its ending is recorded.
    wait_for(|| engine.counts().held == 0);
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        engine.submit(Job::new(42u64, ())).unwrap(),
        Submitted::Duplicate
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        engine.submit(Job::new(42u64, ())).unwrap(),
        Submitted::Accepted
    );
    let report = engine.shutdown();
    assert_eq!(runs.load(Ordering::Relaxed), 2);
    assert!(report.counts.is_conserved());
}

#[test]
fn t04_eviction_at_capacity_never_forgets_a_live_id() {
    let clock = ManualClock::new();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .clock(clock.clone())
        .capacity(100_000)
        // Every job fits in the ring: they run in submit order, so the
        // last ones submitted are the last to finish (jobs that overflow a
        // full ring may overtake older ones: see `docs/semantics.md`).
        .ring_capacity(1 << 15)
        .dedup_capacity(256)
        .build(|_, _| Ok(()))
        .unwrap();
    // Delayed an hour on the manual clock: live (accepted, not terminal)
    // for the whole test.
    let live: Vec<u64> = (1_000_000..1_000_050).collect();
    for &n in &live {
        engine
            .submit(Job::new(n, n).delay(Duration::from_secs(3600)))
            .unwrap();
    }
    for n in 0..20_000u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    wait_for(|| engine.counts().completed == 20_000);
    assert!(engine.dedup_evicted() > 0, "capacity must have evicted");
    for &n in &live {
        assert_eq!(
            engine.submit(Job::new(n, 0)).unwrap(),
            Submitted::Duplicate,
            "{n}"
        );
    }
    // The oldest finished IDs were forgotten: they are new jobs again; the
    // newest are still remembered.
    assert_eq!(
        engine.submit(Job::new(0u64, 0)).unwrap(),
        Submitted::Accepted
    );
    assert_eq!(
        engine.submit(Job::new(19_999u64, 0)).unwrap(),
        Submitted::Duplicate
    );
    clock.advance(Duration::from_secs(3600));
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 20_000 + 50 + 1);
    assert!(report.counts.is_conserved());
}

#[test]
fn t05_per_key_order_with_four_producers_and_random_retries() {
    const PRODUCERS: u64 = 4;
    const KEYS: u64 = 50;
    const PER: u64 = 3_000;
    // Start log per key: (producer seq) of every attempt, and a busy flag.
    let log: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let busy: Arc<Vec<AtomicBool>> = Arc::new(
        (0..PRODUCERS * KEYS)
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let overlaps = Arc::new(AtomicU64::new(0));
    let (lg, b, o) = (log.clone(), busy.clone(), overlaps.clone());
    let engine = Engine::<(u64, u64)>::builder()
        .workers(3)
        .pin_workers(false)
        .backoff(Duration::from_micros(1), Duration::from_micros(50))
        .max_attempts(NonZeroU32::new(20).unwrap())
        .build(move |ctx, &(key, seq)| {
            if b[key as usize].swap(true, Ordering::AcqRel) {
                o.fetch_add(1, Ordering::Relaxed);
            }
            lg.lock().unwrap().entry(key).or_default().push(seq);
            // Pseudo-random transient failures, decided by (seq, attempt).
            let h = (seq ^ (ctx.attempt() as u64) << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let fail = ctx.attempt() < 4 && h >> 61 == 0;
            b[key as usize].store(false, Ordering::Release);
            if fail {
                Err(JobError::retry("transient"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let sub = engine.submitter();
            s.spawn(move || {
                for i in 0..PER {
                    // Keys are owned by one producer, so its submit order is
                    // the key's accept order.
                    let key = p * KEYS + i % KEYS;
                    sub.submit(Job::new(p << 32 | i, (key, i)).keyed(key))
                        .unwrap();
                }
            });
        }
    });
    let report = engine.shutdown();
    assert_eq!(
        overlaps.load(Ordering::Relaxed),
        0,
        "two jobs of one key ran at once"
    );
    assert_eq!(report.counts.completed, PRODUCERS * PER);
    assert!(
        report.counts.retried > 0,
        "some attempts must have been retried"
    );
    for (key, starts) in log.lock().unwrap().iter() {
        assert!(
            starts.windows(2).all(|w| w[0] <= w[1]),
            "key {key}: start order {starts:?}"
        );
        let firsts: Vec<u64> = starts
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(firsts.len() as u64, PER / KEYS, "key {key}");
    }
    assert!(report.counts.is_conserved());
}

#[test]
fn t06_a_retrying_key_does_not_block_another_key_on_its_shard() {
    let clock = ManualClock::new();
    let done: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let d = done.clone();
    let engine = Engine::<&'static str>::builder()
        .workers(1)
        .pin_workers(false)
        .clock(clock.clone())
        .backoff(Duration::from_secs(10), Duration::from_secs(10))
        .jitter(false)
        .build(move |ctx, &name| {
            if name == "a1" && ctx.attempt() == 1 {
                return Err(JobError::retry("try later"));
            }
            d.lock().unwrap().push(name);
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(1u64, "a1").keyed("A")).unwrap();
    engine.submit(Job::new(2u64, "a2").keyed("A")).unwrap();
    engine.submit(Job::new(3u64, "b1").keyed("B")).unwrap();
    wait_for(|| done.lock().unwrap().contains(&"b1"));
    assert_eq!(
        *done.lock().unwrap(),
        vec!["b1"],
        "A waits for its retry; B runs"
    );
    clock.advance(Duration::from_secs(10));
    wait_for(|| done.lock().unwrap().len() == 3);
    assert_eq!(*done.lock().unwrap(), vec!["b1", "a1", "a2"]);
    assert!(engine.shutdown().counts.is_conserved());
}

#[test]
fn t07_attempts_never_exceed_max_attempts() {
    let max_seen = Arc::new(AtomicU32::new(0));
    let m = max_seen.clone();
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .max_attempts(NonZeroU32::new(3).unwrap())
        .backoff(Duration::from_micros(1), Duration::from_micros(10))
        .build(move |ctx, _| {
            m.fetch_max(ctx.attempt(), Ordering::Relaxed);
            Err(JobError::retry("always"))
        })
        .unwrap();
    for n in 0..100u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    engine
        .submit(Job::new(1_000u64, 0).max_attempts(NonZeroU32::new(1).unwrap()))
        .unwrap();
    let report = engine.shutdown();
    assert_eq!(max_seen.load(Ordering::Relaxed), 3);
    assert_eq!(report.counts.dead, 101);
    // Two retries per job, then death at the third attempt; the override
    // job dies at its first.
    assert_eq!(report.counts.retried, 200);
}

#[test]
fn t08_backoff_delays_stay_within_bounds() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    let mut d = Engine::<()>::builder()
        .backoff(base, max)
        .max_attempts(NonZeroU32::new(8).unwrap())
        .seed(99)
        .driver()
        .unwrap();
    for id in 0..50u64 {
        d.submit(Job::new(id, ())).unwrap();
        for attempt in 1..8u32 {
            let step = d.run_next(|_, _| Err(JobError::retry("x"))).unwrap();
            assert_eq!((step.attempt, step.settled), (attempt, Settled::Retrying));
            let wait = d.next_due().unwrap().saturating_since(d.now());
            let cap = (base * 2u32.pow(attempt - 1)).min(max);
            assert!(
                wait <= cap,
                "attempt {attempt}: waited {wait:?} > cap {cap:?}"
            );
            d.advance(wait);
        }
        assert_eq!(
            d.run_next(|_, _| Err(JobError::retry("x")))
                .unwrap()
                .settled,
            Settled::Dead
        );
    }
    assert!(d.counts().is_conserved());
}

#[test]
fn t09_fatal_goes_straight_to_the_dlq() {
    let engine = Engine::<String>::builder()
        .workers(1)
        .pin_workers(false)
        .build(|_, p: &String| Err(JobError::fatal(format!("bad address {p}"))))
        .unwrap();
    engine
        .submit(Job::new("mail-1", "nobody@".to_string()))
        .unwrap();
    wait_for(|| engine.counts().dead == 1);
    let dl = engine.dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].attempts, 1);
    assert_eq!(dl[0].last_error(), Some("fatal: bad address nobody@"));
    assert_eq!(dl[0].job.id(), JobId::from("mail-1"));
    assert!(engine.shutdown().counts.is_conserved());
}

#[test]
fn t10_a_panic_is_retried() {
    let engine = Engine::<u8>::builder()
        .workers(1)
        .pin_workers(false)
        .backoff(Duration::from_micros(1), Duration::from_micros(1))
        .build(|ctx, _| {
            if ctx.attempt() == 1 {
                panic!("resize crashed");
            }
            Ok(())
        })
        .unwrap();
    engine.submit(Job::new(5u64, 0)).unwrap();
    let report = engine.shutdown();
    assert_eq!((report.counts.completed, report.counts.retried), (1, 1));
    // The panic's message is kept as the attempt's error.
    let mut d = Engine::<u8>::builder()
        .max_attempts(NonZeroU32::new(1).unwrap())
        .driver()
        .unwrap();
    d.submit(Job::new(1u64, 0)).unwrap();
    let step = d.run_next(|_, _| panic!("boom")).unwrap();
    assert!(step.panicked);
    assert_eq!(d.dead_letters()[0].last_error(), Some("retry: panic: boom"));
}

#[test]
fn t11_dlq_bound_and_drop_count() {
    let hooked = Arc::new(AtomicU32::new(0));
    let h = hooked.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .dlq_capacity(3)
        .on_dead(move |_| {
            h.fetch_add(1, Ordering::Relaxed);
        })
        .build(|_, _| Err(JobError::fatal("poison")))
        .unwrap();
    for n in 0..5u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    wait_for(|| engine.counts().dead == 5);
    assert_eq!(
        hooked.load(Ordering::Relaxed),
        5,
        "the hook sees every dead job"
    );
    assert_eq!(engine.dlq_dropped(), 2);
    let ids: Vec<u64> = engine
        .dead_letters()
        .iter()
        .map(|d| *d.job.payload())
        .collect();
    assert_eq!(ids, vec![2, 3, 4], "the oldest were dropped");
    assert_eq!(engine.drain_dead().len(), 3);
    assert!(engine.dead_letters().is_empty());
    assert!(engine.shutdown().counts.is_conserved());
}

#[test]
fn t12_redrive() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |ctx, _| {
            if h.load(Ordering::Relaxed) {
                assert_eq!(ctx.attempt(), 1, "redrive resets attempts");
                Ok(())
            } else {
                Err(JobError::fatal("downstream down"))
            }
        })
        .unwrap();
    for n in 0..3u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    wait_for(|| engine.counts().dead == 3);
    healthy.store(true, Ordering::Relaxed);
    // Dedup remembers the dead IDs; redrive bypasses it.
    assert_eq!(
        engine.submit(Job::new(0u64, 0)).unwrap(),
        Submitted::Duplicate
    );
    engine.redrive(0u64).unwrap();
    assert_eq!(engine.redrive(77u64), Err(quay::RedriveError::NotFound));
    assert_eq!(engine.redrive_all().unwrap(), 2);
    let report = engine.shutdown();
    let c = report.counts;
    assert_eq!((c.accepted, c.completed, c.dead, c.redriven), (6, 3, 3, 3));
    assert!(c.is_conserved());
}

#[test]
fn t13_delayed_jobs_never_start_early() {
    let clock = ManualClock::new();
    let started_at = Arc::new(Mutex::new(Vec::new()));
    let (s, c) = (started_at.clone(), clock.clone());
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .clock(clock.clone())
        .build(move |_, &n| {
            s.lock().unwrap().push((n, c.now()));
            Ok(())
        })
        .unwrap();
    engine
        .submit(Job::new(1u64, 1).delay(Duration::from_secs(10)))
        .unwrap();
    engine
        .submit(Job::new(2u64, 2).run_at(quay::Timestamp::from_nanos(5_000_000_000)))
        .unwrap();
    engine
        .submit(Job::new(3u64, 3).keyed("k").delay(Duration::from_secs(7)))
        .unwrap();
    for _ in 0..20 {
        clock.advance(Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for(|| engine.counts().completed == 3);
    for &(n, at) in started_at.lock().unwrap().iter() {
        let due = [0, 10, 5, 7][n as usize] * 1_000_000_000;
        assert!(
            at.as_nanos() >= due,
            "job {n} started at {at} before {due}ns"
        );
    }
    assert!(engine.shutdown().counts.is_conserved());
}

#[test]
fn t14_shutdown_now_leftovers_are_exact() {
    let clock = ManualClock::new();
    let engine = Engine::<&'static str>::builder()
        .workers(2)
        .pin_workers(false)
        .clock(clock.clone())
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build(|_, &name| {
            if name.starts_with("flaky") {
                Err(JobError::retry("later"))
            } else {
                Ok(())
            }
        })
        .unwrap();
    engine.submit(Job::new(1u64, "ok-1")).unwrap();
    engine.submit(Job::new(2u64, "flaky-unkeyed")).unwrap();
    engine
        .submit(Job::new(3u64, "flaky-keyed").keyed("K"))
        .unwrap();
    engine
        .submit(Job::new(4u64, "behind-key").keyed("K"))
        .unwrap();
    engine
        .submit(Job::new(5u64, "delayed").delay(Duration::from_secs(3600)))
        .unwrap();
    engine
        .submit(Job::new(6u64, "ok-2").keyed("other"))
        .unwrap();
    wait_for(|| {
        let c = engine.counts();
        c.completed == 2 && c.retried == 2
    });
    let report = engine.shutdown_now();
    let mut returned: Vec<&str> = report.returned.iter().map(|j| *j.payload()).collect();
    returned.sort();
    assert_eq!(
        returned,
        vec!["behind-key", "delayed", "flaky-keyed", "flaky-unkeyed"]
    );
    let c = report.counts;
    assert_eq!((c.accepted, c.completed, c.dead, c.returned), (6, 2, 0, 4));
    assert!(c.is_conserved());
}

#[test]
fn t15_conservation_after_a_randomized_run() {
    let engine = Engine::<u64>::builder()
        .workers(3)
        .pin_workers(false)
        .capacity(2_000)
        .backoff(Duration::from_micros(1), Duration::from_micros(100))
        .max_attempts(NonZeroU32::new(3).unwrap())
        .dlq_capacity(100_000)
        .build(|ctx, &n| {
            let h = (n ^ (ctx.attempt() as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
            match h {
                0..=24 => Err(JobError::retry("transient")),
                25..=27 => Err(JobError::fatal("poison")),
                28 => panic!("crash {n}"),
                _ => Ok(()),
            }
        })
        .unwrap();
    let mut outcomes: HashMap<&str, u64> = HashMap::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|p| {
                let sub = engine.submitter();
                s.spawn(move || {
                    let mut acc = (0u64, 0u64);
                    for i in 0..5_000u64 {
                        // Overlapping ID ranges across producers: duplicates.
                        let n = (p * 4_000 + i) % 16_000;
                        let mut job = Job::new(n, n);
                        if n % 3 == 0 {
                            job = job.keyed(n % 17);
                        }
                        if n % 11 == 0 {
                            job = job.delay(Duration::from_micros(n % 300));
                        }
                        match sub.submit(job) {
                            Ok(Submitted::Accepted) => acc.0 += 1,
                            Ok(Submitted::Duplicate) => acc.1 += 1,
                            Err(e @ SubmitError::Timeout(_))
                            | Err(e @ SubmitError::Full(_))
                            | Err(e @ SubmitError::ShuttingDown(_)) => {
                                panic!("unexpected {e}")
                            }
                        }
                    }
                    acc
                })
            })
            .collect();
        for h in handles {
            let (a, d) = h.join().unwrap();
            *outcomes.entry("accepted").or_default() += a;
            *outcomes.entry("duplicates").or_default() += d;
        }
    });
    // At rest, the DLQ (large enough never to drop) holds every dead job.
    wait_for(|| engine.counts().held == 0);
    let dead_in_dlq = engine.dead_letters().len() as u64;
    let report = engine.shutdown();
    let c = report.counts;
    assert_eq!(c.accepted, outcomes["accepted"]);
    assert_eq!(c.duplicates, outcomes["duplicates"]);
    assert_eq!(c.accepted + c.duplicates, 20_000);
    assert!(report.returned.is_empty());
    assert_eq!(c.accepted, c.completed + c.dead + c.returned);
    assert!(c.dead > 0 && c.retried > 0);
    assert_eq!(dead_in_dlq, c.dead);
}
