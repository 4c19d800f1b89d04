//! One owned partition generation: the takeover, then the fetch loop that
//! feeds the local engine in delivery order.
//!
//! Takeover: delete every other generation's consumer of the partition
//! (a WorkQueue stream refuses overlapping consumers, and a deleted
//! consumer's late acks are ignored: the old owner is fenced from the
//! stream), then create this generation's durable pull consumer with
//! DeliverAll and explicit acks. Un-acked jobs are still in the stream, so
//! the new consumer replays them in stream order.

use super::fence::Fence;
use super::inflight::{Arrival, Entry};
use super::work::Work;
use super::{crash, Shared, CRASH_LOOP};
use crate::partition::{self, ATTEMPTS_HEADER, DELAY_HEADER, KEY_HEADER, MSG_ID_HEADER};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Message;
use futures::StreamExt;
use quay::{Job, Key, Submitted};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Runs partition `fence.partition()` under `fence.generation()` until
/// `stop` fires or the generation ends.
pub(crate) async fn run<T: Send + Sync + 'static>(
    shared: Arc<Shared<T>>,
    fence: Arc<Fence>,
    max_ack_pending: i64,
    mut stop: watch::Receiver<bool>,
) {
    let p = fence.partition();
    let g = fence.generation();
    let (consumer, replay_upto) = loop {
        match takeover(&shared, p, g, max_ack_pending).await {
            Ok(c) => break c,
            Err(e) => {
                eprintln!("quay-nats {}: takeover of p{p} g{g}: {e}", shared.settings.name);
                if fence.is_dead() || *stop.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let batch = max_ack_pending.clamp(1, 256) as usize;
    while !fence.is_dead() && !*stop.borrow() {
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(Duration::from_secs(2))
            .heartbeat(Duration::from_millis(500))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                m = messages.next() => match m {
                    Some(Ok(m)) => deliver(&shared, &fence, replay_upto, m).await,
                    // Missed heartbeats and the like: the stream recovers,
                    // or ends and is made again.
                    Some(Err(_)) => continue,
                    None => break,
                },
            }
            if fence.is_dead() {
                return;
            }
        }
    }
}

async fn takeover<T: Send + Sync + 'static>(
    shared: &Shared<T>,
    p: u32,
    g: u64,
    max_ack_pending: i64,
) -> Result<(async_nats::jetstream::consumer::Consumer<pull::Config>, u64), String> {
    let jobs = &shared.objects.jobs;
    let mine = partition::consumer_name(p, g);
    let prefix = partition::consumer_prefix(p);
    let names: Vec<String> = jobs
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(Result::ok)
        .filter(|n| n.starts_with(&prefix) && *n != mine)
        .collect();
    for name in &names {
        jobs.delete_consumer(name).await.map_err(|e| format!("delete {name}: {e}"))?;
    }
    // Deliveries stored before now may be replays of jobs an earlier owner
    // started: crash-loop counting looks those up.
    let replay_upto = if names.is_empty() || shared.settings.crash_limit.is_none() {
        0
    } else {
        jobs.get_info().await.map_err(|e| e.to_string())?.state.last_sequence
    };
    let consumer = jobs
        .get_or_create_consumer(
            &mine,
            pull::Config {
                durable_name: Some(mine.clone()),
                filter_subject: shared.cluster.subject(p),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: shared.settings.ack_wait,
                max_ack_pending,
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("create {mine}: {e}"))?;
    Ok((consumer, replay_upto))
}

async fn deliver<T: Send + Sync + 'static>(shared: &Arc<Shared<T>>, fence: &Arc<Fence>, replay_upto: u64, m: Message) {
    let stats = &shared.stats;
    stats.add(&stats.delivered, 1);
    let Some(reply) = m.reply.clone() else { return };
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    let headers = m.headers.clone().unwrap_or_default();
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
    let msg_id: Arc<str> = Arc::from(header(MSG_ID_HEADER).unwrap_or_else(|| format!("seq-{seq}")));
    let id = partition::local_id(&msg_id, fence.partition(), fence.generation());
    let now = Instant::now();
    let entry = Entry {
        reply: reply.clone(),
        fence: fence.clone(),
        headers: headers.clone(),
        body: m.payload.clone(),
        progressed: now,
        fenced: false,
    };
    let arrival = shared.lock_inflight().arrive(id, entry);
    match arrival {
        Arrival::New => {}
        Arrival::Swapped => {
            stats.add(&stats.swapped, 1);
            return;
        }
        Arrival::Terminal => {
            stats.add(&stats.reacked, 1);
            let _ = shared.client.publish(reply, bytes::Bytes::from_static(b"+ACK")).await;
            return;
        }
    }
    let deaths = match shared.settings.crash_limit {
        None => None,
        Some(_) if seq > replay_upto => Some(0),
        Some(_) => Some(crash::deaths(&shared.objects.crashes, &msg_id, fence.generation()).await.unwrap_or(0)),
    };
    let poison = match (deaths, shared.settings.crash_limit) {
        (Some(d), Some(limit)) if d >= limit => {
            Some(format!("{CRASH_LOOP}: in flight at {d} owner deaths (limit {limit})"))
        }
        _ => None,
    };
    let work = Work {
        payload: shared.codec.decode(&m.payload).map(Arc::new),
        fence: fence.clone(),
        msg_id,
        deaths,
        poison,
    };
    let mut job = Job::new(id, work);
    if let Some(k) = header(KEY_HEADER).and_then(|k| k.parse::<u64>().ok()) {
        job = job.keyed(Key::from(k));
    }
    if let Some(n) = header(ATTEMPTS_HEADER).and_then(|n| n.parse::<u32>().ok()).and_then(NonZeroU32::new) {
        job = job.max_attempts(n);
    }
    if let Some(ms) = header(DELAY_HEADER).and_then(|d| d.parse::<u64>().ok()) {
        job = job.delay(Duration::from_millis(ms));
    }
    match shared.engine.submit_async(job).await {
        Ok(Submitted::Accepted) => {}
        Ok(Submitted::Duplicate) => {
            // The engine has had this ID under this generation and the
            // terminal memory forgot it: it is finished, so ack again.
            shared.lock_inflight().finish(id);
            stats.add(&stats.reacked, 1);
            let _ = shared.client.publish(reply, bytes::Bytes::from_static(b"+ACK")).await;
        }
        Err(_) => {
            // Refused at shutdown: left un-acked for the next owner.
            shared.lock_inflight().forget(id);
            stats.add(&stats.returned, 1);
        }
    }
}
