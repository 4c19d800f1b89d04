//! A worker node: a local quay engine fed by the partitions this node
//! owns, on a tokio runtime owned by one bridge thread.
//!
//! | file | owns |
//! |---|---|
//! | `control` | the control loop: heartbeats, assignment, lease life cycle |
//! | [`lease`] | lease acquire, renew, release in the KV bucket |
//! | [`members`] | membership and the assignment function |
//! | `partition` | takeover and the fetch loop of one generation |
//! | `work` | the job the engine runs, the handler wrapper, [`Token`] |
//! | [`fence`] | one generation's lease validity |
//! | `inflight` | the in-flight table and terminal memory |
//! | `acker` | acks, DLQ publishes, `+WPI` |
//! | `crash` | crash-loop markers and the rule that reads them |
//! | `alone` | the gate that lets a suspect's attempt run alone |
//! | `dead` | dead letters, written inside the last attempt |
//! | [`stats`] | counters |

mod acker;
mod alone;
mod control;
mod crash;
mod dead;
pub mod fence;
mod inflight;
pub mod lease;
pub mod members;
mod partition;
pub mod stats;
mod work;

pub use fence::Fenced;
pub use stats::NodeStats;
pub use work::Token;

use crate::codec::{Codec, Json};
use crate::error::BridgeError;
use crate::settings::{Cluster, NodeSettings};
use crate::setup::{self, Objects};
use acker::{Acker, Terminal};
use inflight::InFlight;
use quay::{Engine, JobError};
use stats::Stats;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use work::{Work, Wrap};

/// The error prefix of a job sent to the DLQ by the crash-loop limit.
pub const CRASH_LOOP: &str = "crash loop";

/// What every task of a node shares.
pub(crate) struct Shared<T: Send + Sync + 'static> {
    pub cluster: Arc<Cluster>,
    pub settings: Arc<NodeSettings>,
    pub client: async_nats::Client,
    pub objects: Objects,
    pub engine: Engine<Work<T>>,
    pub inflight: Arc<Mutex<InFlight>>,
    pub stats: Arc<Stats>,
    pub codec: Box<dyn Codec<T>>,
    pub epoch: Instant,
    pub on_acquire: Option<AcquireHook>,
}

/// A hook told of every lease this node acquires: (partition, generation).
pub(crate) type AcquireHook = Arc<dyn Fn(u32, u64) + Send + Sync>;

impl<T: Send + Sync + 'static> Shared<T> {
    pub(crate) fn lock_inflight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds a [`Node`].
pub struct NodeBuilder<T, C = Json> {
    url: String,
    cluster: Cluster,
    settings: NodeSettings,
    codec: C,
    on_acquire: Option<AcquireHook>,
    _payload: std::marker::PhantomData<fn(T)>,
}

/// A running node. [`Node::shutdown`] drains it gracefully; dropping it
/// does the same.
pub struct Node {
    quit: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    name: String,
}

/// What a node did, at shutdown.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeReport {
    /// The node's name.
    pub node: String,
    /// Its counters; `returned` includes the jobs the local engine still
    /// held at its shutdown deadline (left un-acked for the next owner).
    pub stats: NodeStats,
}

impl Node {
    /// A builder for a node that connects to `url`.
    pub fn builder<T>(
        url: impl Into<String>,
        cluster: Cluster,
        settings: NodeSettings,
    ) -> NodeBuilder<T, Json>
    where
        Json: Codec<T>,
    {
        NodeBuilder {
            url: url.into(),
            cluster,
            settings,
            codec: Json,
            on_acquire: None,
            _payload: std::marker::PhantomData,
        }
    }

