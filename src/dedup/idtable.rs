//! `IdTable`: the seen-ID set's per-shard map from [`JobId`] to a `u64`
//! state, laid out so that one lookup costs one cache line.
//!
//! Open addressing with linear probing, deletion by backward shift (Knuth,
//! *The Art of Computer Programming* vol. 3, §6.4, Algorithm R), so there
//! are no tombstones and no rehash to clear them.
//!
//! # Layout
//!
//! ```text
//! slot (32 bytes, 32-aligned: two per cache line)
//! ┌──────────────────────────┬──────────────┬──────────┐
//! │ id: u128                 │ state: u64   │ (pad)    │
//! └──────────────────────────┴──────────────┴──────────┘
//! state == 0: empty (the caller never stores 0)
//! ```
//!
//! A general-purpose table (hashbrown, which this replaces) keeps its control
//! bytes apart from its buckets: a lookup of an ID that is not there touches
//! two cold lines, the control group and the bucket. Here the key sits with
//! its state, and a probe of a table at most half full usually ends within
//! its home line. The seen-ID set is far larger than a core's cache
//! (the dedup window remembers hundreds of thousands of IDs), so these lines
//! are DRAM misses, and their number is the cost: [`prefetch_at`] lets a
//! caller start a miss before it needs the line (a submit before its
//! capacity claim, a batch as it stages, a commit 16 IDs ahead).
//!
//! # Memory
//!
//! The slots are allocated zeroed at build, and every page is touched then:
//! the memory is resident from the start, so the hot path never takes a
//! page fault (a first touch costs a microsecond or more, in the tail of
//! whichever submit meets it). A table stays at most half full; past that
//! it doubles, which allocates: the seen-ID set sizes its tables so a
//! running engine with a bounded configuration never gets there.

use crate::job::JobId;

/// One slot; `state == 0` marks it empty.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    id: u128,
    state: u64,
    _pad: u64,
}

/// The open-addressed table. Not synchronised: each lives in a shard's lock.
pub(crate) struct IdTable {
    slots: Box<[Slot]>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    /// `64 - log2(slots.len())`: a hash's top bits pick the home slot.
    shift: u32,
    len: usize,
    /// Set when `grow` moved the slots; see [`IdTable::take_grown`].
    grown: bool,
    seed: Seed,
}

/// Where a table's slots are, for a prefetch by a thread that does not hold
/// the table's lock: the slots' address and the hash shift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hint {
    pub(crate) base: usize,
    pub(crate) shift: u32,
}

/// The keys of [`mix`]: random per seen-ID set, so that IDs chosen from
/// outside (a client's UUIDs, say) cannot be aimed at one probe chain.
/// Fixed under `cfg(fuzzing)`, so a fuzzer's finding replays exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seed {
    k0: u64,
    k1: u64,
}

impl Seed {
    pub(crate) fn random() -> Seed {
        // Fixed under the fuzzer (reproducible crashes) and under loom (a
        // model must replay the same way: which shard lock an ID takes
        // decides which threads contend).
        if cfg!(any(fuzzing, quay_loom)) {
            return Seed {
                k0: 0x243F_6A88_85A3_08D3,
                k1: 0x1319_8A2E_0370_7344,
            };
        }
        use std::hash::BuildHasher;
        let r = std::collections::hash_map::RandomState::new();
        Seed {
            k0: r.hash_one(1u64),
            k1: r.hash_one(2u64),
        }
    }
}

