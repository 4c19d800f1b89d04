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
//! Every operation on a shard first pops from the FIFO front while the
//! front's window has passed, or while the shard holds more than its share
//! of `dedup_capacity` (counted as evicted): amortised O(1), no scan. An
//! entry whose ID has since become live again is stale, and popping it
//! changes nothing. So a shard's map holds at most its live IDs plus its
//! share of the capacity, and its FIFO at most that share: memory is flat
//! over an endless stream of distinct IDs.
//!
//! Eviction is oldest-first within a shard; across shards it is oldest-first
//! to within the spread of a uniform hash.

use crate::clock::{duration_nanos, Timestamp};
use crate::job::JobId;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::Mutex;
use crossbeam_utils::CachePadded;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

const LIVE: u64 = u64::MAX;

/// Shards of the set: enough that producers rarely meet on one lock, few
/// enough that a worker's batch of finishes shares locks.
const SHARDS: usize = 16;

/// Most entries a shard's table is sized for at build (2^16 × 16 shards:
/// about a million IDs, 25 MB of address space, of which only the control
/// bytes are touched up front).
const PRESIZE_CAP: usize = 1 << 16;

/// Job IDs are fingerprints or caller integers; fold them to 64 bits with
/// a multiply so sequential integer IDs spread too.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01B3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64);
        self.0 = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<JobId, u64, BuildHasherDefault<IdHasher>>;

struct Shard {
    /// `LIVE`, or the terminal time in nanoseconds.
    map: Map,
    /// Terminal IDs in the order they ended, with their terminal time.
    ended: VecDeque<(JobId, u64)>,
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

/// The sharded seen-ID set.
pub struct SeenSet {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    mask: usize,
    window: u64,
    per_shard_cap: usize,
    evicted: AtomicU64,
}

fn relock<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}

