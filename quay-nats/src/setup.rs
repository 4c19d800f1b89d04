//! The server-side objects a deployment needs, created or checked: the
//! jobs stream (WorkQueue, `discard: new`, explicit limits), the DLQ
//! stream, and the lease, membership and crash-loop KV buckets.

use crate::error::{BridgeError, ConfigError};
use crate::settings::Cluster;
use async_nats::jetstream::{self, kv, stream};
use std::time::Duration;

/// Handles on everything [`ensure`] made.
#[derive(Clone, Debug)]
pub struct Objects {
    /// The jobs stream.
    pub jobs: stream::Stream,
    /// The dead-letter stream.
    pub dlq: stream::Stream,
    /// Partition leases: one key per partition, `history: 1`, `max_age` = lease TTL.
    pub leases: kv::Store,
    /// Live nodes: one key per node, `max_age` = lease TTL.
    pub members: kv::Store,
    /// Crash-loop markers: one key per started job, `max_age` = dedup window.
    pub crashes: kv::Store,
}

/// The jobs stream's configuration for `cluster`.
pub fn jobs_stream_config(cluster: &Cluster) -> stream::Config {
    stream::Config {
        name: cluster.stream.clone(),
        subjects: vec![format!("{}.*", cluster.subject_prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_messages: cluster.max_messages,
        max_bytes: cluster.max_bytes,
        max_age: Duration::ZERO,
        duplicate_window: cluster.dedup_window,
        storage: stream::StorageType::File,
        num_replicas: cluster.replicas,
        ..Default::default()
    }
}

/// Creates what is missing and checks what exists. An existing jobs stream
/// with another retention, `discard: old`, or no limits is an error, not
/// something to change behind its owner's back.
pub async fn ensure(js: &jetstream::Context, cluster: &Cluster) -> Result<Objects, BridgeError> {
    cluster.validate()?;
    let want = jobs_stream_config(cluster);
    let jobs = match js.get_stream(&cluster.stream).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(BridgeError::nats)?.clone();
            check_existing(&info.config, cluster)?;
            s
        }
        Err(_) => js.create_stream(want).await.map_err(BridgeError::nats)?,
    };
    let dlq = js
        .get_or_create_stream(stream::Config {
            name: cluster.dlq_stream.clone(),
            subjects: vec![cluster.dlq_subject.clone()],
            retention: stream::RetentionPolicy::Limits,
            // A full DLQ refuses: the dead job stays un-acked in the jobs
            // stream, and its node retries the DLQ publish.
            discard: stream::DiscardPolicy::New,
            max_messages: cluster.max_messages,
            max_bytes: cluster.max_bytes,
            duplicate_window: cluster.dedup_window,
            storage: stream::StorageType::File,
            num_replicas: cluster.replicas,
            ..Default::default()
        })
        .await
        .map_err(BridgeError::nats)?;
    let bucket = |name: &str, max_age: Duration| kv::Config {
        bucket: name.to_string(),
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: cluster.replicas,
        ..Default::default()
    };
    let leases = open_bucket(js, bucket(&cluster.lease_bucket, cluster.lease_ttl)).await?;
    let members = open_bucket(js, bucket(&cluster.member_bucket, cluster.lease_ttl)).await?;
    let crashes = open_bucket(js, bucket(&cluster.crash_bucket, cluster.dedup_window)).await?;
    Ok(Objects {
        jobs,
        dlq,
        leases,
        members,
        crashes,
    })
}

async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, BridgeError> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => {
            let status = store.status().await.map_err(BridgeError::nats)?;
            if status.max_age() != config.max_age || status.history() != 1 {
                return Err(ConfigError::Existing {
                    stream: format!("KV_{}", config.bucket),
                    why: format!(
                        "max_age {:?} and history {} where this deployment needs {:?} and 1",
                        status.max_age(),
                        status.history(),
                        config.max_age
                    ),
                }
                .into());
            }
            Ok(store)
        }
        Err(_) => js.create_key_value(config).await.map_err(BridgeError::nats),
    }
}

fn check_existing(have: &stream::Config, cluster: &Cluster) -> Result<(), ConfigError> {
    let why = if have.retention != stream::RetentionPolicy::WorkQueue {
        Some(format!("retention {:?}, not WorkQueue", have.retention))
    } else if have.discard != stream::DiscardPolicy::New {
        Some("discard: old drops un-acked jobs when the stream is full".to_string())
    } else if have.max_messages < 1 && have.max_bytes < 1 {
        Some("no limits: a burst would grow it without bound".to_string())
    } else if have.max_age != Duration::ZERO {
        Some(format!(
            "max_age {:?} would expire un-run jobs",
            have.max_age
        ))
    } else if have.duplicate_window != cluster.dedup_window {
        Some(format!(
            "duplicate_window {:?}, but dedup_window is {:?}",
            have.duplicate_window, cluster.dedup_window
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(ConfigError::Existing {
            stream: have.name.clone(),
            why,
        }),
        None => Ok(()),
    }
}

/// Deletes every object of `cluster` (the demo and the benchmark start
/// from nothing this way). Missing objects are not an error.
pub async fn remove(js: &jetstream::Context, cluster: &Cluster) {
    for s in [&cluster.stream, &cluster.dlq_stream] {
        let _ = js.delete_stream(s).await;
    }
    for b in [
        &cluster.lease_bucket,
        &cluster.member_bucket,
        &cluster.crash_bucket,
    ] {
        let _ = js.delete_key_value(b).await;
    }
}
