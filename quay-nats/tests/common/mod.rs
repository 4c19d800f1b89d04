//! What the bridge's tests share: a real server per test, and bounded waits.

#![allow(dead_code)]

use quay_nats::server::Server;
use quay_nats::{Cluster, NodeSettings};
use std::time::{Duration, Instant};

/// A real nats-server in a temporary directory. Fails (never skips) when no
/// server binary is installed.
pub fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (server, dir)
}

/// Settings small enough for tests: 4 partitions, 3 s leases.
pub fn cluster() -> Cluster {
    Cluster {
        partitions: 4,
        lease_ttl: Duration::from_secs(3),
        dedup_window: Duration::from_secs(60),
        max_messages: 100_000,
        ..Cluster::default()
    }
}

pub fn node_settings(name: &str) -> NodeSettings {
    NodeSettings {
        name: name.to_string(),
        max_run_time: Duration::from_secs(1),
        ack_wait: Duration::from_secs(5),
        backoff: (Duration::from_millis(20), Duration::from_millis(100)),
        max_attempts: 3,
        drain_timeout: Duration::from_secs(5),
        ..NodeSettings::default()
    }
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}
