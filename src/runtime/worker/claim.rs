//! Claiming: how a worker takes in work, in two steps that each turn of the
//! loop runs.
//!
//! 1. **Intake** ([`Worker::intake`]), whatever room the runner has: the
//!    inbox (keyed and delayed jobs) and, once the inbox is quiescent, the
//!    overflow move into the [`ShardCore`](crate::job::machine::ShardCore),
//!    and due timers fire. This needs no free slot, so an async worker at
//!    full concurrency still fires its timers, and a sleep is never timed
//!    by a timer that is already due (a zero timeout, taken again and
//!    again, would spin a core).
//! 2. **Claim** ([`Worker::claim`]), only with room: the core's ready jobs,
//!    then a batch from its own ring, else a steal from the other shards.
//!
//! # The wake follows the work
//!
//! A claim by a worker that comes from idle (its last claim found nothing,
//! or it slept) takes at most its share of what the ring holds: the jobs
//! over the workers, rounded up (a steal, which always comes from idle,
//! takes the same share), and if it leaves jobs behind it runs the wake
//! check for them
//! ([`Idle::notify`](crate::sync::idle::Idle::notify)), so a sleeper that
//! can take them is woken. A producer's wake-up went to one worker for a
//! whole batch; what that worker does not take wakes the next, so a batch
//! onto sleeping workers ends up spread over all of them. (A share of half
//! the ring spread a batch over two workers only: with four, the first
//! two claims took three quarters of it.)
//!
//! A busy worker (its last claim found work) claims what there is, up to a
//! batch, as before: the others are awake or were woken by the producers'
//! pushes, and small claims cost a loop turn each (2 producers and 2
//! workers on 2 cores ran about 9% slower with every claim capped). Slow
//! jobs are kept stealable by the one-at-a-time claims after a slow
//! attempt (`SINGLE_CLAIMS`).

use super::Worker;
use crate::job::envelope::Envelope;
use crate::runtime::shared::Shared;
use crate::sync::idle::Idle;
use crate::sync::ring::Ring;
use std::collections::VecDeque;

