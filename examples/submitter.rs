//! Sharing a `Submitter` across producer threads.
//!
//! Four producer threads stand for request handlers. Each gets its own
//! cheap clone of a `Submitter` (a handle that can submit but not shut the
//! engine down) and drops keyed jobs into the engine; every 50th request is
//! "retried by its client" with the same job ID, and the engine answers it
//! `Duplicate`. The handler checks that each key's jobs run in the order
//! they were submitted.
//!
//! Run with `cargo run --example submitter`.

use quay::{Engine, Job, Submitted, Submitter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const PRODUCERS: u64 = 4;
const REQUESTS: u64 = 2_000;
const KEYS_PER_PRODUCER: u64 = 8;

/// A job's payload: which key's sequence it is, and its place in it.
struct Step {
    key: u64,
    seq: u64,
}

fn main() {
    let ran = Arc::new(AtomicU64::new(0));
    let out_of_order = Arc::new(AtomicU64::new(0));
    let last_seq: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let engine = {
        let (ran, out_of_order, last_seq) = (ran.clone(), out_of_order.clone(), last_seq.clone());
        Engine::<Step>::builder()
            .workers(2)
            .build(move |_ctx, step: &Step| {
                // Jobs sharing a key never run at the same time, and run in
                // the order they were accepted.
                let mut last = last_seq.lock().unwrap();
                let prev = last.insert(step.key, step.seq);
                if prev.is_some_and(|p| p >= step.seq) {
                    out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                ran.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap()
    };

    let submitter: Submitter<Step> = engine.submitter();
    let (accepted, duplicates) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                // One clone per thread; clones share the same engine.
                let sub = submitter.clone();
                s.spawn(move || {
                    let (mut accepted, mut duplicates) = (0u64, 0u64);
                    for i in 0..REQUESTS {
                        // Keys belong to one producer, so each key's jobs are
                        // submitted in order by one thread.
                        let key = p * KEYS_PER_PRODUCER + i % KEYS_PER_PRODUCER;
                        let id = format!("producer-{p}:request-{i}");
                        let job = Job::new(id.as_str(), Step { key, seq: i }).keyed(key);
                        match sub.submit(job).unwrap() {
                            Submitted::Accepted => accepted += 1,
                            Submitted::Duplicate => duplicates += 1,
                        }
                        if i % 50 == 49 {
                            // The client retried: same ID, nothing runs twice.
                            let again = Job::new(id.as_str(), Step { key, seq: i }).keyed(key);
                            match sub.submit(again).unwrap() {
                                Submitted::Accepted => accepted += 1,
                                Submitted::Duplicate => duplicates += 1,
                            }
                        }
                    }
                    (accepted, duplicates)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(a, d), (a2, d2)| (a + a2, d + d2))
    });

    let report = engine.shutdown();
    let c = report.counts;
    println!("{PRODUCERS} producer threads, one Submitter clone each");
    println!("  submitted  {}", accepted + duplicates);
    println!("  accepted   {accepted}");
    println!("  duplicates {duplicates} (client retries, answered Duplicate)");
    println!("  ran        {}", ran.load(Ordering::Relaxed));
    println!(
        "  out of order within a key: {}",
        out_of_order.load(Ordering::Relaxed)
    );
    println!(
        "shutdown: accepted {}, completed {}, dead {}, returned {}, conserved: {}",
        c.accepted,
        c.completed,
        c.dead,
        c.returned,
        c.is_conserved()
    );
    assert_eq!(accepted, PRODUCERS * REQUESTS);
    assert_eq!(duplicates, PRODUCERS * REQUESTS / 50);
    assert_eq!(c.completed, accepted);
    assert_eq!(out_of_order.load(Ordering::Relaxed), 0);
    assert!(c.is_conserved());

    // A Submitter can outlive the engine: it then gets its job back.
    let late = submitter.try_submit(Job::new("late", Step { key: 0, seq: 0 }));
    match late {
        Err(e) => println!("after shutdown the submitter is refused: {e}"),
        Ok(s) => panic!("accepted after shutdown: {s:?}"),
    }
}
