//! A poison job, the dead-letter queue, and redrive.
//!
//! A thumbnail job keeps failing because a dependency is misconfigured
//! (the thumbnail size is 0). It is retried with backoff, gives up after
//! `max_attempts`, and lands in the dead-letter queue with its last errors.
//! An operator inspects `dead_letters()`, fixes the configuration, and
//! `redrive`s the job, which then completes.
//!
//! Run with `cargo run --example redrive`.

use quay::{Engine, Job, JobError, RedriveError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    // The "configuration" the handler depends on: 0 is a bad value.
    let thumb_size = Arc::new(AtomicU32::new(0));
    let size = thumb_size.clone();
    let engine = Engine::<String>::builder()
        .workers(1)
        .max_attempts(std::num::NonZeroU32::new(3).unwrap())
        .backoff(Duration::from_millis(1), Duration::from_millis(4))
        .on_dead(|d| eprintln!("[on_dead hook] job {} died", d.job.id()))
        .build(move |ctx, photo: &String| {
            let px = size.load(Ordering::Relaxed);
            if px == 0 {
                return Err(JobError::retry(format!(
                    "cannot resize {photo} to 0 px (attempt {})",
                    ctx.attempt()
                )));
            }
            println!("resized {photo} to {px} px (attempt {})", ctx.attempt());
            Ok(())
        })
        .unwrap();

    let job = Job::new("thumbnail:photo-7", "photo-7.jpg".to_string()).keyed("user-42");
    let id = job.id();
    engine.submit(job).unwrap();
    // It will fail every attempt; wait until the engine gives up on it.
    wait_for_rest(&engine);

    let dead = engine.dead_letters();
    println!("dead-letter queue: {} entry", dead.len());
    for d in &dead {
        println!(
            "  job {} ({:?}) after {} attempts",
            d.job.id(),
            d.job.payload(),
            d.attempts
        );
        for e in &d.errors {
            println!("    {e}");
        }
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.id(), id);
    assert_eq!(dead[0].attempts, 3);

    // Redriving an ID that is not dead is an error, not a new job.
    assert_eq!(
        engine.redrive("thumbnail:photo-8"),
        Err(RedriveError::NotFound)
    );

    // Fix the cause, then redrive: the job runs again, attempts reset,
    // bypassing dedup (its ID was seen before).
    thumb_size.store(256, Ordering::Relaxed);
    engine.redrive(id).unwrap();
    println!("redriven {id}");
    wait_for_rest(&engine);
    println!(
        "dead-letter queue after the redrive: {} entries",
        engine.dead_letters().len()
    );

    let c = engine.shutdown().counts;
    println!(
        "accepted {} (redriven {}), completed {}, dead {}, conserved: {}",
        c.accepted,
        c.redriven,
        c.completed,
        c.dead,
        c.is_conserved()
    );
    assert_eq!((c.accepted, c.redriven, c.completed, c.dead), (2, 1, 1, 1));
    assert!(c.is_conserved());
}

/// Waits until the engine holds no job: each one completed or died.
fn wait_for_rest<T: Send + 'static>(engine: &Engine<T>) {
    while engine.counts().held > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}
