//! `submit_batch`: many jobs in one call, with one clock read, one capacity
//! claim and one ring claim per run of unkeyed jobs.

use crate::capacity::Refused;
use crate::engine::{BatchReport, Shared};
use crate::envelope::Envelope;
use crate::error::{SubmitError, Submitted};
use crate::job::Job;
use std::collections::VecDeque;

pub(crate) fn submit_batch<T: Send + 'static>(
    shared: &Shared<T>,
    jobs: impl IntoIterator<Item = Job<T>>,
) -> BatchReport<T> {
    let mut report = BatchReport {
        accepted: 0,
        duplicates: 0,
        refused: Vec::new(),
    };
    let mut jobs = jobs.into_iter().peekable();
    let now = shared.clock.now();
    let n = shared.shards.len();
    let home = crate::loom::home_index() % n;
    let mut staged: VecDeque<Envelope<T>> = VecDeque::new();
    while jobs.peek().is_some() {
        let want = jobs.size_hint().0.max(1) as u64;
        let granted = match shared.gate.try_acquire(want) {
            Ok(g) => g,
            Err(why) => {
                for job in jobs {
                    report.refused.push(match why {
                        Refused::Full => {
                            shared.count_rejected_full();
                            SubmitError::Full(job)
                        }
                        Refused::Closed => SubmitError::ShuttingDown(job),
                    });
                }
                break;
            }
        };
        // Every job taken below holds one unit of the `granted` capacity.
        let mut used = 0;
        while used < granted {
            let Some(job) = jobs.next() else { break };
            used += 1;
            let env = Envelope::new(job, now);
            if env.owner_only(now) {
                // Keep submit order: flush unkeyed jobs staged before it.
                flush(shared, home, &mut staged, &mut report);
                match shared.admit(env, now) {
                    Ok(Submitted::Accepted) => report.accepted += 1,
                    Ok(Submitted::Duplicate) => report.duplicates += 1,
                    Err(env) => {
                        shared.count_rejected_full();
                        report.refused.push(SubmitError::Full(env.job));
                    }
                }
            } else {
                // Dedup comes at the flush: by then every staged ID's line
                // has been on its way in since it was staged, and the
                // batch's cache misses overlap instead of queueing.
                shared.sem.prefetch_id(env.job.id);
                staged.push_back(env);
            }
        }
        flush(shared, home, &mut staged, &mut report);
        // A short iterator leaves units unused: give them back.
        shared.gate.release(granted - used);
    }
    report
}

/// Dedups staged unkeyed envelopes (each holding a unit of capacity) in
/// submit order, then pushes the new ones into the rings from `home` on;
/// whatever finds no room is refused as `Full`.
fn flush<T: Send + 'static>(
    shared: &Shared<T>,
    home: usize,
    staged: &mut VecDeque<Envelope<T>>,
    report: &mut BatchReport<T>,
) {
    let before = staged.len();
    staged.retain(|env| shared.sem.admit_id(env));
    let duplicates = before - staged.len();
    if duplicates > 0 {
        shared.gate.release(duplicates as u64);
        shared.shards[home].count_duplicates(duplicates as u64);
        report.duplicates += duplicates;
    }
    if staged.is_empty() {
        return;
    }
    let n = shared.shards.len();
    let total = staged.len();
    shared.shards[home].count_accepted(total as u64);
    for i in 0..n {
        let s = (home + i) % n;
        if shared.shards[s].ring.push_batch(staged) > 0 {
            shared.idle.notify(s, false);
        }
        if staged.is_empty() {
            break;
        }
    }
    let refused = staged.len();
    report.accepted += total - refused;
    if refused > 0 {
        shared.shards[home].uncount_accepted(refused as u64);
        report.refused.extend(staged.drain(..).map(|e| {
            shared.sem.refuse_id(&e);
            shared.count_rejected_full();
            SubmitError::Full(e.job)
        }));
        shared.gate.release(refused as u64);
    }
}
