//! The run-time monitor: what the executor sees of itself while it runs (`docs/operations.md`).
//!
//! - **Windows.** Time is cut into buckets of the configured resolution (one second in the
//!   presets). Each pooled runner counts the runs it ends into its own open bucket: per graph,
//!   the runs by outcome and error class, cache hits and misses, every run's latency and every
//!   submitted run's queue wait (two timestamps it already has); per step (from telemetry level
//!   `counters` up), executions by outcome and error class and, of sampled runs, latencies.
//!   When a run ends in a later bucket, or the monitor polls, the open bucket goes to the
//!   monitor, which merges the runners' parts by bucket index. A window is the merge of its last
//!   buckets, made on read ([`Executor::windows`](crate::Executor::windows)). Workers never wait
//!   for a reader: a run's end holds only its own runner's lock.
//! - **Rules.** At the end of each bucket every [`crate::config::AlertRule`] reads
//!   its window, with hysteresis and a minimum of samples; firing and resolving raise an
//!   [`AlertEvent`] into the report, the trace, the Prometheus exposition and the host's
//!   callback.
//! - [`detect`]: an online change-point detector for step latency and error rate, against a
//!   baseline the host can pin.
//! - [`resources`]: process CPU and resident memory, and the memory the engine holds.
//! - `bottleneck` (the report's `bottlenecks`): critical-path shares of sampled runs.
//! - [`health`]: the health state machine whose degradation actions the executor applies.
//!
//! Buckets close when the executor's clock says so: a run that ends in a later bucket than the
//! last one evaluated polls the monitor (one relaxed load when it has not), and so does every
//! read. An executor that runs nothing and is not read evaluates nothing: a host that wants
//! alerts through idle periods calls [`Executor::poll_monitor`](crate::Executor::poll_monitor)
//! on a timer.

pub(crate) mod bottleneck;
pub mod detect;
pub mod health;
pub mod resources;
pub(crate) mod window;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{AlertRule, Metric, MonitorConfig};
use window::{Cell, OpenCell, WinHist, CLASSES};

/// Alert events the monitor keeps (the oldest go first; their count is kept).
pub const MAX_ALERT_EVENTS: usize = 1024;
/// Graphs a window keeps apart; the rest share one series (graph id `u32::MAX`).
const MAX_GRAPHS: usize = 64;
/// Steps a window keeps apart (by name); the rest share the series [`OTHER_STEPS`].
const MAX_STEPS: usize = 1024;
/// The series of the steps past the 1,024 a window keeps apart.
pub const OTHER_STEPS: &str = crate::report::OTHER_STEPS;

/// The host's alert callback.
pub(crate) type OnAlert = Arc<dyn Fn(&AlertEvent) + Send + Sync>;

/// Whether a rule started or stopped firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum AlertState {
    /// The rule's value went above its threshold for its run of evaluations.
    Firing,
    /// The value went back below its clear level for its run of evaluations.
    Resolved,
    /// The change-point detector saw a step's latency or error rate shift from its baseline
    /// (a point event: the detector learns the new level, or keeps alarming while pinned).
    /// Its `rule` is `regression <step> latency` or `regression <step> error_rate`, its
    /// `value` the ratio of the new level to the baseline, its `threshold` the detector's.
    Shift,
}

impl AlertState {
    /// `"firing"` or `"resolved"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Shift => "shift",
        }
    }
}

/// A rule fired or resolved: which, the value that made it, and the window it read.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// What it watches.
    pub metric: Metric,
    /// The step it watches, if one.
    pub step: Option<String>,
    /// Firing or resolved.
    pub state: AlertState,
    /// The value read (a share, seconds, or per second).
    pub value: f64,
    /// The threshold crossed: the rule's `above` when firing, `clear_below` when resolved.
    pub threshold: f64,
    /// Samples in the window.
    pub samples: u64,
    /// The window's length, in nanoseconds.
    pub window_ns: u64,
    /// The clock tick (nanosecond) at which the window ended: the end of its last bucket.
    pub at_ns: u64,
}

