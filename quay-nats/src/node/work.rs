//! What a node's local engine runs: [`Work`], one delivered job, and the
//! wrapper around the user's handler that fences, holds the crash-loop
//! gate and markers (`crash.rs`, `alone.rs`), and hands poison straight to
//! the DLQ.

use super::crash::{self, Marker, Record};
use super::fence::{Fence, Fenced};
use super::inflight::InFlight;
use super::stats::Stats;
use super::{alone, dead};
use async_nats::jetstream::kv;
use futures::FutureExt;
use quay::{JobContext, JobError};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One delivered job in the local engine.
pub(crate) struct Work<T> {
    /// The decoded payload, or why it did not decode.
    pub payload: Result<Arc<T>, String>,
    pub fence: Arc<Fence>,
    pub msg_id: Arc<str>,
    /// Its stream sequence.
    pub seq: u64,
    /// Its crash-loop record, when crash-loop counting is on.
    pub crash: Option<Record>,
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

    /// Ends this generation on this node: call it when a store refuses the
    /// token because a newer generation exists. This job (whatever the
    /// handler returns) and every later job of the partition are left
    /// un-acked for the partition's current owner.
    pub fn give_up(&self) {
        self.fence.end();
    }
}

/// Everything the wrapper needs besides the user's handler.
pub(crate) struct Wrap {
    pub inflight: Arc<Mutex<InFlight>>,
    pub crashes: kv::Store,
    pub js: async_nats::jetstream::Context,
    pub dlq_subject: String,
    pub stats: Arc<Stats>,
    pub max_run: Duration,
    pub node: Arc<str>,
}

