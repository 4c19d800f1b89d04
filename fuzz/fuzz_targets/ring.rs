//! The ring against a `VecDeque` model: single-threaded push, pop and batch
//! operations must agree exactly, across laps.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quay::__private::Ring;
use std::collections::VecDeque;

#[derive(Arbitrary, Debug)]
enum Op {
    Push,
    Pop,
    PushBatch(u8),
    PopBatch(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// log2 of the capacity, 1..=6.
    cap_log2: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let cap = 1usize << (1 + input.cap_log2 % 6);
    let ring = Ring::new(cap);
    let mut model = VecDeque::new();
    let mut next = 0u64;
    for op in input.ops {
        match op {
            Op::Push => {
                let r = ring.push(next);
                if model.len() < cap {
                    assert_eq!(r, Ok(()));
                    model.push_back(next);
                } else {
                    assert_eq!(r, Err(next));
                }
                next += 1;
            }
            Op::Pop => assert_eq!(ring.pop(), model.pop_front()),
            Op::PushBatch(n) => {
                let mut src: VecDeque<u64> = (next..next + n as u64).collect();
                let pushed = ring.push_batch(&mut src);
                assert_eq!(pushed, (n as usize).min(cap - model.len()));
                assert_eq!(src.len(), n as usize - pushed);
                model.extend(next..next + pushed as u64);
                next += n as u64;
            }
            Op::PopBatch(n) => {
                let mut got = Vec::new();
                let popped = ring.pop_batch(n as usize, |v| got.push(v));
                let want: Vec<u64> = (0..(n as usize).min(model.len()).min(cap))
                    .filter_map(|_| model.pop_front())
                    .collect();
                assert_eq!(popped, got.len());
                assert_eq!(got, want);
            }
        }
        assert_eq!(ring.len(), model.len());
        assert_eq!(ring.is_empty(), model.is_empty());
    }
});
