//! A sign-up web service over quay: axum in front, three lanes behind.
//!
//! `cargo run --release --features metrics,serde --example signup_server [PORT] [--inline]`
//!
//! - `POST /signup` with `{"email": …, "name": …}` and an `Idempotency-Key`
//!   header creates the account inline (in memory, idempotent by the key),
//!   answers at once, and drops three jobs into quay: a welcome email
//!   (lane `email`, keyed by user), an avatar resize (lane `resize`) and an
//!   analytics event (lane `analytics`). Each job's ID is the idempotency
//!   key plus its kind, so a client's retry is a duplicate in quay and no
//!   job runs twice. When quay has no room within a short wait, the answer
//!   is `503` with `Retry-After`.
//! - `GET /metrics`: every lane's counters and gauges, Prometheus text.
//! - `GET /dead`: every lane's dead letters, JSON.
//!
//! The port comes from the first argument, else `PORT`, else 3000. With
//! `--inline` the request does the three jobs' work itself before it
//! answers (the baseline of `docs/signup-server.md`'s latency figure).
//! Ctrl-C stops accepting connections, drains quay, and prints the
//! accounting of every job; the exit code is 1 if a job was lost or ran
//! twice.
//!
//! The code is in four files:
//!
//! - `main.rs` (this one): the settings, [`app`] that assembles the
//!   service, and the binary (arguments, serving, the accounting at exit);
//! - `lanes.rs`: the quay side: jobs, their simulated work, the runtime and
//!   its three lanes;
//! - `state.rs`: the handlers' shared state: accounts, lanes, counters;
//! - `routes.rs`: the axum handlers.
//!
//! `tests/signup_server.rs` includes this file as a module and drives
//! [`app`] over real HTTP. The `#[path]` attributes below name each
//! module's file relative to this one, so the modules load the same way
//! whether this file is the example's crate root or the test's module.

#[path = "lanes.rs"]
mod lanes;
#[path = "routes.rs"]
mod routes;
#[path = "state.rs"]
mod state;

// What the test uses, and `Config`'s field types.
pub use lanes::{job_id, Latch, Work, LANES};
pub use state::AppState;

use axum::Router;
use quay::BuildError;
use std::time::Duration;

/// The service's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Email workers. The email handler is async (it mostly waits), so one
    /// worker serves many emails at once: see `email_concurrency`.
    pub email_workers: usize,
    /// Emails each email worker has in flight at once.
    pub email_concurrency: usize,
    /// Jobs each lane may hold (queued and running) before a submit waits.
    pub email_capacity: u64,
    /// See `email_capacity`.
    pub resize_capacity: u64,
    /// See `email_capacity`.
    pub analytics_capacity: u64,
    /// How long a request waits for room in quay, for all three of its
    /// jobs together, before it answers 503.
    pub submit_timeout: Duration,
    /// The `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u64,
    /// Simulated work.
    pub work: Work,
    /// Do the work inside the request instead of submitting it.
    pub inline: bool,
    /// A latch every handler waits behind before it works, while it is
    /// closed: lets a test (or a demo) hold the workers and fill quay.
    pub hold: Option<Latch>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            email_workers: 1,
            email_concurrency: 64,
            email_capacity: 4_096,
            resize_capacity: 1_024,
            analytics_capacity: 8_192,
            submit_timeout: Duration::from_millis(50),
            retry_after_secs: 1,
            work: Work::default(),
            inline: false,
            hold: None,
        }
    }
}

/// Builds the lanes and the router. The caller serves the router and, when
/// it is done serving, calls [`AppState::shutdown`] (while the tokio
/// runtime still runs: the email lane's attempts in flight need its
/// timers to finish).
///
/// # Panics
///
/// Outside a tokio runtime: the email lane's async handler runs in the
/// context of the runtime that calls `app`.
pub fn app(config: Config) -> Result<(Router, AppState), BuildError> {
    let tokio = tokio::runtime::Handle::try_current()
        .expect("signup_server::app is called inside a tokio runtime");
    let lanes = lanes::Lanes::start(&config, tokio)?;
    let state = AppState::new(config, lanes);
    Ok((routes::router(state.clone()), state))
}

// ---------------------------------------------------------------------------
// The binary

fn parse_args() -> Result<(u16, bool), String> {
    let mut port = None;
    let mut inline = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--inline" => inline = true,
            "-h" | "--help" => {
                println!(
                    "usage: signup_server [PORT] [--inline]   (PORT also from $PORT; default 3000)"
                );
                std::process::exit(0);
            }
            p => port = Some(p.parse().map_err(|_| format!("not a port: {p:?}"))?),
        }
    }
    let port = match (port, std::env::var("PORT")) {
        (Some(p), _) => p,
        (None, Ok(p)) => p
            .parse()
            .map_err(|_| format!("PORT is not a port: {p:?}"))?,
        (None, Err(_)) => 3000,
    };
    Ok((port, inline))
}

#[tokio::main]
async fn main() {
    let (port, inline) = parse_args().unwrap_or_else(|e| {
        eprintln!("signup_server: {e}");
        std::process::exit(2)
    });
    let config = Config {
        inline,
        ..Config::default()
    };
    let (router, state) = app(config).expect("the lanes start");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| {
            eprintln!("signup_server: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1)
        });
    let addr = listener.local_addr().expect("a bound address");
    let mode = if inline {
        "inline: the request does the work"
    } else {
        "queue: the work goes to quay"
    };
    println!("signup_server listening on http://{addr} ({mode}); Ctrl-C to stop");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("the server runs");

    println!("\nstopping: draining quay");
    let s = state.clone();
    let report = tokio::task::spawn_blocking(move || s.shutdown())
        .await
        .expect("the shutdown finishes");
    let ledger = state.ledger();
    println!("lane        accepted completed  dead returned duplicates   ran conserved");
    for l in report.lanes() {
        let c = l.counts;
        println!(
            "{:<10} {:>9} {:>9} {:>5} {:>8} {:>10} {:>5} {:>9}",
            l.name,
            c.accepted,
            c.completed,
            c.dead,
            c.returned,
            c.duplicates,
            ledger.jobs(&l.name),
            c.is_conserved()
        );
    }
    let twice = ledger.ran_twice();
    println!("jobs that ran twice: {twice}");
    if !report.is_conserved() || twice > 0 {
        eprintln!("signup_server: the accounting does not add up");
        std::process::exit(1);
    }
}
