//! Online change-point detection on per-window statistics: a two-sided tabular CUSUM
//! (E. S. Page, "Continuous inspection schemes", Biometrika 41, 1954; the tabular form with a
//! reference value `k` and a decision interval `h` as in D. C. Montgomery, *Introduction to
//! Statistical Quality Control*, ch. 9) on the standardized mean of each closed window.
//!
//! Two series, one detector each: [`LatencyDetector`] watches the log of a step's latency,
//! [`ErrorDetector`] its error proportion. Both share one engine (`Core` below) over the same
//! three sums of a window's samples (`n`, `Σx`, `Σx²`; an error is the sample 1, a success 0),
//! and differ only in how a window is scored.
//!
//! **Score.** Each window with at least `min_samples` samples gets a score `z`, in standard
//! errors of its mean, against the baseline (mean `μ`, per-sample sd `σ`, `N` samples behind
//! it; `1/N` = 0 for a baseline the host set):
//! - latency: `z = (mean ln - μ) / (σ · sqrt(1/n + 1/N))`, with `σ` at least
//!   `latency_sd_floor_ln`;
//! - errors: the signed root of the binomial deviance of the window's proportion against the
//!   baseline rate kept in `[error_rate_floor, 1 - error_rate_floor]`, with Pierce and
//!   Schafer's mean correction, over `sqrt(1 + n/N)`. It is near the plain binomial score
//!   `(q - p) / sqrt(p(1-p)/n)` when a window holds many errors, but lacks that score's long
//!   upper tail at one or two expected errors, which made false alarms (measured at the
//!   defaults, 100 executions per window: 4 in 1,000,000 windows at 1% errors with the plain
//!   score, none with this one; the price, 1% -> 5% is flagged after 5.2 windows on average
//!   instead of 3.5). A baseline below the floor cannot be seen to fall: only `S⁺` runs.
//!
//! **Statistic.** `S⁺ = max(0, S⁺ + z - k)`, `S⁻ = max(0, S⁻ - z - k)`; one above `h` is a
//! [`Shift`]. The CUSUM dates the change at the last window its statistic was zero, which also
//! takes in windows from before the change whose `z` happened to exceed `k` (a 2x slowdown
//! read as 1.67x on average); the detector keeps its last 16 windows and picks, among the
//! run's, the newest `m` that maximize `(Σz)² / m` (the likelihood-ratio split for a shift of
//! unknown size). Those windows give the shift's `windows` and its new level.
//!
//! **States** (see [`DetectorState`]):
//! - *learning*: the first `warmup` windows only build the baseline; no alarm is possible.
//! - *watching*: every window updates `S⁺` and `S⁻`. An unpinned detector also folds the
//!   window into its baseline (an average that forgets with a memory of `baseline_windows`
//!   windows) while both statistics are at most `h / 2`: a quiet series is followed, and a
//!   statistic building towards an alarm stops the following, so a slow creep is still caught.
//! - after an alarm, an **unpinned** detector takes the new regime as its baseline at once
//!   (the changed windows seed it) and is *learning* until it holds `warmup` windows: the
//!   alarm is reported once, and a second change within those windows is seen only after.
//! - a **pinned** detector keeps its baseline and stays in *alarm*, reporting the shift on
//!   every window, until the statistic returns to zero. It is held at `h` while in alarm, so
//!   that takes about `h / k` windows back at the baseline.
//!
//! Nothing here allocates: a detector is about 1 KiB of plain data.

use std::error::Error;
use std::fmt;

