//! The seen-ID set: which job IDs are live, and which finished recently.
//!
//! A sharded table of our own rather than dashmap: it is built on the sync
//! shim, so the loom model of concurrent submits checks this very code, and
//! each shard keeps a FIFO of terminal IDs beside its map, which dashmap
//! has no place for.
//!
//! # States of an ID
//!
//! - absent: never seen, forgotten, or its window passed;
//! - `LIVE`: accepted and not yet terminal. Never forgotten;
//! - terminal at `t`: completed or dead at time `t`. A duplicate until
//!   `t + window`, then absent again.
//!
//! # Bounded memory without scans
//!
//! Each shard keeps its terminal IDs in a FIFO in the order they ended.
//! Every ending recorded in a shard then pops from the FIFO front while the
//! front's window has passed, or while the shard holds more than its share
//! of `dedup_capacity` (counted as evicted): amortised O(1), no scan. (A
//! submit does not trim: only endings add terminal IDs, and an ID past its
//! window is new again whether or not it has been popped.) An entry whose
//! ID has since become live again, or ended again, is stale, and popping
//! it changes nothing: each ending's state is unique within its shard. So a
//! shard's map holds at most its live IDs plus its share of the capacity,
//! and its FIFO at most that share: memory is flat over an endless stream
//! of distinct IDs.
//!
//! Eviction is oldest-first within a shard; across shards it is oldest-first
//! to within the spread of a uniform hash.

use crate::clock::{duration_nanos, Timestamp};
use crate::dedup::idtable::{prefetch_at, Hashed, Hint, IdTable, Seed};
use crate::job::JobId;
use crate::loom::relock;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Mutex;
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::time::Duration;

/// A live ID's state in the table.
const LIVE: u64 = u64::MAX;

/// The state of an ID terminal at `t` ns: `t + 1`, so that no state is the
/// table's empty marker 0, and below `LIVE`.
#[inline]
fn ended(t: u64) -> u64 {
    t.saturating_add(1).min(LIVE - 1)
}

/// When an ID with terminal state `state` ended.
#[inline]
fn ended_at(state: u64) -> u64 {
    state - 1
}

/// Shards of the set: enough that producers rarely meet a worker on one
/// lock, few enough that a worker's commit of finishes (up to 1 024) has
/// several a shard to overlap.
const SHARDS: usize = 64;

/// Most IDs a shard's table is sized for at build (2^13 IDs in 2^14 slots of
/// 32 bytes: 512 KiB a shard, 32 MiB in all, resident from build on).
const PRESIZE_CAP: usize = 1 << 13;

struct Shard {
    /// `LIVE`, or `ended(t)` for an ID terminal at `t`.
    map: IdTable,
    /// Terminal IDs in the order they ended, with their state then.
    ended: VecDeque<(JobId, u64)>,
    /// Terminal IDs this shard forgot early to respect the capacity. A
    /// plain count under the lock: an atomic RMW per eviction would be a
    /// full barrier, stalling on the slot writes just made.
    evicted: u64,
    /// The last terminal state recorded here; each new one is above it.
    last: u64,
}

/// What [`SeenSet::lookup`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Never seen, forgotten, or past its window.
    Absent,
    /// Accepted and not yet terminal.
    Live,
    /// Terminal within the window.
    Ended,
}

/// Dedup settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long a terminal ID stays a duplicate. Zero: only live IDs are.
    pub window: Duration,
    /// Most terminal IDs remembered; the oldest are forgotten first.
    pub capacity: usize,
}

impl Default for DedupConfig {
    fn default() -> DedupConfig {
        DedupConfig {
            window: Duration::from_secs(300),
            capacity: 1 << 18,
        }
    }
}

/// One shard: its lock, and beside it where its table's slots are, readable
/// without the lock so a producer can prefetch before it locks.
struct ShardCell {
    lock: Mutex<Shard>,
    /// `Hint::base`; 0 while unknown. Written under `lock`.
    base: AtomicUsize,
    /// `Hint::shift`. Written under `lock`.
    shift: AtomicUsize,
}

impl ShardCell {
    fn new(map: IdTable, ended: VecDeque<(JobId, u64)>) -> ShardCell {
        let h = map.hint();
        ShardCell {
            lock: Mutex::new(Shard {
                map,
                ended,
                evicted: 0,
                last: 0,
            }),
            base: AtomicUsize::new(h.base),
            shift: AtomicUsize::new(h.shift as usize),
        }
    }

