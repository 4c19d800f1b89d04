//! The `tracing` feature (`src/observe/trace.rs`): each attempt's span and
//! its fields, and the events for retries, deaths, panics, timeouts,
//! duplicates, `Full` refusals and redrives.
//!
//! A subscriber of the test's own records every span and event, with the
//! span each event was emitted in. The driver tests install it on the
//! test's thread (`with_default`); the engine tests install it on each
//! worker thread through `Builder::worker_context` as well, so no test
//! sets a global default and they run in parallel. Nothing is timed.

#![cfg(feature = "tracing")]

use quay::{Engine, Job, JobError, Settled, Started, SubmitError, Submitted};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// A span as created.
#[derive(Clone, Debug)]
struct SpanRec {
    name: &'static str,
    target: String,
    level: Level,
    fields: Fields,
}

/// An event, with the span it was emitted in (the innermost one entered on
/// its thread), if any.
#[derive(Clone, Debug)]
struct EventRec {
    level: Level,
    target: String,
    message: String,
    fields: Fields,
    span: Option<SpanRec>,
}

#[derive(Default)]
struct Log {
    spans: Vec<SpanRec>,
    events: Vec<EventRec>,
    /// Each thread's entered spans, innermost last.
    stacks: HashMap<ThreadId, Vec<u64>>,
}