    /// The node's counters now.
    pub fn stats(&self) -> NodeStats {
        self.stats.snapshot()
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops fetching, finishes or returns what is in flight with confirmed
    /// acks, releases every lease, and leaves the membership.
    pub fn shutdown(mut self) -> NodeReport {
        self.stop()
    }

    fn stop(&mut self) -> NodeReport {
        let _ = self.quit.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        NodeReport {
            node: self.name.clone(),
            stats: self.stats.snapshot(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

impl<T, C> NodeBuilder<T, C>
where
    T: Send + Sync + 'static,
    C: Codec<T>,
{
    /// Replaces the payload codec.
    pub fn codec<D: Codec<T>>(self, codec: D) -> NodeBuilder<T, D> {
        NodeBuilder {
            url: self.url,
            cluster: self.cluster,
            settings: self.settings,
            codec,
            on_acquire: self.on_acquire,
            _payload: std::marker::PhantomData,
        }
    }

    /// A hook told of every lease this node acquires, with its partition
    /// and generation, before the takeover starts. It runs on the bridge
    /// thread, so keep it short; its panics are contained.
    pub fn on_acquire(
        mut self,
        hook: impl Fn(u32, u64) + Send + Sync + 'static,
    ) -> NodeBuilder<T, C> {
        self.on_acquire = Some(Arc::new(hook));
        self
    }

    /// Starts the node with an async handler. The handler's futures run on
    /// the local engine's workers, inside the bridge's tokio runtime, so
    /// they may use tokio and async-nats.
    pub fn start<H, F>(self, handler: H) -> Result<Node, BridgeError>
    where
        H: Fn(Token, Arc<T>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), JobError>> + 'static,
    {
        self.cluster.validate()?;
        self.settings.validate(&self.cluster)?;
        let (quit, quit_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Arc<Stats>, BridgeError>>();
        let name = self.settings.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("quay-nats-{name}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BridgeError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(bridge(self, Arc::new(handler), ready_tx, quit_rx));
            })?;
        match ready_rx.recv() {
            Ok(Ok(stats)) => Ok(Node {
                quit,
                thread: Some(thread),
                stats,
                name,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(BridgeError::Nats(
                    "the bridge thread ended before it was ready".into(),
                ))
            }
        }
    }
}

/// The bridge thread's main: connect, set up, run, drain.
async fn bridge<T, C, H, F>(
    b: NodeBuilder<T, C>,
    handler: Arc<H>,
    ready: std::sync::mpsc::Sender<Result<Arc<Stats>, BridgeError>>,
    quit: watch::Receiver<bool>,
) where
    T: Send + Sync + 'static,
    C: Codec<T>,
    H: Fn(Token, Arc<T>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + 'static,
{
    let started = async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(&b.url)
            .await
            .map_err(BridgeError::nats)?;
        let js = async_nats::jetstream::new(client.clone());
        let objects = setup::ensure(&js, &b.cluster).await?;
        Ok::<_, BridgeError>((client, js, objects))
    };
    let (client, js, objects) = match tokio::time::timeout(Duration::from_secs(30), started).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(BridgeError::Nats(format!(
                "no server answered at {} within 30 s",
                b.url
            ))));
            return;
        }
    };
    let cluster = Arc::new(b.cluster);
    let settings = Arc::new(b.settings);
    let stats = Arc::new(Stats::default());
    let inflight = Arc::new(Mutex::new(InFlight::new(1 << 16)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Terminal>();
    let wrap = Arc::new(Wrap {
        inflight: inflight.clone(),
        crashes: objects.crashes.clone(),
        js: js.clone(),
        dlq_subject: cluster.dlq_subject.clone(),
        stats: stats.clone(),
        max_run: settings.max_run_time,
        node: Arc::from(settings.name.as_str()),
    });
    let handle = tokio::runtime::Handle::current();
    let done_tx = tx.clone();
    let engine = Engine::<Work<T>>::builder()
        .name("nats")
        .workers(settings.workers)
        .pin_workers(false)
        // The node's own figures are publish-to-ack; the local engine's
        // histograms would only cost each idle worker a fold.
        .record_latency(false)
        .capacity(u64::from(settings.budget).max(64))
        .concurrency(settings.concurrency)
        .max_attempts(
            std::num::NonZeroU32::new(settings.max_attempts).unwrap_or(std::num::NonZeroU32::MIN),
        )
        .backoff(settings.backoff.0, settings.backoff.1)
        .dedup_window(cluster.dedup_window)
        .worker_context(move |run| {
            let _entered = handle.enter();
            run()
        })
        .on_complete(move |ctx| {
            let _ = done_tx.send(Terminal::Done(ctx.id()));
        })
        .on_dead(move |dl| {
            let _ = tx.send(Terminal::Dead(dl.job.id()));
        })
        .build_async(work::wrap(wrap, handler));
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let shared = Arc::new(Shared {
        cluster: cluster.clone(),
        settings: settings.clone(),
        client: client.clone(),
        objects,
        engine,
        inflight: inflight.clone(),
        stats: stats.clone(),
        codec: Box::new(b.codec),
        epoch: Instant::now(),
        on_acquire: b.on_acquire,
    });
    let (finish, finished) = watch::channel(false);
    let acker = tokio::spawn(
        Acker {
            client: client.clone(),
            inflight,
            stats: stats.clone(),
            settings: settings.clone(),
        }
        .run(rx, finished),
    );
    let _ = ready.send(Ok(stats.clone()));
    control::run(shared.clone(), quit).await;
    // Every lease is released; what the engine still holds is fenced.
    let engine_shutdown = {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || s.engine.shutdown_timeout(settings.drain_timeout)).await
    };
    let returned = engine_shutdown
        .map(|s| s.returned.len() as u64)
        .unwrap_or(0);
    stats.add(&stats.returned, returned);
    // The workers have stopped, so every terminal state is in the channel.
    let _ = finish.send(true);
    drop(shared);
    let _ = acker.await;
}