/// Tunes a [`LatencyDetector`] or an [`ErrorDetector`]; every field has a default measured
/// by `cargo run --release -p flujo-runtime --example detector` (`docs/operations.md`).
///
/// `threshold` (`h`) and `drift` (`k`) are in standard errors of one window's mean. A
/// sustained shift of `d` standard errors per window is flagged after about
/// `h / (d - k)` windows; with no shift the statistic drifts down by `k` per window.
///
/// # Examples
/// ```
/// use flujo_runtime::monitor::detect::DetectorConfig;
///
/// let mut cfg = DetectorConfig::default();
/// assert_eq!(cfg.validate(), Ok(()));
/// cfg.drift = -1.0;
/// assert_eq!(cfg.validate().unwrap_err().field(), "drift");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct DetectorConfig {
    /// Windows that build the first baseline (and the baseline after an unpinned alarm)
    /// before any alarm can be raised. In `1..=`[`MAX_WINDOWS`].
    pub warmup: u32,
    /// `h`: the CUSUM value, in standard errors, at which a shift is reported. Finite, in
    /// `(0, 1e6]`. Higher: fewer false alarms, later detection.
    pub threshold: f64,
    /// `k`: the reference value, in standard errors per window, subtracted from every
    /// window's `|z|`; shifts smaller than about `k` standard errors per window are not
    /// accumulated. Finite, in `[0, 1e3]`.
    pub drift: f64,
    /// A window with fewer samples (latency) or executions (errors) is skipped: it neither
    /// updates the statistic nor the baseline, and cannot raise or clear an alarm. At least 2.
    pub min_samples: u64,
    /// The baseline's memory in windows: once an unpinned baseline holds this many windows,
    /// each window folded in first scales the older ones by `1 - 1/baseline_windows`. At least
    /// `warmup`, at most [`MAX_WINDOWS`].
    pub baseline_windows: u32,
    /// The smallest per-sample standard deviation of `ln(latency_ns)` used to standardize
    /// (a step whose latency never varies would otherwise alarm on a 1 ns change). Finite,
    /// in `(0, 10]`.
    pub latency_sd_floor_ln: f64,
    /// The error rate is standardized with `sqrt(p(1-p))`, `p` the baseline rate kept in
    /// `[error_rate_floor, 1 - error_rate_floor]`, so a baseline without errors does not turn
    /// one error into an alarm. In `(0, 0.5]`.
    pub error_rate_floor: f64,
}

/// The largest `warmup` and `baseline_windows`.
pub const MAX_WINDOWS: u32 = 1_000_000;

impl Default for DetectorConfig {
    /// The measured defaults (`docs/operations.md`, the detector's table).
    fn default() -> Self {
        Self {
            warmup: 10,
            threshold: 8.0,
            drift: 1.0,
            min_samples: 20,
            baseline_windows: 200,
            latency_sd_floor_ln: 0.05,
            error_rate_floor: 0.01,
        }
    }
}

impl DetectorConfig {
    /// Checks every field's rule.
    ///
    /// # Errors
    /// The first field that breaks its rule, by its name in this struct (`threshold`); the
    /// runtime's configuration reports it under its own path.
    pub fn validate(&self) -> Result<(), DetectorConfigError> {
        check(
            (1..=MAX_WINDOWS).contains(&self.warmup),
            "warmup",
            format_args!("must be in 1..={MAX_WINDOWS}"),
            self.warmup,
        )?;
        check(
            self.threshold.is_finite() && self.threshold > 0.0 && self.threshold <= 1e6,
            "threshold",
            "must be finite, > 0 and <= 1e6",
            self.threshold,
        )?;
        check(
            self.drift.is_finite() && (0.0..=1e3).contains(&self.drift),
            "drift",
            "must be finite, >= 0 and <= 1e3",
            self.drift,
        )?;
        check(
            self.min_samples >= 2,
            "min_samples",
            "must be >= 2 (a spread needs two samples)",
            self.min_samples,
        )?;
        check(
            (self.warmup..=MAX_WINDOWS).contains(&self.baseline_windows),
            "baseline_windows",
            format_args!("must be >= warmup ({}) and <= {MAX_WINDOWS}", self.warmup),
            self.baseline_windows,
        )?;
        check(
            self.latency_sd_floor_ln.is_finite()
                && self.latency_sd_floor_ln > 0.0
                && self.latency_sd_floor_ln <= 10.0,
            "latency_sd_floor_ln",
            "must be finite, > 0 and <= 10",
            self.latency_sd_floor_ln,
        )?;
        check(
            self.error_rate_floor > 0.0 && self.error_rate_floor <= 0.5,
            "error_rate_floor",
            "must be > 0 and <= 0.5",
            self.error_rate_floor,
        )
    }
}

fn check(
    ok: bool,
    field: &'static str,
    rule: impl fmt::Display,
    value: impl fmt::Display,
) -> Result<(), DetectorConfigError> {
    if ok {
        Ok(())
    } else {
        Err(DetectorConfigError {
            field,
            rule: format!("{rule} (is {value})"),
        })
    }
}

