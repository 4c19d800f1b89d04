//! The bridge against a real nats-server: publish, run, ack; duplicates;
//! poison to the DLQ exactly once; a delayed retry; a full stream; and a
//! takeover that replays the un-acked tail in order.

mod common;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use common::*;
use futures::StreamExt;
use quay::{Job, JobError, Submitted};
use quay_nats::{Node, Producer, PublishError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Task {
    key: u32,
    seq: u32,
    fail: u32,
}

type Runs = Arc<Mutex<Vec<(u32, u32, u32)>>>;

fn job(t: Task) -> Job<Task> {
    Job::new(format!("k{}-s{}", t.key, t.seq), t.clone()).keyed(u64::from(t.key))
}

/// A node whose handler records (key, seq, attempt) and fails the first
/// `fail` attempts of each job (`u32::MAX`: always).
fn start_node(url: &str, name: &str, runs: Runs) -> Node {
    Node::builder::<Task>(url, cluster(), node_settings(name))
        .start(move |tok, t: Arc<Task>| {
            let runs = runs.clone();
            async move {
                runs.lock().unwrap().push((t.key, t.seq, tok.attempt()));
                if tok.attempt() <= t.fail {
                    return Err(JobError::retry(format!("transient {}", tok.attempt())));
                }
                Ok(())
            }
        })
        .expect("node starts")
}

/// What most tests start from: a real server, a runtime (which the test
/// enters), a client, and a producer over `cluster`.
struct Env {
    server: quay_nats::server::Server,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    producer: Producer<Task>,
}

fn env(cluster: quay_nats::Cluster) -> Env {
    let (server, dir) = server();
    let rt = runtime();
    let (client, producer) = {
        let _in_rt = rt.enter();
        let client = rt
            .block_on(async_nats::connect(server.url()))
            .expect("connect");
        let producer = rt
            .block_on(Producer::<Task>::new(client.clone(), cluster))
            .expect("producer");
        (client, producer)
    };
    Env {
        server,
        _dir: dir,
        rt,
        client,
        producer,
    }
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name)
        .await
        .expect("stream")
        .get_info()
        .await
        .expect("info")
        .state
        .messages
}

#[test]
fn publish_run_ack_in_key_order_and_duplicates_are_reported() {
    let e = env(cluster());
    let (server, rt, client, producer) = (&e.server, &e.rt, e.client.clone(), &e.producer);
    let _in_rt = rt.enter();
    for seq in 0..25 {
        for key in 0..8 {
            let answer = rt
                .block_on(producer.publish(job(Task { key, seq, fail: 0 })))
                .expect("publish");
            assert_eq!(answer, Submitted::Accepted);
        }
    }
    // The same Msg-Id again: JetStream answers duplicate: true.
    let again = rt
        .block_on(producer.publish(job(Task {
            key: 0,
            seq: 0,
            fail: 0,
        })))
        .expect("publish");
    assert_eq!(again, Submitted::Duplicate);

    let runs: Runs = Arc::default();
    let node = start_node(&server.url(), "n1", runs.clone());
    wait_for("200 acks", Duration::from_secs(60), || {
        node.stats().acked == 200
    });
    let js = jetstream::new(client);
    // WorkQueue: an acked job leaves the stream.
    wait_for("an empty stream", Duration::from_secs(30), || {
        rt.block_on(stream_messages(&js, "QUAY_JOBS")) == 0
    });
    let report = node.shutdown();
    assert_eq!(report.stats.dead, 0);
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 200, "each job ran once");
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (key, seq, _) in runs {
        if let Some(prev) = last.insert(key, seq) {
            assert!(seq > prev, "key {key}: {seq} ran after {prev}");
        }
    }
}

#[test]
fn poison_reaches_the_dlq_once_and_a_transient_failure_retries() {
    let e = env(cluster());
    let (server, rt, client, producer) = (&e.server, &e.rt, e.client.clone(), &e.producer);
    let _in_rt = rt.enter();
    rt.block_on(producer.publish(job(Task {
        key: 1,
        seq: 0,
        fail: u32::MAX,
    })))
    .expect("poison");
    rt.block_on(producer.publish(job(Task {
        key: 1,
        seq: 1,
        fail: 1,
    })))
    .expect("flaky");
    let runs: Runs = Arc::default();
    let node = start_node(&server.url(), "n1", runs.clone());
    wait_for("one dead and one acked", Duration::from_secs(60), || {
        let s = node.stats();
        s.dead == 1 && s.acked == 1
    });
    let js = jetstream::new(client);
    wait_for("an empty jobs stream", Duration::from_secs(30), || {
        rt.block_on(stream_messages(&js, "QUAY_JOBS")) == 0
    });
    node.shutdown();
    assert_eq!(
        rt.block_on(stream_messages(&js, "QUAY_DLQ")),
        1,
        "exactly one dead letter"
    );
    let dead = rt.block_on(async {
        let s = js.get_stream("QUAY_DLQ").await.unwrap();
        s.get_raw_message(1).await.unwrap()
    });
    let errors = dead
        .headers
        .get("Quay-Errors")
        .expect("errors header")
        .as_str()
        .to_string();
    assert!(errors.contains("transient 3"), "{errors}");
    let task: Task = serde_json::from_slice(&dead.payload).unwrap();
    assert_eq!(task.seq, 0);
    let runs = runs.lock().unwrap().clone();
    // The poison job ran max_attempts (3) times, the flaky one twice, in
    // key order: the flaky job waited behind the poison one.
    assert_eq!(
        runs,
        vec![(1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 1, 1), (1, 1, 2)]
    );
}

