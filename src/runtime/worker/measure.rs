//! Measurement: an attempt's start and end as counters, latency samples
//! and worker pauses, and the gauges a worker publishes for readers
//! (`observe/`).

use super::Worker;
use crate::clock::Timestamp;
use crate::error::JobError;
use crate::job::envelope::Envelope;
use crate::job::machine::Settled;
use crate::job::JobContext;
use crate::loom::sync::atomic::Ordering;
use crate::observe::pauses::Pause;

impl<T: Send + 'static> Worker<T> {
    /// The clock, read only when latency is recorded (else the epoch).
    pub(super) fn now_if_recording(&self) -> Timestamp {
        if self.recorder.is_on() {
            self.shared.clock.now()
        } else {
            Timestamp::default()
        }
    }

    /// Records a pause of kind `kind` that began at `since` and ends now
    /// (`observe/pauses.rs`): a clock read, with latency recording on.
    pub(super) fn paused(&mut self, kind: Pause, since: Timestamp) {
        if self.recorder.is_on() {
            let ns = self.shared.clock.now().as_nanos();
            self.recorder
                .pause(kind, ns.saturating_sub(since.as_nanos()));
        }
    }

    /// Starts an attempt of `env`: counts it, and returns the handler's
    /// context and the start time (read only when latency is recorded).
    pub(crate) fn begin(&mut self, env: &mut Envelope<T>) -> (JobContext, Timestamp) {
        let ctx = self.begin_at(env);
        (ctx, self.now_if_recording())
    }

    /// Starts an attempt of `env` whose start time the caller knows.
    pub(super) fn begin_at(&mut self, env: &mut Envelope<T>) -> JobContext {
        let ctx = env.begin_attempt(self.index, self.shared.sem.max_attempts);
        self.stats().started.add(1);
        ctx
    }

    /// An attempt that began at `start` ended with `result`: settles it
    /// (retry, complete or bury), counts it and records its latency.
    /// Returns whether the job is now terminal, and the time it ended.
    pub(crate) fn end(
        &mut self,
        env: Envelope<T>,
        ctx: &JobContext,
        result: Result<(), JobError>,
        panicked: bool,
        start: Timestamp,
    ) -> (bool, Timestamp) {
        let shared = &*self.shared;
        let st = &shared.stats[self.index];
        if result.is_err() {
            st.failed_attempts.add(1);
        }
        if panicked {
            st.panicked.add(1);
        }
        let (ready, accepted) = (env.ready_at, env.accepted_at);
        let now = shared.clock.now();
        let settled = self.core.settle(&shared.sem, env, ctx, result, now);
        match settled {
            Settled::Completed => st.completed.add(1),
            Settled::Dead => st.dead.add(1),
            Settled::Retrying => st.retried.add(1),
        }
        let terminal = settled.is_terminal();
        if self
            .recorder
            .attempt(ready, start, now, terminal.then_some(accepted))
        {
            self.publish();
        }
        (terminal, now)
    }

    /// Publishes this worker's latency samples and gauges to readers.
    /// Stores the gauges, then says the worker is idle: everything it holds
    /// now, it may not run yet (see `Shared::only_not_due_held`). Once per
    /// stretch of idleness.
    pub(super) fn tell_idle(&mut self) {
        self.store_gauges();
        self.idle_told = true;
        // Release pairs with the Acquire load in `only_not_due_held`.
        self.stats().idle.store(true, Ordering::Release);
    }

    pub(super) fn store_gauges(&self) {
        let g = self.core.gauges();
        let st = &self.shared.stats[self.index];
        st.ready.set(g.ready as u64);
        st.key_waiting.set(g.key_waiting as u64);
        st.delayed.set(g.delayed as u64);
        st.retry_waiting.set(g.retry_waiting as u64);
        st.live_keys.set(g.live_keys as u64);
        st.next_due
            .set(self.core.next_due().map_or(u64::MAX, |t| t.as_nanos()));
    }

    pub(super) fn publish(&mut self) {
        self.dirty = false;
        let since = self.now_if_recording();
        self.recorder.flush(&self.shared.latency[self.index]);
        self.store_gauges();
        // Published with the next flush.
        self.paused(Pause::Publish, since);
    }
}
