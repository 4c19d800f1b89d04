//! Crash-loop counting against a real server: a job that aborts its node
//! process on every attempt, and neighbours on the same node (one node
//! process owns every partition, so they are co-located after every
//! restart), over several crashes. At the first crash a slow neighbour is
//! running and a transient one waits in retry backoff (the aborting job
//! waits for both before it aborts). Only the aborting job may reach the
//! DLQ, by the crash-loop limit; every neighbour completes.

mod common;

use quay::Key;
use quay_nats::local::{Proc, Spawner};
use quay_nats::scenario::{Kind, Task};
use quay_nats::server::Server;
use quay_nats::{audit, partition, Cluster, Producer, CRASH_LOOP};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const NS: &str = "crashloop";
const PARTITIONS: u32 = 4;
const LEASE_TTL_MS: u64 = 3_000;
const MAX_RUN_MS: u64 = 1_000;
const CRASH_LIMIT: u32 = 3;
/// The whole test fails rather than hangs past this.
const LIMIT: Duration = Duration::from_secs(240);
/// At most this many node processes in all (each crash starts one more).
const MAX_SPAWNS: usize = 12;

fn partition_of(key: u32) -> u32 {
    partition::partition_of(Some(Key::from(u64::from(key))), "", PARTITIONS)
}

/// A key after `after` whose partition `pick` accepts.
fn key_where(after: u32, pick: impl Fn(u32) -> bool) -> u32 {
    (after + 1..after + 1000)
        .find(|&k| pick(partition_of(k)))
        .expect("a key on the wanted partition")
}

fn task(key: u32, kind: Kind) -> Task {
    Task {
        key,
        seq: 0,
        kind,
        sent_us: 0,
    }
}

/// Starts node `n0`; a process that dies before it is ready counts as a
/// crash and is started again.
fn spawn(spawner: &Spawner, spawns: &mut usize, crashes: &mut usize) -> Proc {
    loop {
        assert!(*spawns < MAX_SPAWNS, "{MAX_SPAWNS} node processes started");
        *spawns += 1;
        match spawner.spawn("n0") {
            Ok(p) => return p,
            Err(e) => {
                eprintln!("node start: {e}");
                *crashes += 1;
            }
        }
    }
}

#[test]
fn only_the_job_that_crashes_its_node_reaches_the_dlq() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let cluster = Cluster {
        partitions: PARTITIONS,
        lease_ttl: Duration::from_millis(LEASE_TTL_MS),
        ..Cluster::namespaced(NS)
    };
    // The aborting job; a slow neighbour on its partition (another key);
    // a slow one and a transient one on two other partitions.
    let abort = 0;
    let pa = partition_of(abort);
    let same = key_where(abort, |p| p == pa);
    let other = key_where(same, |p| p != pa);
    let po = partition_of(other);
    let transient = key_where(other, |p| p != pa && p != po);
    let load = vec![
        task(abort, Kind::Abort),
        task(same, Kind::Slow),
        task(other, Kind::Slow),
        task(transient, Kind::Transient),
    ];
    let rt = common::runtime();
    let _in_rt = rt.enter();
    let client = rt.block_on(async_nats::connect(&url)).expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let producer = rt
        .block_on(Producer::<Task>::new(client, cluster.clone()))
        .expect("producer");
    for t in &load {
        rt.block_on(producer.publish(t.clone().job()))
            .expect("publish");
    }
    let spawner = Spawner::new(
        env!("CARGO_BIN_EXE_quay-nats").into(),
        &url,
        NS,
        Duration::from_millis(LEASE_TTL_MS),
        Duration::from_millis(MAX_RUN_MS),
        &[
            "--partitions",
            &PARTITIONS.to_string(),
            "--crash-limit",
            &CRASH_LIMIT.to_string(),
            "--ack-wait-ms",
            "5000",
            "--max-attempts",
            "10",
        ],
    );
    let (mut spawns, mut crashes) = (0, 0);
    let mut node = spawn(&spawner, &mut spawns, &mut crashes);
    // Each crash: start the node again; done when every job is answered.
    loop {
        assert!(
            began.elapsed() < LIMIT,
            "not drained within {LIMIT:?} ({crashes} crashes)"
        );
        if node.exited() {
            crashes += 1;
            node = spawn(&spawner, &mut spawns, &mut crashes);
            continue;
        }
        let left = rt
            .block_on(async {
                js.get_stream(&cluster.stream)
                    .await
                    .map_err(|e| e.to_string())?
                    .get_info()
                    .await
                    .map(|i| i.state.messages)
                    .map_err(|e| e.to_string())
            })
            .unwrap_or(u64::MAX);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = node.finish(Duration::from_secs(60));
    let dead = rt.block_on(audit::dead(&js, &cluster)).expect("dlq");
    let results = rt.block_on(audit::results(&js, NS)).expect("results");
    eprintln!(
        "crash loop: {crashes} crashes, {spawns} node processes, last report {:?}",
        report.map(|r| r.stats)
    );
    for d in &dead {
        eprintln!("  dead {:?}: {:?}", d.value, d.errors);
    }
    let dead_keys: Vec<u32> = dead.iter().map(|d| d.value.key).collect();
    assert_eq!(
        dead_keys,
        vec![abort],
        "only the aborting job may reach the DLQ"
    );
    let errors = dead[0].errors.clone().unwrap_or_default();
    assert!(errors.contains(CRASH_LOOP), "{errors}");
    let completed: BTreeSet<u32> = results.iter().map(|r| r.value.key).collect();
    assert_eq!(
        completed,
        BTreeSet::from([same, other, transient]),
        "every neighbour completes"
    );
    assert!(
        crashes >= CRASH_LIMIT as usize,
        "the aborting job crashed its node {crashes} times, under the limit {CRASH_LIMIT}"
    );
}
