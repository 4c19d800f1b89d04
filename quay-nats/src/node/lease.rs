//! Partition leases in the `quay_leases` bucket (`history: 1`, `max_age` =
//! the lease TTL): one key per partition, whose value names the owner.
//!
//! - **Acquire** is `create`: it succeeds only where no live lease is (the
//!   key never existed, was deleted, or aged out). Its revision is the
//!   partition's *generation*, unique and increasing in the bucket.
//! - **Renew** is `update` expecting the last revision: it fails once
//!   anyone else has written the key, so a renewal never steals a lease.
//! - **Release** is a delete expecting the last revision, after the drain.
//!
//! `docs/scale-out.md` has the protocol and its failure cases.

use async_nats::jetstream::kv;
use bytes::Bytes;

/// A held lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// The generation: the revision `create` returned.
    pub generation: u64,
    /// The revision to expect on the next write.
    pub revision: u64,
}

/// What a renewal found.
#[derive(Debug)]
pub(crate) enum Renewed {
    /// Still ours, with this revision.
    Ours(u64),
    /// Someone else wrote it, or it aged out: the generation is over.
    Lost,
    /// No answer (server down, timeout): the lease may or may not hold.
    Unknown,
}

fn key(p: u32) -> String {
    format!("p{p}")
}

/// Tries to take partition `p`. `None` if a live lease exists or the
/// server did not answer.
pub(crate) async fn acquire(leases: &kv::Store, p: u32, node: &str) -> Option<Held> {
    match leases.create(key(p), Bytes::from(node.to_string())).await {
        Ok(rev) => Some(Held {
            generation: rev,
            revision: rev,
        }),
        Err(_) => None,
    }
}

/// Renews a held lease.
pub(crate) async fn renew(leases: &kv::Store, p: u32, node: &str, held: Held) -> Renewed {
    match leases
        .update(key(p), Bytes::from(node.to_string()), held.revision)
        .await
    {
        Ok(rev) => Renewed::Ours(rev),
        Err(e) => match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => Renewed::Lost,
            _ => Renewed::Unknown,
        },
    }
}

/// Gives a lease up, if it is still ours.
pub(crate) async fn release(leases: &kv::Store, p: u32, held: Held) {
    let _ = leases
        .delete_expect_revision(key(p), Some(held.revision))
        .await;
}

/// The owner named in a partition's lease, if it has a live one.
pub async fn owner(leases: &kv::Store, p: u32) -> Option<(String, u64)> {
    match leases.entry(key(p)).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            Some((String::from_utf8_lossy(&e.value).into_owned(), e.revision))
        }
        _ => None,
    }
}
