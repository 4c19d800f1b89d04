//! The shutdown protocol, and the [`Shutdown`] report with every job that
//! did not run.
//!
//! Steps (orderings in `docs/design.md`):
//! 1. Close the gate. From the close on, every submit is refused with
//!    `ShuttingDown`; a submit whose acquire came first is accepted and
//!    holds a unit of capacity until its job is terminal or returned.
//! 2. Graceful: wait on the gate until no job is held, or the deadline.
//! 3. Set `stop` and unpark every worker. A worker stops after its current
//!    job and hands back what it holds privately; join them all.
//! 4. Drain every ring and inbox into the report, releasing capacity, until
//!    the gate holds nothing: a producer that acquired before the close may
//!    still be pushing, and its job is caught here.

use crate::job::envelope::Envelope;
use crate::job::Job;
use crate::loom::sync::atomic::Ordering;
use crate::loom::thread::JoinHandle;
use crate::loom::time::Deadline;
use crate::observe::counts::Counts;
use crate::runtime::shared::Shared;
use crate::sync::capacity::Why;

/// What shutdown hands back.
#[derive(Debug)]
pub struct Shutdown<T> {
    /// Every accepted job that did not reach a terminal state. The jobs of
    /// one key come in the order they were accepted, so a caller can submit
    /// them again as they are; there is no order across keys, nor among
    /// unkeyed jobs.
    pub returned: Vec<Job<T>>,
    /// The final counts, at rest.
    pub counts: Counts,
}

/// What the graceful part of a shutdown waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Every held job: `shutdown`.
    All,
    /// Only jobs due before this instant (engine clock): `Drop`, with the
    /// end of its grace. Done once every worker is idle (has nothing it
    /// may run), every held job is one the idle workers told they hold but
    /// may not run yet (delayed, waiting to retry, or behind such a job on
    /// its key), and no worker's next timer falls due before the instant.
    /// So a retry or delayed job due within the grace runs; one due after
    /// it is returned. A job that falls due in the instant of the check
    /// may be returned rather than run; counted, never lost.
    DueBefore(crate::clock::Timestamp),
}

/// How often a dropped engine's wait looks at the not-due gauges.
const DUE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) fn run<T: Send + 'static>(
    shared: &Shared<T>,
    workers: Vec<JoinHandle<Vec<Envelope<T>>>>,
    deadline: Option<Deadline>,
    drain: Drain,
) -> Shutdown<T> {
    shared.gate.close();
    if workers.is_empty() {
        // An earlier shutdown joined them and drained everything under the
        // engine's workers lock, which this caller waited for: nothing is
        // left to wait for (and if a worker had died, waiting here for its
        // capacity would never end).
        return Shutdown {
            returned: Vec::new(),
            counts: shared.counts(),
        };
    }
    // Graceful part: the workers keep running until nothing (due) is held,
    // or a `shutdown_now` elsewhere hurries it. The not-due gauges change
    // without a release to wake this waiter, hence the poll for `DueBefore`.
    let poll = matches!(drain, Drain::DueBefore(_)).then_some(DUE_POLL);
    let _ = shared.gate.wait_until(deadline, poll, (), |()| {
        let held = shared.gate.held();
        let done = match drain {
            Drain::All => held == 0,
            Drain::DueBefore(end) => shared.only_not_due_held(held, end),
        };
        // Acquire pairs with the Release store in `Shared::hurry`.
        if done || shared.hurry.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(((), Why::Capacity))
        }
    });
    // Release pairs with the Acquire load of `stop` in the worker loop.
    shared.stop.store(true, Ordering::Release);
    shared.idle.unpark_all();
    // Gathered per shard, in the order a key's jobs were accepted: those
    // its worker held (its key table in order), then its inbox, then its
    // overflow (see `overflow.rs`), then what arrives late.
    let mut per_shard: Vec<Vec<Envelope<T>>> = shared.shards.iter().map(|_| Vec::new()).collect();
    let mut worker_died = false;
    for (w, out) in workers.into_iter().zip(per_shard.iter_mut()) {
        // User code runs behind guards (`guard.rs`), so a worker thread
        // only dies on a bug in quay itself. Its private jobs die with it;
        // do not then wait for their capacity below, or shutdown would hang.
        match w.join() {
            Ok(jobs) => *out = jobs,
            Err(_) => worker_died = true,
        }
    }
    shared
        .gate
        .release(per_shard.iter().map(|v| v.len() as u64).sum());
    // Catch jobs pushed by producers that acquired capacity before the
    // close. Each such producer is mid-push for a bounded time.
    let mut backoff = crate::sync::idle::Backoff::default();
    loop {
        let mut caught = 0;
        for (s, out) in shared.shards.iter().zip(per_shard.iter_mut()) {
            let before = out.len();
            while let Some(e) = s.ring.pop() {
                out.push(e);
            }
            while let Some(e) = s.inbox.pop() {
                out.push(e);
            }
            // As the owner does (`overflow.rs`): not while a producer is
            // between its inbox claim and its publish, or a key's overflow
            // jobs would come out before its inbox job. The loop comes back.
            if s.inbox.is_quiescent() || worker_died {
                s.overflow.take_all(out);
            }
            caught += out.len() - before;
        }
        shared.gate.release(caught as u64);
        if shared.gate.held() == 0 || worker_died {
            break;
        }
        backoff.snooze();
    }
    let returned: Vec<Job<T>> = per_shard.into_iter().flatten().map(|e| e.job).collect();
    shared
        .returned
        .fetch_add(returned.len() as u64, Ordering::Relaxed);
    Shutdown {
        returned,
        counts: shared.counts(),
    }
}
