//! The exposition against the report it renders, and against the text format's rules.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, RetryPolicy};
use flujo_core::telemetry::{Counter, Histogram};

use super::*;
use crate::config::{OptimizationConfig, TelemetryLevel};
use crate::{Drain, Executor, Finished, Refusal};

/// The names of docs/deploy's contract (metrics-names of issue 17), every one of which an
/// exposition has.
const CONTRACT: &[&str] = &[
    "flujo_runs_submitted_total",
    "flujo_runs_total",
    "flujo_runs_completed_total",
    "flujo_runs_rejected_total",
    "flujo_runs_in_flight",
    "flujo_run_latency_seconds",
    "flujo_steps_run_total",
    "flujo_steps_succeeded_total",
    "flujo_steps_failed_total",
    "flujo_steps_skipped_total",
    "flujo_steps_aborted_total",
    "flujo_retries_total",
    "flujo_cache_hits_total",
    "flujo_cache_misses_total",
    "flujo_fallbacks_used_total",
    "flujo_breaker_rejections_total",
    "flujo_breaker_trips_total",
    "flujo_usage_denials_total",
    "flujo_usage_overruns_total",
    "flujo_step_latency_seconds",
    "flujo_step_executions_total",
    "flujo_admission_limit",
    "flujo_admission_limit_min_seen",
    "flujo_admission_limit_max_seen",
    "flujo_queue_depth",
    "flujo_queue_wait_seconds",
    "flujo_breaker_state",
    "flujo_breaker_transitions_total",
    "flujo_cache_bytes",
    "flujo_cache_entries",
    "flujo_runners_live",
    "flujo_runners_idle",
    "flujo_arena_bytes_used",
    "flujo_arena_bytes_reserved",
    "flujo_waits_total",
    "flujo_waits_helped_runs_total",
    "flujo_telemetry_events_dropped_total",
    "flujo_telemetry_records_dropped_total",
];

/// A parsed exposition: each metric family's type, and each series' value.
#[derive(Debug, Default)]
struct Parsed {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
    /// The series in order of appearance.
    order: Vec<String>,
}

impl Parsed {
    fn get(&self, series: &str) -> f64 {
        match self.samples.get(series) {
            Some(&v) => v,
            None => panic!("no series {series}"),
        }
    }
}

/// Parses `text` by the rules of the text format 0.0.4 this module writes, checking them:
/// every sample's family was typed before it, no series repeats, every line ends in `\n`,
/// values parse, names are valid.
fn parse(text: &str) -> Parsed {
    assert!(text.ends_with('\n'));
    let mut p = Parsed::default();
    let mut families_seen = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                families_seen.insert(name.to_string()),
                "family twice: {name}"
            );
            p.types.insert(name.to_string(), kind.to_string());
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        let family = current.as_deref().expect("a sample before any TYPE");
        let ok = name == family
            || (p.types[family] == "histogram"
                && [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_string()));
        assert!(ok, "{name} under family {family}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            p.samples.insert(series.to_string(), value).is_none(),
            "series twice: {series}"
        );
        p.order.push(series.to_string());
    }
    p
}

fn render<P, C>(ex: &Executor<P, C>) -> (String, Parsed)
where
    P: Clone + Send + Sync + 'static,
    C: flujo_core::context::Context + Send + Sync + 'static,
{
    let mut text = String::new();
    ex.render_metrics(&mut text);
    let parsed = parse(&text);
    (text, parsed)
}

