//! Loom models of the shutdown protocol (`src/shutdown.rs`) racing a
//! producer: the gate's close bit decides, in one RMW, whether a submit is
//! accepted (and then accounted for) or refused; the drain after joining the
//! workers catches a job whose producer acquired before the close but pushed
//! after it.
//!
//! Every model checks, for every interleaving within the preemption bound,
//! that each job is exactly one of: ran, returned by shutdown, or handed back
//! to its producer (`ShuttingDown` or `Full`): never both, never neither;
//! and that the report's counts are conserved with nothing held.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::{Engine, Job, SubmitError, Submitted};
use std::sync::Mutex;

/// The jobs the producer submits, in order: IDs 1 and 2, payload = ID.
const JOBS: [u64; 2] = [1, 2];

/// One worker, ring 2, room for 2; the handler counts each job's runs.
fn engine(ran: &Arc<Vec<AtomicUsize>>) -> Engine<u64> {
    let ran = ran.clone();
    parking_engine(1, 2, move |_, &id| {
        ran[id as usize].fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

/// What became of one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Ran,
    Returned,
    Refused,
}

/// Spawns a producer that `try_submit`s [`JOBS`] through a `Submitter`,
/// runs `shutdown` on the main thread meanwhile, and returns each job's
/// fate after checking that it has exactly one.
fn race(shutdown: fn(&Engine<u64>) -> quay::Shutdown<u64>) -> Vec<Fate> {
    let ran = Arc::new(
        (0..=JOBS.len())
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let engine = engine(&ran);
    let submitter = engine.submitter();
    let producer = thread::spawn(move || {
        JOBS.iter()
            .map(|&id| submitter.try_submit(Job::new(id, id)))
            .collect::<Vec<_>>()
    });
    let report = shutdown(&engine);
    let submitted = producer.join().unwrap();
    let c = report.counts;
    assert!(c.is_conserved(), "{c:?}");
    assert_eq!((c.held, c.dead), (0, 0), "{c:?}");
    let mut returned = vec![0usize; JOBS.len() + 1];
    for job in &report.returned {
        assert_eq!(
            job.id(),
            (*job.payload()).into(),
            "a returned job lost its payload"
        );
        returned[*job.payload() as usize] += 1;
    }
    let mut fates = Vec::new();
    let (mut accepted, mut completed) = (0, 0);
    for (&id, result) in JOBS.iter().zip(submitted) {
        let runs = ran[id as usize].load(Ordering::Relaxed);
        let back = returned[id as usize];
        completed += runs as u64;
        fates.push(match result {
            Ok(Submitted::Accepted) => {
                accepted += 1;
                match (runs, back) {
                    (1, 0) => Fate::Ran,
                    (0, 1) => Fate::Returned,
                    _ => panic!("accepted job {id} ran {runs} times, returned {back} times"),
                }
            }
            Err(SubmitError::ShuttingDown(job)) | Err(SubmitError::Full(job)) => {
                assert_eq!(
                    (job.id(), *job.payload()),
                    (id.into(), id),
                    "wrong job handed back"
                );
                assert_eq!(
                    (runs, back),
                    (0, 0),
                    "refused job {id} also ran or came back"
                );
                Fate::Refused
            }
            other => panic!("unexpected submit result {other:?}"),
        });
    }
    assert_eq!((c.accepted, c.completed), (accepted, completed), "{c:?}");
    assert_eq!(c.returned, report.returned.len() as u64, "{c:?}");
    fates
}

/// Records which fates one model has reached, to check afterwards that the
/// interleavings that matter were explored at all.
struct Seen(Mutex<Vec<Fate>>);

impl Seen {
    const fn new() -> Seen {
        Seen(Mutex::new(Vec::new()))
    }

    fn add(&self, fates: &[Fate]) {
        let mut seen = self.0.lock().unwrap();
        seen.extend_from_slice(fates);
        seen.sort();
        seen.dedup();
    }

    fn get(&self) -> Vec<Fate> {
        self.0.lock().unwrap().clone()
    }
}

/// `shutdown_now` racing two `try_submit`s: an accepted job may run (the
/// worker took it before `stop`) or come back in `returned`; a refused one
/// is handed back to its producer.
#[test]
fn shutdown_now_races_try_submit() {
    static SEEN: Seen = Seen::new();
    check("shutdown::shutdown_now_races_try_submit", || {
        SEEN.add(&race(Engine::shutdown_now));
    });
    // Every fate must be reachable, or the model is not exploring the race.
    let all = [Fate::Ran, Fate::Returned, Fate::Refused];
    assert_eq!(SEEN.get(), all, "fates reached");
}

/// Graceful `shutdown` racing two `try_submit`s: an accepted job must run,
/// even if its producer acquired capacity before the close and pushes after
/// it; nothing comes back.
#[test]
fn graceful_shutdown_runs_every_accepted_job() {
    static SEEN: Seen = Seen::new();
    check(
        "shutdown::graceful_shutdown_runs_every_accepted_job",
        || {
            let fates = race(Engine::shutdown);
            assert!(
                !fates.contains(&Fate::Returned),
                "graceful shutdown returned an accepted job: {fates:?}"
            );
            SEEN.add(&fates);
        },
    );
    assert_eq!(SEEN.get(), [Fate::Ran, Fate::Refused], "fates reached");
}
