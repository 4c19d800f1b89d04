//! Reading the engine's metrics: counters, gauges, latency summaries and
//! the histograms behind them. With the `metrics` feature, the same
//! snapshot is published through the `metrics` crate facade, here to a
//! small recorder that prints what it receives (a service would install a
//! Prometheus or StatsD exporter instead).
//!
//! Run with `cargo run --example metrics`, or
//! `cargo run --example metrics --features metrics` to see the facade.

use quay::{Engine, Job, JobError, LatencySummary};
use std::time::Duration;

fn main() {
    let engine = Engine::<u64>::builder()
        .workers(2)
        .max_attempts(std::num::NonZeroU32::new(3).unwrap())
        .backoff(Duration::from_millis(1), Duration::from_millis(4))
        .build(|ctx, n: &u64| {
            // Every 10th job fails once, every 500th always: some retries
            // and some dead letters to count.
            if n % 500 == 499 {
                return Err(JobError::retry("upstream rejects this payload"));
            }
            if n % 10 == 3 && ctx.attempt() == 1 {
                return Err(JobError::retry("timeout"));
            }
            std::hint::black_box(n.wrapping_mul(31));
            Ok(())
        })
        .unwrap();
    let jobs = 5_000u64;
    for n in 0..jobs {
        let job = Job::new(n, n);
        // A third of the jobs are keyed, by user.
        let job = if n % 3 == 0 { job.keyed(n % 17) } else { job };
        engine.submit(job).unwrap();
    }
    // Let the engine come to rest: every figure is then exact.
    while engine.counts().held > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Each worker publishes its gauges and histograms when it flushes,
    // and once it has gone idle: give them a moment.
    std::thread::sleep(Duration::from_millis(100));
    let m = engine.metrics();

    let c = &m.counters;
    println!("counters");
    println!("  accepted        {:>6}", c.accepted);
    println!("  started         {:>6}  (attempts)", c.started);
    println!("  completed       {:>6}", c.completed);
    println!("  failed_attempts {:>6}", c.failed_attempts);
    println!("  retried         {:>6}", c.retried);
    println!("  dead            {:>6}", c.dead);
    println!("  stolen_jobs     {:>6}", c.stolen_jobs);
    println!("  parks / wakes   {:>6} / {}", c.parks, c.wakes);

    let g = &m.gauges;
    println!("gauges (as last published by the workers)");
    println!("  queued per shard {:?}", g.queued_per_shard);
    println!("  retry_waiting    {}", g.retry_waiting);
    println!("  key_waiting      {}", g.key_waiting);
    println!("  held             {}", g.held);
    println!("  dead_letters     {}", g.dead_letters);

    println!("latency (µs)          count      p50      p90      p99     p999      max");
    for (name, s) in [
        ("queue_wait", &m.queue_wait_ns),
        ("service", &m.service_ns),
        ("end_to_end", &m.end_to_end_ns),
    ] {
        print_summary(name, s);
    }
    // The histograms themselves, for percentiles of your own.
    let e2e = &m.histograms.end_to_end;
    println!(
        "end-to-end p99.99: {:.1} µs",
        e2e.value_at_quantile(0.9999) as f64 / 1e3
    );

    #[cfg(feature = "metrics")]
    facade::publish(&m);
    #[cfg(not(feature = "metrics"))]
    println!("(build with --features metrics to publish through the metrics facade)");

    let report = engine.shutdown();
    assert!(report.counts.is_conserved());
    assert_eq!(report.counts.accepted, jobs);
    assert_eq!(report.counts.dead, jobs / 500);
    assert_eq!(report.counts.completed, jobs - jobs / 500);
}

fn print_summary(name: &str, s: &LatencySummary) {
    let us = |ns: u64| ns as f64 / 1e3;
    println!(
        "  {name:<16} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        s.count,
        us(s.p50),
        us(s.p90),
        us(s.p99),
        us(s.p999),
        us(s.max)
    );
}

/// A minimal recorder for the `metrics` facade that prints every value it
/// is given, in the order given.
#[cfg(feature = "metrics")]
mod facade {
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };
    use std::sync::Arc;

    pub fn publish(m: &quay::MetricsSnapshot) {
        println!("published through the metrics facade:");
        metrics::with_local_recorder(&Printer, || m.publish());
    }

    struct Printer;

    /// One metric: its name and labels, as the exporter would see them.
    struct Line(String);

    impl Line {
        fn new(key: &Key) -> Arc<Line> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                key.name().to_string()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            Arc::new(Line(name))
        }
    }

    impl CounterFn for Line {
        fn increment(&self, v: u64) {
            println!("  counter {} += {v}", self.0);
        }
        fn absolute(&self, v: u64) {
            println!("  counter {} = {v}", self.0);
        }
    }

    impl GaugeFn for Line {
        fn increment(&self, v: f64) {
            println!("  gauge   {} += {v}", self.0);
        }
        fn decrement(&self, v: f64) {
            println!("  gauge   {} -= {v}", self.0);
        }
        fn set(&self, v: f64) {
            println!("  gauge   {} = {v}", self.0);
        }
    }

    impl HistogramFn for Line {
        fn record(&self, v: f64) {
            println!("  histogram {} <- {v}", self.0);
        }
    }

    impl Recorder for Printer {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Line::new(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Line::new(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Line::new(key))
        }
    }
}
