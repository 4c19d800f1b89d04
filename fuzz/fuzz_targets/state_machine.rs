//! The retry/DLQ state machine against a plain model.
//!
//! Operations drive quay's deterministic `Driver` (the very state machine
//! the threaded engine's workers run) and a reference model written here
//! with a `HashMap` and `VecDeque`s. After every step: dedup answers match,
//! attempts stay within the limit, per-key order holds, delays never start
//! early, no job succeeds twice, the DLQ matches, and conservation holds.
//!
//! Async attempts run through the same driver (`start_async`,
//! `poll_async`): each future is pending for a chosen number of polls
//! (waking itself), then ends with its outcome; attempts in flight keep
//! their key busy and time out on the manual clock.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quay::{Engine, Job, JobError, RedriveError, Settled, Started, SubmitError, Submitted};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

const WINDOW_MS: u64 = 100;
const MAX_ATTEMPTS: u32 = 3;
const CAPACITY: usize = 12;
const DLQ: usize = 4;
const CONCURRENCY: usize = 2;
const TIMEOUT_MS: u64 = 30;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Retry,
    Fatal,
    Panic,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Submit { id: u8, key: Option<u8>, delay_ms: Option<u8> },
    Run(Outcome),
    StartAsync { polls: u8, outcome: Outcome },
    PollAsync,
    Advance { ms: u8 },
    Redrive { id: u8 },
    ShutdownNow,
}

struct MJob {
    key: Option<u64>,
    attempts: u32,
    /// Not before this time (ms): accept + delay, or redrive time.
    due: u64,
}

/// Pending for `left` more polls (waking itself), then `outcome`.
struct Countdown {
    left: u8,
    outcome: Outcome,
}

impl Future for Countdown {
    type Output = Result<(), JobError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left > 0 {
            self.left -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(result(self.outcome))
    }
}

fn result(outcome: Outcome) -> Result<(), JobError> {
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Retry => Err(JobError::retry("fuzz")),
        Outcome::Fatal => Err(JobError::fatal("fuzz")),
        Outcome::Panic => panic!("injected panic"),
    }
}

/// An async attempt in flight, as the model sees it.
struct Flight {
    left: u8,
    outcome: Outcome,
    deadline: u64,
}

#[derive(Default)]
struct Model {
    now: u64,
    closed: bool,
    live: HashMap<u64, MJob>,
    /// Finished IDs and when they finished.
    done: HashMap<u64, u64>,
    /// Per key, live jobs in accept order.
    keys: HashMap<u64, VecDeque<u64>>,
    /// Dead letters: (id, key), oldest first.
    dlq: VecDeque<(u64, Option<u64>)>,
    completed: u64,
    dead: u64,
    returned: u64,
    accepted: u64,
    /// Async attempts in flight, by ID.
    flights: HashMap<u64, Flight>,
}

impl Model {
    fn remembered(&self, id: u64) -> bool {
        self.live.contains_key(&id) || self.done.get(&id).is_some_and(|&t| self.now - t < WINDOW_MS)
    }

    fn accept(&mut self, id: u64, key: Option<u64>, due: u64) {
        self.accepted += 1;
        self.done.remove(&id);
        self.live.insert(id, MJob { key, attempts: 0, due });
        if let Some(k) = key {
            self.keys.entry(k).or_default().push_back(id);
        }
    }

    /// Ends a live job; returns its key.
    fn end(&mut self, id: u64) -> Option<u64> {
        let job = self.live.remove(&id).expect("model: ended job is live");
        if let Some(k) = job.key {
            let q = self.keys.get_mut(&k).expect("model: key queue");
            assert_eq!(q.pop_front(), Some(id));
            if q.is_empty() {
                self.keys.remove(&k);
            }
        }
        self.done.insert(id, self.now);
        job.key
    }

    /// A job the driver must be able to start now: never started (or
    /// redriven), due, and unkeyed or at its key's head.
    fn surely_runnable(&self) -> Option<u64> {
        self.live.iter().find_map(|(&id, j)| {
            let head = j.key.map_or(true, |k| self.keys[&k].front() == Some(&id));
            (j.attempts == 0 && j.due <= self.now && head).then_some(id)
        })
    }
}

