//! The sleep protocol's worker side (`sync/idle.rs`): announce, re-check
//! with the very steps the loop runs, then park for at most the time until
//! the next timer or attempt deadline.

use super::{Runner, Worker, PUBLISH_IDLE};
use crate::clock::Timestamp;
use crate::loom::sync::atomic::Ordering;
use crate::observe::pauses::Pause;
use crate::sync::idle::Handed;
use std::time::Duration;

impl<T: Send + 'static> Worker<T> {
    /// The sleep protocol's worker side (see `idle.rs`). The re-check after
    /// the announce is the loop's own intake and claim: it sees exactly the
    /// jobs the worker could take. (A check by ring length would count a
    /// position a producer has claimed but not yet published, and the
    /// worker would spin instead of parking; that producer's `notify` comes
    /// after its publish and wakes us.) A worker with no free slot says so
    /// in its announcement, and is then woken only for what is its alone. A
    /// wake-up a producer handed it for a stealable job is passed on if the
    /// worker does not take that job: at once if the re-check found other
    /// work, else after the loop's next claim (`handed`).
    pub(super) fn sleep<R: Runner<T>>(&mut self, runner: &R) {
        let room = runner.room();
        let token = self.shared.idle.announce(self.index, room > 0);
        // Acquire pairs with the Release store in shutdown. A woken attempt
        // is work too (see `exec/wake.rs`).
        let work = self.shared.stop.load(Ordering::Acquire) || runner.woken() || {
            self.intake();
            let claimed = room > 0 && self.claim(room);
            self.room_freed();
            claimed
        };
        if work {
            if self.shared.idle.cancel(token) == Handed::Yes {
                // A producer's wake-up reached this worker while its
                // re-check found other work: pass it on (`idle.rs`).
                self.pass_on();
            }
            return;
        }
        self.stats().parks.add(1);
        let mut timeout = self.timer_timeout();
        if let Some(due) = runner.next_deadline() {
            let t = self.until(due);
            timeout = Some(timeout.map_or(t, |o| o.min(t)));
        }
        if self.dirty {
            // Wake once more after `PUBLISH_IDLE` to publish, then sleep
            // for good: at rest, readers see everything.
            timeout = Some(timeout.map_or(PUBLISH_IDLE, |t| t.min(PUBLISH_IDLE)));
        }
        let (handed, at) = self.shared.idle.sleep(token, timeout);
        // The loop claims next, and passes the wake-up on if that claim
        // took work and jobs remain: the wake that brought this worker may also have
        // been for work of its own (a keyed job), which it takes first.
        self.handed = handed == Handed::Yes;
        if let Some(at) = at {
            self.paused(Pause::Wake, at);
        }
    }

    /// Passes on a wake-up a producer handed this worker for a stealable
    /// job that it is not taking: the wake check for the first shard whose
    /// ring or overflow still holds jobs (`Idle::pass_on`).
    pub(super) fn pass_on(&self) {
        let shards = &self.shared.shards;
        self.shared.idle.pass_on(self.index, |s| {
            !shards[s].ring.is_empty() || !shards[s].overflow.is_empty()
        });
    }

    /// How long a sleep may last before the earliest timer is due.
    pub(super) fn timer_timeout(&self) -> Option<Duration> {
        let due = self.core.next_due()?;
        Some(self.until(due))
    }

    /// How long until `due`. A manual clock moves by hand, so then the
    /// worker polls every millisecond.
    pub(super) fn until(&self, due: Timestamp) -> Duration {
        let clock = &self.shared.clock;
        if clock.is_manual() {
            Duration::from_millis(1)
        } else {
            due.saturating_since(clock.now())
        }
    }
}
