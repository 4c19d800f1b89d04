//! Queue wait at fixed offered loads (100 k and 500 k jobs/s, and 200 k for
//! the target in docs/performance.md): p50/p99/p999/max for quay with each
//! idle strategy and for the hand-built crossbeam pool. `--quick` for a
//! short run.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dur = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(3)
    };
    common::latency::print_table(dur);
}