/// A [`DetectorConfig`] field that breaks its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorConfigError {
    field: &'static str,
    rule: String,
}

impl DetectorConfigError {
    /// The field at fault, as named in [`DetectorConfig`] (`"threshold"`).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule it breaks, with the offending value.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl fmt::Display for DetectorConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid detector config: {}: {}", self.field, self.rule)
    }
}

impl Error for DetectorConfigError {}

/// One closed window of sampled step latencies, as the sums of `ln(latency_ns)`.
///
/// # Examples
/// ```
/// use flujo_runtime::monitor::detect::LatencyWindow;
///
/// let mut w = LatencyWindow::new();
/// for ns in [1_000, 2_000, 4_000] {
///     w.record(ns);
/// }
/// assert_eq!(w.n, 3);
/// assert!((w.geometric_mean_ns() - 2_000.0).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencyWindow {
    /// Samples in the window.
    pub n: u64,
    /// `Σ ln(latency_ns)` over the samples.
    pub sum_ln: f64,
    /// `Σ ln(latency_ns)²` over the samples.
    pub sum_ln2: f64,
}

impl LatencyWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            n: 0,
            sum_ln: 0.0,
            sum_ln2: 0.0,
        }
    }

    /// Adds one sample; 0 ns counts as 1 ns (its logarithm is 0).
    pub fn record(&mut self, latency_ns: u64) {
        let x = (latency_ns.max(1) as f64).ln();
        self.n = self.n.saturating_add(1);
        self.sum_ln += x;
        self.sum_ln2 += x * x;
    }

    /// `exp(mean ln)`: the window's geometric mean latency in ns (NaN when empty).
    pub fn geometric_mean_ns(&self) -> f64 {
        (self.sum_ln / self.n as f64).exp()
    }
}

/// One closed window of a step's executions and how many of them failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorWindow {
    /// Executions that finished in the window.
    pub executions: u64,
    /// Those of them that failed; at most `executions` (a window with more is skipped).
    pub errors: u64,
}

/// A latency baseline: the distribution of `ln(latency_ns)` the detector compares against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyBaseline {
    /// Mean of `ln(latency_ns)`; `exp` of it is the baseline's geometric mean in ns.
    pub mean_ln: f64,
    /// Per-sample standard deviation of `ln(latency_ns)` (0.5 is a spread of about ×1.65).
    pub sd_ln: f64,
}

impl LatencyBaseline {
    /// The baseline's geometric mean latency in ns, `exp(mean_ln)`.
    pub fn geometric_mean_ns(&self) -> f64 {
        self.mean_ln.exp()
    }
}

/// An error-rate baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorBaseline {
    /// Failed executions per execution, in `[0, 1]`.
    pub rate: f64,
}

/// Which way a series moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Slower, or more errors: a regression.
    Up,
    /// Faster, or fewer errors.
    Down,
}

/// A detected change: what [`LatencyDetector::observe`] and [`ErrorDetector::observe`]
/// report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    /// Which way the series moved.
    pub direction: Direction,
    /// The new level over the baseline: latency `exp(mean_ln of the changed windows -
    /// baseline mean_ln)` (the ratio of geometric means); errors `new rate / baseline rate`
    /// (`f64::INFINITY` from a baseline of 0).
    pub ratio: f64,
    /// The baseline level: latency its geometric mean in ns, errors its rate.
    pub baseline: f64,
    /// The new level, over the windows since the change began, in the same unit.
    pub level: f64,
    /// The CUSUM statistic (`S⁺` or `S⁻`), in standard errors: above the threshold on the
    /// window that raises the alarm; on the later windows of a pinned detector's standing
    /// alarm it is held at most at the threshold.
    pub statistic: f64,
    /// Windows since the change began, this one included (the CUSUM's estimate: the windows
    /// since the statistic last left zero; skipped windows not counted).
    pub windows: u32,
}

/// What a detector is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DetectorState {
    /// Building a baseline: `windows` of `warmup` learned; no alarm until done.
    Learning {
        /// Windows learned so far.
        windows: u32,
    },
    /// Comparing each window with the baseline.
    Watching {
        /// `S⁺`, in standard errors.
        up: f64,
        /// `S⁻`, in standard errors.
        down: f64,
    },
    /// A pinned detector's standing alarm: the latest [`Shift`] reported.
    Alarm(Shift),
}

