//! Latency recording, counters, the `.hgrm` and interval-log outputs, and
//! the demo's JSON summary.

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use quay::{write_hgrm, Engine, IntervalLog, Job, JobError};
use std::num::NonZeroU32;
use std::time::Duration;

#[test]
fn hgrm_output_parses_back_to_the_histograms_percentiles() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    let mut x = 7u64;
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        h.record(1_000 + x % 5_000_000).unwrap();
    }
    let mut out = Vec::new();
    write_hgrm(&h, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let mut rows = 0;
    let mut last_total = 0;
    for line in text.lines().skip(2).take_while(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 4 || f.len() == 3, "{line}");
        let value_us: f64 = f[0].parse().unwrap();
        let q: f64 = f[1].parse().unwrap();
        let total: u64 = f[2].parse().unwrap();
        // The value printed is the histogram's value at that quantile
        // (its highest equivalent), in µs with 3 decimals.
        let want = h.highest_equivalent(h.value_at_quantile(q)) as f64 / 1_000.0;
        assert!(
            (value_us - want).abs() <= 0.0005 + want * 1e-9,
            "{line}: want {want}"
        );
        assert!(total >= last_total);
        last_total = total;
        if f.len() == 4 {
            let inv: f64 = f[3].parse().unwrap();
            assert!(
                (inv - 1.0 / (1.0 - q)).abs() < 0.01 * inv.max(1.0),
                "{line}"
            );
        }
        rows += 1;
    }
    assert!(rows > 50);
    assert_eq!(last_total, h.len());
    let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
    assert_eq!(footer.len(), 3);
    let num = |s: &str, key: &str| -> f64 {
        let at = s.find(key).unwrap() + key.len();
        s[at..]
            .trim_start_matches([' ', '='])
            .split([',', ']'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!((num(footer[0], "Mean") - h.mean() / 1_000.0).abs() < 0.001);
    assert!((num(footer[1], "Max") - h.max() as f64 / 1_000.0).abs() < 0.001);
    assert_eq!(num(footer[1], "Total count") as u64, h.len());
    assert_eq!(num(footer[2], "SubBuckets") as u64, 2048);
}

#[test]
fn counters_add_up_after_a_run_with_faults() {
    let engine = Engine::<u64>::builder()
        .workers(2)
        .pin_workers(false)
        .max_attempts(NonZeroU32::new(3).unwrap())
        .backoff(Duration::from_micros(1), Duration::from_micros(20))
        .build(|ctx, &n| match (n % 10, ctx.attempt()) {
            (0, 1) => Err(JobError::retry("transient")),
            (1, _) => Err(JobError::retry("poison")),
            (2, _) => Err(JobError::fatal("fatal")),
            (3, 1) => panic!("panic {n}"),
            _ => Ok(()),
        })
        .unwrap();
    for n in 0..2_000u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    for n in 0..100u64 {
        engine.submit(Job::new(n, n)).unwrap(); // duplicates
    }
    while engine.counts().held > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Workers publish their histograms when they go idle: at rest the
    // snapshot becomes exact.
    let m = loop {
        let m = engine.metrics();
        if m.histograms.service.len() == m.counters.started {
            break m;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let c = m.counters;
    assert_eq!(c.accepted, 2_000);
    assert_eq!(c.duplicates, 100);
    // Every attempt ends exactly one way.
    assert_eq!(c.started, c.completed + c.retried + c.dead);
    assert_eq!(c.failed_attempts, c.retried + c.dead);
    assert_eq!(c.completed, 1_600);
    assert_eq!(c.dead, 400);
    // Poison: 2 retries each; transient and panic: 1 each.
    assert_eq!(c.retried, 200 * 2 + 200 + 200);
    assert_eq!(c.panicked, 200);
    assert_eq!(m.gauges.held, 0);
    assert_eq!(m.gauges.dead_letters, 400);
    // Every attempt was timed; every terminal job has an end-to-end sample.
    assert_eq!(m.histograms.service.len(), c.started);
    assert_eq!(m.histograms.queue_wait.len(), c.started);
    assert_eq!(m.histograms.end_to_end.len(), c.completed + c.dead);
    assert_eq!(m.service_ns.count, c.started);
    // Worker pauses: the commits made before those samples were published,
    // and the timer work that made the retries due, were timed too.
    assert!(!m.pauses.commit.is_empty(), "no commit pause recorded");
    assert!(!m.pauses.timers.is_empty(), "no timer pause recorded");
    // The interval since build holds everything; the next one nothing.
    let first = engine.metrics_interval();
    assert_eq!(first.service.len(), c.started);
    assert_eq!(engine.metrics_interval().service.len(), 0);
    let report = engine.shutdown();
    assert!(report.counts.is_conserved());
}

#[test]
fn recording_can_be_turned_off() {
    let engine = Engine::<u64>::builder()
        .workers(1)
        .pin_workers(false)
        .record_latency(false)
        .build(|_, _| Ok(()))
        .unwrap();
    for n in 0..100u64 {
        engine.submit(Job::new(n, n)).unwrap();
    }
    let report = engine.shutdown();
    assert_eq!(report.counts.completed, 100);
}

#[test]
fn interval_log_lines_parse_back() {
    let mut log = IntervalLog::new(Vec::new()).unwrap();
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    for v in 1..=1_000u64 {
        h.record(v * 1_000).unwrap();
    }
    log.write(
        "queue_wait",
        &h,
        Duration::from_secs(0),
        Duration::from_secs(1),
    )
    .unwrap();
    log.write(
        "service",
        &h,
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .unwrap();
    let bytes = log.into_inner();
    let mut tags = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = entry.unwrap() {
            tags.push(i.tag().unwrap().as_str().to_string());
            let decoded = base64_decode(i.encoded_histogram());
            let back: Histogram<u64> = Deserializer::new().deserialize(&mut &decoded[..]).unwrap();
            assert_eq!(back.len(), 1_000);
            assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        }
    }
    assert_eq!(tags, ["queue_wait", "service"]);
}

/// A minimal standard base64 decoder, so the test needs no extra crate.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= (val(c) as u32) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[cfg(feature = "cli")]
#[test]
fn demo_json_has_every_field_and_a_clean_accounting() {
    let out = std::env::temp_dir().join(format!("quay-demo-test-{}", std::process::id()));
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_quay"))
        .args([
            "--jobs", "2000", "--json", "--quiet", "--no-pin", "--rate", "0", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    for f in [
        "scenario",
        "jobs_per_s",
        "accepted",
        "completed",
        "dead",
        "duplicates",
        "returned",
        "lost",
        "order_violations",
        "double_successes",
        "queue_wait_ns",
        "service_ns",
        "end_to_end_ns",
        "request_ns",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    for f in ["queue_wait_ns", "service_ns", "end_to_end_ns", "request_ns"] {
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v[f][p].as_u64().is_some(), "{f}.{p}");
        }
    }
    assert_eq!(v["scenario"], "signup");
    assert_eq!(v["lost"], 0);
    assert_eq!(v["order_violations"], 0);
    assert_eq!(v["double_successes"], 0);
    assert!(
        v["duplicates"].as_u64().unwrap() > 0,
        "1% of requests resubmit"
    );
    assert!(out.join("latency.hgrm").exists() && out.join("latency.svg").exists());
    let _ = std::fs::remove_dir_all(&out);
}
