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
//! `tests/signup_server.rs` includes this file as a module and drives
//! [`app`] over real HTTP.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use quay::{
    BuildError, Engine, Job, JobError, JobId, Lane, Runtime, RuntimeShutdown, SubmitError,
    Submitted,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Configuration

/// How long each simulated job takes.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// The welcome email's SMTP round trip: the worker waits, idle.
    pub email_io: Duration,
    /// The avatar resize: the worker computes.
    pub resize_cpu: Duration,
    /// The analytics event: a short computation.
    pub analytics_cpu: Duration,
}

impl Default for Work {
    fn default() -> Work {
        Work {
            email_io: Duration::from_millis(2),
            resize_cpu: Duration::from_millis(1),
            analytics_cpu: Duration::from_micros(100),
        }
    }
}

/// The service's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Email workers: the handler mostly waits, so more than the cores.
    pub email_workers: usize,
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
            email_workers: 4,
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

/// A gate that starts closed; `open` lets every waiter through, for good.
#[derive(Clone, Debug, Default)]
pub struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    /// A closed latch.
    pub fn new() -> Latch {
        Latch::default()
    }

    /// Opens the latch: waiters go on, and later ones do not wait.
    pub fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Waits until the latch is open.
    pub fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut g = open.lock().unwrap();
        while !*g {
            g = cv.wait(g).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Jobs and their (simulated) work

/// The welcome email's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Email {
    /// The account's ID.
    pub user: u64,
    /// The address.
    pub to: String,
    /// The name to greet.
    pub name: String,
}

/// The avatar resize's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Resize {
    /// The account's ID.
    pub user: u64,
    /// The target width and height.
    pub size: u32,
}

/// The analytics event's payload.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// The account's ID.
    pub user: u64,
    /// What happened.
    pub kind: &'static str,
}

/// The lanes, by name, in the order they are added and reported.
pub const LANES: [&str; 3] = ["email", "resize", "analytics"];

/// A job's ID: the request's idempotency key and the job's kind, so a
/// retried request gives the same three IDs.
pub fn job_id(idempotency_key: &str, lane: &str) -> JobId {
    JobId::from(format!("{idempotency_key}:{lane}"))
}

/// Every run of a job's side effect, by lane and job ID: the audit that
/// shows no job ran twice.
#[derive(Debug, Default)]
pub struct Ledger {
    runs: Mutex<HashMap<(&'static str, JobId), u32>>,
}

impl Ledger {
    fn record(&self, lane: &'static str, id: JobId) {
        *self.runs.lock().unwrap().entry((lane, id)).or_insert(0) += 1;
    }

