//! quay on NATS JetStream: a durable, multi-node job queue whose nodes each
//! run a local quay engine at full speed, while JetStream holds every job
//! until a node has finished it.
//!
//! `docs/scale-out.md` explains the architecture, the ownership and fencing
//! protocol, and the guarantees.
//!
//! Diagnostics (a failed takeover, a generation ended early) are `tracing`
//! events: install a subscriber to see them. The `cli` feature (default)
//! builds the `quay-nats` binary and its own dependencies (`clap`,
//! `tempfile`, `tracing-subscriber`); a library user sets
//! `default-features = false` and builds none of them.
//!
//! | module | owns |
//! |---|---|
//! | [`settings`] | [`Cluster`] and [`NodeSettings`], validated |
//! | [`setup`] | the streams and KV buckets, created or checked |
//! | [`producer`] | [`Producer`]: publish with dedup, per-key order, `Full` |
//! | [`node`] | [`Node`]: leases, takeover, fetch, fence, acks, DLQ |
//! | [`partition`] | partitions, headers, local job IDs |
//! | [`fenced_log`] | [`FencedLog`]: a store that refuses stale generations |
//! | [`scenario`] | the demo's and chaos test's workload and handler |
//! | [`audit`] | reads a run back and checks every guarantee |
//! | [`codec`] | [`Codec`] and [`Json`] |
//! | [`local`] | node processes and the faults thrown at them |
//! | [`server`] | starting a real `nats-server` for tests and the demo |
//! | [`error`] | every typed error |

#![warn(missing_docs)]

pub mod audit;
pub mod codec;
pub mod error;
pub mod fenced_log;
pub mod local;
pub mod node;
pub mod partition;
pub mod producer;
pub mod scenario;
pub mod server;
pub mod settings;
pub mod setup;

pub use codec::{Codec, Json};
pub use error::{BridgeError, ConfigError, PublishError};
pub use fenced_log::{AppendError, FencedLog};
pub use node::{Fenced, Node, NodeBuilder, NodeReport, NodeStats, Token, CRASH_LOOP};
pub use producer::Producer;
pub use settings::{Cluster, Discard, NodeSettings};
