//! `W16_metrics_render` (issue 17): one Prometheus scrape of an executor after a demo-like
//! workload (a 10-step graph with retries, a breaker, the result cache, a fallback, refusals,
//! sampled latencies at `TelemetryLevel::Histograms`; a few thousand runs), rendered by
//! flujo's own text encoder against `prometheus-client` (0.26, the official Rust client),
//! both in the Prometheus text format 0.0.4 (`prometheus_client::encoding::prometheus_text`).
//!
//! - `flujo`: `ex.render_metrics(&mut buf)` into a reused `String`.
//! - `prometheus_client_encode_only`: a `Registry` built once in setup the way a host that
//!   instruments its own code holds its metrics (`Counter`/`Gauge`, `Family<labels, _>` for
//!   labelled series, and for the latency histograms a small `EncodeMetric` of pre-aggregated
//!   buckets: the crate's `Histogram` can only `observe`), filled with the same values; only
//!   `prometheus_text::encode` is measured.
//! - `prometheus_client_fill_and_encode`: the idiomatic way to export pre-aggregated data with
//!   that crate, a `Collector` registered once that on each scrape reads `ex.report()` and the
//!   engine's latency histograms and emits `ConstCounter`/`ConstGauge` series and
//!   `encode_histogram(sum, count, buckets)`, then `prometheus_text::encode`. The executor's
//!   own histograms and live readings (queue depths, cache size, breaker states) are private
//!   to the crate, so the collector reads engine `Histogram`s rebuilt from the exposition
//!   (same buckets at every `le` edge; the same 7,424-bucket pass per histogram flujo makes)
//!   and the readings taken once at setup; it calls `ex.report()` each scrape as flujo does.
//! - `report_only` (information): that `ex.report()` alone, which both `flujo` and
//!   `prometheus_client_fill_and_encode` include.
//!
//! Setup renders all three and checks they agree: same families (name, type, help), same
//! series (name and label set; `le` compared as numbers) with the same values.
use std::collections::BTreeMap;
use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, RetryPolicy};
use flujo_core::telemetry::{Counter as EngineCounter, Histogram};
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::metrics::LATENCY_EDGES_NS;
use flujo_runtime::{Drain, Executor, Priority};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

type Ex = Executor<u64, ()>;
type Labels = Vec<(String, String)>;

/// Submitted runs (a third at each priority) and inline runs of the workload.
const SUBMITTED: u64 = 3_000;
const INLINE: u64 = 500;

/// The workload: returns the executor after it (shut down, with one refusal at shutdown).
fn busy_executor() -> Ex {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 2,
            open_ticks: 200_000,
            ..BreakerConfig::DEFAULT
        })
        .expect("a valid breaker"),
    );
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            let tries = AtomicU32::new(0);
            let flaky = b.task_with(
                "fetch",
                move |x: u64, _: &mut _| {
                    // One attempt in five fails: those runs retry once.
                    if tries.fetch_add(1, Ordering::Relaxed).is_multiple_of(5) {
                        Err(StepError::transient("flaky"))
                    } else {
                        Ok(x)
                    }
                },
                TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).expect("valid")),
            );
            let cached = b.task_with(
                "lookup",
                |x: u64, _: &mut _| Ok(x * x),
                TaskConfig::new().cacheable(StepFingerprint::builder("lookup", 1).build()),
            );
            let fallback = b.task("fx_cached", |x, _| Ok(x / 2));
            let remote = b.task_with(
                "fx_remote",
                |x: u64, _: &mut _| {
                    if x % 16 == 9 {
                        Err(StepError::permanent("outage"))
                    } else {
                        Ok(x)
                    }
                },
                TaskConfig::new().breaker(breaker).fallback(fallback),
            );
            let mut steps = vec![flaky, cached, remote];
            for name in ["validate", "score", "price", "tax", "discount", "summarize"] {
                steps.push(b.task(name, |x: u64, _| Ok(x.wrapping_add(1))));
            }
            b.sequence("order", &steps)
        })
        .expect("a valid graph"),
    );
    let mut cfg = OptimizationConfig::throughput();
    cfg.workers = 2;
    cfg.telemetry.level = TelemetryLevel::Histograms;
    cfg.telemetry.run_sample_period = 1;
    let ex = Ex::new(cfg).expect("a valid config");
    for i in 0..INLINE {
        ex.run(&g, i % 64, ()).expect("an inline run");
    }
    let mut tickets = Vec::new();
    for i in 0..SUBMITTED {
        let p = Priority::ALL[(i % 3) as usize];
        // Refusals (a full queue) are part of the workload; they are counted, not retried.
        if let Ok(t) = ex.submit(&g, i % 64, (), p) {
            tickets.push(t);
        }
        if tickets.len() >= 256 {
            for t in tickets.drain(..) {
                t.wait().expect("a finished run");
            }
        }
    }
    for t in tickets {
        t.wait().expect("a finished run");
    }
    ex.shutdown(Drain::Finish);
    assert!(
        ex.submit(&g, 1, (), Priority::Low).is_err(),
        "refused at shutdown"
    );
    ex
}