    /// How many times the job with this ID ran in this lane.
    pub fn runs(&self, lane: &str, id: JobId) -> u32 {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .find(|((l, i), _)| *l == lane && *i == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Jobs that ran in this lane (each counted once however often it ran).
    pub fn jobs(&self, lane: &str) -> u64 {
        let runs = self.runs.lock().unwrap();
        runs.keys().filter(|(l, _)| *l == lane).count() as u64
    }

    /// Jobs that ran more than once, in any lane.
    pub fn ran_twice(&self) -> u64 {
        let runs = self.runs.lock().unwrap();
        runs.values().filter(|n| **n > 1).count() as u64
    }
}

/// Busy work for about `d` of CPU (or of wall time, on a preempted core).
fn burn(d: Duration) {
    let end = Instant::now() + d;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while Instant::now() < end {
        for _ in 0..64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
    }
    std::hint::black_box(x);
}

/// Whether the mail server takes the email: an address with "bounce" in it
/// is refused for good, and the job goes to the dead-letter queue.
fn email_verdict(e: &Email) -> Result<(), JobError> {
    if e.to.contains("bounce") {
        return Err(JobError::fatal(format!("mailbox {} bounced", e.to)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The application

/// An account, created inline by `POST /signup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The account's ID.
    pub id: u64,
    /// Its email address.
    pub email: String,
    /// Its name.
    pub name: String,
}

/// `POST /signup`'s body.
#[derive(Clone, Debug, Deserialize)]
pub struct SignupRequest {
    /// The email address.
    pub email: String,
    /// The name.
    pub name: String,
}

/// The shared state of the handlers: the accounts, quay's lanes, the
/// Prometheus recorder. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    /// Accounts by idempotency key.
    accounts: Mutex<HashMap<String, Account>>,
    next_user: AtomicU64,
    runtime: Runtime,
    email: Lane<Email>,
    resize: Lane<Resize>,
    analytics: Lane<Event>,
    ledger: Arc<Ledger>,
    /// This service's own recorder (see `metrics`).
    recorder: PrometheusRecorder,
    prometheus: PrometheusHandle,
    /// Responses to `POST /signup`: created, replayed, refused with 503.
    created: AtomicU64,
    replayed: AtomicU64,
    unavailable: AtomicU64,
}

impl AppState {
    /// The lanes' runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.0.runtime
    }

    /// The audit of every job's runs.
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// Waits (blocking) until no lane holds a job, or `timeout` passes.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.0.runtime.wait_idle(timeout)
    }

    /// Closes every lane, runs what they hold, and reports (blocking).
    pub fn shutdown(&self) -> RuntimeShutdown {
        self.0.runtime.shutdown()
    }
}

/// Builds the lanes and the router. The caller serves the router and, when
/// it is done serving, calls [`AppState::shutdown`].
pub fn app(config: Config) -> Result<(Router, AppState), BuildError> {
    let runtime = Runtime::new();
    let ledger = Arc::new(Ledger::default());
    let work = config.work;
    // Unpinned: this process's cores are shared with tokio's threads, and a
    // pin would not keep them away.
    let (l, hold) = (ledger.clone(), config.hold.clone());
    let email = runtime.add_lane(
        "email",
        Engine::<Email>::builder()
            .workers(config.email_workers)
            .pin_workers(false)
            .capacity(config.email_capacity),
        move |ctx, e: &Email| {
            if let Some(h) = &hold {
                h.wait();
            }
            l.record("email", ctx.id());
            std::thread::sleep(work.email_io); // the SMTP round trip
            email_verdict(e)
        },
    )?;
    let (l, hold) = (ledger.clone(), config.hold.clone());
    let resize = runtime.add_lane(
        "resize",
        Engine::<Resize>::builder()
            .workers(1)
            .pin_workers(false)
            .capacity(config.resize_capacity),
        move |ctx, _: &Resize| {
            if let Some(h) = &hold {
                h.wait();
            }
            l.record("resize", ctx.id());
            burn(work.resize_cpu);
            Ok(())
        },
    )?;
    let (l, hold) = (ledger.clone(), config.hold.clone());
    let analytics = runtime.add_lane(
        "analytics",
        Engine::<Event>::builder()
            .workers(1)
            .pin_workers(false)
            .capacity(config.analytics_capacity),
        move |ctx, _: &Event| {
            if let Some(h) = &hold {
                h.wait();
            }
            l.record("analytics", ctx.id());
            burn(work.analytics_cpu);
            Ok(())
        },
    )?;
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let state = AppState(Arc::new(Inner {
        config,
        accounts: Mutex::new(HashMap::new()),
        next_user: AtomicU64::new(1),
        runtime,
        email,
        resize,
        analytics,
        ledger,
        recorder,
        prometheus,
        created: AtomicU64::new(0),
        replayed: AtomicU64::new(0),
        unavailable: AtomicU64::new(0),
    }));
    let router = Router::new()
        .route("/signup", post(signup))
        .route("/metrics", get(metrics))
        .route("/dead", get(dead))
        .with_state(state.clone());
    Ok((router, state))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// What became of a job in this request, as the response says it.
fn outcome(s: Submitted) -> &'static str {
    match s {
        Submitted::Accepted => "accepted",
        Submitted::Duplicate => "duplicate",
    }
}

/// Submits `job` to `lane`, waiting for room until `deadline`. On `Err`
/// the job was not handed to quay: the future that held it was dropped, or
/// quay refused it.
async fn offer<T: Send + 'static>(
    lane: &Lane<T>,
    job: Job<T>,
    deadline: tokio::time::Instant,
) -> Result<Submitted, &'static str> {
    match tokio::time::timeout_at(deadline, lane.submit_async(job)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(SubmitError::ShuttingDown(_))) => Err("shutting down"),
        Ok(Err(SubmitError::Full(_) | SubmitError::Timeout(_))) => Err("full"),
        Err(_elapsed) => Err("full"),
    }
}