/// Sums of one stretch of samples, decayed as the baseline forgets: samples `n`, `Σx`,
/// `Σx²`, and the windows behind them. Invariant: all finite, `n >= 0`, `windows >= 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sums {
    n: f64,
    sum: f64,
    sum2: f64,
    windows: f64,
}

impl Sums {
    fn add(&mut self, w: &Sums) {
        self.n += w.n;
        self.sum += w.sum;
        self.sum2 += w.sum2;
        self.windows += w.windows;
    }

    fn scale(&mut self, f: f64) {
        debug_assert!((0.0..=1.0).contains(&f));
        self.n *= f;
        self.sum *= f;
        self.sum2 *= f;
        self.windows *= f;
    }

    fn mean(&self) -> f64 {
        self.sum / self.n
    }

    /// Per-sample variance (divided by `n`: the baseline's samples are many).
    fn var(&self) -> f64 {
        let m = self.mean();
        (self.sum2 / self.n - m * m).max(0.0)
    }
}

/// The series a [`Core`] watches: how a per-sample sd is derived and how a level reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Latency,
    Errors,
}

/// The baseline the statistic compares against.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Base {
    mean: f64,
    /// The per-sample sd as learned (before the floor).
    sd: f64,
    /// `1/N`: the baseline mean's own uncertainty per sample (0 for a host-set baseline).
    inv_n: f64,
}

/// One CUSUM side: its statistic and the samples since it last left zero.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Side {
    s: f64,
    run: Sums,
}

impl Side {
    fn update(&mut self, inc: f64, w: &Sums) {
        self.s = (self.s + inc).max(0.0);
        if self.s > 0.0 {
            self.run.add(w);
        } else {
            self.run = Sums::default();
        }
    }
}

/// Windows kept to place the start of a change within a CUSUM run.
const RECENT: usize = 16;

/// The last [`RECENT`] watched windows and their `z`, newest at `head - 1` (mod `RECENT`).
/// Invariant: `len <= RECENT`, `head < RECENT`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Recent {
    windows: [(Sums, f64); RECENT],
    head: usize,
    len: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            windows: [(Sums::default(), 0.0); RECENT],
            head: 0,
            len: 0,
        }
    }
}

impl Recent {
    fn push(&mut self, w: Sums, z: f64) {
        self.windows[self.head] = (w, z);
        self.head = (self.head + 1) % RECENT;
        self.len = (self.len + 1).min(RECENT);
        debug_assert!(self.head < RECENT && self.len <= RECENT);
    }

    /// The start of a change among the last `run` windows, which must all be kept: the `m`
    /// newest windows that maximize `(Σ s·z)² / m` with `Σ s·z > 0` (`s` = +1 up, -1 down),
    /// the likelihood-ratio estimate for a shift of unknown size. The CUSUM's own estimate
    /// (the whole run) also counts windows from before the change whose `z` happened to
    /// exceed `k`, which dilutes a large shift. Returns those windows' sums.
    fn onset(&self, run: usize, sign: f64) -> Sums {
        debug_assert!(run >= 1 && run <= self.len);
        let mut acc = Sums::default();
        let mut best = Sums::default();
        let (mut sz, mut best_score) = (0.0, f64::NEG_INFINITY);
        for back in 1..=run {
            let (w, z) = self.windows[(self.head + RECENT - back) % RECENT];
            acc.add(&w);
            sz += sign * z;
            let score = if sz > 0.0 { sz * sz / acc.windows } else { 0.0 };
            if score > best_score {
                best_score = score;
                best = acc;
            }
        }
        best
    }
}

