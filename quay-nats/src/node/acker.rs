//! The acker: the one task that answers JetStream for finished jobs.
//!
//! Terminal states arrive from the engine's hooks (`on_complete`,
//! `on_dead`) over one channel. A key's jobs finish on one worker, in
//! order, and this task handles the channel in order, so a key's acks
//! leave in terminal order: after a crash, a replay re-runs a contiguous,
//! in-order suffix of each key.
//!
//! - `Ok` → `+ACK`.
//! - Dead → `+TERM`. The dead letter (the job with its errors, in the DLQ
//!   stream) was written and confirmed by the worker inside the job's last
//!   attempt, before the key moved on (`dead.rs`).
//! - A job fenced before it started → nothing: the next owner replays it.
//! - While its partition drains, an ack is *confirmed* (a request the
//!   server answers), since the consumer is deleted right after.
//!
//! It also sends `+WPI` for jobs waiting longer than a third of AckWait.

use super::inflight::InFlight;
use super::stats::Stats;
use crate::settings::NodeSettings;
use async_nats::Subject;
use bytes::Bytes;
use quay::JobId;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// A job's terminal state, from the engine's hooks.
#[derive(Debug)]
pub(crate) enum Terminal {
    Done(JobId),
    Dead(JobId),
}

pub(crate) struct Acker {
    pub client: async_nats::Client,
    pub inflight: Arc<Mutex<InFlight>>,
    pub stats: Arc<Stats>,
    pub settings: Arc<NodeSettings>,
}

const ACK: &[u8] = b"+ACK";
const TERM: &[u8] = b"+TERM";
const WPI: &[u8] = b"+WPI";

impl Acker {
    /// Runs until every sender (the engine's hooks) is gone, or `finish`
    /// fires (the engine has stopped), then handles what is queued.
    pub async fn run(
        self,
        mut rx: UnboundedReceiver<Terminal>,
        mut finish: tokio::sync::watch::Receiver<bool>,
    ) {
        let every = self.settings.ack_wait / 3;
        let mut tick = tokio::time::interval(every.min(Duration::from_secs(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                t = rx.recv() => match t {
                    Some(t) => self.handle(t).await,
                    None => break,
                },
                _ = tick.tick() => self.progress(every).await,
                _ = finish.changed() => {
                    while let Ok(t) = rx.try_recv() {
                        self.handle(t).await;
                    }
                    break;
                }
            }
        }
        let _ = self.client.flush().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, t: Terminal) {
        match t {
            Terminal::Done(id) => {
                let Some(e) = self.lock().finish(id, false) else {
                    return;
                };
                if e.fenced {
                    return;
                }
                self.answer(&e.reply, ACK, e.fence.is_draining()).await;
                self.stats.add(&self.stats.acked, 1);
            }
            Terminal::Dead(id) => {
                let Some(e) = self.lock().finish(id, true) else {
                    return;
                };
                // The worker wrote the dead letter inside the last attempt;
                // a job whose generation ended first is the next owner's.
                if e.fenced || !e.dead_lettered {
                    return;
                }
                self.answer(&e.reply, TERM, e.fence.is_draining()).await;
                self.stats.add(&self.stats.dead, 1);
                if e.errors.iter().any(|m| m.starts_with(super::CRASH_LOOP)) {
                    self.stats.add(&self.stats.crash_looped, 1);
                }
            }
        }
    }

    /// Sends an ack body to a reply subject; confirmed ones wait for the
    /// server's answer (falling back to a plain send if none comes).
    pub async fn answer(&self, reply: &Subject, body: &'static [u8], confirmed: bool) {
        if confirmed {
            let req = self.client.request(reply.clone(), Bytes::from_static(body));
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), req).await {
                return;
            }
        }
        let _ = self
            .client
            .publish(reply.clone(), Bytes::from_static(body))
            .await;
    }

    async fn progress(&self, every: Duration) {
        let due = self.lock().due_progress(Instant::now(), every);
        for reply in &due {
            let _ = self
                .client
                .publish(reply.clone(), Bytes::from_static(WPI))
                .await;
        }
        self.stats.add(&self.stats.progress, due.len() as u64);
    }
}