/// The buckets of histogram series `name` with `labels` (`k="v",` pairs, or empty): each
/// `(le, cumulative count)` in order, checked cumulative and ending in `+Inf == _count`.
fn check_histogram(p: &Parsed, name: &str, labels: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{{labels}");
    let mut buckets = Vec::new();
    for series in &p.order {
        if let Some(rest) = series.strip_prefix(&prefix) {
            let le = rest
                .trim_start_matches(',')
                .strip_prefix("le=\"")
                .unwrap()
                .trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets.push((le, p.get(series)));
        }
    }
    assert_eq!(buckets.len(), LATENCY_EDGES + 1, "{name} {labels}");
    for w in buckets.windows(2) {
        assert!(w[0].0 < w[1].0, "le increasing: {w:?}");
        assert!(w[0].1 <= w[1].1, "cumulative: {w:?}");
    }
    let braces = |s: &str| {
        if labels.is_empty() {
            s.to_string()
        } else {
            format!("{s}{{{}}}", labels.trim_end_matches(','))
        }
    };
    let count = p.get(&braces(&format!("{name}_count")));
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
    buckets
}

/// A workload touching every part: retries, a breaker that trips, the result cache, a
/// fallback, refusals (over the limit and at shutdown), submissions and inline runs.
fn busy_executor(cfg: OptimizationConfig) -> (Executor<u64, ()>, Arc<Breaker>) {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            open_ticks: u64::MAX,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    );
    let br = Arc::clone(&breaker);
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            let flaky = b.task_with(
                "flaky \"retried\"",
                {
                    let tries = std::sync::atomic::AtomicU32::new(0);
                    move |x: u64, _: &mut _| {
                        // Every other attempt fails: each run retries once at most.
                        if tries
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                            .is_multiple_of(2)
                        {
                            Err(StepError::transient("flaky"))
                        } else {
                            Ok(x)
                        }
                    }
                },
                TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).unwrap()),
            );
            let cached = b.task_with(
                "square",
                |x: u64, _: &mut _| Ok(x * x),
                TaskConfig::new().cacheable(StepFingerprint::builder("square", 1).build()),
            );
            let half = b.task("half", |x, _| Ok(x / 2));
            let down = b.task_with(
                "down\\stream",
                |x: u64, _: &mut _| {
                    if x == 9 {
                        Err(StepError::permanent("nine"))
                    } else {
                        Ok(x)
                    }
                },
                TaskConfig::new().breaker(Arc::clone(&br)).fallback(half),
            );
            b.sequence("s", &[flaky, cached, down])
        })
        .unwrap(),
    );
    let ex = Executor::new(cfg).unwrap();
    for i in 0..8 {
        let done = ex.run(&g, i % 4, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Succeeded);
    }
    let tickets: Vec<_> = (0..4)
        .map(|i| ex.submit(&g, i, (), crate::Priority::High).ok().unwrap())
        .collect();
    for t in tickets {
        assert!(matches!(t.wait().unwrap(), Finished::Ran(_)));
    }
    ex.shutdown(Drain::Finish);
    let back = ex.submit(&g, 1, (), crate::Priority::Low).unwrap_err();
    assert_eq!(back.reason, Refusal::ShuttingDown);
    (ex, breaker)
}