/// The signed root of the binomial deviance of a window's error proportion `q` (of `n`
/// executions) against the rate `p` in `(0, 1)`, with Pierce and Schafer's correction of its
/// mean ("Residuals in generalized linear models", JASA 81, 1986): close to a standard normal
/// score even at one expected error per window, where the plain `(q - p) / sqrt(p(1-p)/n)`
/// has a long upper tail (at `np` = 1, four errors are a 1-in-50 window but score 3.0; here
/// they score 2.4). The CUSUM's false-alarm rate rests on that tail.
fn binomial_score(q: f64, p: f64, n: f64) -> f64 {
    debug_assert!((0.0..=1.0).contains(&q) && p > 0.0 && p < 1.0 && n > 0.0);
    // `x ln(x / y)`, 0 at `x` = 0.
    let xlx = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let deviance = 2.0 * n * (xlx(q, p) + xlx(1.0 - q, 1.0 - p));
    let root = deviance.max(0.0).sqrt();
    let signed = if q < p { -root } else { root };
    signed + (1.0 - 2.0 * p) / (6.0 * (n * p * (1.0 - p)).sqrt())
}

/// The state shared by both detectors.
#[derive(Clone, Debug, PartialEq)]
struct Core {
    cfg: DetectorConfig,
    kind: Kind,
    /// What the baseline has learned (decayed); empty until the first window.
    learned: Sums,
    /// The baseline in force: `None` while the first `warmup` windows are learned.
    base: Option<Base>,
    pinned: bool,
    /// Windows still to learn before watching (0 when watching).
    learning_left: u32,
    up: Side,
    down: Side,
    recent: Recent,
    /// A pinned detector's standing alarm.
    alarm: Option<Shift>,
    observed: u64,
    skipped: u64,
}

impl Core {
    fn new(cfg: DetectorConfig, kind: Kind) -> Result<Self, DetectorConfigError> {
        cfg.validate()?;
        Ok(Self {
            learning_left: cfg.warmup,
            cfg,
            kind,
            learned: Sums::default(),
            base: None,
            pinned: false,
            up: Side::default(),
            down: Side::default(),
            recent: Recent::default(),
            alarm: None,
            observed: 0,
            skipped: 0,
        })
    }

    fn observe(&mut self, w: Option<Sums>) -> Option<Shift> {
        let Some(w) = w.filter(|w| w.n >= self.cfg.min_samples as f64) else {
            self.skipped = self.skipped.saturating_add(1);
            return None;
        };
        self.observed = self.observed.saturating_add(1);
        if self.learning_left > 0 {
            self.learn(&w);
            return None;
        }
        let base = self.base.expect("watching has a baseline");
        let (z, up, down) = self.z(&base, &w);
        self.recent.push(w, z);
        let k = self.cfg.drift;
        self.up
            .update(if up { z - k } else { f64::NEG_INFINITY }, &w);
        self.down
            .update(if down { -z - k } else { f64::NEG_INFINITY }, &w);
        let h = self.cfg.threshold;
        if let Some(dir) = self.alarm.map(|a| a.direction) {
            return self.hold(dir, &base);
        }
        let dir = if self.up.s > h {
            Direction::Up
        } else if self.down.s > h {
            Direction::Down
        } else {
            if !self.pinned && self.up.s <= h / 2.0 && self.down.s <= h / 2.0 {
                self.follow(&w);
            }
            return None;
        };
        let shift = self.shift(dir, &base);
        if self.pinned {
            self.alarm = Some(shift);
            self.side(dir).s = h;
        } else {
            self.relearn(dir);
        }
        Some(shift)
    }

    /// A pinned alarm: held at `h` while the change lasts, cleared when it returns to zero.
    fn hold(&mut self, dir: Direction, base: &Base) -> Option<Shift> {
        let h = self.cfg.threshold;
        if self.side(dir).s == 0.0 {
            self.alarm = None;
            return None;
        }
        let mut shift = self.shift(dir, base);
        shift.statistic = shift.statistic.min(h);
        self.side(dir).s = shift.statistic;
        self.alarm = Some(shift);
        Some(shift)
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }

    fn learn(&mut self, w: &Sums) {
        self.fold(w);
        self.learning_left -= 1;
        self.base = Some(self.estimate());
    }

    /// An unpinned baseline follows a quiet series.
    fn follow(&mut self, w: &Sums) {
        self.fold(w);
        self.base = Some(self.estimate());
    }

    fn fold(&mut self, w: &Sums) {
        let memory = f64::from(self.cfg.baseline_windows);
        if self.learned.windows + 1.0 > memory {
            self.learned.scale((memory - 1.0) / self.learned.windows);
        }
        self.learned.add(w);
    }

