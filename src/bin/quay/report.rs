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

/// One run's figures as JSON.
fn json_one(args: &Args, o: &Outcome) -> Value {
    let c = &o.counts;
    let h = &o.metrics.histograms;
    let lanes: Vec<Value> = o
        .lanes
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "workers": l.workers,
                "completed": l.counts.completed,
                "dead": l.counts.dead,
                "jobs_per_s": (l.counts.completed + l.counts.dead) as f64 / o.elapsed.as_secs_f64(),
                "queue_wait_ns": pct(&l.metrics.histograms.queue_wait),
                "service_ns": pct(&l.metrics.histograms.service),
                "conserved": l.counts.is_conserved(),
            })
        })
        .collect();
    let mut v = json!({
        "mode": o.mode,
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
        "refused_at_close": o.refused_at_close,
        "lost": o.lost(),
        "order_violations": o.order_violations,
        "double_successes": o.double_successes,
        "queue_wait_ns": pct(&h.queue_wait),
        "service_ns": pct(&h.service),
        "end_to_end_ns": pct(&h.end_to_end),
        "pauses_ns": {
            "commit": pct(&o.metrics.pauses.commit),
            "publish": pct(&o.metrics.pauses.publish),
            "timers": pct(&o.metrics.pauses.timers),
            "wake": pct(&o.metrics.pauses.wake),
        },
        "lanes": lanes,
        "metrics": o.metrics,
    });
    if let Some(r) = &o.request {
        v["request_ns"] = pct(r);
    }
    if !o.email_wait.is_empty() {
        v["email_queue_wait_ns"] = pct(&o.email_wait);
    }
    v
}

/// Every run as one JSON object: the first run's figures at the top level
/// (lanes, when they ran), the others under `"runs"`; `lost`, `order_violations`
/// and `double_successes` at the top are summed over every run.
pub fn json(args: &Args, outcomes: &[Outcome]) -> String {
    let mut runs: Vec<Value> = outcomes.iter().map(|o| json_one(args, o)).collect();
    if runs.is_empty() {
        return "{}".to_string();
    }
    let mut top = runs.remove(0);
    for k in ["lost", "order_violations", "double_successes"] {
        let sum: i128 = outcomes
            .iter()
            .map(|o| match k {
                "lost" => o.lost(),
                "order_violations" => o.order_violations as i128,
                _ => o.double_successes as i128,
            })
            .sum();
        top[k] = json!(sum);
    }
    top["runs"] = Value::Array(runs);
    top.to_string()
}

/// The text report of every run, then the comparison; `written` is how
/// writing the files went.
pub fn text(args: &Args, outcomes: &[Outcome], written: &io::Result<()>) -> String {
    let mut s = String::new();
    for o in outcomes {
        s.push_str(&text_one(args, o));
    }
    if let [a, b] = outcomes {
        if !a.email_wait.is_empty() && !b.email_wait.is_empty() {
            let (la, lb) = (
                LatencySummary::of(&a.email_wait),
                LatencySummary::of(&b.email_wait),
            );
            let _ = writeln!(
                s,
                "\n== welcome emails' queue wait with a burst of {} resizes (µs)\n                 p50       p99      p999       max",
                args.burst
            );
            for (name, l) in [(a.mode, la), (b.mode, lb)] {
                let _ = writeln!(
                    s,
                    "  {name:<10} {:>9} {:>9} {:>9} {:>9}",
                    us(l.p50),
                    us(l.p99),
                    us(l.p999),
                    us(l.max)
                );
            }
            if la.p99 > 0 && lb.p99 > 0 {
                let _ = writeln!(
                    s,
                    "  p99: {} is {:.1}x {}'s",
                    b.mode,
                    lb.p99 as f64 / la.p99 as f64,
                    a.mode
                );
            }
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
    s
}

fn text_one(args: &Args, o: &Outcome) -> String {
    let mut s = String::new();
    let c = &o.counts;
    let _ = writeln!(
        s,
        "== quay demo: scenario {}, {}, {} workers, {} producers, {:.2} s",
        args.scenario_name(),
        o.mode,
        o.workers,
        args.producers,
        o.elapsed.as_secs_f64()
    );
    for w in &o.pin_warnings {
        let _ = writeln!(
            s,
            "  pin: lane {} worker {} on core {}: {:?}",
            w.lane, w.worker, w.core, w.kind
        );
    }
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
    let pauses = o.metrics.pauses.named().map(|(n, h)| (n, h));
    let named = o.metrics.histograms.named().into_iter();
    for (name, h) in named.chain(pauses.into_iter().filter(|(_, h)| !h.is_empty())) {
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
    let _ = writeln!(
        s,
        "\nper lane     workers     jobs/s   queue wait p50 / p99 (µs)   service p99 (µs)"
    );
    for l in &o.lanes {
        let q = LatencySummary::of(&l.metrics.histograms.queue_wait);
        let sv = LatencySummary::of(&l.metrics.histograms.service);
        let _ = writeln!(
            s,
            "  {:<10} {:>7} {:>10.0} {:>12} / {:<12} {:>12}",
            l.name,
            l.workers,
            (l.counts.completed + l.counts.dead) as f64 / o.elapsed.as_secs_f64(),
            us(q.p50),
            us(q.p99),
            us(sv.p99)
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
    if o.refused_at_close > 0 {
        let _ = writeln!(
            s,
            "  {:<20} {:>10}  (after Ctrl-C; handed back to the producers)",
            "refused at close", o.refused_at_close
        );
    }
    if o.lanes.len() > 1 {
        let ok = o.lanes.iter().all(|l| l.counts.is_conserved());
        let _ = writeln!(
            s,
            "  conserved per lane   {:>10}",
            if ok { "yes" } else { "NO" }
        );
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
    if !o.is_clean() {
        let _ = writeln!(s, "\nFAILED: a job was lost, reordered or succeeded twice");
    }
    s.push('\n');
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

/// For the first run: `latency.hgrm` (end-to-end), one `.hgrm` per
/// histogram, and the plot, which draws every lane's queue wait on one
/// log-scaled chart, with the emails' queue wait in each run and the
/// user's wait per request. An error names the file it failed on.
pub fn write_files(args: &Args, outcomes: &[Outcome]) -> io::Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|e| at(&args.out, e))?;
    let Some(o) = outcomes.first() else {
        return Ok(());
    };
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
    let mut lines: Vec<(String, &Histogram<u64>)> = Vec::new();
    if o.lanes.len() > 1 {
        for l in &o.lanes {
            lines.push((
                format!("{} queue wait", l.name),
                &l.metrics.histograms.queue_wait,
            ));
        }
    } else {
        lines.extend(h.named().iter().map(|(n, h)| (n.to_string(), *h)));
    }
    for run in outcomes {
        if !run.email_wait.is_empty() {
            lines.push((format!("email queue wait, {}", run.mode), &run.email_wait));
        }
    }
    if let Some(r) = &o.request {
        lines.push(("request".to_string(), r));
    }
    let svg = args.out.join("latency.svg");
    crate::plot::percentiles(&svg, &lines).map_err(|e| at(&svg, io::Error::other(e)))
}

/// `e`, prefixed with the path it happened at.
fn at(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
