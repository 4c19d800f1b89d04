//! The control loop of one node: membership heartbeats, the assignment,
//! and each partition's lease through its life:
//!
//! ```text
//!   acquire ──► run ──► (not assigned any more) drain ──► end ──► release
//!                 │                                   (in flight 0, or timeout,
//!                 │                                    then max_run_time)
//!                 ├──► generation ended (fence failed, a delivery lost), lease
//!                 │    still ours ──► after max_run_time, renew: next generation
//!                 └──► renewal refused ──► lost (no release: the lease ages out)
//! ```
//!
//! A lost or fenced generation is not released: jobs it started may still
//! be running, and the lease's natural expiry is what keeps the next owner
//! from starting their successors before `max_run_time` is over.

use super::fence::Fence;
use super::lease::{self, Held, Renewed};
use super::{members, partition, Shared};
use futures::FutureExt;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Owned {
    held: Held,
    fence: Arc<Fence>,
    stop: watch::Sender<bool>,
    renewed: Instant,
    drain: Option<Drain>,
    /// When its generation ended without a drain (fence failed, delivery
    /// lost): after `max_run_time`, a renewal starts the next generation.
    ended: Option<Instant>,
}

/// Starts generation `held.generation` of partition `p`: its fence, the
/// `on_acquire` hook, and its partition task.
fn start<T: Send + Sync + 'static>(
    shared: &Arc<Shared<T>>,
    p: u32,
    held: Held,
    sent: Instant,
    share: i64,
) -> Owned {
    let fence = Arc::new(Fence::new(
        p,
        held.generation,
        shared.epoch,
        sent + shared.cluster.lease_ttl,
    ));
    if let Some(hook) = &shared.on_acquire {
        let g = held.generation;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(p, g))).is_err() {
            shared.stats.add(&shared.stats.hook_panics, 1);
        }
    }
    let (stop, stopped) = watch::channel(false);
    let task = AssertUnwindSafe(partition::run(
        shared.clone(),
        fence.clone(),
        share,
        stopped,
    ));
    let (ended, node) = (fence.clone(), shared.settings.name.clone());
    tokio::spawn(async move {
        // A partition task that panics must not leave its lease renewed
        // with nobody consuming: its generation ends, and the next starts.
        if let Err(panic) = task.catch_unwind().await {
            let why = super::work::panic_text(&*panic);
            tracing::error!(
                node = %node,
                partition = ended.partition(),
                generation = ended.generation(),
                panic = %why,
                "partition task panicked; ending the generation"
            );
            ended.end();
        }
    });
    shared.stats.add(&shared.stats.acquired, 1);
    Owned {
        held,
        fence,
        stop,
        renewed: sent,
        drain: None,
        ended: None,
    }
}

struct Drain {
    since: Instant,
    ended: Option<Instant>,
}

/// Runs until `quit` fires, then drains and releases everything.
pub(crate) async fn run<T: Send + Sync + 'static>(
    shared: Arc<Shared<T>>,
    mut quit: watch::Receiver<bool>,
) {
    let ttl = shared.cluster.lease_ttl;
    let renew_every = ttl / 4;
    let mut tick = tokio::time::interval(Duration::from_millis(100).max(ttl / 20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    let mut members_seen = BTreeSet::new();
    let mut beat = Instant::now() - ttl;
    let name = shared.settings.name.clone();
    let mut quitting = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = quit.changed(), if !quitting => {}
        }
        quitting = quitting || *quit.borrow();
        let now = Instant::now();
        if !quitting && now.duration_since(beat) >= renew_every {
            if members::heartbeat(&shared.objects.members, &name)
                .await
                .is_ok()
            {
                beat = now;
            }
            if let Ok(m) = members::list(&shared.objects.members).await {
                members_seen = m;
            }
        }
        let desired = if quitting {
            BTreeSet::new()
        } else {
            members::assignment(&name, &members_seen, shared.cluster.partitions)
        };
        let share = (shared.settings.budget as usize / desired.len().max(1)).max(1) as i64;
        // Renew, and notice lost or ended generations.
        let mut gone = Vec::new();
        let mut next = Vec::new();
        for (&p, o) in owned.iter_mut() {
            if o.fence.is_dead() && o.drain.is_none() {
                let ended = *o.ended.get_or_insert(now);
                if !desired.contains(&p) {
                    // Not ours any more: let the lease age out.
                    gone.push(p);
                    continue;
                }
                // Jobs the ended generation started are over after
                // max_run_time; then the next generation may start.
                if now.duration_since(ended) >= shared.settings.max_run_time {
                    next.push(p);
                    continue;
                }
            }
            if now.duration_since(o.renewed) >= renew_every {
                let sent = Instant::now();
                match lease::renew(&shared.objects.leases, p, &name, o.held).await {
                    Renewed::Ours(rev) => {
                        o.held.revision = rev;
                        o.renewed = sent;
                        o.fence.extend(sent + ttl);
                    }
                    Renewed::Lost => gone.push(p),
                    Renewed::Unknown => {}
                }
            }
        }
        // The next generation of a partition still ours: its renewal's
        // revision is the new generation.
        for p in next {
            let Some(o) = owned.get(&p) else { continue };
            let sent = Instant::now();
            match lease::renew(&shared.objects.leases, p, &name, o.held).await {
                Renewed::Ours(rev) => {
                    let _ = o.stop.send(true);
                    let held = Held {
                        generation: rev,
                        revision: rev,
                    };
                    owned.insert(p, start(&shared, p, held, sent, share));
                }
                Renewed::Lost => gone.push(p),
                Renewed::Unknown => {}
            }
        }
        for p in gone {
            if let Some(o) = owned.remove(&p) {
                o.fence.end();
                let _ = o.stop.send(true);
                shared.stats.add(&shared.stats.lost, 1);
            }
        }
        // Drain what is no longer ours; release what has drained.
        let mut released = Vec::new();
        for (&p, o) in owned.iter_mut() {
            if desired.contains(&p) && o.drain.is_none() {
                continue;
            }
            let d = o.drain.get_or_insert_with(|| {
                o.fence.drain();
                let _ = o.stop.send(true);
                Drain {
                    since: now,
                    ended: None,
                }
            });
            let left = shared.lock_inflight().count_for(&o.fence);
            if d.ended.is_none()
                && (left == 0 || now.duration_since(d.since) >= shared.settings.drain_timeout)
            {
                o.fence.end();
                d.ended = Some(now);
            }
            if let Some(ended) = d.ended {
                if left == 0 || now.duration_since(ended) >= shared.settings.max_run_time {
                    released.push(p);
                }
            }
        }
        for p in released {
            if let Some(o) = owned.remove(&p) {
                lease::release(&shared.objects.leases, p, o.held).await;
                shared.stats.add(&shared.stats.released, 1);
            }
        }
        if quitting {
            if owned.is_empty() {
                members::leave(&shared.objects.members, &name).await;
                return;
            }
            continue;
        }
        // Acquire what is ours and free.
        let wanted: Vec<u32> = desired
            .iter()
            .copied()
            .filter(|p| !owned.contains_key(p))
            .collect();
        for p in wanted {
            let sent = Instant::now();
            let Some(held) = lease::acquire(&shared.objects.leases, p, &name).await else {
                continue;
            };
            owned.insert(p, start(&shared, p, held, sent, share));
        }
    }
}
