//! `quay-nats node`: one node process running the scenario's handler over
//! the results log. Prints JSON lines (`ready`, `acquired`, `report`) and
//! drains when its stdin closes.

use quay_nats::local::Event;
use quay_nats::scenario;
use quay_nats::{Cluster, FencedLog, Node, NodeSettings};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The node's name.
    #[arg(long)]
    pub name: String,
    /// The server's URL.
    #[arg(long)]
    pub server: String,
    /// The namespace of every stream and bucket (must match every node's).
    #[arg(long, default_value = "quay")]
    pub namespace: String,
    /// Partitions (must match every node's).
    #[arg(long, default_value_t = 64)]
    pub partitions: u32,
    /// Lease TTL, ms (must match every node's).
    #[arg(long, default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// Maximum run time of a job, ms.
    #[arg(long, default_value_t = 2_000)]
    pub max_run_ms: u64,
    /// AckWait, ms.
    #[arg(long, default_value_t = 30_000)]
    pub ack_wait_ms: u64,
    /// Crash-loop limit (0: off).
    #[arg(long, default_value_t = 3)]
    pub crash_limit: u32,
    /// Attempts per job.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Local engine workers.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

impl Args {
    pub fn cluster(&self) -> Cluster {
        Cluster {
            partitions: self.partitions,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms),
            ..Cluster::namespaced(&self.namespace)
        }
    }

    pub fn settings(&self) -> NodeSettings {
        NodeSettings {
            name: self.name.clone(),
            max_run_time: Duration::from_millis(self.max_run_ms),
            ack_wait: Duration::from_millis(self.ack_wait_ms),
            crash_limit: (self.crash_limit > 0).then_some(self.crash_limit),
            max_attempts: self.max_attempts,
            workers: self.workers,
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            ..NodeSettings::default()
        }
    }
}

fn emit(e: &Event) {
    if let Ok(line) = serde_json::to_string(e) {
        println!("{line}");
    }
}

pub fn run(a: Args) -> Result<(), String> {
    let rt = crate::runtime()?;
    let log = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&a.server)
            .await
            .map_err(|e| e.to_string())?;
        let (stream, prefix) = scenario::log_names(&a.namespace);
        FencedLog::open(async_nats::jetstream::new(client), &stream, &prefix).await
    })?;
    let log = Arc::new(log);
    let claim_log = log.clone();
    let handle = rt.handle().clone();
    let node = Node::builder::<scenario::Task>(a.server.clone(), a.cluster(), a.settings())
        .on_acquire(move |p, g| {
            emit(&Event::Acquired {
                p,
                g,
                at_ns: scenario::now_us() as i64 * 1000,
            });
            // Claim the results log for this generation at once, so a stale
            // owner's late write is refused from the start.
            let log = claim_log.clone();
            handle.spawn(async move { log.claim(p, g).await });
        })
        .start(scenario::handler(log))
        .map_err(|e| e.to_string())?;
    emit(&Event::Ready {
        node: a.name.clone(),
    });
    // Until stdin closes.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let report = node.shutdown();
    emit(&Event::Report(report));
    Ok(())
}
