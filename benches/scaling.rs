//! `cargo bench --bench scaling`: how quay and the hand-built pools scale
//! with producer and worker threads. Meant for machines with many cores.
//!
//! For producers P and workers W each in 1..=N (N = the machine's cores,
//! `--max N` to override; when N > 8 only the powers of two below N and N
//! itself, to keep the grid small), unkeyed and keyed (1 000 keys), it runs
//! no-op jobs with distinct IDs, deduplicated at submit, through quay and
//! through the crossbeam, flume and kanal pools (+ `DashSet`), exactly as
//! `cargo bench --bench compare` does (`common::run`), and prints one row
//! per shape:
//!
//! - quay's jobs/s, and the best of the three pools (its name and jobs/s);
//! - `quay ×`: quay's jobs/s divided by the best pool's (above 1: quay is
//!   faster);
//! - `cores`: cores used, min(P + W, the machine's cores);
//! - jobs/s per core used, for quay and for the best pool.
//!
//! Each figure is the best of 3 rounds (every system once per round,
//! interleaved, so a slow spell on a shared machine hits all alike).
//! `--quick`: 1 round of 20 000 jobs (a CI smoke run, not a measurement).
//! `--jobs N` sets the jobs per run (default 1 000 000), `--csv PATH` also
//! writes the rows.
//!
//! Placement: every thread is pinned by `common::pin(i)`, core
//! `i % cores` (quay's workers by `Pinning::Auto`, the same rule): workers
//! take i = 0..W, producers i = W..W+P. When P + W exceeds the cores the
//! placement wraps, so two threads share a core: on a 2-core machine every
//! shape but 1P/1W oversubscribes, and its rows say more about the OS
//! scheduler than about the queues. Per-core figures count a shared core
//! once.

#[path = "common/mod.rs"]
mod common;

use common::{rate, run, Shape, System};
use std::fmt::Write as _;
use std::time::Duration;

/// The pools quay is measured against.
const POOLS: [System; 3] = [System::CrossbeamPool, System::Flume, System::Kanal];

/// The value after `flag`, parsed; exits with a message if it does not
/// parse.
fn value<T: std::str::FromStr>(args: &[String], flag: &str) -> Option<T> {
    let i = args.iter().position(|a| a == flag)?;
    let Some(v) = args.get(i + 1) else {
        eprintln!("scaling: {flag} needs a value");
        std::process::exit(2);
    };
    match v.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!("scaling: {flag} {v}: not a valid value");
            std::process::exit(2);
        }
    }
}

/// Thread counts 1..=max; when max > 8, the powers of two below max and
/// max itself.
fn counts(max: usize) -> Vec<usize> {
    if max <= 8 {
        return (1..=max).collect();
    }
    let mut v: Vec<usize> = (0..)
        .map(|e| 1usize << e)
        .take_while(|&c| c < max)
        .collect();
    v.push(max);
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let cores = core_affinity::get_core_ids()
        .map(|c| c.len())
        .filter(|&c| c > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let max: usize = value(&args, "--max").unwrap_or(cores).max(1);
    let n: u64 = value(&args, "--jobs").unwrap_or(if quick { 20_000 } else { 1_000_000 });
    if n == 0 {
        eprintln!("scaling: --jobs must be at least 1");
        std::process::exit(2);
    }
    let csv: Option<String> = value(&args, "--csv");
    let rounds = if quick { 1 } else { 3 };
    let grid = counts(max);

    println!("quay scaling: {n} jobs per run, best of {rounds} interleaved round(s)");
    println!(
        "machine: {}, {cores} cores; producers and workers in {grid:?}",
        common::cpu_model()
    );
    if grid.iter().any(|&p| grid.iter().any(|&w| p + w > cores)) {
        println!(
            "shapes with P + W > {cores} oversubscribe: threads are pinned to core i % {cores} and share cores"
        );
    }
    println!(
        "\n{:<18} {:>12} {:<24} {:>12} {:>7} {:>6} {:>12} {:>12}",
        "shape",
        "quay jobs/s",
        "best pool",
        "pool jobs/s",
        "quay ×",
        "cores",
        "quay /core",
        "pool /core"
    );
    let mut rows = String::from(
        "shape,producers,workers,keys,quay_jobs_per_s,best_pool,pool_jobs_per_s,quay_times,\
         cores_used,quay_per_core,pool_per_core,crossbeam_jobs_per_s,flume_jobs_per_s,kanal_jobs_per_s\n",
    );
    let systems: Vec<System> = std::iter::once(System::Quay).chain(POOLS).collect();
    for keys in [0, 1_000] {
        for &producers in &grid {
            for &workers in &grid {
                let shape = Shape {
                    producers,
                    workers,
                    batch: 1,
                    keys,
                };
                let mut best = vec![Duration::MAX; systems.len()];
                for _ in 0..rounds {
                    for (b, &sys) in best.iter_mut().zip(&systems) {
                        *b = (*b).min(run(sys, shape, n));
                    }
                }
                let rates: Vec<f64> = best.iter().map(|&t| rate(n, t)).collect();
                let quay = rates[0];
                let (pool, pool_rate) = POOLS
                    .iter()
                    .zip(&rates[1..])
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(&s, &r)| (s, r))
                    .expect("three pools");
                let used = (producers + workers).min(cores);
                let times = quay / pool_rate;
                println!(
                    "{:<18} {:>12.0} {:<24} {:>12.0} {:>7.2} {:>6} {:>12.0} {:>12.0}",
                    shape.name(),
                    quay,
                    pool.name(),
                    pool_rate,
                    times,
                    used,
                    quay / used as f64,
                    pool_rate / used as f64
                );
                let _ = writeln!(
                    rows,
                    "{},{producers},{workers},{keys},{quay:.0},{},{pool_rate:.0},{times:.3},{used},{:.0},{:.0},{:.0},{:.0},{:.0}",
                    shape.name(),
                    pool.name(),
                    quay / used as f64,
                    pool_rate / used as f64,
                    rates[1],
                    rates[2],
                    rates[3]
                );
            }
        }
    }
    if let Some(path) = csv {
        if let Err(e) = std::fs::write(&path, rows) {
            eprintln!("scaling: could not write {path}: {e}");
        }
    }
}
