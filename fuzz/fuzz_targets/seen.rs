//! The seen-ID set (and under it the open-addressed `IdTable`, with tiny
//! tables that wrap, shift back across their end and grow) against what
//! dedup promises, checked after every operation:
//!
//! - a live ID is a duplicate, and an ID never seen (or forgotten after a
//!   refused submit) is new;
//! - an ID that ended within the window is a duplicate while it is among
//!   the last `shard_capacity` endings overall (so surely among its own
//!   shard's last that many);
//! - an ID that ended more than a window ago is new again (at exactly a
//!   window, either: an ending is recorded up to a few ns late, so that
//!   endings in one shard have distinct states);
//! - a redrive (`revive`) fails exactly for a live ID.
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
    /// A redrive: live again whatever the set remembers.
    Revive(u8),
    /// A submit refused after dedup (`Full`): the live ID is forgotten.
    Forget(u8),
    Advance(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Window in ms; 0 keeps only live IDs.
    window_ms: u8,
    /// Remembered terminal IDs in all.
    capacity: u16,
    /// IDs each of the 64 tables is sized for (0–7: 8 or 16 slots, so
    /// probes wrap and tables grow).
    table_ids: u8,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Live,
    Ended { at_ms: u64, seq: u64 },
}

fn id(i: u8) -> JobId {
    // Spread over both halves: some IDs equal in their low half, some in
    // their high half, some equal once the halves are XORed.
    let i = i as u128;
    JobId::from(match i % 4 {
        0 => i,
        1 => i << 64,
        2 => (i << 64) | i,
        _ => i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
    })
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fuzz_target!(|input: Input| {
    let window = input.window_ms as u64;
    let set = SeenSet::with_tables(
        DedupConfig {
            window: Duration::from_millis(window),
            capacity: (input.capacity as usize % 1024).max(1),
        },
        input.table_ids as usize % 8,
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
                        if window == 0 || now - at_ms > window {
                            assert!(fresh, "{i}: ended past the window, yet a duplicate");
                        } else if now - at_ms < window && endings - seq < cap {
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
            Op::Revive(i) => {
                let revived = set.revive(id(i));
                let live = matches!(model.get(&i), Some(State::Live));
                assert_eq!(revived, !live, "{i}: revive answered {revived}");
                model.insert(i, State::Live);
            }
            Op::Forget(i) => {
                if let Some(State::Live) = model.get(&i) {
                    set.forget_live(id(i));
                    model.remove(&i);
                }
            }
            Op::Advance(ms) => now += ms as u64,
        }
    }
});
