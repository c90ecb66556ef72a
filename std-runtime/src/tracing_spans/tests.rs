//! The `tracing` feature through the public API, captured by a `tracing-subscriber` layer
//! into memory: the span tree of known runs (inline and submitted, on the pool's threads),
//! the events of retries, fallbacks, breaker transitions and refusals, and the runs that
//! must emit nothing (unsampled, telemetry below `histograms`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use flujo_core::graph::{Graph, StepCx, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use crate::config::{OptimizationConfig, TelemetryLevel};
use crate::{Executor, Finished, Priority, Refusal, SubmitSpec};

/// A span or an event as the layer saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// `true` for a span.
    span: bool,
    name: &'static str,
    target: String,
    /// The serial number of the span (spans only; the registry reuses ids, serials never).
    serial: u64,
    /// The serial of the parent span, if any.
    parent: Option<u64>,
    /// Fields as text (`Debug` of strings is quoted: they are stored unquoted).
    fields: BTreeMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A span's serial, in its registry extensions.
struct Serial(u64);

/// Stores every span and event into a shared `Vec`.
#[derive(Clone, Default)]
struct Capture {
    seen: Arc<Mutex<Vec<Seen>>>,
    next: Arc<AtomicU32>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let serial = u64::from(self.next.fetch_add(1, Ordering::Relaxed));
        let span = ctx.span(id).expect("a new span is in the registry");
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Serial>().map(|s| s.0));
        span.extensions_mut().insert(Serial(serial));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.seen.lock().unwrap().push(Seen {
            span: true,
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_string(),
            serial,
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is in the registry");
        let serial = span.extensions().get::<Serial>().map(|s| s.0);
        let mut seen = self.seen.lock().unwrap();
        let row = seen
            .iter_mut()
            .rfind(|s| s.span && Some(s.serial) == serial)
            .expect("recorded after it was made");
        values.record(&mut Fields(&mut row.fields));
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let parent = ctx
            .event_span(event)
            .and_then(|p| p.extensions().get::<Serial>().map(|s| s.0));
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.seen.lock().unwrap().push(Seen {
            span: false,
            name: event.metadata().name(),
            target: event.metadata().target().to_string(),
            serial: u64::MAX,
            parent,
            fields,
        });
    }
}

impl Capture {
    /// What was seen with target `flujo` (and the test's own spans), in order.
    fn flujo(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A dispatcher capturing into `capture`.
fn dispatch(capture: &Capture) -> Dispatch {
    Dispatch::new(Registry::default().with(capture.clone()))
}

/// An executor of `cfg` whose two pool threads report to `d` (a run submitted runs there).
fn executor(cfg: OptimizationConfig, d: &Dispatch) -> Executor<u64, ()> {
    let d = d.clone();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .spawn_handler(move |thread| {
            let d = d.clone();
            std::thread::Builder::new()
                .spawn(move || tracing::dispatcher::with_default(&d, || thread.run()))?;
            Ok(())
        })
        .build()
        .unwrap();
    Executor::builder(cfg).pool(pool).build().unwrap()
}

/// The latency preset, one run in `period` sampled, at `level`.
fn config(level: TelemetryLevel, period: u32) -> OptimizationConfig {
    preset(OptimizationConfig::latency(), level, period)
}

/// `cfg`, one run in `period` sampled, at `level`.
fn preset(mut cfg: OptimizationConfig, level: TelemetryLevel, period: u32) -> OptimizationConfig {
    cfg.telemetry.level = level;
    cfg.telemetry.run_sample_period = period;
    cfg
}

/// `a` (+1), then `flaky` (fails its first attempt of each run, transient, then doubles),
/// then `c` (+3).
fn known_graph() -> Graph<u64, ()> {
    let calls = Arc::new(AtomicU32::new(0));
    Graph::build(move |b| {
        let a = b.task("a", |x, _| Ok(x + 1));
        let calls = Arc::clone(&calls);
        let flaky = move |x: u64, _: &mut StepCx<'_, ()>| {
            if calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                Err(StepError::transient("first attempt"))
            } else {
                Ok(x * 2)
            }
        };
        let retry = RetryPolicy::new(2, Backoff::NONE).unwrap();
        let f = b.task_with("flaky", flaky, TaskConfig::new().retry(retry));
        let c = b.task("c", |x, _| Ok(x + 3));
        b.sequence("known", &[a, f, c])
    })
    .unwrap()
}

