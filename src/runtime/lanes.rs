//! [`Runtime`] and [`Lane`]: several engines, one per job kind, each with
//! its own payload type, handler, workers, cores, capacity, retry policy,
//! DLQ and dedup, under one lifecycle and one metrics story.
//!
//! The rules are in [`Runtime`]'s docs.

use crate::error::{BuildError, JobError};
use crate::job::{Job, JobContext};
use crate::loom::relock;
use crate::loom::time::Deadline;
use crate::observe::counts::Counts;
use crate::observe::metrics::MetricsSnapshot;
use crate::runtime::builder::{Builder, Pinning};
use crate::runtime::config::{PinWarning, PinWarningKind};
use crate::runtime::engine::Engine;
use crate::runtime::runner::{MakeRunner, SyncHandler};
use crate::runtime::shutdown::Shutdown;
use std::any::Any;
// std's, not the shim's: loom's `Arc` cannot hold a `dyn LaneControl`, and
// the registry is a plain lock touched only to add lanes or to ask about all
// of them, never on a job's path (no loom model needs it).
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the runtime needs of a lane, whatever its payload type.
trait LaneControl: Send + Sync {
    fn name(&self) -> &str;
    fn close(&self) -> bool;
    fn hurry(&self);
    fn held(&self) -> u64;
    fn wait_idle(&self, timeout: Duration) -> bool;
    fn metrics(&self) -> MetricsSnapshot;
    fn counts(&self) -> Counts;
    fn pin_warnings(&self) -> Vec<PinWarning>;
    fn shutdown_erased(&self, deadline: Option<Deadline>) -> LaneShutdown;
}

impl<T: Send + 'static> LaneControl for Engine<T> {
    fn name(&self) -> &str {
        Engine::name(self)
    }
    fn close(&self) -> bool {
        Engine::close(self)
    }
    fn hurry(&self) {
        self.shared().hurry();
    }
    fn held(&self) -> u64 {
        self.shared().gate.held()
    }
    fn wait_idle(&self, timeout: Duration) -> bool {
        Engine::wait_idle(self, timeout)
    }
    fn metrics(&self) -> MetricsSnapshot {
        Engine::metrics(self)
    }
    fn counts(&self) -> Counts {
        Engine::counts(self)
    }
    fn pin_warnings(&self) -> Vec<PinWarning> {
        Engine::pin_warnings(self)
    }
    fn shutdown_erased(&self, deadline: Option<Deadline>) -> LaneShutdown {
        let Shutdown { returned, counts } = self.shutdown_until(deadline);
        LaneShutdown {
            name: self.name().to_string(),
            counts,
            returned_len: returned.len(),
            returned: Some(Box::new(returned)),
        }
    }
}

/// A typed handle to one lane: it derefs to the lane's [`Engine`], so it
/// submits, inspects and redrives as an engine does. Cheap to clone.
///
/// The lane's engine lives as long as its runtime or any handle; if the
/// last of them is dropped without a shutdown, the engine's `Drop` runs.
/// A handler should capture a [`Submitter`](crate::Submitter)
/// (`lane.submitter()`), not a `Lane`: a `Lane` kept by its own lane's
/// handler is a reference cycle, and that engine is then never dropped.
pub struct Lane<T: Send + 'static> {
    engine: Arc<Engine<T>>,
    runtime: u64,
    index: usize,
}

impl<T: Send + 'static> Clone for Lane<T> {
    fn clone(&self) -> Lane<T> {
        Lane {
            engine: self.engine.clone(),
            runtime: self.runtime,
            index: self.index,
        }
    }
}

impl<T: Send + 'static> std::ops::Deref for Lane<T> {
    type Target = Engine<T>;
    fn deref(&self) -> &Engine<T> {
        &self.engine
    }
}

impl<T: Send + 'static> std::fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("name", &self.engine.name())
            .field("engine", &*self.engine)
            .finish()
    }
}

