//! `cargo bench --bench compare`: quay against the pools a user would build
//! by hand, in one run, on the same machine, with the same pinning.
//!
//! Prints the throughput table (system, jobs/s, ns/job, and how many times
//! quay's rate each system's is), quay's per-job cost at two run lengths,
//! the queue-wait table at fixed offered loads, and the slow-handler table
//! (1 % of jobs block 1 ms; 2 workers; every run's row, quay and the
//! crossbeam and kanal pools interleaved). `--quick` (or
//! `QUAY_COMPARE_QUICK=1`) makes every run short: a smoke test for CI.
//! `--csv PATH` also writes the throughput rows for plotting;
//! `--slow-only` prints only the slow-handler table.

#[path = "common/mod.rs"]
mod common;

use common::{rate, run, Shape, System};
use std::fmt::Write as _;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("QUAY_COMPARE_QUICK").is_some();
    let csv = args
        .iter()
        .position(|a| a == "--csv")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let svg = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1))
        .cloned();
    if args.iter().any(|a| a == "--slow-only") {
        // The slow-handler table alone (for A/B runs of that shape).
        let dur = Duration::from_millis(if quick { 100 } else { 2_000 });
        common::slow::print_table(dur, if quick { 1 } else { 3 });
        return;
    }
    let mut bars: Vec<(String, &str, f64)> = Vec::new();
    let n: u64 = if quick { 20_000 } else { 2_000_000 };
    let reps = if quick { 1 } else { 3 };
    println!("quay comparison: {n} jobs per run, best of {reps}");
    println!(
        "machine: {}, {} cores",
        common::cpu_model(),
        core_affinity::get_core_ids().map_or(0, |c| c.len())
    );
    let mut rows = String::from("shape,system,jobs_per_s,ns_per_job,quay_times\n");
    println!(
        "\n{:<22} {:<36} {:>12} {:>9} {:>8}",
        "shape", "system", "jobs/s", "ns/job", "quay ×"
    );
    for shape in [Shape::P1W1, Shape::P2W2, Shape::BATCH, Shape::KEYED] {
        let systems: Vec<System> = System::ALL
            .into_iter()
            .filter(|&sys| sys.fits(shape) && !(shape.batch > 1 && sys == System::Disruptor))
            .collect();
        // Rounds over every system, best of the rounds: on a shared machine
        // a slow spell then hits every system alike, not one system's runs.
        let mut best = vec![Duration::MAX; systems.len()];
        for _ in 0..reps {
            for (b, &sys) in best.iter_mut().zip(&systems) {
                *b = (*b).min(run(sys, shape, n));
            }
        }
        let results: Vec<(System, f64)> = systems
            .iter()
            .zip(&best)
            .map(|(&sys, &t)| (sys, rate(n, t)))
            .collect();
        let quay = results
            .iter()
            .find(|(s, _)| *s == System::Quay)
            .map_or(1.0, |r| r.1);
        for (sys, r) in &results {
            let times = quay / r;
            println!(
                "{:<22} {:<36} {:>12.0} {:>9.1} {:>8.2}",
                shape.name(),
                sys.name(),
                r,
                1e9 / r,
                times
            );
            let _ = writeln!(
                rows,
                "{},{},{:.0},{:.1},{:.3}",
                shape.name(),
                sys.name(),
                r,
                1e9 / r,
                times
            );
            // The raw disruptor handoff is off the scale of job systems:
            // it stays in the table, not the plot.
            if *sys != System::Disruptor {
                bars.push((shape.name(), sys.name(), *r));
            }
        }
    }
    // Per-job cost flat over run length (quay, 1P/1W).
    let (small, large) = if quick {
        (10_000, 100_000)
    } else {
        (100_000, 10_000_000)
    };
    let t_small = (0..reps)
        .map(|_| run(System::Quay, Shape::P1W1, small))
        .min()
        .unwrap_or_default();
    let t_large = run(System::Quay, Shape::P1W1, large);
    println!(
        "\nquay 1P/1W per-job cost: {:.1} ns at {small} jobs, {:.1} ns at {large} jobs",
        t_small.as_nanos() as f64 / small as f64,
        t_large.as_nanos() as f64 / large as f64
    );
    // Queue wait at fixed offered loads.
    let dur = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(2)
    };
    println!("\nqueue wait at a fixed offered load, 1 producer, 1 worker");
    common::latency::print_table(dur);
    // Slow handlers: 3 interleaved rounds (1 with --quick), every run shown.
    common::slow::print_table(dur, reps);
    if let Some(path) = svg {
        if let Err(e) = plot(&path, &bars) {
            eprintln!("compare: could not draw {path}: {e}");
        }
    }
    if let Some(path) = csv {
        if let Err(e) = std::fs::write(&path, rows) {
            eprintln!("compare: could not write {path}: {e}");
        }
    }
}

