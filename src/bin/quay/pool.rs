//! Where the demo's jobs run: one shared engine, or a `Runtime` of three
//! lanes (user, resize, analytics). Both are driven the same way, so the
//! two can be compared in one run.

use crate::args::Args;
use crate::scenario::{Kind, Task};
use quay::{
    Builder, Counts, DeadLetter, Engine, JobContext, JobError, Lane, MetricsSnapshot, PinWarning,
    Runtime, Submitter,
};
use std::time::Duration;

/// The lanes, in the order they are added (and printed).
pub const LANES: [&str; 3] = ["user", "resize", "analytics"];

/// The lane a kind runs in.
pub fn lane_of(kind: Kind) -> usize {
    match kind {
        Kind::ResizePhoto => 1,
        Kind::AnalyticsPing => 2,
        _ => 0,
    }
}

pub enum Pool {
    One(Engine<Task>),
    Lanes(Runtime, [Lane<Task>; 3]),
}

/// One lane's (or the pool's) figures after a run.
pub struct LaneFigures {
    pub name: String,
    pub workers: usize,
    pub metrics: MetricsSnapshot,
    pub counts: Counts,
}

/// What a shutdown left.
pub struct Ended {
    pub counts: Counts,
    pub lanes: Vec<LaneFigures>,
}

impl Pool {
    /// Starts the pool for `lanes` (true: three lanes), every worker
    /// running `handler`.
    pub fn start<H>(args: &Args, lanes: bool, handler: H) -> Result<Pool, String>
    where
        H: Fn(&JobContext, &Task) -> Result<(), JobError> + Clone + Send + Sync + 'static,
    {
        if !lanes {
            let engine = base(args, crate::scenario::CAPACITY)
                .name("pool")
                .build(handler)
                .map_err(|e| e.to_string())?;
            return Ok(Pool::One(engine));
        }
        let rt = Runtime::new();
        // The user lane's jobs mostly wait (the email's I/O): two unpinned
        // workers, whatever the cores. Resize is CPU-bound: one pinned
        // worker. Analytics pings are short: one pinned worker.
        let user = base(args, 32_768).pin_workers(false).workers(2);
        let resize = base(args, 16_384).workers(1);
        let analytics = base(args, 16_384).workers(1);
        let add = |name: &str, b: Builder<Task>| {
            rt.add_lane(name, b, handler.clone())
                .map_err(|e| format!("lane {name}: {e}"))
        };
        let l = [
            add(LANES[0], user)?,
            add(LANES[1], resize)?,
            add(LANES[2], analytics)?,
        ];
        Ok(Pool::Lanes(rt, l))
    }

    /// The submitter for each lane (the same engine thrice for one pool).
    pub fn submitters(&self) -> [Submitter<Task>; 3] {
        match self {
            Pool::One(e) => [e.submitter(), e.submitter(), e.submitter()],
            Pool::Lanes(_, l) => [l[0].submitter(), l[1].submitter(), l[2].submitter()],
        }
    }

    pub fn workers(&self) -> usize {
        match self {
            Pool::One(e) => e.workers(),
            Pool::Lanes(_, l) => l.iter().map(|l| l.workers()).sum(),
        }
    }

    pub fn held(&self) -> u64 {
        match self {
            Pool::One(e) => e.counts().held,
            Pool::Lanes(_, l) => l.iter().map(|l| l.counts().held).sum(),
        }
    }

    pub fn finished(&self) -> u64 {
        let f = |c: Counts| c.completed + c.dead;
        match self {
            Pool::One(e) => f(e.counts()),
            Pool::Lanes(_, l) => l.iter().map(|l| f(l.counts())).sum(),
        }
    }

    /// Ctrl-C's first press: stop accepting, let the workers drain.
    pub fn close(&self) {
        match self {
            Pool::One(e) => drop(e.close()),
            Pool::Lanes(rt, _) => drop(rt.close()),
        }
    }

    /// Ctrl-C's second press: cut the drain short. Whichever shutdown joins
    /// the workers (this one, or the main thread's if it is waiting) takes
    /// the jobs that did not run; both count them as returned.
    pub fn stop_now(&self) {
        match self {
            Pool::One(e) => drop(e.shutdown_now()),
            Pool::Lanes(rt, _) => drop(rt.shutdown_now()),
        }
    }

    pub fn pin_warnings(&self) -> Vec<PinWarning> {
        match self {
            Pool::One(e) => e.pin_warnings(),
            Pool::Lanes(rt, _) => rt.pin_warnings(),
        }
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter<Task>> {
        match self {
            Pool::One(e) => e.dead_letters(),
            Pool::Lanes(_, l) => l.iter().flat_map(|l| l.dead_letters()).collect(),
        }
    }

    /// Drains, joins and reports (a `stop_now` elsewhere cuts it short).
    pub fn shutdown(&self) -> Ended {
        match self {
            Pool::One(e) => {
                // Workers publish their histograms once idle for a moment;
                // read the metrics after the shutdown, when they are final.
                let report = e.shutdown();
                let figures = LaneFigures {
                    name: "pool".to_string(),
                    workers: e.workers(),
                    metrics: e.metrics(),
                    counts: report.counts,
                };
                Ended {
                    counts: report.counts,
                    lanes: vec![figures],
                }
            }
            Pool::Lanes(rt, l) => {
                let report = rt.shutdown();
                let metrics = rt.metrics();
                let lanes = l
                    .iter()
                    .zip(report.lanes())
                    .map(|(lane, r)| LaneFigures {
                        name: r.name.clone(),
                        workers: lane.workers(),
                        metrics: metrics
                            .lane(&r.name)
                            .cloned()
                            .unwrap_or_else(|| lane.metrics()),
                        counts: r.counts,
                    })
                    .collect();
                Ended {
                    counts: report.counts(),
                    lanes,
                }
            }
        }
    }
}

/// The settings every lane (and the one pool) shares.
fn base(args: &Args, capacity: u64) -> Builder<Task> {
    let mut b = Engine::<Task>::builder()
        .pin_workers(args.pin())
        .idle(args.idle_strategy())
        .capacity(capacity)
        .dedup_window(args.dedup_window)
        .backoff(Duration::from_millis(1), Duration::from_millis(50));
    if let Some(w) = args.workers {
        b = b.workers(w);
    }
    b
}

/// The one pool's settings, for checking the flags before a run.
pub fn check_builder(args: &Args) -> Builder<Task> {
    base(args, crate::scenario::CAPACITY)
}
