//! Detection delay and false alarms of the monitor's change-point detector
//! (`flujo_runtime::monitor::detect`), on seeded synthetic series.
//!
//! `cargo run --release -p flujo-runtime --example detector [-- FLAGS]` prints one table:
//!
//! - latency: windows of 100 samples, log-normal around 50 µs with sigma 0.5 (of `ln ns`).
//!   A shift trial learns (`warmup`), runs `STEADY` more steady windows, then multiplies every
//!   latency by the shift until the detector reports it (at most `CAP` windows); the delay is
//!   the shifted windows taken, the alarm's included (1 = flagged by the first changed window).
//!   A false-alarm trial runs 10,000 steady windows after warm-up and counts alarms.
//! - errors: windows of 100 executions, each failing with the rate shown (binomial), the same
//!   two kinds of trial.
//!
//! Flags: `--trials N` (shift trials per row, default 1000), `--steady-trials N` (false-alarm
//! trials of 10,000 windows per row, default 50), `--threshold H`, `--drift K`,
//! `--warmup W`, `--error-floor F` (the `DetectorConfig` fields; defaults are the crate's).
//! Every trial has its own seed (its index), so a run is reproducible.
use std::time::Instant;

use flujo_runtime::monitor::detect::{
    DetectorConfig, Direction, ErrorDetector, ErrorWindow, LatencyDetector, LatencyWindow, Shift,
};

/// Windows after warm-up before a shift starts.
const STEADY: u32 = 40;
/// Shifted windows watched before a trial counts as missed.
const CAP: u32 = 100;
/// Windows of a false-alarm trial, after warm-up.
const LONG: u32 = 10_000;
/// Samples (latency) or executions (errors) per window.
const N: u32 = 100;
/// Median latency of the steady series, in ns.
const MEDIAN_NS: f64 = 50_000.0;
/// sd of `ln ns`.
const SIGMA: f64 = 0.5;

/// xoshiro256** (Blackman and Vigna), seeded through splitmix64, with Box-Muller normals.
struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    fn latency_window(&mut self, factor: f64) -> LatencyWindow {
        let mu = (MEDIAN_NS * factor).ln();
        let mut w = LatencyWindow::new();
        for _ in 0..N {
            w.record((mu + SIGMA * self.normal()).exp().round() as u64);
        }
        w
    }

    fn error_window(&mut self, rate: f64) -> ErrorWindow {
        let errors = (0..N).filter(|_| self.uniform() < rate).count() as u64;
        ErrorWindow {
            executions: u64::from(N),
            errors,
        }
    }
}

/// One series under test: a detector and a window source.
trait Series {
    fn new(cfg: &DetectorConfig) -> Self;
    /// Feeds one window at `level` (a latency factor or an error rate).
    fn step(&mut self, rng: &mut Rng, level: f64) -> Option<Shift>;
}

impl Series for LatencyDetector {
    fn new(cfg: &DetectorConfig) -> Self {
        LatencyDetector::new(cfg.clone()).expect("valid config")
    }
    fn step(&mut self, rng: &mut Rng, level: f64) -> Option<Shift> {
        self.observe(&rng.latency_window(level))
    }
}

impl Series for ErrorDetector {
    fn new(cfg: &DetectorConfig) -> Self {
        ErrorDetector::new(cfg.clone()).expect("valid config")
    }
    fn step(&mut self, rng: &mut Rng, level: f64) -> Option<Shift> {
        self.observe(&rng.error_window(level))
    }
}

#[derive(Default)]
struct Delays {
    delays: Vec<u32>,
    missed: u32,
    wrong_way: u32,
    early: u32,
    ratio_sum: f64,
}

/// `trials` shift trials from `before` to `after`.
fn delays<S: Series>(cfg: &DetectorConfig, trials: u32, before: f64, after: f64) -> Delays {
    let want = if after > before {
        Direction::Up
    } else {
        Direction::Down
    };
    let mut out = Delays::default();
    for trial in 0..trials {
        let mut rng = Rng::new(u64::from(trial));
        let mut d = S::new(cfg);
        let early = (0..cfg.warmup + STEADY)
            .filter(|_| d.step(&mut rng, before).is_some())
            .count();
        out.early += early as u32;
        let hit = (1..=CAP).find_map(|i| d.step(&mut rng, after).map(|s| (i, s)));
        match hit {
            Some((i, s)) if s.direction == want => {
                out.delays.push(i);
                out.ratio_sum += s.ratio;
            }
            Some(_) => out.wrong_way += 1,
            None => out.missed += 1,
        }
    }
    out
}