#[test]
fn a_full_stream_hands_the_job_back() {
    let small = quay_nats::Cluster {
        max_messages: 3,
        ..cluster()
    };
    let e = env(small);
    let (rt, producer) = (&e.rt, &e.producer);
    let _in_rt = rt.enter();
    for seq in 0..3 {
        rt.block_on(producer.publish(job(Task {
            key: 2,
            seq,
            fail: 0,
        })))
        .expect("room");
    }
    match rt.block_on(producer.publish(job(Task {
        key: 2,
        seq: 3,
        fail: 0,
    }))) {
        Err(PublishError::Full(j)) => assert_eq!(j.payload().seq, 3),
        other => panic!("expected Full, got {other:?}"),
    }
}

#[test]
fn discard_old_is_refused() {
    let bad = quay_nats::Cluster {
        discard: quay_nats::Discard::Old,
        ..cluster()
    };
    assert_eq!(bad.validate(), Err(quay_nats::ConfigError::DiscardOld));
}

#[test]
fn a_takeover_replays_the_unacked_tail_in_order() {
    let e = env(cluster());
    let (server, rt, client, producer) = (&e.server, &e.rt, e.client.clone(), &e.producer);
    let _in_rt = rt.enter();
    for seq in 0..10 {
        rt.block_on(producer.publish(job(Task {
            key: 5,
            seq,
            fail: 0,
        })))
        .expect("publish");
    }
    let p = producer.partition(&job(Task {
        key: 5,
        seq: 0,
        fail: 0,
    }));
    // A previous owner of generation 1: it took all ten, acked the first
    // four, and died holding the rest.
    let js = jetstream::new(client);
    rt.block_on(async {
        let stream = js.get_stream("QUAY_JOBS").await.unwrap();
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(quay_nats::partition::consumer_name(p, 1)),
                filter_subject: format!("quay.jobs.{p}"),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
        let mut n = 0;
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            if n < 4 {
                m.double_ack().await.unwrap();
            }
            n += 1;
        }
        assert_eq!(n, 10);
    });
    let runs: Runs = Arc::default();
    let node = start_node(&server.url(), "n2", runs.clone());
    wait_for("six acks", Duration::from_secs(60), || {
        node.stats().acked == 6
    });
    node.shutdown();
    let seqs: Vec<u32> = runs.lock().unwrap().iter().map(|r| r.1).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9]);
}

#[test]
fn the_fenced_log_refuses_an_older_generation() {
    let e = env(cluster());
    let (server, rt) = (&e.server, &e.rt);
    let _in_rt = rt.enter();
    let js = jetstream::new(e.client.clone());
    let old = rt
        .block_on(quay_nats::FencedLog::open(js.clone(), "LOG", "log"))
        .expect("log");
    let new = rt
        .block_on(quay_nats::FencedLog::open(js, "LOG", "log"))
        .expect("log");
    let body = || bytes::Bytes::from_static(b"x");
    rt.block_on(old.append(3, 10, None, body()))
        .expect("generation 10 appends");
    rt.block_on(old.append(3, 10, None, body()))
        .expect("and again");
    rt.block_on(new.append(3, 11, None, body()))
        .expect("generation 11 takes over");
    // The old writer still believes its mark is current: the server refuses.
    match rt.block_on(old.append(3, 10, None, body())) {
        Err(quay_nats::AppendError::Fenced(f)) => assert_eq!((f.partition, f.generation), (3, 10)),
        other => panic!("expected Fenced, got {other:?}"),
    }
    // A fresh writer of the old generation cannot claim it back.
    let late = rt
        .block_on(quay_nats::FencedLog::open(
            jetstream::new(rt.block_on(async_nats::connect(server.url())).unwrap()),
            "LOG",
            "log",
        ))
        .unwrap();
    assert!(matches!(
        rt.block_on(late.append(3, 10, None, body())),
        Err(quay_nats::AppendError::Fenced(_))
    ));
    // Other partitions are independent.
    rt.block_on(late.append(4, 10, None, body()))
        .expect("partition 4 is unclaimed");
}

