//! What a quay-nats deployment is configured with: [`Cluster`], the settings
//! every node and producer must agree on (the jobs stream, its partitions,
//! the lease TTL), and [`NodeSettings`], one node's own budget, fence and
//! crash-loop limits. `docs/scale-out.md` explains each setting and why.

use crate::error::ConfigError;
use std::time::Duration;

/// What the jobs stream does when it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discard {
    /// Refuse the new message: the producer gets `Full` and its job back.
    New,
    /// Delete the oldest message. On a WorkQueue stream that silently drops
    /// un-acked jobs, so [`Cluster::validate`] refuses it.
    Old,
}

/// The settings shared by every node and producer of one deployment.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The jobs stream (WorkQueue retention). Default `QUAY_JOBS`.
    pub stream: String,
    /// Jobs are published to `<subject_prefix>.<partition>`. Default `quay.jobs`.
    pub subject_prefix: String,
    /// The dead-letter stream. Default `QUAY_DLQ`.
    pub dlq_stream: String,
    /// The dead-letter subject. Default `quay.dlq`.
    pub dlq_subject: String,
    /// Partitions, 1 to [`Cluster::MAX_PARTITIONS`]. Default 64.
    pub partitions: u32,
    /// The jobs stream's message limit (explicit; at least 1). Default 1 000 000.
    pub max_messages: i64,
    /// The jobs stream's byte limit (explicit; at least 1). Default 1 GiB.
    pub max_bytes: i64,
    /// What a full stream does. Only [`Discard::New`] is accepted.
    pub discard: Discard,
    /// JetStream's `duplicate_window`, which is quay's `dedup_window`: a
    /// publish whose `Nats-Msg-Id` was seen within it is answered
    /// `duplicate`. Default 2 minutes.
    pub dedup_window: Duration,
    /// How long a partition lease lives without renewal. Default 10 s.
    pub lease_ttl: Duration,
    /// Stream and bucket replicas (1, 3 or 5). Default 1.
    pub replicas: usize,
    /// The lease bucket. Default `quay_leases`.
    pub lease_bucket: String,
    /// The membership bucket. Default `quay_members`.
    pub member_bucket: String,
    /// The crash-loop bucket. Default `quay_crashes`.
    pub crash_bucket: String,
}

impl Cluster {
    /// Most partitions a deployment may have.
    pub const MAX_PARTITIONS: u32 = 4096;

    /// The default settings with every stream, subject and bucket name in
    /// namespace `ns`: `<NS>_JOBS` on `<ns>.jobs.*`, `<NS>_DLQ` on
    /// `<ns>.dlq`, and buckets `<ns>_leases`, `<ns>_members`,
    /// `<ns>_crashes`. Namespace `quay` gives the defaults. Several
    /// deployments can share one server this way.
    pub fn namespaced(ns: &str) -> Cluster {
        let up = ns.to_ascii_uppercase();
        Cluster {
            stream: format!("{up}_JOBS"),
            subject_prefix: format!("{ns}.jobs"),
            dlq_stream: format!("{up}_DLQ"),
            dlq_subject: format!("{ns}.dlq"),
            lease_bucket: format!("{ns}_leases"),
            member_bucket: format!("{ns}_members"),
            crash_bucket: format!("{ns}_crashes"),
            ..Cluster::default()
        }
    }

