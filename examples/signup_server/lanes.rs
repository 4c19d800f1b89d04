//! The quay side of the service: the jobs' payloads and IDs, their
//! simulated work, the latch a test holds the handlers behind, the ledger
//! of every run, and the runtime with its three lanes and their handlers:
//! the email lane's is async (it awaits the mail server), the resize and
//! analytics lanes' are sync (they compute).
//!
//! Nothing here knows about HTTP: `routes.rs` submits to these lanes.

use super::Config;
use quay::{BuildError, Engine, JobError, JobId, Lane, Runtime};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How long each simulated job takes.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// The welcome email's SMTP round trip: an async sleep, during which
    /// the email worker polls the other emails in flight.
    pub email_io: Duration,
    /// The avatar resize: the worker computes.
    pub resize_cpu: Duration,
    /// The analytics event: a short computation.
    pub analytics_cpu: Duration,
}

impl Default for Work {
    fn default() -> Work {
        Work {
            email_io: Duration::from_millis(2),
            resize_cpu: Duration::from_millis(1),
            analytics_cpu: Duration::from_micros(100),
        }
    }
}

/// A gate that starts closed; `open` lets every waiter through, for good.
/// The sync handlers [`wait`](Latch::wait), blocking their worker; the
/// async email handler awaits [`opened`](Latch::opened), which holds no
/// thread, so its worker keeps polling the other emails in flight.
#[derive(Clone, Debug, Default)]
pub struct Latch(Arc<LatchInner>);

#[derive(Debug, Default)]
struct LatchInner {
    state: Mutex<LatchState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct LatchState {
    open: bool,
    /// The async waiters to wake on `open`.
    wakers: Vec<Waker>,
}

impl Latch {
    /// A closed latch.
    pub fn new() -> Latch {
        Latch::default()
    }

