//! Arbitrary builder settings never panic: `build` (checked here through
//! `driver`, which runs the same validation without spawning threads)
//! either succeeds with settings that are valid, or returns the typed
//! error naming the first bad field.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quay::{BuildError, Engine, IdleStrategy};
use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
struct Settings {
    workers: Option<u16>,
    pin: Option<Vec<u16>>,
    capacity: u64,
    ring_capacity: u32,
    idle: u8,
    spin_us: u32,
    batch: u16,
    dedup: bool,
    dedup_window_ms: u32,
    dedup_capacity: u32,
    max_attempts: u32,
    base_us: u64,
    max_us: u64,
    dlq_capacity: u32,
    seed: u64,
}

fuzz_target!(|s: Settings| {
    let mut b = Engine::<u8>::builder()
        .capacity(s.capacity)
        .ring_capacity(s.ring_capacity as usize)
        .batch(s.batch as usize)
        .idle(match s.idle % 3 {
            0 => IdleStrategy::BusySpin,
            1 => IdleStrategy::Park,
            _ => IdleStrategy::SpinThenPark {
                spin: Duration::from_micros(s.spin_us as u64),
            },
        })
        .dedup(s.dedup)
        .dedup_window(Duration::from_millis(s.dedup_window_ms as u64))
        .dedup_capacity(s.dedup_capacity as usize)
        .backoff(Duration::from_micros(s.base_us), Duration::from_micros(s.max_us))
        .dlq_capacity(s.dlq_capacity as usize)
        .seed(s.seed);
    // `max_attempts` takes a `NonZeroU32`: 0 cannot be expressed.
    if let Some(n) = NonZeroU32::new(s.max_attempts) {
        b = b.max_attempts(n);
    }
    if let Some(w) = s.workers {
        b = b.workers(w as usize);
    }
    match &s.pin {
        Some(cores) => b = b.pin_workers(cores.iter().map(|&c| c as usize).collect::<Vec<_>>()),
        None => b = b.pin_workers(false),
    }
    match b.driver() {
        Ok(_) => {
            assert_ne!(s.workers, Some(0));
            assert!(usize::from(s.workers.unwrap_or(0)) <= BuildError::MAX_WORKERS);
            assert!(s.batch >= 1);
            assert!(s.capacity >= 1 && s.capacity <= BuildError::MAX_CAPACITY);
            let r = s.ring_capacity as usize;
            assert!(r >= 2 && r.is_power_of_two() && r <= BuildError::MAX_RING_CAPACITY);
            assert!(s.base_us <= s.max_us);
            assert!(s.dlq_capacity >= 1);
        }
        Err(e) => {
            // Every error names its field and says why.
            let msg = e.to_string();
            assert!(msg.contains(':'), "{msg}");
            match e {
                BuildError::ZeroWorkers => assert_eq!(s.workers, Some(0)),
                BuildError::TooManyWorkers(w) => {
                    assert!(w > BuildError::MAX_WORKERS);
                    assert_eq!(s.workers.map(usize::from), Some(w));
                }
                BuildError::Batch => assert_eq!(s.batch, 0),
                BuildError::Capacity(c) => assert_eq!(c, s.capacity),
                BuildError::RingCapacity(r) => assert_eq!(r, s.ring_capacity as usize),
                BuildError::Backoff { .. } => assert!(s.base_us > s.max_us),
                BuildError::DlqCapacity => assert_eq!(s.dlq_capacity, 0),
                BuildError::DedupCapacity => assert_eq!(s.dedup_capacity, 0),
                BuildError::EmptyCoreList => assert_eq!(s.pin.as_deref(), Some(&[][..])),
                BuildError::NoSuchCore { core, .. } => {
                    assert!(s.pin.as_ref().is_some_and(|p| p.contains(&(core as u16))))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
});
