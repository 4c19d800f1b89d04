//! Every way quay says no, and what to do about it.
//!
//! 1. `BuildError`: a bad setting is a typed error naming the field.
//! 2. `SubmitError::Full` and `SubmitError::Timeout`: no room; the job comes
//!    back with `into_job`, to retry later or to refuse the request.
//! 3. `JobError::retry` (transient: retried with backoff) against
//!    `JobError::fatal` (permanent: straight to the dead-letter queue).
//! 4. `SubmitError::ShuttingDown`: the engine is gone; the job comes back.
//!
//! Run with `cargo run --example errors`.

use quay::{BuildError, Engine, Job, JobError, SubmitError, Submitted};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn main() {
    build_errors();
    no_room();
    handler_errors();
    shutting_down();
}

/// A bad setting never panics: `build` says which field is wrong.
fn build_errors() {
    println!("1. BuildError");
    let zero = Engine::<u32>::builder().workers(0).build(|_, _| Ok(()));
    match zero {
        Err(e) => {
            assert_eq!(e, BuildError::ZeroWorkers);
            println!("   workers(0)         -> {e}");
        }
        Ok(_) => unreachable!("0 workers accepted"),
    }
    let backoff = Engine::<u32>::builder()
        .backoff(Duration::from_secs(10), Duration::from_secs(1))
        .build(|_, _| Ok(()));
    match backoff {
        Err(e @ BuildError::Backoff { .. }) => println!("   backoff(10 s, 1 s) -> {e}"),
        other => unreachable!("{other:?}"),
    }
    let capacity = Engine::<u32>::builder().capacity(0).build(|_, _| Ok(()));
    match capacity {
        Err(e) => println!("   capacity(0)        -> {e}"),
        Ok(_) => unreachable!("capacity 0 accepted"),
    }
}

/// A gate the handler waits on, so the example controls when jobs finish.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// An engine holding `capacity` jobs refuses the next one, and hands it back.
fn no_room() {
    println!("2. SubmitError::Full and ::Timeout");
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let engine = Engine::<String>::builder()
        .workers(1)
        .capacity(2)
        .build(move |_, _| {
            g.wait();
            Ok(())
        })
        .unwrap();
    // Two jobs fill the engine: its capacity counts every job held, running
    // or queued, until it is done.
    for i in 0..2 {
        let r = engine.try_submit(Job::new(i as u64, format!("report {i}")));
        assert_eq!(r.unwrap(), Submitted::Accepted);
    }
    // try_submit never waits: no room is an immediate `Full`.
    let job = match engine.try_submit(Job::new(2u64, "report 2".to_string())) {
        Err(SubmitError::Full(job)) => {
            println!("   try_submit: Full, job {} handed back", job.id());
            job
        }
        other => unreachable!("{other:?}"),
    };
    // submit_timeout waits for room, up to its deadline. The jobs in the
    // engine wait on the gate, so no room comes and the job comes back.
    let err = engine
        .submit_timeout(job, Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(err, SubmitError::Timeout(_)));
    assert!(err.is_transient(), "Full and Timeout may succeed later");
    println!("   submit_timeout(20 ms): {err}");
    let job = err.into_job();
    println!("   the payload is intact: {:?}", job.payload());
    // Let the held jobs finish; a blocking submit then finds room.
    gate.open();
    assert_eq!(engine.submit(job).unwrap(), Submitted::Accepted);
    let report = engine.shutdown();
    println!(
        "   after the gate opened: completed {} of {} accepted",
        report.counts.completed, report.counts.accepted
    );
    assert_eq!(report.counts.completed, 3);
}

/// A transient failure is retried with backoff; a permanent one goes
/// straight to the dead-letter queue.
fn handler_errors() {
    println!("3. JobError::retry vs JobError::fatal");
    let engine = Engine::<&'static str>::builder()
        .workers(1)
        .max_attempts(std::num::NonZeroU32::new(5).unwrap())
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build(|ctx, what: &&str| match *what {
            // Fails twice (say, a timeout upstream), then succeeds.
            "flaky upstream" if ctx.attempt() <= 2 => Err(JobError::retry(format!(
                "timeout on attempt {}",
                ctx.attempt()
            ))),
            // Will never succeed: retrying would only waste attempts.
            "malformed address" => Err(JobError::fatal("address does not parse")),
            _ => Ok(()),
        })
        .unwrap();
    engine.submit(Job::new("a", "flaky upstream")).unwrap();
    engine.submit(Job::new("b", "malformed address")).unwrap();
    engine.submit(Job::new("c", "fine")).unwrap();
    // Shutdown waits for held jobs, retries included.
    let dead_letters = wait_for_rest(&engine);
    for d in &dead_letters {
        println!(
            "   dead letter {:?} after {} attempt(s): {}",
            d.job.payload(),
            d.attempts,
            d.last_error().unwrap_or("?")
        );
    }
    let c = engine.shutdown().counts;
    println!(
        "   completed {}, retried {}, dead {}",
        c.completed, c.retried, c.dead
    );
    assert_eq!((c.completed, c.retried, c.dead), (2, 2, 1));
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].attempts, 1, "fatal is not retried");
}

/// Waits until the engine holds nothing, and returns its dead letters.
fn wait_for_rest<T: Clone + Send + 'static>(engine: &Engine<T>) -> Vec<quay::DeadLetter<T>> {
    while engine.counts().held > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    engine.dead_letters()
}

/// After shutdown, a surviving `Submitter` gets `ShuttingDown` and its job.
fn shutting_down() {
    println!("4. SubmitError::ShuttingDown");
    let engine = Engine::<u32>::builder()
        .workers(1)
        .build(|_, _| Ok(()))
        .unwrap();
    let submitter = engine.submitter();
    drop(engine.shutdown());
    let err = submitter.try_submit(Job::new(7u64, 42)).unwrap_err();
    assert!(!err.is_transient(), "retrying will not help");
    println!("   {err}");
    let job = err.into_job();
    println!(
        "   job {} handed back with payload {}: store it, or refuse the request",
        job.id(),
        job.payload()
    );
}