/// Several lanes under one lifecycle.
///
/// A lane *is* an [`Engine`]: the runtime owns each lane's engine behind
/// an `Arc` and hands out typed [`Lane`] handles that deref to it. What the
/// runtime adds is what separate engines cannot agree on by themselves:
///
/// - **Cores.** A lane with [`Pinning::Auto`] (the default) takes cores no
///   earlier lane took, in the OS's order. When none are left it shares
///   cores, and each such worker gets a [`PinWarning`] of kind
///   [`PinWarningKind::Shared`]. An explicit core list may not name a core
///   another lane is pinned to ([`BuildError::CoreOverlap`]). A lane with
///   `pin_workers(false)` runs unpinned and may have more workers than
///   there are cores: the shape for I/O-bound handlers that mostly wait.
/// - **Names.** Each lane is named; its threads are `quay-<lane>-<i>` and
///   its metrics carry a `lane` label.
/// - **Dedup** is per lane: the same ID in two lanes is two jobs.
/// - **Lifecycle.** [`Runtime::close`] closes every lane; a shutdown drains
///   every lane under one deadline and reports per lane and in total.
///
/// ```
/// use quay::{Engine, Job, Runtime};
///
/// let rt = Runtime::new();
/// let email = rt
///     .add_lane("email", Engine::<String>::builder().workers(1).pin_workers(false), |_, _| Ok(()))
///     .unwrap();
/// let resize = rt
///     .add_lane("resize", Engine::<Vec<u8>>::builder().workers(1).pin_workers(false), |_, _| Ok(()))
///     .unwrap();
/// // Dedup is per lane: ID 42 in each lane is two jobs.
/// email.submit(Job::new(42u64, "a@example.com".to_string())).unwrap();
/// resize.submit(Job::new(42u64, vec![0u8; 16])).unwrap();
/// let mut report = rt.shutdown();
/// assert_eq!(report.counts().completed, 2);
/// assert!(report.is_conserved());
/// assert!(report.take_returned(&email).is_empty());
/// ```
pub struct Runtime {
    /// Tells this runtime's lanes from another's (see `take_returned`).
    id: u64,
    inner: Mutex<Registry>,
}

impl Default for Runtime {
    fn default() -> Runtime {
        // Relaxed: only uniqueness matters.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Runtime {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            inner: Mutex::new(Registry::default()),
        }
    }
}

#[derive(Default)]
struct Registry {
    lanes: Vec<Arc<dyn LaneControl>>,
    /// Cores pinned so far, with the lane that has each.
    taken: Vec<(usize, String)>,
    /// Set by the first close or shutdown: no lane may be added after it.
    closed: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = relock(self.inner.lock());
        f.debug_struct("Runtime")
            .field(
                "lanes",
                &r.lanes.iter().map(|l| l.name()).collect::<Vec<_>>(),
            )
            .field("closed", &r.closed)
            .finish()
    }
}

impl Runtime {
    /// A runtime with no lanes.
    pub fn new() -> Runtime {
        Runtime::default()
    }

    /// Builds a lane from `builder` (its name replaced by `name`) and
    /// starts its workers, each running `handler`. See the
    /// [`Runtime`] docs for how its cores are chosen.
    pub fn add_lane<T, H>(
        &self,
        name: &str,
        builder: Builder<T>,
        handler: H,
    ) -> Result<Lane<T>, BuildError>
    where
        T: Send + 'static,
        H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
    {
        self.add(
            name,
            builder,
            SyncHandler(crate::loom::sync::Arc::new(handler)),
        )
    }

    /// Like [`add_lane`](Runtime::add_lane), for an async handler: each of
    /// the lane's workers runs up to its builder's
    /// [`concurrency`](Builder::concurrency) attempts at once (see
    /// [`Builder::build_async`]). The natural home of jobs that wait on
    /// I/O: the lane's few threads serve many waiting jobs.
    pub fn add_async_lane<T, H, F>(
        &self,
        name: &str,
        builder: Builder<T>,
        handler: H,
    ) -> Result<Lane<T>, BuildError>
    where
        T: Send + 'static,
        H: Fn(JobContext, &T) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(), JobError>> + 'static,
    {
        let make = builder.async_handler(handler);
        self.add(name, builder, make)
    }

