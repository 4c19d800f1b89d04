//! A load generator for the signup_server example: N sign-ups at a fixed
//! rate, each with its own `Idempotency-Key`, and their latency in an
//! HdrHistogram.
//!
//! ```sh
//! cargo run --release --features metrics,serde --example signup_server -- 3000 &
//! cargo run --release --example signup_load -- --rate 200 --requests 6000
//! ```
//!
//! Open loop: request `i` is due at `start + i / rate` whether or not
//! earlier ones have answered, so a slow server meets more concurrent
//! requests instead of a slower client. A request's latency runs from the
//! moment it is sent to the end of its response's body. The schedule lag
//! (how late the client sent it, tokio's timer having millisecond ticks)
//! is reported beside it: where it is large, the figures say more about
//! the client than about the server. The first `--warmup` requests open the
//! connections and are not counted.
//!
//! Flags: `--url` (default `http://127.0.0.1:3000`), `--rate` (requests per
//! second, default 200), `--requests` (default 4000), `--warmup` (default
//! 10% of the requests).

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    rate: f64,
    requests: u64,
    warmup: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:3000".to_string(),
        rate: 200.0,
        requests: 4_000,
        warmup: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("usage: signup_load [--url URL] [--rate PER_S] [--requests N] [--warmup N]");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: bad value {value:?}");
        match flag.as_str() {
            "--url" => a.url = value.trim_end_matches('/').to_string(),
            "--rate" => a.rate = value.parse().map_err(|_| bad())?,
            "--requests" => a.requests = value.parse().map_err(|_| bad())?,
            "--warmup" => a.warmup = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !(a.rate > 0.0 && a.rate.is_finite()) || a.requests == 0 {
        return Err("--rate and --requests must be positive".into());
    }
    Ok(a)
}

/// What became of one request.
struct Sample {
    index: u64,
    /// The HTTP status, or `None` if the request failed.
    status: Option<u16>,
    latency: Duration,
    lag: Duration,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, u64::MAX as u128) as u64
}

fn row(name: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        println!("{name:<28} (no samples)");
        return;
    }
    let ms = |v: u64| v as f64 / 1e3;
    println!(
        "{name:<28} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    );
}

// One thread: the client should take as little as it can of the cores it
// shares with the server.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("signup_load: {e}");
        std::process::exit(2)
    });
    let warmup = args.warmup.unwrap_or(args.requests / 10);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let url = format!("{}/signup", args.url);
    // Keys unique to this run, so a second run against the same server
    // creates accounts instead of replaying.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());

    println!(
        "signup_load: {} requests at {}/s to {url} (the first {warmup} not counted)",
        args.requests, args.rate
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    for i in 0..args.requests {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let lag = sent.saturating_duration_since(due.into_std());
            let body = serde_json::json!({
                "email": format!("load{i}@example.com"),
                "name": "Load",
            });
            let answer = client
                .post(&url)
                .header("Idempotency-Key", format!("load-{run}-{i}"))
                .json(&body)
                .send()
                .await;
            let status = match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    r.bytes().await.ok().map(|_| status)
                }
                Err(_) => None,
            };
            let _ = tx.send(Sample {
                index: i,
                status,
                latency: sent.elapsed(),
                lag,
            });
        });
    }
    drop(tx);
    let wall = start.elapsed();

    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let (mut ok, mut busy, mut lag) = (new_hist(), new_hist(), new_hist());
    let (mut n200, mut n503, mut other, mut failed) = (0u64, 0u64, 0u64, 0u64);
    while let Some(s) = rx.recv().await {
        if s.index < warmup {
            continue;
        }
        lag.saturating_record(micros(s.lag));
        match s.status {
            Some(200) => {
                n200 += 1;
                ok.saturating_record(micros(s.latency));
            }
            Some(503) => {
                n503 += 1;
                busy.saturating_record(micros(s.latency));
            }
            Some(_) => other += 1,
            None => failed += 1,
        }
    }
    println!(
        "sent in {:.2} s ({:.0}/s offered); counted: 200 x {n200}, 503 x {n503}, other x {other}, failed x {failed}",
        wall.as_secs_f64(),
        args.requests as f64 / wall.as_secs_f64()
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)", "p50", "p90", "p99", "p99.9", "max"
    );
    row("latency of the 200s", &ok);
    if n503 > 0 {
        row("latency of the 503s", &busy);
    }
    row("schedule lag (client)", &lag);
    if failed > 0 || other > 0 {
        std::process::exit(1);
    }
}
