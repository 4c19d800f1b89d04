//! Loom models of the Vyukov ring (`src/ring.rs`): `push`, `pop`,
//! `push_batch` and `pop_batch` racing on a ring of capacity 2.
//!
//! Every model checks, for every interleaving within the preemption bound:
//! - no loss and no duplication: the values popped by every consumer plus
//!   what is left in the ring at the end are exactly the values whose push
//!   succeeded;
//! - FIFO per producer: within one consumer's sequence of pops (and in the
//!   final drain, which follows the main thread's pops) the values of one
//!   producer come out in the order it pushed them, and no value is left in
//!   the ring behind a later value of its producer that was popped;
//! - no data race on a slot (loom's `UnsafeCell` tracking): a consumer reads
//!   a value only after the producer's write happens-before it, and a
//!   producer overwrites a slot only after the last lap's read.
#![cfg(quay_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::check;
use quay::__loom::Ring;
use std::collections::VecDeque;

/// A value: producer `p`'s `i`-th push is `p * 100 + i`.
fn val(p: usize, i: usize) -> usize {
    p * 100 + i
}

fn producer(v: usize) -> usize {
    v / 100
}

/// Every producer's values appear in increasing order in `seq`.
fn assert_fifo_per_producer(seq: &[usize], what: &str) {
    for (i, &a) in seq.iter().enumerate() {
        for &b in &seq[i + 1..] {
            if producer(a) == producer(b) {
                assert!(
                    a < b,
                    "FIFO broken in {what}: {b} came out after {a} ({seq:?})"
                );
            }
        }
    }
}

/// `popped` (one sequence per consumer; the main thread's first) and `left`
/// (the final drain) hold exactly `pushed`, each producer in order.
fn assert_exactly(pushed: &[usize], popped: &[Vec<usize>], left: &[usize]) {
    let mut got: Vec<usize> = popped.iter().flatten().copied().collect();
    got.extend_from_slice(left);
    got.sort_unstable();
    let mut want = pushed.to_vec();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "lost or duplicated values: pushed {pushed:?}, popped {popped:?}, left {left:?}"
    );
    for (c, seq) in popped.iter().enumerate() {
        assert_fifo_per_producer(seq, &format!("consumer {c}"));
    }
    // The main thread popped `popped[0]` and then drained `left`.
    let mut main: Vec<usize> = popped[0].clone();
    main.extend_from_slice(left);
    assert_fifo_per_producer(&main, "the main consumer's pops then the final drain");
    // A value still in the ring must not sit behind a popped later value of
    // its producer: positions are claimed in order.
    for &l in left {
        for &p in popped.iter().flatten() {
            assert!(
                producer(l) != producer(p) || l > p,
                "{l} left in the ring although later {p} was popped"
            );
        }
    }
}

fn drain(ring: &Ring<usize>) -> Vec<usize> {
    let mut left = Vec::new();
    while let Some(v) = ring.pop() {
        left.push(v);
    }
    left
}

/// Two producers (one pushing twice) against the main thread popping with
/// `pop` then `pop_batch`. Capacity 2 with three pushes: some pushes may find
/// the ring full, and a pop may free a slot for the next lap mid-run.
#[test]
fn two_producers_one_consumer() {
    check("ring::two_producers_one_consumer", || {
        let ring = Arc::new(Ring::new(2));
        let r = ring.clone();
        let a = thread::spawn(move || {
            [val(1, 0), val(1, 1)]
                .into_iter()
                .filter(|&v| r.push(v).is_ok())
                .collect::<Vec<_>>()
        });
        let r = ring.clone();
        let b = thread::spawn(move || r.push(val(2, 0)).is_ok().then_some(val(2, 0)));
        let mut popped = Vec::new();
        popped.extend(ring.pop());
        ring.pop_batch(2, |v| popped.push(v));
        let mut pushed = a.join().unwrap();
        pushed.extend(b.join().unwrap());
        let left = drain(&ring);
        assert_exactly(&pushed, &[popped], &left);
    });
}