fuzz_target!(|ops: Vec<Op>| {
    std::panic::set_hook(Box::new(|info| {
        if !info.to_string().contains("injected panic") {
            eprintln!("{info}");
        }
    }));
    let mut d = Engine::<u64>::builder()
        .capacity(CAPACITY as u64)
        .max_attempts(NonZeroU32::new(MAX_ATTEMPTS).unwrap())
        .dedup_window(Duration::from_millis(WINDOW_MS))
        .dedup_capacity(100_000)
        .dlq_capacity(DLQ)
        .backoff(Duration::from_millis(1), Duration::from_millis(8))
        .seed(7)
        .concurrency(CONCURRENCY)
        .attempt_timeout(Duration::from_millis(TIMEOUT_MS))
        .driver()
        .expect("valid settings");
    let mut m = Model::default();
    for op in ops.into_iter().take(400) {
        match op {
            Op::Submit { id, key, delay_ms } => {
                let (id, key) = (id as u64 % 8, key.map(|k| k as u64 % 3));
                let mut job = Job::new(id, id);
                if let Some(k) = key {
                    job = job.keyed(k);
                }
                if let Some(ms) = delay_ms {
                    job = job.delay(Duration::from_millis(ms as u64 % 20));
                }
                let got = d.submit(job);
                if m.closed {
                    assert!(matches!(got, Err(SubmitError::ShuttingDown(_))));
                } else if m.live.len() >= CAPACITY {
                    assert!(matches!(got, Err(SubmitError::Full(_))));
                } else if m.remembered(id) {
                    assert_eq!(got.ok(), Some(Submitted::Duplicate), "dedup answer");
                } else {
                    assert_eq!(got.ok(), Some(Submitted::Accepted), "dedup answer");
                    m.accept(id, key, m.now + delay_ms.map_or(0, |ms| ms as u64 % 20));
                }
            }
            Op::Run(outcome) => {
                let step = d.run_next(|_, _| result(outcome));
                let Some(step) = step else {
                    assert!(m.closed || m.surely_runnable().is_none(), "a runnable job did not run");
                    continue;
                };
                started(&mut m, &step);
                settled(&mut m, &step, outcome);
            }
            Op::StartAsync { polls, outcome } => {
                let polls = polls % 3;
                let got = d.start_async(|_, _| Countdown { left: polls, outcome });
                let Some(got) = got else {
                    let full = m.flights.len() >= CONCURRENCY;
                    assert!(m.closed || full || m.surely_runnable().is_none(), "a runnable job did not start");
                    continue;
                };
                assert!(m.flights.len() < CONCURRENCY, "over the concurrency");
                match got {
                    Started::Ended(step) => {
                        assert_eq!(polls, 0, "ended before its polls");
                        started(&mut m, &step);
                        settled(&mut m, &step, outcome);
                    }
                    Started::Pending(id) => {
                        assert!(polls > 0, "pending without a pending poll");
                        let id = id.as_u128() as u64;
                        let attempts = m.live.get(&id).map_or(0, |j| j.attempts) + 1;
                        started(&mut m, &probe(id, attempts));
                        let deadline = m.now + TIMEOUT_MS;
                        m.flights.insert(id, Flight { left: polls - 1, outcome, deadline });
                    }
                }
            }
            Op::PollAsync => {
                let mut steps = d.poll_async();
                // The model's order: every flight polled once, then the
                // timeouts; compared by ID.
                let mut want: Vec<(u64, Outcome, bool)> = Vec::new();
                let ids: Vec<u64> = m.flights.keys().copied().collect();
                for id in ids {
                    let f = m.flights.get_mut(&id).expect("listed");
                    if f.left == 0 {
                        want.push((id, f.outcome, false));
                    } else {
                        f.left -= 1;
                    }
                }
                for &(id, _, _) in &want {
                    m.flights.remove(&id);
                }
                let late: Vec<u64> = m.flights.iter().filter(|(_, f)| f.deadline <= m.now).map(|(&id, _)| id).collect();
                for id in late {
                    m.flights.remove(&id);
                    want.push((id, Outcome::Retry, true));
                }
                assert_eq!(steps.len(), want.len(), "attempts that ended");
                steps.sort_by_key(|s| s.id.as_u128());
                want.sort_by_key(|w| w.0);
                for (step, (id, outcome, _timed_out)) in steps.iter().zip(want) {
                    assert_eq!(step.id.as_u128() as u64, id);
                    settled(&mut m, step, outcome);
                }
            }
            Op::Advance { ms } => {
                m.now += ms as u64 % 50;
                d.advance(Duration::from_millis(ms as u64 % 50));
            }
            Op::Redrive { id } => {
                let id = id as u64 % 8;
                let got = d.redrive(id);
                // The dead letter is looked up first; a refusal leaves it
                // in place.
                let want = if let Some(at) = m.dlq.iter().rposition(|&(x, _)| x == id) {
                    if m.closed {
                        Err(RedriveError::ShuttingDown)
                    } else if m.live.len() >= CAPACITY {
                        Err(RedriveError::Full)
                    } else if m.live.contains_key(&id) {
                        Err(RedriveError::Live)
                    } else {
                        let (_, key) = m.dlq.remove(at).expect("index from rposition");
                        m.accept(id, key, m.now);
                        Ok(())
                    }
                } else {
                    Err(RedriveError::NotFound)
                };
                assert_eq!(got, want);
            }
            Op::ShutdownNow => {
                let mut back: Vec<u64> = d.shutdown_now().iter().map(|j| *j.payload()).collect();
                back.sort_unstable();
                if !m.closed {
                    let mut want: Vec<u64> = m.live.keys().copied().collect();
                    want.sort_unstable();
                    assert_eq!(back, want, "shutdown_now leftovers");
                    m.returned += want.len() as u64;
                    m.live.clear();
                    m.keys.clear();
                    m.flights.clear();
                    m.closed = true;
                } else {
                    assert!(back.is_empty());
                }
            }
        }
        let c = d.counts();
        assert_eq!(c.accepted, c.completed + c.dead + c.returned + c.held, "conservation");
        assert_eq!(
            (c.accepted, c.completed, c.dead, c.returned, c.held),
            (m.accepted, m.completed, m.dead, m.returned, m.live.len() as u64)
        );
        let dlq: Vec<(u64, Option<u64>)> = d
            .dead_letters()
            .iter()
            .map(|dl| (*dl.job.payload(), dl.job.key().map(|k| k.as_u64())))
            .collect();
        assert_eq!(dlq, m.dlq.iter().copied().collect::<Vec<_>>(), "DLQ contents");
    }
});


