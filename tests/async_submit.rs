//! `submit_async`: waits for room without blocking, under any executor;
//! wakes on a release and on ring or inbox room a worker frees; dropping it
//! unfinished submits nothing.
//!
//! Each test forces the state it checks (a handler held by a latch, a job
//! parked to retry in an hour) and polls the future by hand with a waker
//! that counts its wake-ups, so nothing depends on the scheduler.

mod common;

use common::{wait_for, Latch};
use quay::{Engine, IdleStrategy, Job, JobError, SubmitError, Submitted};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// One worker whose first job blocks on `latch`.
fn held_engine(latch: &Arc<Latch>, capacity: u64) -> Engine<u64> {
    let l = latch.clone();
    Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .capacity(capacity)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap()
}

#[test]
fn waits_for_a_release_then_is_accepted() {
    let latch = Latch::new();
    let engine = held_engine(&latch, 1);
    assert!(matches!(
        engine.try_submit(Job::new(1u64, 1)),
        Ok(Submitted::Accepted)
    ));
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut fut = engine.submit_async(Job::new(2u64, 2));
    // Full: the first poll parks the waker and hands nothing to the engine.
    assert!(poll_once(&mut fut, &waker).is_pending());
    assert_eq!(engine.counts().accepted, 1);
    latch.open();
    // The worker's release (job 1 done) must wake the task.
    wait_for(|| flag.0.load(Ordering::SeqCst) > 0);
    assert!(matches!(
        poll_once(&mut fut, &waker),
        Poll::Ready(Ok(Submitted::Accepted))
    ));
    drop(fut);
    let report = engine.shutdown();
    assert_eq!((report.counts.accepted, report.counts.completed), (2, 2));
    assert!(report.counts.is_conserved());
}

/// Room that no release announces: the inbox is full of jobs delayed by an
/// hour while the gate has capacity, and the only job that ran is parked
/// to retry in an hour, so no capacity is ever released. Only the worker's
/// claim of the inbox (`room_freed`) can wake the waiting submit.
#[test]
fn wakes_when_a_worker_frees_inbox_room() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .idle(IdleStrategy::Park)
        .capacity(1_000)
        .ring_capacity(4)
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .jitter(false)
        .build(move |_, _| {
            l.wait();
            Err(JobError::retry("again in an hour"))
        })
        .unwrap();
    assert!(matches!(
        engine.try_submit(Job::new(0u64, 0)),
        Ok(Submitted::Accepted)
    ));
    // The worker is inside job 0's handler: fill the inbox.
    wait_for(|| engine.metrics().counters.started == 1);
    let hour = Duration::from_secs(3600);
    let mut id = 1u64;
    loop {
        match engine.try_submit(Job::new(id, id).delay(hour)) {
            Ok(Submitted::Accepted) => id += 1,
            Err(SubmitError::Full(_)) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        engine.counts().held < engine.capacity(),
        "the gate has room"
    );
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut fut = engine.submit_async(Job::new(id, id).delay(hour));
    assert!(poll_once(&mut fut, &waker).is_pending());
    // Job 0 fails and waits an hour to retry (no release); the worker then
    // claims the inbox into its timer, which frees the room.
    latch.open();
    wait_for(|| flag.0.load(Ordering::SeqCst) > 0);
    assert!(matches!(
        poll_once(&mut fut, &waker),
        Poll::Ready(Ok(Submitted::Accepted))
    ));
    drop(fut);
    let report = engine.shutdown_now();
    let c = report.counts;
    assert_eq!(c.accepted, id + 1);
    assert_eq!(c.returned, id + 1, "{c:?}");
    assert!(c.is_conserved(), "{c:?}");
}

/// A payload that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropped_unfinished_submits_nothing_and_into_job_hands_it_back() {
    let latch = Latch::new();
    let l = latch.clone();
    let engine = Engine::<Counted>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(1)
        .build(move |_, _| {
            l.wait();
            Ok(())
        })
        .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let c = |id: u64| Job::new(id, Counted(drops.clone()));
    assert!(engine.try_submit(c(1)).is_ok());
    let waker = Waker::from(Arc::new(Flag::default()));
    let mut dropped = engine.submit_async(c(2));
    assert!(poll_once(&mut dropped, &waker).is_pending());
    drop(dropped);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the job went with the future"
    );
    let mut back = engine.submit_async(c(3));
    assert!(poll_once(&mut back, &waker).is_pending());
    let job = back.into_job().expect("not submitted");
    assert_eq!(job.id(), quay::JobId::from(3u64));
    latch.open();
    // Neither took capacity or an ID: both submit again as new jobs.
    assert!(matches!(engine.submit(c(2)), Ok(Submitted::Accepted)));
    assert!(matches!(engine.submit(job), Ok(Submitted::Accepted)));
    let report = engine.shutdown();
    assert_eq!((report.counts.accepted, report.counts.completed), (3, 3));
    assert!(report.counts.is_conserved());
}

