//! Prometheus exposition (crate feature `prometheus`): the executor's report, its latency
//! histograms and a few live readings rendered at scrape time in the Prometheus text format
//! (version 0.0.4, which every Prometheus and the OpenMetrics parsers read).
//!
//! [`Executor::render_metrics`](crate::Executor::render_metrics) renders; with the feature
//! `metrics-http`, [`Executor::serve_metrics`](crate::Executor::serve_metrics) serves it on a
//! small HTTP endpoint of its own (`GET /metrics`). A host with its own HTTP server mounts
//! `render_metrics` in a handler and answers with [`CONTENT_TYPE`].
//!
//! # Nothing recorded twice
//!
//! Every value is read when a scrape renders it, from what the engine keeps anyway: the
//! counts of [`Executor::report`](crate::Executor::report) (exact), the collected latency
//! histograms behind it (read under the report's own lock, which no worker takes while it
//! runs: a worker holds only its own runner's stats, and only to add a run that ended), the
//! breakers' states, the queues' lengths and the result cache's size. A scrape costs what a
//! report costs, plus one pass over each histogram's 7,424 buckets.
//!
//! # Histogram buckets
//!
//! The latency histograms (`flujo_run_latency_seconds`, `flujo_step_latency_seconds{step}`) are
//! classic Prometheus histograms whose `le` edges are edges of the engine's own log-linear
//! histogram ([`Histogram`]): two per power of two of nanoseconds, from 128 ns to about 69 s
//! ([`LATENCY_EDGES_NS`], 59 edges, so 60 series with `+Inf` per histogram). Each `le` is the inclusive upper end of an engine bucket
//! (`2^m - 1` and `3 * 2^(m-1) - 1` nanoseconds, in seconds), and no engine bucket straddles it,
//! so every cumulative count is exact: it counts exactly the latencies fed in that were at
//! most `le`. `+Inf` equals `_count`; `_sum` is the exact sum in seconds. Quantiles that
//! Prometheus interpolates (`histogram_quantile`) are within the edge spacing (a factor of
//! 1.5 or 4/3); the report's own quantiles stay within 1/256.
//!
//! Per-step latencies are those of sampled runs (the telemetry level and the run sample
//! period decide which runs); the counts beside them are exact.
//!
//! # Labels
//!
//! Label values are escaped (`\`, `"` and line feeds). Their sets are bounded: `step` names
//! are fixed when graphs are built (and the report keeps at most
//! [`MAX_STEP_ROWS`](crate::report::MAX_STEP_ROWS) of them); the other labels take a few fixed
//! values each. Breakers are labelled by their first step's name (with ` (+others)` for a
//! breaker shared by steps of several names); two breakers with the same label are summed into
//! one series, their state the least healthy of theirs (open, then half-open, then closed).
//!
//! # The metrics
//!
//! Counters end in `_total`, units are seconds and bytes. `docs/monitoring.md` says what each
//! means; the names are a contract with the deployment templates in `docs/deploy/`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `flujo_runs_submitted_total` | counter | |
//! | `flujo_runs_total` | counter | `result` = `completed`, `panicked`, `handed_back` |
//! | `flujo_runs_completed_total` | counter | `outcome` = `succeeded`, `failed`, `aborted` |
//! | `flujo_runs_rejected_total` | counter | `reason` = `queue_full`, `over_limit`, `shutting_down`, `shed` |
//! | `flujo_runs_inline_total` | counter | |
//! | `flujo_runs_in_flight` | gauge | |
//! | `flujo_run_latency_seconds` | histogram | |
//! | `flujo_<counter>_total`, one per [`Counter`] | counter | |
//! | `flujo_step_latency_seconds` | histogram | `step` |
//! | `flujo_step_executions_total` | counter | `step` |
//! | `flujo_admission_limit`, `_min_seen`, `_max_seen` | gauge | |
//! | `flujo_queue_depth` | gauge | `priority` = `high`, `normal`, `low` |
//! | `flujo_queue_capacity` | gauge | `priority` |
//! | `flujo_queue_wait_seconds` | histogram | `priority` |
//! | `flujo_breaker_state` | gauge | `step`, `state` = `closed`, `open`, `half_open` |
//! | `flujo_breaker_transitions_total` | counter | `step`, `to` = `open`, `half_open`, `closed` |
//! | `flujo_cache_entries`, `flujo_cache_bytes` | gauge | |
//! | `flujo_runners_live`, `flujo_runners_idle` | gauge | |
//! | `flujo_arena_bytes_used`, `flujo_arena_bytes_reserved` | gauge | |
//! | `flujo_engine_memory_bytes` | gauge | `part` = `cache`, `arenas`, `runners`, `queues`, `trace`, `telemetry` |
//! | `flujo_process_resident_memory_bytes` | gauge | |
//! | `flujo_process_cpu_seconds_total` | counter | |
//! | `flujo_process_memory_limit_bytes` | gauge | |
//! | `flujo_waits_total` | counter | `kind` = `lent`, `held` |
//! | `flujo_waits_helped_runs_total` | counter | |
//! | `flujo_telemetry_events_dropped_total`, `flujo_telemetry_records_dropped_total` | counter | |
//! | `flujo_alert_firing` | gauge | `rule` (each configured rule; bounded by `MAX_RULES`) |
//! | `flujo_alert_transitions_total` | counter | `rule`, `to` = `firing`, `resolved` |
//! | `flujo_regressions_total` | counter | |
//! | `flujo_health` | gauge | `state` = `healthy`, `degraded`, `critical` |
//! | `flujo_degradation_level` | gauge | |
//! | `flujo_degradation_action_active` | gauge | `action` (each configured action) |
//! | `flujo_degradation_actions_total` | counter | `action`, `to` = `taken`, `undone` |
//! | `flujo_inline_cutoff` | gauge | (only with `inline_cutoff.adaptive`) |
//! | `flujo_inline_cutoff_changes_total` | counter | `to` = `raised`, `lowered` |
//! | `flujo_cache_bypass_active` | gauge | `step`, `graph` (each step the automatic cache bypass follows; at most `max_steps`) |
//! | `flujo_cache_bypass_flips_total` | counter | `step`, `graph`, `to` = `taken`, `undone` |
//! | `flujo_cache_bypassed_runs_total`, `flujo_cache_bypass_probes_total` | counter | `step`, `graph` |
//!
//! The engine's memory parts are the report's [`MemoryStats`] ([`MemoryStats::parts`]); the
//! process metrics are read from `/proc` at scrape time (Linux; elsewhere, and for the memory
//! limit when no cgroup limit is set, the metric is left out) and cover the whole process,
//! host code included.
//!
//! The queue wait (`flujo_queue_wait_seconds`) is each submitted run's time from its
//! submission (the clock at the submit call, before it was queued or waited for room) to its
//! start, on the executor's clock. The clock reads exist already (the submission's and the
//! run's start); what this feature adds to a submitted run is one subtraction and one
//! histogram record into its pooled runner's report, under the lock the run's end takes
//! anyway, and per runner up to three 58 KiB histograms, made on first use. Without the
//! feature nothing of it is compiled. Inline runs (`Executor::run`) never queue and are not
//! in it.
//!
//! # Examples
//!
//! ```
//! use flujo_core::graph::Graph;
//! use flujo_runtime::config::OptimizationConfig;
//! use flujo_runtime::Executor;
//!
//! let g = Graph::<u64, ()>::build(|b| b.task("double", |x, _| Ok(x * 2))).unwrap();
//! let ex = Executor::new(OptimizationConfig::latency()).unwrap();
//! ex.run(&g, 21, ()).unwrap();
//! let mut text = String::new();
//! ex.render_metrics(&mut text);
//! assert!(text.contains("flujo_runs_total{result=\"completed\"} 1\n"));
//! assert!(text.contains("flujo_step_executions_total{step=\"double\"} 1\n"));
//! ```

