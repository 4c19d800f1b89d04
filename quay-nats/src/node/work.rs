//! What a node's local engine runs: [`Work`], one delivered job, and the
//! wrapper around the user's handler that fences, marks crash-loop
//! starts, and hands poison straight to the DLQ.

use super::crash::{self, Marker};
use super::fence::{Fence, Fenced};
use super::inflight::InFlight;
use super::stats::Stats;
use async_nats::jetstream::kv;
use quay::{JobContext, JobError};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One delivered job in the local engine.
pub(crate) struct Work<T> {
    /// The decoded payload, or why it did not decode.
    pub payload: Result<Arc<T>, String>,
    pub fence: Arc<Fence>,
    pub msg_id: Arc<str>,
    /// Deaths counted so far, when crash-loop counting is on.
    pub deaths: Option<u32>,
    /// Set when the job must go to the DLQ without running.
    pub poison: Option<String>,
}

/// What a handler learns about the job it runs, including its fencing
/// token: (partition, generation).
#[derive(Clone, Debug)]
pub struct Token {
    fence: Arc<Fence>,
    msg_id: Arc<str>,
    node: Arc<str>,
    attempt: u32,
}

impl Token {
    /// The job's partition.
    pub fn partition(&self) -> u32 {
        self.fence.partition()
    }

    /// The generation it runs under. With the partition, this is the
    /// fencing token: a store that remembers the highest generation it saw
    /// per partition can refuse writes from an older one.
    pub fn generation(&self) -> u64 {
        self.fence.generation()
    }

    /// The job's `Nats-Msg-Id`.
    pub fn msg_id(&self) -> &str {
        &self.msg_id
    }

    /// The node running it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Ok while this node's lease on the partition surely holds. Check it
    /// just before a side effect; a generation that fails it is over.
    pub fn check(&self) -> Result<(), Fenced> {
        self.fence.check(Duration::ZERO)
    }
}

/// Everything the wrapper needs besides the user's handler.
pub(crate) struct Wrap {
    pub inflight: Arc<Mutex<InFlight>>,
    pub crashes: kv::Store,
    pub stats: Arc<Stats>,
    pub max_run: Duration,
    pub node: Arc<str>,
}

/// The engine's handler: the user's, behind the fence and the crash marker.
pub(crate) fn wrap<T, H, F>(
    wrap: Arc<Wrap>,
    user: Arc<H>,
) -> impl Fn(JobContext, &Work<T>) -> std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>>>> + Send + Sync + 'static
where
    T: Send + Sync + 'static,
    H: Fn(Token, Arc<T>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + 'static,
{
    move |ctx: JobContext, work: &Work<T>| {
        let wrap = wrap.clone();
        let user = user.clone();
        let payload = work.payload.clone();
        let poison = work.poison.clone();
        let deaths = work.deaths;
        let token = Token {
            fence: work.fence.clone(),
            msg_id: work.msg_id.clone(),
            node: wrap.node.clone(),
            attempt: ctx.attempt(),
        };
        Box::pin(async move {
            if let Some(reason) = poison {
                return Err(JobError::fatal(reason));
            }
            let payload = payload.map_err(|e| JobError::fatal(format!("payload did not decode: {e}")))?;
            if token.fence.check(wrap.max_run).is_err() {
                // Not run, not acked: the partition's next owner replays it.
                wrap.inflight.lock().unwrap_or_else(|p| p.into_inner()).mark_fenced(ctx.id());
                wrap.stats.add(&wrap.stats.fenced, 1);
                return Ok(());
            }
            if let (Some(deaths), 1) = (deaths, ctx.attempt()) {
                let marker = Marker { g: token.generation(), deaths };
                crash::mark(&wrap.crashes, &token.msg_id, &marker)
                    .await
                    .map_err(|e| JobError::retry(format!("crash marker not written: {e}")))?;
            }
            user(token, payload).await
        })
    }
}