/// Quantiles of a latency (or queue wait) in a window, with the samples they come from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Quantiles {
    /// Values recorded.
    pub samples: u64,
    /// Median, nanoseconds (0 when there are no samples).
    pub p50_ns: u64,
    /// 95th percentile, nanoseconds.
    pub p95_ns: u64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: u64,
    /// Greatest, nanoseconds.
    pub max_ns: u64,
}

impl Quantiles {
    fn of(h: &WinHist) -> Self {
        let q = |q| h.quantile(q).unwrap_or(0);
        Self {
            samples: h.count,
            p50_ns: q(0.5),
            p95_ns: q(0.95),
            p99_ns: q(0.99),
            max_ns: if h.count > 0 { h.max } else { 0 },
        }
    }
}

/// What one series (every run, a graph, a step) did in a window.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Series {
    /// Runs (of a step: executions) that ended, exact.
    pub ended: u64,
    /// Of them, those that did not succeed (a step's: failed or aborted), exact.
    pub failed: u64,
    /// Per second of the window.
    pub rate: f64,
    /// `failed / ended` (0 when nothing ended).
    pub error_rate: f64,
    /// Errors by class (name, count), exact; classes with none left out.
    pub errors_by_class: Vec<(String, u64)>,
    /// Cache hits (of a step: executions served by the cache), exact.
    pub cache_hits: u64,
    /// Cache misses (runs' lookups that missed; 0 for a step).
    pub cache_misses: u64,
    /// Latency of every run (a step's: of its executions in sampled runs).
    pub latency: Quantiles,
    /// Queue wait, submission to start, of every submitted run (runs only).
    pub queue_wait: Quantiles,
}

/// One window: every run, each graph and each step.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Window {
    /// Its length, nanoseconds.
    pub length_ns: u64,
    /// Every run.
    pub total: Series,
    /// Per graph, by graph id (`Graph::id`; `u32::MAX`: graphs past the bound).
    pub graphs: Vec<(u32, Series)>,
    /// Per step, by name.
    pub steps: Vec<(String, Series)>,
    /// Submissions, accepted or refused (counted when the monitor polls, in the bucket it
    /// closes last).
    pub submitted: u64,
    /// Of them, those refused.
    pub refused: u64,
}

/// The monitor's windows as of its last closed bucket, and its alerts.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Windows {
    /// The tick (nanosecond) at which the windows end: the end of the last closed bucket.
    pub at_ns: u64,
    /// The bucket length, nanoseconds.
    pub resolution_ns: u64,
    /// One per configured window, shortest first.
    pub windows: Vec<Window>,
    /// The rules firing now.
    pub firing: Vec<String>,
    /// Each circuit breaker of the graphs run, by the first step seen guarded by it, and its
    /// state now (`BreakerState::as_str`: `closed`, `open` or `half-open`).
    pub breakers: Vec<(String, String)>,
}

/// The report's view of the alerts.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct AlertStats {
    /// Times a rule fired, exact.
    pub fired: u64,
    /// Times a rule resolved, exact.
    pub resolved: u64,
    /// Shifts the change-point detector reported, exact.
    pub shifts: u64,
    /// Rules firing now.
    pub firing: Vec<String>,
    /// The last alert events, oldest first (at most [`MAX_ALERT_EVENTS`]).
    pub events: Vec<AlertEvent>,
    /// Events older than those kept.
    pub events_dropped: u64,
    /// Per rule: (name, fired, resolved), in the configuration's order.
    pub rules: Vec<(String, u64, u64)>,
}

/// A runner's open bucket (the counting side; lives in the runner's stats).
pub(crate) struct OpenWindow {
    epoch: u64,
    bucket: u64,
    graphs: Vec<(u32, OpenCell)>,
}

impl Default for OpenWindow {
    fn default() -> Self {
        Self {
            epoch: u64::MAX,
            bucket: 0,
            graphs: Vec::new(),
        }
    }
}

