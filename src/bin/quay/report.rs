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

/// The text report; `written` is how writing the files went.
pub fn text(args: &Args, o: &Outcome, written: &io::Result<()>) -> String {
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
    let _ = match written {
        Ok(()) => writeln!(
            s,
            "\nwrote {0}/latency.hgrm and {0}/latency.svg",
            args.out.display()
        ),
        Err(e) => writeln!(s, "\ncould not write the latency files: {e}"),
    };
    if !o.is_clean() {
        let _ = writeln!(s, "\nFAILED: a job was lost, reordered or succeeded twice");
    }
    s
}

/// Makes sure the files can be written before the run: creates `--out` and
/// writes and removes a probe file in it.
pub fn prepare_out(args: &Args) -> io::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let probe = args
        .out
        .join(format!(".quay-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"quay")?;
    std::fs::remove_file(&probe)
}

/// `latency.hgrm` (end-to-end), one `.hgrm` per histogram, and the plot.
/// An error names the file it failed on.
pub fn write_files(args: &Args, o: &Outcome) -> io::Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|e| at(&args.out, e))?;
    let h = &o.metrics.histograms;
    let hgrm = |name: &str, hist: &Histogram<u64>| {
        let path = args.out.join(name);
        std::fs::File::create(&path)
            .and_then(|f| quay::write_hgrm(hist, io::BufWriter::new(f)))
            .map_err(|e| at(&path, e))
    };
    hgrm("latency.hgrm", &h.end_to_end)?;
    for (name, hist) in h.named() {
        hgrm(&format!("{name}.hgrm"), hist)?;
    }
    if let Some(r) = &o.request {
        hgrm("request.hgrm", r)?;
    }
    let mut lines: Vec<(&str, &Histogram<u64>)> = h.named().to_vec();
    if let Some(r) = &o.request {
        lines.push(("request", r));
    }
    let svg = args.out.join("latency.svg");
    crate::plot::percentiles(&svg, &lines).map_err(|e| at(&svg, io::Error::other(e)))
}

/// `e`, prefixed with the path it happened at.
fn at(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