    /// Checks every setting; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.discard == Discard::Old {
            return Err(ConfigError::DiscardOld);
        }
        if self.partitions == 0 || self.partitions > Self::MAX_PARTITIONS {
            return Err(ConfigError::Partitions(self.partitions));
        }
        if self.max_messages < 1 || self.max_bytes < 1 {
            return Err(ConfigError::Limits {
                max_messages: self.max_messages,
                max_bytes: self.max_bytes,
            });
        }
        if self.dedup_window < Duration::from_millis(100) {
            return Err(ConfigError::DedupWindow(self.dedup_window));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::LeaseTtl(self.lease_ttl));
        }
        if ![1, 3, 5].contains(&self.replicas) {
            return Err(ConfigError::Replicas(self.replicas));
        }
        for name in [
            &self.stream,
            &self.dlq_stream,
            &self.lease_bucket,
            &self.member_bucket,
            &self.crash_bucket,
        ] {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::Name(name.clone()));
            }
        }
        for subject in [&self.subject_prefix, &self.dlq_subject] {
            if subject.is_empty()
                || subject.contains(['*', '>', ' '])
                || subject.split('.').any(str::is_empty)
            {
                return Err(ConfigError::Subject(subject.clone()));
            }
        }
        if self
            .dlq_subject
            .starts_with(&format!("{}.", self.subject_prefix))
        {
            return Err(ConfigError::Subject(self.dlq_subject.clone()));
        }
        Ok(())
    }

    /// The subject of partition `p`.
    pub fn subject(&self, p: u32) -> String {
        format!("{}.{p}", self.subject_prefix)
    }
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            stream: "QUAY_JOBS".into(),
            subject_prefix: "quay.jobs".into(),
            dlq_stream: "QUAY_DLQ".into(),
            dlq_subject: "quay.dlq".into(),
            partitions: 64,
            max_messages: 1_000_000,
            max_bytes: 1 << 30,
            discard: Discard::New,
            dedup_window: Duration::from_secs(120),
            lease_ttl: Duration::from_secs(10),
            replicas: 1,
            lease_bucket: "quay_leases".into(),
            member_bucket: "quay_members".into(),
            crash_bucket: "quay_crashes".into(),
        }
    }
}

/// One node's settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The node's name, unique among live nodes: ASCII letters, digits,
    /// `_` or `-`. Default `node-<pid>`.
    pub name: String,
    /// The longest a job may run. A node does not start a job whose
    /// partition lease could expire before this is over, and the local
    /// engine's `attempt_timeout` is set to it. Default 2 s; at most a
    /// third of the lease TTL.
    pub max_run_time: Duration,
    /// Deaths a job may have before it goes to the DLQ without running
    /// again: ends of its owner's generation while an attempt of it ran
    /// alone on its node (`docs/scale-out.md`, "Crash loops"). `None` turns
    /// crash-loop counting off (and saves one KV write per job). Default
    /// `Some(3)`.
    pub crash_limit: Option<u32>,
    /// JetStream's AckWait for the node's consumers. Jobs waiting longer
    /// (behind a key, or in backoff) get `+WPI`. Default 30 s.
    pub ack_wait: Duration,
    /// Un-acked jobs the node holds over all its partitions; each consumer
    /// gets an even share as its `max_ack_pending`. Default 4096.
    pub budget: u32,
    /// Local engine workers. Default 2.
    pub workers: usize,
    /// Attempts in flight per worker (async handlers). Default 64.
    pub concurrency: usize,
    /// Attempts per job before it is dead. Default 5.
    pub max_attempts: u32,
    /// Retry backoff base and cap. Default 100 ms and 5 s.
    pub backoff: (Duration, Duration),
    /// How long a graceful release waits for in-flight jobs. Default 10 s.
    pub drain_timeout: Duration,
}

impl NodeSettings {
    /// Checks the node's settings against the cluster's.
    pub fn validate(&self, cluster: &Cluster) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Name(self.name.clone()));
        }
        if self.max_run_time.is_zero() || self.max_run_time * 3 > cluster.lease_ttl {
            return Err(ConfigError::MaxRunTime {
                max_run_time: self.max_run_time,
                lease_ttl: cluster.lease_ttl,
            });
        }
        if self.crash_limit == Some(0) {
            return Err(ConfigError::CrashLimit);
        }
        if self.ack_wait < self.max_run_time || self.ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::AckWait(self.ack_wait));
        }
        if self.budget == 0 || self.workers == 0 || self.max_attempts == 0 || self.concurrency == 0
        {
            return Err(ConfigError::Zero);
        }
        Ok(())
    }
}

impl Default for NodeSettings {
    fn default() -> NodeSettings {
        NodeSettings {
            name: format!("node-{}", std::process::id()),
            max_run_time: Duration::from_secs(2),
            crash_limit: Some(3),
            ack_wait: Duration::from_secs(30),
            budget: 4096,
            workers: 2,
            concurrency: 64,
            max_attempts: 5,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            drain_timeout: Duration::from_secs(10),
        }
    }
}
