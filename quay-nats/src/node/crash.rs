//! Crash-loop counting in the `quay_crashes` bucket (`max_age` = the dedup
//! window). Before a job's first attempt under a generation, its worker
//! writes a marker `{generation, deaths}` and waits for the write to be
//! confirmed. A marker left by *another* generation on a job that is
//! delivered again means that generation started the job and ended
//! (its owner died, or its lease was lost) before acking it: one more
//! death. At `crash_limit` deaths the job goes to the DLQ without running.
//!
//! Only deliveries that can be replays are looked up: those stored before
//! the takeover of a partition that had a previous consumer.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The generation that started the job.
    pub g: u64,
    /// Deaths counted before that start.
    pub deaths: u32,
}

/// A KV key for any Msg-Id (which may hold characters KV keys do not).
pub(crate) fn key(msg_id: &str) -> String {
    format!("j{:032x}", xxh3_128(msg_id.as_bytes()))
}

/// Deaths a job has been in flight for, as seen by generation `g`.
pub(crate) async fn deaths(crashes: &kv::Store, msg_id: &str, g: u64) -> Result<u32, String> {
    let entry = crashes
        .entry(key(msg_id))
        .await
        .map_err(|e| e.to_string())?;
    Ok(match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            match serde_json::from_slice::<Marker>(&e.value) {
                Ok(m) if m.g != g => m.deaths + 1,
                Ok(m) => m.deaths,
                Err(_) => 0,
            }
        }
        _ => 0,
    })
}

/// Marks a job started by generation `g`, confirmed.
pub(crate) async fn mark(crashes: &kv::Store, msg_id: &str, marker: &Marker) -> Result<(), String> {
    let value = serde_json::to_vec(marker).map_err(|e| e.to_string())?;
    crashes
        .put(key(msg_id), Bytes::from(value))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
