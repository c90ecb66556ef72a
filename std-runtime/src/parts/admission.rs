//! Adaptive concurrency limits: how many submissions may run at once, learnt from latency and
//! overload signals.
//!
//! Sources: Netflix `concurrency-limits` (`AIMDLimit`, `Gradient2Limit`,
//! <https://github.com/Netflix/concurrency-limits>), itself after TCP congestion control; and
//! for [`Algorithm::Bbr`], Sentinel's BBR-style system protection (capacity = max throughput ×
//! min latency, <https://github.com/alibaba/Sentinel>) after TCP BBR (Cardwell et al., 2016).
//!
//! An [`AdaptiveLimit`] hands out [`Permit`]s while fewer than [`limit`](AdaptiveLimit::limit)
//! are in flight. Each permit ends in one of three ways, which feed the algorithm:
//!
//! | end | meaning | effect |
//! |---|---|---|
//! | [`Permit::success`] | the work finished; here is its latency | may raise the limit ([`Algorithm`]) |
//! | [`Permit::dropped`] | overload: timeout, rejection downstream | multiplicative decrease |
//! | the permit is dropped | the outcome says nothing about load (cancel, panic) | none |
//!
//! The acquire path is one load of the limit and one CAS on the in-flight count, no lock (and,
//! for [`Algorithm::Bbr`], two relaxed loads of counters once admitted, for its rate samples). Limit
//! updates (at the end of a permit, and [`set_bounds`](AdaptiveLimit::set_bounds)) take a small
//! `Mutex` that holds the bounds and the algorithm's float state, and publish the new integer
//! limit through an atomic; so the limit is always inside the bounds of the moment.
//!
//! An acquire admits only while the in-flight count is below the limit, so with a constant limit
//! the in-flight count never exceeds it. After the limit falls, permits already out stay valid:
//! the in-flight count can then be above the limit until enough of them end.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, PoisonError};

use crate::config::{AdmissionConfig, Algorithm};
use crate::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering, Padded};

/// Samples the gradient's long-term RTT average spans (Netflix `Gradient2Limit` default).
pub const GRADIENT_LONG_WINDOW: u32 = 600;

/// Samples the long-term RTT average takes as a plain mean before it turns exponential.
pub const GRADIENT_WARMUP: u32 = 10;

/// Headroom the gradient adds to the limit on every sample, so it can probe upwards while the
/// latency holds (Netflix's `queueSize`, default 4).
pub const GRADIENT_QUEUE_SIZE: f64 = 4.0;

/// The smallest factor one gradient sample may apply (a latency far above the long-term RTT);
/// a [`Permit::dropped`] counts as a sample with this factor.
pub const GRADIENT_MIN: f64 = 0.5;

/// Buckets of the BBR rate filter: the highest rate is kept over the last
/// [`bbr_window`](AdmissionConfig::bbr_window) samples, in buckets of a quarter window each, so
/// a high sample is forgotten between 3/4 and 1 window after it was taken.
pub const BBR_BUCKETS: usize = 4;

/// Samples acquired under the probe limit that a BBR RTT probe waits for before it ends; their
/// least latency is the new `min_rt`.
pub const BBR_PROBE_SAMPLES: u32 = 4;

/// The factor a [`Permit::dropped`] applies to the BBR drop ceiling (BBRv2's `beta`).
pub const BBR_DROP_FACTOR: f64 = 0.7;

/// The least [`bbr_window`](AdmissionConfig::bbr_window), in samples.
pub const BBR_MIN_WINDOW: u32 = 8;

/// The greatest [`bbr_window`](AdmissionConfig::bbr_window), in samples.
pub const BBR_MAX_WINDOW: u32 = 1 << 20;

/// The greatest [`bbr_headroom`](AdmissionConfig::bbr_headroom).
pub const BBR_MAX_HEADROOM: f64 = 16.0;

/// An invalid [`AdmissionConfig`] or bounds; [`field`](Self::field) names the culprit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LimitError {
    /// `min_limit` was 0.
    MinLimitZero,
    /// `min_limit` was above `max_limit`.
    MinAboveMax {
        /// The minimum asked for.
        min_limit: u32,
        /// The maximum asked for.
        max_limit: u32,
    },
    /// `initial_limit` was outside `min_limit..=max_limit`.
    InitialOutOfBounds {
        /// The initial limit asked for.
        initial_limit: u32,
        /// The minimum.
        min_limit: u32,
        /// The maximum.
        max_limit: u32,
    },
    /// `aimd_increase` was 0.
    IncreaseZero,
    /// `aimd_backoff_ratio` was not in `(0, 1)`.
    BackoffRatio(f64),
    /// `gradient_smoothing` was not in `(0, 1]`.
    Smoothing(f64),
    /// `gradient_tolerance` was below 1 (or not a finite number).
    Tolerance(f64),
    /// `bbr_headroom` was not in `0..=`[`BBR_MAX_HEADROOM`].
    Headroom(f64),
    /// `bbr_window` was not in [`BBR_MIN_WINDOW`]`..=`[`BBR_MAX_WINDOW`].
    Window(u32),
    /// A pressure share (for [`AdaptiveLimit::set_pressure`]) was not in `0..=1`.
    Pressure(f64),
}

