//! Membership and assignment. Each node puts its name into the
//! `quay_members` bucket (`max_age` = the lease TTL) every tick; a node
//! that stops doing so ages out. Every node computes the same assignment
//! from the same member list: partitions in order, dealt to the members in
//! name order, so each gets ⌊P/n⌋ or ⌈P/n⌉.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::TryStreamExt;
use std::collections::BTreeSet;

/// Says this node is alive.
pub(crate) async fn heartbeat(members: &kv::Store, node: &str) -> Result<(), String> {
    members.put(node, Bytes::new()).await.map(|_| ()).map_err(|e| e.to_string())
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
    let Some(i) = all.iter().position(|m| *m == me) else {
        return BTreeSet::new();
    };
    (0..partitions).filter(|p| *p as usize % all.len() == i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner_and_shares_are_even() {
        let members: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let shares: Vec<_> = members.iter().map(|m| assignment(m, &members, 64)).collect();
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
}
