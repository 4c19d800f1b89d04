//! The proof: 3 node processes against one real server, with `kill -9`,
//! `kill -STOP` past the lease TTL, and a server restart, while 10 000
//! keyed jobs (3% transient, 0.2% poison, 1% republished) flow. The
//! server's own records are then audited: nothing lost, the DLQ exactly the
//! poison set, each key's first completions in order, each generation's
//! runs in order, and no generation writing after its lease ended.

mod common;

use quay::Submitted;
use quay_nats::local::{Proc, Spawner};
use quay_nats::scenario::{self, Kind, Task};
use quay_nats::server::Server;
use quay_nats::{audit, Cluster, Producer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "chaos";
const LEASE_TTL_MS: u64 = 2_000;
const MAX_RUN_MS: u64 = 500;
const JOBS: u32 = 10_000;
const KEYS: u32 = 100;
/// The whole test fails rather than hangs past this.
const LIMIT: Duration = Duration::from_secs(600);

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn seed() -> u64 {
    std::env::var("QUAY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1
}

/// Every process ever started, by slot; the live one is last.
type Nodes = Arc<Mutex<Vec<Vec<Proc>>>>;

#[test]
fn three_nodes_survive_kills_a_stop_and_a_server_restart() {
    let seed = seed();
    eprintln!("chaos seed {seed} (set QUAY_CHAOS_SEED to replay the fault schedule)");
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Arc::new(Mutex::new(
        Server::start(dir.path()).unwrap_or_else(|e| panic!("{e}")),
    ));
    let url = server.lock().unwrap().url();
    let cluster = Cluster {
        lease_ttl: Duration::from_millis(LEASE_TTL_MS),
        ..Cluster::namespaced(NS)
    };
    let spawner = Spawner::new(
        env!("CARGO_BIN_EXE_quay-nats").into(),
        &url,
        NS,
        Duration::from_millis(LEASE_TTL_MS),
        Duration::from_millis(MAX_RUN_MS),
        &["--ack-wait-ms", "5000", "--max-attempts", "10"],
    );
    let rt = common::runtime();
    let _in_rt = rt.enter();
    let client = rt.block_on(async_nats::connect(&url)).expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let producer = Arc::new(
        rt.block_on(Producer::<Task>::new(client, cluster.clone()))
            .expect("producer"),
    );
    let nodes: Nodes = Arc::new(Mutex::new(
        (0..3)
            .map(|i| vec![spawner.spawn(&format!("n{i}")).expect("node starts")])
            .collect(),
    ));

    // Publish: one task per key, its jobs in order, each retried (same
    // Msg-Id) until confirmed; 1% published twice.
    let load = scenario::load(JOBS, KEYS, 30_000, 2_000, seed);
    let duplicates = Arc::new(AtomicU64::new(0));
    let published_all = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (producer, load, duplicates, published_all) = (
            producer.clone(),
            load.clone(),
            duplicates.clone(),
            published_all.clone(),
        );
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(async move {
                let mut by_key: BTreeMap<u32, Vec<Task>> = BTreeMap::new();
                for t in load {
                    by_key.entry(t.key).or_default().push(t);
                }
                let tasks: Vec<_> = by_key
                    .into_values()
                    .map(|tasks| {
                        let (producer, duplicates) = (producer.clone(), duplicates.clone());
                        tokio::spawn(async move {
                            for t in tasks {
                                // Spread the load over about 10 s.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                let again = (t.key + t.seq) % 100 == 7;
                                let mut t = t;
                                t.sent_us = scenario::now_us();
                                publish_until_confirmed(&producer, t.clone()).await;
                                if again
                                    && publish_until_confirmed(&producer, t).await
                                        == Submitted::Duplicate
                                {
                                    duplicates.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("publisher task");
                }
            });
            published_all.store(true, Ordering::Release);
        })
    };

    // Faults, at random moments while the load flows.
    let mut rng = Rng(seed);
    let mut faults = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(rng.millis(500, 1500));
        let slot = rng.below(3) as usize;
        let name = {
            let mut n = nodes.lock().unwrap();
            let p = n[slot].last_mut().unwrap();
            p.kill9();
            p.name.clone()
        };
        let down = rng.millis(1000, 3000);
        faults.push(format!("kill -9 {name}, down {down:?}"));
        std::thread::sleep(down);
        let fresh = spawner.spawn(&name).expect("node restarts");
        nodes.lock().unwrap()[slot].push(fresh);
    }
    std::thread::sleep(rng.millis(300, 1000));
    let slot = rng.below(3) as usize;
    let stopped_for = Duration::from_millis(LEASE_TTL_MS + 1500);
    {
        let n = nodes.lock().unwrap();
        let p = n[slot].last().unwrap();
        p.stop().expect("kill -STOP");
        faults.push(format!("kill -STOP {} for {stopped_for:?}", p.name));
    }
    std::thread::sleep(stopped_for);
    nodes.lock().unwrap()[slot]
        .last()
        .unwrap()
        .cont()
        .expect("kill -CONT");
    std::thread::sleep(rng.millis(300, 1000));
    server
        .lock()
        .unwrap()
        .restart()
        .expect("the server restarts with its store");
    faults.push("nats-server kill -9 and restart, same store".into());
    eprintln!("faults: {faults:?}");

    // Wait for the publisher, then for an empty jobs stream.
    while !published_all.load(Ordering::Acquire) {
        assert!(
            began.elapsed() < LIMIT,
            "publishing did not finish in {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    publisher.join().expect("publisher");
    let left = LIMIT.saturating_sub(began.elapsed());
    rt.block_on(audit::wait_drained(&js, &cluster.stream, left))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut acquisitions = Vec::new();
    let mut reports = Vec::new();
    for slot in nodes.lock().unwrap().iter_mut() {
        for p in slot.iter_mut() {
            if let Some(r) = p.finish(Duration::from_secs(60)) {
                reports.push(r);
            }
            acquisitions.extend(p.acquisitions());
        }
    }
    let results = rt.block_on(audit::results(&js, NS)).expect("results log");
    let dead = rt.block_on(audit::dead(&js, &cluster)).expect("dlq");
    let report = audit::check(
        &load,
        &results,
        &dead,
        &acquisitions,
        Duration::from_millis(MAX_RUN_MS),
    );
    let poison = load.iter().filter(|t| t.kind == Kind::Poison).count();
    eprintln!(
        "chaos: {} jobs, {} completed, {} dead (poison {poison}), {} re-runs, {} republished as duplicates, \
         {} lease acquisitions, latency p50/p99 {:.1}/{:.1} ms, {:.1} s",
        report.jobs,
        report.completed,
        report.dead,
        report.reruns,
        duplicates.load(Ordering::Relaxed),
        acquisitions.len(),
        report.latency_ms[0],
        report.latency_ms[2],
        began.elapsed().as_secs_f64()
    );
    for r in &reports {
        eprintln!("  {}: {:?}", r.node, r.stats);
    }
    for d in dead
        .iter()
        .filter(|d| report.wrongly_dead.contains(&(d.value.key, d.value.seq)))
    {
        eprintln!("  wrongly dead {:?}: {:?}", d.value, d.errors);
    }
    if let Some(&(key, _, _)) = report.order_violations.first() {
        eprintln!(
            "  key {key}, every result in stream order (seq, node, p, g, stored ms since start):"
        );
        for r in results.iter().filter(|r| r.value.key == key) {
            let at = (r.at_ns / 1_000_000) as i64
                - (scenario::now_us() as i64 / 1000 - began.elapsed().as_millis() as i64);
            eprintln!(
                "    {} {} p{} g{} {at}",
                r.value.seq, r.value.node, r.value.p, r.value.g
            );
        }
        let mut acq: Vec<_> = acquisitions
            .iter()
            .filter(|a| {
                Some(a.0)
                    == results
                        .iter()
                        .find(|r| r.value.key == key)
                        .map(|r| r.value.p)
            })
            .collect();
        acq.sort();
        eprintln!("  its partition's acquisitions: {acq:?}");
    }
    assert!(report.lost.is_empty(), "lost: {:?}", report.lost);
    assert!(
        report.wrongly_dead.is_empty(),
        "non-poison jobs in the DLQ: {:?}",
        report.wrongly_dead
    );
    assert!(
        report.poison_missing.is_empty(),
        "poison not in the DLQ: {:?}",
        report.poison_missing
    );
    assert!(
        report.poison_ran.is_empty(),
        "poison with a result: {:?}",
        report.poison_ran
    );
    assert_eq!(report.dead, poison, "the DLQ is exactly the poison set");
    assert_eq!(
        report.dead_duplicates, 0,
        "a dead job reached the DLQ twice"
    );
    assert!(
        report.order_violations.is_empty(),
        "first completions out of order: {:?}",
        report.order_violations
    );
    assert!(
        report.generation_order_violations.is_empty(),
        "runs out of order within a generation: {:?}",
        report.generation_order_violations
    );
    assert!(
        report.fence_violations.is_empty(),
        "writes after a lease ended: {:?}",
        report.fence_violations
    );
    assert!(
        report.reruns > 0,
        "no job ran twice: the kills missed everything in flight"
    );
    assert!(
        duplicates.load(Ordering::Relaxed) > 0,
        "no republish was answered duplicate"
    );
}

async fn publish_until_confirmed(producer: &Producer<Task>, t: Task) -> Submitted {
    let mut job = t.job();
    loop {
        match producer.publish(job).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                job = e.into_job();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
