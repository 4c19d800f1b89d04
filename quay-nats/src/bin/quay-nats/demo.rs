//! `quay-nats demo`: the sign-up scenario on 3 node processes, one killed
//! partway, then the accounting from the server's own records, then the
//! benchmark.

use futures::StreamExt;
use quay::Submitted;
use quay_nats::local::Spawner;
use quay_nats::scenario::{self, Kind, Task};
use quay_nats::server::Server;
use quay_nats::{audit, setup, Cluster, Producer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// A server to use; without one, the demo starts its own.
    #[arg(long)]
    pub server: Option<String>,
    /// Jobs to publish.
    #[arg(long, default_value_t = 8_000)]
    pub jobs: u32,
    /// Jobs published per second (0: as fast as the server confirms).
    #[arg(long, default_value_t = 400)]
    pub rate: u32,
    /// Keys (users).
    #[arg(long, default_value_t = 1_000)]
    pub keys: u32,
    /// Node processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Skip the benchmark.
    #[arg(long)]
    pub no_bench: bool,
    /// Jobs per benchmark round.
    #[arg(long, default_value_t = 20_000)]
    pub bench_jobs: u32,
}

const NS: &str = "demo";
const LEASE_TTL_MS: u64 = 3_000;
const MAX_RUN_MS: u64 = 1_000;