impl<T: Send + 'static> Worker<T> {
    /// The intake step: inbox and overflow into the core, then due timers.
    pub(super) fn intake(&mut self) {
        let me = &self.shared.shards[self.index];
        let inbox = &mut self.inbox;
        let mut taken = me.inbox.pop_batch(self.batch, |e| inbox.push_back(e));
        // The overflow only once the inbox is quiescent: see `overflow.rs`.
        taken += me.overflow.take_after(&me.inbox, |e| inbox.push_back(e));
        self.freed += taken;
        // The clock after the claim. A job due at its accept time is ready
        // whatever this reads (see `ShardCore::schedule`): the producer's
        // clock read may be a few ns ahead of this core's.
        let now = self.shared.clock.now();
        self.last_end = now;
        // Jobs that only join a busy key change the gauges too.
        self.dirty |= !self.inbox.is_empty();
        for e in self.inbox.drain(..) {
            self.core.admit(e, now);
        }
        if self.core.next_due().is_some_and(|due| due <= now) {
            self.core.fire(now);
            self.dirty = true;
            if self.idle_told {
                // A dropped engine's wait reads the next timer and the
                // not-due gauges of idle workers: keep them current even
                // if what fired can only wait (behind its key, or for a
                // slot).
                self.store_gauges();
            }
            self.paused(crate::observe::pauses::Pause::Timers, now);
        }
    }

    /// Claims up to `limit` jobs (and at most a batch) into `local`: the
    /// core's ready jobs, then its own ring (one job at a time while
    /// `single_claims` lasts), else a steal. Returns whether there is any.
    pub(super) fn claim(&mut self, limit: usize) -> bool {
        let limit = limit.min(self.batch);
        let ring_limit = if self.single_claims > 0 { 1 } else { limit };
        while self.local.len() < limit {
            match self.core.pop_ready() {
                Some(e) => self.local.push_back(e),
                None => break,
            }
        }
        // Ring jobs only while nothing else is claimed in single mode: left
        // in the ring they stay stealable.
        let room = ring_limit.saturating_sub(self.local.len());
        // From idle, its share of its own ring; busy, what there is (module
        // docs, "The wake follows the work").
        let share = if self.from_idle {
            self.shared.shards.len()
        } else {
            1
        };
        let popped = take_from(&self.shared, &mut self.local, self.index, room, share);
        self.freed += popped;
        self.room_freed();
        if popped > 0 {
            self.claimed_now();
        }
        let found = !self.local.is_empty() || self.steal(ring_limit);
        self.from_idle = !found;
        found
    }

    /// Tells waiting submits about ring or inbox room this worker freed
    /// since it last told (one fence and a load when nobody waits).
    pub(super) fn room_freed(&mut self) {
        if self.freed > 0 {
            self.freed = 0;
            self.shared.gate.room_freed();
        }
    }

    /// Jobs were just claimed from a ring (which counts down
    /// `single_claims`): the first one's attempt starts
    /// now, as far as latency is concerned (each later one starts when the
    /// one before it ends: one clock read per claim, not per job). Jobs
    /// pushed after the intake's clock read would otherwise start "before"
    /// they were accepted.
    fn claimed_now(&mut self) {
        self.single_claims = self.single_claims.saturating_sub(1);
        if self.recorder.is_on() {
            self.last_end = self.shared.clock.now();
        }
    }

    /// Steals from the first other shard that has any: a share of its
    /// ring's jobs (over the workers, at least one, at most `limit`), so
    /// the owner and any other thief keep work too, or else the unkeyed
    /// jobs in its overflow.
    fn steal(&mut self, limit: usize) -> bool {
        let n = self.shared.shards.len();
        for i in 1..n {
            let v = (self.index + i) % n;
            let share = self.shared.shards.len();
            let mut got = take_from(&self.shared, &mut self.local, v, limit.max(1), share);
            let victim = &self.shared.shards[v];
            if got == 0 && !victim.overflow.is_empty() {
                let now = self.shared.clock.now();
                let local = &mut self.local;
                got = victim.overflow.steal(limit, now, |e| local.push_back(e));
            }
            if got > 0 {
                self.freed += got;
                self.room_freed();
                self.claimed_now();
                let st = &self.shared.stats[self.index];
                st.stolen_jobs.add(got as u64);
                st.steal_batches.add(1);
                return true;
            }
        }
        false
    }
}

/// Pops up to `max` jobs from shard `s`'s ring into `local`: at most
/// what the ring holds over `share` (module docs). Jobs left behind get
/// the wake check. Returns how many it took.
fn take_from<T: Send + 'static>(
    shared: &Shared<T>,
    local: &mut VecDeque<Envelope<T>>,
    s: usize,
    max: usize,
    share: usize,
) -> usize {
    take_share(&shared.shards[s].ring, &shared.idle, s, share, max, |e| {
        local.push_back(e)
    })
}

/// The claim rule on its own (the loom model `loom_batch_spread` runs it
/// through `quay::__loom::take_share`): pops up to `max` items of shard
/// `s`'s `ring` into `sink`, at most what it holds over `workers` (rounded
/// up, at least one), and runs the wake check for what it leaves.
pub(crate) fn take_share<E>(
    ring: &Ring<E>,
    idle: &Idle,
    s: usize,
    workers: usize,
    max: usize,
    sink: impl FnMut(E),
) -> usize {
    if max == 0 {
        return 0;
    }
    let others = workers > 1;
    let max = if others {
        max.min(ring.len().div_ceil(workers).max(1))
    } else {
        max
    };
    let got = ring.pop_batch(max, sink);
    if got > 0 && others && !ring.is_empty() {
        // What this claim leaves, a sleeper that can take it is woken for.
        idle.notify(s, false);
    }
    got
}