impl LimitError {
    /// The path of the field that is wrong in an
    /// [`OptimizationConfig`](crate::config::OptimizationConfig), as its validation names it.
    pub fn config_path(&self) -> &'static str {
        match self {
            Self::MinLimitZero | Self::MinAboveMax { .. } => "adaptive_concurrency.min_limit",
            Self::InitialOutOfBounds { .. } => "adaptive_concurrency.initial_limit",
            Self::IncreaseZero => "adaptive_concurrency.aimd_increase",
            Self::BackoffRatio(_) => "adaptive_concurrency.aimd_backoff_ratio",
            Self::Smoothing(_) => "adaptive_concurrency.gradient_smoothing",
            Self::Tolerance(_) => "adaptive_concurrency.gradient_tolerance",
            Self::Headroom(_) => "adaptive_concurrency.bbr_headroom",
            Self::Window(_) => "adaptive_concurrency.bbr_window",
            // Not a configuration field: the argument of `set_pressure`.
            Self::Pressure(_) => "pressure",
        }
    }

    /// The name of the configuration field that is wrong (its
    /// [`AdmissionConfig`] field, the last part of [`config_path`](Self::config_path)).
    pub fn field(&self) -> &'static str {
        let path = self.config_path();
        path.strip_prefix("adaptive_concurrency.").unwrap_or(path)
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MinLimitZero => f.write_str("`min_limit` must be at least 1, got 0"),
            Self::MinAboveMax {
                min_limit,
                max_limit,
            } => write!(
                f,
                "`min_limit` ({min_limit}) must not be above `max_limit` ({max_limit})"
            ),
            Self::InitialOutOfBounds {
                initial_limit,
                min_limit,
                max_limit,
            } => write!(
                f,
                "`initial_limit` must be in {min_limit}..={max_limit}, got {initial_limit}"
            ),
            Self::IncreaseZero => f.write_str("`aimd_increase` must be at least 1, got 0"),
            Self::BackoffRatio(r) => write!(f, "`aimd_backoff_ratio` must be in (0, 1), got {r}"),
            Self::Smoothing(s) => write!(f, "`gradient_smoothing` must be in (0, 1], got {s}"),
            Self::Tolerance(t) => {
                write!(
                    f,
                    "`gradient_tolerance` must be a finite number >= 1, got {t}"
                )
            }
            Self::Headroom(h) => {
                write!(
                    f,
                    "`bbr_headroom` must be in 0..={BBR_MAX_HEADROOM}, got {h}"
                )
            }
            Self::Window(w) => write!(
                f,
                "`bbr_window` must be in {BBR_MIN_WINDOW}..={BBR_MAX_WINDOW}, got {w}"
            ),
            Self::Pressure(p) => write!(f, "the pressure share must be in 0..=1, got {p}"),
        }
    }
}

impl std::error::Error for LimitError {}

/// Exact counts since the limit was made. Each is exact; a snapshot taken while permits come
/// and go is not atomic across counters. Once every permit has ended,
/// `acquired == succeeded + dropped + ignored`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Permits handed out.
    pub acquired: u64,
    /// Acquires refused because the in-flight count was at the limit.
    pub rejected: u64,
    /// Permits ended with [`Permit::success`].
    pub succeeded: u64,
    /// Permits ended with [`Permit::dropped`].
    pub dropped: u64,
    /// Permits dropped without either.
    pub ignored: u64,
    /// Changes that raised the integer limit (by the algorithm or by
    /// [`AdaptiveLimit::set_bounds`]).
    pub increases: u64,
    /// Changes that lowered the integer limit (by the algorithm or by
    /// [`AdaptiveLimit::set_bounds`]).
    pub decreases: u64,
}

/// An exponential moving average that starts as a plain mean (Netflix
/// `ExponentialAverageMeasurement`).
#[derive(Debug)]
struct Average {
    /// The average, in ns.
    value: f64,
    /// Samples taken so far, saturating at the warm-up length.
    count: u32,
}

impl Average {
    fn add(&mut self, sample: f64) -> f64 {
        if self.count < GRADIENT_WARMUP {
            self.count += 1;
            self.value += (sample - self.value) / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(GRADIENT_LONG_WINDOW) + 1.0);
            self.value += (sample - self.value) * factor;
        }
        self.value
    }
}

