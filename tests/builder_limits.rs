//! The builder's bounds on `workers` and `batch`: a setting out of range is
//! a typed [`BuildError`] naming the field, reported before any thread
//! starts.

use quay::{BuildError, Engine};

fn build(b: quay::Builder<u32>) -> Result<(), BuildError> {
    b.build(|_, _| Ok(())).map(drop)
}

fn builder() -> quay::Builder<u32> {
    Engine::<u32>::builder().pin_workers(false)
}

#[test]
fn more_workers_than_the_maximum_is_a_typed_error() {
    let max = BuildError::MAX_WORKERS;
    for n in [max + 1, 100_000, usize::MAX] {
        assert_eq!(
            build(builder().workers(n)),
            Err(BuildError::TooManyWorkers(n))
        );
        // The driver runs the same checks without spawning threads.
        assert_eq!(
            builder().workers(n).driver().map(drop),
            Err(BuildError::TooManyWorkers(n))
        );
    }
    let msg = BuildError::TooManyWorkers(max + 1).to_string();
    assert!(msg.starts_with("workers:"), "{msg}");
    assert!(msg.contains(&max.to_string()), "{msg}");
    // The maximum itself is accepted (checked without spawning threads).
    assert!(builder().workers(max).driver().is_ok());
}

#[test]
fn batch_zero_is_a_typed_error() {
    assert_eq!(build(builder().workers(1).batch(0)), Err(BuildError::Batch));
    assert_eq!(
        builder().workers(1).batch(0).driver().map(drop),
        Err(BuildError::Batch)
    );
    let msg = BuildError::Batch.to_string();
    assert!(msg.starts_with("batch:"), "{msg}");
    // 1 and anything larger (clamped to the ring) are fine.
    for n in [1, 32, usize::MAX] {
        assert!(builder().workers(1).batch(n).driver().is_ok(), "batch {n}");
    }
}
