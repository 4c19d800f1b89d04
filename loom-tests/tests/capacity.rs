//! Loom models of capacity accounting (`src/capacity.rs`) through the public
//! API: the gate's acquire CAS, its release, and the eventcount that blocking
//! submits sleep on.
//!
//! The handler is held at a latch (a loom `AtomicBool` it spins on, yielding)
//! so that a job holds its unit of capacity until the model lets it finish:
//! the models decide when room is released, loom decides everything else.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::{Engine, Job, SubmitError, Submitted};

/// More yields than `submit`'s spin phase makes (16 attempts with an
/// exponential backoff, about 140 yields under loom).
const SUBMIT_SPIN_YIELDS: usize = 200;

/// A handler latch and a count of completed runs.
#[derive(Default)]
struct Latch {
    open: AtomicBool,
    ran: AtomicUsize,
}

impl Latch {
    fn open(&self) {
        // Release: nothing rides on it but the handler's progress.
        self.open.store(true, Ordering::Release);
    }

    fn ran(&self) -> usize {
        self.ran.load(Ordering::Relaxed)
    }
}

/// One worker, room for one job; every job waits at `latch` before it
/// completes.
fn engine(latch: &Arc<Latch>) -> Engine<u64> {
    let latch = latch.clone();
    parking_engine(1, 1, move |_, _| {
        while !latch.open.load(Ordering::Acquire) {
            thread::yield_now();
        }
        latch.ran.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

/// Two threads `try_submit` into an engine with room for one job. The job
/// that gets in cannot finish (latched), so exactly one is `Accepted` and
/// the other is refused with `Full`, with its own job handed back.
#[test]
fn two_try_submits_one_unit() {
    check("capacity::two_try_submits_one_unit", || {
        let latch = Arc::new(Latch::default());
        let engine = engine(&latch);
        let submitter = engine.submitter();
        let other = thread::spawn(move || submitter.try_submit(Job::new(1u64, 10)));
        let mine = engine.try_submit(Job::new(2u64, 20));
        let theirs = other.join().unwrap();
        let (won, lost) = match (mine, theirs) {
            (Ok(Submitted::Accepted), Err(e)) => (2u64, e),
            (Err(e), Ok(Submitted::Accepted)) => (1u64, e),
            (a, b) => panic!("want exactly one Accepted and one Full, got {a:?} and {b:?}"),
        };
        let loser = 3 - won;
        match lost {
            SubmitError::Full(job) => {
                assert_eq!(job.id(), loser.into(), "Full handed back the wrong job");
                assert_eq!(*job.payload(), loser * 10);
            }
            other => panic!("the refused job should be Full, got {other:?}"),
        }
        latch.open();
        let report = engine.shutdown();
        assert_eq!(latch.ran(), 1);
        let c = report.counts;
        assert_eq!(
            (c.accepted, c.completed, c.returned, c.held),
            (1, 1, 0, 0),
            "{c:?}"
        );
        assert!(c.is_conserved(), "{c:?}");
    });
}

/// A blocking `submit` into a full engine: it spins, then registers on the
/// gate and sleeps, while the main thread lets the held job finish at any
/// point. The worker's release must wake it (or its attempt must see the
/// room): a lost wake-up leaves it asleep and the model deadlocks.
#[test]
fn blocking_submit_wakes_on_release() {
    check("capacity::blocking_submit_wakes_on_release", || {
        let latch = Arc::new(Latch::default());
        let engine = engine(&latch);
        assert_eq!(
            engine
                .try_submit(Job::new(1u64, 1))
                .map_err(|e| format!("{e:?}")),
            Ok(Submitted::Accepted)
        );
        let submitter = engine.submitter();
        let blocked = thread::spawn(move || {
            submitter
                .submit(Job::new(2u64, 2))
                .map_err(|e| format!("{e:?}"))
        });
        // `submit` spins (a spin is a loom yield) before it sleeps on the
        // gate, and loom runs a yielding thread's peers first: without these
        // yields the latch would always open during that spin, and the
        // eventcount would never be exercised. Loom still moves the `open`
        // anywhere within the preemption bound.
        for _ in 0..SUBMIT_SPIN_YIELDS {
            thread::yield_now();
        }
        latch.open();
        assert_eq!(blocked.join().unwrap(), Ok(Submitted::Accepted));
        let report = engine.shutdown();
        assert_eq!(latch.ran(), 2);
        let c = report.counts;
        assert_eq!(
            (c.accepted, c.completed, c.returned, c.held),
            (2, 2, 0, 0),
            "{c:?}"
        );
        assert!(c.is_conserved(), "{c:?}");
    });
}