fn spans<'a>(seen: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.span && s.name == name).collect()
}

fn events<'a>(seen: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| !s.span && s.name == name).collect()
}

/// Checks the tree of one run of [`known_graph`] under the run span `run`.
fn assert_known_tree(seen: &[Seen], run: &Seen, priority: &str) {
    assert_eq!(run.target, "flujo");
    assert_eq!(run.field("graph"), Some("known"));
    assert_eq!(run.field("priority"), Some(priority));
    assert_eq!(
        run.field("inline"),
        Some(if priority == "inline" {
            "true"
        } else {
            "false"
        })
    );
    assert_eq!(run.field("outcome"), Some("succeeded"));
    assert_eq!(run.field("steps"), Some("3"));
    assert_eq!(run.field("error_class"), None);
    assert!(run.field("latency_ns").is_some(), "{run:?}");
    let steps: Vec<&Seen> = spans(seen, "flujo.step")
        .into_iter()
        .filter(|s| s.parent == Some(run.serial))
        .collect();
    let names: Vec<_> = steps.iter().map(|s| s.field("step").unwrap()).collect();
    assert_eq!(names, ["a", "flaky", "c"], "the step spans, in order");
    let attempts: Vec<_> = steps.iter().map(|s| s.field("attempt").unwrap()).collect();
    assert_eq!(attempts, ["1", "2", "1"]);
    for s in &steps {
        assert_eq!(s.field("outcome"), Some("succeeded"), "{s:?}");
        assert!(s.field("latency_ns").is_some(), "{s:?}");
    }
    // The last error met by `flaky` is its first attempt's.
    assert_eq!(steps[0].field("error_class"), None);
    assert_eq!(steps[1].field("error_class"), Some("transient"));
    // One retry, a child of `flaky`'s span.
    let retries: Vec<_> = events(seen, "flujo.retry")
        .into_iter()
        .filter(|e| e.parent == Some(steps[1].serial))
        .collect();
    assert_eq!(retries.len(), 1, "{seen:#?}");
    assert_eq!(retries[0].field("step"), Some("flaky"));
    assert_eq!(retries[0].field("attempt"), Some("2"));
    assert_eq!(retries[0].target, "flujo");
}

#[test]
fn an_inline_run_is_one_run_span_with_a_step_span_per_step_and_a_retry_event() {
    let presets = [
        OptimizationConfig::latency(),
        OptimizationConfig::throughput(),
        OptimizationConfig::low_memory(),
    ];
    for cfg in presets {
        for level in [TelemetryLevel::Histograms, TelemetryLevel::Events] {
            inline_run_tree(preset(cfg.clone(), level, 1));
        }
    }
}

fn inline_run_tree(cfg: OptimizationConfig) {
    let capture = Capture::default();
    let d = dispatch(&capture);
    let ex = executor(cfg, &d);
    let g = known_graph();
    let done = tracing::dispatcher::with_default(&d, || {
        let host = tracing::info_span!("host.call");
        host.in_scope(|| ex.run(&g, 1, ()).unwrap())
    });
    assert_eq!((done.outcome, done.output), (Outcome::Succeeded, Some(7)));
    let seen = capture.flujo();
    let host = spans(&seen, "host.call")[0];
    let runs = spans(&seen, "flujo.run");
    assert_eq!(runs.len(), 1, "{seen:#?}");
    assert_eq!(
        runs[0].parent,
        Some(host.serial),
        "an inline run's span is the caller's child"
    );
    assert_known_tree(&seen, runs[0], "inline");
    assert_eq!(spans(&seen, "flujo.step").len(), 3);
}

