//! Dead letters: a dead job's original message, with its errors, published
//! to the DLQ stream and confirmed.
//!
//! The publish happens inside the job's last attempt (see [`work`]), so the
//! job's key does not move on until its dead letter is stored: a later job
//! of the key can never complete before an earlier one's terminal state is
//! durable, and a replay keeps the key's order.
//!
//! [`work`]: super::work

use async_nats::HeaderMap;
use bytes::Bytes;

/// What a dead letter is made of.
pub(crate) struct Letter {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub errors: Vec<String>,
    pub attempts: u32,
    pub partition: u32,
    pub generation: u64,
}

/// Most errors a dead letter keeps: the last ones.
pub(crate) const KEPT_ERRORS: usize = 8;

/// Publishes `letter` to `subject` and waits for the PubAck. The original
/// `Nats-Msg-Id` stays on it, so a second publish is a duplicate.
pub(crate) async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    node: &str,
    letter: &Letter,
) -> Result<(), String> {
    let mut headers = letter.headers.clone();
    let errors = serde_json::to_string(&letter.errors).map_err(|e| e.to_string())?;
    headers.insert("Quay-Errors", errors.as_str());
    headers.insert("Quay-Attempts", letter.attempts.to_string().as_str());
    headers.insert("Quay-Partition", letter.partition.to_string().as_str());
    headers.insert("Quay-Generation", letter.generation.to_string().as_str());
    headers.insert("Quay-Node", node);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, letter.body.clone())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|_| ()).map_err(|e| e.to_string())
}