/// `POST /signup`.
///
/// The account is created (or, for a key seen before, found) first; then
/// the three jobs are submitted in turn, waiting for room together for at
/// most `submit_timeout`. When quay stays full the answer is `503` with
/// `Retry-After`, even if some of the jobs were accepted: partial
/// acceptance is fine, because the client's retry with the same
/// `Idempotency-Key` finds the same account, and the jobs already accepted
/// are duplicates in quay (their IDs derive from the key), so only the
/// missing ones are added and none runs twice. The 503's body lists what
/// was accepted. This holds while quay remembers the IDs: for the dedup
/// window (5 minutes by default) after a job finishes.
async fn signup(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SignupRequest>, JsonRejection>,
) -> Response {
    let key = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        None => return error(StatusCode::BAD_REQUEST, "missing Idempotency-Key header"),
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= 255 => k.trim().to_string(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        }
    };
    let req = match body {
        Ok(Json(r)) => r,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad JSON body: {}", rejection.body_text()),
            )
        }
    };
    if !req.email.contains('@') || req.name.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "email must be an address and name must not be empty",
        );
    }

    // The essential work, inline: the account.
    let (account, replayed) = {
        let mut accounts = app.0.accounts.lock().unwrap();
        match accounts.get(&key) {
            Some(a) if a.email != req.email || a.name != req.name => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used with a different body",
                )
            }
            Some(a) => (a.clone(), true),
            None => {
                let a = Account {
                    id: app.0.next_user.fetch_add(1, Ordering::Relaxed),
                    email: req.email,
                    name: req.name,
                };
                accounts.insert(key.clone(), a.clone());
                (a, false)
            }
        }
    };
    let counter = if replayed {
        &app.0.replayed
    } else {
        &app.0.created
    };
    counter.fetch_add(1, Ordering::Relaxed);

    let jobs = if app.0.config.inline {
        inline_work(&app, &key, &account, replayed).await
    } else {
        match submit_jobs(&app, &key, &account).await {
            Ok(jobs) => jobs,
            Err((lane, why, jobs)) => {
                app.0.unavailable.fetch_add(1, Ordering::Relaxed);
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "error": format!(
                            "job queue {why} (lane {lane}): retry with the same Idempotency-Key"
                        ),
                        "account": account,
                        "jobs": jobs,
                    })),
                )
                    .into_response();
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(app.0.config.retry_after_secs),
                );
                return r;
            }
        }
    };
    Json(json!({ "account": account, "replayed": replayed, "jobs": jobs })).into_response()
}

type Outcomes = BTreeMap<&'static str, &'static str>;

