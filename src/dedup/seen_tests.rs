//! Unit tests of the seen-ID set (`dedup.rs`).

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
fn finish_all_records_every_id_of_every_shard() {
    let s = SeenSet::new(
        DedupConfig {
            window: Duration::from_millis(100),
            capacity: 100_000,
        },
        10_000,
    );
    let ids: Vec<JobId> = (0..5_000u64).map(|i| JobId::from(i * 7919)).collect();
    for &id in &ids {
        assert!(s.try_insert(id, t(0)));
    }
    let (mut pending, mut scratch) = (ids[..3_000].to_vec(), Vec::new());
    s.finish_all(&mut pending, &mut scratch, t(10));
    assert!(pending.is_empty());
    for &id in &ids[..3_000] {
        assert!(!s.is_live(id), "finished, so not live");
        assert!(!s.try_insert(id, t(50)), "finished within the window");
    }
    for &id in &ids[3_000..] {
        assert!(s.is_live(id), "not finished: still live");
    }
    assert!(s.try_insert(ids[0], t(110)), "past the window");
}

#[test]
fn an_id_ending_twice_in_one_nanosecond_keeps_its_newer_ending() {
    // One remembered ending per shard: the second ending pushes the
    // first out of the FIFO, and with equal states that pop would have
    // forgotten the ID altogether.
    let s = SeenSet::with_tables(
        DedupConfig {
            window: Duration::from_secs(1),
            capacity: SHARDS,
        },
        8,
    );
    let id = JobId::from(42u64);
    assert!(s.try_insert(id, t(0)));
    s.finish(id, t(5));
    assert!(s.revive(id), "redrive: live again");
    s.finish(id, t(5));
    assert!(!s.try_insert(id, t(6)), "the newer ending is remembered");
}

#[test]
fn tables_grow_and_the_prefetch_hint_follows() {
    let s = SeenSet::with_tables(DedupConfig::default(), 1);
    for i in 0..10_000u64 {
        assert!(s.try_insert(JobId::from(i), t(0)));
    }
    for cell in s.shards.iter() {
        let mut g = relock(cell.lock.lock());
        assert!(g.map.slots() > 8, "every table grew");
        assert!(!g.map.take_grown(), "growth was republished");
        assert_eq!(cell.hint(), g.map.hint());
    }
    for i in 0..10_000u64 {
        assert!(!s.try_insert(JobId::from(i), t(1)));
    }
}

#[test]
fn structured_ids_spread_over_shards() {
    // `tenant << 64 | sequence`: a fold by XOR alone would map each
    // value of `tenant ^ sequence` to one shard and one home slot.
    let s = SeenSet::new(DedupConfig::default(), 65_536);
    let mut per = vec![0usize; s.shards.len()];
    let mut mixed = std::collections::HashSet::new();
    for tenant in 0..64u128 {
        for seq in 0..64u128 {
            let id = tenant << 64 | seq;
            per[s.shard_index(JobId::from(id))] += 1;
            mixed.insert(crate::dedup::idtable::mix(s.seed, id));
        }
    }
    // The XOR fold gives these 4 096 IDs 64 hashes in all.
    assert_eq!(mixed.len(), 4096, "hash collisions");
    let max = per.iter().copied().max().unwrap_or(0);
    assert!(max < 4 * 4096 / SHARDS, "uneven: {per:?}");
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