use std::fmt::Write as _;

use flujo_core::policy::BreakerState;
use flujo_core::telemetry::{Counter, Histogram};

use crate::report::{MemoryStats, Report};
use crate::Priority;

#[cfg(feature = "metrics-http")]
mod http;
#[cfg(feature = "metrics-http")]
pub(crate) use http::serve;
#[cfg(feature = "metrics-http")]
pub use http::MetricsServer;

#[cfg(test)]
mod tests;

/// The `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Powers of two of nanoseconds the latency histograms' edges start and end at: `2^7` ns
/// (128 ns) and `2^36` ns (68.7 s).
const EDGE_LOW_POW: u32 = 7;
const EDGE_HIGH_POW: u32 = 36;

/// The latency histograms' bucket edges in nanoseconds: each `le` is the inclusive upper end
/// `edge - 1` of the engine bucket below `edge` (see the [module docs](self)). Two per power of
/// two, `2^m` and `3 * 2^(m-1)`, from `2^7` to `2^36`.
pub const LATENCY_EDGES_NS: [u64; LATENCY_EDGES] = latency_edges();

/// How many edges [`LATENCY_EDGES_NS`] has.
pub const LATENCY_EDGES: usize = 2 * (EDGE_HIGH_POW - EDGE_LOW_POW) as usize + 1;

