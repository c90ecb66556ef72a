//! Tests of the change-point detector on seeded synthetic series: windows of 100 samples,
//! log-normal latency with sigma 0.5 (of `ln ns`) around 50 µs, binomial errors. Each test
//! names what it checks; the figures (delays, false-alarm rates) are the example's
//! (`examples/detector.rs`), these only assert the promises.

use super::*;

const N: u64 = 100;
const MEDIAN_NS: f64 = 50_000.0;
const SIGMA: f64 = 0.5;

/// splitmix64 (Steele, Lea and Flood), with Box-Muller normals: enough for test series.
struct Rng {
    x: u64,
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Self {
            x: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.x = self.x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    /// `n` latencies of median `MEDIAN_NS * factor`.
    fn latency_n(&mut self, factor: f64, n: u64) -> LatencyWindow {
        let mu = (MEDIAN_NS * factor).ln();
        let mut w = LatencyWindow::new();
        for _ in 0..n {
            w.record((mu + SIGMA * self.normal()).exp().round() as u64);
        }
        w
    }

    fn latency(&mut self, factor: f64) -> LatencyWindow {
        self.latency_n(factor, N)
    }

    fn errors(&mut self, rate: f64) -> ErrorWindow {
        ErrorWindow {
            executions: N,
            errors: (0..N).filter(|_| self.uniform() < rate).count() as u64,
        }
    }
}

/// `exp(∓4 se)` of a one-window ratio: se = 0.5 · sqrt(1/100 + 1/3000) ≈ 0.051.
const LN_4SE_DOWN: f64 = 0.815;
const LN_4SE_UP: f64 = 1.227;

fn cfg() -> DetectorConfig {
    DetectorConfig::default()
}

fn latency_detector() -> LatencyDetector {
    LatencyDetector::new(cfg()).expect("default config")
}

fn error_detector() -> ErrorDetector {
    ErrorDetector::new(cfg()).expect("default config")
}

/// Learns and then watches `steady` windows at `factor`, asserting no alarm.
fn settle(d: &mut LatencyDetector, rng: &mut Rng, factor: f64, steady: u32) {
    for i in 0..cfg().warmup + steady {
        assert_eq!(d.observe(&rng.latency(factor)), None, "steady window {i}");
    }
    assert!(matches!(d.state(), DetectorState::Watching { .. }));
}

#[test]
fn default_config_is_valid_and_a_detector_is_small() {
    assert_eq!(cfg().validate(), Ok(()));
    // The module docs say "about 1 KiB"; the monitor keeps two per step.
    let size = std::mem::size_of::<LatencyDetector>();
    assert!(size <= 1024, "{size} bytes");
    assert_eq!(size, std::mem::size_of::<ErrorDetector>());
}

#[test]
fn bad_config_names_its_field() {
    type Case = (fn(&mut DetectorConfig), &'static str);
    let cases: [Case; 14] = [
        (|c| c.warmup = 0, "warmup"),
        (|c| c.warmup = MAX_WINDOWS + 1, "warmup"),
        (|c| c.threshold = 0.0, "threshold"),
        (|c| c.threshold = f64::NAN, "threshold"),
        (|c| c.threshold = f64::INFINITY, "threshold"),
        (|c| c.drift = -0.1, "drift"),
        (|c| c.drift = f64::NAN, "drift"),
        (|c| c.min_samples = 1, "min_samples"),
        (|c| c.baseline_windows = c.warmup - 1, "baseline_windows"),
        (|c| c.baseline_windows = MAX_WINDOWS + 1, "baseline_windows"),
        (|c| c.latency_sd_floor_ln = 0.0, "latency_sd_floor_ln"),
        (|c| c.latency_sd_floor_ln = f64::NAN, "latency_sd_floor_ln"),
        (|c| c.error_rate_floor = 0.0, "error_rate_floor"),
        (|c| c.error_rate_floor = 0.6, "error_rate_floor"),
    ];
    for (mutate, field) in cases {
        let mut c = cfg();
        mutate(&mut c);
        let err = c.validate().unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.to_string().contains(field), "{err}");
        assert!(
            err.rule().contains("(is "),
            "the rule shows the value: {err}"
        );
        assert_eq!(LatencyDetector::new(c.clone()).unwrap_err(), err);
        assert_eq!(ErrorDetector::new(c).unwrap_err(), err);
    }
    // The edges that are allowed.
    let mut c = cfg();
    c.drift = 0.0;
    c.warmup = 1;
    c.baseline_windows = 1;
    c.min_samples = 2;
    c.error_rate_floor = 0.5;
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn latency_2x_is_detected_within_3_windows_every_seed() {
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut d = latency_detector();
        settle(&mut d, &mut rng, 1.0, 20);
        let before = d.baseline().unwrap();
        let hit = (1..=3).find_map(|i| d.observe(&rng.latency(2.0)).map(|s| (i, s)));
        let (i, shift) = hit.unwrap_or_else(|| panic!("seed {seed}: 2x not flagged in 3"));
        assert_eq!(shift.direction, Direction::Up, "seed {seed}");
        // Within 4 standard errors of ln 2 (one window of 100 against 3,000 samples).
        assert!(
            (2.0 * LN_4SE_DOWN..2.0 * LN_4SE_UP).contains(&shift.ratio),
            "seed {seed}: {shift:?}"
        );
        assert!(shift.windows as usize <= i, "seed {seed}: {shift:?} at {i}");
        assert!(shift.statistic > cfg().threshold);
        assert!((shift.baseline - before.geometric_mean_ns()).abs() < 1e-6);
        assert!((shift.level / shift.baseline - shift.ratio).abs() < 1e-9);
    }
}

#[test]
fn latency_halving_is_detected_as_down() {
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        let mut d = latency_detector();
        settle(&mut d, &mut rng, 1.0, 20);
        let hit = (1..=3).find_map(|_| d.observe(&rng.latency(0.5)));
        let shift = hit.unwrap_or_else(|| panic!("seed {seed}: 0.5x not flagged in 3"));
        assert_eq!(shift.direction, Direction::Down, "seed {seed}");
        assert!(
            (0.5 * LN_4SE_DOWN..0.5 * LN_4SE_UP).contains(&shift.ratio),
            "seed {seed}: {shift:?}"
        );
    }
}