/// Adds a runner's step cells (`(step, cell)`) to a part.
pub(crate) type StepCells<'a> = dyn FnMut(&mut Vec<(String, Cell)>) + 'a;

/// A runner's closed bucket, on its way to the monitor.
pub(crate) struct Part {
    epoch: u64,
    bucket: u64,
    graphs: Vec<(u32, Cell)>,
    steps: Vec<(String, Cell)>,
}

impl OpenWindow {
    /// Makes bucket `bucket` (of monitor epoch `epoch`) the open one, handing back the one
    /// open before it if it counted anything. A bucket earlier than the open one stays: a run
    /// whose end was read before a poll rolled this runner counts in the next bucket.
    #[inline]
    pub(crate) fn open(
        &mut self,
        epoch: u64,
        bucket: u64,
        steps: &mut StepCells<'_>,
    ) -> Option<Part> {
        if epoch == self.epoch && bucket <= self.bucket {
            return None;
        }
        let part = self.take(steps);
        (self.epoch, self.bucket) = (epoch, bucket);
        part
    }

    /// Its counts as a part, if any (`steps` adds the runner's step cells).
    pub(crate) fn take(&mut self, steps: &mut StepCells<'_>) -> Option<Part> {
        let mut part = Part {
            epoch: self.epoch,
            bucket: self.bucket,
            graphs: Vec::new(),
            steps: Vec::new(),
        };
        for (id, cell) in &mut self.graphs {
            if !cell.is_empty() {
                part.graphs.push((*id, cell.take()));
            }
        }
        steps(&mut part.steps);
        (!part.graphs.is_empty() || !part.steps.is_empty()).then_some(part)
    }

    /// The open cell of graph `id`.
    #[inline]
    pub(crate) fn graph(&mut self, id: u32) -> &mut OpenCell {
        let at = match self.graphs.iter().position(|(g, _)| *g == id) {
            Some(at) => at,
            None => self.new_graph(id),
        };
        &mut self.graphs[at].1
    }

    #[cold]
    fn new_graph(&mut self, id: u32) -> usize {
        let id = if self.graphs.len() >= MAX_GRAPHS - 1 {
            u32::MAX
        } else {
            id
        };
        if let Some(at) = self.graphs.iter().position(|(g, _)| *g == id) {
            return at;
        }
        self.graphs.push((id, OpenCell::default()));
        self.graphs.len() - 1
    }
}

/// Adds `part` to `parts`, merged into the last one if it is of the same bucket.
pub(crate) fn merge_part(parts: &mut Vec<Part>, part: Part) {
    match parts.last_mut() {
        Some(last) if last.epoch == part.epoch && last.bucket == part.bucket => {
            let mut b = Bucket {
                graphs: std::mem::take(&mut last.graphs),
                steps: std::mem::take(&mut last.steps),
                ..Bucket::default()
            };
            b.add(part);
            (last.graphs, last.steps) = (b.graphs, b.steps);
        }
        _ => parts.push(part),
    }
}

/// Counts one ended run into `cell`: its outcome, error class, cache hits and misses,
/// latency and queue wait.
#[inline]
pub(crate) fn count_run(
    cell: &mut OpenCell,
    failed: Option<flujo_core::policy::ErrorClass>,
    ok: bool,
    hits: u64,
    misses: u64,
    wall: u64,
    queue_wait: Option<u64>,
) {
    cell.ended += 1;
    if !ok {
        cell.failed += 1;
        if let Some(class) = failed {
            cell.classes[class_index(class)] += 1;
        }
    }
    cell.cache_hits += hits;
    cell.cache_misses += misses;
    cell.latency.record(wall);
    if let Some(wait) = queue_wait {
        cell.queue.get_or_insert_with(WinHist::default).record(wait);
    }
}

/// The table index of `class`.
#[inline]
pub(crate) fn class_index(class: flujo_core::policy::ErrorClass) -> usize {
    class as usize
}

/// A closed bucket: every runner's part, merged.
#[derive(Default)]
struct Bucket {
    graphs: Vec<(u32, Cell)>,
    steps: Vec<(String, Cell)>,
    submitted: u64,
    refused: u64,
}