// ---------------------------------------------------------------------------------------
// The exposition as data: a small parser of the text format 0.0.4.

#[derive(Clone, Debug, Default)]
struct Family0 {
    name: String,
    kind: String,
    help: String,
    /// (sample name, labels in order, value)
    samples: Vec<(String, Labels, f64)>,
}

fn unescape_help(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\\\", "\\")
}

/// `{k="v",...}` (escapes `\\`, `\"`, `\n`) and the rest of the line after it.
fn parse_labels(s: &str) -> (Labels, &str) {
    let mut labels = Vec::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return (labels, s);
    };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        rest = rest.strip_prefix(',').unwrap_or(rest);
        let (key, r) = rest.split_once("=\"").expect("a label");
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("a closed label value");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &r[end + 1..];
    }
}

/// The families of `text`, in order.
fn parse(text: &str) -> Vec<Family0> {
    let mut families: Vec<Family0> = Vec::new();
    let mut help = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = unescape_help(rest.split_once(' ').expect("a help").1);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            families.push(Family0 {
                name: name.to_string(),
                kind: kind.to_string(),
                help: std::mem::take(&mut help),
                samples: Vec::new(),
            });
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let end = line.find(['{', ' ']).expect("a sample");
            let (labels, rest) = parse_labels(&line[end..]);
            let value: f64 = rest.trim().parse().expect("a value");
            families
                .last_mut()
                .expect("a sample after a TYPE")
                .samples
                .push((line[..end].to_string(), labels, value));
        }
    }
    families
}

/// What two expositions must agree on: each family's type and help, and each series' value,
/// keyed by name and label set (sorted; `le` as a number).
type Canonical = (BTreeMap<String, (String, String)>, BTreeMap<String, f64>);

fn canonical(text: &str) -> Canonical {
    let mut families = BTreeMap::new();
    let mut series = BTreeMap::new();
    for f in parse(text) {
        families.insert(f.name.clone(), (f.kind.clone(), f.help.clone()));
        for (name, mut labels, value) in f.samples {
            for (k, v) in &mut labels {
                if k == "le" && v != "+Inf" {
                    *v = format!("{:?}", v.parse::<f64>().expect("an le"));
                }
            }
            labels.sort();
            let key = format!("{name}{labels:?}");
            assert!(series.insert(key.clone(), value).is_none(), "twice: {key}");
        }
    }
    (families, series)
}

fn assert_agree(what: &str, ours: &str, theirs: &str) {
    let (a, b) = (canonical(ours), canonical(theirs));
    assert_eq!(a.0, b.0, "{what}: the families differ");
    let only_ours: Vec<_> = a.1.keys().filter(|k| !b.1.contains_key(*k)).collect();
    let only_theirs: Vec<_> = b.1.keys().filter(|k| !a.1.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{what}: series only in flujo's {only_ours:?}, only in theirs {only_theirs:?}"
    );
    for (k, v) in &a.1 {
        assert_eq!(v.to_bits(), b.1[k].to_bits(), "{what}: {k}");
    }
}

