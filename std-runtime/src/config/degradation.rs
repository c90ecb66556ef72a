//! Health and graceful degradation: the levels, what triggers them and the actions each takes
//! (`docs/operations.md`, "Health and degradation").
//!
//! Kept apart from the optimizations on purpose: switching an optimization off changes speed,
//! never results; a degradation action may change what a run gets (a shed submission is
//! refused, a bypassed cache recomputes, which a hit would have skipped), so each is named,
//! counted when taken and when undone, and undone on its own when the pressure falls.

use std::fmt;
use std::time::Duration;

use super::{check, ConfigError};

/// The most degradation levels.
pub const MAX_LEVELS: usize = 8;
/// The trigger name that reads the memory pressure instead of an alert rule.
pub const MEMORY_TRIGGER: &str = "memory";

/// Health and degradation: off in the presets.
///
/// Each [`DegradationLevel`] names its triggers (alert rules of the monitor, by name, or
/// [`MEMORY_TRIGGER`]); the health is the highest level one of whose triggers is on, and every
/// action of that level and of the levels below it is in force. A move up happens at the
/// bucket that sees it; a move down only after the current level has held for `min_dwell`.
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::config::{
///     Action, AlertRule, DegradationLevel, Metric, OptimizationConfig,
/// };
///
/// let mut cfg = OptimizationConfig::latency();
/// cfg.monitor.rules.push(AlertRule {
///     window: Duration::from_secs(10),
///     above: 0.010,
///     clear_below: 0.002,
///     min_samples: 100,
///     ..AlertRule::new("queue-wait-p99", Metric::QueueWait)
/// });
/// cfg.degradation.enabled = true;
/// cfg.degradation.levels.push(DegradationLevel {
///     name: "busy".into(),
///     when: vec!["queue-wait-p99".into()],
///     actions: vec![Action::ShedLow, Action::StopSampling],
///     critical: false,
/// });
/// assert_eq!(cfg.validate(), Ok(()));
///
/// cfg.degradation.levels[0].when = vec!["no-such-rule".into()];
/// assert_eq!(cfg.validate().unwrap_err().field(), Some("degradation.levels.when"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DegradationConfig {
    /// Off in every preset: the health stays `Healthy` and no action is taken.
    pub enabled: bool,
    /// The least time a level holds before the health moves down from it (moves up are at
    /// once); `"10s"` by default.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "super::monitor::ser_duration",
            deserialize_with = "de_min_dwell"
        )
    )]
    pub min_dwell: Duration,
    /// The levels, lowest first (`Degraded(1)` is the first); at most [`MAX_LEVELS`], names
    /// unique, each action in at most one level.
    pub levels: Vec<DegradationLevel>,
    /// The memory trigger.
    pub memory: MemoryPressure,
    /// Automatic per-step cache bypass (performance-based selection); off by default, and
    /// independent of `enabled` (it follows each step's hit rate, not the health).
    pub cache_bypass: CacheBypass,
}

impl Default for DegradationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_dwell: Duration::from_secs(10),
            levels: Vec::new(),
            memory: MemoryPressure::default(),
            cache_bypass: CacheBypass::default(),
        }
    }
}

/// The most steps [`CacheBypass`] can follow.
pub const MAX_BYPASS_STEPS: usize = 1 << 16;
/// The longest [`CacheBypass`] window and probe period.
pub const MAX_BYPASS_WINDOW: u32 = 1 << 24;

/// Automatic per-step cache bypass: a cacheable step whose hit rate stays low stops using
/// the result cache (its key is not even computed) until probes show it hits again.
///
/// A degradation action rather than an optimization: while a step is bypassed, a run that a
/// hit would have served runs the step (its side effects, usage and breaker outcome happen).
/// Each step's lookups are judged in windows of `window`: a hit rate below `min_hit_rate`
/// takes the bypass. While bypassed, every `probe_every`-th execution of the step *probes*
/// (looks up, and on a miss stores its output again); after `probes` probes their hit rate is
/// judged the same way, and at `min_hit_rate` or above the bypass is undone. Each take and
/// undo is counted per step and raised as an event (report, trace, Prometheus, the
/// [`on_selection`](crate::ExecutorBuilder::on_selection) callback). Decisions count
/// executions, never read the clock, so they are the same under every clock, preset and
/// telemetry level.
///
/// ```
/// use flujo_runtime::config::OptimizationConfig;
///
/// let mut cfg = OptimizationConfig::throughput();
/// cfg.degradation.cache_bypass.enabled = true;
/// cfg.degradation.cache_bypass.min_hit_rate = 0.10;
/// assert_eq!(cfg.validate(), Ok(()));
///
/// cfg.degradation.cache_bypass.probe_every = 1; // would probe every execution
/// let err = cfg.validate().unwrap_err();
/// assert_eq!(err.field(), Some("degradation.cache_bypass.probe_every"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct CacheBypass {
    /// Off by default: every cacheable step always uses the cache.
    pub enabled: bool,
    /// Lookups per judged window of a step (not bypassed); in `1..=MAX_BYPASS_WINDOW`.
    pub window: u32,
    /// A window's hit rate below this takes the bypass; probes at or above it undo it. In
    /// `(0, 1]`.
    pub min_hit_rate: f64,
    /// While bypassed, one execution in this many probes; in `2..=MAX_BYPASS_WINDOW`.
    pub probe_every: u32,
    /// Probes per judged window while bypassed; in `1..=window`.
    pub probes: u32,
    /// Steps (graph, node) followed; a step met after that many is never bypassed. In
    /// `1..=MAX_BYPASS_STEPS`; read when the executor is built.
    pub max_steps: usize,
}