    fn estimate(&self) -> Base {
        Base {
            mean: self.learned.mean(),
            sd: self.learned.var().sqrt(),
            inv_n: 1.0 / self.learned.n,
        }
    }

    /// The new regime (the windows since the change began) becomes the baseline.
    fn relearn(&mut self, dir: Direction) {
        let changed = self.changed(dir);
        self.learned = changed;
        self.base = Some(self.estimate());
        let have = changed.windows.min(f64::from(self.cfg.warmup)) as u32;
        self.learning_left = self.cfg.warmup - have;
        self.up = Side::default();
        self.down = Side::default();
        self.recent = Recent::default();
    }

    /// The window's standardized shift, and whether each side may take it (`(z, up, down)`).
    fn z(&self, base: &Base, w: &Sums) -> (f64, bool, bool) {
        match self.kind {
            Kind::Latency => {
                let sd = base.sd.max(self.cfg.latency_sd_floor_ln);
                let se = sd * (1.0 / w.n + base.inv_n).sqrt();
                ((w.mean() - base.mean) / se, true, true)
            }
            Kind::Errors => {
                let f = self.cfg.error_rate_floor;
                let p = base.mean.clamp(f, 1.0 - f);
                // The baseline's own uncertainty widens the spread as for latency.
                let z = binomial_score(w.mean(), p, w.n) / (1.0 + w.n * base.inv_n).sqrt();
                // A rate cannot be seen to fall below a floored baseline (or rise above one
                // floored from the top): that side stays at zero.
                (z, base.mean <= 1.0 - f, base.mean >= f)
            }
        }
    }

    /// The windows since the change began: the run's last windows that
    /// [`Recent::onset`] picks, or the whole run when it is longer than [`RECENT`].
    fn changed(&mut self, dir: Direction) -> Sums {
        let run = self.side(dir).run;
        let sign = match dir {
            Direction::Up => 1.0,
            Direction::Down => -1.0,
        };
        // `run.windows` counts whole windows (nothing decays a run).
        let windows = run.windows as usize;
        if windows <= self.recent.len {
            self.recent.onset(windows, sign)
        } else {
            run
        }
    }

    fn shift(&mut self, direction: Direction, base: &Base) -> Shift {
        let statistic = self.side(direction).s;
        let changed = self.changed(direction);
        let level = changed.mean();
        let (baseline, level, ratio) = match self.kind {
            Kind::Latency => (base.mean.exp(), level.exp(), (level - base.mean).exp()),
            Kind::Errors => (base.mean, level, level / base.mean),
        };
        Shift {
            direction,
            ratio,
            baseline,
            level,
            statistic,
            windows: changed.windows as u32,
        }
    }

    fn state(&self) -> DetectorState {
        if let Some(shift) = self.alarm {
            DetectorState::Alarm(shift)
        } else if self.learning_left > 0 {
            DetectorState::Learning {
                windows: self.cfg.warmup - self.learning_left,
            }
        } else {
            DetectorState::Watching {
                up: self.up.s,
                down: self.down.s,
            }
        }
    }

    fn pin(&mut self) -> Option<Base> {
        let base = self.base?;
        self.pinned = true;
        self.learning_left = 0;
        Some(base)
    }

    fn unpin(&mut self) {
        if !self.pinned {
            return;
        }
        self.pinned = false;
        if self.learned.n == 0.0 {
            self.reset();
        } else if let Some(shift) = self.alarm.take() {
            self.relearn(shift.direction);
        }
    }

    fn set(&mut self, mean: f64, sd: f64) {
        self.base = Some(Base {
            mean,
            sd,
            inv_n: 0.0,
        });
        // The host's baseline has no samples behind it: `unpin` learns afresh.
        self.learned = Sums::default();
        self.pinned = true;
        self.learning_left = 0;
        self.up = Side::default();
        self.down = Side::default();
        self.recent = Recent::default();
        self.alarm = None;
    }

    fn reset(&mut self) {
        *self = Self {
            learning_left: self.cfg.warmup,
            learned: Sums::default(),
            base: None,
            pinned: false,
            up: Side::default(),
            down: Side::default(),
            recent: Recent::default(),
            alarm: None,
            ..self.clone()
        };
    }
}