impl Bucket {
    fn add(&mut self, part: Part) {
        for (id, cell) in part.graphs {
            match self.graphs.iter_mut().find(|(g, _)| *g == id) {
                Some((_, c)) => c.merge(&cell),
                None => self.graphs.push((id, cell)),
            }
        }
        for (name, cell) in part.steps {
            let at = match self.steps.iter().position(|(s, _)| *s == name) {
                Some(at) => Some(at),
                None if self.steps.len() < MAX_STEPS => {
                    self.steps.push((name, Cell::default()));
                    Some(self.steps.len() - 1)
                }
                None => self.steps.iter().position(|(s, _)| s == OTHER_STEPS),
            };
            match at {
                Some(at) => self.steps[at].1.merge(&cell),
                None => self.steps.push((OTHER_STEPS.to_string(), cell)),
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.graphs.capacity() * std::mem::size_of::<(u32, Cell)>()
            + self.steps.capacity() * std::mem::size_of::<(String, Cell)>()
            + self
                .graphs
                .iter()
                .map(|(_, c)| c.heap_bytes())
                .sum::<usize>()
            + self
                .steps
                .iter()
                .map(|(s, c)| s.capacity() + c.heap_bytes())
                .sum::<usize>()
    }
}

/// The change-point detectors of one step.
struct StepDetectors {
    step: String,
    latency: detect::LatencyDetector,
    errors: detect::ErrorDetector,
}

/// A rule and where it stands.
struct RuleState {
    rule: AlertRule,
    firing: bool,
    /// Evaluations in a row past the threshold of the other state.
    streak: u32,
    fired: u64,
    resolved: u64,
}

/// The monitor's merged buckets and rule states (under one lock, taken by polls and reads,
/// never by a run's end unless it closes its runner's bucket).
struct Store {
    cfg: MonitorConfig,
    epoch: u64,
    res: u64,
    /// Consecutive buckets `first..first + ring.len()`.
    ring: VecDeque<Bucket>,
    first: u64,
    rules: Vec<RuleState>,
    events: VecDeque<AlertEvent>,
    events_dropped: u64,
    fired: u64,
    resolved: u64,
    shifts: u64,
    detectors: Vec<StepDetectors>,
    /// Submission counts at the last poll.
    last_submitted: u64,
    last_refused: u64,
}

impl Store {
    fn new(cfg: &MonitorConfig, epoch: u64) -> Self {
        Self {
            res: cfg.resolution_ticks().max(1),
            epoch,
            ring: VecDeque::new(),
            first: 0,
            rules: cfg
                .rules
                .iter()
                .map(|r| RuleState {
                    rule: r.clone(),
                    firing: false,
                    streak: 0,
                    fired: 0,
                    resolved: 0,
                })
                .collect(),
            events: VecDeque::new(),
            events_dropped: 0,
            fired: 0,
            resolved: 0,
            shifts: 0,
            detectors: Vec::new(),
            last_submitted: 0,
            last_refused: 0,
            cfg: cfg.clone(),
        }
    }

    /// Bucket `b`, made (with the empty ones before it) if needed; `None` if it is older
    /// than the ring.
    fn bucket(&mut self, b: u64) -> Option<&mut Bucket> {
        let keep = self.cfg.max_buckets() + 1;
        if self.ring.is_empty() {
            self.first = b;
        }
        if b < self.first {
            return None;
        }
        let end = self.first + self.ring.len() as u64;
        if b >= end {
            if b - end >= keep {
                // A jump of the clock: every bucket kept is older than the longest window.
                self.ring.clear();
                self.first = b;
            }
            while self.first + (self.ring.len() as u64) <= b {
                self.ring.push_back(Bucket::default());
            }
            while self.ring.len() as u64 > keep {
                self.ring.pop_front();
                self.first += 1;
            }
        }
        self.ring.get_mut((b - self.first) as usize)
    }

    /// Merges the last `n` buckets up to and including `last` into a window.
    fn window(&self, last: u64, n: u64) -> Merged {
        let mut m = Merged::default();
        let from = (last + 1).saturating_sub(n).max(self.first);
        for b in from..=last {
            if let Some(bucket) = self.ring.get((b.wrapping_sub(self.first)) as usize) {
                m.add(bucket);
            }
        }
        m
    }

    /// Evaluates every rule on the windows ending with bucket `b`; appends what fired or
    /// resolved to `out`.
    fn evaluate(&mut self, b: u64, out: &mut Vec<AlertEvent>) {
        let res = self.res;
        let at_ns = (b + 1).saturating_mul(res);
        for i in 0..self.rules.len() {
            let rule = &self.rules[i].rule;
            let n = (u64::try_from(rule.window.as_nanos()).unwrap_or(u64::MAX) / res).max(1);
            let merged = self.window(b, n);
            let Some((value, samples)) = merged.read(rule, n.saturating_mul(res)) else {
                continue;
            };
            let state = &mut self.rules[i];
            let rule = &state.rule;
            if samples < rule.min_samples {
                continue;
            }
            let (past, threshold) = if state.firing {
                (value < rule.clear_below, rule.clear_below)
            } else {
                (value > rule.above, rule.above)
            };
            if !past {
                state.streak = 0;
                continue;
            }
            state.streak += 1;
            if state.streak < rule.for_windows {
                continue;
            }
            state.streak = 0;
            state.firing = !state.firing;
            let to = if state.firing {
                state.fired += 1;
                self.fired += 1;
                AlertState::Firing
            } else {
                state.resolved += 1;
                self.resolved += 1;
                AlertState::Resolved
            };
            let event = AlertEvent {
                rule: rule.name.clone(),
                metric: rule.metric,
                step: rule.step.clone(),
                state: to,
                value,
                threshold,
                samples,
                window_ns: n.saturating_mul(res),
                at_ns,
            };
            self.push(event.clone());
            out.push(event);
        }
        if self.cfg.detect {
            self.detect(b, at_ns, out);
        }
    }

    /// Keeps `event` (the oldest go first, counted).
    fn push(&mut self, event: AlertEvent) {
        if self.events.len() == MAX_ALERT_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Feeds bucket `b`'s step cells to their detectors; appends each shift reported.
    fn detect(&mut self, b: u64, at_ns: u64, out: &mut Vec<AlertEvent>) {
        let Some(bucket) = self.ring.get((b.wrapping_sub(self.first)) as usize) else {
            return;
        };
        let mut shifts = Vec::new();
        for (step, cell) in &bucket.steps {
            let at = match self.detectors.iter().position(|d| d.step == *step) {
                Some(at) => at,
                None if self.detectors.len() < crate::config::MAX_DETECTED_STEPS => {
                    let (Ok(latency), Ok(errors)) = (
                        detect::LatencyDetector::new(self.cfg.detector.clone()),
                        detect::ErrorDetector::new(self.cfg.detector.clone()),
                    ) else {
                        return; // validated with the configuration
                    };
                    self.detectors.push(StepDetectors {
                        step: step.clone(),
                        latency,
                        errors,
                    });
                    self.detectors.len() - 1
                }
                None => continue,
            };
            let d = &mut self.detectors[at];
            let window = cell.latency.ln_window();
            if let Some(shift) = d.latency.observe(&window) {
                shifts.push((step.clone(), Metric::Latency, shift, window.n));
            }
            let errors = detect::ErrorWindow {
                executions: cell.ended,
                errors: cell.failed,
            };
            if let Some(shift) = d.errors.observe(&errors) {
                shifts.push((step.clone(), Metric::ErrorRate, shift, cell.ended));
            }
        }
        for (step, metric, shift, samples) in shifts {
            self.shifts += 1;
            let event = AlertEvent {
                rule: format!("regression {step} {metric}"),
                metric,
                step: Some(step),
                state: AlertState::Shift,
                value: shift.ratio,
                threshold: self.cfg.detector.threshold,
                samples,
                window_ns: self.res,
                at_ns,
            };
            self.push(event.clone());
            out.push(event);
        }
    }

    /// Pins the detectors' baselines of `step` (every step's when `None`); returns how many
    /// steps.
    fn pin(&mut self, step: Option<&str>) -> usize {
        let mut n = 0;
        for d in &mut self.detectors {
            if step.is_none_or(|s| s == d.step) {
                d.latency.pin();
                d.errors.pin();
                n += 1;
            }
        }
        n
    }

    fn heap_bytes(&self) -> usize {
        self.ring.iter().map(Bucket::heap_bytes).sum::<usize>()
            + self.ring.capacity() * std::mem::size_of::<Bucket>()
            + self.events.capacity() * std::mem::size_of::<AlertEvent>()
    }
}

/// Buckets merged into one window.
#[derive(Default)]
struct Merged {
    total: MergedSeries,
    graphs: Vec<(u32, MergedSeries)>,
    steps: Vec<(String, MergedSeries)>,
    submitted: u64,
    refused: u64,
}

/// A series merged over a window: counts, and dense histograms for the quantiles.
#[derive(Default)]
struct MergedSeries {
    ended: u64,
    failed: u64,
    classes: [u64; CLASSES],
    cache_hits: u64,
    cache_misses: u64,
    latency: WinHist,
    queue: WinHist,
}

impl MergedSeries {
    fn add(&mut self, c: &Cell) {
        self.ended += c.ended;
        self.failed += c.failed;
        for (a, b) in self.classes.iter_mut().zip(c.classes) {
            *a += b;
        }
        self.cache_hits += c.cache_hits;
        self.cache_misses += c.cache_misses;
        self.latency.add(&c.latency);
        self.queue.add(&c.queue);
    }

    fn series(&self, length_ns: u64) -> Series {
        let secs = length_ns as f64 / 1e9;
        Series {
            ended: self.ended,
            failed: self.failed,
            rate: if secs > 0.0 {
                self.ended as f64 / secs
            } else {
                0.0
            },
            error_rate: ratio(self.failed, self.ended),
            errors_by_class: flujo_core::policy::ErrorClass::ALL
                .iter()
                .zip(self.classes)
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (c.as_str().to_string(), n))
                .collect(),
            cache_hits: self.cache_hits,
            cache_misses: self.cache_misses,
            latency: Quantiles::of(&self.latency),
            queue_wait: Quantiles::of(&self.queue),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Merged {
    fn add(&mut self, b: &Bucket) {
        for (id, cell) in &b.graphs {
            self.total.add(cell);
            match self.graphs.iter_mut().find(|(g, _)| g == id) {
                Some((_, s)) => s.add(cell),
                None => {
                    let mut s = MergedSeries::default();
                    s.add(cell);
                    self.graphs.push((*id, s));
                }
            }
        }
        for (name, cell) in &b.steps {
            match self.steps.iter_mut().find(|(s, _)| s == name) {
                Some((_, s)) => s.add(cell),
                None => {
                    let mut s = MergedSeries::default();
                    s.add(cell);
                    self.steps.push((name.clone(), s));
                }
            }
        }
        self.submitted += b.submitted;
        self.refused += b.refused;
    }

    /// The value of `rule`'s metric and its samples; `None` when its step has no series.
    fn read(&self, rule: &AlertRule, length_ns: u64) -> Option<(f64, u64)> {
        let s = match &rule.step {
            Some(step) => &self.steps.iter().find(|(s, _)| s == step)?.1,
            None => &self.total,
        };
        let quantile = |h: &WinHist| {
            h.quantile(rule.quantile)
                .map_or((0.0, 0), |v| (v as f64 / 1e9, h.count))
        };
        Some(match rule.metric {
            Metric::ErrorRate => {
                let errors = match rule.error_class() {
                    Some(c) => s.classes[class_index(c)],
                    None => s.failed,
                };
                (ratio(errors, s.ended), s.ended)
            }
            Metric::Latency => quantile(&s.latency),
            Metric::QueueWait => quantile(&s.queue),
            Metric::RefusalRate => (ratio(self.refused, self.submitted), self.submitted),
            Metric::CacheMissRate => {
                if rule.step.is_some() {
                    (ratio(s.ended - s.cache_hits, s.ended), s.ended)
                } else {
                    let all = s.cache_hits + s.cache_misses;
                    (ratio(s.cache_misses, all), all)
                }
            }
            // A rate is always read: an empty window is a rate of 0.
            Metric::Rate => (s.ended as f64 / (length_ns as f64 / 1e9), u64::MAX),
        })
    }

    fn into_window(self, length_ns: u64) -> Window {
        Window {
            length_ns,
            total: self.total.series(length_ns),
            graphs: self
                .graphs
                .iter()
                .map(|(g, s)| (*g, s.series(length_ns)))
                .collect(),
            steps: self
                .steps
                .iter()
                .map(|(n, s)| (n.clone(), s.series(length_ns)))
                .collect(),
            submitted: self.submitted,
            refused: self.refused,
        }
    }
}

/// The executor's monitor.
pub(crate) struct Monitor {
    /// Ticks per bucket; 0 while the monitor is off.
    res: AtomicU64,
    /// The monitor's configuration epoch (changed when its section changes): parts of
    /// another epoch are dropped.
    epoch: AtomicU64,
    /// The first bucket not yet evaluated.
    next: AtomicU64,
    /// One poll at a time.
    polling: Mutex<()>,
    store: Mutex<Store>,
    on_alert: Option<OnAlert>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Monitor {
    pub(crate) fn new(cfg: &MonitorConfig, on_alert: Option<OnAlert>) -> Self {
        Self {
            res: AtomicU64::new(if cfg.enabled {
                cfg.resolution_ticks().max(1)
            } else {
                0
            }),
            epoch: AtomicU64::new(0),
            next: AtomicU64::new(0),
            polling: Mutex::new(()),
            store: Mutex::new(Store::new(cfg, 0)),
            on_alert,
        }
    }

    /// Takes a new configuration; a changed monitor section restarts the windows and rules.
    pub(crate) fn reconfigure(&self, cfg: &MonitorConfig) {
        let _poll = lock(&self.polling);
        let mut store = lock(&self.store);
        if store.cfg == *cfg {
            return;
        }
        let epoch = store.epoch + 1;
        let (fired, resolved, events, dropped) = (
            store.fired,
            store.resolved,
            std::mem::take(&mut store.events),
            store.events_dropped,
        );
        *store = Store::new(cfg, epoch);
        (
            store.fired,
            store.resolved,
            store.events,
            store.events_dropped,
        ) = (fired, resolved, events, dropped);
        self.epoch.store(epoch, Ordering::Release);
        self.next.store(0, Ordering::Release);
        self.res.store(
            if cfg.enabled {
                cfg.resolution_ticks().max(1)
            } else {
                0
            },
            Ordering::Release,
        );
    }

    /// The epoch and bucket a run ending at tick `end` counts in; `None` when off.
    #[inline]
    pub(crate) fn bucket_of(&self, end: u64) -> Option<(u64, u64)> {
        let res = self.res.load(Ordering::Relaxed);
        (res != 0).then(|| (self.epoch.load(Ordering::Relaxed), end / res))
    }

    /// Whether a poll at bucket `bucket` would close one: one relaxed load.
    #[inline]
    pub(crate) fn due(&self, bucket: u64) -> bool {
        bucket > self.next.load(Ordering::Relaxed)
    }

    /// Takes a closed part of a runner's.
    pub(crate) fn absorb(&self, part: Part) {
        let mut store = lock(&self.store);
        if part.epoch != store.epoch {
            return;
        }
        let next = self.next.load(Ordering::Relaxed);
        // A part of a bucket already evaluated counts in the first one not evaluated.
        let b = part.bucket.max(next);
        if let Some(bucket) = store.bucket(b) {
            bucket.add(part);
        }
    }

    /// One poll at a time: `None` if another is under way (`wait` false).
    pub(crate) fn polling(&self, wait: bool) -> Option<std::sync::MutexGuard<'_, ()>> {
        if wait {
            Some(lock(&self.polling))
        } else {
            self.polling.try_lock().ok()
        }
    }

    /// Closes every bucket before `now_bucket` (the runners' parts were absorbed before):
    /// sets the submissions counted since the last poll on the last of them, evaluates the
    /// rules on each, and calls the host's callback with what fired or resolved. Call under
    /// [`polling`](Self::polling).
    pub(crate) fn close(&self, now_bucket: u64, submitted: u64, refused: u64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        {
            let mut store = lock(&self.store);
            let next = self.next.load(Ordering::Relaxed);
            if now_bucket <= next {
                return events;
            }
            let last = now_bucket - 1;
            let (ds, dr) = (
                submitted.saturating_sub(store.last_submitted),
                refused.saturating_sub(store.last_refused),
            );
            (store.last_submitted, store.last_refused) = (submitted, refused);
            if let Some(b) = store.bucket(last) {
                b.submitted += ds;
                b.refused += dr;
            }
            // Only the buckets a window can still see are evaluated after a long gap.
            let from = next.max(now_bucket.saturating_sub(store.cfg.max_buckets()));
            for b in from..now_bucket {
                store.evaluate(b, &mut events);
            }
            self.next.store(now_bucket, Ordering::Release);
        }
        if let Some(f) = &self.on_alert {
            for e in &events {
                f(e);
            }
        }
        events
    }

    /// The windows ending with the last closed bucket.
    pub(crate) fn windows(&self) -> Windows {
        let store = lock(&self.store);
        let next = self.next.load(Ordering::Relaxed);
        let res = store.res;
        let firing = store
            .rules
            .iter()
            .filter(|r| r.firing)
            .map(|r| r.rule.name.clone())
            .collect();
        let mut lengths = store.cfg.windows.clone();
        lengths.sort();
        let windows = if store.cfg.enabled && next > 0 {
            lengths
                .iter()
                .map(|w| {
                    let n = (u64::try_from(w.as_nanos()).unwrap_or(u64::MAX) / res).max(1);
                    store.window(next - 1, n).into_window(n.saturating_mul(res))
                })
                .collect()
        } else {
            Vec::new()
        };
        Windows {
            at_ns: next.saturating_mul(res),
            resolution_ns: res,
            windows,
            firing,
            breakers: Vec::new(),
        }
    }

    /// Pins the change-point detectors' baselines (see [`crate::Executor::pin_baselines`]).
    pub(crate) fn pin(&self, step: Option<&str>) -> usize {
        lock(&self.store).pin(step)
    }

    /// The names of the rules firing now.
    pub(crate) fn firing(&self) -> Vec<String> {
        let store = lock(&self.store);
        store
            .rules
            .iter()
            .filter(|r| r.firing)
            .map(|r| r.rule.name.clone())
            .collect()
    }

    /// The clock tick at which bucket `bucket` starts.
    pub(crate) fn tick_of(&self, bucket: u64) -> u64 {
        bucket.saturating_mul(lock(&self.store).res)
    }

    /// The report's view of the alerts.
    pub(crate) fn alert_stats(&self) -> AlertStats {
        let store = lock(&self.store);
        AlertStats {
            fired: store.fired,
            resolved: store.resolved,
            shifts: store.shifts,
            firing: store
                .rules
                .iter()
                .filter(|r| r.firing)
                .map(|r| r.rule.name.clone())
                .collect(),
            events: store.events.iter().cloned().collect(),
            events_dropped: store.events_dropped,
            rules: store
                .rules
                .iter()
                .map(|r| (r.rule.name.clone(), r.fired, r.resolved))
                .collect(),
        }
    }

    /// Bytes the monitor's store holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        lock(&self.store).heap_bytes()
    }
}

#[cfg(test)]
mod tests;