#[test]
fn steady_latency_raises_no_alarm_in_10000_windows() {
    for seed in 0..3 {
        let mut rng = Rng::new(1000 + seed);
        let mut d = latency_detector();
        for i in 0..cfg().warmup + 10_000 {
            assert_eq!(d.observe(&rng.latency(1.0)), None, "seed {seed} window {i}");
        }
        let b = d.baseline().unwrap();
        assert!(
            (b.mean_ln - MEDIAN_NS.ln()).abs() < 0.01,
            "seed {seed}: {b:?}"
        );
        assert!((b.sd_ln - SIGMA).abs() < 0.02, "seed {seed}: {b:?}");
        assert_eq!(d.observed(), u64::from(cfg().warmup) + 10_000);
        assert_eq!(d.skipped(), 0);
    }
}

#[test]
fn error_jump_is_detected_within_a_few_windows() {
    let mut delays = Vec::new();
    for seed in 0..100 {
        let mut rng = Rng::new(seed);
        let mut d = error_detector();
        for i in 0..cfg().warmup + 20 {
            assert_eq!(d.observe(&rng.errors(0.01)), None, "seed {seed} window {i}");
        }
        let hit = (1..=15).find_map(|i| d.observe(&rng.errors(0.05)).map(|s| (i, s)));
        let (i, shift) = hit.unwrap_or_else(|| panic!("seed {seed}: 1% -> 5% not flagged"));
        assert_eq!(shift.direction, Direction::Up, "seed {seed}");
        assert!(
            (0.03..0.09).contains(&shift.level),
            "seed {seed}: {shift:?}"
        );
        delays.push(i);
    }
    let mean = delays.iter().sum::<u32>() as f64 / delays.len() as f64;
    assert!(mean < 7.0, "mean delay {mean} windows: {delays:?}");
}

