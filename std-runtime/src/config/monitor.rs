//! The run-time monitor's settings: its windows and its alert rules (`docs/operations.md`).

use std::fmt;
use std::time::Duration;

use flujo_core::policy::ErrorClass;

use super::{check, ConfigError};

/// The most windows a monitor keeps.
pub const MAX_WINDOWS: usize = 8;
/// The longest window, in buckets of `resolution`.
pub const MAX_WINDOW_BUCKETS: u64 = 3_600;
/// The most alert rules.
pub const MAX_RULES: usize = 64;
/// The shortest bucket.
pub const MIN_RESOLUTION: Duration = Duration::from_millis(1);
/// The longest rule name, in bytes.
pub const MAX_RULE_NAME: usize = 128;

/// The monitor: sliding windows over the runs' exact counts and sampled latencies, alert rules
/// evaluated at the end of each bucket, and the change-point detector.
///
/// Time is cut into buckets of `resolution`; a window is its last `window / resolution`
/// buckets, so every window is a whole number of buckets. Each pooled runner counts into its
/// own open bucket and hands it over when a run ends in a later one (or the monitor polls):
/// workers never wait for a reader. Windows and rules read the executor's clock (a
/// [`ManualClock`](flujo_core::graph::ManualClock) drives them in tests).
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::config::{AlertRule, Metric, MonitorConfig, OptimizationConfig};
///
/// let mut cfg = OptimizationConfig::latency();
/// cfg.monitor.rules.push(AlertRule {
///     step: Some("parse".into()),
///     window: Duration::from_secs(10),
///     above: 0.05,
///     clear_below: 0.02,
///     for_windows: 3,
///     ..AlertRule::new("parse-errors", Metric::ErrorRate)
/// });
/// assert_eq!(cfg.validate(), Ok(()));
///
/// cfg.monitor.rules[0].clear_below = 0.1; // above the threshold: no hysteresis
/// assert_eq!(cfg.validate().unwrap_err().field(), Some("monitor.rules.clear_below"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct MonitorConfig {
    /// On in every preset. Off: no windows, rules or detector; a run's end skips them (one
    /// branch). Never changes results.
    pub enabled: bool,
    /// The bucket: how often windows move and rules are evaluated. At least
    /// [`MIN_RESOLUTION`]; `"1s"` in the presets.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "ser_duration", deserialize_with = "de_resolution")
    )]
    pub resolution: Duration,
    /// The windows, each a multiple of `resolution` of at most [`MAX_WINDOW_BUCKETS`] buckets;
    /// 1 to [`MAX_WINDOWS`] of them, no two alike. `["1s", "10s", "60s"]` in the presets.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "ser_durations", deserialize_with = "de_windows")
    )]
    pub windows: Vec<Duration>,
    /// Alert rules, at most [`MAX_RULES`], names unique.
    pub rules: Vec<AlertRule>,
    /// Run the change-point detector on each step's latency and error rate, one window per
    /// bucket (on in the presets; at most [`MAX_DETECTED_STEPS`] steps).
    pub detect: bool,
    /// The detector's tuning (see [`crate::monitor::detect`]).
    pub detector: crate::monitor::detect::DetectorConfig,
}

/// Steps the change-point detector watches (the first seen); the others are not watched.
pub const MAX_DETECTED_STEPS: usize = 256;

impl Default for MonitorConfig {
    /// The presets' monitor: on, 1 s buckets, windows of 1 s, 10 s and 60 s, no rules.
    fn default() -> Self {
        Self {
            enabled: true,
            resolution: Duration::from_secs(1),
            windows: vec![
                Duration::from_secs(1),
                Duration::from_secs(10),
                Duration::from_secs(60),
            ],
            rules: Vec::new(),
            detect: true,
            detector: crate::monitor::detect::DetectorConfig::default(),
        }
    }
}

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Metric {
    /// Failed share, in `[0, 1]`: of a step's executions those that failed or aborted (with
    /// `class`: those that met an error of that class, also one recovered by a retry or a
    /// fallback); of all runs (no `step`), the runs that did not succeed (with `class`: those
    /// whose error had that class). Samples: executions, or runs.
    ErrorRate,
    /// Latency at `quantile`, in seconds: of a step's executions in sampled runs (samples:
    /// those executions), or of every run (no `step`; samples: runs).
    Latency,
    /// Queue wait at `quantile`, in seconds: from submission to start, of every submitted run
    /// (no `step`). Samples: submitted runs that started.
    QueueWait,
    /// Refused submissions' share of submissions, in `[0, 1]` (no `step`). Samples:
    /// submissions.
    RefusalRate,
    /// Cache lookups that missed, in `[0, 1]` (of a step: its executions that were not cache
    /// hits; of all runs: the cache misses among lookups). Samples: lookups (executions).
    CacheMissRate,
    /// Runs (no `step`) or executions per second. Samples: the same count.
    Rate,
}