    fn add<T, M>(&self, name: &str, builder: Builder<T>, make: M) -> Result<Lane<T>, BuildError>
    where
        T: Send + 'static,
        M: MakeRunner<T>,
    {
        crate::runtime::builder::check_name(name)?;
        let mut r = relock(self.inner.lock());
        if r.closed {
            return Err(BuildError::RuntimeClosed);
        }
        if r.lanes.iter().any(|l| l.name() == name) {
            return Err(BuildError::DuplicateLane(name.to_string()));
        }
        // On a copy: a lane that fails to start reserves no core.
        let mut taken = r.taken.clone();
        let engine = builder.name(name).build_with_cores(
            |pinning, workers| {
                let all = crate::runtime::builder::os_cores();
                assign_cores(name, pinning, workers, &all, &mut taken)
            },
            make,
        )?;
        r.taken = taken;
        let engine = Arc::new(engine);
        let index = r.lanes.len();
        r.lanes.push(engine.clone());
        Ok(Lane {
            engine,
            runtime: self.id,
            index,
        })
    }

    /// The lanes' names, in the order they were added.
    pub fn lane_names(&self) -> Vec<String> {
        self.lanes().iter().map(|l| l.name().to_string()).collect()
    }

    fn lanes(&self) -> Vec<Arc<dyn LaneControl>> {
        relock(self.inner.lock()).lanes.clone()
    }

    /// Closes every lane (see [`Engine::close`]); no lane can be added
    /// after it. Returns whether this call closed any lane.
    pub fn close(&self) -> bool {
        let lanes = {
            let mut r = relock(self.inner.lock());
            r.closed = true;
            r.lanes.clone()
        };
        lanes.iter().fold(false, |any, l| l.close() | any)
    }

    /// Whether [`close`](Self::close) or a shutdown has been called.
    pub fn is_closed(&self) -> bool {
        relock(self.inner.lock()).closed
    }

    /// Waits until no lane holds a job, or `timeout` passes. Returns
    /// whether every lane is idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Deadline::after(timeout);
        let lanes = self.lanes();
        for l in &lanes {
            let left = deadline.map_or(Duration::MAX, |d| d.remaining());
            if !l.wait_idle(left) {
                return false;
            }
        }
        lanes.iter().all(|l| l.held() == 0)
    }

    /// Every lane's metrics, in the order the lanes were added.
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics {
            lanes: self
                .lanes()
                .iter()
                .map(|l| (l.name().to_string(), l.metrics()))
                .collect(),
        }
    }

    /// Every lane's counts, in the order the lanes were added.
    pub fn counts(&self) -> Vec<(String, Counts)> {
        self.lanes()
            .iter()
            .map(|l| (l.name().to_string(), l.counts()))
            .collect()
    }

    /// Every lane's pin warnings: pins the OS refused, and workers that
    /// share a core with another lane's.
    pub fn pin_warnings(&self) -> Vec<PinWarning> {
        self.lanes().iter().flat_map(|l| l.pin_warnings()).collect()
    }

    /// Closes every lane, then drains each, joins its workers and reports
    /// per lane. Lanes are closed together first, so a handler in one lane
    /// submitting to another is refused rather than left half-done. Called
    /// on a worker thread (inside a handler of any lane) it does not wait:
    /// it closes every lane and reports no jobs and the counts of the
    /// moment.
    pub fn shutdown(&self) -> RuntimeShutdown {
        self.shutdown_until(None)
    }

    /// Like [`shutdown`](Self::shutdown), with one deadline for all the
    /// lanes: once it passes, every job that has not run is returned.
    pub fn shutdown_timeout(&self, timeout: Duration) -> RuntimeShutdown {
        self.shutdown_until(Deadline::after(timeout))
    }

    /// Closes every lane and returns every job that has not run, once
    /// running handlers finish. A graceful shutdown waiting in another
    /// thread stops waiting too.
    pub fn shutdown_now(&self) -> RuntimeShutdown {
        for l in self.lanes() {
            l.hurry();
        }
        self.shutdown_until(Deadline::after(Duration::ZERO))
    }

    fn shutdown_until(&self, deadline: Option<Deadline>) -> RuntimeShutdown {
        self.close();
        RuntimeShutdown {
            runtime: self.id,
            lanes: self
                .lanes()
                .iter()
                .map(|l| l.shutdown_erased(deadline))
                .collect(),
        }
    }
}

