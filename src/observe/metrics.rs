//! [`MetricsSnapshot`]: every worker's counters, gauges and latency
//! histograms merged into one view.
//!
//! # Consistency
//!
//! Each counter is exact for what it counts but the counters are read one
//! after another, not at one instant: while the engine runs, two counters
//! may disagree by the jobs that moved between the reads (say, `completed`
//! read before a job finished and `accepted` after a new one arrived).
//! Gauges are published by each worker when it flushes (every 16 384
//! samples, and once it has been idle for 200 µs), and histograms likewise,
//! so a busy worker's share may be up to that many samples behind. At rest (workers idle) or after shutdown, every figure
//! is exact and `accepted == completed + dead + returned + held`.

use crate::observe::latency::Histograms;
use crate::observe::pauses::Pauses;
use hdrhistogram::Histogram;

/// Counters since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Counters {
    /// Jobs accepted (including redriven ones).
    pub accepted: u64,
    /// Submits skipped as duplicates.
    pub duplicates: u64,
    /// Submit calls refused for capacity: answered `Full` or `Timeout`, a
    /// batch's jobs refused as `Full`, and async submits given up while
    /// waiting. One per call, however many times a waiting submit looked.
    pub rejected_full: u64,
    /// Attempts refused for want of room or capacity: each look a waiting
    /// submit (`submit`, `submit_timeout`, `submit_async`) makes counts, so
    /// a call that waits and is then accepted counts here and not in
    /// `rejected_full`.
    pub full_attempts: u64,
    /// Attempts started.
    pub started: u64,
    /// Jobs completed (handler returned `Ok`).
    pub completed: u64,
    /// Attempts that failed (errors and panics).
    pub failed_attempts: u64,
    /// Failed attempts scheduled to retry.
    pub retried: u64,
    /// Attempts that panicked.
    pub panicked: u64,
    /// Panics from user code other than handlers, contained so that no
    /// worker died of them: a payload's `Drop` (after completion, for a
    /// duplicate, for a dead letter pushed out of a full DLQ or discarded
    /// from it) and the `on_dead`, `on_complete` and `on_retry` hooks.
    pub contained_panics: u64,
    /// Jobs dead (moved to the DLQ).
    pub dead: u64,
    /// Dead letters dropped because the DLQ was full.
    pub dlq_dropped: u64,
    /// Dead jobs resubmitted by redrive.
    pub redriven: u64,
    /// Jobs handed back by shutdown.
    pub returned: u64,
    /// Jobs run by a worker that stole them from another shard.
    pub stolen_jobs: u64,
    /// Successful steals (batches).
    pub steal_batches: u64,
    /// Finished IDs forgotten early because dedup was at capacity.
    pub dedup_evicted: u64,
    /// Times a worker parked.
    pub parks: u64,
    /// Times a producer unparked a worker.
    pub wakes: u64,
}

/// How many jobs are where, right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GaugeSnapshot {
    /// Jobs in each shard's ring, inbox and overflow, by shard.
    pub queued_per_shard: Vec<u64>,
    /// Jobs waiting to retry.
    pub retry_waiting: u64,
    /// Jobs waiting for a delay's due time.
    pub delayed: u64,
    /// Jobs waiting behind a busy key.
    pub key_waiting: u64,
    /// Keys with jobs.
    pub live_keys: u64,
    /// Jobs held: accepted and not yet released (not yet terminal or
    /// returned, or terminal but not yet committed by their worker: see
    /// "Grouped commits" in `docs/design.md`; never once it is idle).
    pub held: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// IDs the seen-ID set remembers: live ones, and finished ones within
    /// their window (or past it but not yet popped: the set pops them as
    /// later jobs end). Bounded by the live jobs plus `dedup_capacity`;
    /// 0 with dedup off. Read without stopping the engine, one seen-shard
    /// at a time.
    pub seen_ids: u64,
}

/// A latency histogram's summary, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Every worker's metrics, merged. Serialises (feature `serde`) with the
/// histograms as [`LatencySummary`]s named `queue_wait_ns`, `service_ns`
/// and `end_to_end_ns`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MetricsSnapshot {
    /// Counters.
    pub counters: Counters,
    /// Gauges.
    pub gauges: GaugeSnapshot,
    /// Queue wait summary.
    pub queue_wait_ns: LatencySummary,
    /// Service time summary.
    pub service_ns: LatencySummary,
    /// End-to-end summary.
    pub end_to_end_ns: LatencySummary,
    /// The merged histograms, for percentiles of your own and for
    /// [`write_hgrm`](crate::observe::hgrm::write_hgrm).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub histograms: Histograms,
    /// How long workers spent on work that is not a job (commits,
    /// publishing samples, timers, waking up), one histogram per kind: the
    /// floors under some queue waits. Recorded with latency recording on.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub pauses: Pauses,
}

impl MetricsSnapshot {
    pub(crate) fn new(counters: Counters, gauges: GaugeSnapshot, histograms: Histograms) -> Self {
        MetricsSnapshot {
            counters,
            gauges,
            queue_wait_ns: LatencySummary::of(&histograms.queue_wait),
            service_ns: LatencySummary::of(&histograms.service),
            end_to_end_ns: LatencySummary::of(&histograms.end_to_end),
            histograms,
            pauses: Pauses::default(),
        }
    }

