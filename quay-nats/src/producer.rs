//! The producer side: [`Producer`] publishes quay jobs to the jobs stream.
//!
//! - **Dedup.** `Nats-Msg-Id` is the job ID, so a repeat publish within
//!   the stream's `duplicate_window` is answered `duplicate: true`, which
//!   is reported as [`Submitted::Duplicate`].
//! - **Order.** A key's next publish waits for its previous one's PubAck
//!   (a per-key async lock held across the round trip): a retried publish
//!   can never land behind its successor. Different keys are pipelined.
//! - **Full.** A full stream (`discard: new`) answers
//!   [`PublishError::Full`] with the job, as the local engine does.

use crate::codec::{Codec, Json};
use crate::error::{BridgeError, PublishError};
use crate::partition::{self, ATTEMPTS_HEADER, DELAY_HEADER, KEY_HEADER, MSG_ID_HEADER};
use crate::settings::Cluster;
use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::HeaderMap;
use quay::{Job, Key, Submitted};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Publishes jobs of payload `T` with codec `C`.
pub struct Producer<T, C = Json> {
    js: jetstream::Context,
    cluster: Arc<Cluster>,
    codec: C,
    keys: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    _payload: PhantomData<fn(T)>,
}

impl<T> Producer<T, Json>
where
    Json: Codec<T>,
{
    /// A producer with the JSON codec. Creates or checks the streams.
    pub async fn new(
        client: async_nats::Client,
        cluster: Cluster,
    ) -> Result<Producer<T, Json>, BridgeError> {
        Producer::with_codec(client, cluster, Json).await
    }
}

impl<T, C: Codec<T>> Producer<T, C> {
    /// A producer with its own codec. Creates or checks the streams.
    pub async fn with_codec(
        client: async_nats::Client,
        cluster: Cluster,
        codec: C,
    ) -> Result<Producer<T, C>, BridgeError> {
        let js = jetstream::new(client);
        crate::setup::ensure(&js, &cluster).await?;
        Ok(Producer {
            js,
            cluster: Arc::new(cluster),
            codec,
            keys: Mutex::new(HashMap::new()),
            _payload: PhantomData,
        })
    }

    /// The partition a job goes to.
    pub fn partition(&self, job: &Job<T>) -> u32 {
        partition::partition_of(
            job.key(),
            &partition::msg_id(job.id()),
            self.cluster.partitions,
        )
    }

    /// Publishes one job and waits for its PubAck. A keyed job waits first
    /// for its key's previous publish to be confirmed.
    pub async fn publish(&self, job: Job<T>) -> Result<Submitted, PublishError<T>> {
        let lock = job.key().map(|k| self.key_lock(k));
        let _held = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let answer = self.publish_now(job).await;
        drop(_held);
        if let Some(lock) = lock {
            self.release_key(lock);
        }
        answer
    }

    async fn publish_now(&self, job: Job<T>) -> Result<Submitted, PublishError<T>> {
        // The codec is the user's: a panic in it is an encode error.
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.codec.encode(job.payload())
        }));
        let body = match encoded {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(PublishError::Encode(job, e)),
            Err(_) => return Err(PublishError::Encode(job, "the codec panicked".into())),
        };
        let id = partition::msg_id(job.id());
        let p = partition::partition_of(job.key(), &id, self.cluster.partitions);
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, id.as_str());
        if let Some(k) = job.key() {
            headers.insert(KEY_HEADER, k.as_u64().to_string().as_str());
        }
        if let Some(n) = job.own_max_attempts() {
            headers.insert(ATTEMPTS_HEADER, n.to_string().as_str());
        }
        if job.run_at_of().is_some() {
            // A time on this process's engine clock means nothing to a node.
            return Err(PublishError::Encode(
                job,
                "run_at is local to one engine's clock; use delay".into(),
            ));
        }
        if let Some(d) = job.delay_of() {
            headers.insert(DELAY_HEADER, d.as_millis().to_string().as_str());
        }
        let sent = self
            .js
            .publish_with_headers(self.cluster.subject(p), headers, body)
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(e) => return Err(PublishError::Nats(job, e.to_string())),
        };
        match ack {
            Ok(a) if a.duplicate => Ok(Submitted::Duplicate),
            Ok(_) => Ok(Submitted::Accepted),
            Err(e) if is_full(&e) => Err(PublishError::Full(job)),
            Err(e) => Err(PublishError::Nats(job, e.to_string())),
        }
    }

    fn key_lock(&self, k: Key) -> Arc<tokio::sync::Mutex<()>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(k).or_default().clone()
    }

    /// Forgets a key's lock once nobody holds or waits on it.
    fn release_key(&self, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. A waiter holds a third.
        if Arc::strong_count(&lock) == 2 {
            keys.retain(|_, l| !Arc::ptr_eq(l, &lock));
        }
    }
}

/// Whether a publish failed because the stream is at its limits: JetStream
/// answers err_code 10077 ("maximum messages exceeded", "maximum bytes
/// exceeded") for `discard: new`.
fn is_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    if e.kind() != PublishErrorKind::Other {
        return false;
    }
    let text = format!("{e} {:?}", std::error::Error::source(e));
    text.contains("10077") || text.contains("maximum messages") || text.contains("maximum bytes")
}
