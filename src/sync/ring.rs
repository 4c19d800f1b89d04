//! The bounded lock-free MPMC ring every shard is built on.
//!
//! This is Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue",
//! 1024cores.net, 2010), the algorithm crossbeam's `ArrayQueue` also
//! descends from, written on quay's sync shim so that loom and miri can check
//! it, and extended with batch claims.
//!
//! # Layout
//!
//! `head` and `tail` are positions: counters that only grow (wrapping at
//! `usize::MAX`, which is harmless because every comparison is a wrapping
//! difference and the capacity is far below `usize::MAX / 2`). Position `p`
//! lives in slot `p & mask`. Each slot carries a *stamp*, a position too:
//!
//! | stamp of slot `p & mask` | meaning                                       |
//! |--------------------------|-----------------------------------------------|
//! | `p`                      | empty, ready for the producer of position `p` |
//! | `p + 1`                  | full, ready for the consumer of position `p`  |
//! | `p + cap`                | consumed; ready for the producer of `p + cap` |
//!
//! The stamp says which *lap* a slot is on without a separate lap field:
//! a stale stamp from an earlier lap never equals the current position.
//! Capacity must be at least 2, or "full at `p`" (`p + 1`) would equal
//! "empty at `p + 1`".
//!
//! # Orderings
//!
//! - The CASes on `head` and `tail` are `Relaxed`: they only arbitrate which
//!   thread owns a position. All data synchronisation goes through stamps.
//! - A producer's `stamp.store(p + 1, Release)` pairs with a consumer's
//!   `stamp.load(Acquire)`: the value written is visible to the consumer that
//!   sees the slot full.
//! - A consumer's `stamp.store(p + cap, Release)` pairs with the next lap's
//!   producer `stamp.load(Acquire)`: the consumer's read of the value happens
//!   before the producer overwrites it.
//!
//! # Batches
//!
//! [`Ring::pop_batch`] and [`Ring::push_batch`] extend the algorithm: a
//! thread reads the stamps of up to `n` consecutive positions from the one it
//! saw in `head` (or `tail`), counts how many are ready, and claims them all
//! with one CAS. The claim is sound because, while the CAS succeeds, no other
//! thread owns any of those positions, and a ready stamp can only be changed
//! by the owner of its position.
//!
//! # Linearizability
//!
//! As in Vyukov's original, `pop` may report empty while a producer has
//! claimed a position but not yet published its stamp. The wake protocol
//! (`docs/design.md`) never relies on more than "a push whose stamp store
//! happens before my pop is seen by it".

use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::mem::MaybeUninit;

/// One position's stamp and value, on cache lines of its own: a producer
/// writing position `i + 1` while a consumer reads position `i` would
/// otherwise move a shared line back and forth between their cores on
/// every job (false sharing). For the engine's envelopes (over 64 bytes)
/// the padding costs little; measured on the noop demo, 1P/1W single
/// submits went from 3.6 to 4.4 M jobs/s, 2P/2W from 4.0 to 4.5.
#[repr(align(64))]
struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded multi-producer multi-consumer FIFO ring with stamped slots.
pub struct Ring<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot<T>]>,
    mask: usize,
}

// SAFETY: a value moves from the producer that writes it to the one consumer
// that claims its position; the stamp protocol gives each slot one owner at a
// time, so sharing the ring only requires that `T` can be sent.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` never hands out `&T`, only owned `T`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// Signed distance from position `b` to stamp `a`, robust to wrap-around.
#[inline(always)]
fn diff(a: usize, b: usize) -> isize {
    a.wrapping_sub(b) as isize
}

impl<T> Ring<T> {
    /// Creates a ring with room for `capacity` values. The caller (the
    /// builder) has checked that `capacity` is a power of two and at least 2;
    /// anything else is rounded up to satisfy that.
    pub fn new(capacity: usize) -> Ring<T> {
        let capacity = capacity.max(2).next_power_of_two();
        let slots = (0..capacity)
            .map(|i| Slot {
                stamp: AtomicUsize::new(i),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots,
            mask: capacity - 1,
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline(always)]
    fn slot(&self, pos: usize) -> &Slot<T> {
        // `pos & mask` < slots.len() by construction, so indexing never fails.
        &self.slots[pos & self.mask]
    }

    /// Pushes `value`, or hands it back if the ring is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        match self.claim(&self.tail, 0, 1) {
            Some(pos) => {
                self.publish(pos, value);
                Ok(())
            }
            None => Err(value),
        }
    }

