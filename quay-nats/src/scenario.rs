//! The workload the demo, the chaos test and the benchmark run: keyed jobs
//! with a sequence number per key, some transient failures and some
//! poison, whose handler appends `{key, seq, node, generation}` to a
//! [`FencedLog`] and waits for its PubAck before it returns `Ok`; and for
//! the crash-loop test, slow jobs and a job that aborts its process.
//!
//! It lives in the library so that the binary's node processes, the tests
//! and [`audit`](crate::audit) read and write one format.

use crate::fenced_log::{AppendError, FencedLog};
use crate::node::Token;
use quay::{Job, JobError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The results log's stream and subject prefix in namespace `ns`:
/// `<NS>_RESULTS` on `<ns>.results.>`.
pub fn log_names(ns: &str) -> (String, String) {
    (
        format!("{}_RESULTS", ns.to_ascii_uppercase()),
        format!("{ns}.results"),
    )
}

/// What a job does.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    /// Succeeds.
    Ok,
    /// Fails its first attempt, then succeeds.
    Transient,
    /// Always fails: it must end in the DLQ.
    Poison,
    /// Succeeds without writing a result (the benchmark's no-op).
    Noop,
    /// Like `Ok`, after holding its attempt for [`SLOW`].
    Slow,
    /// Aborts its process (`std::process::abort`) on every attempt: as
    /// soon as another attempt of this process is running and a
    /// `Transient` job of this process waits for its retry, or after
    /// [`ABORT_WAIT`] if that does not happen (it cannot when the attempt
    /// runs alone). The crash-loop test's poison.
    Abort,
}

/// How long a [`Kind::Slow`] attempt holds.
pub const SLOW: Duration = Duration::from_millis(200);
/// The longest a [`Kind::Abort`] attempt waits for company before it aborts.
pub const ABORT_WAIT: Duration = Duration::from_millis(500);

/// The handler's attempts in flight in this process.
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// `Transient` jobs of this process whose first attempt failed and whose
/// retry has not started.
static WAITING: AtomicU32 = AtomicU32::new(0);

/// Counts one attempt in [`RUNNING`] while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A [`Kind::Abort`] attempt: waits (bounded) for company, then aborts.
async fn abort_soon() -> ! {
    let deadline = std::time::Instant::now() + ABORT_WAIT;
    while std::time::Instant::now() < deadline {
        if RUNNING.load(Ordering::SeqCst) >= 2 && WAITING.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    std::process::abort()
}

/// One job of the workload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Task {
    /// The job's key.
    pub key: u32,
    /// Its sequence number within the key, from 0.
    pub seq: u32,
    /// What it does.
    pub kind: Kind,
    /// When it was published, microseconds since the Unix epoch.
    pub sent_us: u64,
}

impl Task {
    /// The job, with ID `k<key>-s<seq>` and key `key`.
    pub fn job(self) -> Job<Task> {
        Job::new(format!("k{}-s{}", self.key, self.seq), self.clone()).keyed(u64::from(self.key))
    }
}

/// One result record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The job's key.
    pub key: u32,
    /// Its sequence number.
    pub seq: u32,
    /// The node that ran it.
    pub node: String,
    /// The partition.
    pub p: u32,
    /// The generation it ran under.
    pub g: u64,
    /// When the job was published (µs since the epoch).
    pub sent_us: u64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A run of the workload's handler.
pub type Run = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>>>>;

/// The workload's handler over `log`.
pub fn handler(log: Arc<FencedLog>) -> impl Fn(Token, Arc<Task>) -> Run + Send + Sync + 'static {
    move |token: Token, task: Arc<Task>| {
        let log = log.clone();
        Box::pin(async move {
            let _running = InFlight::enter();
            match task.kind {
                Kind::Abort => abort_soon().await,
                Kind::Poison => {
                    return Err(JobError::retry(format!(
                        "poison k{}-s{}",
                        task.key, task.seq
                    )))
                }
                Kind::Transient if token.attempt() == 1 => {
                    WAITING.fetch_add(1, Ordering::SeqCst);
                    return Err(JobError::retry("transient"));
                }
                Kind::Transient => {
                    // Saturating: a retry in a generation whose first attempt
                    // ran before this process started counts nothing.
                    let _ = WAITING
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                }
                Kind::Noop => return Ok(()),
                Kind::Slow => tokio::time::sleep(SLOW).await,
                Kind::Ok => {}
            }
            token.check().map_err(|e| JobError::retry(e.to_string()))?;
            let record = Record {
                key: task.key,
                seq: task.seq,
                node: token.node().to_string(),
                p: token.partition(),
                g: token.generation(),
                sent_us: task.sent_us,
            };
            let body = serde_json::to_vec(&record).map_err(|e| JobError::fatal(e.to_string()))?;
            match log.append_for(&token, body.into()).await {
                Ok(_) => Ok(()),
                Err(AppendError::Fenced(f)) => {
                    token.give_up();
                    Err(JobError::retry(f.to_string()))
                }
                Err(AppendError::Nats(e)) => Err(JobError::retry(e)),
            }
        })
    }
}

/// Builds the load: `jobs` jobs over `keys` keys, `transient_ppm` and
/// `poison_ppm` parts per million of each, from a deterministic `seed`.
pub fn load(jobs: u32, keys: u32, transient_ppm: u32, poison_ppm: u32, seed: u64) -> Vec<Task> {
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*: deterministic, good enough to pick kinds.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32 % 1_000_000
    };
    let keys = keys.max(1);
    (0..jobs)
        .map(|i| {
            let r = next();
            let kind = if r < poison_ppm {
                Kind::Poison
            } else if r < poison_ppm + transient_ppm {
                Kind::Transient
            } else {
                Kind::Ok
            };
            Task {
                key: i % keys,
                seq: i / keys,
                kind,
                sent_us: 0,
            }
        })
        .collect()
}