/// What the shape names in the plot mean, one line each.
const SHAPE_NOTES: [&str; 4] = [
    "Shapes: 1P/1W = 1 producer thread submitting, 1 worker thread running the jobs; 2P/2W = 2 producers, 2 workers.",
    "batch 64 = 1P/1W with quay taking 64 jobs per submit_batch call (the peers have no batch submit and send one at a time).",
    "keyed 1000 = every job carries one of 1000 keys, and a key's jobs run one at a time, in order (the pools: one channel per worker, by key hash).",
    "No-op jobs with distinct IDs, each deduplicated at submit; best of the runs. disruptor-rs (raw SPSC, no dedup) is in the table only.",
];

/// A horizontal bar chart of jobs/s, one bar per (shape, system), one
/// colour per system (quay red), with a legend naming each system and notes
/// explaining the shapes under it.
fn plot(path: &str, bars: &[(String, &'static str, f64)]) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    // Systems in order of first appearance, quay first: one colour each.
    let mut systems: Vec<&str> = vec!["quay"];
    for (_, sys, _) in bars {
        if !systems.contains(sys) {
            systems.push(sys);
        }
    }
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
        RGBColor(127, 127, 127),
    ];
    let color_of = |sys: &str| -> RGBColor {
        match systems.iter().position(|s| *s == sys) {
            Some(0) => RGBColor(214, 39, 40),
            Some(i) => palette[(i - 1) % palette.len()],
            None => BLACK,
        }
    };
    let notes_h = 20 + 18 * SHAPE_NOTES.len() as u32;
    let chart_h = 90 + 22 * bars.len() as u32;
    let root = SVGBackend::new(path, (1240, chart_h + notes_h)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, notes) = root.split_vertically(chart_h);
    let (chart_area, legend_area) = top.split_horizontally(980);
    let max = bars.iter().map(|b| b.2).fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(
            "throughput by system and shape (jobs/s, no-op jobs, dedup on; longer is better)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(380)
        .build_cartesian_2d(0.0..max, (0..bars.len()).into_segmented())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => bars
                .get(*i)
                .map(|b| format!("{} · {}", b.0, b.1))
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|x| millions(*x))
        .x_desc("jobs/s (millions)")
        .y_desc("shape · system")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, sys, v))| {
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                color_of(sys).filled(),
            )
        }))
        .map_err(|x| e(&x))?;
    // The legend, beside the chart so it never covers a bar.
    let font = ("sans-serif", 15).into_font();
    legend_area
        .draw(&Text::new(
            "series",
            (10, 40),
            font.clone().style(FontStyle::Bold),
        ))
        .map_err(|x| e(&x))?;
    for (i, sys) in systems.iter().enumerate() {
        let y = 66 + 24 * i as i32;
        legend_area
            .draw(&Rectangle::new(
                [(10, y), (28, y + 14)],
                color_of(sys).filled(),
            ))
            .map_err(|x| e(&x))?;
        legend_area
            .draw(&Text::new(sys.to_string(), (36, y), font.clone()))
            .map_err(|x| e(&x))?;
    }
    for (i, line) in SHAPE_NOTES.iter().enumerate() {
        notes
            .draw(&Text::new(
                *line,
                (20, 8 + 18 * i as i32),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

/// An axis label in millions, with no more decimals than it needs (`0`,
/// `0.5M`, `2M`, `2.25M`): a tick at 2.5 M must not read `2M`.
fn millions(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let s = format!("{:.2}", x / 1e6);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}M")
}
