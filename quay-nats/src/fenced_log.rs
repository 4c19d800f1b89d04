//! [`FencedLog`]: an append-only JetStream log that refuses appends from a
//! partition generation older than one it has seen, the kind of store a
//! fencing token is for.
//!
//! Per partition `p`, the stream holds *marks* on `<prefix>.fence.<p>`
//! whose body is a generation. The first append of generation `g` claims
//! the partition: it reads the last mark, refuses if it is newer than `g`,
//! and otherwise publishes its own mark expecting that last mark's sequence
//! (`Nats-Expected-Last-Subject-Sequence`, a compare-and-set on the
//! subject). Every append then publishes to `<prefix>.data.<p>` expecting
//! the fence subject's last sequence to still be its own mark
//! (`Nats-Expected-Last-Subject-Sequence` with
//! `Nats-Expected-Last-Subject-Sequence-Subject`): once a newer generation
//! has claimed the partition, the server itself refuses the stale append.
//! A process stopped between its own lease check and its write (a `kill
//! -STOP`, a long GC pause) therefore cannot write late.

use crate::node::{Fenced, Token};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A newer generation has claimed the partition.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The server did not confirm the append.
    #[error("append not confirmed: {0}")]
    Nats(String),
}

/// The log.
#[derive(Debug)]
pub struct FencedLog {
    js: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    marks: Mutex<HashMap<(u32, u64), u64>>,
}

impl FencedLog {
    /// Opens (or creates) the log's stream `name` on `<prefix>.>`.
    pub async fn open(
        js: jetstream::Context,
        name: &str,
        prefix: &str,
    ) -> Result<FencedLog, String> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.to_string(),
                subjects: vec![format!("{prefix}.>")],
                allow_direct: true,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(FencedLog {
            js,
            stream,
            prefix: prefix.to_string(),
            marks: Mutex::new(HashMap::new()),
        })
    }

    /// The subject data of partition `p` is appended to.
    pub fn data_subject(&self, p: u32) -> String {
        format!("{}.data.{p}", self.prefix)
    }

    fn fence_subject(&self, p: u32) -> String {
        format!("{}.fence.{p}", self.prefix)
    }

    /// Appends `body` for the job `token` describes, under its fencing
    /// token, once per (job, generation): a retry after an append whose
    /// confirmation was lost is a duplicate, not a second record. The
    /// append's stream sequence.
    pub async fn append_for(&self, token: &Token, body: Bytes) -> Result<u64, AppendError> {
        let once = format!("{}-g{}", token.msg_id(), token.generation());
        self.append(token.partition(), token.generation(), Some(&once), body)
            .await
    }

    /// Appends `body` to partition `p` under generation `g`; its stream
    /// sequence. Refused once a generation newer than `g` has appended.
    /// With `once`, it is the append's `Nats-Msg-Id`: a repeat within the
    /// stream's duplicate window stores nothing new.
    pub async fn append(
        &self,
        p: u32,
        g: u64,
        once: Option<&str>,
        body: Bytes,
    ) -> Result<u64, AppendError> {
        let fenced = Fenced {
            partition: p,
            generation: g,
        };
        let mark = self.claim(p, g).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            mark.to_string().as_str(),
        );
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            self.fence_subject(p).as_str(),
        );
        if let Some(id) = once {
            headers.insert("Nats-Msg-Id", id);
        }
        let sent = self
            .js
            .publish_with_headers(self.data_subject(p), headers, body)
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(e) => return Err(AppendError::Nats(e.to_string())),
        };
        match ack {
            Ok(a) => Ok(a.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                self.forget(p, g);
                Err(fenced.into())
            }
            Err(e) => Err(AppendError::Nats(e.to_string())),
        }
    }

    fn forget(&self, p: u32, g: u64) {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(p, g));
    }

    /// The sequence of generation `g`'s mark on partition `p`, claiming it
    /// if no mark of `g` is the last one yet.
    pub async fn claim(&self, p: u32, g: u64) -> Result<u64, AppendError> {
        if let Some(&seq) = self
            .marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(p, g))
        {
            return Ok(seq);
        }
        let fenced = Fenced {
            partition: p,
            generation: g,
        };
        for _ in 0..32 {
            let last = match self
                .stream
                .direct_get_last_for_subject(self.fence_subject(p))
                .await
            {
                Ok(m) => {
                    let seen: u64 = std::str::from_utf8(&m.payload)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    Some((m.sequence, seen))
                }
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => None,
                Err(e) => return Err(AppendError::Nats(e.to_string())),
            };
            let expect = match last {
                Some((_, seen)) if seen > g => return Err(fenced.into()),
                Some((seq, seen)) if seen == g => {
                    self.marks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((p, g), seq);
                    return Ok(seq);
                }
                Some((seq, _)) => seq,
                None => 0,
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expect.to_string().as_str(),
            );
            let sent = self
                .js
                .publish_with_headers(self.fence_subject(p), headers, Bytes::from(g.to_string()))
                .await;
            let ack = match sent {
                Ok(ack) => ack.await,
                Err(e) => return Err(AppendError::Nats(e.to_string())),
            };
            match ack {
                Ok(a) => {
                    self.marks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((p, g), a.sequence);
                    return Ok(a.sequence);
                }
                // Someone else marked first: read again.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
                Err(e) => return Err(AppendError::Nats(e.to_string())),
            }
        }
        Err(AppendError::Nats(format!(
            "partition {p}: could not claim the fence in 32 tries"
        )))
    }
}
