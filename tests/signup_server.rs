//! The signup_server example over real HTTP: a server on an ephemeral
//! loopback port, a reqwest client.
//!
//! The example is included as a module rather than run as a child process:
//! the test then holds what it must control or inspect directly, namely
//! the latch the handlers wait behind (to fill quay deterministically),
//! the ledger of each job's runs, and the runtime's shutdown report per
//! lane. A child process could show these only through test-only endpoints
//! or its output. The HTTP path is still the real one: a TCP listener,
//! axum's server, reqwest.
//!
//! No assertion depends on timing: waits are bounded (`wait_idle` with a
//! minute's limit) but only a failure to finish ever reaches the bound.

#[allow(dead_code)]
#[path = "../examples/signup_server/main.rs"]
mod signup_server;

use quay::RuntimeShutdown;
use serde_json::{json, Value};
use signup_server::{app, job_id, AppState, Config, Latch, LANES};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    base: String,
    state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(config: Config) -> Server {
    let (router, state) = app(config).expect("the lanes start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("an ephemeral port");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("the server runs");
    });
    Server {
        base: format!("http://{addr}"),
        state,
        stop,
        task,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until no lane holds a job (a minute at most: only a hang
    /// reaches it).
    async fn idle(&self) {
        let s = self.state.clone();
        let idle = tokio::task::spawn_blocking(move || s.wait_idle(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(idle, "quay did not become idle within a minute");
    }

    /// Stops serving, then shuts quay down gracefully.
    async fn stop(self) -> RuntimeShutdown {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        let s = self.state.clone();
        tokio::task::spawn_blocking(move || s.shutdown())
            .await
            .unwrap()
    }
}

async fn signup(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    email: &str,
    name: &str,
) -> reqwest::Response {
    client
        .post(server.url("/signup"))
        .header("Idempotency-Key", key)
        .json(&json!({ "email": email, "name": name }))
        .send()
        .await
        .expect("the server answers")
}

/// The value of the series `name{labels}` (exactly these labels) in a
/// Prometheus text exposition.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (n, l) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let got: Vec<(&str, &str)> = l
            .split(',')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if got.len() == labels.len() && labels.iter().all(|want| got.contains(want)) {
            return value.parse().ok();
        }
    }
    None
}

fn assert_conserved(report: &RuntimeShutdown) {
    for l in report.lanes() {
        let c = l.counts;
        assert_eq!(
            c.accepted,
            c.completed + c.dead + c.returned,
            "lane {}: {c:?}",
            l.name
        );
        assert_eq!(c.held, 0, "lane {}", l.name);
    }
    assert!(report.is_conserved());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_retry_metrics_and_dead_letters() {
    let server = start(Config::default()).await;
    let client = reqwest::Client::new();
    let ledger = || server.state.ledger();

    // Refusals: no key, bad JSON, not an address.
    let r = client
        .post(server.url("/signup"))
        .json(&json!({ "email": "ada@example.com", "name": "Ada" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("Idempotency-Key"));
    let r = client
        .post(server.url("/signup"))
        .header("Idempotency-Key", "k-bad")
        .header("Content-Type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("bad JSON"),
        "{body}"
    );
    let r = signup(&client, &server, "k-bad", "nobody", "Nobody").await;
    assert_eq!(r.status(), 400);

    // (1) A signup: 200 at once, and its three jobs run.
    let r = signup(&client, &server, "k-ada", "ada@example.com", "Ada").await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["replayed"], false);
    assert_eq!(
        first["jobs"],
        json!({ "email": "accepted", "resize": "accepted", "analytics": "accepted" })
    );
    server.idle().await;
    for lane in LANES {
        assert_eq!(ledger().runs(lane, job_id("k-ada", lane)), 1, "{lane}");
    }

    // (2) The client retries with the same key: the same account, 200, and
    // every job a duplicate: nothing runs twice.
    let r = signup(&client, &server, "k-ada", "ada@example.com", "Ada").await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["account"], first["account"]);
    assert_eq!(again["replayed"], true);
    assert_eq!(
        again["jobs"],
        json!({ "email": "duplicate", "resize": "duplicate", "analytics": "duplicate" })
    );
    // The same key with another body is refused.
    let r = signup(&client, &server, "k-ada", "eve@example.com", "Eve").await;
    assert_eq!(r.status(), 422);

    // (5) A bounced email ends in the email lane's DLQ.
    let r = signup(&client, &server, "k-bounce", "bounce@example.com", "Bo").await;
    assert_eq!(r.status(), 200);
    server.idle().await;
    for key in ["k-ada", "k-bounce"] {
        for lane in LANES {
            assert_eq!(ledger().runs(lane, job_id(key, lane)), 1, "{key} {lane}");
        }
    }
    let dead: Value = client
        .get(server.url("/dead"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let emails = dead["email"].as_array().expect("the email lane's DLQ");
    assert_eq!(emails.len(), 1, "{dead}");
    assert_eq!(
        emails[0]["id"],
        job_id("k-bounce", "email").to_string(),
        "{dead}"
    );
    assert_eq!(emails[0]["attempts"], 1);
    assert_eq!(emails[0]["payload"]["to"], "bounce@example.com");
    assert!(
        emails[0]["errors"][0].as_str().unwrap().contains("bounced"),
        "{dead}"
    );
    assert_eq!(dead["resize"], json!([]));
    assert_eq!(dead["analytics"], json!([]));

    // (4) /metrics shows the counts, per lane.
    let r = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let m = |name: &str, lane: &str| {
        metric(&text, name, &[("lane", lane)]).unwrap_or_else(|| panic!("{name} {lane}:\n{text}"))
    };
    for lane in LANES {
        assert_eq!(m("quay_accepted", lane), 2.0, "{lane}");
        assert_eq!(m("quay_duplicates", lane), 1.0, "{lane}");
        assert_eq!(m("quay_held", lane), 0.0, "{lane}");
    }
    assert_eq!(m("quay_completed", "email"), 1.0);
    assert_eq!(m("quay_dead", "email"), 1.0);
    assert_eq!(m("quay_dead_letters", "email"), 1.0);
    assert_eq!(m("quay_completed", "resize"), 2.0);
    assert_eq!(m("quay_completed", "analytics"), 2.0);
    assert_eq!(
        metric(&text, "signup_requests", &[("outcome", "created")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "signup_requests", &[("outcome", "replayed")]),
        Some(1.0)
    );

    drop(client);
    let report = server.stop().await;
    assert_conserved(&report);
    let email = report.lane("email").unwrap().counts;
    assert_eq!((email.accepted, email.completed, email.dead), (2, 1, 1));
    assert_eq!(report.lane("resize").unwrap().counts.completed, 2);
    assert_eq!(report.lane("analytics").unwrap().counts.completed, 2);
}

/// (3) Handlers held behind a latch, lanes of tiny capacity: a burst of
/// signups must fill quay, whatever the timing, and some get 503 with
/// `Retry-After`. Once the latch opens, each refused signup is retried with
/// its key: the jobs accepted before are duplicates, the rest are added,
/// and in the end every signup's three jobs ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_a_retry_completes_the_signup() {
    let latch = Latch::new();
    let server = start(Config {
        email_workers: 1,
        // The resize lane fills first, so some signups are refused after
        // their email was accepted: partial acceptance.
        email_capacity: 4,
        resize_capacity: 2,
        analytics_capacity: 4,
        submit_timeout: Duration::from_millis(100),
        hold: Some(latch.clone()),
        ..Config::default()
    })
    .await;
    let client = reqwest::Client::new();

    // With the latch closed nothing finishes, so at most 2 signups can have
    // all three jobs accepted (the resize lane's capacity): the other 10
    // must be refused.
    const BURST: usize = 12;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let (client, url) = (client.clone(), server.url("/signup"));
        burst.spawn(async move {
            let key = format!("burst-{i}");
            let r = client
                .post(url)
                .header("Idempotency-Key", &key)
                .json(&json!({ "email": format!("user{i}@example.com"), "name": "Burst" }))
                .send()
                .await
                .expect("the server answers");
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap();
            (key, status, retry_after, body)
        });
    }
    let mut answers = Vec::new();
    while let Some(a) = burst.join_next().await {
        answers.push(a.unwrap());
    }
    let mut accepted = [0u64; 3];
    let mut refused = Vec::new();
    for (key, status, retry_after, body) in &answers {
        match status {
            200 => assert_eq!(
                body["jobs"],
                json!({ "email": "accepted", "resize": "accepted", "analytics": "accepted" }),
                "{key}"
            ),
            503 => {
                let secs: u64 = retry_after
                    .as_deref()
                    .expect("a 503 has Retry-After")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!(secs >= 1);
                assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
                refused.push((key.clone(), body["jobs"].clone()));
            }
            other => panic!("{key}: status {other}: {body}"),
        }
        for (i, lane) in LANES.iter().enumerate() {
            if body["jobs"][lane] == "accepted" {
                accepted[i] += 1;
            }
        }
    }
    let ok = BURST - refused.len();
    assert!(
        ok <= 2,
        "{ok} signups fully accepted with resize capacity 2"
    );
    // What the answers say was accepted is what quay accepted.
    for (i, lane) in LANES.iter().enumerate() {
        let (_, c) = server
            .state
            .runtime()
            .counts()
            .into_iter()
            .find(|(n, _)| n == lane)
            .unwrap();
        assert_eq!(c.accepted, accepted[i], "{lane}");
        assert_eq!(c.completed + c.dead, 0, "{lane}: the latch holds every job");
    }
    // Exactly so, whatever the timing: every signup tries its email (a
    // submit tries at once, before its wait can time out) and nothing
    // frees room, so the first 4 emails are accepted; those 4 signups try
    // their resize and 2 get in; those 2 add their analytics. The other 2
    // of the 4 were accepted in part: their email only. The async email
    // lane changes nothing here: its worker may start all 4 emails at once
    // (concurrency 64), but an attempt in flight still holds its place in
    // the capacity, and each one waits for the latch without finishing.
    assert_eq!(accepted, [4, 2, 2]);
    let partial: Vec<&str> = refused
        .iter()
        .filter(|(_, jobs)| jobs["email"] == "accepted")
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(partial.len(), 2, "{refused:?}");

    // Open the latch: the held jobs run. Each refused signup is retried
    // once quay is idle, so it has room whatever the timing.
    latch.open();
    for (key, before) in &refused {
        server.idle().await;
        let i: usize = key.trim_start_matches("burst-").parse().unwrap();
        let r = signup(
            &client,
            &server,
            key,
            &format!("user{i}@example.com"),
            "Burst",
        )
        .await;
        assert_eq!(r.status(), 200, "{key}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["replayed"], true);
        for lane in LANES {
            let want = if before[lane] == "accepted" {
                "duplicate"
            } else {
                "accepted"
            };
            assert_eq!(body["jobs"][lane], want, "{key} {lane}");
        }
    }
    server.idle().await;

    let ledger_state = server.state.clone();
    drop(client);
    let report = server.stop().await;
    assert_conserved(&report);
    let ledger = ledger_state.ledger();
    for i in 0..BURST {
        let key = format!("burst-{i}");
        for lane in LANES {
            assert_eq!(ledger.runs(lane, job_id(&key, lane)), 1, "{key} {lane}");
        }
    }
    for lane in LANES {
        let c = report.lane(lane).unwrap().counts;
        assert_eq!(c.accepted, BURST as u64, "{lane}");
        assert_eq!(c.completed, BURST as u64, "{lane}");
        assert_eq!(ledger.jobs(lane), BURST as u64, "{lane}");
    }
    // The partly accepted signups' retries found their emails already there.
    let email = report.lane("email").unwrap().counts;
    assert_eq!(email.duplicates, 2);
    assert_eq!(report.lane("resize").unwrap().counts.duplicates, 0);
    assert_eq!(ledger.ran_twice(), 0);
}