    /// Publishes the counters and gauges through the `metrics` crate facade
    /// (feature `metrics`), as `quay_<name>`: counters as absolute counter
    /// values, gauges as gauges, so Prometheus and StatsD exporters see them.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish(&self) {
        self.publish_labelled(Vec::new());
    }

    /// Like [`publish`](Self::publish), with every metric labelled
    /// `lane = <lane>`: how a [`Runtime`](crate::Runtime) publishes its
    /// lanes.
    #[cfg(feature = "metrics")]
    pub fn publish_lane(&self, lane: &str) {
        self.publish_labelled(vec![metrics::Label::new("lane", lane.to_string())]);
    }

    #[cfg(feature = "metrics")]
    fn publish_labelled(&self, base: Vec<metrics::Label>) {
        let with = |k: &'static str, v: String| {
            let mut l = base.clone();
            l.push(metrics::Label::new(k, v));
            l
        };
        let c = &self.counters;
        for (name, v) in [
            ("quay_accepted", c.accepted),
            ("quay_duplicates", c.duplicates),
            ("quay_rejected_full", c.rejected_full),
            ("quay_full_attempts", c.full_attempts),
            ("quay_started", c.started),
            ("quay_completed", c.completed),
            ("quay_failed_attempts", c.failed_attempts),
            ("quay_retried", c.retried),
            ("quay_panicked", c.panicked),
            ("quay_contained_panics", c.contained_panics),
            ("quay_dead", c.dead),
            ("quay_dlq_dropped", c.dlq_dropped),
            ("quay_redriven", c.redriven),
            ("quay_returned", c.returned),
            ("quay_stolen_jobs", c.stolen_jobs),
            ("quay_steal_batches", c.steal_batches),
            ("quay_dedup_evicted", c.dedup_evicted),
            ("quay_parks", c.parks),
            ("quay_wakes", c.wakes),
        ] {
            metrics::counter!(name, base.clone()).absolute(v);
        }
        let g = &self.gauges;
        for (shard, q) in g.queued_per_shard.iter().enumerate() {
            metrics::gauge!("quay_queued", with("shard", shard.to_string())).set(*q as f64);
        }
        for (name, v) in [
            ("quay_retry_waiting", g.retry_waiting),
            ("quay_delayed", g.delayed),
            ("quay_key_waiting", g.key_waiting),
            ("quay_live_keys", g.live_keys),
            ("quay_held", g.held),
            ("quay_dead_letters", g.dead_letters),
            ("quay_seen_ids", g.seen_ids),
        ] {
            metrics::gauge!(name, base.clone()).set(v as f64);
        }
        for (name, h) in [
            ("quay_queue_wait_ns", &self.queue_wait_ns),
            ("quay_service_ns", &self.service_ns),
            ("quay_end_to_end_ns", &self.end_to_end_ns),
        ] {
            metrics::gauge!(name, with("quantile", "0.99".into())).set(h.p99 as f64);
            metrics::gauge!(name, with("quantile", "0.999".into())).set(h.p999 as f64);
        }
    }

    /// Adds snapshots up: counters, gauges (shards listed one after
    /// another) and histograms. For totals over lanes.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a MetricsSnapshot>) -> MetricsSnapshot {
        let mut c = Counters::default();
        let mut g = GaugeSnapshot::default();
        let mut h = Histograms::default();
        let mut p = Pauses::default();
        for m in parts {
            c.add(&m.counters);
            g.add(&m.gauges);
            h.add(&m.histograms);
            p.add(&m.pauses);
        }
        let mut m = MetricsSnapshot::new(c, g, h);
        m.pauses = p;
        m
    }
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        let Counters {
            accepted,
            duplicates,
            rejected_full,
            full_attempts,
            started,
            completed,
            failed_attempts,
            retried,
            panicked,
            contained_panics,
            dead,
            dlq_dropped,
            redriven,
            returned,
            stolen_jobs,
            steal_batches,
            dedup_evicted,
            parks,
            wakes,
        } = *o;
        self.accepted += accepted;
        self.duplicates += duplicates;
        self.rejected_full += rejected_full;
        self.full_attempts += full_attempts;
        self.started += started;
        self.completed += completed;
        self.failed_attempts += failed_attempts;
        self.retried += retried;
        self.panicked += panicked;
        self.contained_panics += contained_panics;
        self.dead += dead;
        self.dlq_dropped += dlq_dropped;
        self.redriven += redriven;
        self.returned += returned;
        self.stolen_jobs += stolen_jobs;
        self.steal_batches += steal_batches;
        self.dedup_evicted += dedup_evicted;
        self.parks += parks;
        self.wakes += wakes;
    }
}

impl GaugeSnapshot {
    fn add(&mut self, o: &GaugeSnapshot) {
        let GaugeSnapshot {
            queued_per_shard,
            retry_waiting,
            delayed,
            key_waiting,
            live_keys,
            held,
            dead_letters,
            seen_ids,
        } = o;
        self.queued_per_shard.extend_from_slice(queued_per_shard);
        self.retry_waiting += retry_waiting;
        self.delayed += delayed;
        self.key_waiting += key_waiting;
        self.live_keys += live_keys;
        self.held += held;
        self.dead_letters += dead_letters;
        self.seen_ids += seen_ids;
    }
}
