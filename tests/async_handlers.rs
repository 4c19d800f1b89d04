//! Async handlers (`Builder::build_async`, `Runtime::add_async_lane`):
//! many attempts in flight per worker, and every guarantee of the sync
//! path: per-key order, retries, the DLQ, panics, timeouts, shutdown and
//! conservation.
//!
//! The handlers' futures wait on an async latch the test opens, so "all in
//! flight at once" and "none ended yet" are forced, not timed.

mod common;

use common::wait_for;
use quay::{Engine, IdleStrategy, Job, JobError, Runtime};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// An async latch: futures from `wait()` are pending until `open()`.
#[derive(Default)]
struct AsyncLatch {
    open: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl AsyncLatch {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        for w in self.wakers.lock().unwrap().drain(..) {
            w.wake();
        }
    }

    fn wait(self: &Arc<Self>) -> impl Future<Output = ()> {
        let me = self.clone();
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if me.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            me.wakers.lock().unwrap().push(cx.waker().clone());
            // Re-check after registering: `open` may have drained already.
            if me.open.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Yields once (wakes itself), so a future really suspends.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// The future of a test handler.
type Attempt = std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>>>>;

/// An async handler that counts its starts, then waits at `latch`.
fn latched(
    latch: &Arc<AsyncLatch>,
    started: &Arc<AtomicUsize>,
) -> impl Fn(quay::JobContext, &u64) -> Attempt + Send + Sync + 'static {
    let (l, s) = (latch.clone(), started.clone());
    move |_, _| {
        s.fetch_add(1, Ordering::SeqCst);
        let wait = l.wait();
        Box::pin(async move {
            wait.await;
            Ok(())
        })
    }
}

#[test]
fn each_worker_runs_up_to_concurrency_attempts_at_once() {
    let latch = Arc::new(AsyncLatch::default());
    let started = Arc::new(AtomicUsize::new(0));
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .concurrency(8)
        .build_async(latched(&latch, &started))
        .unwrap();
    for id in 0..40u64 {
        engine.submit(Job::new(id, id)).unwrap();
    }
    // 2 workers × 8 slots: 16 attempts wait at the latch together, and no
    // more start while they do.
    wait_for(|| started.load(Ordering::SeqCst) == 16);
    let m = engine.metrics();
    assert_eq!((m.counters.started, m.counters.completed), (16, 0));
    latch.open();
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 40);
    assert_eq!(started.load(Ordering::SeqCst), 40);
    assert!(report.counts.is_conserved());
}

#[test]
fn a_key_runs_one_attempt_at_a_time_in_submit_order() {
    let log = Arc::new(Mutex::new(HashMap::<u64, Vec<u64>>::new()));
    let busy = Arc::new(Mutex::new(HashMap::<u64, bool>::new()));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (lg, b, o) = (log.clone(), busy.clone(), overlaps.clone());
    let engine = Engine::<(u64, u64)>::builder()
        .workers(2)
        .pin_workers(false)
        .concurrency(16)
        .build_async(move |_, &(key, seq): &(u64, u64)| {
            let (lg, b, o) = (lg.clone(), b.clone(), o.clone());
            async move {
                if b.lock().unwrap().insert(key, true) == Some(true) {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                yield_now().await;
                lg.lock().unwrap().entry(key).or_default().push(seq);
                yield_now().await;
                b.lock().unwrap().insert(key, false);
                Ok(())
            }
        })
        .unwrap();
    let mut id = 0u64;
    for seq in 0..50u64 {
        for key in 0..6u64 {
            engine.submit(Job::new(id, (key, seq)).keyed(key)).unwrap();
            id += 1;
        }
    }
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 300);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "a key ran two at once");
    for (key, seqs) in log.lock().unwrap().iter() {
        assert_eq!(*seqs, (0..50).collect::<Vec<_>>(), "key {key}");
    }
}

