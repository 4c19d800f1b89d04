//! The acker: the one task that answers JetStream for finished jobs.
//!
//! Terminal states arrive from the engine's hooks (`on_complete`,
//! `on_dead`) over one channel. A key's jobs finish on one worker, in
//! order, and this task handles the channel in order, so a key's acks
//! leave in terminal order: after a crash, a replay re-runs a contiguous,
//! in-order suffix of each key.
//!
//! - `Ok` → `+ACK`.
//! - Dead → publish the job with its errors to the DLQ stream, confirmed
//!   (its `Nats-Msg-Id` makes a second publish a duplicate), then `+TERM`.
//! - A job fenced before it started → nothing: the next owner replays it.
//! - While its partition drains, an ack is *confirmed* (a request the
//!   server answers), since the consumer is deleted right after.
//!
//! It also sends `+WPI` for jobs waiting longer than a third of AckWait.

use super::inflight::{Entry, InFlight};
use super::stats::Stats;
use crate::settings::{Cluster, NodeSettings};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use quay::JobId;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// A job's terminal state, from the engine's hooks.
#[derive(Debug)]
pub(crate) enum Terminal {
    Done(JobId),
    Dead { id: JobId, attempts: u32, errors: Vec<String> },
}

pub(crate) struct Acker {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub inflight: Arc<Mutex<InFlight>>,
    pub stats: Arc<Stats>,
    pub cluster: Arc<Cluster>,
    pub settings: Arc<NodeSettings>,
}

const ACK: &[u8] = b"+ACK";
const TERM: &[u8] = b"+TERM";
const WPI: &[u8] = b"+WPI";

impl Acker {
    /// Runs until every sender (the engine's hooks) is gone, or `finish`
    /// fires (the engine has stopped), then handles what is queued.
    pub async fn run(self, mut rx: UnboundedReceiver<Terminal>, mut finish: tokio::sync::watch::Receiver<bool>) {
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
                let Some(e) = self.lock().finish(id) else { return };
                if e.fenced {
                    return;
                }
                self.answer(&e.reply, ACK, e.fence.is_draining()).await;
                self.stats.add(&self.stats.acked, 1);
            }
            Terminal::Dead { id, attempts, errors } => {
                let Some(e) = self.lock().finish(id) else { return };
                if self.dead_letter(&e, attempts, &errors).await {
                    self.answer(&e.reply, TERM, e.fence.is_draining()).await;
                    self.stats.add(&self.stats.dead, 1);
                    if errors.iter().any(|m| m.starts_with(super::CRASH_LOOP)) {
                        self.stats.add(&self.stats.crash_looped, 1);
                    }
                } else {
                    self.stats.add(&self.stats.dlq_abandoned, 1);
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
        let _ = self.client.publish(reply.clone(), Bytes::from_static(body)).await;
    }

    /// Publishes a dead job to the DLQ and waits for the PubAck, retrying
    /// while its generation lives. False if the generation ended first.
    async fn dead_letter(&self, e: &Entry, attempts: u32, errors: &[String]) -> bool {
        let mut headers = HeaderMap::new();
        for (name, values) in e.headers.iter() {
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
        headers.insert("Quay-Errors", serde_json::to_string(errors).unwrap_or_default().as_str());
        headers.insert("Quay-Attempts", attempts.to_string().as_str());
        headers.insert("Quay-Partition", e.fence.partition().to_string().as_str());
        headers.insert("Quay-Generation", e.fence.generation().to_string().as_str());
        headers.insert("Quay-Node", self.settings.name.as_str());
        let mut backoff = Duration::from_millis(50);
        loop {
            let sent = self
                .js
                .publish_with_headers(self.cluster.dlq_subject.clone(), headers.clone(), e.body.clone())
                .await;
            if let Ok(ack) = sent {
                if ack.await.is_ok() {
                    return true;
                }
            }
            if e.fence.is_dead() {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn progress(&self, every: Duration) {
        let due = self.lock().due_progress(Instant::now(), every);
        for reply in &due {
            let _ = self.client.publish(reply.clone(), Bytes::from_static(WPI)).await;
        }
        self.stats.add(&self.stats.progress, due.len() as u64);
    }
}