/// A subscriber that records everything into a shared log.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Log>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let meta = attrs.metadata();
        let mut log = self.0.lock().unwrap();
        log.spans.push(SpanRec {
            name: meta.name(),
            target: meta.target().to_string(),
            level: *meta.level(),
            fields,
        });
        Id::from_u64(log.spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut log = self.0.lock().unwrap();
        let span = &mut log.spans[id.into_u64() as usize - 1];
        values.record(&mut Visitor(&mut span.fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let meta = event.metadata();
        let mut log = self.0.lock().unwrap();
        let current = log
            .stacks
            .get(&std::thread::current().id())
            .and_then(|s| s.last().copied());
        let span = current.map(|id| log.spans[id as usize - 1].clone());
        log.events.push(EventRec {
            level: *meta.level(),
            target: meta.target().to_string(),
            message,
            fields,
            span,
        });
    }
    fn enter(&self, id: &Id) {
        let mut log = self.0.lock().unwrap();
        let stack = log.stacks.entry(std::thread::current().id()).or_default();
        stack.push(id.into_u64());
    }
    fn exit(&self, id: &Id) {
        let mut log = self.0.lock().unwrap();
        let stack = log.stacks.entry(std::thread::current().id()).or_default();
        let at = stack.iter().rposition(|&s| s == id.into_u64());
        stack.remove(at.expect("exit of a span not entered"));
    }
}

impl Capture {
    fn spans(&self) -> Vec<SpanRec> {
        self.0.lock().unwrap().spans.clone()
    }

    fn events(&self) -> Vec<EventRec> {
        self.0.lock().unwrap().events.clone()
    }

    /// The events with this message.
    fn named(&self, message: &str) -> Vec<EventRec> {
        self.events()
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }

    /// The one event with this message.
    fn one(&self, message: &str) -> EventRec {
        let found = self.named(message);
        assert_eq!(found.len(), 1, "one {message:?} event: {found:#?}");
        found.into_iter().next().unwrap()
    }
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.get(name).map(String::as_str)
}

/// The fields an attempt's span must carry (all but `key`).
fn assert_attempt_span(span: &SpanRec, id: &str, lane: &str, attempt: u32) {
    assert_eq!((span.name, span.target.as_str()), ("attempt", "quay"));
    assert_eq!(span.level, Level::TRACE);
    let f = &span.fields;
    assert_eq!(field(f, "id"), Some(id), "{span:?}");
    assert_eq!(field(f, "lane"), Some(lane), "{span:?}");
    assert_eq!(field(f, "attempt"), Some(attempt.to_string().as_str()));
    assert_eq!(field(f, "worker"), Some("0"));
}

#[test]
fn a_sync_attempt_runs_in_a_span_with_its_id_key_lane_and_number() {
    let log = Capture::default();
    tracing::subscriber::with_default(log.clone(), || {
        let mut d = Engine::<u64>::builder().name("email").driver().unwrap();
        d.submit(Job::new(42u64, 1).keyed(7u64)).unwrap();
        d.submit(Job::new(43u64, 2)).unwrap();
        for _ in 0..2 {
            let step = d.run_next(|ctx, n| {
                tracing::info!(n, "handling");
                assert_eq!(ctx.worker(), 0);
                Ok(())
            });
            assert_eq!(step.unwrap().settled, Settled::Completed);
        }
    });
    let spans = log.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert_attempt_span(&spans[0], "0x2a", "email", 1);
    assert_eq!(field(&spans[0].fields, "key"), Some("7"));
    assert_attempt_span(&spans[1], "0x2b", "email", 1);
    assert_eq!(field(&spans[1].fields, "key"), None, "unkeyed: no key");
    // The handler's own events are inside its attempt's span.
    let handled = log.named("handling");
    assert_eq!(handled.len(), 2);
    for (e, id) in handled.iter().zip(["0x2a", "0x2b"]) {
        let span = e.span.as_ref().expect("inside the attempt's span");
        assert_eq!(field(&span.fields, "id"), Some(id));
    }
    assert!(log.named("retry").is_empty() && log.named("dead").is_empty());
}

#[test]
fn a_retry_carries_its_delay_and_error_and_a_death_its_attempts() {
    let log = Capture::default();
    tracing::subscriber::with_default(log.clone(), || {
        let mut d = Engine::<&str>::builder()
            .name("billing")
            .max_attempts(NonZeroU32::new(2).unwrap())
            .backoff(Duration::from_millis(250), Duration::from_secs(10))
            .driver()
            .unwrap();
        d.submit(Job::new(5u64, "card")).unwrap();
        let step = d.run_next(|_, _| Err(JobError::retry("gateway 503")));
        assert_eq!(step.unwrap().settled, Settled::Retrying);
        // The delay the event names is the one the job waits.
        let delay = d.next_due().unwrap().saturating_since(d.now());
        let retry = log.one("retry");
        assert_eq!(retry.level, Level::DEBUG);
        assert_eq!(retry.target, "quay");
        let f = &retry.fields;
        assert_eq!(field(f, "delay"), Some(format!("{delay:?}").as_str()));
        assert_eq!(field(f, "error"), Some("retry: gateway 503"));
        assert_eq!(field(f, "id"), Some("0x5"));
        assert_eq!(field(f, "lane"), Some("billing"));
        assert_eq!(field(f, "attempt"), Some("1"));
        assert_attempt_span(retry.span.as_ref().unwrap(), "0x5", "billing", 1);

        d.advance(delay);
        let step = d.run_next(|_, _| Err(JobError::retry("gateway 503 again")));
        assert_eq!(step.unwrap().settled, Settled::Dead);
        let dead = log.one("dead");
        assert_eq!(dead.level, Level::WARN);
        let f = &dead.fields;
        assert_eq!(field(f, "attempts"), Some("2"));
        assert_eq!(field(f, "error"), Some("retry: gateway 503 again"));
        assert_eq!(
            (field(f, "id"), field(f, "lane")),
            (Some("0x5"), Some("billing"))
        );
        assert_attempt_span(dead.span.as_ref().unwrap(), "0x5", "billing", 2);
        assert_eq!(
            log.named("retry").len(),
            1,
            "no retry after the last attempt"
        );
    });
}

#[test]
fn duplicates_full_refusals_and_redrives_are_events() {
    let log = Capture::default();
    tracing::subscriber::with_default(log.clone(), || {
        let mut d = Engine::<u64>::builder()
            .name("import")
            .capacity(2)
            .driver()
            .unwrap();
        assert_eq!(d.submit(Job::new(1u64, 1)).unwrap(), Submitted::Accepted);
        assert_eq!(d.submit(Job::new(1u64, 1)).unwrap(), Submitted::Duplicate);
        assert_eq!(d.submit(Job::new(2u64, 2)).unwrap(), Submitted::Accepted);
        assert!(matches!(
            d.submit(Job::new(3u64, 3)),
            Err(SubmitError::Full(_))
        ));
        let step = d.run_next(|_, _| Err(JobError::fatal("bad row")));
        assert_eq!(step.unwrap().settled, Settled::Dead);
        d.redrive(1u64).unwrap();
    });
    let dup = log.one("duplicate");
    assert_eq!(dup.level, Level::DEBUG);
    assert_eq!(
        (field(&dup.fields, "id"), field(&dup.fields, "lane")),
        (Some("0x1"), Some("import"))
    );
    assert!(dup.span.is_none(), "a submit is outside any attempt");
    let full = log.one("full");
    assert_eq!(full.level, Level::WARN);
    assert_eq!(
        (field(&full.fields, "id"), field(&full.fields, "lane")),
        (Some("0x3"), Some("import"))
    );
    let dead = log.one("dead");
    assert_eq!(field(&dead.fields, "error"), Some("fatal: bad row"));
    assert_eq!(field(&dead.fields, "attempts"), Some("1"));
    let redrive = log.one("redrive");
    assert_eq!(redrive.level, Level::INFO);
    assert_eq!(
        (field(&redrive.fields, "id"), field(&redrive.fields, "lane")),
        (Some("0x1"), Some("import"))
    );
    // In the order they happened.
    let order: Vec<String> = log.events().into_iter().map(|e| e.message).collect();
    assert_eq!(order, ["duplicate", "full", "dead", "redrive"]);
}

#[test]
fn a_contained_panic_and_a_timeout_are_events_inside_the_attempt() {
    let log = Capture::default();
    tracing::subscriber::with_default(log.clone(), || {
        let mut d = Engine::<u64>::builder()
            .name("resize")
            .backoff(Duration::from_secs(1), Duration::from_secs(1))
            .jitter(false)
            .attempt_timeout(Duration::from_secs(30))
            .driver()
            .unwrap();
        d.submit(Job::new(1u64, 1)).unwrap();
        let step = d.run_next(|_, _| panic!("boom")).unwrap();
        assert!(step.panicked);
        let panic = log.one("panic");
        assert_eq!(panic.level, Level::WARN);
        assert_eq!(field(&panic.fields, "error"), Some("boom"));
        assert_attempt_span(panic.span.as_ref().unwrap(), "0x1", "resize", 1);
        // The failed attempt retries.
        assert_eq!(
            field(&log.one("retry").fields, "error"),
            Some("retry: panic: boom")
        );

        d.advance(Duration::from_secs(1));
        let started = d.start_async(|_, _| std::future::pending());
        assert_eq!(started, Some(Started::Pending(1u64.into())));
        d.advance(Duration::from_secs(30));
        let steps = d.poll_async();
        assert_eq!(steps.len(), 1);
        let timeout = log.one("timeout");
        assert_eq!(timeout.level, Level::DEBUG);
        assert_eq!(field(&timeout.fields, "limit"), Some("30s"));
        assert_attempt_span(timeout.span.as_ref().unwrap(), "0x1", "resize", 2);
    });
}

/// Pending once (waking itself), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn every_poll_of_an_async_attempt_is_inside_its_span() {
    let log = Capture::default();
    tracing::subscriber::with_default(log.clone(), || {
        let mut d = Engine::<u64>::builder().name("fetch").driver().unwrap();
        d.submit(Job::new(9u64, 9).keyed(3u64)).unwrap();
        let started = d.start_async(|ctx, _| {
            tracing::info!("making");
            async move {
                tracing::info!(attempt = ctx.attempt(), "first poll");
                YieldOnce(false).await;
                tracing::info!("second poll");
                Ok(())
            }
        });
        assert!(matches!(started, Some(Started::Pending(_))));
        tracing::info!("between polls");
        let steps = d.poll_async();
        assert_eq!(steps[0].settled, Settled::Completed);
    });
    for msg in ["making", "first poll", "second poll"] {
        let e = log.one(msg);
        let span = e.span.as_ref().unwrap_or_else(|| panic!("{msg}: no span"));
        assert_attempt_span(span, "0x9", "fetch", 1);
        assert_eq!(field(&span.fields, "key"), Some("3"));
    }
    assert!(
        log.one("between polls").span.is_none(),
        "the span is left between polls"
    );
    assert_eq!(log.spans().len(), 1, "one span per attempt");
}

