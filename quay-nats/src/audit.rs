//! Reads a run back from the server and checks the guarantees: every job is
//! in the results log or the DLQ, the DLQ is exactly the poison set, each
//! key's first completions are in order and complete, runs within one
//! (node, generation) are in order, and no generation wrote after its
//! lease ended beyond the maximum run time.

use crate::scenario::{log_names, Kind, Record, Task};
use crate::settings::Cluster;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A message read back: its payload and when the server stored it.
#[derive(Clone, Debug)]
pub struct Stored<T> {
    /// The decoded payload.
    pub value: T,
    /// The server's timestamp, ns since the Unix epoch.
    pub at_ns: i128,
    /// The `Quay-Errors` header, where there is one (dead letters).
    pub errors: Option<String>,
}

/// Reads every message on `filter` in `stream`, in stream order, and
/// decodes each as JSON.
pub async fn read_all<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<Vec<Stored<T>>, String> {
    let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.to_string(),
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let total = consumer.cached_info().num_pending as usize;
    let mut out = Vec::with_capacity(total);
    let mut idle = 0;
    while out.len() < total && idle < 20 {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let at_ns = m
                .info()
                .map(|i| i.published.unix_timestamp_nanos())
                .unwrap_or(0);
            let value = serde_json::from_slice(&m.payload).map_err(|e| e.to_string())?;
            let errors = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Quay-Errors"))
                .map(|v| v.as_str().to_string());
            out.push(Stored {
                value,
                at_ns,
                errors,
            });
        }
        idle = if out.len() == before { idle + 1 } else { 0 };
    }
    if out.len() < total {
        return Err(format!("read {} of {total} messages", out.len()));
    }
    Ok(out)
}

/// Waits until `stream` holds no message (on a WorkQueue stream: every job
/// acked or terminated), polling every 20 ms; an error after `limit`.
pub async fn wait_drained(
    js: &jetstream::Context,
    stream: &str,
    limit: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = match js.get_stream(stream).await {
            Ok(s) => s.get_info().await.ok().map(|i| i.state.messages),
            Err(_) => None,
        };
        if left == Some(0) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{stream}: {left:?} messages left after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the results log of namespace `ns`.
pub async fn results(js: &jetstream::Context, ns: &str) -> Result<Vec<Stored<Record>>, String> {
    let (stream, prefix) = log_names(ns);
    read_all(js, &stream, &format!("{prefix}.data.*")).await
}

/// Reads the DLQ's tasks.
pub async fn dead(js: &jetstream::Context, cluster: &Cluster) -> Result<Vec<Stored<Task>>, String> {
    read_all(js, &cluster.dlq_stream, &cluster.dlq_subject).await
}

/// A lease acquisition a node reported: (partition, generation, when, ns).
pub type Acquisition = (u32, u64, i64);

/// What the audit found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Jobs in the load.
    pub jobs: usize,
    /// Distinct jobs with a result.
    pub completed: usize,
    /// Results beyond the first per job: re-runs.
    pub reruns: usize,
    /// Distinct jobs in the DLQ.
    pub dead: usize,
    /// DLQ messages beyond the first per job.
    pub dead_duplicates: usize,
    /// Non-poison jobs with neither a result nor a DLQ entry.
    pub lost: Vec<(u32, u32)>,
    /// Jobs in the DLQ that are not poison.
    pub wrongly_dead: Vec<(u32, u32)>,
    /// Poison jobs not in the DLQ.
    pub poison_missing: Vec<(u32, u32)>,
    /// Poison jobs that have a result.
    pub poison_ran: Vec<(u32, u32)>,
    /// First completions out of order (key, seq, after seq).
    pub order_violations: Vec<(u32, u32, u32)>,
    /// Runs out of order within one (node, generation): (key, seq, after seq).
    pub generation_order_violations: Vec<(u32, u32, u32)>,
    /// Results stored after their generation's lease ended plus the
    /// maximum run time: (partition, generation, late by ms).
    pub fence_violations: Vec<(u32, u64, i128)>,
    /// Publish-to-result latency percentiles, ms: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
}