impl Wrap {
    fn table(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attempt itself: `Ok(false)` when the job was fenced (not run).
    async fn attempt<T, H, F>(
        &self,
        ctx: &JobContext,
        token: Token,
        work: Attempt<T>,
        user: &H,
    ) -> Result<bool, JobError>
    where
        H: Fn(Token, Arc<T>) -> F,
        F: Future<Output = Result<(), JobError>>,
    {
        if let Some(reason) = work.poison {
            return Err(JobError::fatal(reason));
        }
        let payload = work
            .payload
            .map_err(|e| JobError::fatal(format!("payload did not decode: {e}")))?;
        // The gate before the fence: the wait for it is not run time.
        let alone = work.crash.is_some_and(|r| r.alone());
        let _permit = match work.crash {
            Some(_) => Some(alone::enter(alone).await),
            None => None,
        };
        if token.fence.check(self.max_run).is_err() {
            // Not run, not acked: the partition's next owner replays it.
            self.table().mark_fenced(ctx.id());
            self.stats.add(&self.stats.fenced, 1);
            return Ok(false);
        }
        let (g, msg_id) = (token.generation(), token.msg_id.clone());
        // Running, before the handler: an ordinary job once per generation,
        // a job that runs alone at every attempt.
        if let Some(record) = work.crash.filter(|_| alone || ctx.attempt() == 1) {
            let marker = record.marker(g, true, alone);
            crash::mark(&self.crashes, &msg_id, work.seq, &marker)
                .await
                .map_err(|e| JobError::retry(format!("crash marker not written: {e}")))?;
        }
        if alone {
            self.stats.add(&self.stats.ran_alone, 1);
        }
        let outcome = self.run(token, payload, user).await;
        // Finished, while still alone, whatever the outcome.
        if let Some(record) = work.crash.filter(|_| alone) {
            self.finished(&msg_id, work.seq, &record.marker(g, false, true))
                .await;
        }
        outcome
    }

    /// Marks an attempt that ran alone finished, retrying a few times: a
    /// marker left running would charge the job a death its successor
    /// cannot tell from a crash.
    async fn finished(&self, msg_id: &str, seq: u64, marker: &Marker) {
        let mut backoff = Duration::from_millis(50);
        for _ in 0..FINISH_TRIES {
            if crash::mark(&self.crashes, msg_id, seq, marker)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        self.stats.add(&self.stats.unmarked, 1);
    }

    /// The user's handler: `Ok(true)` when it returned `Ok`.
    async fn run<T, H, F>(&self, token: Token, payload: Arc<T>, user: &H) -> Result<bool, JobError>
    where
        H: Fn(Token, Arc<T>) -> F,
        F: Future<Output = Result<(), JobError>>,
    {
        // The user's call and its future, behind a guard: a panic is a
        // failed attempt that this wrapper sees (so a last one still writes
        // its dead letter), not an unwind through the engine.
        let run = match std::panic::catch_unwind(AssertUnwindSafe(|| user(token, payload))) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind(),
            Err(p) => return Err(JobError::retry(format!("panic: {}", panic_text(&*p)))),
        };
        match tokio::time::timeout(self.max_run, run).await {
            Ok(Ok(r)) => r.map(|()| true),
            Ok(Err(p)) => Err(JobError::retry(format!("panic: {}", panic_text(&*p)))),
            Err(_) => Err(JobError::retry(format!(
                "ran past max_run_time ({:?})",
                self.max_run
            ))),
        }
    }

    /// Writes a dying job's dead letter before its key moves on, retrying
    /// while its generation lives. If the generation ends first, the job is
    /// marked fenced: not terminated, replayed by the next owner.
    async fn dead_letter(&self, ctx: &JobContext, fence: &Fence) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(letter) = self.table().letter(ctx.id(), ctx.attempt()) else {
                return;
            };
            if dead::publish(&self.js, &self.dlq_subject, &self.node, &letter)
                .await
                .is_ok()
            {
                self.table().mark_dead_lettered(ctx.id());
                return;
            }
            if fence.is_dead() {
                self.table().mark_fenced(ctx.id());
                self.stats.add(&self.stats.dlq_abandoned, 1);
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// A panic's message, where it has one.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What one attempt takes from its [`Work`].
struct Attempt<T> {
    payload: Result<Arc<T>, String>,
    poison: Option<String>,
    seq: u64,
    crash: Option<Record>,
}

/// Tries at marking an attempt that ran alone finished (about 4 s in all).
const FINISH_TRIES: u32 = 8;

/// One attempt in progress, as the engine polls it.
pub(crate) type Attempting = std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>>>>;

/// The engine's handler: the user's, behind the gate, the fence, the
/// crash markers and `max_run_time`; a job's last failure writes its dead letter.
pub(crate) fn wrap<T, H, F>(
    wrap: Arc<Wrap>,
    user: Arc<H>,
) -> impl Fn(JobContext, &Work<T>) -> Attempting + Send + Sync + 'static
where
    T: Send + Sync + 'static,
    H: Fn(Token, Arc<T>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), JobError>> + 'static,
{
    move |ctx: JobContext, work: &Work<T>| {
        let wrap = wrap.clone();
        let user = user.clone();
        let fence = work.fence.clone();
        let attempt = Attempt {
            payload: work.payload.clone(),
            poison: work.poison.clone(),
            seq: work.seq,
            crash: work.crash,
        };
        let token = Token {
            fence: fence.clone(),
            msg_id: work.msg_id.clone(),
            node: wrap.node.clone(),
            attempt: ctx.attempt(),
        };
        Box::pin(async move {
            let error = match wrap.attempt(&ctx, token, attempt, &*user).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if fence.is_dead() {
                // The generation ended during the attempt (the lease, or a
                // store that refused the token): not terminal here, the
                // next owner replays it.
                wrap.table().mark_fenced(ctx.id());
                wrap.stats.add(&wrap.stats.fenced, 1);
                return Ok(());
            }
            wrap.table().note_error(ctx.id(), error.message());
            if matches!(error, JobError::Fatal(_)) || ctx.is_last_attempt() {
                wrap.dead_letter(&ctx, &fence).await;
            }
            Err(error)
        })
    }
}
