//! The bridge's table of jobs between delivery and terminal state:
//! `local ID → (reply subject, fence, what the DLQ needs)`, and a bounded
//! memory of IDs that reached a terminal state. One mutex guards it; the
//! partition tasks insert, the acker removes, the progress ticker reads,
//! and a worker marks a job it fenced.
//!
//! A local ID names one stream message (its stream sequence) under one
//! partition generation (`partition::local_id`), so a delivery with an ID
//! seen before is a true redelivery of that message: an ID still in flight
//! has its reply subject swapped for the newer delivery's; an ID already
//! terminal is acked at once. A new message that reuses an old Msg-Id (a
//! republish after the dedup window) has a new stream sequence, hence a
//! new ID, and runs.

use super::fence::Fence;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use quay::JobId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A delivered job the bridge has not finished with.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Where acks go: the latest delivery's reply subject.
    pub reply: Subject,
    /// The generation it was delivered under.
    pub fence: Arc<Fence>,
    /// The original headers and body, for the DLQ.
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was delivered or last got `+WPI`.
    pub progressed: Instant,
    /// A worker skipped it because its generation was fenced: not acked.
    pub fenced: bool,
    /// Errors of its failed attempts, the last [`KEPT_ERRORS`](super::dead::KEPT_ERRORS).
    pub errors: Vec<String>,
    /// Its dead letter is stored: `+TERM` it.
    pub dead_lettered: bool,
}

/// What a delivery is to the bridge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// First seen: submit it.
    New,
    /// Still in flight: the reply subject was swapped; nothing to submit.
    Swapped,
    /// Already terminal: ack it at once.
    Terminal,
}

/// The table. `recent` remembers the last `remember` terminal IDs.
#[derive(Debug)]
pub(crate) struct InFlight {
    live: HashMap<JobId, Entry>,
    recent: HashSet<JobId>,
    order: VecDeque<JobId>,
    remember: usize,
}

impl InFlight {
    pub fn new(remember: usize) -> InFlight {
        InFlight {
            live: HashMap::new(),
            recent: HashSet::new(),
            order: VecDeque::new(),
            remember: remember.max(1),
        }
    }

    /// Records a delivery. For `Swapped` and `Terminal`, `entry` is not kept
    /// (its reply subject is, for `Swapped`).
    pub fn arrive(&mut self, id: JobId, entry: Entry) -> Arrival {
        if let Some(e) = self.live.get_mut(&id) {
            e.reply = entry.reply;
            return Arrival::Swapped;
        }
        if self.recent.contains(&id) {
            return Arrival::Terminal;
        }
        self.live.insert(id, entry);
        Arrival::New
    }