const fn latency_edges() -> [u64; LATENCY_EDGES] {
    let mut edges = [0; LATENCY_EDGES];
    let mut i = 0;
    let mut m = EDGE_LOW_POW;
    while m < EDGE_HIGH_POW {
        edges[i] = 1 << m;
        edges[i + 1] = 3 << (m - 1);
        i += 2;
        m += 1;
    }
    edges[i] = 1 << EDGE_HIGH_POW;
    edges
}

/// The engine histogram's sub-bucket bits (`SUB_BUCKET_BITS` of the core's histogram; the
/// tests check the edges against a real [`Histogram`]).
// Read only by the const assertion below, which Rust 1.88 does not count as a use.
#[allow(dead_code)]
const ENGINE_SUB_BUCKET_BITS: u32 = 7;

// Every edge is the low end of an engine bucket (values below 2^8 have a bucket each; rows
// from 2^8 up have 128 sub-buckets of width 2^(m-7), and 2^(m-1) is a multiple of that), so
// no bucket straddles an `le`.
const _: () = {
    let mut i = 0;
    while i < LATENCY_EDGES {
        let e = LATENCY_EDGES_NS[i];
        let m = 63 - e.leading_zeros();
        assert!(m <= ENGINE_SUB_BUCKET_BITS || e.is_multiple_of(1 << (m - ENGINE_SUB_BUCKET_BITS)));
        i += 1;
    }
};

/// What a scrape reads beside the report: live readings of the executor's parts.
pub(crate) struct Readings {
    /// Queued submissions per priority (indexed by [`Priority::index`]).
    pub queue_depth: [usize; 3],
    /// Each queue's capacity.
    pub queue_capacity: [usize; 3],
    /// The result cache's entries and weight.
    pub cache_entries: usize,
    pub cache_bytes: usize,
    /// Each breaker's state, beside `report.breakers`.
    pub breaker_states: Vec<BreakerState>,
}

