//! [`Builder`]: every engine setting, checked at `build` into a typed
//! [`BuildError`] that names the field.

use crate::clock::Clock;
use crate::engine::Engine;
use crate::error::{BuildError, JobError};
use crate::idle::IdleStrategy;
use crate::job::JobContext;
use std::marker::PhantomData;

/// Which cores, if any, workers are pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Never pin.
    Off,
    /// Pin worker `i` to the `i % cores`-th core the OS reports, where the OS
    /// allows it. A pin the OS refuses becomes a [`PinWarning`], not an error.
    #[default]
    Auto,
    /// Pin worker `i` to `cores[i % cores.len()]`. Every core must exist.
    Cores(Vec<usize>),
}

impl From<bool> for Pinning {
    fn from(on: bool) -> Pinning {
        if on {
            Pinning::Auto
        } else {
            Pinning::Off
        }
    }
}

impl From<Vec<usize>> for Pinning {
    fn from(cores: Vec<usize>) -> Pinning {
        Pinning::Cores(cores)
    }
}

/// A pin the OS refused: the worker runs unpinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinWarning {
    /// The worker index.
    pub worker: usize,
    /// The core it was to be pinned to.
    pub core: usize,
}

/// The checked settings an engine runs with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) cores: Vec<Option<usize>>,
    pub(crate) capacity: u64,
    pub(crate) ring_capacity: usize,
    pub(crate) idle: IdleStrategy,
    pub(crate) batch: usize,
    pub(crate) clock: Clock,
}

/// Builds an [`Engine`]. Start from [`Engine::builder`].
///
/// ```
/// use quay::{Engine, IdleStrategy, BuildError};
/// let err = Engine::<u32>::builder().workers(0).build(|_, _| Ok(())).unwrap_err();
/// assert_eq!(err, BuildError::ZeroWorkers);
/// ```
#[derive(Debug)]
pub struct Builder<T> {
    workers: Option<usize>,
    pinning: Pinning,
    capacity: u64,
    ring_capacity: usize,
    idle: IdleStrategy,
    batch: usize,
    clock: Option<Clock>,
    _payload: PhantomData<fn(T)>,
}

impl<T: Send + 'static> Default for Builder<T> {
    fn default() -> Builder<T> {
        Builder::new()
    }
}

impl<T: Send + 'static> Builder<T> {
    pub(crate) fn new() -> Builder<T> {
        Builder {
            workers: None,
            pinning: Pinning::Auto,
            capacity: 65_536,
            ring_capacity: 4_096,
            idle: IdleStrategy::default(),
            batch: 32,
            clock: None,
            _payload: PhantomData,
        }
    }

    /// Worker threads, one shard each. Default: the available cores.
    pub fn workers(mut self, n: usize) -> Builder<T> {
        self.workers = Some(n);
        self
    }

    /// Pinning: `true`/`false`, or a core list. Default: [`Pinning::Auto`].
    pub fn pin_workers(mut self, p: impl Into<Pinning>) -> Builder<T> {
        self.pinning = p.into();
        self
    }

    /// The bound on all jobs the engine holds: queued, running, waiting
    /// behind a key, delayed or waiting to retry. Default 65 536.
    pub fn capacity(mut self, n: u64) -> Builder<T> {
        self.capacity = n;
        self
    }

    /// Slots per shard ring, a power of two. Default 4 096.
    pub fn ring_capacity(mut self, n: usize) -> Builder<T> {
        self.ring_capacity = n;
        self
    }

    /// What idle workers do. Default: spin 50 µs, then park.
    pub fn idle(mut self, s: IdleStrategy) -> Builder<T> {
        self.idle = s;
        self
    }

    /// Most jobs a worker takes from a ring in one claim. Default 32;
    /// 0 is read as 1.
    pub fn batch(mut self, n: usize) -> Builder<T> {
        self.batch = n.max(1);
        self
    }

    /// The engine's clock. Default: monotonic, from build.
    pub fn clock(mut self, c: impl Into<Clock>) -> Builder<T> {
        self.clock = Some(c.into());
        self
    }

    /// Checks every setting, without starting anything.
    pub(crate) fn config(&self) -> Result<Config, BuildError> {
        let workers = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.capacity == 0 || self.capacity > BuildError::MAX_CAPACITY {
            return Err(BuildError::Capacity(self.capacity));
        }
        let r = self.ring_capacity;
        if r < 2 || !r.is_power_of_two() || r > BuildError::MAX_RING_CAPACITY {
            return Err(BuildError::RingCapacity(r));
        }
        let cores = resolve_cores(&self.pinning, workers)?;
        Ok(Config {
            workers,
            cores,
            capacity: self.capacity,
            ring_capacity: r,
            idle: self.idle,
            batch: self.batch.min(r),
            clock: self.clock.clone().unwrap_or_default(),
        })
    }

    /// Checks the settings and starts the workers, each running `handler`.
    pub fn build<H>(self, handler: H) -> Result<Engine<T>, BuildError>
    where
        H: Fn(&JobContext, &T) -> Result<(), JobError> + Send + Sync + 'static,
    {
        let config = self.config()?;
        Engine::start(config, handler)
    }
}

/// The core (if any) each worker is pinned to.
fn resolve_cores(p: &Pinning, workers: usize) -> Result<Vec<Option<usize>>, BuildError> {
    let available = || -> Vec<usize> {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    match p {
        Pinning::Off => Ok(vec![None; workers]),
        Pinning::Auto => {
            let cores = available();
            Ok((0..workers)
                .map(|i| (!cores.is_empty()).then(|| cores[i % cores.len()]))
                .collect())
        }
        Pinning::Cores(list) => {
            if list.is_empty() {
                return Err(BuildError::EmptyCoreList);
            }
            let cores = available();
            if let Some(&bad) = list.iter().find(|c| !cores.contains(c)) {
                return Err(BuildError::NoSuchCore {
                    core: bad,
                    available: cores,
                });
            }
            Ok((0..workers).map(|i| Some(list[i % list.len()])).collect())
        }
    }
}
