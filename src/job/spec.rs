//! What a caller submits: a [`Job`] with its [`JobId`], optional group
//! [`Key`], schedule and payload; and the [`JobContext`] a handler sees.
//!
//! # Fingerprints
//!
//! IDs and keys given as integers are used as they are. Strings and bytes are
//! fingerprinted with XXH3-128 (IDs) and XXH3-64 (keys). Two distinct string
//! IDs share a fingerprint with probability about `n² / 2^129` among `n`
//! remembered IDs: below 10^-18 for 10^10 IDs. A key collision is harmless to
//! correctness: the two keys are merely ordered together.

use crate::clock::Timestamp;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// A job's identity, the unit of dedup: 128 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u128);

impl JobId {
    /// The ID as 128 bits.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The fingerprint of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> JobId {
        JobId(xxh3_128(bytes))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({:#x})", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl From<u64> for JobId {
    fn from(v: u64) -> JobId {
        JobId(v as u128)
    }
}

impl From<u128> for JobId {
    fn from(v: u128) -> JobId {
        JobId(v)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> JobId {
        JobId::from_bytes(s.as_bytes())
    }
}

impl From<String> for JobId {
    fn from(s: String) -> JobId {
        JobId::from(s.as_str())
    }
}

impl From<&String> for JobId {
    fn from(s: &String) -> JobId {
        JobId::from(s.as_str())
    }
}

impl From<&[u8]> for JobId {
    fn from(b: &[u8]) -> JobId {
        JobId::from_bytes(b)
    }
}

impl From<Vec<u8>> for JobId {
    fn from(b: Vec<u8>) -> JobId {
        JobId::from_bytes(&b)
    }
}

/// A group key: jobs sharing one run one at a time, in accept order, on the
/// shard the key hashes to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(u64);

impl Key {
    /// The key as 64 bits.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The shard among `shards` that owns this key. A multiplicative mix
    /// spreads integer keys that differ only in high bits.
    #[inline]
    pub(crate) fn shard(self, shards: usize) -> usize {
        let mixed = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((mixed >> 32) as usize ^ (mixed as usize)) % shards
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:#x})", self.0)
    }
}

impl From<u64> for Key {
    fn from(v: u64) -> Key {
        Key(v)
    }
}

impl From<u32> for Key {
    fn from(v: u32) -> Key {
        Key(v as u64)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key(xxh3_64(s.as_bytes()))
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::from(s.as_str())
    }
}

impl From<&String> for Key {
    fn from(s: &String) -> Key {
        Key::from(s.as_str())
    }
}

impl From<&[u8]> for Key {
    fn from(b: &[u8]) -> Key {
        Key(xxh3_64(b))
    }
}

/// When a job may first start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    Now,
    After(Duration),
    At(Timestamp),
}

/// A unit of work: an ID, an optional group key, a payload and options.
///
/// ```
/// use quay::Job;
/// use std::time::Duration;
/// let job = Job::new("welcome-email:42", "alice@example.com")
///     .keyed("user:42")
///     .delay(Duration::from_millis(5));
/// assert_eq!(job.payload(), &"alice@example.com");
/// ```
pub struct Job<T> {
    pub(crate) id: JobId,
    pub(crate) key: Option<Key>,
    pub(crate) schedule: Schedule,
    pub(crate) max_attempts: Option<NonZeroU32>,
    pub(crate) payload: T,
}

impl<T> Job<T> {
    /// A job with this ID and payload, unkeyed, to run as soon as possible.
    pub fn new(id: impl Into<JobId>, payload: T) -> Job<T> {
        Job {
            id: id.into(),
            key: None,
            schedule: Schedule::Now,
            max_attempts: None,
            payload,
        }
    }

    /// Puts the job in a group: jobs with one key run one at a time, in
    /// accept order. [`Job::key`] reads it back.
    pub fn keyed(mut self, key: impl Into<Key>) -> Job<T> {
        self.key = Some(key.into());
        self
    }

    /// Do not start the job until `d` after it is accepted.
    pub fn delay(mut self, d: Duration) -> Job<T> {
        self.schedule = Schedule::After(d);
        self
    }

    /// Do not start the job before `t` on the engine's clock.
    pub fn run_at(mut self, t: Timestamp) -> Job<T> {
        self.schedule = Schedule::At(t);
        self
    }

    /// Overrides the engine's `max_attempts` for this job.
    pub fn max_attempts(mut self, n: NonZeroU32) -> Job<T> {
        self.max_attempts = Some(n);
        self
    }

    /// The job's ID.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's own attempt limit, if it set one with [`Job::max_attempts`].
    pub fn own_max_attempts(&self) -> Option<NonZeroU32> {
        self.max_attempts
    }

    /// The delay set with [`Job::delay`], if any.
    pub fn delay_of(&self) -> Option<Duration> {
        match self.schedule {
            Schedule::After(d) => Some(d),
            _ => None,
        }
    }

    /// The start time set with [`Job::run_at`], if any.
    pub fn run_at_of(&self) -> Option<Timestamp> {
        match self.schedule {
            Schedule::At(t) => Some(t),
            _ => None,
        }
    }

    /// The job's attempt limit: its own, or else `default` (the engine's).
    #[inline]
    pub(crate) fn max_attempts_or(&self, default: u32) -> u32 {
        self.max_attempts.map_or(default, NonZeroU32::get)
    }

    /// The job's group key, if any (set with [`Job::keyed`]).
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The payload, by value.
    pub fn into_payload(self) -> T {
        self.payload
    }
}

impl<T: fmt::Debug> fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("payload", &self.payload)
            .finish()
    }
}

/// What a handler knows about the attempt it is running: enough to make its
/// own side effects idempotent.
#[derive(Clone, Copy, Debug)]
pub struct JobContext {
    pub(crate) id: JobId,
    pub(crate) key: Option<Key>,
    pub(crate) attempt: u32,
    pub(crate) accepted_at: Timestamp,
    pub(crate) worker: usize,
    pub(crate) max_attempts: u32,
}

impl JobContext {
    /// The job's ID.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's group key.
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// This attempt's number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the engine accepted the job, on the engine's clock.
    pub fn accepted_at(&self) -> Timestamp {
        self.accepted_at
    }

    /// The index of the worker running the attempt.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The job's attempt limit: its own
    /// [`Job::max_attempts`](crate::Job::max_attempts) if it set one, else
    /// the engine's [`Builder::max_attempts`](crate::Builder::max_attempts).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether this is the job's last attempt: if it fails, however it
    /// fails, the job is dead. (A job can also die earlier, of a
    /// [`JobError::Fatal`](crate::JobError::Fatal).)
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}