/// The highest rate sample over the last window, in [`BBR_BUCKETS`] buckets of a quarter
/// window each (samples, not time: the limiter has no clock).
#[derive(Debug)]
struct MaxFilter {
    /// The highest sample of each bucket, in runs per ns; 0 for an empty bucket.
    buckets: [f64; BBR_BUCKETS],
    /// The bucket being filled.
    current: usize,
    /// Samples in the current bucket.
    filled: u32,
    /// Samples per bucket, at least 2.
    per_bucket: u32,
}

impl MaxFilter {
    fn new(window: u32) -> Self {
        Self {
            buckets: [0.0; BBR_BUCKETS],
            current: 0,
            filled: 0,
            // `BBR_BUCKETS` is 4: the cast is exact.
            per_bucket: window.div_ceil(BBR_BUCKETS as u32).max(2),
        }
    }

    /// Adds a sample; with `hold`, it may raise the filter but does not count towards the
    /// window (an old bucket is not let go of for it).
    fn add(&mut self, sample: f64, hold: bool) {
        if !hold {
            if self.filled >= self.per_bucket {
                self.current = (self.current + 1) % BBR_BUCKETS;
                self.buckets[self.current] = 0.0;
                self.filled = 0;
            }
            self.filled += 1;
        }
        let bucket = &mut self.buckets[self.current];
        *bucket = bucket.max(sample);
    }

    fn max(&self) -> f64 {
        self.buckets.iter().copied().fold(0.0, f64::max)
    }
}

/// A BBR RTT probe under way.
#[derive(Debug)]
struct Probe {
    /// The limit during the probe.
    limit: u32,
    /// Samples acquired with at most `limit` in flight, so far.
    samples: u32,
    /// Their least latency, in ns.
    rt: f64,
}

/// The BBR rule's state (see [`Algorithm::Bbr`]).
#[derive(Debug)]
struct Bbr {
    headroom: f64,
    window: u32,
    /// The highest rate of the window, in runs per ns.
    rate: MaxFilter,
    /// The least latency since the last probe, in ns; infinite before the first sample.
    min_rt: f64,
    /// Samples since the last probe ended.
    since_probe: u32,
    probe: Option<Probe>,
    /// The drop ceiling, in runs: lowered by drops, raised by successes.
    ceiling: f64,
    /// `1 - share` of the last `set_pressure`.
    scale: f64,
    /// The initial limit: the limit until the first sample, and its floor until `in_use`.
    initial: f64,
    /// A sample outside a probe has seen an acquire refused (the limit was in use): until
    /// then every sample is app-limited, says only what the load asked for, and the limit
    /// stays at least `initial` (BBR's startup, which never lowers its window).
    in_use: bool,
}

impl Bbr {
    /// `max_rate × min_rt`, in runs; `None` before the first sample.
    fn estimate(&self) -> Option<f64> {
        let e = self.rate.max() * self.min_rt;
        e.is_finite().then_some(e)
    }

    /// The limit the estimate allows, before the ceiling, the pressure and clamping: the
    /// initial limit while there is no estimate.
    fn base(&self) -> f64 {
        match self.estimate() {
            Some(e) if self.in_use => (e * (1.0 + self.headroom)).floor().max(e.floor() + 1.0),
            Some(e) => (e * (1.0 + self.headroom)).floor().max(self.initial),
            None => self.initial,
        }
    }

    /// The limit outside a probe, before clamping.
    fn target(&self) -> f64 {
        self.base().min(self.ceiling) * self.scale
    }

    fn after_success(&mut self, sample: Sample, limit: u32, min: u32) -> f64 {
        let Sample {
            latency_ns,
            in_flight,
            delivered,
            binding,
        } = sample;
        // `u64 -> f64` rounds above 2^53 ns (104 days) or runs: fine for a rate.
        let rt = latency_ns.max(1) as f64;
        // An app-limited sample (no acquire refused during its life: the load, not the
        // limit, set its rate) may raise the highest rate but not let an old one go, as in
        // BBR; nor may one taken in a probe or under pressure (a limit held low on purpose
        // would pass for the capacity).
        let held = !binding || self.probe.is_some() || self.scale < 1.0;
        self.in_use |= binding && self.probe.is_none();
        self.rate.add(delivered as f64 / rt, held);
        self.ceiling += 1.0 / f64::from(limit.max(1));
        if let Some(probe) = &mut self.probe {
            if in_flight <= probe.limit.max(min) {
                probe.samples += 1;
                probe.rt = probe.rt.min(rt);
            }
            if probe.samples < BBR_PROBE_SAMPLES {
                return f64::from(probe.limit) * self.scale;
            }
            self.min_rt = probe.rt;
            self.probe = None;
            self.since_probe = 0;
        } else {
            self.min_rt = self.min_rt.min(rt);
            self.since_probe = self.since_probe.saturating_add(1);
            if self.since_probe >= self.window {
                let half = self.estimate().unwrap_or(f64::from(limit)) / 2.0;
                // Saturating float-to-int cast; clamped to the bounds by `settle`.
                let probe_limit = (half.ceil() as u32).max(min);
                self.probe = Some(Probe {
                    limit: probe_limit,
                    samples: 0,
                    rt: f64::INFINITY,
                });
                return f64::from(probe_limit) * self.scale;
            }
        }
        self.target()
    }