/// A metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `value` escaped for a label value: `\` as `\\`, `"` as `\"`, a line feed as `\n`.
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One sample line: `name{labels} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    push_labels(out, labels);
    let _ = writeln!(out, " {value}");
}

fn push_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

/// A metric with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    sample(out, name, &[], value);
}

/// Nanoseconds as seconds (a float the text format reads).
fn seconds(ns: u128) -> f64 {
    ns as f64 / 1e9
}

/// The `le` label values of [`LATENCY_EDGES_NS`]: `edge - 1` nanoseconds in seconds.
fn le_texts() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        LATENCY_EDGES_NS
            .iter()
            .map(|&edge| seconds(u128::from(edge - 1)).to_string())
            .collect()
    })
}

/// The samples of histogram `name` with `labels` from `h` (`None`: empty): the cumulative
/// counts at [`LATENCY_EDGES_NS`], `+Inf`, `_sum` (seconds) and `_count`.
fn histogram_samples(out: &mut String, name: &str, labels: &[(&str, &str)], h: Option<&Histogram>) {
    let bucket = format!("{name}_bucket");
    let mut with_le: Vec<(&str, &str)> = labels.to_vec();
    let mut buckets = h.into_iter().flat_map(Histogram::buckets).peekable();
    let mut cumulative = 0u64;
    for (&edge, le) in LATENCY_EDGES_NS.iter().zip(le_texts()) {
        while let Some(b) = buckets.next_if(|b| b.high < edge) {
            cumulative = cumulative.saturating_add(b.count);
        }
        with_le.push(("le", le));
        sample(out, &bucket, &with_le, cumulative);
        with_le.pop();
    }
    let count = h.map_or(0, Histogram::count);
    with_le.push(("le", "+Inf"));
    sample(out, &bucket, &with_le, count);
    sample(
        out,
        &format!("{name}_sum"),
        labels,
        seconds(h.map_or(0, Histogram::sum)),
    );
    sample(out, &format!("{name}_count"), labels, count);
}

/// Renders the latency histograms of the collected report builder: the run latency and each
/// step's.
pub(crate) fn render_histograms<'a>(
    run: &Histogram,
    steps: impl Iterator<Item = (&'a str, Option<&'a Histogram>)>,
    out: &mut String,
) {
    header(
        out,
        "flujo_run_latency_seconds",
        "histogram",
        "Wall time of completed runs, from their start to their end.",
    );
    histogram_samples(out, "flujo_run_latency_seconds", &[], Some(run));
    header(
        out,
        "flujo_step_latency_seconds",
        "histogram",
        "Latency of steps of sampled runs, per step name.",
    );
    for (step, h) in steps {
        histogram_samples(out, "flujo_step_latency_seconds", &[("step", step)], h);
    }
}

/// Renders `flujo_queue_wait_seconds{priority}` from the per-priority histograms.
pub(crate) fn render_queue_waits(waits: &[Option<Histogram>; 3], out: &mut String) {
    header(
        out,
        "flujo_queue_wait_seconds",
        "histogram",
        "Time submitted runs waited from submission to start, per priority.",
    );
    for p in Priority::ALL {
        histogram_samples(
            out,
            "flujo_queue_wait_seconds",
            &[("priority", priority_name(p))],
            waits[p.index()].as_ref(),
        );
    }
}

/// The label value of a breaker state.
fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// How unhealthy a state is (the state of merged same-label breakers is the worst).
fn severity(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// The label value of a priority.
fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// Renders everything but the latency histograms (`histograms`, rendered under the report's
/// lock, is appended in place).
pub(crate) fn render(report: &Report, readings: &Readings, histograms: &str, out: &mut String) {
    let runs = &report.runs;
    single(
        out,
        "flujo_runs_submitted_total",
        "counter",
        "Submissions, accepted or refused, and runs made on the caller's thread.",
        runs.submitted,
    );
    header(
        out,
        "flujo_runs_total",
        "counter",
        "Submissions that ended, by how: completed, panicked outside a step, or handed back at shutdown.",
    );
    for (result, n) in [
        ("completed", runs.completed),
        ("panicked", runs.panicked),
        ("handed_back", runs.handed_back),
    ] {
        sample(out, "flujo_runs_total", &[("result", result)], n);
    }
    header(
        out,
        "flujo_runs_completed_total",
        "counter",
        "Completed runs by outcome.",
    );
    for (outcome, n) in [
        ("succeeded", runs.succeeded),
        ("failed", runs.failed),
        ("aborted", runs.aborted),
    ] {
        sample(
            out,
            "flujo_runs_completed_total",
            &[("outcome", outcome)],
            n,
        );
    }
    header(
        out,
        "flujo_runs_rejected_total",
        "counter",
        "Refused submissions by reason.",
    );
    for (reason, n) in [
        ("queue_full", runs.rejected_queue_full),
        ("over_limit", runs.rejected_over_limit),
        ("shutting_down", runs.rejected_shutting_down),
        ("shed", runs.rejected_shed),
    ] {
        sample(out, "flujo_runs_rejected_total", &[("reason", reason)], n);
    }
    single(
        out,
        "flujo_runs_inline_total",
        "counter",
        "Runs made on the caller's thread (Executor::run), also counted in the other run counts.",
        runs.inline,
    );
    single(
        out,
        "flujo_runs_in_flight",
        "gauge",
        "Submissions accepted and not ended yet (queued, waiting or running).",
        runs.in_flight,
    );
    for counter in Counter::ALL {
        let name = format!("flujo_{}_total", counter.name());
        single(
            out,
            &name,
            "counter",
            &format!("The engine's exact counter {}.", counter.name()),
            report.counter(counter),
        );
    }
    header(
        out,
        "flujo_step_executions_total",
        "counter",
        "Executions per step name (exact when counting is on).",
    );
    for row in &report.steps {
        sample(
            out,
            "flujo_step_executions_total",
            &[("step", &row.step)],
            row.executions,
        );
    }
    let a = &report.admission;
    single(
        out,
        "flujo_admission_limit",
        "gauge",
        "The adaptive concurrency limit now.",
        a.limit_current,
    );
    single(
        out,
        "flujo_admission_limit_min_seen",
        "gauge",
        "The lowest concurrency limit seen.",
        a.limit_min_seen,
    );
    single(
        out,
        "flujo_admission_limit_max_seen",
        "gauge",
        "The highest concurrency limit seen.",
        a.limit_max_seen,
    );
    header(
        out,
        "flujo_queue_depth",
        "gauge",
        "Queued submissions per priority.",
    );
    for p in Priority::ALL {
        let depth = readings.queue_depth[p.index()];
        sample(
            out,
            "flujo_queue_depth",
            &[("priority", priority_name(p))],
            depth,
        );
    }
    header(
        out,
        "flujo_queue_capacity",
        "gauge",
        "Capacity of each priority's queue.",
    );
    for p in Priority::ALL {
        let cap = readings.queue_capacity[p.index()];
        sample(
            out,
            "flujo_queue_capacity",
            &[("priority", priority_name(p))],
            cap,
        );
    }
    render_breakers(report, &readings.breaker_states, out);
    single(
        out,
        "flujo_cache_entries",
        "gauge",
        "Entries in the shared result cache.",
        readings.cache_entries as u64,
    );
    single(
        out,
        "flujo_cache_bytes",
        "gauge",
        "Weight of the entries in the shared result cache, in bytes.",
        readings.cache_bytes as u64,
    );
    let pool = &report.pool;
    for (name, help, value) in [
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
        single(out, name, "gauge", help, value);
    }
    render_memory(&report.memory, out);
    header(
        out,
        "flujo_waits_total",
        "counter",
        "Waits of runs on their children: lent to queued runs, or held.",
    );
    sample(
        out,
        "flujo_waits_total",
        &[("kind", "lent")],
        report.waits.lent,
    );
    sample(
        out,
        "flujo_waits_total",
        &[("kind", "held")],
        report.waits.held,
    );
    single(
        out,
        "flujo_waits_helped_runs_total",
        "counter",
        "Queued runs run by waiting runs.",
        report.waits.helped,
    );
    single(
        out,
        "flujo_telemetry_events_dropped_total",
        "counter",
        "Telemetry events dropped (rings full).",
        report.telemetry.events_dropped,
    );
    single(
        out,
        "flujo_telemetry_records_dropped_total",
        "counter",
        "Step records runs could not keep.",
        report.telemetry.records_dropped,
    );
    render_alerts(report, out);
    render_health(report, out);
    render_selection(report, out);
    out.push_str(histograms);
}

/// `flujo_health`, `flujo_degradation_level` and, per configured action, whether it is in
/// force and how often it was taken and undone.
fn render_health(report: &Report, out: &mut String) {
    let h = &report.health;
    header(
        out,
        "flujo_health",
        "gauge",
        "1 for the executor's health now, 0 for the others.",
    );
    for state in ["healthy", "degraded", "critical"] {
        let on = u8::from(h.health.as_str() == state);
        sample(out, "flujo_health", &[("state", state)], on);
    }
    single(
        out,
        "flujo_degradation_level",
        "gauge",
        "The degradation level in force: 0 when healthy, else its position in the configuration.",
        u64::from(h.level),
    );
    if h.actions.is_empty() {
        return;
    }
    header(
        out,
        "flujo_degradation_action_active",
        "gauge",
        "1 while the degradation action is in force.",
    );
    for a in &h.actions {
        sample(
            out,
            "flujo_degradation_action_active",
            &[("action", &a.action)],
            u8::from(a.active),
        );
    }
    header(
        out,
        "flujo_degradation_actions_total",
        "counter",
        "Times each degradation action was taken and undone.",
    );
    for a in &h.actions {
        for (to, n) in [("taken", a.taken), ("undone", a.undone)] {
            sample(
                out,
                "flujo_degradation_actions_total",
                &[("action", &a.action), ("to", to)],
                n,
            );
        }
    }
}

/// Performance-based selection: the adaptive inline cutoff, and the automatic cache bypass,
/// one series per step it follows
/// (steps of one name in several graphs are one series each: the graph's id is a label).
fn render_selection(report: &Report, out: &mut String) {
    let sel = &report.health.selection;
    if let Some(cutoff) = sel.inline_cutoff {
        single(
            out,
            "flujo_inline_cutoff",
            "gauge",
            "The adaptive inline cutoff now (before the inline_more factor).",
            u64::from(cutoff),
        );
        header(
            out,
            "flujo_inline_cutoff_changes_total",
            "counter",
            "Times the adaptive inline cutoff rose and fell.",
        );
        for (to, n) in [
            ("raised", sel.cutoff_raised),
            ("lowered", sel.cutoff_lowered),
        ] {
            sample(out, "flujo_inline_cutoff_changes_total", &[("to", to)], n);
        }
    }
    let steps = &sel.steps;
    if steps.is_empty() {
        return;
    }
    let labels = |r: &crate::monitor::health::BypassRow| (r.step.clone(), r.graph.to_string());
    header(
        out,
        "flujo_cache_bypass_active",
        "gauge",
        "1 while the step's automatic cache bypass is in force.",
    );
    for r in steps {
        let (step, graph) = labels(r);
        let l = [("step", step.as_str()), ("graph", graph.as_str())];
        sample(out, "flujo_cache_bypass_active", &l, u8::from(r.bypassed));
    }
    header(
        out,
        "flujo_cache_bypass_flips_total",
        "counter",
        "Times each step's automatic cache bypass was taken and undone.",
    );
    for r in steps {
        let (step, graph) = labels(r);
        for (to, n) in [("taken", r.taken), ("undone", r.undone)] {
            let l = [
                ("step", step.as_str()),
                ("graph", graph.as_str()),
                ("to", to),
            ];
            sample(out, "flujo_cache_bypass_flips_total", &l, n);
        }
    }
    for (name, help, value) in [
        (
            "flujo_cache_bypassed_runs_total",
            "Executions of the step that skipped the result cache (bypassed).",
            (|r: &crate::monitor::health::BypassRow| r.bypassed_runs)
                as fn(&crate::monitor::health::BypassRow) -> u64,
        ),
        (
            "flujo_cache_bypass_probes_total",
            "Executions of a bypassed step that probed the result cache.",
            |r| r.probes,
        ),
    ] {
        header(out, name, "counter", help);
        for r in steps {
            let (step, graph) = labels(r);
            let l = [("step", step.as_str()), ("graph", graph.as_str())];
            sample(out, name, &l, value(r));
        }
    }
}

/// `flujo_alert_firing` and `flujo_alert_transitions_total`, one series per configured rule.
fn render_alerts(report: &Report, out: &mut String) {
    let alerts = &report.alerts;
    single(
        out,
        "flujo_regressions_total",
        "counter",
        "Shifts of a step's latency or error rate the change-point detector reported.",
        alerts.shifts,
    );
    if alerts.rules.is_empty() {
        return;
    }
    header(
        out,
        "flujo_alert_firing",
        "gauge",
        "1 while the monitor's alert rule is firing, else 0.",
    );
    for (rule, _, _) in &alerts.rules {
        let on = u8::from(alerts.firing.contains(rule));
        sample(out, "flujo_alert_firing", &[("rule", rule)], on);
    }
    header(
        out,
        "flujo_alert_transitions_total",
        "counter",
        "Times the monitor's alert rule fired or resolved.",
    );
    for (rule, fired, resolved) in &alerts.rules {
        for (to, n) in [("firing", fired), ("resolved", resolved)] {
            sample(
                out,
                "flujo_alert_transitions_total",
                &[("rule", rule), ("to", to)],
                n,
            );
        }
    }
}

/// `flujo_engine_memory_bytes{part}` and the process readings (each left out when it was not
/// read: off Linux, or no cgroup limit).
fn render_memory(memory: &MemoryStats, out: &mut String) {
    header(
        out,
        "flujo_engine_memory_bytes",
        "gauge",
        "Bytes the engine holds, counted from its own structures, by part.",
    );
    for (part, bytes) in memory.parts() {
        sample(out, "flujo_engine_memory_bytes", &[("part", part)], bytes);
    }
    let p = &memory.process;
    if let Some(bytes) = p.resident_bytes {
        single(
            out,
            "flujo_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the whole process (VmRSS), in bytes.",
            bytes,
        );
    }
    if let Some(ns) = p.cpu_time_ns {
        header(
            out,
            "flujo_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the whole process, in seconds.",
        );
        sample(
            out,
            "flujo_process_cpu_seconds_total",
            &[],
            seconds(u128::from(ns)),
        );
    }
    if let Some(bytes) = p.memory_limit_bytes {
        single(
            out,
            "flujo_process_memory_limit_bytes",
            "gauge",
            "The process's cgroup memory limit, in bytes (absent when none is set).",
            bytes,
        );
    }
}

/// `flujo_breaker_state` and `flujo_breaker_transitions_total`, one series per label value.
fn render_breakers(report: &Report, states: &[BreakerState], out: &mut String) {
    // (label, state, to_open, to_half_open, to_closed), merged by label.
    let mut rows: Vec<(&str, BreakerState, [u64; 3])> = Vec::new();
    for (i, b) in report.breakers.iter().enumerate() {
        let state = states.get(i).copied().unwrap_or(BreakerState::Closed);
        let t = [b.to_open, b.to_half_open, b.to_closed];
        match rows.iter_mut().find(|r| r.0 == b.step) {
            Some(r) => {
                if severity(state) > severity(r.1) {
                    r.1 = state;
                }
                for (m, t) in r.2.iter_mut().zip(t) {
                    *m = m.saturating_add(t);
                }
            }
            None => rows.push((&b.step, state, t)),
        }
    }
    header(
        out,
        "flujo_breaker_state",
        "gauge",
        "1 for each breaker's current state, 0 for its other states.",
    );
    for (step, state, _) in &rows {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let on = u8::from(s == *state);
            sample(
                out,
                "flujo_breaker_state",
                &[("step", step), ("state", state_name(s))],
                on,
            );
        }
    }
    header(
        out,
        "flujo_breaker_transitions_total",
        "counter",
        "Breaker transitions by the state moved to.",
    );
    for (step, _, t) in &rows {
        for (to, n) in ["open", "half_open", "closed"].into_iter().zip(t) {
            sample(
                out,
                "flujo_breaker_transitions_total",
                &[("step", step), ("to", to)],
                n,
            );
        }
    }
}