#[test]
fn a_submitted_runs_span_is_a_child_of_the_span_current_at_submission() {
    let capture = Capture::default();
    let d = dispatch(&capture);
    let ex = executor(config(TelemetryLevel::Events, 1), &d);
    let g = Arc::new(known_graph());
    let ticket = tracing::dispatcher::with_default(&d, || {
        let request = tracing::info_span!("host.request", id = 7u64);
        let _in = request.enter();
        ex.submit(&g, 1, (), Priority::High).unwrap()
    });
    match ticket.wait().unwrap() {
        Finished::Ran(done) => assert_eq!(done.output, Some(7)),
        other => panic!("{other:?}"),
    }
    // A submission outside any span: a root run span, though a pool thread runs it.
    let root = ex.submit(&g, 1, (), Priority::Low).unwrap();
    assert!(matches!(root.wait().unwrap(), Finished::Ran(_)));
    let seen = capture.flujo();
    let request = spans(&seen, "host.request")[0];
    let runs = spans(&seen, "flujo.run");
    assert_eq!(runs.len(), 2, "{seen:#?}");
    let child = runs
        .iter()
        .find(|r| r.field("priority") == Some("high"))
        .unwrap();
    assert_eq!(child.parent, Some(request.serial));
    assert_known_tree(&seen, child, "high");
    let orphan = runs
        .iter()
        .find(|r| r.field("priority") == Some("low"))
        .unwrap();
    assert_eq!(orphan.parent, None, "submitted outside any span: a root");
    assert_known_tree(&seen, orphan, "low");
}

#[test]
fn fallbacks_and_breaker_transitions_are_events_of_their_steps_span() {
    let capture = Capture::default();
    let d = dispatch(&capture);
    let ex = executor(config(TelemetryLevel::Histograms, 1), &d);
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            window_calls: 1,
            failure_rate_percent_to_open: 0,
            window_calls_min: 1,
            slow_call_ticks: 0,
            open_ticks: u64::MAX / 4,
            half_open_probes_max: 1,
            half_open_successes_to_close: 1,
        })
        .unwrap(),
    );
    let g = Graph::<u64, ()>::build(|b| {
        let spare = b.task("spare", |x, _| Ok(x + 100));
        let cfg = TaskConfig::new()
            .fallback(spare)
            .breaker(Arc::clone(&breaker));
        let broken = b.task_with("broken", |_, _| Err(StepError::permanent("down")), cfg);
        b.sequence("fb", &[broken])
    })
    .unwrap();
    let done = tracing::dispatcher::with_default(&d, || ex.run(&g, 1, ()).unwrap());
    assert_eq!(done.output, Some(101));
    let seen = capture.flujo();
    let run = spans(&seen, "flujo.run")[0];
    assert_eq!(run.field("outcome"), Some("succeeded"));
    let steps = spans(&seen, "flujo.step");
    let names: Vec<_> = steps.iter().map(|s| s.field("step").unwrap()).collect();
    // Record order: the fallback ends (and is recorded) before the step it stood in for.
    assert_eq!(names, ["spare", "broken"]);
    let broken = steps[1];
    assert_eq!(broken.field("fallback_used"), Some("true"));
    assert_eq!(broken.field("error_class"), Some("permanent"));
    let fallback = events(&seen, "flujo.fallback");
    assert_eq!(fallback.len(), 1, "{seen:#?}");
    assert_eq!(fallback[0].field("to"), Some("spare"));
    assert_eq!(fallback[0].parent, Some(broken.serial));
    let moved = events(&seen, "flujo.breaker");
    assert_eq!(moved.len(), 1, "{seen:#?}");
    assert_eq!(
        (
            moved[0].field("step"),
            moved[0].field("from"),
            moved[0].field("to")
        ),
        (Some("broken"), Some("closed"), Some("open"))
    );
    assert_eq!(moved[0].parent, Some(broken.serial));
}

