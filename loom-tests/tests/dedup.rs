//! Loom model of dedup under concurrent submits (`src/dedup.rs`, the
//! seen-ID set, reached through `try_submit`): two producers submit the same
//! job ID at once.
//!
//! Whatever the interleaving, exactly one submit is `Accepted` and the other
//! is `Duplicate` (the ID is live, or finished within the dedup window), the
//! handler runs once, and the counts are conserved: a duplicate is neither
//! accepted nor holds capacity.
#![cfg(quay_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::{check, parking_engine};
use quay::{Job, Submitted};

#[test]
fn same_id_submitted_twice_concurrently() {
    check("dedup::same_id_submitted_twice_concurrently", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let engine = parking_engine(1, 2, move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let submitter = engine.submitter();
        let other = thread::spawn(move || {
            submitter
                .try_submit(Job::new(9u64, 1))
                .map_err(|e| format!("{e:?}"))
        });
        let mine = engine
            .try_submit(Job::new(9u64, 2))
            .map_err(|e| format!("{e:?}"));
        let theirs = other.join().unwrap();
        let mut got = [mine, theirs];
        got.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            got,
            [Ok(Submitted::Accepted), Ok(Submitted::Duplicate)],
            "want one Accepted and one Duplicate"
        );
        let report = engine.shutdown();
        assert_eq!(ran.load(Ordering::Relaxed), 1, "the job ran more than once");
        let c = report.counts;
        assert_eq!(
            (c.accepted, c.completed, c.returned, c.held),
            (1, 1, 0, 0),
            "{c:?}"
        );
        assert!(c.is_conserved(), "{c:?}");
    });
}
