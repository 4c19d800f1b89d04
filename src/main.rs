//! `cargo run --release`: a small end-to-end run of the engine until the
//! observability issue brings the full demo. It pushes no-op jobs from one
//! producer through one worker, then reports throughput and the accounting.

use quay::{Engine, Job};
use std::time::Instant;

fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let engine = match Engine::<u64>::builder()
        .workers(1)
        .capacity(65_536)
        .build(|_, n| {
            std::hint::black_box(n);
            Ok(())
        }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("quay: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    // A fixed-seed odd-multiplier permutation: distinct, non-sequential IDs.
    for i in 0..jobs {
        let id = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        if let Err(e) = engine.submit(Job::new(id, i)) {
            eprintln!("quay: {e}");
            std::process::exit(1);
        }
    }
    let report = engine.shutdown();
    let secs = start.elapsed().as_secs_f64();
    let c = report.counts;
    println!("quay: {jobs} no-op jobs, 1 producer, 1 worker");
    println!(
        "  {:.2} M jobs/s, {:.1} ns/job",
        jobs as f64 / secs / 1e6,
        secs * 1e9 / jobs as f64
    );
    println!(
        "  accepted {} completed {} dead {} returned {} lost {}",
        c.accepted,
        c.completed,
        c.dead,
        c.returned,
        c.accepted - c.completed - c.dead - c.returned
    );
    if !c.is_conserved() || c.completed != jobs {
        std::process::exit(1);
    }
}