impl Default for CacheBypass {
    fn default() -> Self {
        Self {
            enabled: false,
            window: 1000,
            min_hit_rate: 0.05,
            probe_every: 100,
            probes: 20,
            max_steps: 1024,
        }
    }
}

impl CacheBypass {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            (1..=MAX_BYPASS_WINDOW).contains(&self.window),
            "degradation.cache_bypass.window",
            format_args!("must be in 1..={MAX_BYPASS_WINDOW}"),
            self.window,
        )?;
        check(
            self.min_hit_rate > 0.0 && self.min_hit_rate <= 1.0,
            "degradation.cache_bypass.min_hit_rate",
            "must be in (0, 1]",
            self.min_hit_rate,
        )?;
        check(
            (2..=MAX_BYPASS_WINDOW).contains(&self.probe_every),
            "degradation.cache_bypass.probe_every",
            format_args!("must be in 2..={MAX_BYPASS_WINDOW}"),
            self.probe_every,
        )?;
        check(
            self.probes >= 1 && self.probes <= self.window,
            "degradation.cache_bypass.probes",
            format_args!("must be in 1..=window ({})", self.window),
            self.probes,
        )?;
        check(
            (1..=MAX_BYPASS_STEPS).contains(&self.max_steps),
            "degradation.cache_bypass.max_steps",
            format_args!("must be in 1..={MAX_BYPASS_STEPS}"),
            self.max_steps,
        )
    }
}

/// One level of degradation.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DegradationLevel {
    /// Its name, in events and the report; unique, 1 to 64 bytes.
    pub name: String,
    /// Its triggers: names of the monitor's alert rules, or [`MEMORY_TRIGGER`]; the level is
    /// wanted while any of them fires. At least one.
    pub when: Vec<String>,
    /// The actions it adds to those of the levels below.
    pub actions: Vec<Action>,
    /// Whether the health reads `Critical` (rather than `Degraded`) at this level.
    pub critical: bool,
}

/// A degradation action. Each is counted when taken and when undone; what it may change for a
/// run is said on each.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum Action {
    /// Refuse `Low` submissions ([`Refusal::Shed`](crate::Refusal::Shed), input handed back).
    ShedLow,
    /// Refuse `Normal` and `Low` submissions.
    ShedNormal,
    /// Sample no run for latencies, spans and events. Changes no result (an optimization's
    /// kind of switch, counted here because pressure takes it).
    StopSampling,
    /// Store no result bigger than `bytes` (by the cache's weigher) in the result cache: such
    /// a step recomputes next time instead of hitting (so its side effects run again).
    BypassLargePayloads {
        /// The largest payload still stored, in weigher units (bytes); at least 1.
        bytes: usize,
    },
    /// Shrink the result cache to `share` of its configured entries and bytes (evicting the
    /// coldest entries); a step that would have hit recomputes.
    ShrinkCache {
        /// In `(0, 1)`.
        share: f64,
    },
    /// Multiply the inline cutoff by `factor`: fan-outs fork less and run inline more. Changes
    /// no result.
    InlineMore {
        /// At least 2.
        factor: u32,
    },
    /// Lower the admission ceiling to `share` of `max_limit` (at least `min_limit`): more
    /// submissions are refused with `OverLimit`.
    TightenAdmission {
        /// In `(0, 1)`.
        share: f64,
    },
    /// Free the idle pooled runners (their arenas and histograms) once, when taken. Changes no
    /// result; undoing it does nothing (runners are made again on demand).
    FreeIdleRunners,
    /// Refuse [`Executor::try_run`](crate::Executor::try_run) calls beyond `above` of them
    /// under way at once, with [`Refusal::Shed`](crate::Refusal::Shed) (input handed back).
    /// `try_run` is the host's opt-in: `run` is never refused.
    RefuseRuns {
        /// `try_run` calls that may be under way at once while it is in force (0: none).
        above: u32,
    },
}