/// Alarms in `trials` runs of [`LONG`] steady windows at `level`, after warm-up.
fn false_alarms<S: Series>(cfg: &DetectorConfig, trials: u32, level: f64) -> (u64, u64) {
    let mut alarms = 0;
    for trial in 0..trials {
        let mut rng = Rng::new(1_000_000 + u64::from(trial));
        let mut d = S::new(cfg);
        for _ in 0..cfg.warmup {
            assert!(d.step(&mut rng, level).is_none(), "an alarm while learning");
        }
        alarms += (0..LONG)
            .filter(|_| d.step(&mut rng, level).is_some())
            .count() as u64;
    }
    (alarms, u64::from(trials) * u64::from(LONG))
}

fn delay_row(name: &str, r: &Delays, ratio_unit: &str) {
    let mut d = r.delays.clone();
    d.sort_unstable();
    let (mean, p95, max) = if d.is_empty() {
        (f64::NAN, 0, 0)
    } else {
        let mean = d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64;
        (mean, d[(d.len() * 95).div_ceil(100) - 1], d[d.len() - 1])
    };
    let ratio = r.ratio_sum / d.len().max(1) as f64;
    println!(
        "| {name} | {mean:.2} | {p95} | {max} | {} | {} | {} | {ratio:.3}{ratio_unit} |",
        r.missed, r.wrong_way, r.early
    );
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad value for {flag}: {value}"))
}

fn main() {
    let mut cfg = DetectorConfig::default();
    let mut trials = 1000u32;
    let mut steady_trials = 50u32;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            panic!("flags take a value: {args:?}");
        };
        match flag.as_str() {
            "--trials" => trials = parse(flag, value),
            "--steady-trials" => steady_trials = parse(flag, value),
            "--threshold" => cfg.threshold = parse(flag, value),
            "--drift" => cfg.drift = parse(flag, value),
            "--warmup" => cfg.warmup = parse(flag, value),
            "--error-floor" => cfg.error_rate_floor = parse(flag, value),
            _ => panic!("unknown flag {flag} (see the example's header)"),
        }
    }
    cfg.validate().expect("valid config");
    let start = Instant::now();
    println!(
        "detector: threshold {} drift {} warmup {} baseline_windows {} min_samples {} \
         error_rate_floor {}; {N} samples per window; {trials} shift trials per row, \
         {steady_trials} x {LONG} steady windows per false-alarm row",
        cfg.threshold,
        cfg.drift,
        cfg.warmup,
        cfg.baseline_windows,
        cfg.min_samples,
        cfg.error_rate_floor
    );
    println!();
    println!(
        "| shift | delay mean (windows) | p95 | max | missed (> {CAP}) | wrong way | alarms before | mean reported ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for factor in [1.1, 1.2, 1.5, 2.0, 1.0 / 1.5] {
        let r = delays::<LatencyDetector>(&cfg, trials, 1.0, factor);
        delay_row(&format!("latency x{factor:.3}"), &r, "x");
    }
    for (before, after) in [(0.01, 0.02), (0.01, 0.05), (0.0, 0.05), (0.05, 0.01)] {
        let r = delays::<ErrorDetector>(&cfg, trials, before, after);
        delay_row(&format!("errors {before} -> {after}"), &r, "x");
    }
    println!();
    println!("| steady series | alarms | windows | alarms per 10,000 windows |");
    println!("|---|---|---|---|");
    let (a, w) = false_alarms::<LatencyDetector>(&cfg, steady_trials, 1.0);
    println!(
        "| latency, sigma {SIGMA} | {a} | {w} | {:.3} |",
        a as f64 * 1e4 / w as f64
    );
    for rate in [0.0, 0.001, 0.01, 0.05] {
        let (a, w) = false_alarms::<ErrorDetector>(&cfg, steady_trials, rate);
        println!(
            "| errors {rate} | {a} | {w} | {:.3} |",
            a as f64 * 1e4 / w as f64
        );
    }
    println!();
    println!("({:.1} s)", start.elapsed().as_secs_f64());
}