#[test]
fn closed_engine_answers_shutting_down_and_wakes_waiters() {
    let latch = Latch::new();
    let engine = held_engine(&latch, 1);
    assert!(engine.try_submit(Job::new(1u64, 1)).is_ok());
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut fut = engine.submit_async(Job::new(2u64, 2));
    assert!(poll_once(&mut fut, &waker).is_pending());
    engine.close();
    assert!(
        flag.0.load(Ordering::SeqCst) > 0,
        "close wakes every waiter"
    );
    match poll_once(&mut fut, &waker) {
        Poll::Ready(Err(SubmitError::ShuttingDown(job))) => assert_eq!(*job.payload(), 2),
        other => panic!("{other:?}"),
    }
    drop(fut);
    latch.open();
    assert!(engine.shutdown().counts.is_conserved());
}

/// Many tasks on one executor thread submit 2 000 jobs into an engine of
/// 8: each waits for room without blocking the others (a blocking submit
/// here would stall the thread, and with it every other task).
fn many_tasks_through_a_small_engine<S>(spawn_all: S)
where
    S: FnOnce(Arc<Engine<u64>>, Vec<u64>),
{
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let engine = Arc::new(
        Engine::<u64>::builder()
            .workers(2)
            .pin_workers(false)
            .capacity(8)
            .ring_capacity(4)
            .build(move |_, _| {
                r.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap(),
    );
    spawn_all(engine.clone(), (0..2_000).collect());
    let engine = Arc::into_inner(engine).expect("tasks done");
    let report = engine.shutdown();
    assert_eq!(report.counts.accepted, 2_000);
    assert_eq!(ran.load(Ordering::Relaxed), 2_000);
    assert!(report.counts.is_conserved());
}

async fn submit_all(engine: Arc<Engine<u64>>, ids: Vec<u64>) {
    for id in ids {
        let key = id % 7;
        let answer = engine.submit_async(Job::new(id, id).keyed(key)).await;
        assert!(matches!(answer, Ok(Submitted::Accepted)), "{answer:?}");
    }
}

fn chunks(ids: Vec<u64>) -> Vec<Vec<u64>> {
    ids.chunks(250).map(|c| c.to_vec()).collect()
}

/// Runs the tasks on a tokio runtime built by `builder`.
fn on_tokio(mut builder: tokio::runtime::Builder) {
    many_tasks_through_a_small_engine(|engine, ids| {
        let rt = builder.build().unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = chunks(ids)
                .into_iter()
                .map(|c| tokio::spawn(submit_all(engine.clone(), c)))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
}

#[test]
fn under_tokio_current_thread() {
    on_tokio(tokio::runtime::Builder::new_current_thread());
}

#[test]
fn under_tokio_multi_thread() {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2);
    on_tokio(b);
}

#[test]
fn under_smol() {
    many_tasks_through_a_small_engine(|engine, ids| {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let tasks: Vec<_> = chunks(ids)
                .into_iter()
                .map(|c| ex.spawn(submit_all(engine.clone(), c)))
                .collect();
            for t in tasks {
                t.await;
            }
        }));
    });
}

#[test]
fn under_futures_executor() {
    many_tasks_through_a_small_engine(|engine, ids| {
        use futures::task::LocalSpawnExt;
        let mut pool = futures::executor::LocalPool::new();
        let spawner = pool.spawner();
        for c in chunks(ids) {
            spawner.spawn_local(submit_all(engine.clone(), c)).unwrap();
        }
        pool.run();
    });
}

/// Inside a handler of the same engine it never waits (its own worker may
/// be the one that must free the room): it answers as `try_submit` does.
#[test]
fn inside_a_handler_it_answers_at_once() {
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = answers.clone();
    let cell: Arc<std::sync::OnceLock<quay::Submitter<u64>>> = Arc::new(Default::default());
    let c = cell.clone();
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .capacity(1)
        .build(move |_, n| {
            if *n == 1 {
                let s = c.get().expect("set before the first submit");
                let answer = futures::executor::block_on(s.submit_async(Job::new(2u64, 2)));
                a.lock().unwrap().push(format!("{answer:?}"));
            }
            Ok(())
        })
        .unwrap();
    cell.set(engine.submitter()).ok().unwrap();
    engine.submit(Job::new(1u64, 1)).unwrap();
    wait_for(|| !answers.lock().unwrap().is_empty());
    assert!(
        answers.lock().unwrap()[0].starts_with("Err(Full"),
        "{answers:?}"
    );
    assert!(engine.shutdown().counts.is_conserved());
}