#[test]
fn error_drop_is_detected_as_down() {
    let mut rng = Rng::new(7);
    let mut d = error_detector();
    for _ in 0..cfg().warmup + 20 {
        assert_eq!(d.observe(&rng.errors(0.10)), None);
    }
    let shift = (0..20)
        .find_map(|_| d.observe(&rng.errors(0.0)))
        .expect("10% -> 0% flagged");
    assert_eq!(shift.direction, Direction::Down);
    assert_eq!(shift.level, 0.0);
    assert_eq!(shift.ratio, 0.0);
}

#[test]
fn steady_errors_raise_no_alarm_in_10000_windows() {
    for rate in [0.0, 0.001, 0.01, 0.05, 0.3] {
        for seed in 0..3 {
            let mut rng = Rng::new(2000 + seed);
            let mut d = error_detector();
            for i in 0..cfg().warmup + 10_000 {
                let w = rng.errors(rate);
                assert_eq!(d.observe(&w), None, "rate {rate} seed {seed} window {i}");
            }
            let b = d.baseline().unwrap();
            assert!(
                (b.rate - rate).abs() < 0.01,
                "rate {rate} seed {seed}: {b:?}"
            );
        }
    }
}

#[test]
fn one_error_against_a_zero_error_baseline_is_no_alarm() {
    let mut d = error_detector();
    let clean = ErrorWindow {
        executions: N,
        errors: 0,
    };
    for _ in 0..cfg().warmup {
        assert_eq!(d.observe(&clean), None);
    }
    assert_eq!(d.baseline(), Some(ErrorBaseline { rate: 0.0 }));
    // One error in every window for a long time: 1% is the floor, not a change.
    let one = ErrorWindow {
        executions: N,
        errors: 1,
    };
    for i in 0..1000 {
        assert_eq!(d.observe(&one), None, "window {i}");
        assert_eq!(d.observe(&clean), None, "window {i}");
    }
    // A burst is.
    let burst = ErrorWindow {
        executions: N,
        errors: 10,
    };
    let shift = (0..3).find_map(|_| d.observe(&burst)).expect("10% flagged");
    assert_eq!(shift.direction, Direction::Up);
    assert!((shift.level - 0.1).abs() < 1e-9);
}

#[test]
fn binomial_score_is_signed_centred_and_tamer_than_pearson() {
    // Four errors in 100 at 1%: a 1-in-55 window; Pearson's score says 3.0.
    let s = binomial_score(0.04, 0.01, 100.0);
    assert!((2.40..2.48).contains(&s), "{s}");
    assert!(binomial_score(0.0, 0.01, 100.0) < 0.0);
    assert!(binomial_score(0.01, 0.01, 100.0).abs() < 0.2);
    let mut last = f64::NEG_INFINITY;
    for x in 0..=100 {
        let s = binomial_score(f64::from(x) / 100.0, 0.05, 100.0);
        assert!(s.is_finite() && s > last, "x {x}: {s} after {last}");
        last = s;
    }
}

#[test]
fn windows_below_min_samples_never_alarm_and_do_not_move_the_baseline() {
    let small = cfg().min_samples - 1;
    let mut rng = Rng::new(3);
    let mut d = latency_detector();
    // While learning: skipped windows do not count towards the warm-up.
    for _ in 0..5 {
        assert_eq!(d.observe(&rng.latency_n(10.0, small)), None);
    }
    assert_eq!(d.state(), DetectorState::Learning { windows: 0 });
    assert_eq!(d.baseline(), None);
    settle(&mut d, &mut rng, 1.0, 10);
    let before = d.clone();
    for _ in 0..1000 {
        assert_eq!(d.observe(&rng.latency_n(10.0, small)), None);
    }
    assert_eq!(d.baseline(), before.baseline());
    assert_eq!(d.state(), before.state());
    assert_eq!(d.skipped(), 1005);
    assert_eq!(d.observed(), before.observed());
    // At min_samples the same slowdown is seen.
    let at = cfg().min_samples;
    assert!((0..3)
        .find_map(|_| d.observe(&rng.latency_n(10.0, at)))
        .is_some());

    let mut e = error_detector();
    for _ in 0..cfg().warmup {
        e.observe(&rng.errors(0.0));
    }
    let before = e.clone();
    for _ in 0..1000 {
        let all_failed = ErrorWindow {
            executions: small,
            errors: small,
        };
        assert_eq!(e.observe(&all_failed), None);
    }
    assert_eq!(e.baseline(), before.baseline());
    assert_eq!(e.skipped(), 1000);
}

