//! Queue wait at fixed offered loads (100 k and 500 k jobs/s, and 200 k for
//! the target in docs/performance.md): p50/p99/p999/max for quay with each
//! idle strategy and for the hand-built crossbeam pool. `--quick` for a
//! short run.

#[path = "common/mod.rs"]
mod common;

use common::latency::{offered, LatSystem};
use quay::{IdleStrategy, LatencySummary};
use std::time::Duration;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dur = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(3)
    };
    println!(
        "{:<10} {:<28} {:>9} {:>9} {:>9} {:>9}  (µs)",
        "offered", "system", "p50", "p99", "p999", "max"
    );
    for load in [100_000u64, 200_000, 500_000] {
        for sys in [
            LatSystem::Quay(IdleStrategy::BusySpin),
            LatSystem::Quay(IdleStrategy::default()),
            LatSystem::Quay(IdleStrategy::Park),
            LatSystem::CrossbeamPool,
        ] {
            let s = LatencySummary::of(&offered(sys, load, dur));
            let us = |v: u64| v as f64 / 1_000.0;
            println!(
                "{:<10} {:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                format!("{}k/s", load / 1_000),
                sys.name(),
                us(s.p50),
                us(s.p99),
                us(s.p999),
                us(s.max)
            );
        }
    }
}
