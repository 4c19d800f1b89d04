//! The HTTP side: the router and its axum handlers. `POST /signup` checks
//! its input, finds or creates the account, and submits the three jobs
//! under one deadline (or, with `--inline`, does their work itself);
//! `GET /metrics` renders quay's and the service's figures; `GET /dead`
//! lists the dead letters.

use super::lanes::{burn, email_verdict, job_id, Email, Event, Resize, LANES};
use super::state::{Account, AppState, KeyReused, SignupRequest};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use quay::{Job, Lane, SubmitError, Submitted};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The service's routes over `state`.
pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/signup", post(signup))
        .route("/metrics", get(metrics))
        .route("/dead", get(dead))
        .with_state(state)
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
    let (account, replayed) = match app.find_or_create(&key, req) {
        Ok(found) => found,
        Err(KeyReused) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used with a different body",
            )
        }
    };

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
    match offer(&s.lanes.email, job, deadline).await {
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
    match offer(&s.lanes.resize, job, deadline).await {
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
    match offer(&s.lanes.analytics, job, deadline).await {
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
    let ledger = app.ledger();
    let email = Email {
        user: a.id,
        to: a.email.clone(),
        name: a.name.clone(),
    };
    ledger.record("email", job_id(key, "email"));
    tokio::time::sleep(work.email_io).await;
    let sent = if email_verdict(&email).is_ok() {
        "done"
    } else {
        "failed"
    };
    jobs.insert("email", sent);
    ledger.record("resize", job_id(key, "resize"));
    burn(work.resize_cpu);
    jobs.insert("resize", "done");
    ledger.record("analytics", job_id(key, "analytics"));
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
    let snapshot = s.lanes.runtime.metrics();
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
        "email": dead_of(&s.lanes.email),
        "resize": dead_of(&s.lanes.resize),
        "analytics": dead_of(&s.lanes.analytics),
    }))
    .into_response()
}