/// A `worker_context` that installs `log` as each worker thread's default
/// subscriber.
fn traced_workers(log: &Capture) -> impl Fn(&mut dyn FnMut()) + Send + Sync + 'static {
    let log = log.clone();
    move |run| {
        let _default = tracing::subscriber::set_default(log.clone());
        run()
    }
}

/// The threaded engine: a sync handler's attempts run in their spans on
/// the worker, and the submit-side events come from the producer's thread.
#[test]
fn an_engine_traces_its_attempts_and_submits() {
    let log = Capture::default();
    let engine = Engine::<u64>::builder()
        .name("mail")
        .workers(1)
        .pin_workers(false)
        .capacity(2)
        .max_attempts(NonZeroU32::new(1).unwrap())
        .worker_context(traced_workers(&log))
        .build(|_, n| {
            tracing::info!(n, "handling");
            if *n == 0 {
                return Err(JobError::fatal("no such mailbox"));
            }
            Ok(())
        })
        .unwrap();
    tracing::subscriber::with_default(log.clone(), || {
        engine.submit(Job::new(1u64, 1).keyed(4u64)).unwrap();
        engine.submit(Job::new(2u64, 0)).unwrap();
        assert!(engine.wait_idle(Duration::from_secs(30)));
        assert_eq!(
            engine.try_submit(Job::new(1u64, 1)).unwrap(),
            Submitted::Duplicate
        );
        engine.redrive(2u64).unwrap();
        assert!(engine.wait_idle(Duration::from_secs(30)));
        // Two jobs never due hold the capacity: the third is refused.
        for id in [3u64, 4] {
            let later = Job::new(id, 1).delay(Duration::from_secs(3600));
            engine.try_submit(later).unwrap();
        }
        assert!(matches!(
            engine.try_submit(Job::new(5u64, 1)),
            Err(SubmitError::Full(_))
        ));
    });
    assert_eq!(engine.shutdown_now().counts.returned, 2);

    let handled = log.named("handling");
    assert_eq!(handled.len(), 3, "{handled:#?}");
    for e in &handled {
        let span = e.span.as_ref().expect("inside the attempt's span");
        assert_eq!(field(&span.fields, "lane"), Some("mail"));
        assert_eq!(field(&span.fields, "worker"), Some("0"));
    }
    let first = handled
        .iter()
        .find(|e| field(&e.fields, "n") == Some("1"))
        .unwrap();
    assert_attempt_span(first.span.as_ref().unwrap(), "0x1", "mail", 1);
    assert_eq!(
        field(&first.span.as_ref().unwrap().fields, "key"),
        Some("4")
    );
    let dead = log.named("dead");
    assert_eq!(dead.len(), 2, "died, was redriven, died again");
    for e in &dead {
        assert_eq!(field(&e.fields, "id"), Some("0x2"));
        assert_attempt_span(e.span.as_ref().unwrap(), "0x2", "mail", 1);
    }
    assert_eq!(field(&log.one("duplicate").fields, "id"), Some("0x1"));
    assert_eq!(field(&log.one("redrive").fields, "id"), Some("0x2"));
    let full = log.one("full");
    assert_eq!(
        (field(&full.fields, "id"), field(&full.fields, "lane")),
        (Some("0x5"), Some("mail"))
    );
}