// ---------------------------------------------------------------------------------------
// prometheus-client: pre-aggregated histograms.

/// The `le` of each edge in seconds, as flujo writes it (`edge - 1` ns).
fn le_seconds() -> Vec<f64> {
    LATENCY_EDGES_NS
        .iter()
        .map(|&e| (e - 1) as f64 / 1e9)
        .collect()
}

/// One series of a pre-aggregated histogram: the counts between edges (not cumulative, as
/// `encode_histogram` wants them), the sum in seconds and the count.
#[derive(Clone, Debug)]
struct HistSeries {
    labels: Labels,
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

/// A histogram family set from pre-aggregated buckets (the crate's own `Histogram` only
/// observes values one by one).
#[derive(Debug)]
struct PreAggregated(Vec<HistSeries>);

impl EncodeMetric for PreAggregated {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for s in &self.0 {
            encode_hist(&mut encoder, &s.labels, &s.buckets, s.sum, s.count)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn encode_hist(
    encoder: &mut MetricEncoder,
    labels: &Labels,
    buckets: &[(f64, u64)],
    sum: f64,
    count: u64,
) -> fmt::Result {
    if labels.is_empty() {
        encoder.encode_histogram::<NoLabelSet>(sum, count, buckets, None)
    } else {
        encoder
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(sum, count, buckets, None)
    }
}

/// The histogram series of a parsed family, grouped by their labels without `le`.
fn hist_series(f: &Family0) -> Vec<HistSeries> {
    let les = le_seconds();
    let mut out: Vec<HistSeries> = Vec::new();
    for (name, labels, value) in &f.samples {
        let base: Labels = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        let i = match out.iter().position(|s| s.labels == base) {
            Some(i) => i,
            None => {
                out.push(HistSeries {
                    labels: base,
                    buckets: Vec::new(),
                    sum: 0.0,
                    count: 0,
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        match name.strip_prefix(&f.name).expect("a histogram sample") {
            "_bucket" => {
                let le = &labels.iter().find(|(k, _)| k == "le").expect("an le").1;
                if le != "+Inf" {
                    let cumulative: u64 = s.buckets.iter().map(|b| b.1).sum();
                    let edge = les[s.buckets.len()];
                    assert_eq!(le.parse::<f64>().expect("an le"), edge);
                    s.buckets.push((edge, *value as u64 - cumulative));
                }
            }
            "_sum" => s.sum = *value,
            "_count" => s.count = *value as u64,
            other => panic!("histogram sample {other}"),
        }
    }
    out
}

/// The registry a host instrumenting its own code would hold, filled with the values of
/// flujo's exposition `text`.
fn filled_registry(text: &str) -> Registry {
    let mut registry = Registry::default();
    for f in parse(text) {
        // The registry appends the full stop and (to counters) `_total` itself.
        let help = f.help.strip_suffix('.').unwrap_or(&f.help).to_string();
        let labelled = f.samples.iter().any(|s| !s.1.is_empty());
        match f.kind.as_str() {
            "counter" => {
                let name = f.name.strip_suffix("_total").expect("a _total counter");
                if labelled {
                    let family = Family::<Labels, Counter>::default();
                    for (_, labels, v) in &f.samples {
                        family.get_or_create(labels).inc_by(*v as u64);
                    }
                    registry.register(name, help, family);
                } else if f.samples[0].2.fract() != 0.0 {
                    // A counter of seconds (`flujo_process_cpu_seconds_total`).
                    let c = Counter::<f64, std::sync::atomic::AtomicU64>::default();
                    c.inc_by(f.samples[0].2);
                    registry.register(name, help, c);
                } else {
                    let c = Counter::<u64>::default();
                    c.inc_by(f.samples[0].2 as u64);
                    registry.register(name, help, c);
                }
            }
            "gauge" => {
                if labelled {
                    let family = Family::<Labels, Gauge>::default();
                    for (_, labels, v) in &f.samples {
                        family.get_or_create(labels).set(*v as i64);
                    }
                    registry.register(f.name, help, family);
                } else {
                    let g = Gauge::<i64>::default();
                    g.set(f.samples[0].2 as i64);
                    registry.register(f.name, help, g);
                }
            }
            "histogram" => {
                let series = hist_series(&f);
                registry.register(f.name, help, PreAggregated(series));
            }
            other => panic!("type {other}"),
        }
    }
    registry
}

// ---------------------------------------------------------------------------------------
// prometheus-client: a collector reading the engine's data at scrape time.

/// An engine histogram series: a core `Histogram` with the same count in every `le` gap as
/// the executor's, and its exact sum in seconds.
#[derive(Debug)]
struct EngineHist {
    family: &'static str,
    labels: Labels,
    histogram: Box<Histogram>,
    sum: f64,
}

/// What the collector reads beside the report (the executor keeps these private to the
/// crate): the engine histograms, and the live readings as they were at setup.
#[derive(Debug, Default)]
struct Readings {
    queue_depth: [u64; 3],
    queue_capacity: [u64; 3],
    cache_entries: u64,
    cache_bytes: u64,
    /// (breaker label, current state name)
    breaker_states: Vec<(String, &'static str)>,
    /// The process's CPU seconds, resident and limit bytes, as flujo read them from `/proc`.
    process_cpu_seconds: Option<f64>,
    process_resident_bytes: Option<u64>,
    process_limit_bytes: Option<u64>,
}

struct ScrapeCollector {
    ex: Arc<Ex>,
    histograms: Vec<EngineHist>,
    readings: Readings,
    les: Vec<f64>,
}

impl fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeCollector").finish_non_exhaustive()
    }
}

const PRIORITIES: [&str; 3] = ["high", "normal", "low"];
const STATES: [&str; 3] = ["closed", "open", "half_open"];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A labelled family of `kind` whose series are `(labels, value)`.
fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (l, v) in series {
        let f = m.encode_family(&l)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(f)?,
            _ => ConstGauge::new(v).encode(f)?,
        }
    }
    Ok(())
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let r = self.ex.report();
        let runs = &r.runs;
        counter(
            &mut e,
            "flujo_runs_submitted",
            "Submissions, accepted or refused, and runs made on the caller's thread.",
            runs.submitted,
        )?;
        family(
            &mut e,
            "flujo_runs",
            "Submissions that ended, by how: completed, panicked outside a step, or handed back at shutdown.",
            MetricType::Counter,
            [
                ("completed", runs.completed),
                ("panicked", runs.panicked),
                ("handed_back", runs.handed_back),
            ]
            .map(|(k, v)| (labels(&[("result", k)]), v)),
        )?;
        family(
            &mut e,
            "flujo_runs_completed",
            "Completed runs by outcome.",
            MetricType::Counter,
            [
                ("succeeded", runs.succeeded),
                ("failed", runs.failed),
                ("aborted", runs.aborted),
            ]
            .map(|(k, v)| (labels(&[("outcome", k)]), v)),
        )?;
        family(
            &mut e,
            "flujo_runs_rejected",
            "Refused submissions by reason.",
            MetricType::Counter,
            [
                ("queue_full", runs.rejected_queue_full),
                ("over_limit", runs.rejected_over_limit),
                ("shutting_down", runs.rejected_shutting_down),
                ("shed", runs.rejected_shed),
            ]
            .map(|(k, v)| (labels(&[("reason", k)]), v)),
        )?;
        counter(
            &mut e,
            "flujo_runs_inline",
            "Runs made on the caller's thread (Executor::run), also counted in the other run counts.",
            runs.inline,
        )?;
        gauge(
            &mut e,
            "flujo_runs_in_flight",
            "Submissions accepted and not ended yet (queued, waiting or running).",
            runs.in_flight,
        )?;
        for c in EngineCounter::ALL {
            let name = format!("flujo_{}", c.name());
            let help = format!("The engine's exact counter {}.", c.name());
            counter(&mut e, &name, &help, r.counter(c))?;
        }
        family(
            &mut e,
            "flujo_step_executions",
            "Executions per step name (exact when counting is on).",
            MetricType::Counter,
            r.steps
                .iter()
                .map(|row| (labels(&[("step", &row.step)]), row.executions)),
        )?;
        let a = &r.admission;
        gauge(
            &mut e,
            "flujo_admission_limit",
            "The adaptive concurrency limit now.",
            a.limit_current,
        )?;
        gauge(
            &mut e,
            "flujo_admission_limit_min_seen",
            "The lowest concurrency limit seen.",
            a.limit_min_seen,
        )?;
        gauge(
            &mut e,
            "flujo_admission_limit_max_seen",
            "The highest concurrency limit seen.",
            a.limit_max_seen,
        )?;
        let rd = &self.readings;
        family(
            &mut e,
            "flujo_queue_depth",
            "Queued submissions per priority.",
            MetricType::Gauge,
            (0..3).map(|i| (labels(&[("priority", PRIORITIES[i])]), rd.queue_depth[i])),
        )?;
        family(
            &mut e,
            "flujo_queue_capacity",
            "Capacity of each priority's queue.",
            MetricType::Gauge,
            (0..3).map(|i| (labels(&[("priority", PRIORITIES[i])]), rd.queue_capacity[i])),
        )?;
        // One breaker per label in this workload (flujo merges same-label breakers).
        assert_eq!(r.breakers.len(), rd.breaker_states.len());
        family(
            &mut e,
            "flujo_breaker_state",
            "1 for each breaker's current state, 0 for its other states.",
            MetricType::Gauge,
            rd.breaker_states.iter().flat_map(|(step, now)| {
                STATES.map(|s| {
                    (
                        labels(&[("step", step), ("state", s)]),
                        u64::from(s == *now),
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "flujo_breaker_transitions",
            "Breaker transitions by the state moved to.",
            MetricType::Counter,
            r.breakers.iter().flat_map(|b| {
                [
                    ("open", b.to_open),
                    ("half_open", b.to_half_open),
                    ("closed", b.to_closed),
                ]
                .map(|(to, n)| (labels(&[("step", &b.step), ("to", to)]), n))
            }),
        )?;
        gauge(
            &mut e,
            "flujo_cache_entries",
            "Entries in the shared result cache.",
            rd.cache_entries,
        )?;
        gauge(
            &mut e,
            "flujo_cache_bytes",
            "Weight of the entries in the shared result cache, in bytes.",
            rd.cache_bytes,
        )?;
        let pool = &r.pool;
        for (name, help, v) in [
            (
                "flujo_runners_live",
                "Pooled runners alive (lent or idle).",
                pool.pool_live,
            ),
            ("flujo_runners_idle", "Pooled runners idle.", pool.pool_idle),
            (
                "flujo_arena_bytes_used",
                "Record arena bytes in use by the pooled runners.",
                pool.arena_bytes_used,
            ),
            (
                "flujo_arena_bytes_reserved",
                "Record arena bytes reserved by the pooled runners.",
                pool.arena_bytes_reserved,
            ),
        ] {
            gauge(&mut e, name, help, v)?;
        }
        family(
            &mut e,
            "flujo_waits",
            "Waits of runs on their children: lent to queued runs, or held.",
            MetricType::Counter,
            [("lent", r.waits.lent), ("held", r.waits.held)]
                .map(|(k, v)| (labels(&[("kind", k)]), v)),
        )?;
        counter(
            &mut e,
            "flujo_waits_helped_runs",
            "Queued runs run by waiting runs.",
            r.waits.helped,
        )?;
        counter(
            &mut e,
            "flujo_telemetry_events_dropped",
            "Telemetry events dropped (rings full).",
            r.telemetry.events_dropped,
        )?;
        counter(
            &mut e,
            "flujo_telemetry_records_dropped",
            "Step records runs could not keep.",
            r.telemetry.records_dropped,
        )?;
        counter(
            &mut e,
            "flujo_regressions",
            "Shifts of a step's latency or error rate the change-point detector reported.",
            r.alerts.shifts,
        )?;
        family(
            &mut e,
            "flujo_health",
            "1 for the executor's health now, 0 for the others.",
            MetricType::Gauge,
            ["healthy", "degraded", "critical"].map(|state| {
                let on = u64::from(r.health.health.as_str() == state);
                (labels(&[("state", state)]), on)
            }),
        )?;
        gauge(
            &mut e,
            "flujo_degradation_level",
            "The degradation level in force: 0 when healthy, else its position in the configuration.",
            u64::from(r.health.level),
        )?;
        family(
            &mut e,
            "flujo_engine_memory_bytes",
            "Bytes the engine holds, counted from its own structures, by part.",
            MetricType::Gauge,
            r.memory
                .parts()
                .map(|(part, bytes)| (labels(&[("part", part)]), bytes)),
        )?;
        if let Some(bytes) = rd.process_resident_bytes {
            gauge(
                &mut e,
                "flujo_process_resident_memory_bytes",
                "Resident memory of the whole process (VmRSS), in bytes.",
                bytes,
            )?;
        }
        if let Some(seconds) = rd.process_cpu_seconds {
            ConstCounter::new(seconds).encode(e.encode_descriptor(
                "flujo_process_cpu_seconds",
                "User and system CPU time of the whole process, in seconds.",
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some(bytes) = rd.process_limit_bytes {
            gauge(
                &mut e,
                "flujo_process_memory_limit_bytes",
                "The process's cgroup memory limit, in bytes (absent when none is set).",
                bytes,
            )?;
        }
        // The histograms: one pass over each engine histogram's buckets per scrape.
        for (name, help) in HIST_HELP {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for h in self.histograms.iter().filter(|h| h.family == name) {
                let buckets = engine_buckets(&h.histogram, &self.les);
                encode_hist(&mut m, &h.labels, &buckets, h.sum, h.histogram.count())?;
            }
        }
        Ok(())
    }
}

const HIST_HELP: [(&str, &str); 3] = [
    (
        "flujo_run_latency_seconds",
        "Wall time of completed runs, from their start to their end.",
    ),
    (
        "flujo_step_latency_seconds",
        "Latency of steps of sampled runs, per step name.",
    ),
    (
        "flujo_queue_wait_seconds",
        "Time submitted runs waited from submission to start, per priority.",
    ),
];

/// The counts between edges of an engine histogram (the pass flujo's renderer makes).
fn engine_buckets(h: &Histogram, les: &[f64]) -> Vec<(f64, u64)> {
    let mut it = h.buckets().peekable();
    let mut buckets = Vec::with_capacity(les.len());
    for (&edge, &le) in LATENCY_EDGES_NS.iter().zip(les) {
        let mut n = 0u64;
        while let Some(b) = it.next_if(|b| b.high < edge) {
            n += b.count;
        }
        buckets.push((le, n));
    }
    buckets
}

/// The collector's inputs that the executor keeps private, taken from flujo's exposition
/// `text`: engine histograms with the same count in every `le` gap, and the live readings.
fn engine_inputs(text: &str) -> (Vec<EngineHist>, Readings) {
    let mut histograms = Vec::new();
    let mut rd = Readings::default();
    for f in parse(text) {
        let value = |pairs: &[(&str, &str)]| {
            let want = labels(pairs);
            f.samples.iter().find(|s| s.1 == want).expect("a series").2 as u64
        };
        match f.name.as_str() {
            "flujo_queue_depth" | "flujo_queue_capacity" => {
                let slot = if f.name == "flujo_queue_depth" {
                    &mut rd.queue_depth
                } else {
                    &mut rd.queue_capacity
                };
                for (i, p) in PRIORITIES.iter().enumerate() {
                    slot[i] = value(&[("priority", p)]);
                }
            }
            "flujo_process_cpu_seconds_total" => rd.process_cpu_seconds = Some(f.samples[0].2),
            "flujo_process_resident_memory_bytes" => rd.process_resident_bytes = Some(value(&[])),
            "flujo_process_memory_limit_bytes" => rd.process_limit_bytes = Some(value(&[])),
            "flujo_cache_entries" => rd.cache_entries = value(&[]),
            "flujo_cache_bytes" => rd.cache_bytes = value(&[]),
            "flujo_breaker_state" => {
                for (_, l, v) in &f.samples {
                    if *v == 1.0 {
                        let state = STATES.iter().find(|s| **s == l[1].1).expect("a state");
                        rd.breaker_states.push((l[0].1.clone(), state));
                    }
                }
            }
            _ => {}
        }
        let Some(&(family, _)) = HIST_HELP.iter().find(|(n, _)| *n == f.name) else {
            continue;
        };
        for s in hist_series(&f) {
            let mut h = Box::new(Histogram::new());
            let mut cumulative = 0;
            for (i, &(_, n)) in s.buckets.iter().enumerate() {
                // `edge - 1` is in the engine bucket just below the edge.
                h.record_n(LATENCY_EDGES_NS[i] - 1, n);
                cumulative += n;
            }
            let last = *LATENCY_EDGES_NS.last().expect("edges");
            h.record_n(last, s.count - cumulative);
            histograms.push(EngineHist {
                family,
                labels: s.labels,
                histogram: h,
                sum: s.sum,
            });
        }
    }
    (histograms, rd)
}

/// `W16_metrics_render`.
pub fn benches(c: &mut Criterion) {
    let ex = Arc::new(busy_executor());
    let mut ours = String::new();
    ex.render_metrics(&mut ours);

    let registry = filled_registry(&ours);
    let mut encoded = String::new();
    encode(&mut encoded, &registry).expect("encoded");
    assert_agree("encode_only", &ours, &encoded);

    let (histograms, readings) = engine_inputs(&ours);
    let mut scraped = Registry::default();
    scraped.register_collector(Box::new(ScrapeCollector {
        ex: Arc::clone(&ex),
        histograms,
        readings,
        les: le_seconds(),
    }));
    let mut collected = String::new();
    encode(&mut collected, &scraped).expect("encoded");
    assert_agree("fill_and_encode", &ours, &collected);
    eprintln!(
        "W16_metrics_render: flujo {} bytes / {} lines; prometheus-client {} bytes / {} lines \
         (encode_only), {} bytes (fill_and_encode)",
        ours.len(),
        ours.lines().count(),
        encoded.len(),
        encoded.lines().count(),
        collected.len()
    );

    let mut group = c.benchmark_group("W16_metrics_render");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flujo", |b| {
        let mut buf = String::with_capacity(ours.len());
        b.iter(|| {
            buf.clear();
            black_box(&ex).render_metrics(&mut buf);
            black_box(buf.len())
        });
    });
    // Information: the `ex.report()` that both `flujo` and the collector make per scrape.
    group.bench_function("report_only", |b| {
        b.iter(|| black_box(black_box(&ex).report()));
    });
    group.bench_function("prometheus_client_encode_only", |b| {
        let mut buf = String::with_capacity(encoded.len());
        b.iter(|| {
            buf.clear();
            encode(&mut buf, black_box(&registry)).expect("encoded");
            black_box(buf.len())
        });
    });
    group.bench_function("prometheus_client_fill_and_encode", |b| {
        let mut buf = String::with_capacity(collected.len());
        b.iter(|| {
            buf.clear();
            encode(&mut buf, black_box(&scraped)).expect("encoded");
            black_box(buf.len())
        });
    });
    group.finish();
}
