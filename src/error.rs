//! Every way an engine call can say no, each one typed, and each one that
//! refuses a job handing the job back.

use crate::job::Job;
use std::fmt;
use std::time::Duration;

/// What a successful submit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// The job was accepted: it will run, or be returned by shutdown.
    Accepted,
    /// A job with the same ID is live, or finished within the dedup window.
    /// Nothing was enqueued, and the duplicate's payload was dropped (a
    /// duplicate is by definition a job the engine already has).
    Duplicate,
}

/// Why a submit refused a job. Every variant hands the job back.
pub enum SubmitError<T> {
    /// The engine holds `capacity` jobs, or the job's shard has no room.
    Full(Job<T>),
    /// The engine is shutting down and accepts nothing more.
    ShuttingDown(Job<T>),
    /// `submit_timeout` found no room before its deadline.
    Timeout(Job<T>),
}

impl<T> SubmitError<T> {
    /// The refused job.
    pub fn into_job(self) -> Job<T> {
        match self {
            SubmitError::Full(j) | SubmitError::ShuttingDown(j) | SubmitError::Timeout(j) => j,
        }
    }

    /// Whether a later retry could succeed (`Full`, `Timeout`).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SubmitError::ShuttingDown(_))
    }
}

impl<T> fmt::Debug for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, job) = match self {
            SubmitError::Full(j) => ("Full", j),
            SubmitError::ShuttingDown(j) => ("ShuttingDown", j),
            SubmitError::Timeout(j) => ("Timeout", j),
        };
        write!(f, "{kind}({:?})", job.id())
    }
}

impl<T> fmt::Display for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Full(j) => write!(f, "queue full: job {} refused", j.id()),
            SubmitError::ShuttingDown(j) => {
                write!(f, "engine shutting down: job {} refused", j.id())
            }
            SubmitError::Timeout(j) => {
                write!(f, "no room before the deadline: job {} refused", j.id())
            }
        }
    }
}

impl<T> std::error::Error for SubmitError<T> {}

/// How a handler says an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    /// A transient failure: retry with backoff, up to the attempt limit.
    Retry(String),
    /// A transient failure that knows when to try again: retry after the
    /// given delay instead of the backoff (still bounded by the limit).
    RetryAfter(Duration, String),
    /// A permanent failure: straight to the dead-letter queue.
    Fatal(String),
}

impl JobError {
    /// A transient failure.
    pub fn retry(msg: impl Into<String>) -> JobError {
        JobError::Retry(msg.into())
    }