    /// The job reached a terminal state in the engine: its entry, and its
    /// ID remembered as answered. Not remembered, because not answered (so
    /// a redelivery must not be acked): a job its worker fenced, and a
    /// `dead` one whose dead letter was not written.
    pub fn finish(&mut self, id: JobId, dead: bool) -> Option<Entry> {
        let e = self.live.remove(&id)?;
        let answered = !e.fenced && (!dead || e.dead_lettered);
        if answered && self.recent.insert(id) {
            self.order.push_back(id);
            if self.order.len() > self.remember {
                if let Some(old) = self.order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
        Some(e)
    }

    /// The job never entered the engine (refused at shutdown): forget it,
    /// un-acked, so the stream redelivers it.
    pub fn forget(&mut self, id: JobId) -> Option<Entry> {
        self.live.remove(&id)
    }

    /// Marks a job its worker fenced; the acker will not ack it.
    pub fn mark_fenced(&mut self, id: JobId) {
        if let Some(e) = self.live.get_mut(&id) {
            e.fenced = true;
        }
    }

    /// Records a failed attempt's error.
    pub fn note_error(&mut self, id: JobId, error: &str) {
        if let Some(e) = self.live.get_mut(&id) {
            if e.errors.len() == super::dead::KEPT_ERRORS {
                e.errors.remove(0);
            }
            e.errors.push(error.to_string());
        }
    }

    /// What a dead letter of a live job needs.
    pub fn letter(&self, id: JobId, attempts: u32) -> Option<super::dead::Letter> {
        self.live.get(&id).map(|e| super::dead::Letter {
            headers: e.headers.clone(),
            body: e.body.clone(),
            errors: e.errors.clone(),
            attempts,
            partition: e.fence.partition(),
            generation: e.fence.generation(),
        })
    }

    /// Marks a job's dead letter stored.
    pub fn mark_dead_lettered(&mut self, id: JobId) {
        if let Some(e) = self.live.get_mut(&id) {
            e.dead_lettered = true;
        }
    }

    /// Reply subjects of live jobs of live generations not progressed for
    /// `every`, stamped as progressed `now`.
    pub fn due_progress(&mut self, now: Instant, every: Duration) -> Vec<Subject> {
        self.live
            .values_mut()
            .filter(|e| !e.fence.is_dead() && now.saturating_duration_since(e.progressed) >= every)
            .map(|e| {
                e.progressed = now;
                e.reply.clone()
            })
            .collect()
    }

    /// Live jobs of one generation.
    pub fn count_for(&self, fence: &Arc<Fence>) -> usize {
        self.live
            .values()
            .filter(|e| Arc::ptr_eq(&e.fence, fence))
            .count()
    }

    /// Live jobs in all.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fence: &Arc<Fence>, reply: &str, t: Instant) -> Entry {
        Entry {
            reply: Subject::from(reply),
            fence: fence.clone(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            progressed: t,
            fenced: false,
            errors: Vec::new(),
            dead_lettered: false,
        }
    }

    #[test]
    fn redeliveries_swap_or_ack_and_terminal_memory_is_bounded() {
        let t = Instant::now();
        let f = Arc::new(Fence::new(0, 1, t, t + Duration::from_secs(60)));
        let mut table = InFlight::new(2);
        let (a, b, c) = (JobId::from(1u64), JobId::from(2u64), JobId::from(3u64));
        assert_eq!(table.arrive(a, entry(&f, "r1", t)), Arrival::New);
        assert_eq!(table.arrive(a, entry(&f, "r2", t)), Arrival::Swapped);
        assert_eq!(
            table.finish(a, false).map(|e| e.reply),
            Some(Subject::from("r2"))
        );
        assert_eq!(table.arrive(a, entry(&f, "r3", t)), Arrival::Terminal);
        for id in [b, c] {
            table.arrive(id, entry(&f, "x", t));
            table.finish(id, false);
        }
        // Only the last two terminal IDs are remembered.
        assert_eq!(table.arrive(a, entry(&f, "r4", t)), Arrival::New);
        assert_eq!(table.arrive(c, entry(&f, "r5", t)), Arrival::Terminal);
        assert_eq!(table.len(), 1);
        assert_eq!(table.count_for(&f), 1);
        // A fenced job is not remembered as terminal.
        let d = JobId::from(4u64);
        table.arrive(d, entry(&f, "f", t));
        table.mark_fenced(d);
        assert!(table.finish(d, false).is_some_and(|e| e.fenced));
        assert_eq!(table.arrive(d, entry(&f, "f2", t)), Arrival::New);
        // Nor is a dead job whose dead letter was not written.
        assert!(table.finish(d, true).is_some());
        assert_eq!(table.arrive(d, entry(&f, "f3", t)), Arrival::New);
        table.mark_dead_lettered(d);
        assert!(table.finish(d, true).is_some_and(|e| e.dead_lettered));
        assert_eq!(table.arrive(d, entry(&f, "f4", t)), Arrival::Terminal);
    }

    #[test]
    fn progress_is_due_once_per_period_and_never_for_dead_generations() {
        let t = Instant::now();
        let live = Arc::new(Fence::new(0, 1, t, t + Duration::from_secs(60)));
        let dead = Arc::new(Fence::new(1, 1, t, t + Duration::from_secs(60)));
        dead.end();
        let mut table = InFlight::new(8);
        table.arrive(JobId::from(1u64), entry(&live, "live", t));
        table.arrive(JobId::from(2u64), entry(&dead, "dead", t));
        let every = Duration::from_secs(10);
        assert!(table
            .due_progress(t + Duration::from_secs(5), every)
            .is_empty());
        let due = table.due_progress(t + Duration::from_secs(10), every);
        assert_eq!(due, vec![Subject::from("live")]);
        assert!(table
            .due_progress(t + Duration::from_secs(15), every)
            .is_empty());
        assert_eq!(
            table.forget(JobId::from(2u64)).map(|e| e.reply),
            Some(Subject::from("dead"))
        );
    }
}