    /// Republishes the hint if the table grew (caller holds the lock).
    fn refresh(&self, s: &mut Shard) {
        if s.map.take_grown() {
            let h = s.map.hint();
            // Relaxed: a hint, read only to aim a prefetch; a stale or torn
            // pair aims it wrong, which costs a miss and nothing else.
            self.shift.store(h.shift as usize, Ordering::Relaxed);
            self.base.store(h.base, Ordering::Relaxed);
        }
    }

    fn hint(&self) -> Hint {
        if cfg!(quay_loom) {
            // Prefetches compile to nothing under loom: skip the loads too,
            // so the models explore only the synchronisation that matters.
            return Hint::default();
        }
        // Relaxed: see `refresh`.
        Hint {
            base: self.base.load(Ordering::Relaxed),
            shift: self.shift.load(Ordering::Relaxed) as u32,
        }
    }
}

/// The sharded seen-ID set.
pub struct SeenSet {
    shards: Box<[CachePadded<ShardCell>]>,
    mask: usize,
    window: u64,
    per_shard_cap: usize,
    /// The keys of every ID's mix, for shards and tables alike.
    seed: Seed,
}

/// How a configuration divides over the shards.
struct Shares {
    /// Enough shards that workers and producers rarely meet on one lock;
    /// fewer under loom to keep the model small.
    shards: usize,
    /// Terminal IDs a shard remembers at most.
    per_shard_cap: usize,
    /// Terminal IDs a shard's FIFO holds at most: none without a window.
    remembered: usize,
}

impl Shares {
    fn of(cfg: &DedupConfig) -> Shares {
        let shards = if cfg!(quay_loom) { 2 } else { SHARDS };
        let per_shard_cap = cfg.capacity.div_ceil(shards).max(1);
        Shares {
            shards,
            per_shard_cap,
            remembered: if cfg.window.is_zero() {
                0
            } else {
                per_shard_cap
            },
        }
    }
}

impl SeenSet {
    /// A set for an engine holding at most `live_bound` jobs at once.
    ///
    /// Each shard's table is sized at build for its share of
    /// `live_bound + capacity`, plus a sixteenth and 64 for a uniform
    /// hash's uneven spread over shards (many standard deviations): a
    /// running engine allocates nothing here, as long as that share fits
    /// the cap of 2^13 IDs a table (up to `capacity + dedup_capacity` of
    /// about 500 000; a bigger setting grows its tables while it fills,
    /// each growth allocating and faulting in the doubled table under its
    /// shard's lock). The slots are zeroed and faulted in at build (an
    /// engine's default configuration: 16 MiB; 32 MiB, about 13 ms on the
    /// 2-core VM, for `capacity + dedup_capacity` of 2^16 + 2^18), so the
    /// hot path takes no page faults.
    pub fn new(cfg: DedupConfig, live_bound: u64) -> SeenSet {
        let Shares {
            shards: n,
            remembered,
            ..
        } = Shares::of(&cfg);
        let live = usize::try_from(live_bound)
            .unwrap_or(usize::MAX)
            .div_ceil(n);
        // Capped so a huge setting does not reserve memory up front (such
        // tables then grow as IDs arrive, and allocate until they reach
        // their bound).
        let share = live.saturating_add(remembered);
        let presize = share
            .saturating_add(share / 16)
            .saturating_add(64)
            .min(PRESIZE_CAP);
        SeenSet::with_tables(cfg, presize)
    }

    /// A set whose shard tables are sized for `ids_per_table` IDs (they
    /// grow past that). For tests and fuzzing, which want tiny tables that
    /// wrap and grow; [`SeenSet::new`] sizes them for a configuration.
    #[doc(hidden)]
    pub fn with_tables(cfg: DedupConfig, ids_per_table: usize) -> SeenSet {
        let Shares {
            shards: n,
            per_shard_cap,
            remembered,
        } = Shares::of(&cfg);
        let seed = Seed::random();
        SeenSet {
            shards: (0..n)
                .map(|_| {
                    CachePadded::new(ShardCell::new(
                        IdTable::with_capacity(ids_per_table, seed),
                        VecDeque::with_capacity(remembered.min(PRESIZE_CAP) + 1),
                    ))
                })
                .collect(),
            mask: n - 1,
            window: duration_nanos(cfg.window),
            per_shard_cap,
            seed,
        }
    }

    #[inline]
    fn hashed(&self, id: JobId) -> Hashed {
        Hashed::new(self.seed, id)
    }