#[test]
fn malformed_windows_are_skipped() {
    let mut d = latency_detector();
    let mut rng = Rng::new(4);
    settle(&mut d, &mut rng, 1.0, 0);
    let before = d.clone();
    for w in [
        LatencyWindow {
            n: N,
            sum_ln: f64::NAN,
            sum_ln2: 1.0,
        },
        LatencyWindow {
            n: N,
            sum_ln: 1.0,
            sum_ln2: f64::INFINITY,
        },
        LatencyWindow::new(),
    ] {
        assert_eq!(d.observe(&w), None);
    }
    assert_eq!(d.baseline(), before.baseline());
    assert_eq!(d.skipped(), 3);

    let mut e = error_detector();
    let bad = ErrorWindow {
        executions: N,
        errors: N + 1,
    };
    assert_eq!(e.observe(&bad), None);
    assert_eq!((e.skipped(), e.observed()), (1, 0));
}

#[test]
fn record_clamps_zero_and_sums_logs() {
    let mut w = LatencyWindow::new();
    w.record(0);
    w.record(1);
    assert_eq!(
        w,
        LatencyWindow {
            n: 2,
            sum_ln: 0.0,
            sum_ln2: 0.0
        }
    );
    w.record(u64::MAX);
    assert!(w.sum_ln.is_finite() && w.sum_ln2.is_finite());
}

#[test]
fn unpinned_alarm_relearns_the_new_regime() {
    let mut rng = Rng::new(5);
    let mut d = latency_detector();
    settle(&mut d, &mut rng, 1.0, 20);
    let shift = (0..3)
        .find_map(|_| d.observe(&rng.latency(3.0)))
        .expect("3x flagged");
    assert_eq!(shift.direction, Direction::Up);
    // Learning again, seeded by the changed windows.
    assert!(matches!(d.state(), DetectorState::Learning { windows } if windows >= 1));
    for _ in 0..200 {
        assert_eq!(
            d.observe(&rng.latency(3.0)),
            None,
            "the new regime is the baseline"
        );
    }
    let b = d.baseline().unwrap();
    assert!((b.mean_ln - (3.0 * MEDIAN_NS).ln()).abs() < 0.02, "{b:?}");
    // And the way back is a change too.
    let back = (0..3)
        .find_map(|_| d.observe(&rng.latency(1.0)))
        .expect("back flagged");
    assert_eq!(back.direction, Direction::Down);
    assert!((0.3..0.37).contains(&back.ratio), "{back:?}");
}

#[test]
fn pinned_alarm_stands_until_the_series_returns() {
    let mut rng = Rng::new(6);
    let mut d = latency_detector();
    settle(&mut d, &mut rng, 1.0, 20);
    let pinned = d.pin().expect("a baseline");
    assert!(d.is_pinned());
    assert_eq!(d.baseline(), Some(pinned));
    let first = (0..3)
        .find_map(|_| d.observe(&rng.latency(1.5)))
        .expect("1.5x flagged");
    assert_eq!(first.direction, Direction::Up);
    // Every window while it lasts reports it; the baseline does not move.
    for i in 0..100 {
        let shift = d.observe(&rng.latency(1.5));
        let shift = shift.unwrap_or_else(|| panic!("window {i}: the alarm stands"));
        assert_eq!(shift.direction, Direction::Up);
        assert!(shift.statistic <= cfg().threshold);
        assert!((1.4..1.6).contains(&shift.ratio), "{shift:?}");
        assert!(matches!(d.state(), DetectorState::Alarm(s) if s == shift));
    }
    assert_eq!(d.baseline(), Some(pinned));
    // Back at the baseline: it clears within about h / k windows, and stays clear.
    let bound = (cfg().threshold / cfg().drift) as u32 + 10;
    let cleared = (1..=bound).find(|_| d.observe(&rng.latency(1.0)).is_none());
    assert!(cleared.is_some(), "not cleared in {bound} windows");
    assert!(matches!(d.state(), DetectorState::Watching { .. }));
    for _ in 0..500 {
        assert_eq!(d.observe(&rng.latency(1.0)), None);
    }
    assert_eq!(d.baseline(), Some(pinned));
}