    /// A permanent failure.
    pub fn fatal(msg: impl Into<String>) -> JobError {
        JobError::Fatal(msg.into())
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        match self {
            JobError::Retry(m) | JobError::RetryAfter(_, m) | JobError::Fatal(m) => m,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Retry(m) => write!(f, "retry: {m}"),
            JobError::RetryAfter(d, m) => write!(f, "retry after {d:?}: {m}"),
            JobError::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for JobError {}

/// An invalid engine setting, naming the field. `build` returns it instead of
/// panicking, whatever the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers` was 0.
    ZeroWorkers,
    /// `workers` was above [`BuildError::MAX_WORKERS`].
    TooManyWorkers(usize),
    /// `capacity` was 0, or above [`BuildError::MAX_CAPACITY`].
    Capacity(u64),
    /// `ring_capacity` was not a power of two of at least 2, or too large.
    RingCapacity(usize),
    /// `pin_workers` named a core the machine does not have.
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// The cores the OS reported.
        available: Vec<usize>,
    },
    /// `pin_workers` was given an empty core list.
    EmptyCoreList,
    /// `batch` was 0.
    Batch,
    /// The backoff base was greater than `max_backoff`.
    Backoff {
        /// The base delay.
        base: Duration,
        /// The cap.
        max: Duration,
    },
    /// `dlq_capacity` was 0.
    DlqCapacity,
    /// `dedup_capacity` was 0 while dedup with a window was on.
    DedupCapacity,
    /// A worker thread could not be spawned.
    Spawn(String),
    /// `name` was empty, longer than [`BuildError::MAX_NAME`], or had a
    /// character other than ASCII letters, digits, `_` and `-`.
    Name(String),
    /// The [`Runtime`](crate::Runtime) was closed: no lane may be added.
    RuntimeClosed,
    /// A [`Runtime`](crate::Runtime) already has a lane of this name.
    DuplicateLane(String),
    /// A lane's explicit core list names a core another lane of the same
    /// [`Runtime`](crate::Runtime) is pinned to.
    CoreOverlap {
        /// The lane being added.
        lane: String,
        /// The core both would use.
        core: usize,
        /// The lane that has it.
        taken_by: String,
    },
    /// `concurrency` was 0, or above [`BuildError::MAX_CONCURRENCY`].
    Concurrency(usize),
    /// `attempt_timeout` was zero.
    AttemptTimeout,
}

impl BuildError {
    /// The largest `capacity` the engine's accounting word can hold.
    pub const MAX_CAPACITY: u64 = (1 << 40) - 1;
    /// The largest `ring_capacity`.
    pub const MAX_RING_CAPACITY: usize = 1 << 24;
    /// The most `workers`. Each worker costs about 4 MB at the default
    /// settings (see [`Builder::workers`](crate::Builder::workers)), so
    /// this is about 4 GB: far beyond any useful thread count, low enough
    /// that a mistyped count fails at once instead of exhausting memory
    /// or threads.
    pub const MAX_WORKERS: usize = 1024;
    /// The longest engine or lane name: it goes into thread names
    /// (`quay-<name>-<i>`) and metric labels.
    pub const MAX_NAME: usize = 32;
    /// The most async attempts in flight per worker.
    pub const MAX_CONCURRENCY: usize = 1 << 16;
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => write!(f, "workers: must be at least 1"),
            BuildError::TooManyWorkers(n) => {
                write!(f, "workers: {n} is not in 1..={}", BuildError::MAX_WORKERS)
            }
            BuildError::Capacity(n) => write!(
                f,
                "capacity: {n} is not in 1..={}",
                BuildError::MAX_CAPACITY
            ),
            BuildError::RingCapacity(n) => write!(
                f,
                "ring_capacity: {n} is not a power of two in 2..={}",
                BuildError::MAX_RING_CAPACITY
            ),
            BuildError::NoSuchCore { core, available } => {
                write!(
                    f,
                    "pin_workers: core {core} does not exist (available: {available:?})"
                )
            }
            BuildError::EmptyCoreList => write!(f, "pin_workers: the core list is empty"),
            BuildError::Batch => write!(f, "batch: must be at least 1"),
            BuildError::Backoff { base, max } => {
                write!(
                    f,
                    "backoff: base {base:?} is greater than max_backoff {max:?}"
                )
            }
            BuildError::DlqCapacity => write!(f, "dlq_capacity: must be at least 1"),
            BuildError::DedupCapacity => write!(f, "dedup_capacity: must be at least 1"),
            BuildError::Spawn(e) => write!(f, "workers: could not spawn a worker thread: {e}"),
            BuildError::Name(n) => write!(
                f,
                "name: {n:?} is not 1 to {} ASCII letters, digits, '_' or '-'",
                BuildError::MAX_NAME
            ),
            BuildError::RuntimeClosed => write!(f, "lane: the runtime is closed"),
            BuildError::DuplicateLane(n) => write!(f, "lane: a lane named {n:?} already exists"),
            BuildError::Concurrency(n) => write!(
                f,
                "concurrency: {n} is not in 1..={}",
                BuildError::MAX_CONCURRENCY
            ),
            BuildError::AttemptTimeout => write!(f, "attempt_timeout: must be above zero"),
            BuildError::CoreOverlap {
                lane,
                core,
                taken_by,
            } => write!(
                f,
                "pin_workers: lane {lane:?} asks for core {core}, which lane {taken_by:?} uses"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why a redrive did not happen. The dead letter stays in the DLQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedriveError {
    /// No dead letter has that ID.
    NotFound,
    /// The engine has no room.
    Full,
    /// The engine is shutting down.
    ShuttingDown,
    /// A job with that ID is live (it was resubmitted since it died):
    /// redriving would run two jobs with one ID.
    Live,
}

impl fmt::Display for RedriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedriveError::NotFound => "no dead letter has that id",
            RedriveError::Full => "no room to redrive",
            RedriveError::ShuttingDown => "engine shutting down",
            RedriveError::Live => "a job with that id is live",
        })
    }
}

impl std::error::Error for RedriveError {}