#[test]
fn jobs_waiting_behind_their_key_get_progress_not_redelivery() {
    let slow = quay_nats::Cluster {
        lease_ttl: Duration::from_secs(15),
        ..cluster()
    };
    let e = env(slow.clone());
    let (server, rt, producer) = (&e.server, &e.rt, &e.producer);
    let _in_rt = rt.enter();
    for seq in 0..3 {
        rt.block_on(producer.publish(job(Task {
            key: 9,
            seq,
            fail: 0,
        })))
        .expect("publish");
    }
    // Each job runs 2 s, so the third waits 4 s behind its key: past a
    // 3 s AckWait, which only `+WPI` (sent every second) keeps from
    // running out.
    let settings = quay_nats::NodeSettings {
        max_run_time: Duration::from_secs(3),
        ack_wait: Duration::from_secs(3),
        ..node_settings("n1")
    };
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let node = Node::builder::<Task>(server.url(), slow, settings)
        .start(move |tok, t: Arc<Task>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                seen.lock().unwrap().push((t.key, t.seq, tok.attempt()));
                Ok(())
            }
        })
        .expect("node starts");
    wait_for("three acks", Duration::from_secs(60), || {
        node.stats().acked == 3
    });
    let stats = node.shutdown().stats;
    assert!(stats.progress > 0, "no +WPI was sent");
    assert_eq!(stats.swapped, 0, "a waiting job was redelivered");
    assert_eq!(*runs.lock().unwrap(), vec![(9, 0, 1), (9, 1, 1), (9, 2, 1)]);
}

#[test]
fn a_handler_that_panics_every_time_ends_in_the_dlq_not_acked_away() {
    let e = env(cluster());
    let (server, rt, client, producer) = (&e.server, &e.rt, e.client.clone(), &e.producer);
    let _in_rt = rt.enter();
    for seq in 0..2 {
        rt.block_on(producer.publish(job(Task {
            key: 4,
            seq,
            fail: 0,
        })))
        .expect("publish");
    }
    let node = Node::builder::<Task>(server.url(), cluster(), node_settings("n1"))
        .start(|_tok, t: Arc<Task>| async move {
            if t.seq == 0 {
                panic!("handler bug on seq 0");
            }
            Ok(())
        })
        .expect("node starts");
    wait_for("one dead and one acked", Duration::from_secs(60), || {
        let s = node.stats();
        s.dead == 1 && s.acked == 1
    });
    node.shutdown();
    let js = jetstream::new(client);
    assert_eq!(rt.block_on(stream_messages(&js, "QUAY_DLQ")), 1);
    let dead = rt.block_on(async {
        js.get_stream("QUAY_DLQ")
            .await
            .unwrap()
            .get_raw_message(1)
            .await
            .unwrap()
    });
    let errors = dead
        .headers
        .get("Quay-Errors")
        .expect("errors")
        .as_str()
        .to_string();
    assert!(errors.contains("panic: handler bug on seq 0"), "{errors}");
    assert_eq!(rt.block_on(stream_messages(&js, "QUAY_JOBS")), 0);
}

#[test]
fn a_republish_after_the_dedup_window_runs_again() {
    let short = quay_nats::Cluster {
        dedup_window: Duration::from_secs(1),
        ..cluster()
    };
    let e = env(short.clone());
    let (server, rt, client, producer) = (&e.server, &e.rt, e.client.clone(), &e.producer);
    let _in_rt = rt.enter();
    let task = Task {
        key: 3,
        seq: 0,
        fail: 0,
    };
    let first = rt
        .block_on(producer.publish(job(task.clone())))
        .expect("publish");
    assert_eq!(first, Submitted::Accepted);
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let node = Node::builder::<Task>(server.url(), short, node_settings("n1"))
        .start(move |tok, t: Arc<Task>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((t.key, t.seq, tok.attempt()));
                Ok(())
            }
        })
        .expect("node starts");
    let js = jetstream::new(client);
    wait_for("the first run's ack", Duration::from_secs(30), || {
        node.stats().acked == 1 && rt.block_on(stream_messages(&js, "QUAY_JOBS")) == 0
    });
    // The same Msg-Id again, until the server has forgotten it: each
    // `Duplicate` answer stores nothing, and the first `Accepted` is a new
    // message of the stream with an old Msg-Id.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = rt
            .block_on(producer.publish(job(task.clone())))
            .expect("republish");
        if answer == Submitted::Accepted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server still answers Duplicate 30 s after a 1 s window"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Either answer empties the stream: a run and its ack, or an ack unrun.
    wait_for("the republish answered", Duration::from_secs(30), || {
        let s = node.stats();
        s.acked + s.reacked >= 2 && rt.block_on(stream_messages(&js, "QUAY_JOBS")) == 0
    });
    let stats = node.shutdown().stats;
    assert_eq!(
        *runs.lock().unwrap(),
        vec![(3, 0, 1), (3, 0, 1)],
        "an accepted republish must run"
    );
    assert_eq!((stats.acked, stats.reacked), (2, 0));
}