#[test]
fn unpin_in_alarm_takes_the_new_regime() {
    let mut rng = Rng::new(8);
    let mut d = latency_detector();
    settle(&mut d, &mut rng, 1.0, 20);
    d.pin();
    assert!((0..3).find_map(|_| d.observe(&rng.latency(2.0))).is_some());
    assert!(matches!(d.state(), DetectorState::Alarm(_)));
    d.unpin();
    assert!(!d.is_pinned());
    assert!(matches!(d.state(), DetectorState::Learning { .. }));
    for _ in 0..100 {
        assert_eq!(d.observe(&rng.latency(2.0)), None);
    }
    let b = d.baseline().unwrap();
    assert!((b.mean_ln - (2.0 * MEDIAN_NS).ln()).abs() < 0.02, "{b:?}");
}

#[test]
fn pin_before_any_window_is_refused_and_during_warmup_freezes_the_estimate() {
    let mut rng = Rng::new(9);
    let mut d = latency_detector();
    assert_eq!(d.pin(), None);
    assert!(!d.is_pinned());
    for _ in 0..3 {
        d.observe(&rng.latency(1.0));
    }
    assert_eq!(d.state(), DetectorState::Learning { windows: 3 });
    let b = d.pin().expect("an estimate");
    assert!(matches!(d.state(), DetectorState::Watching { .. }));
    for _ in 0..50 {
        assert_eq!(d.observe(&rng.latency(1.0)), None);
    }
    assert_eq!(d.baseline(), Some(b));
    assert!((0..3).find_map(|_| d.observe(&rng.latency(2.0))).is_some());
}

#[test]
fn unpinned_baseline_follows_a_quiet_series_and_pinned_does_not() {
    // 1.02x is about 0.4 standard errors per window: below the drift, never an alarm.
    let mut rng = Rng::new(10);
    let mut free = latency_detector();
    settle(&mut free, &mut rng, 1.0, 0);
    let mut pinned = free.clone();
    let start = pinned.pin().unwrap();
    for _ in 0..2000 {
        let w = rng.latency(1.02);
        assert_eq!(free.observe(&w), None);
        assert_eq!(pinned.observe(&w), None);
    }
    assert_eq!(pinned.baseline(), Some(start));
    // The followed baseline sits at the new level (its own error is about 0.003 by now).
    let level = (1.02 * MEDIAN_NS).ln();
    let free_error = free.baseline().unwrap().mean_ln - level;
    assert!(free_error.abs() < 0.01, "{free_error}");
    let pinned_error = start.mean_ln - level;
    assert!(
        free_error.abs() < pinned_error.abs(),
        "{free_error} {pinned_error}"
    );
}

#[test]
fn a_slow_creep_is_still_caught() {
    // ln latency rises 0.002 per window (x1.2 in about 90 windows): the baseline stops
    // following once the statistic builds, so the creep is flagged (measured: after 44 to 75
    // windows over these seeds, by x1.09 to x1.16), not absorbed.
    for seed in 0..20 {
        let mut rng = Rng::new(11 + seed);
        let mut d = latency_detector();
        settle(&mut d, &mut rng, 1.0, 0);
        let hit = (1..=100).find_map(|i| {
            d.observe(&rng.latency((0.002 * f64::from(i)).exp()))
                .map(|s| (i, s))
        });
        let (i, shift) = hit.unwrap_or_else(|| panic!("seed {seed}: creep not flagged"));
        assert!(
            i >= 20,
            "seed {seed}: flagged at {i}, before the creep was a shift"
        );
        assert_eq!(shift.direction, Direction::Up);
    }
}