/// A change-point detector for one step's latency, fed one [`LatencyWindow`] per closed
/// window (the module docs give the algorithm).
///
/// # Examples
/// ```
/// use flujo_runtime::monitor::detect::{Direction, DetectorConfig, LatencyDetector, LatencyWindow};
///
/// // Every sample of a window at `ns`, with a spread: ns·(0.7, 1.0, 1.4) in turn.
/// fn window(ns: f64) -> LatencyWindow {
///     let mut w = LatencyWindow::new();
///     for i in 0..99 {
///         w.record((ns * [0.7, 1.0, 1.4][i % 3]) as u64);
///     }
///     w
/// }
///
/// let mut d = LatencyDetector::new(DetectorConfig::default()).unwrap();
/// for _ in 0..50 {
///     assert_eq!(d.observe(&window(10_000.0)), None);
/// }
/// let shift = d.observe(&window(20_000.0)).expect("a 2x slowdown");
/// assert_eq!(shift.direction, Direction::Up);
/// assert!((shift.ratio - 2.0).abs() < 0.01);
/// assert_eq!(shift.windows, 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyDetector {
    core: Core,
}

impl LatencyDetector {
    /// A detector that learns its baseline from its first `cfg.warmup` windows.
    ///
    /// # Errors
    /// `cfg`'s [`validate`](DetectorConfig::validate) error.
    pub fn new(cfg: DetectorConfig) -> Result<Self, DetectorConfigError> {
        Core::new(cfg, Kind::Latency).map(|core| Self { core })
    }

    /// Takes one closed window. A window with fewer than `min_samples` samples, or with a
    /// sum that is not finite, is skipped (counted in [`skipped`](Self::skipped), nothing
    /// else changes). `Some` reports a shift: on the window that raises it, and for a pinned
    /// detector on every window until the statistic returns to zero.
    pub fn observe(&mut self, window: &LatencyWindow) -> Option<Shift> {
        let ok = window.sum_ln.is_finite() && window.sum_ln2.is_finite();
        self.core.observe(ok.then_some(Sums {
            n: window.n as f64,
            sum: window.sum_ln,
            sum2: window.sum_ln2,
            windows: 1.0,
        }))
    }

    /// The baseline in force: `None` before the first window is learned. While
    /// [learning](DetectorState::Learning) it is the estimate so far.
    pub fn baseline(&self) -> Option<LatencyBaseline> {
        self.core.base.map(|b| LatencyBaseline {
            mean_ln: b.mean,
            sd_ln: b.sd,
        })
    }

    /// Freezes the current baseline (even one still learning) and returns it; `None` and no
    /// change before the first window is learned. A pinned detector no longer follows the
    /// series, and after an alarm keeps its baseline and stays in alarm until the series
    /// returns to it.
    pub fn pin(&mut self) -> Option<LatencyBaseline> {
        self.core.pin()?;
        self.baseline()
    }

    /// Sets the baseline and pins it, clearing the statistic and any standing alarm.
    ///
    /// # Errors
    /// Gives `baseline` back if `mean_ln` is not finite or `sd_ln` is not finite and >= 0.
    pub fn set_baseline(&mut self, baseline: LatencyBaseline) -> Result<(), LatencyBaseline> {
        let ok =
            baseline.mean_ln.is_finite() && baseline.sd_ln.is_finite() && baseline.sd_ln >= 0.0;
        if !ok {
            return Err(baseline);
        }
        self.core.set(baseline.mean_ln, baseline.sd_ln);
        Ok(())
    }

    /// Lets the baseline follow the series again. In alarm, the new regime becomes the
    /// baseline (as after an unpinned alarm); after [`set_baseline`](Self::set_baseline),
    /// which has no windows behind it, the detector learns afresh.
    pub fn unpin(&mut self) {
        self.core.unpin();
    }

    /// Whether the baseline is pinned.
    pub fn is_pinned(&self) -> bool {
        self.core.pinned
    }

    /// Learning, watching (with both statistics) or in alarm.
    pub fn state(&self) -> DetectorState {
        self.core.state()
    }

    /// Windows taken (learned or compared), exactly.
    pub fn observed(&self) -> u64 {
        self.core.observed
    }

    /// Windows skipped (too few samples, or not finite), exactly.
    pub fn skipped(&self) -> u64 {
        self.core.skipped
    }