impl Metric {
    /// The snake_case name, as in TOML and in alert events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::Latency => "latency",
            Metric::QueueWait => "queue_wait",
            Metric::RefusalRate => "refusal_rate",
            Metric::CacheMissRate => "cache_miss_rate",
            Metric::Rate => "rate",
        }
    }

    /// Whether the metric reads a quantile.
    pub const fn is_quantile(self) -> bool {
        matches!(self, Metric::Latency | Metric::QueueWait)
    }

    /// Whether it can be read per step.
    const fn per_step(self) -> bool {
        matches!(
            self,
            Metric::ErrorRate | Metric::Latency | Metric::CacheMissRate | Metric::Rate
        )
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert rule: it *fires* when `metric` over `window` is above `above` at `for_windows`
/// evaluations in a row, each with at least `min_samples` samples, and *resolves* when it is
/// below `clear_below` at as many evaluations in a row (the gap between the two is the
/// hysteresis). An evaluation with fewer samples neither fires nor resolves a rule, and breaks
/// no run of evaluations: so the sampling rate alone cannot raise a percentile alert.
///
/// Rules are evaluated once per bucket, on the window that ends with it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct AlertRule {
    /// Its name in events, the report and the exposition; unique, 1 to [`MAX_RULE_NAME`]
    /// bytes.
    pub name: String,
    /// What it watches.
    pub metric: Metric,
    /// The step (by name) it watches; none: every run of the executor.
    pub step: Option<String>,
    /// For [`Metric::ErrorRate`]: only errors of this class (its name: `"transient"`,
    /// `"timeout"`, ...).
    pub class: Option<String>,
    /// For quantile metrics: the quantile, in `(0, 1]`; 0.99 by default.
    pub quantile: f64,
    /// The window it reads; one of the monitor's `windows`.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "ser_duration", deserialize_with = "de_rule_window")
    )]
    pub window: Duration,
    /// Fires above this, in the metric's unit (a share, seconds, or per second).
    pub above: f64,
    /// Resolves below this; at most `above`.
    pub clear_below: f64,
    /// Evaluations in a row it takes to fire or to resolve; at least 1.
    pub for_windows: u32,
    /// Samples an evaluation needs to count; at least 1.
    pub min_samples: u64,
}

impl Default for AlertRule {
    fn default() -> Self {
        Self::new("", Metric::ErrorRate)
    }
}

impl AlertRule {
    /// A rule named `name` on `metric` of every run, over 10 s, 0.99 for quantiles, firing
    /// above 0 and resolving below 0, at once (`for_windows` 1), on at least 1 sample: set the
    /// thresholds.
    pub fn new(name: impl Into<String>, metric: Metric) -> Self {
        Self {
            name: name.into(),
            metric,
            step: None,
            class: None,
            quantile: 0.99,
            window: Duration::from_secs(10),
            above: 0.0,
            clear_below: 0.0,
            for_windows: 1,
            min_samples: 1,
        }
    }