/// A 128-bit ID mixed to 64 bits: the two halves, each XORed with a key,
/// multiplied to 128 bits and folded (a "folded multiply", as in foldhash).
/// Every bit of either half reaches the high bits, which pick the home slot
/// (and, through a second multiply, the shard). XORing the halves alone
/// would collide every `(a, b)` with `(a ^ x, b ^ x)`: IDs built as
/// `tenant << 64 | sequence` would share a few probe chains.
#[inline]
pub(crate) fn mix(seed: Seed, id: u128) -> u64 {
    let p = (((id as u64) ^ seed.k0) as u128).wrapping_mul((((id >> 64) as u64) ^ seed.k1) as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// An ID with its mix, computed once per operation: the shard, the
/// prefetch and the probe all use it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hashed {
    pub(crate) id: u128,
    pub(crate) mix: u64,
}

impl Hashed {
    #[inline]
    pub(crate) fn new(seed: Seed, id: JobId) -> Hashed {
        let id = id.as_u128();
        Hashed {
            id,
            mix: mix(seed, id),
        }
    }
}

/// Most IDs a table of `slots` slots holds before it grows: half. Probes
/// stay short (an absent ID probes 2.5 slots on average): measured against
/// three quarters full, the smaller working set did not pay for the longer
/// probes and backward shifts.
fn max_len(slots: usize) -> usize {
    slots / 2
}

fn zeroed_slots(n: usize) -> Box<[Slot]> {
    // `n` is a power of two at least 8 (and never 0 here, so the layout is
    // never empty); a size past `isize::MAX` bytes cannot be allocated, and
    // is handled like any failed allocation.
    let n = n.max(1);
    let layout = std::alloc::Layout::array::<Slot>(n)
        .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Slot>()));
    // SAFETY: `layout` has a non-zero size (at least one 32-byte slot).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Slot>();
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // Fault every page in now (see the module docs). Volatile: a plain
    // store of zero into memory known to be zeroed could be elided.
    let page_slots = (4096 / std::mem::size_of::<Slot>()).max(1);
    for i in (0..n).step_by(page_slots) {
        // SAFETY: `i < n`, so `p.add(i)` is in the allocation; the slot is
        // zeroed (a valid `Slot`) and overwritten with the same bytes.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*p.add(i)).state), 0) }
    }
    // SAFETY: `p` is a fresh allocation from the global allocator with the
    // layout of `[Slot; n]`, which `Box<[Slot]>` frees with that same layout;
    // its bytes are zero, and all-zero bytes are a valid `Slot` (plain
    // integers: an empty slot).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }
}

impl IdTable {
    /// A table holding up to `n` IDs before it must grow, hashing with
    /// `seed`.
    pub(crate) fn with_capacity(n: usize, seed: Seed) -> IdTable {
        let slots = n.saturating_mul(2).max(8).next_power_of_two();
        IdTable {
            slots: zeroed_slots(slots),
            mask: slots - 1,
            shift: 64 - slots.trailing_zeros(),
            len: 0,
            grown: false,
            seed,
        }
    }

    /// Where the slots are now.
    pub(crate) fn hint(&self) -> Hint {
        Hint {
            base: self.slots.as_ptr() as usize,
            shift: self.shift,
        }
    }

    /// Slots in all (memory is this times 32 bytes).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether the slots moved since the last call (the hint is stale).
    pub(crate) fn take_grown(&mut self) -> bool {
        std::mem::take(&mut self.grown)
    }