impl Drop for Runtime {
    /// Closes every lane together, so none accepts while another drains;
    /// each lane's engine then drops (see [`Engine`]'s `Drop`) once its
    /// last [`Lane`] handle is gone.
    fn drop(&mut self) {
        self.close();
    }
}

/// The cores a lane's workers are pinned to, and the warnings for those
/// that must share (see [`Runtime`]).
fn assign_cores(
    lane: &str,
    pinning: &Pinning,
    workers: usize,
    all: &[usize],
    taken: &mut Vec<(usize, String)>,
) -> Result<(Vec<Option<usize>>, Vec<PinWarning>), BuildError> {
    match pinning {
        Pinning::Off => Ok((vec![None; workers], Vec::new())),
        Pinning::Cores(list) => {
            for &core in list {
                if let Some((_, other)) = taken.iter().find(|(c, _)| *c == core) {
                    return Err(BuildError::CoreOverlap {
                        lane: lane.to_string(),
                        core,
                        taken_by: other.clone(),
                    });
                }
            }
            let cores: Vec<Option<usize>> =
                (0..workers).map(|i| Some(list[i % list.len()])).collect();
            for &core in list {
                if !taken.iter().any(|(c, _)| *c == core) {
                    taken.push((core, lane.to_string()));
                }
            }
            Ok((cores, Vec::new()))
        }
        Pinning::Auto => {
            if all.is_empty() {
                return Ok((vec![None; workers], Vec::new()));
            }
            let free: Vec<usize> = all
                .iter()
                .copied()
                .filter(|c| !taken.iter().any(|(t, _)| t == c))
                .collect();
            let mut cores = Vec::with_capacity(workers);
            let mut warnings = Vec::new();
            for i in 0..workers {
                if let Some(&core) = free.get(i) {
                    taken.push((core, lane.to_string()));
                    cores.push(Some(core));
                } else {
                    let core = all[(i - free.len()) % all.len()];
                    warnings.push(PinWarning {
                        lane: lane.to_string(),
                        worker: i,
                        core,
                        kind: PinWarningKind::Shared,
                    });
                    cores.push(Some(core));
                }
            }
            Ok((cores, warnings))
        }
    }
}

/// Every lane's metrics. See [`MetricsSnapshot`] for how consistent each
/// is; the total adds the lanes' counters, gauges and histograms.
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    /// Each lane's name and snapshot, in the order the lanes were added.
    pub lanes: Vec<(String, MetricsSnapshot)>,
}

impl RuntimeMetrics {
    /// One lane's snapshot.
    pub fn lane(&self, name: &str) -> Option<&MetricsSnapshot> {
        self.lanes.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }

    /// The lanes added up.
    pub fn total(&self) -> MetricsSnapshot {
        MetricsSnapshot::sum(self.lanes.iter().map(|(_, m)| m))
    }

    /// Publishes every lane's counters and gauges through the `metrics`
    /// crate facade, each labelled `lane = <name>` (feature `metrics`).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish(&self) {
        for (name, m) in &self.lanes {
            m.publish_lane(name);
        }
    }
}

/// One lane's part of a [`RuntimeShutdown`].
pub struct LaneShutdown {
    /// The lane's name.
    pub name: String,
    /// The lane's final counts, at rest: except when the shutdown was
    /// called on a worker thread (inside a handler), which does not wait
    /// for the drain, and then reports the counts of the moment.
    pub counts: Counts,
    returned_len: usize,
    /// A `Vec<Job<T>>` of the lane's payload type, until taken.
    returned: Option<Box<dyn Any + Send>>,
}

impl LaneShutdown {
    /// How many jobs the lane returned (whether or not taken yet).
    pub fn returned_len(&self) -> usize {
        self.returned_len
    }
}

