//! The demo's report: text, JSON, and the `.hgrm` and `.svg` files.

use crate::args::Args;
use crate::scenario::Outcome;
use hdrhistogram::Histogram;
use quay::LatencySummary;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io;

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}

fn pct(h: &Histogram<u64>) -> Value {
    let s = LatencySummary::of(h);
    json!({ "p50": s.p50, "p90": s.p90, "p99": s.p99, "p999": s.p999, "max": s.max })
}

pub fn json(args: &Args, o: &Outcome) -> String {
    let c = &o.counts;
    let h = &o.metrics.histograms;
    let mut v = json!({
        "scenario": args.scenario_name(),
        "jobs_per_s": o.jobs_per_s(),
        "elapsed_s": o.elapsed.as_secs_f64(),
        "workers": o.workers,
        "producers": args.producers,
        "accepted": c.accepted,
        "completed": c.completed,
        "dead": c.dead,
        "duplicates": c.duplicates,
        "retried": c.retried,
        "returned": c.returned,
        "lost": o.lost(),
        "order_violations": o.order_violations,
        "double_successes": o.double_successes,
        "queue_wait_ns": pct(&h.queue_wait),
        "service_ns": pct(&h.service),
        "end_to_end_ns": pct(&h.end_to_end),
        "metrics": o.metrics,
    });
    if let Some(r) = &o.request {
        v["request_ns"] = pct(r);
    }
    v.to_string()
}

pub fn text(args: &Args, o: &Outcome) -> String {
    let mut s = String::new();
    let c = &o.counts;
    let _ = writeln!(
        s,
        "quay demo: scenario {}, {} workers, {} producers, {:.2} s",
        args.scenario_name(),
        o.workers,
        args.producers,
        o.elapsed.as_secs_f64()
    );
    if let Some(r) = &o.request {
        let r = LatencySummary::of(r);
        let _ = writeln!(
            s,
            "\nthe user's wait per request (create account inline, drop 5 jobs):\n  p50 {} µs   p99 {} µs   p999 {} µs",
            us(r.p50),
            us(r.p99),
            us(r.p999)
        );
    }
    let _ = writeln!(
        s,
        "\njob latency (µs)      p50       p90       p99      p999       max"
    );
    for (name, h) in o.metrics.histograms.named() {
        let l = LatencySummary::of(h);
        let _ = writeln!(
            s,
            "  {name:<14} {:>9} {:>9} {:>9} {:>9} {:>9}",
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.p999),
            us(l.max)
        );
    }
    let _ = writeln!(s, "\nthroughput: {:.0} jobs/s", o.jobs_per_s());
    let _ = writeln!(s, "\naccounting");
    for (k, v) in [
        ("accepted", c.accepted as i128),
        ("duplicates skipped", c.duplicates as i128),
        ("completed", c.completed as i128),
        ("retried", c.retried as i128),
        ("dead-lettered", c.dead as i128),
        ("returned", c.returned as i128),
        ("lost", o.lost()),
        ("order violations", o.order_violations as i128),
        ("double successes", o.double_successes as i128),
    ] {
        let _ = writeln!(s, "  {k:<20} {v:>10}");
    }
    if !o.dead.is_empty() {
        let _ = writeln!(
            s,
            "\ndead-letter queue ({} entries), first ones:",
            o.dead.len()
        );
        for d in o.dead.iter().take(3) {
            let _ = writeln!(
                s,
                "  {:?} job {} after {} attempts: {}",
                d.job.payload().kind,
                d.job.id(),
                d.attempts,
                d.last_error().unwrap_or("-")
            );
        }
    }
    let _ = writeln!(
        s,
        "\nwrote {0}/latency.hgrm and {0}/latency.svg",
        args.out.display()
    );
    if !o.is_clean() {
        let _ = writeln!(s, "\nFAILED: a job was lost, reordered or succeeded twice");
    }
    s
}

/// `latency.hgrm` (end-to-end), one `.hgrm` per histogram, and the plot.
pub fn write_files(args: &Args, o: &Outcome) -> io::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let h = &o.metrics.histograms;
    let file = |name: &str| std::fs::File::create(args.out.join(name)).map(io::BufWriter::new);
    quay::write_hgrm(&h.end_to_end, file("latency.hgrm")?)?;
    for (name, hist) in h.named() {
        quay::write_hgrm(hist, file(&format!("{name}.hgrm"))?)?;
    }
    if let Some(r) = &o.request {
        quay::write_hgrm(r, file("request.hgrm")?)?;
    }
    let mut lines: Vec<(&str, &Histogram<u64>)> = h.named().to_vec();
    if let Some(r) = &o.request {
        lines.push(("request", r));
    }
    crate::plot::percentiles(&args.out.join("latency.svg"), &lines).map_err(io::Error::other)
}