impl Report {
    /// Whether every guarantee held.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.wrongly_dead.is_empty()
            && self.poison_missing.is_empty()
            && self.poison_ran.is_empty()
            && self.order_violations.is_empty()
            && self.generation_order_violations.is_empty()
            && self.fence_violations.is_empty()
    }
}

/// Checks `results` and `dead` against `load`. `acquisitions` (may be
/// empty) bound each generation's lease: generation `g` of partition `p`
/// ended no later than the next acquisition of `p`.
pub fn check(
    load: &[Task],
    results: &[Stored<Record>],
    dead: &[Stored<Task>],
    acquisitions: &[Acquisition],
    max_run: Duration,
) -> Report {
    let mut r = Report {
        jobs: load.len(),
        ..Report::default()
    };
    let poison: BTreeSet<(u32, u32)> = load
        .iter()
        .filter(|t| t.kind == Kind::Poison)
        .map(|t| (t.key, t.seq))
        .collect();
    let mut first: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut last_first: HashMap<u32, u32> = HashMap::new();
    let mut in_gen: HashMap<(String, u64, u32), u32> = HashMap::new();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .expect("bounds are valid");
    for s in results {
        let rec = &s.value;
        let job = (rec.key, rec.seq);
        if poison.contains(&job) {
            r.poison_ran.push(job);
        }
        if first.insert(job) {
            if let Some(&prev) = last_first.get(&rec.key) {
                if rec.seq <= prev {
                    r.order_violations.push((rec.key, rec.seq, prev));
                }
            }
            last_first.insert(rec.key, rec.seq);
            let stored_us = (s.at_ns / 1000) as u64;
            hist.saturating_record(stored_us.saturating_sub(rec.sent_us).max(1));
        } else {
            r.reruns += 1;
        }
        let slot = in_gen
            .entry((rec.node.clone(), rec.g, rec.key))
            .or_insert(u32::MAX);
        if *slot != u32::MAX && rec.seq <= *slot {
            r.generation_order_violations
                .push((rec.key, rec.seq, *slot));
        }
        *slot = rec.seq;
    }
    r.completed = first.len();
    let mut dead_set = BTreeSet::new();
    for s in dead {
        let job = (s.value.key, s.value.seq);
        if !dead_set.insert(job) {
            r.dead_duplicates += 1;
        }
        if !poison.contains(&job) {
            r.wrongly_dead.push(job);
        }
    }
    r.dead = dead_set.len();
    r.poison_missing = poison.difference(&dead_set).copied().collect();
    for t in load {
        let job = (t.key, t.seq);
        if !poison.contains(&job) && !first.contains(&job) && !dead_set.contains(&job) {
            r.lost.push(job);
        }
    }
    // Lease ends: per partition, acquisitions in generation order.
    let mut by_p: BTreeMap<u32, Vec<(u64, i128)>> = BTreeMap::new();
    for &(p, g, at) in acquisitions {
        by_p.entry(p).or_default().push((g, i128::from(at)));
    }
    for v in by_p.values_mut() {
        v.sort_unstable();
    }
    let grace = max_run.as_nanos() as i128;
    for s in results {
        let Some(gens) = by_p.get(&s.value.p) else {
            continue;
        };
        let next = gens.iter().find(|(g, _)| *g > s.value.g);
        if let Some(&(_, ended)) = next {
            if s.at_ns > ended + grace {
                r.fence_violations.push((
                    s.value.p,
                    s.value.g,
                    (s.at_ns - ended - grace) / 1_000_000,
                ));
            }
        }
    }
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    r.latency_ms = [q(0.5), q(0.9), q(0.99), hist.max() as f64 / 1000.0];
    r
}
