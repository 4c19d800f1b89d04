//! The per-shard timer: jobs that may not run yet (delayed, or waiting to
//! retry) wait here, not in sleeping threads. A binary min-heap on due time;
//! ties break by insertion order, so jobs due together leave in the order
//! they arrived. Owned by one worker; no synchronisation.

use crate::clock::Timestamp;
use crate::job::envelope::Envelope;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

struct Entry<T> {
    due: Timestamp,
    seq: u64,
    env: Envelope<T>,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

/// Why a job is in the timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    Delayed,
    Retry,
}

pub(crate) struct Timer<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    retries: usize,
}

impl<T> Default for Timer<T> {
    fn default() -> Timer<T> {
        Timer {
            heap: BinaryHeap::new(),
            seq: 0,
            retries: 0,
        }
    }
}

impl<T> Timer<T> {
    /// A timer that holds `n` jobs before it must grow.
    pub(crate) fn with_capacity(n: usize) -> Timer<T> {
        Timer {
            heap: BinaryHeap::with_capacity(n),
            ..Timer::default()
        }
    }

    /// Schedules `env` to leave at `due`.
    pub(crate) fn insert(&mut self, due: Timestamp, env: Envelope<T>) {
        // A job that has started before is waiting to retry.
        if env.attempts > 0 {
            self.retries += 1;
        }
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            due,
            seq: self.seq,
            env,
        }));
    }

    /// The earliest due time.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    /// Removes and returns one job due at or before `now`, with its due time.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, Envelope<T>)> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        if e.env.attempts > 0 {
            self.retries -= 1;
        }
        Some((e.due, e.env))
    }

    /// Jobs waiting, by reason.
    pub(crate) fn count(&self, why: Waiting) -> usize {
        match why {
            Waiting::Retry => self.retries,
            Waiting::Delayed => self.heap.len() - self.retries,
        }
    }

    pub(crate) fn drain_into(&mut self, out: &mut Vec<Envelope<T>>) {
        // Due order, ties in arrival order: what would have run first
        // comes first.
        let mut v = std::mem::take(&mut self.heap).into_vec();
        v.sort_unstable_by(|Reverse(a), Reverse(b)| a.cmp(b));
        out.extend(v.into_iter().map(|Reverse(e)| e.env));
        self.retries = 0;
    }
}