/// A batch producer and a single-value producer against two consumers, one
/// popping a batch and one (main) popping singly.
#[test]
fn batch_producer_two_consumers() {
    check("ring::batch_producer_two_consumers", || {
        let ring = Arc::new(Ring::new(2));
        let r = ring.clone();
        let a = thread::spawn(move || {
            let mut src: VecDeque<usize> = (0..3).map(|i| val(1, i)).collect();
            let n = r.push_batch(&mut src);
            assert!(n <= 2, "pushed {n} into a ring of 2");
            // Whatever did not fit stays in `src`, in order.
            let want: Vec<usize> = (n..3).map(|i| val(1, i)).collect();
            assert_eq!(src.iter().copied().collect::<Vec<_>>(), want);
            (0..n).map(|i| val(1, i)).collect::<Vec<_>>()
        });
        let r = ring.clone();
        let c = thread::spawn(move || {
            let mut got = Vec::new();
            let n = r.pop_batch(2, |v| got.push(v));
            assert_eq!(n, got.len());
            got
        });
        let pushed_b = ring.push(val(2, 0)).is_ok();
        let mut mine = Vec::new();
        mine.extend(ring.pop());
        let mut pushed = a.join().unwrap();
        if pushed_b {
            pushed.push(val(2, 0));
        }
        let theirs = c.join().unwrap();
        let left = drain(&ring);
        assert_exactly(&pushed, &[mine, theirs], &left);
    });
}

/// Two batch producers racing for the same positions, then a batch pop.
/// A batch claim covers several positions with one CAS: the two batches
/// must never overlap or interleave.
#[test]
fn racing_batch_producers() {
    check("ring::racing_batch_producers", || {
        let ring = Arc::new(Ring::new(2));
        let spawn_batch = |p: usize| {
            let r = ring.clone();
            thread::spawn(move || {
                let mut src: VecDeque<usize> = (0..2).map(|i| val(p, i)).collect();
                let n = r.push_batch(&mut src);
                (0..n).map(|i| val(p, i)).collect::<Vec<_>>()
            })
        };
        let a = spawn_batch(1);
        let b = spawn_batch(2);
        let mut popped = Vec::new();
        ring.pop_batch(2, |v| popped.push(v));
        let mut pushed = a.join().unwrap();
        pushed.extend(b.join().unwrap());
        let left = drain(&ring);
        assert_exactly(&pushed, &[popped.clone()], &left);
        // One claim, consecutive positions: a batch comes out contiguous.
        let all: Vec<usize> = popped.iter().chain(&left).copied().collect();
        for p in [1, 2] {
            let at: Vec<usize> = (0..all.len()).filter(|&i| producer(all[i]) == p).collect();
            assert!(
                at.windows(2).all(|w| w[1] == w[0] + 1),
                "batch of producer {p} interleaved with another: {all:?}"
            );
        }
    });
}

/// Wrap-around: the ring starts three positions in (lap 1, odd slot), and a
/// producer pushes four values through a ring of two while the main thread
/// pops them, both retrying (with a yield) on full and empty. Every slot is
/// reused across laps; the consumer must see exactly 0, 1, 2, 3.
#[test]
fn wrap_around_single() {
    check("ring::wrap_around_single", || {
        let ring = Arc::new(Ring::new(2));
        warm_up(&ring, 3);
        let r = ring.clone();
        let p = thread::spawn(move || {
            for i in 0..4 {
                while r.push(i).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 4 {
            match ring.pop() {
                Some(v) => got.push(v),
                None => thread::yield_now(),
            }
        }
        p.join().unwrap();
        assert_eq!(got, vec![0, 1, 2, 3]);
        assert_eq!(ring.pop(), None);
    });
}

/// Wrap-around with batches: `push_batch` against `pop_batch` across laps.
#[test]
fn wrap_around_batch() {
    check("ring::wrap_around_batch", || {
        let ring = Arc::new(Ring::new(2));
        warm_up(&ring, 1);
        let r = ring.clone();
        let p = thread::spawn(move || {
            let mut src: VecDeque<usize> = (0..3).collect();
            while !src.is_empty() {
                if r.push_batch(&mut src) == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if ring.pop_batch(2, |v| got.push(v)) == 0 {
                thread::yield_now();
            }
        }
        p.join().unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        assert!(ring.is_empty());
    });
}

/// Moves the ring's head and tail `n` positions on, so the model starts
/// mid-lap with stamps from an earlier lap in place.
fn warm_up(ring: &Ring<usize>, n: usize) {
    for i in 0..n {
        ring.push(usize::MAX - i).unwrap();
        assert_eq!(ring.pop(), Some(usize::MAX - i));
    }
}