#[test]
fn failures_retry_and_die_into_the_dlq_and_panics_are_failed_attempts() {
    let engine = Engine::<&'static str>::builder()
        .workers(1)
        .pin_workers(false)
        .max_attempts(NonZeroU32::new(3).unwrap())
        .backoff(Duration::from_micros(10), Duration::from_micros(10))
        .build_async(|ctx, kind: &&'static str| {
            let kind = *kind;
            async move {
                yield_now().await;
                match kind {
                    "fatal" => Err(JobError::fatal("bad address")),
                    "panics" => panic!("template missing"),
                    "flaky" if ctx.attempt() < 3 => Err(JobError::retry("smtp 421")),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    for (id, kind) in [(1u64, "fatal"), (2, "panics"), (3, "flaky"), (4, "fine")] {
        engine.submit(Job::new(id, kind)).unwrap();
    }
    wait_for(|| engine.counts().held == 0);
    let dead = engine.drain_dead();
    let mut kinds: Vec<&str> = dead.iter().map(|d| *d.job.payload()).collect();
    kinds.sort();
    assert_eq!(kinds, ["fatal", "panics"]);
    let panics = dead.iter().find(|d| *d.job.payload() == "panics").unwrap();
    assert_eq!(panics.attempts, 3);
    assert!(panics.last_error().unwrap().contains("template missing"));
    let report = engine.shutdown();
    let c = report.counts;
    assert_eq!((c.completed, c.dead, c.retried), (2, 2, 4), "{c:?}");
    assert!(c.is_conserved());
}

/// Counts drops of the futures it wraps.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn an_attempt_past_its_timeout_is_dropped_and_retried_then_dies() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .max_attempts(NonZeroU32::new(2).unwrap())
        .backoff(Duration::from_micros(10), Duration::from_micros(10))
        .attempt_timeout(Duration::from_millis(5))
        .build_async(move |_, _| {
            let guard = Tracked(d.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    engine.submit(Job::new(1u64, 1)).unwrap();
    wait_for(|| engine.counts().dead == 1);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "each timed-out future dropped"
    );
    let dead = engine.drain_dead();
    assert!(
        dead[0].last_error().unwrap().contains("timed out"),
        "{dead:?}"
    );
    assert!(engine.shutdown().counts.is_conserved());
}

#[test]
fn graceful_shutdown_waits_for_attempts_in_flight() {
    let latch = Arc::new(AsyncLatch::default());
    let started = Arc::new(AtomicUsize::new(0));
    let engine = Arc::new(
        Engine::<u64>::builder()
            .workers(1)
            .pin_workers(false)
            .concurrency(4)
            .build_async(latched(&latch, &started))
            .unwrap(),
    );
    for id in 0..4u64 {
        engine.submit(Job::new(id, id)).unwrap();
    }
    wait_for(|| started.load(Ordering::SeqCst) == 4);
    let e = engine.clone();
    let shutdown = std::thread::spawn(move || e.shutdown());
    wait_for(|| engine.is_closed());
    latch.open();
    let report = shutdown.join().unwrap();
    let c = report.counts;
    assert_eq!((c.completed, c.returned), (4, 0), "{c:?}");
    assert!(report.returned.is_empty());
}

#[test]
fn shutdown_past_its_deadline_returns_the_attempts_in_flight() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .concurrency(4)
        .build_async(move |_, _| {
            let guard = Tracked(d.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    for id in 0..6u64 {
        engine.submit(Job::new(id, id).keyed(id % 2)).unwrap();
    }
    wait_for(|| engine.metrics().counters.started == 2);
    let report = engine.shutdown_timeout(Duration::from_millis(1));
    let c = report.counts;
    assert_eq!((c.accepted, c.completed, c.returned), (6, 0, 6), "{c:?}");
    assert!(c.is_conserved());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "the in-flight futures dropped"
    );
    // Per key, the in-flight (oldest) job comes back first.
    for key in 0..2u64 {
        let ids: Vec<u64> = report
            .returned
            .iter()
            .map(|j| *j.payload())
            .filter(|p| p % 2 == key)
            .collect();
        assert_eq!(ids, [key, key + 2, key + 4]);
    }
}

#[test]
fn tokio_timers_work_inside_a_worker_context() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let handle = tokio.handle().clone();
    let rt = Runtime::new();
    let lane = rt
        .add_async_lane(
            "io",
            Engine::<u64>::builder()
                .workers(1)
                .pin_workers(false)
                .concurrency(64)
                .worker_context(move |run| {
                    let _entered = handle.enter();
                    run()
                }),
            |_, ms: &u64| {
                let ms = *ms;
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(())
                }
            },
        )
        .unwrap();
    for id in 0..200u64 {
        lane.submit(Job::new(id, 1 + id % 5)).unwrap();
    }
    let report = rt.shutdown();
    assert_eq!(report.counts().completed, 200);
    assert!(report.is_conserved());
}

#[test]
fn a_context_that_never_calls_run_strands_nothing() {
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .worker_context(|_run| panic!("misconfigured"))
        .build(|_, _| Ok(()))
        .unwrap();
    engine.submit(Job::new(1u64, 1)).unwrap();
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 1);
    assert_eq!(engine.metrics().counters.contained_panics, 1);
}

#[test]
fn bad_settings_are_typed_errors() {
    let e = Engine::<u64>::builder()
        .concurrency(0)
        .build_async(|_, _| async { Ok(()) });
    assert_eq!(e.unwrap_err(), quay::BuildError::Concurrency(0));
    let e = Engine::<u64>::builder()
        .attempt_timeout(Duration::ZERO)
        .build_async(|_, _| async { Ok(()) });
    assert_eq!(e.unwrap_err(), quay::BuildError::AttemptTimeout);
}

#[test]
fn futures_need_not_be_send() {
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .build_async(|_, n: &u64| {
            let local = std::rc::Rc::new(*n);
            async move {
                yield_now().await;
                assert_eq!(*local, 5);
                Ok(())
            }
        })
        .unwrap();
    engine.submit(Job::new(1u64, 5)).unwrap();
    assert_eq!(engine.shutdown().counts.completed, 1);
}

/// The deterministic driver runs async handlers through the same state
/// machine: attempts in flight keep their key busy, end when polled, and
/// time out on the manual clock.
#[test]
fn the_driver_runs_async_attempts_on_its_manual_clock() {
    use quay::{Settled, Started};
    let mut d = Engine::<u64>::builder()
        .max_attempts(NonZeroU32::new(2).unwrap())
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .jitter(false)
        .attempt_timeout(Duration::from_secs(30))
        .concurrency(2)
        .driver()
        .unwrap();
    for id in 0..3u64 {
        d.submit(Job::new(id, id).keyed(7u64)).unwrap();
    }
    d.submit(Job::new(10u64, 10)).unwrap();
    let latch = Arc::new(AsyncLatch::default());
    let handler = |l: Arc<AsyncLatch>| {
        move |_, n: &u64| {
            let (n, wait) = (*n, l.wait());
            async move {
                if n == 10 {
                    std::future::pending::<()>().await;
                }
                wait.await;
                Ok(())
            }
        }
    };
    // Job 0 (key 7) and job 10 start; job 1 waits behind job 0's key.
    assert!(matches!(
        d.start_async(handler(latch.clone())),
        Some(Started::Pending(_))
    ));
    assert!(matches!(
        d.start_async(handler(latch.clone())),
        Some(Started::Pending(_))
    ));
    assert_eq!(d.in_flight(), 2);
    assert!(
        d.start_async(handler(latch.clone())).is_none(),
        "slots full"
    );
    assert!(d.poll_async().is_empty(), "nothing woken");
    latch.open();
    let steps = d.poll_async();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].settled, Settled::Completed);
    // Job 10 never ends: past its limit on the manual clock it fails,
    // retries after 1 s, and dies on its second timeout.
    d.advance(Duration::from_secs(30));
    let steps = d.poll_async();
    assert_eq!((steps.len(), steps[0].settled), (1, Settled::Retrying));
    // Key 7's next job runs now; then the retry of job 10 once due.
    while let Some(s) = d.start_async(handler(latch.clone())) {
        assert!(matches!(s, Started::Ended(_)), "{s:?}");
    }
    d.advance(Duration::from_secs(1));
    assert!(matches!(
        d.start_async(handler(latch.clone())),
        Some(Started::Pending(_))
    ));
    d.advance(Duration::from_secs(30));
    assert_eq!(d.poll_async()[0].settled, Settled::Dead);
    let c = d.counts();
    assert_eq!((c.completed, c.dead, c.held), (3, 1, 0), "{c:?}");
    assert!(d.dead_letters()[0]
        .last_error()
        .unwrap()
        .contains("timed out"));
}
