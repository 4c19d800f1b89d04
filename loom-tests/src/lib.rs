//! Loom models of quay's protocols live in `tests/`; run them with `--cfg quay_loom` (see `docs/verification.md`).
//!
//! This library only holds the helper the models share: [`check`] runs one
//! model with loom's [`Builder`](loom::model::Builder), bounding preemptions
//! at 2 unless `LOOM_MAX_PREEMPTIONS` says otherwise (an unbounded search of
//! an engine model would not finish), and prints how many interleavings it
//! explored and how long that took. [`parking_engine`] builds the small
//! engine the whole-engine models share. [`run_child`] runs one `#[ignore]`d
//! model of this test binary in a child process, for the models that must
//! fail: a deadlock among several loom threads aborts the process, which
//! `#[should_panic]` cannot catch.

#[cfg(quay_loom)]
mod imp {
    use quay::{Engine, IdleStrategy, JobContext, JobError, SubmitError, Submitted};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    /// The engine the whole-engine models run: `workers` workers (unpinned)
    /// that park at once when idle, rings of 2 and room for `capacity` jobs.
    pub fn parking_engine<H>(workers: usize, capacity: u64, handler: H) -> Engine<u64>
    where
        H: Fn(&JobContext, &u64) -> Result<(), JobError> + Send + Sync + 'static,
    {
        Engine::<u64>::builder()
            .workers(workers)
            .pin_workers(false)
            .idle(IdleStrategy::Park)
            .ring_capacity(2)
            .capacity(capacity)
            .build(handler)
            .expect("valid settings")
    }

    /// The preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
    pub const DEFAULT_PREEMPTIONS: usize = 2;

    /// Runs `f` under loom for every interleaving within the preemption
    /// bound, then prints `name`, the bound, the number of executions and the
    /// time taken (visible with `--nocapture`, and in the log of a failure).
    pub fn check<F>(name: &str, f: F)
    where
        F: Fn() + Sync + Send + 'static,
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
        }
        // The engine models spin (a spin is a loom yield) and run a whole
        // worker loop; loom's default of 1 000 branches per execution is too
        // tight for them. The preemption bound, not this, bounds the search.
        if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
            builder.max_branches = 20_000;
        }
        let bound = builder.preemption_bound;
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let start = Instant::now();
        builder.check(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            f();
        });
        eprintln!(
            "loom model {name}: preemption bound {bound:?}, {} executions, {:.2?}",
            runs.load(Ordering::Relaxed),
            start.elapsed()
        );
    }

    /// What a child run of a model printed, and how it ended.
    #[derive(Debug)]
    pub struct ChildRun {
        /// The child's exit status.
        pub status: std::process::ExitStatus,
        /// Its standard error and output, joined.
        pub stderr: String,
    }

    /// Runs the `#[ignore]`d test `name` of the current test binary in a
    /// child process (same environment, so the same preemption bound) and
    /// returns how it ended. A child that cannot start is a failed run
    /// (the panic names why).
    pub fn run_child(name: &str) -> ChildRun {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                name,
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .expect("the test binary runs as a child");
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.push_str(&String::from_utf8_lossy(&out.stdout));
        ChildRun {
            status: out.status,
            stderr,
        }
    }

    /// Asserts that the `#[ignore]`d model `name` deadlocks, run in a child
    /// process ([`run_child`]): the evidence that a model tells a rule
    /// from the one before its fix.
    pub fn assert_child_deadlocks(name: &str) {
        let out = run_child(name);
        assert!(
            !out.status.success() && out.stderr.contains("deadlock"),
            "the model {name} did not deadlock: status {:?}, stderr:\n{}",
            out.status,
            out.stderr
        );
    }

    /// Two jobs' handlers that can only finish together: each [`Meet::run`]
    /// waits until both are running.
    #[derive(Default)]
    pub struct Meet {
        running: loom::sync::Mutex<usize>,
        cv: loom::sync::Condvar,
    }

    impl Meet {
        /// A job's handler: waits until both jobs are running.
        pub fn run(&self) {
            let mut r = self.running.lock().unwrap();
            *r += 1;
            self.cv.notify_all();
            while *r < 2 {
                r = self.cv.wait(r).unwrap();
            }
        }
    }

    /// Worker `w`'s loop (`Worker::run`, `Worker::sleep`) on shard 0's
    /// `ring` with the real `idle`, until it has popped one job: pop, and
    /// finding nothing announce, re-check (a pop), then cancel or park; a
    /// wake-up handed to it is passed on after a claim that took work.
    pub fn pop_or_sleep(idle: &quay::__loom::Idle, ring: &quay::__loom::Ring<u64>, w: usize) {
        let has_work = |s: usize| s == 0 && !ring.is_empty();
        let mut handed = false;
        loop {
            let found = ring.pop().is_some();
            if std::mem::take(&mut handed) && found {
                idle.pass_on(w, has_work);
            }
            if found {
                return;
            }
            let a = idle.announce(w);
            if ring.pop().is_some() {
                if idle.cancel(a) {
                    idle.pass_on(w, has_work);
                }
                return;
            }
            handed = idle.sleep(a);
        }
    }

    /// A submit of job `payload` racing a close: `true` if it was accepted,
    /// `false` if it was refused with `ShuttingDown` and handed back. Any
    /// other answer fails the model.
    pub fn accepted_unless_closed(r: Result<Submitted, SubmitError<u64>>, payload: u64) -> bool {
        match r {
            Ok(s) => {
                assert_eq!(s, Submitted::Accepted);
                true
            }
            Err(SubmitError::ShuttingDown(job)) => {
                assert_eq!(*job.payload(), payload);
                false
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[cfg(quay_loom)]
pub use imp::*;
