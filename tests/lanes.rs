//! Lanes: a `Runtime` of engines, one per job kind, with disjoint cores,
//! lane-named threads, per-lane dedup, labelled metrics and one shutdown.

mod common;

use common::Latch;
use quay::{BuildError, Engine, Job, ManualClock, PinWarningKind, Pinning, Runtime, Submitted};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn auto_lanes_get_disjoint_cores_or_say_they_share() {
    let rt = Runtime::new();
    let a = rt
        .add_lane("a", Engine::<u64>::builder().workers(1), |_, _| Ok(()))
        .unwrap();
    let b = rt
        .add_lane("b", Engine::<u64>::builder().workers(1), |_, _| Ok(()))
        .unwrap();
    let shared: HashSet<(String, usize)> = rt
        .pin_warnings()
        .into_iter()
        .filter(|w| w.kind == PinWarningKind::Shared)
        .map(|w| (w.lane, w.worker))
        .collect();
    let (ca, cb) = (a.cores(), b.cores());
    assert!(
        ca[0].is_some() || cb[0].is_none(),
        "auto lanes pin when the OS lists cores"
    );
    if ca[0].is_some() && ca[0] == cb[0] {
        // Only on a one-core machine, and then it is reported.
        assert!(shared.contains(&("b".to_string(), 0)), "{shared:?}");
    } else {
        assert!(shared.is_empty(), "{shared:?}");
    }
    assert!(rt.shutdown().is_conserved());
}

#[test]
fn explicit_core_lists_are_checked_for_overlap() {
    let rt = Runtime::new();
    let a = rt
        .add_lane("a", Engine::<u64>::builder().workers(1), |_, _| Ok(()))
        .unwrap();
    let Some(core) = a.cores()[0] else {
        // The OS lists no cores: nothing to overlap.
        return;
    };
    let err = rt
        .add_lane(
            "b",
            Engine::<u64>::builder().workers(1).pin_workers(vec![core]),
            |_, _| Ok(()),
        )
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::CoreOverlap {
            lane: "b".into(),
            core,
            taken_by: "a".into()
        }
    );
    assert_eq!(rt.lane_names(), vec!["a".to_string()]);
    assert!(rt.shutdown().is_conserved());
}

#[test]
fn lane_names_are_checked_and_unique() {
    let rt = Runtime::new();
    let b = || Engine::<u64>::builder().workers(1).pin_workers(false);
    rt.add_lane("email", b(), |_, _| Ok(())).unwrap();
    assert_eq!(
        rt.add_lane("email", b(), |_, _| Ok(())).unwrap_err(),
        BuildError::DuplicateLane("email".into())
    );
    for bad in [
        "",
        "has space",
        "ünïcode",
        &"x".repeat(BuildError::MAX_NAME + 1),
    ] {
        assert_eq!(
            rt.add_lane(bad, b(), |_, _| Ok(())).unwrap_err(),
            BuildError::Name(bad.to_string())
        );
    }
    rt.close();
    assert!(rt.is_closed());
    assert_eq!(
        rt.add_lane("late", b(), |_, _| Ok(())).unwrap_err(),
        BuildError::RuntimeClosed
    );
    assert!(rt.shutdown().is_conserved());
}

#[test]
fn worker_threads_are_named_after_their_lane() {
    let names = Arc::new(Mutex::new(HashSet::new()));
    let rt = Runtime::new();
    let n = names.clone();
    let resize = rt
        .add_lane(
            "resize",
            Engine::<u64>::builder().workers(2).pin_workers(false),
            move |_, _| {
                let name = std::thread::current().name().map(str::to_string);
                n.lock().unwrap().insert(name);
                Ok(())
            },
        )
        .unwrap();
    for i in 0..64u64 {
        resize.submit(Job::new(i, i)).unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(60)));
    let names = names.lock().unwrap().clone();
    assert!(!names.is_empty());
    for name in names {
        let name = name.expect("worker threads are named");
        assert!(name == "quay-resize-0" || name == "quay-resize-1", "{name}");
    }
    assert!(rt.shutdown().is_conserved());
}