    fn after_drop(&mut self) -> f64 {
        self.ceiling = self.ceiling.min(self.base()) * BBR_DROP_FACTOR;
        self.current()
    }

    /// The limit now (after a drop, a change of bounds or of pressure), before clamping.
    fn current(&self) -> f64 {
        match &self.probe {
            Some(probe) => f64::from(probe.limit).min(self.ceiling) * self.scale,
            None => self.target(),
        }
    }
}

/// What a success tells the rule.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The latency the caller measured, in ns.
    latency_ns: u64,
    /// The permits out right after this one's acquire, itself included.
    in_flight: u32,
    /// Permits ended by `success` or `dropped` from this one's acquire to its end, itself
    /// included (BBR's delivered count: at least 1).
    delivered: u64,
    /// An acquire was refused at the limit during this permit's life: the limit, not the
    /// load, held the rate down (else the sample is app-limited).
    binding: bool,
}

/// The algorithm's state.
#[derive(Debug)]
enum Rule {
    Aimd {
        increase: u32,
        backoff_ratio: f64,
    },
    Gradient {
        smoothing: f64,
        tolerance: f64,
        /// The limit as a float, in `[min, max]`; the integer limit is its floor.
        estimate: f64,
        /// The long-term RTT.
        long_rtt: Average,
    },
    Bbr(Bbr),
}

/// Everything a limit update reads and writes, under the mutex.
#[derive(Debug)]
struct State {
    min_limit: u32,
    max_limit: u32,
    /// In `min_limit..=max_limit`; mirrored in `AdaptiveLimit::limit`.
    limit: u32,
    rule: Rule,
    /// The share of the last `set_pressure`, in `0..=1`.
    pressure: f64,
}

impl State {
    /// The integer limit the rule proposes after a success (before clamping).
    fn after_success(&mut self, sample: Sample) -> f64 {
        let Sample {
            latency_ns,
            in_flight,
            ..
        } = sample;
        let limit = self.limit;
        match &mut self.rule {
            Rule::Aimd { increase, .. } => {
                if 2 * u64::from(in_flight) >= u64::from(limit) {
                    f64::from(limit) + f64::from(*increase)
                } else {
                    f64::from(limit)
                }
            }
            Rule::Gradient {
                smoothing,
                tolerance,
                estimate,
                long_rtt,
            } => {
                // `u64 -> f64` rounds above 2^53 ns (104 days): fine for a ratio.
                let short = latency_ns.max(1) as f64;
                let mut long = long_rtt.add(short);
                if long / short > 2.0 {
                    long_rtt.value *= 0.95;
                    long = long_rtt.value;
                }
                if f64::from(in_flight) >= *estimate / 2.0 {
                    let gradient = (*tolerance * long / short).clamp(GRADIENT_MIN, 1.0);
                    let target = *estimate * gradient + GRADIENT_QUEUE_SIZE;
                    *estimate = *estimate * (1.0 - *smoothing) + target * *smoothing;
                }
                *estimate
            }
            Rule::Bbr(bbr) => bbr.after_success(sample, limit, self.min_limit),
        }
    }

    /// The limit the rule proposes after a drop (before clamping).
    fn after_drop(&mut self) -> f64 {
        match &mut self.rule {
            Rule::Aimd { backoff_ratio, .. } => f64::from(self.limit) * *backoff_ratio,
            Rule::Gradient {
                smoothing,
                estimate,
                ..
            } => {
                *estimate = *estimate * (1.0 - *smoothing) + *estimate * GRADIENT_MIN * *smoothing;
                *estimate
            }
            Rule::Bbr(bbr) => bbr.after_drop(),
        }
    }

    /// Clamps a proposed limit (and the gradient's estimate) to the bounds and returns the new
    /// integer limit.
    fn settle(&mut self, proposed: f64) -> u32 {
        let (min, max) = (f64::from(self.min_limit), f64::from(self.max_limit));
        match &mut self.rule {
            Rule::Gradient { estimate, .. } => *estimate = estimate.clamp(min, max),
            // The ceiling stays within reach of the bounds, so that a drop or a long spell of
            // successes acts within one round of the bounds.
            Rule::Bbr(bbr) => bbr.ceiling = bbr.ceiling.clamp(min, max + 1.0),
            Rule::Aimd { .. } => {}
        }
        // `as` saturates and floors; the clamp keeps it in range even for a NaN (-> 0 -> min).
        let limit = (proposed.clamp(min, max) as u32).clamp(self.min_limit, self.max_limit);
        debug_assert!((self.min_limit..=self.max_limit).contains(&limit));
        limit
    }
}