    /// IDs held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, mix: u64) -> usize {
        (mix >> self.shift) as usize
    }

    /// `Ok(slot)` holding `id`, or `Err(slot)`: the empty slot ending its
    /// probe, where it would go.
    #[inline]
    fn probe(&self, key: Hashed) -> Result<usize, usize> {
        let id = key.id;
        let mut i = self.home(key.mix);
        loop {
            let s = &self.slots[i];
            if s.state == 0 {
                return Err(i);
            }
            if s.id == id {
                return Ok(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The state of `id`, if present.
    #[inline]
    pub(crate) fn get(&self, key: Hashed) -> Option<u64> {
        self.probe(key).ok().map(|i| self.slots[i].state)
    }

    /// Looks `id` up and lets `f` decide its new state from the old one:
    /// `Some(s)` (non-zero) stores `s`, `None` leaves the table as it was.
    /// One probe for the lookup and the store. Returns `f`'s answer.
    #[inline]
    pub(crate) fn update(
        &mut self,
        key: Hashed,
        f: impl FnOnce(Option<u64>) -> Option<u64>,
    ) -> Option<u64> {
        match self.probe(key) {
            Ok(i) => {
                let new = f(Some(self.slots[i].state));
                if let Some(s) = new {
                    debug_assert!(s != 0);
                    self.slots[i].state = s;
                }
                new
            }
            Err(mut i) => {
                let new = f(None);
                if let Some(s) = new {
                    debug_assert!(s != 0);
                    if self.len + 1 > max_len(self.slots.len()) {
                        self.grow();
                        i = self.probe(key).unwrap_err();
                    }
                    self.slots[i] = Slot {
                        id: key.id,
                        state: s,
                        _pad: 0,
                    };
                    self.len += 1;
                }
                new
            }
        }
    }

    /// Stores `state` (non-zero) for `id`, inserting or overwriting.
    #[inline]
    pub(crate) fn set(&mut self, key: Hashed, state: u64) {
        self.update(key, |_| Some(state));
    }

    /// Removes `id` if its state satisfies `pred`; returns whether it did.
    #[inline]
    pub(crate) fn remove_if(&mut self, key: Hashed, pred: impl FnOnce(u64) -> bool) -> bool {
        match self.probe(key) {
            Ok(i) if pred(self.slots[i].state) => {
                self.delete_at(i);
                true
            }
            _ => false,
        }
    }

    /// Backward-shift deletion: walks the run after `hole`, moving back each
    /// entry whose home is not cyclically within `(hole, j]` (it could not
    /// be found past an empty slot at `hole` otherwise), then empties the
    /// last hole.
    fn delete_at(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s.state == 0 {
                break;
            }
            let home = self.home(mix(self.seed, s.id));
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole].state = 0;
        self.len -= 1;
    }

    /// Doubles the slots and reinserts every ID (allocates).
    #[cold]
    fn grow(&mut self) {
        let old = std::mem::replace(self, IdTable::with_capacity(self.slots.len(), self.seed));
        for s in old.slots.iter().filter(|s| s.state != 0) {
            let i = self
                .probe(Hashed {
                    id: s.id,
                    mix: mix(self.seed, s.id),
                })
                .unwrap_err();
            self.slots[i] = *s;
            self.len += 1;
        }
        self.grown = true;
    }

    /// Starts loading `id`'s home line into the cache, so a later lookup
    /// finds it there. A hint: no effect on the table.
    #[inline]
    pub(crate) fn prefetch(&self, key: Hashed, lines: usize) {
        prefetch_at(self.hint(), key, lines);
    }
}

/// Starts loading the `lines` lines from the one `id` would probe first in
/// the table `hint` describes: one for a lookup, two for a deletion (whose
/// backward shift reads the slots after the ID's). The hint may be stale
/// (the table grew since): the address is then wrong, which a prefetch
/// allows (see `prefetch::read`).
#[inline]
pub(crate) fn prefetch_at(hint: Hint, key: Hashed, lines: usize) {
    if hint.base == 0 {
        return;
    }
    let home = (key.mix >> hint.shift) as usize;
    let addr = hint.base.wrapping_add(home * std::mem::size_of::<Slot>());
    for i in 0..lines {
        // A read prefetch, though the line is written next too: a line no
        // other core holds arrives exclusive, ready for the write.
        crate::sync::prefetch::read(addr.wrapping_add(i * 64));
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_a_hashmap_through_churn() {
        // A small table, so runs wrap and backward shifts cross the end.
        let seed = Seed::random();
        let k = |id: JobId| Hashed::new(seed, id);
        let mut t = IdTable::with_capacity(24, seed);
        let mut model: HashMap<u128, u64> = HashMap::new();
        let mut x = 1u64;
        let steps = if cfg!(miri) { 3_000 } else { 200_000u64 };
        for step in 0..steps {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct IDs, some colliding in their low or high halves.
            let id = match x % 3 {
                0 => (x >> 8) as u128 % 40,
                1 => ((x >> 8) as u128 % 40) << 64,
                _ => ((x >> 8) as u128 % 40) | (1 << 100),
            };
            let jid = JobId::from(id);
            if model.len() < 24 && x % 2 == 0 {
                t.set(k(jid), step + 1);
                model.insert(id, step + 1);
            } else {
                let want = model.get(&id).is_some_and(|&s| s % 3 != 0);
                assert_eq!(t.remove_if(k(jid), |s| s % 3 != 0), want);
                if want {
                    model.remove(&id);
                }
            }
            assert_eq!(t.len(), model.len());
            assert_eq!(t.get(k(jid)), model.get(&id).copied());
        }
        for (&id, &s) in &model {
            assert_eq!(t.get(k(JobId::from(id))), Some(s));
        }
    }

    #[test]
    fn grows_past_half_full_and_keeps_everything() {
        let n = if cfg!(miri) { 300 } else { 10_000u64 };
        let seed = Seed::random();
        let k = |id: JobId| Hashed::new(seed, id);
        let mut t = IdTable::with_capacity(4, seed);
        for i in 1..=n {
            t.set(k(JobId::from(i)), i);
        }
        assert_eq!(t.len() as u64, n);
        assert!(t.slots.len() as u64 >= 2 * n);
        assert!(t.take_grown());
        for i in 1..=n {
            assert_eq!(t.get(k(JobId::from(i))), Some(i));
        }
        assert_eq!(t.get(k(JobId::from(n + 1))), None);
    }

    #[test]
    fn update_can_decline() {
        let seed = Seed::random();
        let mut t = IdTable::with_capacity(8, seed);
        let id = Hashed::new(seed, JobId::from(3u64));
        assert_eq!(t.update(id, |_| None), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.update(id, |old| old.map_or(Some(5), |_| None)), Some(5));
        assert_eq!(t.update(id, |old| old.map_or(Some(5), |_| None)), None);
        assert_eq!(t.get(id), Some(5));
    }
}