#[test]
fn the_same_id_in_two_lanes_is_two_jobs() {
    let ran = Arc::new(AtomicU64::new(0));
    let rt = Runtime::new();
    let (r1, r2) = (ran.clone(), ran.clone());
    let email = rt
        .add_lane(
            "email",
            Engine::<String>::builder().workers(1).pin_workers(false),
            move |_, _| {
                r1.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
    let resize = rt
        .add_lane(
            "resize",
            Engine::<u64>::builder().workers(1).pin_workers(false),
            move |_, _| {
                r2.fetch_add(1, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
    let id = 42u64;
    assert_eq!(
        email.submit(Job::new(id, "a@example.com".into())).unwrap(),
        Submitted::Accepted
    );
    assert_eq!(resize.submit(Job::new(id, 7)).unwrap(), Submitted::Accepted);
    // Within a lane, it is still a duplicate.
    assert_eq!(
        resize.submit(Job::new(id, 8)).unwrap(),
        Submitted::Duplicate
    );
    let report = rt.shutdown();
    assert_eq!(ran.load(Ordering::Relaxed), 2);
    assert_eq!(report.counts().completed, 2);
    assert_eq!(report.counts().duplicates, 1);
    assert!(report.is_conserved());
}

#[test]
fn an_unpinned_lane_runs_more_workers_than_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cores * 2;
    let latch = Latch::new();
    let waiting = Arc::new(AtomicU64::new(0));
    let rt = Runtime::new();
    let (l, w) = (latch.clone(), waiting.clone());
    // One job per claim or steal, and workers that never park: every idle
    // worker keeps looking, and finds one while the rings hold more jobs
    // than there are workers (a parked worker would depend on being woken,
    // which the engine does not promise for every sleeper at once).
    let io = rt
        .add_lane(
            "io",
            Engine::<u64>::builder()
                .workers(workers)
                .pin_workers(false)
                .idle(quay::IdleStrategy::BusySpin)
                .batch(1),
            move |_, _| {
                w.fetch_add(1, Ordering::SeqCst);
                l.wait();
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(io.workers(), workers);
    assert!(io.cores().iter().all(Option::is_none));
    assert!(rt.pin_warnings().is_empty());
    let jobs = workers as u64 * 4;
    for i in 0..jobs {
        io.submit(Job::new(i, i)).unwrap();
    }
    // Every worker is inside a handler at once: more than there are cores.
    common::wait_for(|| waiting.load(Ordering::SeqCst) == workers as u64);
    latch.open();
    let report = rt.shutdown();
    assert_eq!(report.counts().completed, jobs);
    assert!(report.is_conserved());
}

#[test]
fn one_shutdown_drains_every_lane_and_reports_per_lane() {
    let rt = Runtime::new();
    // The slow lane's jobs are delayed on a clock that never moves: a
    // graceful shutdown would wait for them for ever.
    let slow = rt
        .add_lane(
            "slow",
            Engine::<u64>::builder()
                .workers(1)
                .pin_workers(false)
                .clock(ManualClock::new()),
            |_, _| Ok(()),
        )
        .unwrap();
    let fast = rt
        .add_lane(
            "fast",
            Engine::<String>::builder().workers(1).pin_workers(false),
            |_, _| Ok(()),
        )
        .unwrap();
    for i in 0..10u64 {
        slow.submit(Job::new(i, i).delay(Duration::from_secs(60)))
            .unwrap();
        fast.submit(Job::new(i, format!("job {i}"))).unwrap();
    }
    // The fast lane is done before the shutdown (else `shutdown_now` may
    // return its jobs too, which is right but not what this checks).
    assert!(fast.wait_idle(Duration::from_secs(60)));
    // A graceful shutdown waits on the slow lane; `shutdown_now` from
    // another thread cuts it short, and the slow lane's jobs come back.
    let mut report = std::thread::scope(|s| {
        let graceful = s.spawn(|| rt.shutdown());
        common::wait_for(|| rt.is_closed());
        let now = s.spawn(|| rt.shutdown_now());
        let a = graceful.join().unwrap();
        let b = now.join().unwrap();
        // Whichever joined the slow lane's worker has its jobs.
        if a.lane("slow").unwrap().returned_len() > 0 {
            a
        } else {
            b
        }
    });
    let s = report.lane("slow").unwrap().counts;
    let f = report.lane("fast").unwrap().counts;
    assert!(s.is_conserved() && f.is_conserved(), "{s:?} {f:?}");
    assert_eq!((s.accepted, f.accepted), (10, 10));
    assert_eq!((s.completed, s.returned), (0, 10));
    assert_eq!(f.completed, 10);
    assert!(report.is_conserved());
    let returned = report.take_returned(&slow);
    let ids: Vec<u64> = returned.iter().map(|j| *j.payload()).collect();
    assert_eq!(ids.len(), 10);
    assert!(report.take_returned(&slow).is_empty(), "taken once");
    assert!(report.take_returned(&fast).is_empty());
    let total = rt.metrics().total();
    assert_eq!(total.counters.accepted, 20);
}

#[test]
fn metrics_per_lane_and_in_total() {
    let rt = Runtime::new();
    let a = rt
        .add_lane(
            "a",
            Engine::<u64>::builder().workers(1).pin_workers(false),
            |_, _| Ok(()),
        )
        .unwrap();
    let b = rt
        .add_lane(
            "b",
            Engine::<u64>::builder().workers(2).pin_workers(false),
            |_, _| Ok(()),
        )
        .unwrap();
    for i in 0..30u64 {
        a.submit(Job::new(i, i)).unwrap();
    }
    for i in 0..50u64 {
        b.submit(Job::new(i, i)).unwrap();
    }
    assert!(rt.wait_idle(Duration::from_secs(60)));
    // Workers publish their histograms once idle for a moment.
    common::wait_for(|| rt.metrics().total().histograms.end_to_end.len() == 80);
    let m = rt.metrics();
    assert_eq!(m.lane("a").unwrap().counters.completed, 30);
    assert_eq!(m.lane("b").unwrap().counters.completed, 50);
    let total = m.total();
    assert_eq!(total.counters.completed, 80);
    assert_eq!(total.gauges.queued_per_shard.len(), 3);
    assert_eq!(total.histograms.end_to_end.len(), 80);
    assert_eq!(rt.counts().len(), 2);
    let _ = Pinning::Off;
    assert!(rt.shutdown().is_conserved());
}

#[cfg(feature = "metrics")]
mod facade {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    /// Records every counter's last absolute value by name and labels.
    #[derive(Default)]
    struct Capture(Mutex<Vec<Registered>>);

    /// A counter's name, labels and value cell.
    type Registered = (String, Vec<(String, String)>, Arc<Value>);

    #[derive(Default)]
    struct Value(AtomicU64);

    impl CounterFn for Value {
        fn increment(&self, v: u64) {
            self.0.fetch_add(v, Ordering::Relaxed);
        }
        fn absolute(&self, v: u64) {
            self.0.store(v, Ordering::Relaxed);
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let v = Arc::new(Value::default());
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            self.0
                .lock()
                .unwrap()
                .push((key.name().to_string(), labels, v.clone()));
            Counter::from_arc(v)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn the_facade_labels_each_lane() {
        let rt = Runtime::new();
        for (name, n) in [("email", 3u64), ("resize", 5)] {
            let lane = rt
                .add_lane(
                    name,
                    Engine::<u64>::builder().workers(1).pin_workers(false),
                    |_, _| Ok(()),
                )
                .unwrap();
            for i in 0..n {
                lane.submit(Job::new(i, i)).unwrap();
            }
        }
        assert!(rt.wait_idle(Duration::from_secs(60)));
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || rt.metrics().publish());
        let seen = capture.0.lock().unwrap();
        let completed = |lane: &str| {
            seen.iter()
                .find(|(n, l, _)| {
                    n == "quay_completed" && l == &vec![("lane".to_string(), lane.to_string())]
                })
                .map(|(_, _, v)| v.0.load(Ordering::Relaxed))
        };
        assert_eq!(completed("email"), Some(3));
        assert_eq!(completed("resize"), Some(5));
        assert!(rt.shutdown().is_conserved());
    }
}