/// A concurrency limit that adapts to latency and overload (see the [module docs](self)).
///
/// Share it by reference ([`try_acquire`](Self::try_acquire)) or by `Arc`
/// ([`try_acquire_owned`](Self::try_acquire_owned)).
///
/// # Examples
///
/// ```
/// use flujo_runtime::parts::admission::AdaptiveLimit;
/// use flujo_runtime::config::{AdmissionConfig, Algorithm};
///
/// let limit = AdaptiveLimit::new(AdmissionConfig {
///     algorithm: Algorithm::Aimd,
///     aimd_increase: 1,
///     aimd_backoff_ratio: 0.5,
///     min_limit: 1,
///     max_limit: 10,
///     initial_limit: 2,
///     ..AdmissionConfig::default()
/// })
/// .unwrap();
///
/// let a = limit.try_acquire().unwrap();
/// let b = limit.try_acquire().unwrap();
/// assert!(limit.try_acquire().is_none()); // two in flight: at the limit
///
/// a.success(1_000_000); // finished at saturation: the limit grows
/// assert_eq!(limit.limit(), 3);
/// b.dropped(); // overload: the limit is multiplied by the ratio, 0.5 here
/// assert_eq!(limit.limit(), 1);
///
/// let stats = limit.stats();
/// assert_eq!((stats.acquired, stats.rejected), (2, 1));
/// assert_eq!((stats.succeeded, stats.dropped, stats.ignored), (1, 1, 0));
/// ```
#[derive(Debug)]
pub struct AdaptiveLimit {
    /// What every acquire touches, on lines of its own: a submitting thread and the thread
    /// that ends a permit then share these lines only, not the rule's state.
    gate: Padded<Gate>,
    /// What only the ends of permits (and readers of the stats) touch.
    ends: Padded<Ends>,
}

/// The acquire side of an [`AdaptiveLimit`].
#[derive(Debug)]
struct Gate {
    /// The current limit, in `min_limit..=max_limit` of the state. Written only under the state
    /// lock; read without it by acquires (Relaxed: it guards no data, and a stale value only
    /// admits or refuses one more acquire as the limit of a moment ago would have).
    limit: AtomicU32,
    /// Permits out. Raised by acquire CAS only while below `limit`, lowered by one when a permit
    /// ends. Relaxed: it guards no data.
    in_flight: AtomicU32,
    /// The rule is BBR: acquires read `ended` and `rejected` for its samples (the other rules
    /// skip the two loads). Fixed at construction.
    counts_deliveries: bool,
    /// See [`LimitStats`]; Relaxed counters.
    acquired: AtomicU64,
    /// See [`LimitStats`].
    rejected: AtomicU64,
}

/// The end side of an [`AdaptiveLimit`].
#[derive(Debug)]
struct Ends {
    /// Permits ended by `success` or `dropped` so far: a permit reads it at its acquire, so
    /// that its end knows how many ended during its life (BBR's delivery rate). Relaxed: a
    /// count read a moment late only moves one rate sample by one. (`rejected` is read the
    /// same way, to tell app-limited samples.)
    ended: AtomicU64,
    /// Bounds and the algorithm's state.
    state: Mutex<State>,
    /// See [`LimitStats`]; Relaxed counters.
    succeeded: AtomicU64,
    /// See [`LimitStats`].
    dropped: AtomicU64,
    /// See [`LimitStats`].
    ignored: AtomicU64,
    /// See [`LimitStats`].
    increases: AtomicU64,
    /// See [`LimitStats`].
    decreases: AtomicU64,
}

/// How a permit ended.
#[derive(Clone, Copy, Debug)]
enum End {
    Success(u64),
    Dropped,
    Ignored,
}

/// Checks `min_limit..=max_limit`.
fn check_bounds(min_limit: u32, max_limit: u32) -> Result<(), LimitError> {
    if min_limit == 0 {
        return Err(LimitError::MinLimitZero);
    }
    if min_limit > max_limit {
        return Err(LimitError::MinAboveMax {
            min_limit,
            max_limit,
        });
    }
    Ok(())
}

/// Checks the tuning of every algorithm (whichever is chosen), so a configuration that
/// validates can switch algorithm without becoming invalid. The ranges are written so that NaN
/// fails too.
pub(crate) fn check_tuning(config: &AdmissionConfig) -> Result<(), LimitError> {
    if config.aimd_increase == 0 {
        return Err(LimitError::IncreaseZero);
    }
    let ratio = config.aimd_backoff_ratio;
    if !(ratio > 0.0 && ratio < 1.0) {
        return Err(LimitError::BackoffRatio(ratio));
    }
    let smoothing = config.gradient_smoothing;
    if !(smoothing > 0.0 && smoothing <= 1.0) {
        return Err(LimitError::Smoothing(smoothing));
    }
    let tolerance = config.gradient_tolerance;
    if !(tolerance >= 1.0 && tolerance.is_finite()) {
        return Err(LimitError::Tolerance(tolerance));
    }
    let headroom = config.bbr_headroom;
    if !(0.0..=BBR_MAX_HEADROOM).contains(&headroom) {
        return Err(LimitError::Headroom(headroom));
    }
    if !(BBR_MIN_WINDOW..=BBR_MAX_WINDOW).contains(&config.bbr_window) {
        return Err(LimitError::Window(config.bbr_window));
    }
    Ok(())
}

