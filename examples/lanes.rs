//! Lanes: one `Runtime`, three job kinds, each with its own payload type,
//! handler, workers and cores; a drain started from another thread; the
//! report per lane.
//!
//! `cargo run --example lanes`

use quay::{Engine, Job, JobError, PinWarningKind, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Email {
    to: String,
}

struct Photo {
    bytes: Vec<u8>,
}

fn main() {
    let rt = Arc::new(Runtime::new());
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();

    // I/O-bound: the handler mostly waits, so run more workers than cores,
    // unpinned.
    let email = rt
        .add_lane(
            "email",
            Engine::<Email>::builder()
                .workers(8)
                .pin_workers(false)
                .capacity(4_096),
            move |_, e: &Email| {
                if !e.to.contains('@') {
                    return Err(JobError::fatal("no such address"));
                }
                std::thread::sleep(Duration::from_millis(2)); // the SMTP round trip
                s.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .expect("email lane");

    // CPU-bound: one worker, pinned to a core no other lane takes.
    let resize = rt
        .add_lane(
            "resize",
            Engine::<Photo>::builder().workers(1).capacity(1_024),
            |_, p: &Photo| {
                let checksum = p.bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                std::hint::black_box(checksum);
                Ok(())
            },
        )
        .expect("resize lane");

    // Short and plentiful.
    let analytics = rt
        .add_lane(
            "analytics",
            Engine::<u64>::builder().workers(1).capacity(8_192),
            |_, _| Ok(()),
        )
        .expect("analytics lane");

    for w in rt.pin_warnings() {
        let why = match w.kind {
            PinWarningKind::Shared => "shares its core with another lane",
            _ => "runs unpinned (the OS refused the pin)",
        };
        println!(
            "note: lane {} worker {} {why} (core {})",
            w.lane, w.worker, w.core
        );
    }
    for (name, lane_cores) in [
        ("email", email.cores()),
        ("resize", resize.cores()),
        ("analytics", analytics.cores()),
    ] {
        println!(
            "lane {name:<9} {} workers, cores {lane_cores:?}",
            lane_cores.len()
        );
    }

    for user in 0..200u64 {
        let to = if user == 13 {
            "nobody".to_string()
        } else {
            format!("user{user}@example.com")
        };
        // IDs are per lane: user 7's email and photo may share the number.
        email
            .submit(Job::new(user, Email { to }).keyed(user))
            .unwrap();
        resize
            .submit(Job::new(
                user,
                Photo {
                    bytes: vec![user as u8; 4_096],
                },
            ))
            .unwrap();
        analytics.submit(Job::new(user, user)).unwrap();
    }

    // A signal handler's thread starts the drain through a shared reference.
    let closer = rt.clone();
    std::thread::spawn(move || closer.close()).join().unwrap();
    assert!(rt.is_closed());
    let refused = analytics.submit(Job::new(1_000u64, 1_000)).unwrap_err();
    let why = refused.to_string();
    println!(
        "after close: {why}; the job came back: {}",
        refused.into_job().payload()
    );

    let mut report = rt.shutdown();
    println!("\nlane        accepted completed  dead returned conserved");
    for l in report.lanes() {
        let c = l.counts;
        println!(
            "{:<10} {:>9} {:>9} {:>5} {:>8} {:>9}",
            l.name,
            c.accepted,
            c.completed,
            c.dead,
            c.returned,
            c.is_conserved()
        );
    }
    let total = report.counts();
    println!(
        "{:<10} {:>9} {:>9} {:>5} {:>8} {:>9}",
        "total",
        total.accepted,
        total.completed,
        total.dead,
        total.returned,
        report.is_conserved()
    );
    assert!(report.is_conserved());
    assert_eq!(sent.load(Ordering::Relaxed), 199);
    // Nothing was returned: the drain was graceful. Typed by the handle:
    let back: Vec<Job<Email>> = report.take_returned(&email);
    assert!(back.is_empty());

    let m = rt.metrics();
    for (name, snap) in &m.lanes {
        println!(
            "{name:<10} queue wait p99 {:>8.1} µs   service p99 {:>8.1} µs",
            snap.queue_wait_ns.p99 as f64 / 1e3,
            snap.service_ns.p99 as f64 / 1e3
        );
    }
    println!(
        "dead letters in the email lane: {}",
        email.dead_letters().len()
    );
}
