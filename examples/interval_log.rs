//! Writing an HdrHistogram V2 interval log: `Engine::metrics_interval`
//! hands over the latency histograms recorded since its previous call, and
//! `IntervalLog` appends them, tagged, one line per histogram. The file
//! opens in HistogramLogAnalyzer, or `HistogramLogProcessor` turns it into
//! percentiles over time.
//!
//! Run with `cargo run --example interval_log`; it prints the path of the
//! log it wrote (in the system's temporary directory).

use quay::{Engine, IntervalLog, Job};
use std::io::BufWriter;
use std::time::Duration;

const INTERVALS: u64 = 5;
const JOBS_PER_INTERVAL: u64 = 2_000;

fn main() {
    let engine = Engine::<u64>::builder()
        .workers(2)
        .build(|_ctx, n: &u64| {
            // Some work that grows over the run, so the intervals differ.
            let spins = (n / JOBS_PER_INTERVAL) * 200;
            for i in 0..spins {
                std::hint::black_box(i);
            }
            Ok(())
        })
        .unwrap();
    let path = std::env::temp_dir().join(format!("quay-interval-{}.hlog", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let mut log = IntervalLog::new(BufWriter::new(file)).unwrap();
    // Start the first interval now: drop whatever was recorded before.
    let _ = engine.metrics_interval();
    let mut start = log.elapsed();
    let mut recorded = 0;
    for interval in 0..INTERVALS {
        for i in 0..JOBS_PER_INTERVAL {
            let n = interval * JOBS_PER_INTERVAL + i;
            engine.submit(Job::new(n, n)).unwrap();
        }
        // Wait for the interval's jobs, and for the workers to publish
        // their samples (they do when they go idle).
        while engine.counts().held > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let end = log.elapsed();
        let h = engine.metrics_interval();
        for (tag, hist) in h.named() {
            log.write(tag, hist, start, end.saturating_sub(start))
                .unwrap();
        }
        println!(
            "interval {interval}: {:>5} jobs, end-to-end p50 {:>8.1} µs, p99 {:>8.1} µs",
            h.end_to_end.len(),
            h.end_to_end.value_at_quantile(0.5) as f64 / 1e3,
            h.end_to_end.value_at_quantile(0.99) as f64 / 1e3,
        );
        recorded += h.end_to_end.len();
        start = end;
    }
    drop(log.into_inner());
    let report = engine.shutdown();
    assert!(report.counts.is_conserved());
    assert_eq!(report.counts.completed, INTERVALS * JOBS_PER_INTERVAL);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let data = lines.iter().filter(|l| l.starts_with("Tag=")).count();
    println!(
        "wrote {} ({} header lines, {} histogram lines: {} intervals × 3 tags)",
        path.display(),
        lines.len() - data,
        data,
        INTERVALS
    );
    for line in lines.iter().take(6) {
        let shown: String = line.chars().take(100).collect();
        println!("  {shown}{}", if line.len() > 100 { "…" } else { "" });
    }
    println!("{recorded} end-to-end samples in the log's intervals");
    assert_eq!(data as u64, INTERVALS * 3);
}