/// A step as the start of an attempt: `id`'s attempt `attempt`.
fn probe(id: u64, attempt: u32) -> quay::Step {
    quay::Step { id: id.into(), key: None, attempt, panicked: false, settled: Settled::Retrying }
}

/// Checks and records the start of `step`'s attempt.
fn started(m: &mut Model, step: &quay::Step) {
    assert!(!m.closed);
    let id = step.id.as_u128() as u64;
    let now = m.now;
    let job = m.live.get_mut(&id).expect("a job that is not live ran");
    job.attempts += 1;
    assert_eq!(step.attempt, job.attempts);
    assert!(step.attempt <= MAX_ATTEMPTS, "attempts over the limit");
    if step.attempt == 1 {
        assert!(job.due <= now, "a delayed job started early");
    }
    if let Some(k) = job.key {
        assert_eq!(m.keys[&k].front(), Some(&id), "per-key order");
    }
}

/// Checks where `step` left its job, given the attempt's `outcome`.
fn settled(m: &mut Model, step: &quay::Step, outcome: Outcome) {
    let id = step.id.as_u128() as u64;
    let attempts = m.live.get(&id).expect("a settled job is live").attempts;
    assert_eq!(step.attempt, attempts);
    assert_eq!(step.panicked, matches!(outcome, Outcome::Panic));
    let want = match outcome {
        Outcome::Ok => Settled::Completed,
        Outcome::Fatal => Settled::Dead,
        _ if step.attempt >= MAX_ATTEMPTS => Settled::Dead,
        _ => Settled::Retrying,
    };
    assert_eq!(step.settled, want);
    match want {
        Settled::Completed => {
            m.completed += 1;
            m.end(id);
        }
        Settled::Dead => {
            m.dead += 1;
            let key = m.end(id);
            if m.dlq.len() == DLQ {
                m.dlq.pop_front();
            }
            m.dlq.push_back((id, key));
        }
        Settled::Retrying => {}
    }
}