fn configs() -> [(&'static str, OptimizationConfig); 3] {
    let with = |mut cfg: OptimizationConfig| {
        cfg.workers = 2;
        cfg.telemetry.level = TelemetryLevel::Events;
        cfg.telemetry.run_sample_period = 1;
        cfg
    };
    [
        ("latency", with(OptimizationConfig::latency())),
        ("throughput", with(OptimizationConfig::throughput())),
        ("low_memory", with(OptimizationConfig::low_memory())),
    ]
}

#[test]
fn every_contracted_metric_is_rendered_and_the_counts_equal_the_report() {
    for (preset, cfg) in configs() {
        let (ex, breaker) = busy_executor(cfg);
        let (text, p) = render(&ex);
        let report = ex.report();
        for name in CONTRACT {
            assert!(
                p.types.contains_key(*name),
                "{preset}: {name} missing\n{text}"
            );
        }
        assert_eq!(p.types["flujo_run_latency_seconds"], "histogram");
        assert_eq!(p.types["flujo_runs_total"], "counter");
        assert_eq!(p.types["flujo_queue_depth"], "gauge");
        let runs = &report.runs;
        assert_eq!((runs.completed, runs.rejected_shutting_down), (12, 1));
        for (series, want) in [
            ("flujo_runs_submitted_total", runs.submitted),
            ("flujo_runs_total{result=\"completed\"}", runs.completed),
            ("flujo_runs_total{result=\"panicked\"}", runs.panicked),
            ("flujo_runs_total{result=\"handed_back\"}", runs.handed_back),
            (
                "flujo_runs_completed_total{outcome=\"succeeded\"}",
                runs.succeeded,
            ),
            (
                "flujo_runs_completed_total{outcome=\"failed\"}",
                runs.failed,
            ),
            (
                "flujo_runs_rejected_total{reason=\"shutting_down\"}",
                runs.rejected_shutting_down,
            ),
            (
                "flujo_runs_rejected_total{reason=\"queue_full\"}",
                runs.rejected_queue_full,
            ),
            ("flujo_runs_in_flight", runs.in_flight),
            ("flujo_runs_inline_total", runs.inline),
            ("flujo_admission_limit", report.admission.limit_current),
            ("flujo_runners_live", report.pool.pool_live),
            (
                "flujo_arena_bytes_reserved",
                report.pool.arena_bytes_reserved,
            ),
            ("flujo_waits_total{kind=\"lent\"}", report.waits.lent),
            (
                "flujo_telemetry_events_dropped_total",
                report.telemetry.events_dropped,
            ),
        ] {
            assert_eq!(p.get(series), want as f64, "{preset}: {series}");
        }
        for c in Counter::ALL {
            let series = format!("flujo_{}_total", c.name());
            assert_eq!(
                p.get(&series),
                report.counter(c) as f64,
                "{preset}: {series}"
            );
        }
        assert!(report.counter(Counter::Retries) > 0, "{preset}");
        assert!(report.counter(Counter::CacheHits) > 0, "{preset}");
        assert!(report.counter(Counter::BreakerRejections) > 0, "{preset}");
        assert!(report.counter(Counter::FallbacksUsed) > 0, "{preset}");
        for row in &report.steps {
            let mut label = String::new();
            push_label_value(&mut label, &row.step);
            let series = format!("flujo_step_executions_total{{step=\"{label}\"}}");
            assert_eq!(p.get(&series), row.executions as f64, "{preset}: {series}");
        }
        // The breaker tripped for good on input 3 (9 after `square`): open, one transition to open.
        let step = "down\\\\stream";
        for (state, want) in [("closed", 0.0), ("open", 1.0), ("half_open", 0.0)] {
            let series = format!("flujo_breaker_state{{step=\"{step}\",state=\"{state}\"}}");
            assert_eq!(p.get(&series), want, "{preset}: {series}");
        }
        let trips = breaker.transition_counts().closed_to_open as f64;
        assert_eq!(trips, 1.0);
        let series = format!("flujo_breaker_transitions_total{{step=\"{step}\",to=\"open\"}}");
        assert_eq!(p.get(&series), trips, "{preset}");
        assert!(p.get("flujo_cache_entries") >= 1.0, "{preset}");
        assert!(p.get("flujo_cache_bytes") >= 1.0, "{preset}");
        assert_eq!(p.get("flujo_queue_depth{priority=\"high\"}"), 0.0);
    }
}

#[test]
fn histograms_are_cumulative_end_in_their_count_and_sum_seconds() {
    for (preset, cfg) in configs() {
        let (ex, _) = busy_executor(cfg);
        let (_, p) = render(&ex);
        let report = ex.report();
        let run = check_histogram(&p, "flujo_run_latency_seconds", "");
        assert_eq!(run.last().unwrap().1, report.run_latency.samples as f64);
        assert_eq!(report.run_latency.samples, 12, "{preset}");
        let sum = p.get("flujo_run_latency_seconds_sum");
        let mean_s = report.run_latency.mean_ns as f64 / 1e9;
        // `mean_ns` is the sum divided by the count, rounded down.
        assert!(
            (sum / 12.0 - mean_s).abs() <= 1e-9 + mean_s * 1e-12,
            "{preset}: {sum} vs {mean_s}"
        );
        let square = check_histogram(&p, "flujo_step_latency_seconds", "step=\"square\",");
        let row = report.step("square").unwrap();
        assert_eq!(
            square.last().unwrap().1,
            row.latency.samples as f64,
            "{preset}"
        );
        assert!(row.latency.samples > 0);
        check_histogram(
            &p,
            "flujo_step_latency_seconds",
            "step=\"flaky \\\"retried\\\"\",",
        );
        // The four submissions were at High; the inline runs never queue.
        for (priority, want) in [("high", 4.0), ("normal", 0.0), ("low", 0.0)] {
            let labels = format!("priority=\"{priority}\",");
            let b = check_histogram(&p, "flujo_queue_wait_seconds", &labels);
            assert_eq!(b.last().unwrap().1, want, "{preset}: {priority}");
        }
    }
}

#[test]
fn the_queue_wait_is_the_time_from_submission_to_start_on_the_executors_clock() {
    use std::sync::mpsc;
    use std::sync::Mutex;

    use flujo_core::graph::ManualClock;

    // One worker; the first run holds it until released, the second waits in the queue
    // meanwhile, while the manual clock moves 5 ms.
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, release_rx) = (Mutex::new(started_tx), Mutex::new(release_rx));
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            b.task("gate", move |x: u64, _: &mut _| {
                if x == 0 {
                    started_tx.lock().unwrap().send(()).unwrap();
                    release_rx.lock().unwrap().recv().unwrap();
                }
                Ok(x)
            })
        })
        .unwrap(),
    );
    for (preset, mut cfg) in configs() {
        cfg.workers = 1;
        let clock = ManualClock::new(1_000);
        let ex = Executor::builder(cfg).clock(clock.clone()).build().unwrap();
        let first = ex.submit(&g, 0, (), crate::Priority::Normal).ok().unwrap();
        started_rx.recv().unwrap();
        let second = ex.submit(&g, 1, (), crate::Priority::Normal).ok().unwrap();
        clock.advance(5_000_000);
        // A scrape while a step holds the only worker returns (it waits for no run), and
        // sees the second run queued.
        let (_, p) = render(&ex);
        assert_eq!(
            p.get("flujo_queue_depth{priority=\"normal\"}"),
            1.0,
            "{preset}"
        );
        assert_eq!(p.get("flujo_runs_in_flight"), 2.0, "{preset}");
        release_tx.send(()).unwrap();
        for t in [first, second] {
            assert!(matches!(t.wait().unwrap(), Finished::Ran(_)), "{preset}");
        }
        let (_, p) = render(&ex);
        let b = check_histogram(&p, "flujo_queue_wait_seconds", "priority=\"normal\",");
        let at = |le_ns: u64| {
            let i = LATENCY_EDGES_NS
                .iter()
                .position(|&e| e - 1 == le_ns)
                .unwrap();
            b[i].1
        };
        // The first waited 0 ticks, the second exactly 5 ms (between the edges 2^22 and
        // 3 * 2^21 ns).
        assert_eq!(
            (at((1 << 7) - 1), at((1 << 22) - 1), at((3 << 21) - 1)),
            (1.0, 1.0, 2.0),
            "{preset}"
        );
        let sum = p.get("flujo_queue_wait_seconds_sum{priority=\"normal\"}");
        assert_eq!(sum, 0.005, "{preset}");
        assert_eq!(
            p.get("flujo_queue_wait_seconds_count{priority=\"high\"}"),
            0.0
        );
    }
}