#[test]
fn a_refusal_is_an_event_with_its_reason_and_priority() {
    let capture = Capture::default();
    let d = dispatch(&capture);
    let mut cfg = config(TelemetryLevel::Off, 1);
    cfg.adaptive_concurrency.enabled = false;
    (
        cfg.adaptive_concurrency.min_limit,
        cfg.adaptive_concurrency.initial_limit,
    ) = (1, 1);
    cfg.adaptive_concurrency.max_limit = 1;
    let ex = executor(cfg, &d);
    let (go, wait) = mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            b.task("hold", move |x, _| {
                let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(30));
                Ok(x)
            })
        })
        .unwrap(),
    );
    let (first, back) = tracing::dispatcher::with_default(&d, || {
        let first = ex.submit(&g, 1, (), Priority::Normal).unwrap();
        let back = ex.submit_with(&g, 2, (), &SubmitSpec::default().priority(Priority::Low));
        (first, back.unwrap_err())
    });
    assert_eq!((back.reason, back.input), (Refusal::OverLimit, 2));
    go.send(()).unwrap();
    assert!(matches!(first.wait().unwrap(), Finished::Ran(_)));
    let seen = capture.flujo();
    let refused = events(&seen, "flujo.refused");
    assert_eq!(refused.len(), 1, "{seen:#?}");
    assert_eq!(refused[0].field("reason"), Some("over-limit"));
    assert_eq!(refused[0].field("priority"), Some("low"));
    assert_eq!(refused[0].target, "flujo");
    assert!(
        spans(&seen, "flujo.run").is_empty(),
        "telemetry off: no run spans"
    );
}

#[test]
fn unsampled_runs_emit_nothing_and_every_fourth_is_sampled() {
    let capture = Capture::default();
    let d = dispatch(&capture);
    let ex = executor(config(TelemetryLevel::Events, 4), &d);
    let g = known_graph();
    tracing::dispatcher::with_default(&d, || {
        // One pooled runner serves these (one thread, nothing forked): its 4th run is sampled.
        for _ in 0..3 {
            ex.run(&g, 1, ()).unwrap();
        }
        assert!(capture.flujo().is_empty(), "{:#?}", capture.flujo());
        ex.run(&g, 1, ()).unwrap();
        assert_eq!(spans(&capture.flujo(), "flujo.run").len(), 1);
        for _ in 0..4 {
            ex.run(&g, 1, ()).unwrap();
        }
    });
    let seen = capture.flujo();
    let runs = spans(&seen, "flujo.run");
    assert_eq!(runs.len(), 2, "runs 4 and 8 of 8: {seen:#?}");
    assert_eq!(spans(&seen, "flujo.step").len(), 6);
    assert_eq!(events(&seen, "flujo.retry").len(), 2);
    for run in runs {
        assert_known_tree(&seen, run, "inline");
    }
}

#[test]
fn below_the_histograms_level_nothing_is_emitted() {
    for level in [TelemetryLevel::Off, TelemetryLevel::Counters] {
        let capture = Capture::default();
        let d = dispatch(&capture);
        let ex = executor(config(level, 1), &d);
        let g = Arc::new(known_graph());
        tracing::dispatcher::with_default(&d, || {
            for _ in 0..4 {
                ex.run(&g, 1, ()).unwrap();
                let t = ex.submit(&g, 1, (), Priority::Normal).unwrap();
                assert!(matches!(t.wait().unwrap(), Finished::Ran(_)));
            }
        });
        assert!(
            capture.flujo().is_empty(),
            "{level:?}: {:#?}",
            capture.flujo()
        );
    }
}
