//! `quay-nats bench`: bridged no-op jobs/s on one in-process node against a
//! raw async-nats pull consumer doing fetch + ack on a stream of the same
//! shape (the ceiling), interleaved, several rounds; then publish-to-handler
//! latency at a fixed offered rate for both.

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures::StreamExt;
use quay_nats::scenario::{self, Kind, Task};
use quay_nats::server::Server;
use quay_nats::{setup, Cluster, Node, NodeSettings, Producer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// A server to use; without one, the bench starts its own.
    #[arg(long)]
    pub server: Option<String>,
    /// Jobs per round.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Rounds (each runs raw, then bridged).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Partitions of the bridged stream (one consumer each on the node).
    #[arg(long, default_value_t = 64)]
    pub partitions: u32,
}

type Hist = Arc<Mutex<hdrhistogram::Histogram<u64>>>;

fn hist() -> Hist {
    Arc::new(Mutex::new(
        hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds are valid"),
    ))
}

pub fn run(a: Args) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Without a server given, one of its own with the default sync
    // interval: with `sync_interval: always` every write waits for an fsync
    // and both sides are bound by the disk.
    let (url, _own) = Server::given_or_own(a.server.as_deref(), dir.path(), false)?;
    let rt = crate::runtime()?;
    let _in_rt = rt.enter();
    let client = rt
        .block_on(async_nats::connect(&url))
        .map_err(|e| e.to_string())?;
    let js = jetstream::new(client.clone());
    let sync = if a.server.is_some() {
        "the given server's"
    } else {
        "a server of its own with the default"
    };
    println!(
        "benchmark: {} no-op jobs per round, {} rounds, one node (2 workers, crash-loop counting off), {sync} sync interval",
        a.jobs, a.rounds
    );
    println!(
        "  {:<6} {:>14} {:>14} {:>8}",
        "round", "raw jobs/s", "bridged jobs/s", "ratio"
    );
    let mut ratios = Vec::new();
    for round in 1..=a.rounds {
        let raw = rt.block_on(raw_round(&js, a.jobs, None))?;
        let bridged = bridged_round(&rt, &client, &url, a.jobs, None, round, a.partitions)?;
        let (rr, br) = (
            f64::from(a.jobs) / raw.as_secs_f64(),
            f64::from(a.jobs) / bridged.as_secs_f64(),
        );
        ratios.push(br / rr);
        println!("  {round:<6} {rr:>14.0} {br:>14.0} {:>8.2}", br / rr);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median ratio bridged/raw: {:.2}",
        ratios[ratios.len() / 2]
    );
    // Latency at a fixed offered rate: 2 000 jobs/s for 2 s.
    let (raw_h, bridged_h) = (hist(), hist());
    rt.block_on(raw_round(&js, 4_000, Some(raw_h.clone())))?;
    bridged_round(
        &rt,
        &client,
        &url,
        4_000,
        Some(bridged_h.clone()),
        0,
        a.partitions,
    )?;
    for (name, h) in [("raw", raw_h), ("bridged", bridged_h)] {
        let h = h.lock().unwrap_or_else(|p| p.into_inner());
        println!(
            "  {name:<8} publish → handler at 2 000/s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}

fn tasks(n: u32, paced: bool) -> impl Iterator<Item = Task> {
    (0..n).map(move |i| Task {
        key: i % 1000,
        seq: i / 1000,
        kind: Kind::Noop,
        sent_us: if paced { 0 } else { 1 },
    })
}

/// Publishes `n` tasks: all at once (pipelined) or paced at 2 000/s.
async fn fill<F, Fut>(n: u32, paced: Option<Hist>, publish: F) -> Result<(), String>
where
    F: Fn(Task) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for (i, mut t) in tasks(n, paced.is_some()).enumerate() {
        if paced.is_some() {
            // Keep sending what is pending while waiting for the next slot.
            let due =
                tokio::time::sleep_until((start + Duration::from_micros(500 * i as u64)).into());
            tokio::pin!(due);
            loop {
                tokio::select! {
                    _ = &mut due => break,
                    Some(r) = pending.next(), if !pending.is_empty() => r?,
                }
            }
            t.sent_us = scenario::now_us();
        }
        pending.push(publish(t));
        while pending.len() >= 512 {
            pending.next().await.transpose()?;
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

/// The ceiling: a raw pull consumer, fetch + ack, on a WorkQueue stream.
async fn raw_round(
    js: &jetstream::Context,
    n: u32,
    latency: Option<Hist>,
) -> Result<Duration, String> {
    let _ = js.delete_stream("BENCH_RAW").await;
    let stream = js
        .create_stream(stream::Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.raw".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let publish = |t: Task| async move {
        let body = serde_json::to_vec(&t).map_err(|e| e.to_string())?;
        js.publish("bench.raw", body.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    if latency.is_none() {
        fill(n, None, publish).await?;
    }
    let start = Instant::now();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let consume = async {
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        let mut done = 0;
        while done < n {
            let Some(m) = messages.next().await else {
                break;
            };
            let m = m.map_err(|e| e.to_string())?;
            if let Some(h) = &latency {
                let t: Task = serde_json::from_slice(&m.payload).map_err(|e| e.to_string())?;
                h.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(scenario::now_us().saturating_sub(t.sent_us).max(1));
            }
            m.ack().await.map_err(|e| e.to_string())?;
            done += 1;
        }
        Ok::<_, String>(())
    };
    if latency.is_some() {
        let (a, b) = tokio::join!(fill(n, latency.clone(), publish), consume);
        a?;
        b?;
    } else {
        consume.await?;
    }
    wait_empty(js, "BENCH_RAW").await?;
    Ok(start.elapsed())
}

async fn wait_empty(js: &jetstream::Context, name: &str) -> Result<(), String> {
    quay_nats::audit::wait_drained(js, name, Duration::from_secs(300)).await
}

/// One node, no-op handler, crash-loop counting off.
fn bridged_round(
    rt: &tokio::runtime::Runtime,
    client: &async_nats::Client,
    url: &str,
    n: u32,
    latency: Option<Hist>,
    round: u32,
    partitions: u32,
) -> Result<Duration, String> {
    let ns = format!("bench{round}");
    let cluster = Cluster {
        partitions,
        ..Cluster::namespaced(&ns)
    };
    let js = jetstream::new(client.clone());
    rt.block_on(setup::remove(&js, &cluster));
    let producer = rt
        .block_on(Producer::<Task>::new(client.clone(), cluster.clone()))
        .map_err(|e| e.to_string())?;
    let publish = |t: Task| {
        let producer = &producer;
        async move {
            producer
                .publish(t.job())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    if latency.is_none() {
        rt.block_on(fill(n, None, publish))?;
    }
    let start = Instant::now();
    let settings = NodeSettings {
        name: format!("bench-{round}"),
        crash_limit: None,
        ..NodeSettings::default()
    };
    let h = latency.clone();
    let node = Node::builder::<Task>(url, cluster.clone(), settings)
        .start(move |_tok, t: Arc<Task>| {
            if let Some(h) = &h {
                h.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(scenario::now_us().saturating_sub(t.sent_us).max(1));
            }
            async { Ok(()) }
        })
        .map_err(|e| e.to_string())?;
    if latency.is_some() {
        rt.block_on(fill(n, latency.clone(), publish))?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while node.stats().acked < u64::from(n) {
        if Instant::now() > deadline {
            return Err(format!(
                "bridged round: {} of {n} acked after 300 s",
                node.stats().acked
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    rt.block_on(wait_empty(&js, &cluster.stream))?;
    let elapsed = start.elapsed();
    node.shutdown();
    rt.block_on(setup::remove(&js, &cluster));
    Ok(elapsed)
}
