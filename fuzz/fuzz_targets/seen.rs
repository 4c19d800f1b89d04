//! The seen-ID set (and under it the open-addressed `IdTable`, with tiny
//! tables that wrap, shift back across their end and grow) against what
//! dedup promises, checked after every operation:
//!
//! - a live ID is a duplicate, and an ID never seen is new;
//! - an ID that ended within the window is a duplicate while it is among
//!   the last `shard_capacity` endings overall (so surely among its own
//!   shard's last that many);
//! - an ID that ended a window or more ago is new again.
//!
//! Between those bounds (remembered by its shard or evicted) either answer
//! is allowed, and the model follows the set's.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quay::__private::{DedupConfig, SeenSet};
use quay::clock::Timestamp;
use quay::JobId;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Op {
    Submit(u8),
    Finish(u8),
    FinishAll(Vec<u8>),
    Advance(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Window in ms; 0 keeps only live IDs.
    window_ms: u8,
    /// Remembered terminal IDs in all.
    capacity: u16,
    /// Live IDs the tables are sized for (more makes them grow).
    live_bound: u8,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Live,
    Ended { at_ms: u64, seq: u64 },
}

fn id(i: u8) -> JobId {
    // Spread over both halves, with some IDs equal in one half.
    let i = i as u128;
    JobId::from(match i % 3 {
        0 => i,
        1 => i << 64,
        _ => i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
    })
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fuzz_target!(|input: Input| {
    let window = input.window_ms as u64;
    let set = SeenSet::new(
        DedupConfig {
            window: Duration::from_millis(window),
            capacity: (input.capacity as usize % 1024).max(1),
        },
        input.live_bound as u64,
    );
    let cap = set.shard_capacity() as u64;
    let mut model: HashMap<u8, State> = HashMap::new();
    let (mut now, mut endings) = (0u64, 0u64);
    let mut scratch = Vec::new();
    for op in input.ops {
        match op {
            Op::Submit(i) => {
                let fresh = set.try_insert(id(i), at(now));
                match model.get(&i) {
                    None => assert!(fresh, "{i}: never seen, yet a duplicate"),
                    Some(State::Live) => assert!(!fresh, "{i}: live, yet new"),
                    Some(&State::Ended { at_ms, seq }) => {
                        if window == 0 || now - at_ms >= window {
                            assert!(fresh, "{i}: ended past the window, yet a duplicate");
                        } else if endings - seq < cap {
                            assert!(!fresh, "{i}: ended recently, yet forgotten");
                        }
                    }
                }
                if fresh {
                    model.insert(i, State::Live);
                }
            }
            Op::Finish(i) => {
                if let Some(State::Live) = model.get(&i) {
                    set.finish(id(i), at(now));
                    endings += 1;
                    model.insert(i, State::Ended { at_ms: now, seq: endings });
                }
            }
            Op::FinishAll(is) => {
                let mut ids = Vec::new();
                for i in is {
                    if let Some(State::Live) = model.get(&i) {
                        ids.push(id(i));
                        endings += 1;
                        model.insert(i, State::Ended { at_ms: now, seq: endings });
                    }
                }
                set.finish_all(&mut ids, &mut scratch, at(now));
                assert!(ids.is_empty());
            }
            Op::Advance(ms) => now += ms as u64,
        }
    }
});