    /// Forgets the baseline and the statistic, unpins, and learns afresh (the counters stay).
    pub fn reset(&mut self) {
        self.core.reset();
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.core.cfg
    }
}

/// A change-point detector for one step's error rate, fed one [`ErrorWindow`] per closed
/// window (the module docs give the algorithm).
///
/// # Examples
/// ```
/// use flujo_runtime::monitor::detect::{DetectorConfig, Direction, ErrorDetector, ErrorWindow};
///
/// let mut d = ErrorDetector::new(DetectorConfig::default()).unwrap();
/// for i in 0..50 {
///     // 1% errors.
///     let w = ErrorWindow { executions: 100, errors: u64::from(i % 2 == 0) * 2 };
///     assert_eq!(d.observe(&w), None);
/// }
/// let burst = ErrorWindow { executions: 100, errors: 20 };
/// let shift = d.observe(&burst).expect("20% errors");
/// assert_eq!(shift.direction, Direction::Up);
/// assert!((shift.level - 0.2).abs() < 1e-9);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorDetector {
    core: Core,
}

impl ErrorDetector {
    /// A detector that learns its baseline from its first `cfg.warmup` windows.
    ///
    /// # Errors
    /// `cfg`'s [`validate`](DetectorConfig::validate) error.
    pub fn new(cfg: DetectorConfig) -> Result<Self, DetectorConfigError> {
        Core::new(cfg, Kind::Errors).map(|core| Self { core })
    }

    /// Takes one closed window. A window with fewer than `min_samples` executions, or with
    /// more errors than executions, is skipped (counted in [`skipped`](Self::skipped),
    /// nothing else changes). `Some` reports a shift: on the window that raises it, and for a
    /// pinned detector on every window until the statistic returns to zero.
    pub fn observe(&mut self, window: &ErrorWindow) -> Option<Shift> {
        let ok = window.errors <= window.executions;
        let errors = window.errors as f64;
        self.core.observe(ok.then_some(Sums {
            n: window.executions as f64,
            sum: errors,
            sum2: errors,
            windows: 1.0,
        }))
    }

    /// The baseline in force: `None` before the first window is learned. While
    /// [learning](DetectorState::Learning) it is the estimate so far.
    pub fn baseline(&self) -> Option<ErrorBaseline> {
        self.core.base.map(|b| ErrorBaseline { rate: b.mean })
    }

    /// Freezes the current baseline (even one still learning) and returns it; `None` and no
    /// change before the first window is learned. A pinned detector no longer follows the
    /// series, and after an alarm keeps its baseline and stays in alarm until the series
    /// returns to it.
    pub fn pin(&mut self) -> Option<ErrorBaseline> {
        self.core.pin()?;
        self.baseline()
    }

    /// Sets the baseline and pins it, clearing the statistic and any standing alarm.
    ///
    /// # Errors
    /// Gives `baseline` back if `rate` is not in `[0, 1]`.
    pub fn set_baseline(&mut self, baseline: ErrorBaseline) -> Result<(), ErrorBaseline> {
        if !(0.0..=1.0).contains(&baseline.rate) {
            return Err(baseline);
        }
        let p = baseline.rate;
        self.core.set(p, (p * (1.0 - p)).sqrt());
        Ok(())
    }

    /// Lets the baseline follow the series again. In alarm, the new regime becomes the
    /// baseline (as after an unpinned alarm); after [`set_baseline`](Self::set_baseline),
    /// which has no windows behind it, the detector learns afresh.
    pub fn unpin(&mut self) {
        self.core.unpin();
    }

    /// Whether the baseline is pinned.
    pub fn is_pinned(&self) -> bool {
        self.core.pinned
    }

    /// Learning, watching (with both statistics) or in alarm.
    pub fn state(&self) -> DetectorState {
        self.core.state()
    }

    /// Windows taken (learned or compared), exactly.
    pub fn observed(&self) -> u64 {
        self.core.observed
    }

    /// Windows skipped (too few executions, or more errors than executions), exactly.
    pub fn skipped(&self) -> u64 {
        self.core.skipped
    }

    /// Forgets the baseline and the statistic, unpins, and learns afresh (the counters stay).
    pub fn reset(&mut self) {
        self.core.reset();
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.core.cfg
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