    /// The error class of `class`, if set and known.
    pub fn error_class(&self) -> Option<ErrorClass> {
        let name = self.class.as_deref()?;
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn validate(&self, windows: &[Duration]) -> Result<(), ConfigError> {
        let name = &self.name;
        let rule = |what: fmt::Arguments<'_>| format!("rule {name:?}: {what}");
        check(
            !name.is_empty() && name.len() <= MAX_RULE_NAME,
            "monitor.rules.name",
            rule(format_args!("must be 1..={MAX_RULE_NAME} bytes")),
            name.len(),
        )?;
        check(
            self.step.is_none() || self.metric.per_step(),
            "monitor.rules.step",
            rule(format_args!(
                "{} is read of every run only: leave step unset",
                self.metric
            )),
            format_args!("{:?}", self.step),
        )?;
        check(
            self.class.is_none()
                || (self.metric == Metric::ErrorRate && self.error_class().is_some()),
            "monitor.rules.class",
            rule(format_args!(
                "only for error_rate, one of {}",
                ErrorClass::ALL.map(ErrorClass::as_str).join(", ")
            )),
            format_args!("{:?}", self.class),
        )?;
        check(
            self.quantile > 0.0 && self.quantile <= 1.0,
            "monitor.rules.quantile",
            rule(format_args!("must be in (0, 1]")),
            self.quantile,
        )?;
        check(
            windows.contains(&self.window),
            "monitor.rules.window",
            rule(format_args!(
                "must be one of the monitor's windows ({})",
                windows
                    .iter()
                    .map(|w| super::duration::format(*w))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            super::duration::format(self.window),
        )?;
        check(
            self.above.is_finite() && self.above >= 0.0,
            "monitor.rules.above",
            rule(format_args!("must be a finite number >= 0")),
            self.above,
        )?;
        check(
            self.clear_below.is_finite() && self.clear_below <= self.above,
            "monitor.rules.clear_below",
            rule(format_args!(
                "must be finite and <= above ({}): a rule resolves below where it fires",
                self.above
            )),
            self.clear_below,
        )?;
        check(
            self.for_windows >= 1,
            "monitor.rules.for_windows",
            rule(format_args!("must be >= 1")),
            self.for_windows,
        )?;
        check(
            self.min_samples >= 1,
            "monitor.rules.min_samples",
            rule(format_args!(
                "must be >= 1 (a rule must never fire on no samples)"
            )),
            self.min_samples,
        )
    }
}

impl MonitorConfig {
    /// Checks the windows and every rule.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let res = self.resolution;
        check(
            res >= MIN_RESOLUTION,
            "monitor.resolution",
            format_args!("must be >= {}", super::duration::format(MIN_RESOLUTION)),
            super::duration::format(res),
        )?;
        check(
            (1..=MAX_WINDOWS).contains(&self.windows.len()),
            "monitor.windows",
            format_args!("must list 1..={MAX_WINDOWS} windows"),
            self.windows.len(),
        )?;
        for (i, w) in self.windows.iter().enumerate() {
            let buckets = w.as_nanos() / res.as_nanos();
            check(
                !w.is_zero()
                    && w.as_nanos() % res.as_nanos() == 0
                    && buckets <= u128::from(MAX_WINDOW_BUCKETS),
                "monitor.windows",
                format_args!(
                    "each must be a non-zero multiple of resolution ({}), of at most \
                     {MAX_WINDOW_BUCKETS} buckets",
                    super::duration::format(res)
                ),
                super::duration::format(*w),
            )?;
            check(
                !self.windows[..i].contains(w),
                "monitor.windows",
                "must not repeat",
                super::duration::format(*w),
            )?;
        }
        check(
            self.rules.len() <= MAX_RULES,
            "monitor.rules",
            format_args!("at most {MAX_RULES} rules"),
            self.rules.len(),
        )?;
        if let Err(e) = self.detector.validate() {
            return Err(ConfigError::Invalid {
                field: detector_path(e.field()),
                rule: e.rule().to_string(),
            });
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(&self.windows)?;
            check(
                !self.rules[..i].iter().any(|o| o.name == r.name),
                "monitor.rules.name",
                "must be unique",
                &r.name,
            )?;
        }
        Ok(())
    }

    /// Ticks (nanoseconds) per bucket.
    pub(crate) fn resolution_ticks(&self) -> u64 {
        u64::try_from(self.resolution.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Buckets of the longest window.
    pub(crate) fn max_buckets(&self) -> u64 {
        let res = self.resolution_ticks().max(1);
        self.windows
            .iter()
            .map(|w| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX) / res)
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

/// The configuration path of a detector field.
fn detector_path(field: &str) -> &'static str {
    match field {
        "warmup" => "monitor.detector.warmup",
        "threshold" => "monitor.detector.threshold",
        "drift" => "monitor.detector.drift",
        "min_samples" => "monitor.detector.min_samples",
        "baseline_windows" => "monitor.detector.baseline_windows",
        "latency_sd_floor_ln" => "monitor.detector.latency_sd_floor_ln",
        "error_rate_floor" => "monitor.detector.error_rate_floor",
        _ => "monitor.detector",
    }
}

#[cfg(feature = "serde")]
pub(super) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::duration::format(*d))
}

#[cfg(feature = "serde")]
fn ser_durations<S: serde::Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(ds.len()))?;
    for d in ds {
        seq.serialize_element(&super::duration::format(*d))?;
    }
    seq.end()
}

/// A duration that must be set, read as text; errors name `field`.
#[cfg(feature = "serde")]
pub(super) fn de_required<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Duration, D::Error> {
    super::duration::serde_option::deserialize(d, field)?
        .ok_or_else(|| serde::de::Error::custom(format_args!("{field}: must be set, not \"none\"")))
}

#[cfg(feature = "serde")]
fn de_resolution<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_required(d, "monitor.resolution")
}

#[cfg(feature = "serde")]
fn de_rule_window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_required(d, "monitor.rules.window")
}

#[cfg(feature = "serde")]
fn de_windows<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let texts: Vec<String> = serde::Deserialize::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            super::duration::parse(t).map_err(|e| {
                serde::de::Error::custom(format_args!(
                    "monitor.windows: invalid duration {t:?}: {e}"
                ))
            })
        })
        .collect()
}