/// An async engine's attempts: the handler's synchronous part and every
/// poll of its future are inside the attempt's span, on the worker.
#[test]
fn an_async_engine_polls_each_attempt_inside_its_span() {
    let log = Capture::default();
    let engine = Engine::<u64>::builder()
        .name("fetch")
        .workers(1)
        .pin_workers(false)
        .idle(quay::IdleStrategy::Park)
        .worker_context(traced_workers(&log))
        .build_async(|ctx, n: &u64| {
            let n = *n;
            tracing::info!(n, "making");
            async move {
                tracing::info!(n, "first poll");
                YieldOnce(false).await;
                tracing::info!(n, attempt = ctx.attempt(), "second poll");
                Ok(())
            }
        })
        .unwrap();
    for id in 1..=3u64 {
        engine.submit(Job::new(id, id)).unwrap();
    }
    assert_eq!(engine.shutdown().counts.completed, 3);
    for msg in ["making", "first poll", "second poll"] {
        let events = log.named(msg);
        assert_eq!(events.len(), 3, "{msg}: {events:#?}");
        for e in events {
            let n = field(&e.fields, "n").unwrap().parse::<u64>().unwrap();
            let span = e.span.as_ref().unwrap_or_else(|| panic!("{msg}: no span"));
            assert_attempt_span(span, &format!("{n:#x}"), "fetch", 1);
        }
    }
}
