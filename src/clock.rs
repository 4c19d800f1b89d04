//! Time: the engine's [`Clock`], and the [`Timestamp`]s it hands out.
//!
//! Every time the engine reads (accept times, retry and delay due times,
//! latency samples) comes from one `Clock`. The default is the monotonic
//! clock; tests use a [`ManualClock`] they advance by hand, which makes
//! retry, backoff and delay timing deterministic.

use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::Arc;
use std::fmt;
use std::time::Duration;

/// A point on the engine's clock: nanoseconds since the engine's epoch (its
/// build, for the monotonic clock; zero, for a manual clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Duration::from_nanos(self.0))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The engine's source of time.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The monotonic clock, counted from the moment the engine was built.
    Monotonic(MonotonicClock),
    /// A clock that moves only when a test moves it.
    Manual(ManualClock),
}

impl Clock {
    /// The monotonic clock, with its epoch now.
    pub fn monotonic() -> Clock {
        Clock::Monotonic(MonotonicClock::new())
    }

    /// The current time.
    #[inline]
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::Monotonic(m) => m.now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Whether this clock moves only by hand. Workers waiting on a timer
    /// cannot sleep until a manual due time, so they poll instead.
    pub(crate) fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

/// The monotonic clock: nanoseconds since it was made.
///
/// Read through [`quanta`]: from the CPU's invariant time-stamp counter,
/// scaled by a calibration against the OS clock made once per process
/// (by the first clock made: it can take up to some 200 ms), where the CPU
/// has one; from the OS monotonic clock otherwise. TSC reads are not
/// serialising, and two cores' counters may differ by a few nanoseconds:
/// the engine never relies on timestamps from two threads being ordered
/// to that precision. A worker
/// reads the time twice per job (an attempt's start and end), and a TSC
/// read with its scaling costs a fraction of `clock_gettime`.
#[derive(Clone, Debug)]
pub struct MonotonicClock {
    source: quanta::Clock,
    epoch: u64,
}

impl MonotonicClock {
    /// A clock whose zero is now.
    pub fn new() -> MonotonicClock {
        let source = quanta::Clock::new();
        let epoch = source.raw();
        MonotonicClock { source, epoch }
    }

    /// Nanoseconds since this clock was made.
    ///
    /// Under `--cfg quay_loom` it reads 0 always: a model must not branch on
    /// the wall clock (loom would see a different execution on replay), so
    /// its time stands still unless the model drives a [`ManualClock`].
    #[inline]
    pub fn now(&self) -> Timestamp {
        if cfg!(quay_loom) {
            return Timestamp(0);
        }
        Timestamp(self.source.delta_as_nanos(self.epoch, self.source.raw()))
    }
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock::new()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::monotonic()
    }
}

/// A clock for tests: it starts at zero and moves only through
/// [`ManualClock::advance`] or [`ManualClock::set`]. Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock at time zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        // Acquire pairs with the Release in `advance`/`set`: whoever sees the
        // new time also sees what the test did before moving it.
        Timestamp(self.nanos.load(Ordering::Acquire))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        // Release pairs with the Acquire in `now`.
        self.nanos.fetch_add(duration_nanos(d), Ordering::Release);
    }

    /// Moves the clock to `t`; a time in the past is ignored, so the clock
    /// stays monotonic.
    pub fn set(&self, t: Timestamp) {
        // Release pairs with the Acquire in `now`.
        self.nanos.fetch_max(t.0, Ordering::Release);
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Clock {
        Clock::Manual(m)
    }
}
