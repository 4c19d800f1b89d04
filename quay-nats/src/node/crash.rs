//! Crash-loop counting: one marker per stream message in the
//! `quay_crashes` bucket (`max_age` = the dedup window), and the rule that
//! reads it. The rule, exactly:
//!
//! - **A death** of a job is the end of a generation (its owner died, or
//!   lost its lease) while an attempt of the job that ran **alone** on its
//!   node had started and not finished.
//! - A job with an attempt in flight at a generation's end **alongside
//!   other attempts** is a **suspect**: nothing is charged (the marker
//!   cannot say which attempt killed the node), but from then on each of
//!   its attempts runs alone on its node ([`super::alone`]), so its next
//!   death, if any, is its own.
//! - A job whose last attempt finished (it waits in retry backoff, or
//!   completed and its ack was lost), or that never started under the
//!   generation, is neither charged nor suspected.
//! - At `crash_limit` deaths the job goes to the DLQ without running.
//!
//! Writes: a job's first attempt under a generation marks itself running
//! (confirmed before the handler runs; not alone, so never a charge); an
//! attempt that runs alone marks itself running before, and finished
//! after, confirmed both times. A delivery that finds a running marker of
//! an earlier generation writes the verdict back at once, so a generation
//! in which the job never starts cannot charge the same death twice.
//!
//! Only deliveries that can be replays are looked up: those stored before
//! the takeover of a partition that had a previous consumer.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

/// The marker of one stream message.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The generation that wrote it.
    pub g: u64,
    /// Deaths charged so far.
    pub deaths: u32,
    /// In flight at a generation's end alongside other attempts.
    #[serde(default)]
    pub suspect: bool,
    /// An attempt of generation `g` started and is not recorded finished.
    #[serde(default)]
    pub running: bool,
    /// That attempt ran alone on its node.
    #[serde(default)]
    pub alone: bool,
}

/// What a delivery's marker says of the job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// Deaths charged.
    pub deaths: u32,
    /// Suspected: its attempts run alone.
    pub suspect: bool,
}

impl Record {
    /// Whether its attempts run alone on the node.
    pub fn alone(&self) -> bool {
        self.suspect || self.deaths > 0
    }

    /// The marker of an attempt of generation `g`: started, or finished.
    pub fn marker(&self, g: u64, running: bool, alone: bool) -> Marker {
        Marker {
            g,
            deaths: self.deaths,
            suspect: self.suspect,
            running,
            alone,
        }
    }
}

/// The rule: what generation `g` makes of a job's marker. The second value
/// is the marker to write back before the job may run, when the marker
/// records an attempt of an earlier generation that never finished.
pub(crate) fn judge(marker: Option<Marker>, g: u64) -> (Record, Option<Marker>) {
    let Some(m) = marker else {
        return (Record::default(), None);
    };
    let mut record = Record {
        deaths: m.deaths,
        suspect: m.suspect,
    };
    if m.g == g || !m.running {
        return (record, None);
    }
    if m.alone {
        record.deaths = record.deaths.saturating_add(1);
    } else {
        record.suspect = true;
    }
    (record, Some(record.marker(g, false, false)))
}

/// A KV key for one stream message (its Msg-Id may hold characters KV keys
/// do not; its sequence tells it from a later message with the same ID).
pub(crate) fn key(msg_id: &str, seq: u64) -> String {
    let mut buf = Vec::with_capacity(msg_id.len() + 8);
    buf.extend_from_slice(msg_id.as_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    format!("j{:032x}", xxh3_128(&buf))
}

/// Reads the marker of stream message `seq`, applies [`judge`] for
/// generation `g`, and writes the verdict back (confirmed) where it must.
pub(crate) async fn lookup(
    crashes: &kv::Store,
    msg_id: &str,
    seq: u64,
    g: u64,
) -> Result<Record, String> {
    let key = key(msg_id, seq);
    let entry = crashes
        .entry(key.clone())
        .await
        .map_err(|e| e.to_string())?;
    let marker = match entry {
        // An unreadable marker is no marker: it cannot charge anything.
        Some(e) if e.operation == kv::Operation::Put => serde_json::from_slice(&e.value).ok(),
        _ => None,
    };
    let (record, write) = judge(marker, g);
    if let Some(m) = write {
        put(crashes, &key, &m).await?;
    }
    Ok(record)
}

/// Writes a job's marker, confirmed.
pub(crate) async fn mark(
    crashes: &kv::Store,
    msg_id: &str,
    seq: u64,
    marker: &Marker,
) -> Result<(), String> {
    put(crashes, &key(msg_id, seq), marker).await
}

async fn put(crashes: &kv::Store, key: &str, marker: &Marker) -> Result<(), String> {
    let value = serde_json::to_vec(marker).map_err(|e| e.to_string())?;
    crashes
        .put(key, Bytes::from(value))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(g: u64, deaths: u32, suspect: bool, running: bool, alone: bool) -> Marker {
        Marker {
            g,
            deaths,
            suspect,
            running,
            alone,
        }
    }

    #[test]
    fn only_an_attempt_that_ran_alone_and_never_finished_is_a_death() {
        let r = |deaths, suspect| Record { deaths, suspect };
        // Never started anywhere.
        assert_eq!(judge(None, 9), (r(0, false), None));
        // Ran alone and never finished: one death, written back.
        assert_eq!(
            judge(Some(m(5, 1, true, true, true)), 9),
            (r(2, true), Some(m(9, 2, true, false, false)))
        );
        // In flight alongside others: a suspect, nothing charged.
        assert_eq!(
            judge(Some(m(5, 0, false, true, false)), 9),
            (r(0, true), Some(m(9, 0, true, false, false)))
        );
        // Its last attempt finished (retry backoff, or a lost ack).
        assert_eq!(
            judge(Some(m(5, 1, true, false, true)), 9),
            (r(1, true), None)
        );
        // The same generation's own marker charges nothing.
        assert_eq!(
            judge(Some(m(9, 1, true, true, true)), 9),
            (r(1, true), None)
        );
    }

    #[test]
    fn a_generation_in_which_the_job_never_started_charges_nothing() {
        // g5 ran it alone and died; g7 read that (one death) and wrote the
        // verdict back; g7 died before the job started; g9 sees no new death.
        let (r7, back) = judge(Some(m(5, 0, true, true, true)), 7);
        assert_eq!(r7.deaths, 1);
        let (r9, again) = judge(back, 9);
        assert_eq!((r9.deaths, again), (1, None));
        assert!(r9.alone());
    }

    #[test]
    fn keys_differ_by_message() {
        assert_ne!(key("a", 1), key("a", 2));
        assert_eq!(key("a", 1), key("a", 1));
        assert!(key("x.y*>", 3).chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
