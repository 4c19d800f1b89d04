//! One owned partition generation: the takeover, then the fetch loop that
//! feeds the local engine in delivery order.
//!
//! Takeover: delete every older generation's consumer of the partition
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
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
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
    let name = &shared.settings.name;
    let (consumer, replay_upto) = loop {
        if fence.is_dead() || *stop.borrow() {
            return;
        }
        match takeover(&shared, p, g, max_ack_pending).await {
            Ok(c) => break c,
            Err(Takeover::Superseded(why)) => {
                tracing::info!(node = %name, partition = p, generation = g, %why, "superseded");
                fence.end();
                return;
            }
            // Nothing was delivered yet: trying again is safe.
            Err(Takeover::Failed(e)) => {
                tracing::warn!(node = %name, partition = p, generation = g, error = %e, "takeover failed; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let batch = max_ack_pending.clamp(1, 256) as usize;
    let messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(500))
        .messages()
        .await;
    let mut messages = match messages {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(node = %name, partition = p, generation = g, error = %e, "no message stream; ending the generation");
            fence.end();
            return;
        }
    };
    // Order rests on every delivery reaching the engine in consumer order.
    // A delivery lost in transit (a server restart, a reconnect) would be
    // redelivered only after AckWait, behind later jobs of its key, so the
    // consumer sequence must have no gap, and the stream must not end: if
    // either happens, the generation ends, and its successor replays from
    // the first un-acked job in stream order.
    let mut delivered = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            m = messages.next() => match m {
                Some(Ok(m)) => {
                    // No ack metadata: neither order nor identity is known.
                    let (seq, stream_seq) = m
                        .info()
                        .map(|i| (i.consumer_sequence, i.stream_sequence))
                        .unwrap_or((0, 0));
                    if seq != delivered + 1 || stream_seq == 0 {
                        tracing::warn!(node = %name, partition = p, generation = g, delivery = seq, after = delivered, stream_seq, "a gap in deliveries; ending the generation");
                        fence.end();
                        return;
                    }
                    delivered = seq;
                    deliver(&shared, &fence, replay_upto, stream_seq, m).await;
                }
                Some(Err(e)) => match e.kind() {
                    // A missed heartbeat is reported, and the stream goes on.
                    MessagesErrorKind::MissingHeartbeat => continue,
                    _ => {
                        tracing::warn!(node = %name, partition = p, generation = g, error = %e, "message stream failed; ending the generation");
                        fence.end();
                        return;
                    }
                },
                None => {
                    fence.end();
                    return;
                }
            },
        }
        if fence.is_dead() {
            return;
        }
    }
}

/// Why a takeover did not happen.
enum Takeover {
    /// A newer generation's consumer exists: this generation is over.
    Superseded(String),
    /// A call failed; try again.
    Failed(String),
}

async fn takeover<T: Send + Sync + 'static>(
    shared: &Shared<T>,
    p: u32,
    g: u64,
    max_ack_pending: i64,
) -> Result<(async_nats::jetstream::consumer::Consumer<pull::Config>, u64), Takeover> {
    let jobs = &shared.objects.jobs;
    let mine = partition::consumer_name(p, g);
    let prefix = partition::consumer_prefix(p);
    let others: Vec<(String, u64)> = jobs
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|n| {
            let other = n.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            (other != g).then_some((n, other))
        })
        .collect();
    // Generations only grow: a newer consumer means this generation is
    // over, and an older owner never deletes a newer one's consumer.
    if let Some((name, newer)) = others.iter().find(|(_, other)| *other > g) {
        return Err(Takeover::Superseded(format!(
            "{name} (generation {newer}) exists"
        )));
    }
    for (name, _) in &others {
        jobs.delete_consumer(name)
            .await
            .map_err(|e| Takeover::Failed(format!("delete {name}: {e}")))?;
    }
    let names = others;
    // Deliveries stored before now may be replays of jobs an earlier owner
    // started: crash-loop counting looks those up.
    let replay_upto = if names.is_empty() || shared.settings.crash_limit.is_none() {
        0
    } else {
        jobs.get_info()
            .await
            .map_err(|e| Takeover::Failed(e.to_string()))?
            .state
            .last_sequence
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
                // The state lives in memory: the server writes no state
                // file per consumer per ack. A server restart loses it, and
                // the consumer starts again at the first un-acked job of a
                // WorkQueue stream, which is this bridge's replay anyway
                // (the lost deliveries end the generation).
                memory_storage: true,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Takeover::Failed(format!("create {mine}: {e}")))?;
    Ok((consumer, replay_upto))
}