    /// Moves as many values as fit from the front of `src` into the ring,
    /// claimed with one CAS, in order. Returns how many were pushed; the rest
    /// stay in `src`.
    pub fn push_batch(&self, src: &mut VecDeque<T>) -> usize {
        let Some(n) = self.claim_many(&self.tail, 0, src.len()) else {
            return 0;
        };
        let (start, n) = n;
        for i in 0..n {
            // `n <= src.len()` by construction, so this never fails.
            if let Some(v) = src.pop_front() {
                self.publish(start.wrapping_add(i), v);
            }
        }
        n
    }

    /// Writes `v` into the claimed position `pos` and publishes it.
    #[inline(always)]
    fn publish(&self, pos: usize, v: T) {
        let slot = self.slot(pos);
        // SAFETY: the caller owns position `pos`: its CAS moved `tail` past
        // it while the stamp said "empty at pos", so no other thread reads or
        // writes this slot until the stamp below is published.
        slot.value.with_mut(|p| unsafe { (*p).write(v) });
        // Release pairs with the consumer's Acquire load of the stamp in
        // `claim_many`: the write above is visible to it.
        slot.stamp.store(pos.wrapping_add(1), Ordering::Release);
    }

    fn claim(&self, end: &AtomicUsize, ready: usize, max: usize) -> Option<usize> {
        self.claim_many(end, ready, max).map(|(pos, _)| pos)
    }

    /// Claims up to `max` consecutive positions from `end` (`tail` for
    /// producers, `ready = 0`; `head` for consumers, `ready = 1`) whose
    /// stamps read `pos + ready`. Returns the first claimed position and the
    /// count, or `None` when the ring is full (producers) or empty
    /// (consumers).
    #[inline(always)]
    fn claim_many(&self, end: &AtomicUsize, ready: usize, max: usize) -> Option<(usize, usize)> {
        let max = max.min(self.capacity());
        if max == 0 {
            return None;
        }
        let mut at = end.load(Ordering::Relaxed);
        loop {
            let mut n = 0;
            while n < max {
                let pos = at.wrapping_add(n);
                // Acquire pairs with the Release stamp store of the other
                // side: for a consumer, the producer's `publish` (the value
                // is visible); for a producer, the previous lap's consumer in
                // `take` (its read happens before our overwrite).
                if self.slot(pos).stamp.load(Ordering::Acquire) != pos.wrapping_add(ready) {
                    break;
                }
                n += 1;
            }
            if n == 0 {
                let stamp = self.slot(at).stamp.load(Ordering::Relaxed);
                if diff(stamp, at.wrapping_add(ready)) < 0 {
                    // Producer: the slot still holds last lap's value (full).
                    // Consumer: not yet written for this lap (empty).
                    return None;
                }
                // Another thread took `at`; catch up.
                at = end.load(Ordering::Relaxed);
                continue;
            }
            // Relaxed: the CAS only decides who owns the positions; data is
            // synchronised by the stamps.
            match end.compare_exchange_weak(
                at,
                at.wrapping_add(n),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((at, n)),
                Err(now) => at = now,
            }
        }
    }

    /// Reads the value at the claimed position `pos` and frees its slot for
    /// the next lap.
    #[inline(always)]
    fn take(&self, pos: usize) -> T {
        let slot = self.slot(pos);
        // SAFETY: the caller owns position `pos`: its CAS moved `head` past
        // it while an Acquire load of the stamp said "full at pos", which
        // synchronised with the producer's publication. The value is
        // initialised, and no other thread touches the slot until we restamp.
        let v = slot.value.with(|p| unsafe { (*p).assume_init_read() });
        // Release pairs with the next lap's producer Acquire load in
        // `claim_many`: our read happens before its overwrite.
        slot.stamp
            .store(pos.wrapping_add(self.capacity()), Ordering::Release);
        v
    }

    /// Pops the oldest value, or `None` if the ring looks empty.
    pub fn pop(&self) -> Option<T> {
        self.claim(&self.head, 1, 1).map(|pos| self.take(pos))
    }

    /// Claims up to `max` ready values with one CAS and hands each to `sink`
    /// in FIFO order. Returns how many were popped.
    pub fn pop_batch(&self, max: usize, mut sink: impl FnMut(T)) -> usize {
        let Some((start, n)) = self.claim_many(&self.head, 1, max) else {
            return 0;
        };
        for i in 0..n {
            sink(self.take(start.wrapping_add(i)));
        }
        n
    }

