//! The seams the async, batch and lifecycle work opened (reliability, round
//! two): each test forces the condition it checks with latches, blocked
//! futures and blocked iterators, bounds every wait with a watchdog, and
//! failed (or hung) on the code before its fix.

mod common;

use common::{held_engine, key_owned_by, wait_for, wait_parked, within, Latch, WATCHDOG};
use quay::{BatchOutcome, Engine, IdleStrategy, Job, JobError, SubmitError, Submitted};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The shard this thread's unkeyed jobs go to in an engine of `workers`
/// workers: every worker is held on a keyed job, one unkeyed job is
/// submitted, and the one ring that then holds a job is the home.
fn home_shard(workers: usize) -> usize {
    let latch = Latch::new();
    let l = latch.clone();
    let probe = Engine::<u64>::builder()
        .workers(workers)
        .pin_workers(false)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    for w in 0..workers {
        let k = key_owned_by(workers, w);
        probe
            .submit(Job::new(1_000 + w as u64, 0).keyed(k))
            .unwrap();
    }
    wait_for(|| probe.metrics().counters.started == workers as u64);
    probe.submit(Job::new(9_999u64, 0)).unwrap();
    let queued = probe.metrics().gauges.queued_per_shard;
    latch.open();
    probe.shutdown();
    let homes: Vec<usize> = (0..workers).filter(|&s| queued[s] == 1).collect();
    assert_eq!(homes.len(), 1, "queued per shard: {queued:?}");
    homes[0]
}

/// A future that stays pending until `release`, then completes.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn release(&self) {
        self.open.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

struct Blocked(Arc<Gate>);