    /// Starts loading the line a lookup of `id` will read, without taking
    /// a lock: a caller with other work to do first (a batch's other IDs, a
    /// submit's capacity claim and clock read) overlaps the cache miss with
    /// it. A hint only.
    #[inline]
    pub fn prefetch(&self, id: JobId) {
        let k = self.hashed(id);
        prefetch_at(self.shards[self.shard_of(k)].hint(), k, 1);
    }

    /// The shard of an ID: the mix's top bits pick the slot in a table; a
    /// multiply brings its other bits up to pick the shard.
    #[inline]
    fn shard_of(&self, k: Hashed) -> usize {
        (k.mix.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 58) as usize & self.mask
    }

    #[cfg(test)]
    fn shard_index(&self, id: JobId) -> usize {
        self.shard_of(self.hashed(id))
    }

    /// Pops expired and over-capacity terminal IDs from the FIFO front.
    fn trim(&self, s: &mut Shard, now: u64) {
        while let Some(&(id, state)) = s.ended.front() {
            let expired = now.saturating_sub(ended_at(state)) >= self.window;
            let over = s.ended.len() > self.per_shard_cap;
            if !expired && !over {
                break;
            }
            s.ended.pop_front();
            // An ID live again, or ended again later, is not this entry's.
            if s.map.remove_if(self.hashed(id), |cur| cur == state) && !expired {
                s.evicted += 1;
            }
        }
    }

    /// Marks `id` live if it is new. Returns `false` for a duplicate: live,
    /// or terminal within the window.
    ///
    /// No trimming here: only endings add terminal IDs, so `finish` keeps
    /// the bound, and the submit path (a producer's hot path) stays one
    /// probe. An ID past its window is new again whether or not it has
    /// been popped yet.
    pub fn try_insert(&self, id: JobId, now: Timestamp) -> bool {
        let now = now.as_nanos();
        let k = self.hashed(id);
        let cell = &self.shards[self.shard_of(k)];
        let mut s = relock(cell.lock.lock());
        let window = self.window;
        let fresh = s
            .map
            .update(k, |old| match old {
                None => Some(LIVE),
                Some(LIVE) => None,
                Some(st) if now.saturating_sub(ended_at(st)) < window => None,
                Some(_) => Some(LIVE),
            })
            .is_some();
        cell.refresh(&mut s);
        fresh
    }

    /// Makes `id` live whether or not it is remembered as finished
    /// (redrive bypasses the window). Returns `false`, changing nothing, if
    /// `id` is live already: a job with that ID is in the engine, and a
    /// second live copy would break dedup.
    pub fn revive(&self, id: JobId) -> bool {
        let k = self.hashed(id);
        let cell = &self.shards[self.shard_of(k)];
        let mut s = relock(cell.lock.lock());
        let revived = s
            .map
            .update(k, |old| (old != Some(LIVE)).then_some(LIVE))
            .is_some();
        cell.refresh(&mut s);
        revived
    }

    /// What the set knows of `id` at `now`, changing nothing: live,
    /// ended within the window (a submit would be a duplicate), or neither.
    /// Takes the ID's shard lock, as a submit does.
    pub(crate) fn lookup(&self, id: JobId, now: Timestamp) -> Known {
        let k = self.hashed(id);
        let state = relock(self.shards[self.shard_of(k)].lock.lock()).map.get(k);
        match state {
            None => Known::Absent,
            Some(LIVE) => Known::Live,
            // The test `try_insert` makes.
            Some(st) if now.as_nanos().saturating_sub(ended_at(st)) < self.window => Known::Ended,
            Some(_) => Known::Absent,
        }
    }

    /// Whether a job with `id` is live.
    #[cfg(test)]
    pub(crate) fn is_live(&self, id: JobId) -> bool {
        let k = self.hashed(id);
        relock(self.shards[self.shard_of(k)].lock.lock()).map.get(k) == Some(LIVE)
    }

    /// Undoes a `try_insert` whose job was then refused.
    pub fn forget_live(&self, id: JobId) {
        let k = self.hashed(id);
        let mut s = relock(self.shards[self.shard_of(k)].lock.lock());
        s.map.remove_if(k, |st| st == LIVE);
    }

    /// `id` reached a terminal state at `now`.
    pub fn finish(&self, id: JobId, now: Timestamp) {
        let k = self.hashed(id);
        let cell = &self.shards[self.shard_of(k)];
        let mut s = relock(cell.lock.lock());
        self.finish_locked(&mut s, k, now.as_nanos());
        cell.refresh(&mut s);
    }