async fn deliver<T: Send + Sync + 'static>(
    shared: &Arc<Shared<T>>,
    fence: &Arc<Fence>,
    replay_upto: u64,
    seq: u64,
    m: Message,
) {
    let stats = &shared.stats;
    stats.add(&stats.delivered, 1);
    if fence.is_dead() {
        // A generation that is over runs, acks and remembers nothing more:
        // its jobs are the next owner's to replay.
        return;
    }
    let Some(reply) = m.reply.clone() else { return };
    let headers = m.headers.clone().unwrap_or_default();
    // Read what the job needs from the headers first: the headers
    // themselves then move into the in-flight entry (for a dead letter).
    let header = |name: &str| headers.get(name).map(|v| v.as_str());
    let msg_id: Arc<str> = match header(MSG_ID_HEADER) {
        Some(id) => Arc::from(id),
        None => Arc::from(format!("seq-{seq}")),
    };
    let key = header(KEY_HEADER).and_then(|k| k.parse::<u64>().ok());
    let attempts = header(ATTEMPTS_HEADER)
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(NonZeroU32::new);
    let delay = header(DELAY_HEADER).and_then(|d| d.parse::<u64>().ok());
    let id = partition::local_id(&msg_id, seq, fence.partition(), fence.generation());
    let now = Instant::now();
    let entry = Entry {
        reply: reply.clone(),
        fence: fence.clone(),
        headers,
        body: m.payload.clone(),
        progressed: now,
        fenced: false,
        errors: Vec::new(),
        dead_lettered: false,
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
            let _ = shared
                .client
                .publish(reply, bytes::Bytes::from_static(b"+ACK"))
                .await;
            return;
        }
    }
    let crash = match shared.settings.crash_limit {
        None => None,
        Some(_) if seq > replay_upto => Some(crash::Record::default()),
        Some(_) => {
            match crash::lookup(&shared.objects.crashes, &msg_id, seq, fence.generation()).await {
                Ok(record) => Some(record),
                Err(e) => {
                    // Its deaths are not known: not guessed. The next
                    // generation replays it and reads the marker again.
                    shared.lock_inflight().forget(id);
                    tracing::warn!(
                        node = %shared.settings.name,
                        partition = fence.partition(),
                        generation = fence.generation(),
                        msg_id = %msg_id,
                        stream_seq = seq,
                        error = %e,
                        "crash marker not read or written; ending the generation"
                    );
                    fence.end();
                    return;
                }
            }
        }
    };
    let poison = match (crash, shared.settings.crash_limit) {
        (Some(r), Some(limit)) if r.deaths >= limit => Some(format!(
            "{CRASH_LOOP}: running alone at {} owner deaths (limit {limit})",
            r.deaths
        )),
        _ => None,
    };
    let work = Work {
        // The codec is the user's: a panic in it makes the job poison.
        payload: std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.codec.decode(&m.payload)
        }))
        .unwrap_or_else(|p| {
            Err(format!(
                "the codec panicked: {}",
                super::work::panic_text(&*p)
            ))
        })
        .map(Arc::new),
        fence: fence.clone(),
        msg_id,
        seq,
        crash,
        poison,
    };
    let mut job = Job::new(id, work);
    if let Some(k) = key {
        job = job.keyed(Key::from(k));
    }
    if let Some(n) = attempts {
        job = job.max_attempts(n);
    }
    if let Some(ms) = delay {
        job = job.delay(Duration::from_millis(ms));
    }
    match shared.engine.submit_async(job).await {
        Ok(Submitted::Accepted) => {}
        Ok(Submitted::Duplicate) => {
            // The engine has had this ID under this generation, and the
            // terminal memory forgot it: whether it completed or died is not
            // known here, so nothing is answered. The generation ends, and
            // the next one replays the job under a new ID.
            shared.lock_inflight().forget(id);
            tracing::warn!(
                node = %shared.settings.name,
                partition = fence.partition(),
                generation = fence.generation(),
                stream_seq = seq,
                "a redelivery the engine already had; ending the generation"
            );
            fence.end();
        }
        Err(refused) => {
            // Refused at shutdown: left un-acked for the next owner. The
            // job's payload is the user's: its drop is behind a guard.
            shared.lock_inflight().forget(id);
            stats.add(&stats.returned, 1);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(refused)));
        }
    }
}