    /// A snapshot of how many values the ring holds. Racy by nature: exact
    /// only when no other thread is pushing or popping.
    pub fn len(&self) -> usize {
        // Nothing orders the two loads against each other, so `tail` may be
        // older than `head`: a negative distance then reads as empty.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        diff(tail, head).clamp(0, self.capacity() as isize) as usize
    }

    /// Whether the ring looks empty; see [`Ring::len`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a push would find the slot at `tail` free now. A hint: a
    /// racing producer may take it first. It never says "full" on a stale
    /// `tail` alone: as in `claim_many`, a stamp ahead of the position read
    /// means another producer took it, and `tail` is read again.
    #[inline]
    pub fn has_room(&self) -> bool {
        // Relaxed: re-validated by the stamp below.
        let mut tail = self.tail.load(Ordering::Relaxed);
        for _ in 0..4 {
            // Acquire pairs with the Release stamp stores of `publish` and
            // `take`: a stamp past `tail` makes the `tail` CAS that came
            // before it visible to the reload below.
            let stamp = self.slot(tail).stamp.load(Ordering::Acquire);
            match diff(stamp, tail) {
                0 => return true,
                // The slot still holds last lap's value: full.
                d if d < 0 => return false,
                _ => tail = self.tail.load(Ordering::Relaxed),
            }
        }
        // Producers keep moving past us: room is likely; a push that then
        // finds none spills into the overflow.
        true
    }

    /// How many more values fit now (a hint, as [`Ring::has_room`]).
    pub fn room(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Whether every position ever claimed by a producer has been claimed by
    /// a consumer too: no value is queued, *and* no producer is between its
    /// claim and its publication (which [`Ring::pop`] would report as empty).
    ///
    /// Exact for the ring's only consumer (a shard's owner and its inbox),
    /// for every push that happens before the call: such a push's `tail`
    /// CAS is then visible to the load below (coherence), whatever its
    /// ordering.
    pub fn is_quiescent(&self) -> bool {
        // Relaxed: see above; the caller's own synchronisation (the overflow
        // lock, in `overflow.rs`) supplies the happens-before edge.
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread can touch the ring; drop what is left.
        while self.pop().is_some() {}
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::Ring;
    use std::collections::VecDeque;
    use std::sync::Arc;

    #[test]
    fn fifo_and_full() {
        let r = Ring::new(4);
        for i in 0..4 {
            r.push(i).unwrap();
        }
        assert_eq!(r.push(9), Err(9));
        assert_eq!(r.len(), 4);
        for i in 0..4 {
            assert_eq!(r.pop(), Some(i));
        }
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn batches_against_a_model() {
        let r = Ring::new(8);
        let mut model = VecDeque::new();
        let mut next = 0u32;
        let mut rng = 12345u64;
        for _ in 0..if cfg!(miri) { 500 } else { 10_000 } {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = (rng % 6) as usize;
            if rng & 64 == 0 {
                let mut src: VecDeque<u32> = (next..next + n as u32).collect();
                let pushed = r.push_batch(&mut src);
                assert_eq!(pushed, n.min(8 - model.len()));
                assert_eq!(src.len(), n - pushed);
                model.extend(next..next + pushed as u32);
                next += n as u32;
            } else {
                let mut got = Vec::new();
                r.pop_batch(n, |v| got.push(v));
                let want: Vec<u32> = (0..n.min(model.len()))
                    .map(|_| model.pop_front().unwrap())
                    .collect();
                assert_eq!(got, want);
            }
            assert_eq!(r.len(), model.len());
        }
    }

    #[test]
    fn drop_releases_values() {
        let v = Arc::new(());
        let r = Ring::new(4);
        r.push(v.clone()).unwrap();
        r.push(v.clone()).unwrap();
        drop(r);
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "threads spinning on yield are too slow under miri")]
    fn mpmc_no_loss_no_duplication() {
        let r = Arc::new(Ring::new(64));
        let per = 20_000usize;
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut v = p * per + i;
                        while let Err(back) = r.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut idle = 0;
                    while idle < 1_000_000 {
                        if r.pop_batch(7, |v| got.push(v)) == 0 {
                            idle += 1;
                            std::thread::yield_now();
                        } else {
                            idle = 0;
                        }
                        if got.len() == 3 * per {
                            break;
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<usize> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        while let Some(v) = r.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all, (0..3 * per).collect::<Vec<_>>());
    }
}