pub fn run(a: Args) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (url, _own) = Server::given_or_own(a.server.as_deref(), dir.path(), true)?;
    if let Some(s) = &_own {
        println!(
            "started nats-server on {} (store {})",
            s.url(),
            s.store.display()
        );
    }
    let rt = crate::runtime()?;
    let _in_rt = rt.enter();
    let cluster = Cluster {
        lease_ttl: Duration::from_millis(LEASE_TTL_MS),
        ..Cluster::namespaced(NS)
    };
    let client = rt
        .block_on(async_nats::connect(&url))
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client.clone());
    rt.block_on(async {
        setup::remove(&js, &cluster).await;
        let _ = js.delete_stream(scenario::log_names(NS).0).await;
    });
    let producer = Arc::new(
        rt.block_on(Producer::<Task>::new(client.clone(), cluster.clone()))
            .map_err(|e| e.to_string())?,
    );
    let binary = std::env::current_exe().map_err(|e| e.to_string())?;
    let spawner = Spawner::new(
        binary,
        &url,
        NS,
        Duration::from_millis(LEASE_TTL_MS),
        Duration::from_millis(MAX_RUN_MS),
        &["--ack-wait-ms", "10000"],
    );
    let mut procs = Vec::new();
    for i in 0..a.nodes.max(1) {
        procs.push(spawner.spawn(&format!("node-{i}"))?);
    }
    println!(
        "{} node processes running; publishing {} sign-up jobs over {} users at {} jobs/s \
         (3% fail once, 0.2% poison, 1% published twice)",
        procs.len(),
        a.jobs,
        a.keys,
        a.rate
    );
    // 3% transient, 0.2% poison; 1% of jobs published twice.
    let load = scenario::load(a.jobs, a.keys, 30_000, 2_000, 0x5eed);
    let published = AtomicU64::new(0);
    let duplicates = AtomicU64::new(0);
    let start = Instant::now();
    let kill_at = u64::from(a.jobs) * 3 / 10;
    let victim = procs.len() / 2;
    let mut killed_at = None;
    let mut restart = None;
    let mut killed = Vec::new();
    rt.block_on(async {
        let mut sends = futures::stream::iter(load.iter().cloned().enumerate())
            .map(|(i, mut t)| {
                let producer = producer.clone();
                let due = (a.rate > 0)
                    .then(|| start + Duration::from_secs_f64(i as f64 / f64::from(a.rate)));
                async move {
                    if let Some(due) = due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    t.sent_us = scenario::now_us();
                    let again = i % 100 == 7;
                    let first = publish(&producer, t.clone()).await;
                    let second = if again {
                        Some(publish(&producer, t).await)
                    } else {
                        None
                    };
                    (first, second)
                }
            })
            .buffer_unordered(256);
        while let Some((first, second)) = sends.next().await {
            if first? == Submitted::Accepted {
                published.fetch_add(1, Ordering::Relaxed);
            }
            if second.transpose()? == Some(Submitted::Duplicate) {
                duplicates.fetch_add(1, Ordering::Relaxed);
            }
            if killed_at.is_none() && published.load(Ordering::Relaxed) >= kill_at {
                procs[victim].kill9();
                killed_at = Some(Instant::now());
                println!("kill -9 {} after {} publishes", procs[victim].name, kill_at);
                let (spawner, name) = (spawner.clone(), procs[victim].name.clone());
                restart = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1500));
                    let fresh = spawner.spawn(&name);
                    println!("restarted {name} 1.5 s later");
                    fresh
                }));
            }
        }
        Ok::<_, String>(())
    })?;
    if let Some(restart) = restart {
        let fresh = restart
            .join()
            .map_err(|_| "the restart thread panicked".to_string())??;
        let old = std::mem::replace(&mut procs[victim], fresh);
        killed.push(old);
    }
    // Wait until every job is acked or dead: the WorkQueue stream is empty.
    rt.block_on(audit::wait_drained(
        &js,
        &cluster.stream,
        Duration::from_secs(600),
    ))?;
    let elapsed = start.elapsed();
    let mut acquisitions = Vec::new();
    let mut reports = Vec::new();
    for p in &killed {
        acquisitions.extend(p.acquisitions());
    }
    for p in &mut procs {
        acquisitions.extend(p.acquisitions());
        if let Some(r) = p.finish(Duration::from_secs(30)) {
            reports.push(r);
        }
    }
    let (results, dead) = rt.block_on(async {
        (
            audit::results(&js, NS).await,
            audit::dead(&js, &cluster).await,
        )
    });
    let (results, dead) = (results?, dead?);
    let report = audit::check(
        &load,
        &results,
        &dead,
        &acquisitions,
        Duration::from_millis(MAX_RUN_MS),
    );
    let poison = load.iter().filter(|t| t.kind == Kind::Poison).count();
    println!();
    println!("accounting (from the server's results log and DLQ stream)");
    println!("  published          {}", published.load(Ordering::Relaxed));
    println!(
        "  duplicates         {} (republished with the same Msg-Id, answered duplicate)",
        duplicates.load(Ordering::Relaxed)
    );
    println!("  completed          {}", report.completed);
    println!(
        "  dead               {} (poison in the load: {poison})",
        report.dead
    );
    println!("  re-runs            {}", report.reruns);
    println!("  lost               {}", report.lost.len());
    println!(
        "  order violations   {}",
        report.order_violations.len() + report.generation_order_violations.len()
    );
    println!("  fence violations   {}", report.fence_violations.len());
    println!("  wrongly dead       {}", report.wrongly_dead.len());
    println!(
        "  throughput         {:.0} jobs/s ({} jobs in {:.2} s, publish included)",
        f64::from(a.jobs) / elapsed.as_secs_f64(),
        a.jobs,
        elapsed.as_secs_f64()
    );
    let [p50, p90, p99, max] = report.latency_ms;
    println!(
        "  publish → result   p50 {p50:.1} ms  p90 {p90:.1} ms  p99 {p99:.1} ms  max {max:.1} ms"
    );
    for r in &reports {
        println!(
            "  {:<8} acked {:>6}  dead {:>3}  fenced {:>4}  leases {:>3} acquired, {:>3} released, {:>2} lost",
            r.node, r.stats.acked, r.stats.dead, r.stats.fenced, r.stats.acquired, r.stats.released, r.stats.lost
        );
    }
    if !report.ok() {
        return Err(format!("the audit failed: {report:?}"));
    }
    if !a.no_bench {
        println!();
        crate::bench::run(crate::bench::Args {
            server: None,
            jobs: a.bench_jobs,
            rounds: 3,
            partitions: 64,
        })?;
    }
    Ok(())
}

async fn publish(producer: &Producer<Task>, t: Task) -> Result<Submitted, String> {
    let mut job = t.job();
    // A full stream hands the job back: wait and publish it again.
    for _ in 0..600 {
        match producer.publish(job).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_transient() => {
                job = e.into_job();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("the stream stayed full for a minute".into())
}