impl std::fmt::Debug for LaneShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneShutdown")
            .field("name", &self.name)
            .field("counts", &self.counts)
            .field("returned", &self.returned_len)
            .finish()
    }
}

/// What a runtime's shutdown hands back: per lane, its counts and the jobs
/// that did not run (typed: take them with [`take_returned`](Self::take_returned)
/// and the lane's handle).
#[derive(Debug)]
pub struct RuntimeShutdown {
    runtime: u64,
    lanes: Vec<LaneShutdown>,
}

impl RuntimeShutdown {
    /// Each lane's report, in the order the lanes were added.
    pub fn lanes(&self) -> &[LaneShutdown] {
        &self.lanes
    }

    /// One lane's report.
    pub fn lane(&self, name: &str) -> Option<&LaneShutdown> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// The lanes' counts added up.
    pub fn counts(&self) -> Counts {
        let mut t = Counts::default();
        for l in &self.lanes {
            t.add(&l.counts);
        }
        t
    }

    /// Whether every lane's counts, and their total, are conserved.
    pub fn is_conserved(&self) -> bool {
        self.lanes.iter().all(|l| l.counts.is_conserved()) && self.counts().is_conserved()
    }

    /// The jobs `lane` returned, in its per-key accept order (see
    /// [`Shutdown::returned`]). A second call, or a lane of another
    /// runtime, gets none.
    pub fn take_returned<T: Send + 'static>(&mut self, lane: &Lane<T>) -> Vec<Job<T>> {
        if lane.runtime != self.runtime {
            return Vec::new();
        }
        let Some(l) = self.lanes.get_mut(lane.index) else {
            return Vec::new();
        };
        match l.returned.take().map(|b| b.downcast::<Vec<Job<T>>>()) {
            Some(Ok(v)) => *v,
            Some(Err(other)) => {
                l.returned = Some(other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(all(test, not(quay_loom)))]
mod tests {
    use super::*;

    fn cores(v: &(Vec<Option<usize>>, Vec<PinWarning>)) -> Vec<usize> {
        v.0.iter().map(|c| c.unwrap()).collect()
    }

    #[test]
    fn auto_lanes_take_free_cores_then_share_with_a_warning() {
        let all = [0, 1, 2, 3];
        let mut taken = Vec::new();
        let a = assign_cores("a", &Pinning::Auto, 1, &all, &mut taken).unwrap();
        let b = assign_cores("b", &Pinning::Auto, 2, &all, &mut taken).unwrap();
        assert_eq!((cores(&a), cores(&b)), (vec![0], vec![1, 2]));
        assert!(a.1.is_empty() && b.1.is_empty());
        // One core left, three workers: the last two share cores 0 and 1.
        let c = assign_cores("c", &Pinning::Auto, 3, &all, &mut taken).unwrap();
        assert_eq!(cores(&c), vec![3, 0, 1]);
        let shared: Vec<(usize, usize)> = c.1.iter().map(|w| (w.worker, w.core)).collect();
        assert_eq!(shared, vec![(1, 0), (2, 1)]);
        assert!(c
            .1
            .iter()
            .all(|w| w.kind == PinWarningKind::Shared && w.lane == "c"));
    }

    #[test]
    fn explicit_cores_may_not_overlap_and_auto_avoids_them() {
        let all = [0, 1, 2, 3];
        let mut taken = Vec::new();
        let a = assign_cores("a", &Pinning::Cores(vec![2]), 2, &all, &mut taken).unwrap();
        assert_eq!(cores(&a), vec![2, 2]);
        let err = assign_cores("b", &Pinning::Cores(vec![1, 2]), 1, &all, &mut taken);
        assert_eq!(
            err.unwrap_err(),
            BuildError::CoreOverlap {
                lane: "b".into(),
                core: 2,
                taken_by: "a".into()
            }
        );
        let c = assign_cores("c", &Pinning::Auto, 3, &all, &mut taken).unwrap();
        assert_eq!(cores(&c), vec![0, 1, 3]);
        let off = assign_cores("d", &Pinning::Off, 20, &all, &mut taken).unwrap();
        assert!(off.0.iter().all(Option::is_none) && off.1.is_empty());
    }
}
