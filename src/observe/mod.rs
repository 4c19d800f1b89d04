//! What the engine tells about itself:
//!
//! - `counts`: [`Counts`](crate::Counts), the conservation accounting.
//! - `stats`: single-writer per-worker counters.
//! - `latency`: per-worker hdrhistogram recording
//!   ([`Histograms`](crate::Histograms)).
//! - `metrics`: [`MetricsSnapshot`](crate::MetricsSnapshot) and the
//!   `metrics` facade.
//! - `hgrm`: `.hgrm` percentile output and the V2 interval log.
//! - `trace`: every `tracing` span and event (feature `tracing`; without
//!   it, empty inline functions and zero-sized types).

pub(crate) mod buckets;
pub(crate) mod counts;
pub(crate) mod hgrm;
pub(crate) mod latency;
pub(crate) mod metrics;
pub(crate) mod pauses;
pub(crate) mod stats;
pub(crate) mod trace;