impl SeenSet {
    /// A set for an engine holding at most `live_bound` jobs at once.
    ///
    /// Each shard's table is sized at build for twice its share of
    /// `live_bound + capacity`: a hash table rehashes in place (no
    /// allocation) while at most half full, so a running engine allocates
    /// nothing here. Only the control bytes are touched up front; the
    /// buckets' pages are faulted in as IDs arrive.
    pub fn new(cfg: DedupConfig, live_bound: u64) -> SeenSet {
        // Enough shards that workers and producers rarely meet on one lock;
        // fewer under loom to keep the model small.
        let n = if cfg!(quay_loom) { 2 } else { SHARDS };
        let per_shard_cap = cfg.capacity.div_ceil(n).max(1);
        let live = usize::try_from(live_bound)
            .unwrap_or(usize::MAX)
            .div_ceil(n);
        let remembered = if cfg.window.is_zero() {
            0
        } else {
            per_shard_cap
        };
        // Slack for an uneven hash spread over shards; capped so a huge
        // setting does not reserve memory up front (such tables then grow
        // as IDs arrive, and allocate until they reach their bound).
        let presize = (2 * live.saturating_add(remembered))
            .saturating_add(64)
            .min(PRESIZE_CAP);
        SeenSet {
            shards: (0..n)
                .map(|_| {
                    let mut map = Map::default();
                    map.reserve(presize);
                    CachePadded::new(Mutex::new(Shard {
                        map,
                        ended: VecDeque::with_capacity(remembered.min(PRESIZE_CAP) + 1),
                    }))
                })
                .collect(),
            mask: n - 1,
            window: duration_nanos(cfg.window),
            per_shard_cap,
            evicted: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: JobId) -> &Mutex<Shard> {
        &self.shards[self.shard_index(id)]
    }

    fn shard_index(&self, id: JobId) -> usize {
        // A different multiplier from the tables' own hash, so the bits
        // picking the shard are independent of those hashbrown uses.
        let v = id.as_u128();
        let h = ((v as u64) ^ ((v >> 64) as u64)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (h >> 58) as usize & self.mask
    }

    /// Pops expired and over-capacity terminal IDs from the FIFO front.
    fn trim(&self, s: &mut Shard, now: u64) {
        while let Some(&(id, t)) = s.ended.front() {
            let expired = now.saturating_sub(t) >= self.window;
            let over = s.ended.len() > self.per_shard_cap;
            if !expired && !over {
                break;
            }
            s.ended.pop_front();
            if s.map.get(&id) == Some(&t) {
                s.map.remove(&id);
                if !expired {
                    // Relaxed: a statistic.
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Marks `id` live if it is new. Returns `false` for a duplicate: live,
    /// or terminal within the window.
    pub fn try_insert(&self, id: JobId, now: Timestamp) -> bool {
        let now = now.as_nanos();
        let mut s = relock(self.shard(id).lock());
        self.trim(&mut s, now);
        match s.map.get_mut(&id) {
            Some(v) if *v == LIVE => false,
            Some(t) if now.saturating_sub(*t) < self.window => false,
            Some(v) => {
                *v = LIVE;
                true
            }
            None => {
                s.map.insert(id, LIVE);
                true
            }
        }
    }

    /// Makes `id` live whether or not it is remembered as finished
    /// (redrive bypasses the window). Returns `false`, changing nothing, if
    /// `id` is live already: a job with that ID is in the engine, and a
    /// second live copy would break dedup.
    pub(crate) fn revive(&self, id: JobId) -> bool {
        let mut s = relock(self.shard(id).lock());
        if s.map.get(&id) == Some(&LIVE) {
            return false;
        }
        s.map.insert(id, LIVE);
        true
    }

    /// Whether a job with `id` is live.
    pub(crate) fn is_live(&self, id: JobId) -> bool {
        relock(self.shard(id).lock()).map.get(&id) == Some(&LIVE)
    }

    /// Undoes a `try_insert` whose job was then refused.
    pub(crate) fn forget_live(&self, id: JobId) {
        let mut s = relock(self.shard(id).lock());
        if s.map.get(&id) == Some(&LIVE) {
            s.map.remove(&id);
        }
    }

    /// `id` reached a terminal state at `now`.
    pub fn finish(&self, id: JobId, now: Timestamp) {
        let mut s = relock(self.shard(id).lock());
        self.finish_locked(&mut s, id, now.as_nanos().min(LIVE - 1));
    }

    fn finish_locked(&self, s: &mut Shard, id: JobId, now: u64) {
        if self.window == 0 {
            s.map.remove(&id);
            return;
        }
        s.map.insert(id, now);
        s.ended.push_back((id, now));
        self.trim(s, now);
    }

    /// Every ID in `ids` reached a terminal state at `now`; empties `ids`.
    /// Grouped by shard, so each shard's lock is taken once per group: a
    /// worker's batch of finishes costs one lock transfer per shard touched,
    /// not one per job.
    pub fn finish_all(&self, ids: &mut Vec<JobId>, now: Timestamp) {
        let now = now.as_nanos().min(LIVE - 1);
        ids.sort_unstable_by_key(|&id| self.shard_index(id));
        let mut rest = &ids[..];
        while let Some(&first) = rest.first() {
            let at = self.shard_index(first);
            let n = rest
                .iter()
                .take_while(|&&id| self.shard_index(id) == at)
                .count();
            let mut s = relock(self.shards[at].lock());
            for &id in &rest[..n] {
                self.finish_locked(&mut s, id, now);
            }
            drop(s);
            rest = &rest[n..];
        }
        ids.clear();
    }

    /// Terminal IDs forgotten early to respect the capacity.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// IDs remembered now, live and terminal (takes every shard's lock).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| relock(s.lock()).map.len()).sum()
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn live_terminal_and_window() {
        let s = SeenSet::new(
            DedupConfig {
                window: Duration::from_millis(100),
                capacity: 1_000,
            },
            100,
        );
        let id = JobId::from(7u64);
        assert!(s.try_insert(id, t(0)));
        assert!(!s.try_insert(id, t(1)), "live");
        s.finish(id, t(10));
        assert!(!s.try_insert(id, t(109)), "within window");
        assert!(s.try_insert(id, t(110)), "after window");
    }

    #[test]
    fn capacity_evicts_oldest_terminal_never_live() {
        let s = SeenSet::new(
            DedupConfig {
                window: Duration::from_secs(3600),
                capacity: 64 * 4,
            },
            1_000,
        );
        let live: Vec<JobId> = (0..1_000u64)
            .map(|i| JobId::from((i as u128 + 1) << 80))
            .collect();
        for &id in &live {
            assert!(s.try_insert(id, t(0)));
        }
        for i in 0..100_000u64 {
            let id = JobId::from(i);
            assert!(s.try_insert(id, t(1)));
            s.finish(id, t(1));
        }
        for &id in &live {
            assert!(!s.try_insert(id, t(2)), "a live ID was forgotten");
        }
        assert!(s.len() <= 1_000 + 64 * 4, "memory bounded: {}", s.len());
        assert!(s.evicted() >= 100_000 - 64 * 4);
        // The newest terminal IDs are still remembered.
        assert!(!s.try_insert(JobId::from(99_999u64), t(2)));
    }

    #[test]
    fn zero_window_keeps_only_live() {
        let s = SeenSet::new(
            DedupConfig {
                window: Duration::ZERO,
                capacity: 10,
            },
            10,
        );
        let id = JobId::from("x");
        assert!(s.try_insert(id, t(0)));
        assert!(!s.try_insert(id, t(0)));
        s.finish(id, t(0));
        assert!(s.try_insert(id, t(0)));
    }
}