impl AdaptiveLimit {
    /// Makes a limit from `config`, with nothing in flight. With `config.enabled` off the limit
    /// is fixed at `max_limit` ([`AdmissionConfig::bounds`]); the other fields are checked all
    /// the same.
    ///
    /// # Errors
    ///
    /// [`LimitError`] naming the first invalid field.
    pub fn new(config: AdmissionConfig) -> Result<Self, LimitError> {
        check_bounds(config.min_limit, config.max_limit)?;
        if !(config.min_limit..=config.max_limit).contains(&config.initial_limit) {
            return Err(LimitError::InitialOutOfBounds {
                initial_limit: config.initial_limit,
                min_limit: config.min_limit,
                max_limit: config.max_limit,
            });
        }
        check_tuning(&config)?;
        let (min_limit, max_limit) = config.bounds();
        let initial_limit = config.initial_limit.clamp(min_limit, max_limit);
        let rule = match config.algorithm {
            Algorithm::Aimd => Rule::Aimd {
                increase: config.aimd_increase,
                backoff_ratio: config.aimd_backoff_ratio,
            },
            Algorithm::Gradient => Rule::Gradient {
                smoothing: config.gradient_smoothing,
                tolerance: config.gradient_tolerance,
                estimate: f64::from(initial_limit),
                long_rtt: Average {
                    value: 0.0,
                    count: 0,
                },
            },
            Algorithm::Bbr => Rule::Bbr(Bbr {
                headroom: config.bbr_headroom,
                window: config.bbr_window,
                rate: MaxFilter::new(config.bbr_window),
                min_rt: f64::INFINITY,
                since_probe: 0,
                probe: None,
                ceiling: f64::from(max_limit) + 1.0,
                scale: 1.0,
                initial: f64::from(initial_limit),
                in_use: false,
            }),
        };
        Ok(Self {
            gate: Padded(Gate {
                limit: AtomicU32::new(initial_limit),
                in_flight: AtomicU32::new(0),
                counts_deliveries: config.algorithm == Algorithm::Bbr,
                acquired: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            ends: Padded(Ends {
                ended: AtomicU64::new(0),
                state: Mutex::new(State {
                    min_limit,
                    max_limit,
                    limit: initial_limit,
                    rule,
                    pressure: 0.0,
                }),
                succeeded: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                ignored: AtomicU64::new(0),
                increases: AtomicU64::new(0),
                decreases: AtomicU64::new(0),
            }),
        })
    }

    /// Takes a slot if fewer than [`limit`](Self::limit) permits are in flight. Lock-free: a
    /// load and a CAS loop that retries only when another acquire or release won the race.
    pub fn try_acquire(&self) -> Option<Permit<&Self>> {
        self.try_acquire_slip().map(|slip| self.attach(slip))
    }

    /// Like [`try_acquire`](Self::try_acquire), for a permit that owns an `Arc` of the limit
    /// (to move into a task).
    pub fn try_acquire_owned(self: &Arc<Self>) -> Option<OwnedPermit> {
        let (in_flight, ended_before, rejected_before) = self.acquire_slot()?;
        Some(Permit {
            limit: Arc::clone(self),
            in_flight,
            ended_before,
            rejected_before,
            ended: false,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), for a permit whose limit its owner keeps for
    /// it: a [`Slip`], which [`attach`](Self::attach) makes a [`Permit`] again.
    pub(crate) fn try_acquire_slip(&self) -> Option<Slip> {
        let (in_flight, ended_before, rejected_before) = self.acquire_slot()?;
        Some(Slip {
            in_flight,
            ended_before,
            rejected_before,
        })
    }

    /// The permit of `slip`, which must come from this limit's
    /// [`try_acquire_slip`](Self::try_acquire_slip): it ends as any permit does.
    pub(crate) fn attach(&self, slip: Slip) -> Permit<&Self> {
        let Slip {
            in_flight,
            ended_before,
            rejected_before,
        } = slip;
        Permit {
            limit: self,
            in_flight,
            ended_before,
            rejected_before,
            ended: false,
        }
    }

    /// Raises the in-flight count if it is below the limit; returns the new count and the
    /// counts of permits ended and of acquires refused so far.
    fn acquire_slot(&self) -> Option<(u32, u64, u64)> {
        let mut current = self.gate.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= self.gate.limit.load(Ordering::Relaxed) {
                self.gate.rejected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self.gate.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.gate.acquired.fetch_add(1, Ordering::Relaxed);
                    if !self.gate.counts_deliveries {
                        return Some((current + 1, 0, 0));
                    }
                    return Some((
                        current + 1,
                        self.ends.ended.load(Ordering::Relaxed),
                        self.gate.rejected.load(Ordering::Relaxed),
                    ));
                }
                Err(now) => current = now,
            }
        }
    }

    /// Ends a permit acquired when `in_flight` were out (itself included), `ended_before` had
    /// ended and `rejected_before` had been refused.
    fn release(&self, in_flight: u32, ended_before: u64, rejected_before: u64, end: End) {
        match end {
            End::Success(latency_ns) => {
                self.ends.succeeded.fetch_add(1, Ordering::Relaxed);
                let ended = self.ends.ended.fetch_add(1, Ordering::Relaxed) + 1;
                let sample = Sample {
                    latency_ns,
                    in_flight,
                    delivered: ended.wrapping_sub(ended_before).max(1),
                    binding: self.gate.rejected.load(Ordering::Relaxed) != rejected_before,
                };
                self.update(|state| state.after_success(sample));
            }
            End::Dropped => {
                self.ends.dropped.fetch_add(1, Ordering::Relaxed);
                self.ends.ended.fetch_add(1, Ordering::Relaxed);
                self.update(State::after_drop);
            }
            End::Ignored => {
                self.ends.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
        let before = self.gate.in_flight.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "a permit ended with nothing in flight");
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock panics; a poisoned state is still within its bounds.
        self.ends
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a rule step under the lock and publishes the clamped limit.
    fn update(&self, step: impl FnOnce(&mut State) -> f64) {
        let mut state = self.lock();
        let proposed = step(&mut state);
        let limit = state.settle(proposed);
        self.publish(&mut state, limit);
    }

    /// Stores a new limit (under the lock) and counts the change. An unchanged limit is not
    /// written: every acquire reads it, from another thread than the releases that publish.
    fn publish(&self, state: &mut State, limit: u32) {
        let old = state.limit;
        state.limit = limit;
        if limit != old {
            self.gate.limit.store(limit, Ordering::Relaxed);
        }
        if limit > old {
            self.ends.increases.fetch_add(1, Ordering::Relaxed);
        } else if limit < old {
            self.ends.decreases.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Changes the bounds at run time; the current limit (and the gradient's estimate) is
    /// clamped into them.
    ///
    /// # Errors
    ///
    /// [`LimitError::MinLimitZero`] or [`LimitError::MinAboveMax`]; the bounds stay as they were.
    pub fn set_bounds(&self, min_limit: u32, max_limit: u32) -> Result<(), LimitError> {
        check_bounds(min_limit, max_limit)?;
        let mut state = self.lock();
        state.min_limit = min_limit;
        state.max_limit = max_limit;
        let proposed = match &state.rule {
            Rule::Gradient { estimate, .. } => *estimate,
            Rule::Aimd { .. } => f64::from(state.limit),
            Rule::Bbr(bbr) => bbr.current(),
        };
        let limit = state.settle(proposed);
        self.publish(&mut state, limit);
        Ok(())
    }

    /// Tells the limit how saturated the resource it protects is (CPU, for the host's
    /// degradation layer): `share` in `0..=1`, 0 for none. With [`Algorithm::Bbr`] the limit
    /// becomes `1 - share` times what the capacity estimate allows (never below the minimum),
    /// and while `share > 0` the highest rate seen is held rather than let go of (a limit held
    /// low would otherwise measure its own restriction as the server's capacity). The other
    /// algorithms keep the share and ignore it (tighten them with
    /// [`set_bounds`](Self::set_bounds)). Takes effect at once.
    ///
    /// # Errors
    ///
    /// [`LimitError::Pressure`] for a share outside `0..=1` (or NaN); nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::parts::admission::AdaptiveLimit;
    /// use flujo_runtime::config::{AdmissionConfig, Algorithm};
    ///
    /// let limit = AdaptiveLimit::new(AdmissionConfig {
    ///     algorithm: Algorithm::Bbr,
    ///     min_limit: 1,
    ///     max_limit: 100,
    ///     initial_limit: 40,
    ///     ..AdmissionConfig::default()
    /// })
    /// .unwrap();
    /// limit.set_pressure(0.5).unwrap(); // the CPU is saturated: half the limit
    /// assert_eq!(limit.limit(), 20);
    /// limit.set_pressure(0.0).unwrap();
    /// assert_eq!(limit.limit(), 40);
    /// assert!(limit.set_pressure(1.5).is_err());
    /// ```
    pub fn set_pressure(&self, share: f64) -> Result<(), LimitError> {
        if !(0.0..=1.0).contains(&share) {
            return Err(LimitError::Pressure(share));
        }
        let mut state = self.lock();
        state.pressure = share;
        if let Rule::Bbr(bbr) = &mut state.rule {
            bbr.scale = 1.0 - share;
            let proposed = bbr.current();
            let limit = state.settle(proposed);
            self.publish(&mut state, limit);
        }
        Ok(())
    }

    /// The share last given to [`set_pressure`](Self::set_pressure) (0 at first).
    pub fn pressure(&self) -> f64 {
        self.lock().pressure
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.gate.limit.load(Ordering::Relaxed)
    }

    /// The permits out now.
    pub fn in_flight(&self) -> u32 {
        self.gate.in_flight.load(Ordering::Relaxed)
    }

    /// The current `(min_limit, max_limit)`.
    pub fn bounds(&self) -> (u32, u32) {
        let state = self.lock();
        (state.min_limit, state.max_limit)
    }

    /// The exact counters.
    pub fn stats(&self) -> LimitStats {
        LimitStats {
            acquired: self.gate.acquired.load(Ordering::Relaxed),
            rejected: self.gate.rejected.load(Ordering::Relaxed),
            succeeded: self.ends.succeeded.load(Ordering::Relaxed),
            dropped: self.ends.dropped.load(Ordering::Relaxed),
            ignored: self.ends.ignored.load(Ordering::Relaxed),
            increases: self.ends.increases.load(Ordering::Relaxed),
            decreases: self.ends.decreases.load(Ordering::Relaxed),
        }
    }
}

/// One admitted unit of work, borrowed from an [`AdaptiveLimit`]. End it with
/// [`success`](Self::success) or [`dropped`](Self::dropped); dropping it otherwise frees the
/// slot and counts as *ignored* (no limit change).
///
/// # Examples
///
/// ```
/// use flujo_runtime::parts::admission::AdaptiveLimit;
/// use flujo_runtime::config::AdmissionConfig;
///
/// let limit = AdaptiveLimit::new(AdmissionConfig::default()).unwrap();
/// {
///     let _permit = limit.try_acquire().unwrap();
///     assert_eq!(limit.in_flight(), 1);
///     // The work was cancelled: the outcome says nothing about load.
/// }
/// assert_eq!(limit.in_flight(), 0);
/// assert_eq!(limit.stats().ignored, 1);
/// ```
///
/// `L` is how the permit holds its limit: a borrow from [`AdaptiveLimit::try_acquire`], or an
/// `Arc` ([`OwnedPermit`]) from [`AdaptiveLimit::try_acquire_owned`], to move into a task.
#[must_use = "dropping a permit at once frees it as `ignored`"]
#[derive(Debug)]
pub struct Permit<L: Deref<Target = AdaptiveLimit>> {
    limit: L,
    /// The in-flight count right after this permit was taken.
    in_flight: u32,
    /// The limit's count of ended permits when this one was taken.
    ended_before: u64,
    /// The limit's count of refused acquires when this one was taken.
    rejected_before: u64,
    /// Set by `success`/`dropped` so that `Drop` does not count it as ignored.
    ended: bool,
}

/// A permit without its limit, for an owner that keeps the limit at hand (the executor's
/// queued submissions): what [`Permit`] records, but no `Arc` of the limit, whose clone and
/// drop would be two more atomic read-modify-writes per submission, on a line the submitting
/// and the ending thread would both write. It ends only through
/// [`AdaptiveLimit::attach`]; dropped unattached, its slot stays taken.
#[must_use = "a slip dropped without `attach` keeps its slot taken"]
#[derive(Debug)]
pub(crate) struct Slip {
    in_flight: u32,
    ended_before: u64,
    rejected_before: u64,
}

/// A [`Permit`] that holds an `Arc` of its limit, from
/// [`AdaptiveLimit::try_acquire_owned`]; it ends the same three ways.
pub type OwnedPermit = Permit<Arc<AdaptiveLimit>>;

impl<L: Deref<Target = AdaptiveLimit>> Permit<L> {
    /// The work finished normally after `latency_ns`; the limit may grow (or, for the gradient,
    /// shrink if the latency rose).
    pub fn success(mut self, latency_ns: u64) {
        self.ended = true;
        self.limit.release(
            self.in_flight,
            self.ended_before,
            self.rejected_before,
            End::Success(latency_ns),
        );
    }

    /// The work met overload (a timeout, a rejection downstream): the limit decreases.
    pub fn dropped(mut self) {
        self.ended = true;
        self.limit.release(
            self.in_flight,
            self.ended_before,
            self.rejected_before,
            End::Dropped,
        );
    }
}

impl<L: Deref<Target = AdaptiveLimit>> Drop for Permit<L> {
    fn drop(&mut self) {
        if !self.ended {
            self.limit.release(
                self.in_flight,
                self.ended_before,
                self.rejected_before,
                End::Ignored,
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;
