//! Every way the bridge can say no, typed. A refused publish hands the job
//! back, as the local engine's `SubmitError` does.

use quay::Job;
use std::fmt;
use std::time::Duration;

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `discard: old` on a WorkQueue stream with limits deletes un-acked jobs.
    #[error("discard: old on a WorkQueue stream silently drops un-acked jobs; use Discard::New")]
    DiscardOld,
    /// Partitions out of 1..=4096.
    #[error("partitions must be 1 to 4096, got {0}")]
    Partitions(u32),
    /// The stream needs explicit limits.
    #[error("the jobs stream needs explicit limits (max_messages {max_messages}, max_bytes {max_bytes}); each must be at least 1")]
    Limits {
        /// The message limit given.
        max_messages: i64,
        /// The byte limit given.
        max_bytes: i64,
    },
    /// A dedup window under 100 ms.
    #[error("dedup_window must be at least 100 ms, got {0:?}")]
    DedupWindow(Duration),
    /// A lease TTL under 1 s.
    #[error("lease_ttl must be at least 1 s, got {0:?}")]
    LeaseTtl(Duration),
    /// Replicas other than 1, 3 or 5.
    #[error("replicas must be 1, 3 or 5, got {0}")]
    Replicas(usize),
    /// A stream, bucket or node name with characters NATS does not allow.
    #[error("bad name {0:?}: use 1 to 64 ASCII letters, digits, '_' or '-'")]
    Name(String),
    /// A subject with wildcards, spaces or empty tokens, or a DLQ subject
    /// inside the jobs subjects.
    #[error("bad subject {0:?}")]
    Subject(String),
    /// A maximum run time that the lease cannot cover.
    #[error("max_run_time {max_run_time:?} must be non-zero and at most a third of lease_ttl {lease_ttl:?}")]
    MaxRunTime {
        /// The run time given.
        max_run_time: Duration,
        /// The cluster's lease TTL.
        lease_ttl: Duration,
    },
    /// A crash limit of zero.
    #[error("crash_limit must be at least 1 (or None to turn counting off)")]
    CrashLimit,
    /// An AckWait shorter than the maximum run time or 1 s.
    #[error("ack_wait {0:?} must be at least 1 s and at least max_run_time")]
    AckWait(Duration),
    /// A zero budget, worker count, concurrency or attempt limit.
    #[error("budget, workers, concurrency and max_attempts must be non-zero")]
    Zero,
    /// An existing stream whose settings the bridge cannot use.
    #[error("stream {stream} exists with settings quay cannot use: {why}")]
    Existing {
        /// The stream's name.
        stream: String,
        /// What is wrong with it.
        why: String,
    },
}

/// An error talking to NATS, or a setting the server refused.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A bad setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A NATS or JetStream call failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The local engine refused its settings.
    #[error("local engine: {0}")]
    Engine(#[from] quay::BuildError),
    /// The bridge thread could not start.
    #[error("bridge thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl BridgeError {
    pub(crate) fn nats(e: impl fmt::Display) -> BridgeError {
        BridgeError::Nats(e.to_string())
    }
}

/// Why a publish refused a job. Every variant hands the job back.
pub enum PublishError<T> {
    /// The jobs stream is at its limits (`discard: new`).
    Full(Job<T>),
    /// The payload did not encode.
    Encode(Job<T>, String),
    /// NATS did not confirm the publish (timeout, connection, other).
    /// The job may or may not be stored: publish it again with the same
    /// ID, and the dedup window makes that safe.
    Nats(Job<T>, String),
}

impl<T> PublishError<T> {
    /// The refused job.
    pub fn into_job(self) -> Job<T> {
        match self {
            PublishError::Full(j) | PublishError::Encode(j, _) | PublishError::Nats(j, _) => j,
        }
    }

    /// Whether publishing again later could succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PublishError::Encode(..))
    }
}

impl<T> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(j) => write!(f, "Full({:?})", j.id()),
            PublishError::Encode(j, e) => write!(f, "Encode({:?}, {e:?})", j.id()),
            PublishError::Nats(j, e) => write!(f, "Nats({:?}, {e:?})", j.id()),
        }
    }
}

impl<T> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Full(j) => write!(f, "jobs stream full: job {} refused", j.id()),
            PublishError::Encode(j, e) => write!(f, "job {} did not encode: {e}", j.id()),
            PublishError::Nats(j, e) => write!(f, "job {} not confirmed: {e}", j.id()),
        }
    }
}

impl<T> std::error::Error for PublishError<T> {}