    fn finish_locked(&self, s: &mut Shard, k: Hashed, now: u64) {
        if self.window == 0 {
            s.map.remove_if(k, |_| true);
            return;
        }
        // Strictly increasing within the shard, so no two FIFO entries
        // share a state: an ID that ends twice in one nanosecond (a manual
        // clock, the driver) must not have its newer ending evicted along
        // with its older entry. The cost: such endings count as up to a few
        // nanoseconds later than they were.
        let state = ended(now).max(s.last.saturating_add(1)).min(LIVE - 1);
        s.last = state;
        s.map.set(k, state);
        s.ended.push_back((JobId::from(k.id), state));
        self.trim(s, now);
    }

    /// Every ID in `ids` reached a terminal state at `now`; empties `ids`
    /// (`scratch` is working space, kept to avoid allocating: it grows to
    /// twice the longest `ids`).
    ///
    /// Grouped by shard (a counting sort), so each shard's lock is taken
    /// once per group: a worker's commit costs one lock transfer per shard,
    /// not one per job. The cache misses overlap instead of queueing: each
    /// ID's two lines (its slot and the next, which a deletion's backward
    /// shift reads) are prefetched 16 IDs ahead of its turn, and under each
    /// lock the lines of the old IDs the group will evict. Measured worse:
    /// prefetching all 1 024 IDs up front (4-6%: the first lines were gone
    /// again by their turn), and a first pass over the locks to prefetch
    /// the evictions earlier (single submits: producers met the extra lock
    /// traffic).
    pub fn finish_all(&self, ids: &mut Vec<JobId>, scratch: &mut Vec<Hashed>, now: Timestamp) {
        let now = now.as_nanos();
        // `scratch` holds the hashed IDs, then the same sorted by shard.
        let n = ids.len();
        scratch.clear();
        scratch.extend(ids.iter().map(|&id| self.hashed(id)));
        scratch.resize(2 * n, Hashed::default());
        let mut start = [0usize; SHARDS + 1];
        for &k in &scratch[..n] {
            start[self.shard_of(k) + 1] += 1;
        }
        for i in 0..SHARDS {
            start[i + 1] += start[i];
        }
        let mut next = start;
        for i in 0..n {
            let k = scratch[i];
            let at = self.shard_of(k);
            scratch[n + next[at]] = k;
            next[at] += 1;
        }
        let sorted = &scratch[n..];
        let groups = || {
            (0..self.shards.len())
                .map(|at| (at, start[at]..start[at + 1]))
                .filter(|(_, r)| !r.is_empty())
        };
        // Prefetch a fixed distance ahead of the work, so lines arrive
        // just before their use instead of all at once (too many misses in
        // flight, and the first lines evicted before they are used).
        const AHEAD: usize = 16;
        let prefetch = |k: Hashed| prefetch_at(self.shards[self.shard_of(k)].hint(), k, 2);
        for &k in sorted.iter().take(AHEAD) {
            prefetch(k);
        }
        for (at, r) in groups() {
            let cell = &self.shards[at];
            let mut s = relock(cell.lock.lock());
            if self.window != 0 {
                let over = (s.ended.len() + r.len()).saturating_sub(self.per_shard_cap);
                for &(old, _) in s.ended.iter().take(over.min(r.len())) {
                    s.map.prefetch(self.hashed(old), 2);
                }
            }
            for i in r {
                if let Some(&k) = sorted.get(i + AHEAD) {
                    prefetch(k);
                }
                self.finish_locked(&mut s, sorted[i], now);
            }
            cell.refresh(&mut s);
        }
        ids.clear();
    }

    /// How many of its most recent terminal IDs each shard remembers (within
    /// the window): the capacity's share of one shard.
    pub fn shard_capacity(&self) -> usize {
        self.per_shard_cap
    }

    /// Terminal IDs forgotten early to respect the capacity (takes every
    /// shard's lock).
    pub(crate) fn evicted(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| relock(s.lock.lock()).evicted)
            .sum()
    }

    /// IDs remembered now, live and terminal (takes every shard's lock,
    /// one after another). A terminal ID whose window has passed counts
    /// until a later ending in its shard pops it.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| relock(s.lock.lock()).map.len())
            .sum()
    }
}

#[cfg(all(test, not(quay_loom)))]
#[path = "seen_tests.rs"]
mod tests;