#[test]
fn bucket_counts_are_exact_at_every_edge() {
    // Values at and around every edge, and far outside the range.
    let mut h = Histogram::new();
    let mut values = vec![0u64, 1, 255, 1 << 40, u64::MAX];
    for &e in &LATENCY_EDGES_NS {
        values.extend([e - 2, e - 1, e, e + 1]);
    }
    for &v in &values {
        h.record(v);
    }
    let mut out = String::new();
    render_histograms(&h, std::iter::empty(), &mut out);
    let p = parse(&out);
    let buckets = check_histogram(&p, "flujo_run_latency_seconds", "");
    for (i, &e) in LATENCY_EDGES_NS.iter().enumerate() {
        // The edge as rendered is `e - 1` ns; the count is exactly the values up to it.
        let (le, count) = buckets[i];
        assert_eq!((le * 1e9).round() as u64, e - 1);
        let want = values.iter().filter(|&&v| v < e).count() as f64;
        assert_eq!(count, want, "edge {e}");
    }
    assert_eq!(buckets[LATENCY_EDGES].1, values.len() as f64);
    // Each edge starts an engine bucket: `e - 1` and `e` land in different buckets.
    for &e in &LATENCY_EDGES_NS {
        let mut h = Histogram::new();
        h.record(e - 1);
        h.record(e);
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.len(), 2, "edge {e}");
        assert_eq!((b[0].high, b[1].low), (e - 1, e));
    }
    assert_eq!(LATENCY_EDGES_NS[0], 1 << 7);
    assert_eq!(LATENCY_EDGES, 59);
    assert_eq!(LATENCY_EDGES_NS[LATENCY_EDGES - 1], 1 << 36);
}

#[test]
fn an_empty_histogram_renders_zero_buckets_and_sum() {
    let h = Histogram::new();
    let mut out = String::new();
    render_histograms(&h, [("a", None)].into_iter(), &mut out);
    let p = parse(&out);
    let b = check_histogram(&p, "flujo_step_latency_seconds", "step=\"a\",");
    assert!(b.iter().all(|&(_, c)| c == 0.0));
    assert_eq!(p.get("flujo_step_latency_seconds_sum{step=\"a\"}"), 0.0);
}