#[test]
fn set_baseline_pins_it_and_skips_the_warmup() {
    let mut rng = Rng::new(12);
    let mut d = latency_detector();
    let b = LatencyBaseline {
        mean_ln: MEDIAN_NS.ln(),
        sd_ln: SIGMA,
    };
    assert_eq!(d.set_baseline(b), Ok(()));
    assert!(d.is_pinned());
    assert_eq!(d.baseline(), Some(b));
    assert!(matches!(d.state(), DetectorState::Watching { .. }));
    let shift = d.observe(&rng.latency(2.0)).expect("2x at once");
    assert!((shift.baseline - MEDIAN_NS).abs() < 1e-6);
    // Bad baselines come back.
    for bad in [
        LatencyBaseline {
            mean_ln: f64::NAN,
            sd_ln: 0.5,
        },
        LatencyBaseline {
            mean_ln: 1.0,
            sd_ln: -0.5,
        },
        LatencyBaseline {
            mean_ln: 1.0,
            sd_ln: f64::INFINITY,
        },
    ] {
        assert_eq!(
            d.set_baseline(bad).map_err(|b| b.sd_ln.to_bits()),
            Err(bad.sd_ln.to_bits())
        );
    }
    assert_eq!(d.baseline(), Some(b));
    // Setting clears the standing alarm; unpinning a set baseline learns afresh.
    assert_eq!(d.set_baseline(b), Ok(()));
    assert!(matches!(d.state(), DetectorState::Watching { up, down } if up == 0.0 && down == 0.0));
    d.unpin();
    assert_eq!(d.state(), DetectorState::Learning { windows: 0 });
    assert_eq!(d.baseline(), None);

    let mut e = error_detector();
    assert_eq!(
        e.set_baseline(ErrorBaseline { rate: 1.5 }),
        Err(ErrorBaseline { rate: 1.5 })
    );
    assert!(e.set_baseline(ErrorBaseline { rate: f64::NAN }).is_err());
    assert_eq!(e.set_baseline(ErrorBaseline { rate: 0.01 }), Ok(()));
    let burst = ErrorWindow {
        executions: N,
        errors: 20,
    };
    let shift = e.observe(&burst).expect("20% against 1% at once");
    assert!((shift.ratio - 20.0).abs() < 1e-9);
}

#[test]
fn a_sd_of_zero_is_floored() {
    // Every sample the same: sd 0. A 1 ns change is not an alarm; 10% is.
    let window = |ns: u64| {
        let mut w = LatencyWindow::new();
        for _ in 0..N {
            w.record(ns);
        }
        w
    };
    let mut d = latency_detector();
    for _ in 0..cfg().warmup {
        d.observe(&window(1000));
    }
    assert!(d.baseline().unwrap().sd_ln < 1e-6);
    for _ in 0..100 {
        assert_eq!(d.observe(&window(1001)), None);
    }
    assert!(d.observe(&window(1100)).is_some());
}

#[test]
fn reset_forgets_the_baseline_and_keeps_the_counters() {
    let mut rng = Rng::new(13);
    let mut d = latency_detector();
    settle(&mut d, &mut rng, 1.0, 5);
    d.pin();
    d.reset();
    assert_eq!(d.baseline(), None);
    assert!(!d.is_pinned());
    assert_eq!(d.state(), DetectorState::Learning { windows: 0 });
    assert_eq!(d.observed(), u64::from(cfg().warmup) + 5);
    assert_eq!(d.config(), &cfg());
}

#[cfg(feature = "serde")]
#[test]
fn config_reads_from_toml_with_defaults_and_refuses_unknown_fields() {
    let c: DetectorConfig = toml::from_str("threshold = 12.0\nwarmup = 20").unwrap();
    assert_eq!(
        c,
        DetectorConfig {
            threshold: 12.0,
            warmup: 20,
            ..cfg()
        }
    );
    let err = toml::from_str::<DetectorConfig>("treshold = 12.0").unwrap_err();
    assert!(err.to_string().contains("treshold"), "{err}");
    let text = toml::to_string(&cfg()).unwrap();
    assert_eq!(toml::from_str::<DetectorConfig>(&text).unwrap(), cfg());
}