/// Drops the three jobs into quay. On a refusal, stops and says which lane
/// refused, why, and what was accepted before it.
async fn submit_jobs(
    app: &AppState,
    key: &str,
    a: &Account,
) -> Result<Outcomes, (&'static str, &'static str, Outcomes)> {
    let s = &app.0;
    let deadline = tokio::time::Instant::now() + s.config.submit_timeout;
    let mut jobs = Outcomes::new();
    let email = Email {
        user: a.id,
        to: a.email.clone(),
        name: a.name.clone(),
    };
    // Keyed by user: a user's emails go out one at a time, in order.
    let job = Job::new(job_id(key, "email"), email).keyed(a.id);
    match offer(&s.email, job, deadline).await {
        Ok(o) => jobs.insert("email", outcome(o)),
        Err(why) => return Err(("email", why, jobs)),
    };
    let job = Job::new(
        job_id(key, "resize"),
        Resize {
            user: a.id,
            size: 256,
        },
    );
    match offer(&s.resize, job, deadline).await {
        Ok(o) => jobs.insert("resize", outcome(o)),
        Err(why) => return Err(("resize", why, jobs)),
    };
    let job = Job::new(
        job_id(key, "analytics"),
        Event {
            user: a.id,
            kind: "signup",
        },
    );
    match offer(&s.analytics, job, deadline).await {
        Ok(o) => jobs.insert("analytics", outcome(o)),
        Err(why) => return Err(("analytics", why, jobs)),
    };
    Ok(jobs)
}

/// `--inline`: the request does the work itself, as a service without a
/// queue would. The email's wait is an async sleep (it holds no thread);
/// the CPU work runs on the request's own thread. A replayed request does
/// nothing again.
async fn inline_work(app: &AppState, key: &str, a: &Account, replayed: bool) -> Outcomes {
    let mut jobs = Outcomes::new();
    if replayed {
        for lane in LANES {
            jobs.insert(lane, "duplicate");
        }
        return jobs;
    }
    let s = &app.0;
    let work = s.config.work;
    let email = Email {
        user: a.id,
        to: a.email.clone(),
        name: a.name.clone(),
    };
    s.ledger.record("email", job_id(key, "email"));
    tokio::time::sleep(work.email_io).await;
    let sent = if email_verdict(&email).is_ok() {
        "done"
    } else {
        "failed"
    };
    jobs.insert("email", sent);
    s.ledger.record("resize", job_id(key, "resize"));
    burn(work.resize_cpu);
    jobs.insert("resize", "done");
    s.ledger.record("analytics", job_id(key, "analytics"));
    burn(work.analytics_cpu);
    jobs.insert("analytics", "done");
    jobs
}

/// `GET /metrics`: quay's counters and gauges per lane (`quay_accepted{lane="email"}`, …)
/// and this service's own, in Prometheus's text format.
///
/// The recorder is this app's own, not the process-global one: quay's
/// `publish` writes through the `metrics` facade, and
/// `metrics::with_local_recorder` points the facade at it for the call. Two
/// apps in one process (as in the tests) then never mix their figures. A
/// service that installs a global recorder
/// (`PrometheusBuilder::new().install_recorder()`) just calls `publish()`.
async fn metrics(State(app): State<AppState>) -> Response {
    let s = &app.0;
    let snapshot = s.runtime.metrics();
    metrics::with_local_recorder(&s.recorder, || {
        snapshot.publish();
        for (outcome, n) in [
            ("created", &s.created),
            ("replayed", &s.replayed),
            ("unavailable", &s.unavailable),
        ] {
            metrics::counter!("signup_requests", "outcome" => outcome)
                .absolute(n.load(Ordering::Relaxed));
        }
    });
    s.prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

/// One dead letter, as `GET /dead` shows it.
#[derive(Serialize)]
struct DeadView {
    id: String,
    attempts: u32,
    errors: Vec<String>,
    payload: serde_json::Value,
}

fn dead_of<T: Clone + Send + Serialize + 'static>(lane: &Lane<T>) -> Vec<DeadView> {
    lane.dead_letters()
        .into_iter()
        .map(|d| DeadView {
            id: d.job.id().to_string(),
            attempts: d.attempts,
            errors: d.errors,
            payload: serde_json::to_value(d.job.payload()).unwrap_or_default(),
        })
        .collect()
}

/// `GET /dead`: each lane's dead-letter queue, oldest first.
async fn dead(State(app): State<AppState>) -> Response {
    let s = &app.0;
    Json(json!({
        "email": dead_of(&s.email),
        "resize": dead_of(&s.resize),
        "analytics": dead_of(&s.analytics),
    }))
    .into_response()
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
