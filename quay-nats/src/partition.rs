//! Where a job lives: its partition, its subject's headers, and the quay
//! job ID a node gives it. Pure functions, shared by producer and node.

use quay::{JobId, Key};
use xxhash_rust::xxh3::xxh3_128;

/// The header carrying a job's key (its `u64`, in decimal).
pub const KEY_HEADER: &str = "Quay-Key";
/// The header carrying a job's attempt limit, when it has its own.
pub const ATTEMPTS_HEADER: &str = "Quay-Max-Attempts";
/// The header carrying a job's delay in milliseconds: the node delays its
/// first attempt by it, counted from delivery.
pub const DELAY_HEADER: &str = "Quay-Delay-Ms";
/// JetStream's dedup header.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The partition of a job: its key's, or for an unkeyed job its ID's, so a
/// republish lands on the same subject.
pub fn partition_of(key: Option<Key>, msg_id: &str, partitions: u32) -> u32 {
    let h = match key {
        // Mix first: keys made from small integers would otherwise take
        // consecutive partitions in step with their values.
        Some(k) => k.as_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32,
        None => xxh3_128(msg_id.as_bytes()) as u64,
    };
    (h % u64::from(partitions.max(1))) as u32
}

/// The `Nats-Msg-Id` of a quay job ID: 32 hex digits.
pub fn msg_id(id: JobId) -> String {
    format!("{:032x}", id.as_u128())
}

/// The local quay ID of a delivered message: one stream message (its
/// stream sequence, with its Msg-Id) under one partition generation.
///
/// - The stream sequence tells a redelivery of a message (same sequence)
///   from a new message that reuses an old Msg-Id after the dedup window
///   (a new sequence): the first may be acked at once if it is already
///   terminal, the second is a publish the server accepted, and must run.
/// - Partition and generation are part of it: a job replayed onto the same
///   node under a new generation must run again, and with an ID it had
///   before, the local dedup set would answer `Duplicate`.
pub fn local_id(msg_id: &str, stream_seq: u64, partition: u32, generation: u64) -> JobId {
    let mut buf = Vec::with_capacity(msg_id.len() + 20);
    buf.extend_from_slice(msg_id.as_bytes());
    buf.extend_from_slice(&stream_seq.to_le_bytes());
    buf.extend_from_slice(&partition.to_le_bytes());
    buf.extend_from_slice(&generation.to_le_bytes());
    JobId::from(xxh3_128(&buf))
}

/// The durable consumer of partition `p` under generation `g`.
pub fn consumer_name(p: u32, g: u64) -> String {
    format!("quay-p{p}-g{g}")
}

/// The consumer-name prefix of partition `p`, for finding old owners' consumers.
pub fn consumer_prefix(p: u32) -> String {
    format!("quay-p{p}-g")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_jobs_share_a_partition_and_ids_differ_by_message_and_generation() {
        let k = Key::from("user-7");
        assert_eq!(
            partition_of(Some(k), "a", 64),
            partition_of(Some(k), "b", 64)
        );
        assert_ne!(local_id("m", 5, 1, 1), local_id("m", 5, 1, 2));
        assert_ne!(local_id("m", 5, 1, 1), local_id("m", 5, 2, 1));
        // A new message with an old Msg-Id is a new job.
        assert_ne!(local_id("m", 5, 1, 1), local_id("m", 6, 1, 1));
        assert_eq!(local_id("m", 5, 3, 9), local_id("m", 5, 3, 9));
    }

    #[test]
    fn partitions_spread() {
        let mut seen = [0u32; 8];
        for i in 0..8000u64 {
            seen[partition_of(Some(Key::from(i)), "", 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
        let p = partition_of(None, "abc", 8);
        assert_eq!(p, partition_of(None, "abc", 8));
    }

    #[test]
    fn consumer_names_are_prefixed_by_partition() {
        assert!(consumer_name(3, 17).starts_with(&consumer_prefix(3)));
        assert!(!consumer_name(31, 1).starts_with(&consumer_prefix(3)));
    }
}