impl Future for Blocked {
    type Output = Result<(), JobError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.0.open.load(Ordering::Acquire) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// 1. A sleeping async worker with no free slot is not the one woken for a
///    stealable job: the other, idle worker is, and runs it while the first
///    attempt still waits (its future is never woken until the end).
#[test]
fn a_stealable_job_is_not_left_behind_a_full_async_worker() {
    let home = home_shard(2);
    let blocker_key = key_owned_by(2, home);
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let (tx, rx) = mpsc::channel::<usize>();
    let tx = Mutex::new(tx);
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .concurrency(1)
        .build_async(move |ctx, &n| {
            let gate = g.clone();
            let _ = tx.lock().unwrap().send(ctx.worker());
            async move {
                if n == 0 {
                    Blocked(gate).await
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    // The blocker fills the home shard's worker (concurrency 1).
    engine.submit(Job::new(0u64, 0).keyed(blocker_key)).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), home);
    wait_parked(&engine, 2);
    // This thread's unkeyed job goes to the full worker's ring.
    engine.submit(Job::new(1u64, 1)).unwrap();
    let ran_on = rx.recv_timeout(WATCHDOG).unwrap_or_else(|_| {
        panic!("FAIL: the stealable job waited behind the full worker while the other slept")
    });
    assert_ne!(ran_on, home);
    gate.release();
    let c = engine.shutdown().counts;
    assert_eq!((c.accepted, c.completed), (2, 2), "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
}

/// An iterator that yields `ready` jobs, then blocks until told to go on,
/// then yields one more. `lower` is the lower bound its size hint claims
/// (a channel's is 0; a lying one may claim more).
struct Trickle {
    next: u64,
    ready: u64,
    go_on: mpsc::Receiver<()>,
    blocked: mpsc::Sender<()>,
    lower: usize,
}

impl Iterator for Trickle {
    type Item = Job<u64>;
    fn next(&mut self) -> Option<Job<u64>> {
        if self.next == self.ready {
            let _ = self.blocked.send(());
            self.go_on.recv().ok()?;
        }
        if self.next > self.ready {
            return None;
        }
        self.next += 1;
        Some(Job::new(self.next, self.next))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.lower, None)
    }
}

/// A batch fed from an iterator that blocks after three jobs. While it is
/// blocked: the jobs it yielded run, and `shutdown_now` (or `Drop`, when
/// `drop_it`) returns without waiting for the iterator. Released after,
/// its last job is refused with `ShuttingDown` and handed back.
fn batch_does_not_hold_the_engine(drop_it: bool, lower: usize) {
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
    let (go, go_on) = mpsc::channel();
    let (blocked, is_blocked) = mpsc::channel();
    let sub = engine.submitter();
    let batch = std::thread::spawn(move || {
        sub.submit_batch(Trickle {
            next: 0,
            ready: 3,
            go_on,
            blocked,
            lower,
        })
    });
    is_blocked.recv_timeout(WATCHDOG).unwrap();
    if lower == 0 {
        // Flushed before the iterator was called again: they run now.
        within("jobs yielded before the block run", {
            let ran = ran.clone();
            move || wait_for(|| ran.load(Ordering::Relaxed) == 3)
        });
    }
    let counts = within("shutdown while the batch's iterator blocks", move || {
        if drop_it {
            drop(engine);
            None
        } else {
            Some(engine.shutdown_now().counts)
        }
    });
    go.send(()).unwrap();
    let report = within("the batch ends", move || batch.join().unwrap());
    let accepted = report.accepted as u64;
    assert_eq!(
        accepted,
        ran.load(Ordering::Relaxed),
        "accepted jobs all ran"
    );
    assert_eq!(report.accepted + report.refused.len(), 4, "{report:?}");
    assert_eq!(report.outcomes.last(), Some(&BatchOutcome::ShuttingDown));
    for e in &report.refused {
        assert!(matches!(e, SubmitError::ShuttingDown(_)), "{e:?}");
    }
    if let Some(c) = counts {
        assert_eq!(c.accepted, accepted, "{c:?}");
        assert!(c.is_conserved(), "{c:?}");
    }
}

/// 2. `shutdown_now` does not wait for a batch's iterator.
#[test]
fn shutdown_now_does_not_wait_for_a_blocked_batch_iterator() {
    batch_does_not_hold_the_engine(false, 0);
}

/// 2. Nor does `Drop`.
#[test]
fn drop_does_not_wait_for_a_blocked_batch_iterator() {
    batch_does_not_hold_the_engine(true, 0);
}

/// 2. Nor with an iterator whose size hint promises more than it yields
///    without blocking: the chunk in hand is not in the engine yet.
#[test]
fn shutdown_does_not_wait_for_an_iterator_that_overstates_its_size() {
    batch_does_not_hold_the_engine(false, 10);
}

/// Opens its latch when dropped: a failing assertion then ends the test
/// instead of leaving a worker held (and the engine's drop waiting on it).
struct OpenOnDrop(Arc<Latch>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// One worker held on a latch, rings of 2, both full behind it.
fn full_rings() -> (Engine<u64>, Arc<Latch>) {
    let (engine, latch) = held_engine(2, 1_000);
    engine.submit(Job::new(0u64, 0)).unwrap();
    wait_for(|| engine.metrics().counters.started == 1);
    for n in 1..=2u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    assert!(matches!(
        engine.try_submit(Job::new(99u64, 99)),
        Err(SubmitError::Full(_))
    ));
    (engine, latch)
}

/// 3. With the job's ring full, a closed engine answers `ShuttingDown` on
///    every path, never the transient `Full` or `Timeout`.
#[test]
fn a_closed_engine_with_full_rings_answers_shutting_down() {
    let (engine, latch) = full_rings();
    let _open = OpenOnDrop(latch.clone());
    engine.close();
    let shutting = |r: Result<Submitted, SubmitError<u64>>| {
        assert!(matches!(r, Err(SubmitError::ShuttingDown(_))), "{r:?}");
    };
    shutting(engine.try_submit(Job::new(10u64, 10)));
    shutting(engine.submit(Job::new(11u64, 11)));
    shutting(engine.submit_timeout(Job::new(12u64, 12), Duration::from_secs(30)));
    shutting(futures::executor::block_on(
        engine.submit_async(Job::new(13u64, 13)),
    ));
    let report = engine.submit_batch((14..17u64).map(|n| Job::new(n, n)));
    assert_eq!(report.outcomes, [BatchOutcome::ShuttingDown; 3]);
    latch.open();
    let c = engine.shutdown().counts;
    assert_eq!(c.accepted, 3, "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
}

/// 3. A submit already waiting for ring room when the engine closes is
///    answered `ShuttingDown` at once, not `Timeout` at its deadline.
#[test]
fn a_waiting_submit_is_answered_shutting_down_when_the_engine_closes() {
    let (engine, latch) = full_rings();
    let _open = OpenOnDrop(latch.clone());
    let engine = Arc::new(engine);
    let e = engine.clone();
    let before = engine.metrics().counters.full_attempts;
    let waiter =
        std::thread::spawn(move || e.submit_timeout(Job::new(20u64, 20), Duration::from_secs(600)));
    // It is waiting once it has looked more than once.
    wait_for(|| engine.metrics().counters.full_attempts > before + 1);
    engine.close();
    let answer = within("the waiting submit answers", move || waiter.join().unwrap());
    assert!(
        matches!(answer, Err(SubmitError::ShuttingDown(_))),
        "{answer:?}"
    );
    latch.open();
    assert!(engine.shutdown().counts.is_conserved());
}

/// 4. An async worker whose every slot is busy still fires a timer that
///    falls due: it does not spin with a zero park timeout (7 million parks
///    a second before the fix), and the due job runs once a slot frees.
#[test]
fn a_full_async_worker_does_not_spin_while_a_timer_is_due() {
    // The condition: the delayed job is in the worker's timer, and the
    // blocker holds the only slot before it falls due. A machine stalled
    // for longer than the delay loses it (the delayed job then starts
    // first, which the start order shows): run again with a longer delay.
    for delay_ms in [300u64, 1_000, 3_000] {
        if let Some(parks) = full_worker_with_a_due_timer(Duration::from_millis(delay_ms)) {
            // A sleeping worker parks a handful of times here; a spinning
            // one parks hundreds of thousands of times.
            assert!(
                parks < 1_000,
                "FAIL: {parks} parks in 200 ms with a due timer"
            );
            return;
        }
    }
    panic!("the blocker never started before the timer fell due");
}

/// Returns the parks counted over 200 ms while the timer is due and every
/// slot busy, or `None` if the condition could not be set up.
fn full_worker_with_a_due_timer(delay: Duration) -> Option<u64> {
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .concurrency(1)
        .build_async(move |_, &n| {
            o.lock().unwrap().push(n);
            let gate = g.clone();
            async move {
                if n == 0 {
                    Blocked(gate).await
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    // The delayed job first, while a slot is free: it is taken into the
    // worker's timer (the delayed gauge says so once the worker idles).
    engine.submit(Job::new(1u64, 1).delay(delay)).unwrap();
    wait_for(|| engine.metrics().gauges.delayed == 1 || !order.lock().unwrap().is_empty());
    // Then the blocker takes the only slot.
    engine.submit(Job::new(0u64, 0)).unwrap();
    wait_for(|| !order.lock().unwrap().is_empty());
    let set_up = order.lock().unwrap().first() == Some(&0);
    let mut parks = None;
    if set_up {
        // Past the delay: the timer has been due for a while.
        std::thread::sleep(delay + Duration::from_millis(50));
        let before = engine.metrics().counters.parks;
        std::thread::sleep(Duration::from_millis(200));
        parks = Some(engine.metrics().counters.parks - before);
        assert_eq!(
            order.lock().unwrap().len(),
            1,
            "the due job started with no slot"
        );
    }
    gate.release();
    let c = within("the due job runs once the slot frees", move || {
        engine.shutdown().counts
    });
    assert_eq!((c.accepted, c.completed), (2, 2), "{c:?}");
    parks
}

/// A value whose `Drop` panics: user state that quay must drop behind a
/// guard.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the handler's state panicked on drop");
    }
}

/// 5. A handler whose captured state panics on drop: the worker thread
///    that drops the handler last still hands over the jobs it held, and
///    shutdown accounts for every one.
#[test]
fn a_handler_state_that_panics_on_drop_loses_no_job() {
    let state = PanicsOnDrop;
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build(move |_, _| {
            let _keep = &state;
            Ok(())
        })
        .unwrap();
    for n in 0..10u64 {
        engine
            .submit(Job::new(n, n).delay(Duration::from_secs(3_600)))
            .unwrap();
    }
    let report = within("shutdown_now", move || engine.shutdown_now());
    assert_eq!(report.returned.len(), 10);
    let c = report.counts;
    assert_eq!((c.accepted, c.returned, c.held), (10, 10, 0), "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
}

// 6. A batch onto a sleeping engine: `tests/wake_spread.rs`.

/// 7. Dropping an engine runs the retries that fall due well inside its
///    grace; a job due after the grace is given up (its payload dropped
///    unrun), not waited for.
#[test]
fn drop_runs_retries_that_fall_due_within_its_grace() {
    struct Counted(Arc<AtomicU64>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let completed = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let c = completed.clone();
    let engine = Engine::<Counted>::builder()
        .workers(2)
        .pin_workers(false)
        .backoff(Duration::from_millis(20), Duration::from_millis(20))
        .jitter(false)
        .build(move |ctx, _| {
            if ctx.attempt() == 1 {
                return Err(JobError::retry("first try fails"));
            }
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    for n in 0..30u64 {
        engine
            .submit(Job::new(n, Counted(dropped.clone())))
            .unwrap();
    }
    engine
        .submit(Job::new(99u64, Counted(dropped.clone())).delay(Duration::from_secs(3_600)))
        .unwrap();
    // Every job has failed once and waits to retry.
    wait_for(|| engine.metrics().counters.retried == 30);
    within("drop", move || drop(engine));
    assert_eq!(
        completed.load(Ordering::Relaxed),
        30,
        "retries due within the grace ran"
    );
    // 30 payloads dropped after completing, one unrun.
    assert_eq!(dropped.load(Ordering::Relaxed), 31);
}

/// 8. `rejected_full` counts refused calls, not a waiting submit's tries:
///    one `Timeout` after many looks is one refusal; the looks are in
///    `full_attempts`. An async submit given up while waiting counts once.
#[test]
fn rejected_full_counts_calls_not_attempts() {
    let (engine, latch) = full_rings();
    let _open = OpenOnDrop(latch.clone());
    let m0 = engine.metrics().counters;
    let r = engine.submit_timeout(Job::new(30u64, 30), Duration::from_millis(50));
    assert!(matches!(r, Err(SubmitError::Timeout(_))), "{r:?}");
    let m1 = engine.metrics().counters;
    assert_eq!(m1.rejected_full - m0.rejected_full, 1);
    assert!(m1.full_attempts - m0.full_attempts > 1, "{m1:?}");
    // An async submit polled while full, then given up.
    let mut fut = Box::pin(engine.submit_async(Job::new(31u64, 31)));
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    for _ in 0..3 {
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    drop(fut);
    assert_eq!(
        engine.metrics().counters.rejected_full - m1.rejected_full,
        1
    );
    // A waiting submit that is then accepted is no refusal.
    let m2 = engine.metrics().counters;
    std::thread::scope(|s| {
        let h = s.spawn(|| engine.submit(Job::new(32u64, 32)));
        wait_for(|| engine.metrics().counters.full_attempts > m2.full_attempts + 1);
        latch.open();
        assert_eq!(h.join().unwrap().unwrap(), Submitted::Accepted);
    });
    assert_eq!(engine.metrics().counters.rejected_full, m2.rejected_full);
    assert!(engine.shutdown().counts.is_conserved());
}
