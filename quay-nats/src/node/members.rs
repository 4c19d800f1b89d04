//! Membership and assignment. Each node puts its name into the
//! `quay_members` bucket (`max_age` = the lease TTL) every tick; a node
//! that stops doing so ages out. Every node computes the same assignment
//! from the same member list.
//!
//! The assignment is rendezvous hashing (Thaler and Ravishankar, "A
//! Name-Based Mapping Scheme for Rendezvous", 1996) with bounded loads:
//! each partition ranks the members by `hash(member, partition)`, and goes
//! to the best-ranked member that still has room, where room is ⌊P/n⌋ for
//! everyone and ⌈P/n⌉ for the first P mod n members to need it. So every
//! member gets ⌊P/n⌋ or ⌈P/n⌉, and when a member joins or leaves, most
//! partitions keep their owner (a dealt-out `p mod n` would move about two
//! thirds of them, each move a drain and a takeover).

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::TryStreamExt;
use std::collections::BTreeSet;
use xxhash_rust::xxh3::xxh3_64;

/// Says this node is alive.
pub(crate) async fn heartbeat(members: &kv::Store, node: &str) -> Result<(), String> {
    members
        .put(node, Bytes::new())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Leaves the membership (graceful shutdown).
pub(crate) async fn leave(members: &kv::Store, node: &str) {
    let _ = members.purge(node).await;
}

/// The live members' names.
pub(crate) async fn list(members: &kv::Store) -> Result<BTreeSet<String>, String> {
    let keys = members.keys().await.map_err(|e| e.to_string())?;
    keys.try_collect().await.map_err(|e| e.to_string())
}

/// The partitions `me` should own among `members` (which need not include it).
pub fn assignment(me: &str, members: &BTreeSet<String>, partitions: u32) -> BTreeSet<u32> {
    let mut all: Vec<&str> = members.iter().map(String::as_str).collect();
    if !members.contains(me) {
        all.push(me);
        all.sort_unstable();
    }
    let n = all.len();
    let floor = partitions as usize / n;
    let mut extra = partitions as usize % n;
    let mut load = vec![0usize; n];
    let mut mine = BTreeSet::new();
    let rank = |p: u32| {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(xxh3_64(format!("{}/{p}", all[i]).as_bytes())));
        order
    };
    for p in 0..partitions {
        let order = rank(p);
        let pick = order
            .iter()
            .copied()
            .find(|&i| load[i] < floor)
            .or_else(|| {
                let i = order
                    .iter()
                    .copied()
                    .find(|&i| load[i] == floor && extra > 0)?;
                extra -= 1;
                Some(i)
            });
        if let Some(i) = pick {
            load[i] += 1;
            if all[i] == me {
                mine.insert(p);
            }
        }
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner_and_shares_are_even() {
        let members: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let shares: Vec<_> = members
            .iter()
            .map(|m| assignment(m, &members, 64))
            .collect();
        let total: usize = shares.iter().map(BTreeSet::len).sum();
        assert_eq!(total, 64);
        let mut union = BTreeSet::new();
        for s in &shares {
            assert!(s.len() == 21 || s.len() == 22, "{}", s.len());
            union.extend(s.iter().copied());
        }
        assert_eq!(union.len(), 64);
        // A node not yet listed computes its share as if it were.
        let alone = assignment("d", &members, 64);
        assert_eq!(alone.len(), 16);
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_partitions_and_a_few_more() {
        let three: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let kept: usize = ["a", "b"]
            .iter()
            .map(|m| {
                assignment(m, &three, 64)
                    .intersection(&assignment(m, &two, 64))
                    .count()
            })
            .sum();
        // a and b owned 42 or 43 partitions; nearly all stay with them.
        let before: usize = ["a", "b"]
            .iter()
            .map(|m| assignment(m, &three, 64).len())
            .sum();
        assert!(kept + 4 >= before, "kept {kept} of {before}");
    }
}
