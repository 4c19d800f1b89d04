//! What an engine costs before it runs a job: build time and resident
//! memory, for a default engine, two of them, and the demo's three lanes.
//!
//! `cargo run --release --example footprint`. Linux only (it reads
//! `/proc/self/statm`); elsewhere it prints the build times alone.

use quay::{Engine, Runtime};
use std::time::Instant;

/// Resident set size in MiB, from `/proc/self/statm` (pages × 4 KiB).
fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

fn show(what: &str, base: Option<f64>, t: Instant) {
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match (rss_mib(), base) {
        (Some(now), Some(b)) => println!("{what:<40} build {ms:6.1} ms   RSS +{:6.1} MiB", now - b),
        _ => println!("{what:<40} build {ms:6.1} ms"),
    }
}

fn main() {
    let base = rss_mib();

    let t = Instant::now();
    let one = Engine::<u64>::builder()
        .workers(2)
        .build(|_, _| Ok(()))
        .unwrap();
    show("one default engine (2 workers)", base, t);
    let t = Instant::now();
    let two = Engine::<u64>::builder()
        .workers(2)
        .build(|_, _| Ok(()))
        .unwrap();
    show("two default engines (2 workers each)", base, t);
    drop(one.shutdown());
    drop(two.shutdown());
    drop((one, two));

    let base = rss_mib();
    let t = Instant::now();
    let old = Engine::<u64>::builder()
        .workers(2)
        .dedup_capacity(1 << 18)
        .build(|_, _| Ok(()))
        .unwrap();
    show("one engine, dedup_capacity 2^18 (old default)", base, t);
    drop(old.shutdown());
    drop(old);

    let base = rss_mib();
    let t = Instant::now();
    let rt = Runtime::new();
    // The demo's lanes (`cargo run --release`): see src/bin/quay/lanes.rs.
    let _user = rt
        .add_lane(
            "user",
            Engine::<u64>::builder().workers(1).capacity(32_768),
            |_, _| Ok(()),
        )
        .unwrap();
    let _resize = rt
        .add_lane(
            "resize",
            Engine::<u64>::builder().workers(1).capacity(16_384),
            |_, _| Ok(()),
        )
        .unwrap();
    let _analytics = rt
        .add_lane(
            "analytics",
            Engine::<u64>::builder().workers(1).capacity(16_384),
            |_, _| Ok(()),
        )
        .unwrap();
    show("the demo's three lanes (1 worker each)", base, t);
    let report = rt.shutdown();
    assert!(report.is_conserved());
}