#[test]
fn label_values_are_escaped() {
    let mut out = String::new();
    push_label_value(&mut out, "a\"b\\c\nd é");
    assert_eq!(out, "a\\\"b\\\\c\\nd é");
    let g = Graph::<u64, ()>::build(|b| b.task("two\nlines \"q\" \\", |x, _| Ok(x))).unwrap();
    let ex = Executor::new(OptimizationConfig::latency()).unwrap();
    ex.run(&g, 1, ()).unwrap();
    let (text, p) = render(&ex);
    assert_eq!(
        p.get("flujo_step_executions_total{step=\"two\\nlines \\\"q\\\" \\\\\"}"),
        1.0,
        "{text}"
    );
}

#[test]
fn an_idle_executor_renders_every_family_at_zero() {
    let ex = Executor::<u64, ()>::new(OptimizationConfig::low_memory()).unwrap();
    let (_, p) = render(&ex);
    for name in CONTRACT {
        assert!(p.types.contains_key(*name), "{name}");
    }
    assert_eq!(p.get("flujo_runs_submitted_total"), 0.0);
    check_histogram(&p, "flujo_run_latency_seconds", "");
}

#[cfg(feature = "metrics-http")]
mod http_endpoint {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        conn.write_all(request).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn get_metrics_is_served_anything_else_is_404_and_drop_stops_the_thread() {
        let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x + 1))).unwrap();
        let ex = Executor::new(OptimizationConfig::latency()).unwrap();
        for i in 0..3 {
            ex.run(&g, i, ()).unwrap();
        }
        let server = ex.serve_metrics("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback());
        let answer = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let p = parse(body);
        assert_eq!(p.get("flujo_runs_total{result=\"completed\"}"), 3.0);
        // A query string is fine; other paths and methods are not found.
        let answer = get(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
        for request in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /metrics HTTP/1.1\r\n\r\n",
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            let answer = get(addr, request);
            assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        }
        // A request that never ends its headers is cut at the bound.
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(http::MAX_REQUEST + 100, b'a');
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let _ = conn.write_all(&big);
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        // Still serving after all that.
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
        // Dropping the handle joins the thread: the port is closed after.
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "the listener is gone");
    }

    #[test]
    fn a_client_trickling_its_request_holds_the_server_no_longer_than_the_bound() {
        let ex = Executor::<u64, ()>::new(OptimizationConfig::latency()).unwrap();
        let server = ex.serve_metrics("127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        // One byte every 200 ms, never ending its headers: 60 s if the server let it.
        let trickler = std::thread::spawn(move || {
            let mut conn = TcpStream::connect(addr).unwrap();
            for _ in 0..300 {
                if conn.write_all(b"G").is_err() {
                    return true; // the server closed the connection
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            false
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Served once the trickler's 2 s are up (`get` gives up after 10 s).
        let answer = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(trickler.join().unwrap(), "the trickler was cut off");
    }

    #[test]
    fn a_server_outliving_its_executor_answers_503() {
        let ex = Executor::<u64, ()>::new(OptimizationConfig::latency()).unwrap();
        let server = ex.serve_metrics("127.0.0.1:0").unwrap();
        drop(ex);
        let answer = get(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    }

    #[test]
    fn a_request_is_classified_by_its_first_line() {
        for (request, want) in [
            (
                &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
                http::Request::Metrics,
            ),
            (b"GET /metrics HTTP/1.1\n\n", http::Request::Metrics),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", http::Request::NotFound),
            (b"", http::Request::NotFound),
        ] {
            assert_eq!(http::read_request(&mut &request[..]).unwrap(), want);
        }
        let long = vec![b'a'; http::MAX_REQUEST + 1];
        assert_eq!(
            http::read_request(&mut &long[..]).unwrap(),
            http::Request::TooLarge
        );
    }
}

#[test]
fn alert_rules_render_their_state_and_transitions() {
    use crate::config::{AlertRule, Metric};
    use flujo_core::graph::ManualClock;
    let clock = ManualClock::new(0);
    let mut cfg = OptimizationConfig::latency();
    for (name, above) in [("errors", 0.5), ("never", 1.0)] {
        cfg.monitor.rules.push(AlertRule {
            window: std::time::Duration::from_secs(1),
            above,
            clear_below: 0.1,
            ..AlertRule::new(name, Metric::ErrorRate)
        });
    }
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (_, p) = render(&ex);
    assert_eq!(p.get("flujo_alert_firing{rule=\"errors\"}"), 0.0);
    let g = Graph::<u64, ()>::build(|b| b.task("fail", |_, _| Err(StepError::permanent("no"))))
        .unwrap();
    for i in 0..4 {
        ex.run(&g, i, ()).unwrap();
    }
    clock.advance(1_000_000_000);
    let (_, p) = render(&ex);
    assert_eq!(p.types["flujo_alert_firing"], "gauge");
    assert_eq!(p.get("flujo_alert_firing{rule=\"errors\"}"), 1.0);
    assert_eq!(p.get("flujo_alert_firing{rule=\"never\"}"), 0.0);
    assert_eq!(
        p.get("flujo_alert_transitions_total{rule=\"errors\",to=\"firing\"}"),
        1.0
    );
    assert_eq!(
        p.get("flujo_alert_transitions_total{rule=\"errors\",to=\"resolved\"}"),
        0.0
    );
}

#[test]
fn the_memory_gauges_are_the_reports_parts_and_the_process_readings() {
    for (preset, cfg) in configs() {
        let (ex, _breaker) = busy_executor(cfg);
        // Quiet now: a report's engine parts are those the scrape read.
        let (text, p) = render(&ex);
        let report = ex.report();
        assert_eq!(p.types["flujo_engine_memory_bytes"], "gauge");
        for (part, bytes) in report.memory.parts() {
            let series = format!("flujo_engine_memory_bytes{{part=\"{part}\"}}");
            assert_eq!(p.get(&series), bytes as f64, "{preset}: {series}\n{text}");
        }
        assert!(report.memory.cache_bytes() > 0 && report.memory.arena_bytes > 0);
        let process = &report.memory.process;
        if cfg!(target_os = "linux") {
            assert_eq!(p.types["flujo_process_resident_memory_bytes"], "gauge");
            assert_eq!(p.types["flujo_process_cpu_seconds_total"], "counter");
            assert!(p.get("flujo_process_resident_memory_bytes") > 0.0);
            let cpu_s = p.get("flujo_process_cpu_seconds_total");
            let later_s = process.cpu_time_ns.unwrap() as f64 / 1e9;
            assert!(cpu_s > 0.0 && cpu_s <= later_s, "{cpu_s} then {later_s}");
        }
        // Present exactly when a limit is set.
        assert_eq!(
            p.types.contains_key("flujo_process_memory_limit_bytes"),
            process.memory_limit_bytes.is_some()
        );
    }
}

/// Performance-based selection: a bypassed step's series (state, flips, bypassed runs,
/// probes) and, with the adaptive cutoff, the cutoff's gauge and changes; equal to the
/// report.
#[test]
fn selection_renders_the_bypass_and_the_adaptive_cutoff() {
    let mut cfg = OptimizationConfig::latency();
    cfg.result_cache.enabled = true;
    cfg.inline_cutoff.adaptive = true;
    let bypass = &mut cfg.degradation.cache_bypass;
    (
        bypass.enabled,
        bypass.window,
        bypass.probe_every,
        bypass.probes,
    ) = (true, 10, 5, 2);
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let g = Graph::build(|b| {
        b.task_with(
            "unique",
            |x: u64, _: &mut _| Ok(x),
            TaskConfig::new().cacheable(StepFingerprint::builder("unique", 1).build()),
        )
    })
    .unwrap();
    for x in 0..30 {
        ex.run(&g, x, ()).unwrap();
    }
    let (_, p) = render(&ex);
    let row = &ex.report().health.selection.steps[0];
    assert_eq!((row.bypassed, row.bypassed_runs, row.probes), (true, 16, 4));
    let labels = format!("step=\"unique\",graph=\"{}\"", g.id());
    assert_eq!(
        p.get(&format!("flujo_cache_bypass_active{{{labels}}}")),
        1.0
    );
    let flips = |to: &str| {
        p.get(&format!(
            "flujo_cache_bypass_flips_total{{{labels},to=\"{to}\"}}"
        ))
    };
    assert_eq!((flips("taken"), flips("undone")), (1.0, 0.0));
    assert_eq!(
        p.get(&format!("flujo_cache_bypassed_runs_total{{{labels}}}")),
        16.0
    );
    assert_eq!(
        p.get(&format!("flujo_cache_bypass_probes_total{{{labels}}}")),
        4.0
    );
    assert_eq!(p.get("flujo_inline_cutoff"), 4096.0);
    assert_eq!(
        p.get("flujo_inline_cutoff_changes_total{to=\"raised\"}"),
        0.0
    );
    assert_eq!(p.types["flujo_cache_bypass_flips_total"], "counter");
}