impl Action {
    /// The snake_case name, as in TOML, events, the report and the exposition.
    pub const fn name(self) -> &'static str {
        match self {
            Action::ShedLow => "shed_low",
            Action::ShedNormal => "shed_normal",
            Action::StopSampling => "stop_sampling",
            Action::BypassLargePayloads { .. } => "bypass_large_payloads",
            Action::ShrinkCache { .. } => "shrink_cache",
            Action::InlineMore { .. } => "inline_more",
            Action::TightenAdmission { .. } => "tighten_admission",
            Action::FreeIdleRunners => "free_idle_runners",
            Action::RefuseRuns { .. } => "refuse_runs",
        }
    }

    /// Whether the action can change what a run gets (a refusal, a recomputed step), rather
    /// than only how fast it runs.
    pub const fn changes_results(self) -> bool {
        matches!(
            self,
            Action::ShedLow
                | Action::ShedNormal
                | Action::BypassLargePayloads { .. }
                | Action::ShrinkCache { .. }
                | Action::TightenAdmission { .. }
                | Action::RefuseRuns { .. }
        )
    }

    fn validate(self) -> Result<(), ConfigError> {
        match self {
            Action::BypassLargePayloads { bytes } => check(
                bytes >= 1,
                "degradation.levels.actions.bytes",
                "must be >= 1",
                bytes,
            ),
            Action::ShrinkCache { share } | Action::TightenAdmission { share } => check(
                share > 0.0 && share < 1.0,
                "degradation.levels.actions.share",
                format_args!("{}: must be in (0, 1)", self.name()),
                share,
            ),
            Action::InlineMore { factor } => check(
                factor >= 2,
                "degradation.levels.actions.factor",
                "must be >= 2",
                factor,
            ),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The memory trigger: on above `high` of the budget, off again below `low`.
///
/// The budget is `budget_bytes` of resident memory; 0 takes the cgroup's memory limit when one
/// is set, and with neither the trigger never fires.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct MemoryPressure {
    /// Resident memory allowed, in bytes; 0: the cgroup limit, if any.
    pub budget_bytes: u64,
    /// On above this share of the budget; in `(0, 1]`.
    pub high: f64,
    /// Off below this share; at most `high`.
    pub low: f64,
}

impl Default for MemoryPressure {
    fn default() -> Self {
        Self {
            budget_bytes: 0,
            high: 0.9,
            low: 0.8,
        }
    }
}

impl DegradationConfig {
    /// Checks the levels against the monitor's `rules` (by name).
    pub(super) fn validate(&self, rules: &[super::AlertRule]) -> Result<(), ConfigError> {
        check(
            self.levels.len() <= MAX_LEVELS,
            "degradation.levels",
            format_args!("at most {MAX_LEVELS} levels"),
            self.levels.len(),
        )?;
        self.cache_bypass.validate()?;
        let m = &self.memory;
        check(
            m.high > 0.0 && m.high <= 1.0,
            "degradation.memory.high",
            "must be in (0, 1]",
            m.high,
        )?;
        check(
            m.low > 0.0 && m.low <= m.high,
            "degradation.memory.low",
            format_args!("must be in (0, high = {}]", m.high),
            m.low,
        )?;
        for (i, level) in self.levels.iter().enumerate() {
            let name = &level.name;
            check(
                !name.is_empty() && name.len() <= 64,
                "degradation.levels.name",
                "must be 1..=64 bytes",
                name.len(),
            )?;
            check(
                !self.levels[..i].iter().any(|l| l.name == *name),
                "degradation.levels.name",
                "must be unique",
                name,
            )?;
            check(
                !level.when.is_empty(),
                "degradation.levels.when",
                format_args!("level {name:?}: needs at least one trigger"),
                0,
            )?;
            for t in &level.when {
                check(
                    t == MEMORY_TRIGGER || rules.iter().any(|r| r.name == *t),
                    "degradation.levels.when",
                    format_args!(
                        "level {name:?}: each trigger must be a monitor rule's name or \
                         \"{MEMORY_TRIGGER}\""
                    ),
                    t,
                )?;
            }
            for (j, a) in level.actions.iter().enumerate() {
                a.validate()?;
                let twice = self.levels[..i]
                    .iter()
                    .flat_map(|l| &l.actions)
                    .chain(&level.actions[..j])
                    .any(|b| b.name() == a.name());
                check(
                    !twice,
                    "degradation.levels.actions",
                    format_args!("level {name:?}: each action in one level only"),
                    a,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
fn de_min_dwell<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    super::monitor::de_required(d, "degradation.min_dwell")
}