    /// Opens the latch: waiters go on, and later ones do not wait.
    pub fn open(&self) {
        let wakers = {
            let mut s = self.0.state.lock().unwrap();
            s.open = true;
            std::mem::take(&mut s.wakers)
        };
        self.0.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Waits (blocking the thread) until the latch is open.
    pub fn wait(&self) {
        let mut s = self.0.state.lock().unwrap();
        while !s.open {
            s = self.0.cv.wait(s).unwrap();
        }
    }

    /// Resolves once the latch is open, without blocking the thread. Works
    /// under any executor: the waker is kept under the same lock as the
    /// flag, so an `open` between the check and the wait cannot be missed.
    pub async fn opened(&self) {
        std::future::poll_fn(|cx| {
            let mut s = self.0.state.lock().unwrap();
            if s.open {
                return Poll::Ready(());
            }
            if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                s.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// The welcome email's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Email {
    /// The account's ID.
    pub user: u64,
    /// The address.
    pub to: String,
    /// The name to greet.
    pub name: String,
}

/// The avatar resize's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Resize {
    /// The account's ID.
    pub user: u64,
    /// The target width and height.
    pub size: u32,
}

/// The analytics event's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// The account's ID.
    pub user: u64,
    /// What happened.
    pub kind: &'static str,
}

/// The lanes, by name, in the order they are added and reported.
pub const LANES: [&str; 3] = ["email", "resize", "analytics"];

/// A job's ID: the request's idempotency key and the job's kind, so a
/// retried request gives the same three IDs.
pub fn job_id(idempotency_key: &str, lane: &str) -> JobId {
    JobId::from(format!("{idempotency_key}:{lane}"))
}

/// Every run of a job's side effect, by lane and job ID: the audit that
/// shows no job ran twice.
#[derive(Debug, Default)]
pub struct Ledger {
    runs: Mutex<HashMap<(&'static str, JobId), u32>>,
}

impl Ledger {
    pub(super) fn record(&self, lane: &'static str, id: JobId) {
        *self.runs.lock().unwrap().entry((lane, id)).or_insert(0) += 1;
    }

    /// How many times the job with this ID ran in this lane.
    pub fn runs(&self, lane: &str, id: JobId) -> u32 {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .find(|((l, i), _)| *l == lane && *i == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Jobs that ran in this lane (each counted once however often it ran).
    pub fn jobs(&self, lane: &str) -> u64 {
        let runs = self.runs.lock().unwrap();
        runs.keys().filter(|(l, _)| *l == lane).count() as u64
    }

    /// Jobs that ran more than once, in any lane.
    pub fn ran_twice(&self) -> u64 {
        let runs = self.runs.lock().unwrap();
        runs.values().filter(|n| **n > 1).count() as u64
    }
}

/// Busy work for about `d` of CPU (or of wall time, on a preempted core).
pub(super) fn burn(d: Duration) {
    let end = Instant::now() + d;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while Instant::now() < end {
        for _ in 0..64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
    }
    std::hint::black_box(x);
}

/// Whether the mail server takes the email: an address with "bounce" in it
/// is refused for good, and the job goes to the dead-letter queue.
pub(super) fn email_verdict(e: &Email) -> Result<(), JobError> {
    if e.to.contains("bounce") {
        return Err(JobError::fatal(format!("mailbox {} bounced", e.to)));
    }
    Ok(())
}

/// The runtime, its three lanes, and the ledger their handlers write.
pub(super) struct Lanes {
    pub(super) runtime: Runtime,
    pub(super) email: Lane<Email>,
    pub(super) resize: Lane<Resize>,
    pub(super) analytics: Lane<Event>,
    pub(super) ledger: Arc<Ledger>,
}

impl Lanes {
    /// Starts the three lanes with `config`'s workers, capacities, work
    /// and latch; the email lane's handlers use `tokio`'s timers.
    pub(super) fn start(config: &Config, tokio: Handle) -> Result<Lanes, BuildError> {
        let runtime = Runtime::new();
        let ledger = Arc::new(Ledger::default());
        let work = config.work;
        // Unpinned: this process's cores are shared with tokio's threads,
        // and a pin would not keep them away.
        // The email lane is async: the handler's wait for the mail server
        // is an `.await`, so one worker keeps up to `email_concurrency`
        // emails in flight. Its worker runs inside the server's tokio
        // runtime context, for `tokio::time::sleep` (a real client's
        // sockets would need it too); quay polls the futures itself.
        let (l, hold) = (ledger.clone(), config.hold.clone());
        let email = runtime.add_async_lane(
            "email",
            Engine::<Email>::builder()
                .workers(config.email_workers)
                .concurrency(config.email_concurrency)
                .pin_workers(false)
                .capacity(config.email_capacity)
                .worker_context(move |run| {
                    let _entered = tokio.enter();
                    run()
                }),
            move |ctx, e: &Email| {
                let (l, hold, e) = (l.clone(), hold.clone(), e.clone());
                async move {
                    if let Some(h) = &hold {
                        h.opened().await;
                    }
                    l.record("email", ctx.id());
                    tokio::time::sleep(work.email_io).await; // the SMTP round trip
                    email_verdict(&e)
                }
            },
        )?;
        let (l, hold) = (ledger.clone(), config.hold.clone());
        let resize = runtime.add_lane(
            "resize",
            Engine::<Resize>::builder()
                .workers(1)
                .pin_workers(false)
                .capacity(config.resize_capacity),
            move |ctx, _: &Resize| {
                if let Some(h) = &hold {
                    h.wait();
                }
                l.record("resize", ctx.id());
                burn(work.resize_cpu);
                Ok(())
            },
        )?;
        let (l, hold) = (ledger.clone(), config.hold.clone());
        let analytics = runtime.add_lane(
            "analytics",
            Engine::<Event>::builder()
                .workers(1)
                .pin_workers(false)
                .capacity(config.analytics_capacity),
            move |ctx, _: &Event| {
                if let Some(h) = &hold {
                    h.wait();
                }
                l.record("analytics", ctx.id());
                burn(work.analytics_cpu);
                Ok(())
            },
        )?;
        Ok(Lanes {
            runtime,
            email,
            resize,
            analytics,
            ledger,
        })
    }
}
