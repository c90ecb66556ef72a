//! The run-time monitor through the public API: windows count every run exactly under every
//! preset, telemetry level and clock; rules fire and resolve with hysteresis at the evaluations
//! a manual clock decides; a percentile rule never fires on fewer than its minimum samples,
//! whatever the sampling.

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use flujo_core::graph::{Clock, Graph, ManualClock, StepError};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::{AlertRule, Metric, OptimizationConfig, TelemetryLevel};
use flujo_runtime::monitor::{AlertEvent, AlertState, Series, Window};
use flujo_runtime::{Executor, Finished, Priority};
use matrix::{each_setup, Time};

const SECOND: u64 = 1_000_000_000;

/// `check` -> `work`: `check` fails (transient) on inputs divisible by `fail_every`; `work`
/// takes `spend` of the setup's time.
fn graph(time: &Time, fail_every: u64, spend: Duration) -> Arc<Graph<u64, ()>> {
    let time = time.clone();
    Arc::new(
        Graph::build(|b| {
            let c = b.task("check", move |x: u64, _| {
                if fail_every > 0 && x.is_multiple_of(fail_every) {
                    Err(StepError::transient("bad input"))
                } else {
                    Ok(x)
                }
            });
            let w = b.task("work", move |x: u64, _| {
                time.pass(spend);
                Ok(x + 1)
            });
            b.sequence("flow", &[c, w])
        })
        .expect("a valid graph"),
    )
}

fn step<'a>(w: &'a Window, name: &str) -> Option<&'a Series> {
    w.steps.iter().find(|(s, _)| s == name).map(|(_, s)| s)
}

#[test]
fn windows_count_every_run_exactly_under_every_setup() {
    each_setup(2, |setup| {
        let name = &setup.name;
        let mut cfg = setup.cfg.clone();
        if let Time::Real = setup.time {
            // Short buckets, so the test does not wait for seconds.
            cfg.monitor.resolution = Duration::from_millis(10);
            cfg.monitor.windows = vec![Duration::from_millis(10), Duration::from_secs(30)];
        }
        let setup = matrix::Setup {
            cfg,
            ..setup.clone()
        };
        let ex = setup.executor::<u64, ()>();
        let g = graph(&setup.time, 4, Duration::ZERO);
        let (inline, submitted) = (200u64, 60u64);
        for i in 0..inline {
            ex.run(&g, i, ()).unwrap();
        }
        for i in 0..submitted {
            let t = ex
                .submit(&g, inline + i, (), Priority::Normal)
                .unwrap_or_else(|r| panic!("{name}: refused: {}", r.reason));
            assert!(matches!(t.wait().unwrap(), Finished::Ran(_)), "{name}");
        }
        // Let the last bucket close.
        setup.time.pass(Duration::from_millis(1_100));
        let all = ex.windows();
        let longest = all.windows.last().expect("windows");
        let runs = inline + submitted;
        let failed = (0..runs).filter(|x| x % 4 == 0).count() as u64;
        let t = &longest.total;
        assert_eq!(t.ended, runs, "{name}: {t:?}");
        assert_eq!(t.failed, failed, "{name}");
        assert_eq!(
            t.errors_by_class,
            vec![("transient".to_string(), failed)],
            "{name}"
        );
        assert_eq!(t.latency.samples, runs, "{name}: every run's latency");
        assert_eq!(
            t.queue_wait.samples, submitted,
            "{name}: every submitted run"
        );
        assert_eq!(longest.submitted, submitted, "{name}");
        assert_eq!(longest.refused, 0, "{name}");
        let level = setup.cfg.telemetry.level;
        match (step(longest, "check"), step(longest, "work")) {
            (Some(c), Some(w)) => {
                assert!(level >= TelemetryLevel::Counters, "{name}");
                assert_eq!(c.ended, runs, "{name}");
                assert_eq!(c.failed, failed, "{name}");
                assert_eq!(w.ended, runs - failed, "{name}");
                assert_eq!(w.failed, 0, "{name}");
                // Step latencies come from sampled runs only: from level histograms up.
                if level < TelemetryLevel::Histograms {
                    assert_eq!(w.latency.samples, 0, "{name}");
                }
                assert!(w.latency.samples <= w.ended, "{name}");
            }
            (None, None) => assert_eq!(level, TelemetryLevel::Off, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    });
}

/// Runs `g` on each of `inputs`, then moves the clock to the start of the next second (the
/// next bucket).
fn bucket(ex: &Executor<u64, ()>, g: &Arc<Graph<u64, ()>>, clock: &ManualClock, inputs: &[u64]) {
    for &i in inputs {
        ex.run(g, i, ()).unwrap();
    }
    clock.advance(SECOND - clock.now() % SECOND);
}

#[test]
fn windows_slide_with_the_manual_clock() {
    let clock = ManualClock::new(0);
    let ex = Executor::<u64, ()>::builder(OptimizationConfig::throughput())
        .clock(clock.clone())
        .build()
        .unwrap();
    let g = graph(&Time::Manual(clock.clone()), 0, Duration::ZERO);
    assert!(ex.windows().windows.is_empty(), "no bucket closed yet");
    bucket(&ex, &g, &clock, &[1; 5]);
    bucket(&ex, &g, &clock, &[1; 3]);
    let w = ex.windows();
    assert_eq!(w.at_ns, 2 * SECOND);
    let ended: Vec<u64> = w.windows.iter().map(|w| w.total.ended).collect();
    assert_eq!(ended, [3, 8, 8], "1 s, 10 s and 60 s windows");
    assert_eq!(w.windows[0].total.rate, 3.0);
    assert_eq!(w.windows[1].total.rate, 0.8);
    // Nine seconds later the first bucket leaves the 10 s window, not the 60 s one.
    clock.advance(9 * SECOND);
    let ended: Vec<u64> = ex.windows().windows.iter().map(|w| w.total.ended).collect();
    assert_eq!(ended, [0, 3, 8]);
    clock.advance(60 * SECOND);
    let ended: Vec<u64> = ex.windows().windows.iter().map(|w| w.total.ended).collect();
    assert_eq!(ended, [0, 0, 0]);
    // A jump of an hour keeps nothing and costs no more than a window.
    bucket(&ex, &g, &clock, &[1; 2]);
    clock.advance(3_600 * SECOND);
    let ended: Vec<u64> = ex.windows().windows.iter().map(|w| w.total.ended).collect();
    assert_eq!(ended, [0, 0, 0]);
}

/// An error-rate rule on step `check`: fires above 0.5 for 2 evaluations, resolves below 0.2
/// for 2, on the 1 s window, with at least 4 executions.
fn error_rule() -> AlertRule {
    AlertRule {
        step: Some("check".into()),
        window: Duration::from_secs(1),
        above: 0.5,
        clear_below: 0.2,
        for_windows: 2,
        min_samples: 4,
        ..AlertRule::new("check-errors", Metric::ErrorRate)
    }
}

/// Inputs of which `bad` in 10 fail `check` (fail_every 10 fails multiples of 10).
fn inputs(bad: u64) -> Vec<u64> {
    (0..10)
        .map(|i| if i < bad { i * 10 } else { i * 10 + 1 })
        .collect()
}

#[test]
fn an_error_rate_rule_fires_and_resolves_with_hysteresis_under_every_preset_and_level() {
    for (name, mut cfg) in matrix::presets_at_levels() {
        let level = cfg.telemetry.level;
        cfg.monitor.rules.push(error_rule());
        let clock = ManualClock::new(0);
        let (tx, rx) = mpsc::channel::<AlertEvent>();
        let ex = Executor::<u64, ()>::builder(cfg)
            .clock(clock.clone())
            .on_alert(move |e| tx.send(e.clone()).unwrap())
            .build()
            .unwrap();
        let g = graph(&Time::Manual(clock.clone()), 10, Duration::ZERO);
        // Error rates per second: 0.8 (one above), 0.8 (fires), 0.3 (between: stays),
        // 0.1 (one below), only 3 executions (too few: no evaluation), 0.1 (resolves).
        let plan: [&[u64]; 6] = [
            &inputs(8),
            &inputs(8),
            &inputs(3),
            &inputs(1),
            &[1, 11, 21],
            &inputs(1),
        ];
        let mut seen = Vec::new();
        for (second, bucket_inputs) in plan.iter().enumerate() {
            bucket(&ex, &g, &clock, bucket_inputs);
            ex.poll_monitor();
            let firing = ex.windows().firing;
            seen.push(!firing.is_empty());
            let _ = second;
        }
        let events: Vec<AlertEvent> = rx.try_iter().collect();
        if level == TelemetryLevel::Off {
            // No step counts at level off: the rule never has samples.
            assert_eq!(seen, [false; 6], "{name}");
            assert!(events.is_empty(), "{name}");
            continue;
        }
        assert_eq!(seen, [false, true, true, true, true, false], "{name}");
        assert_eq!(events.len(), 2, "{name}: {events:?}");
        let (fired, resolved) = (&events[0], &events[1]);
        assert_eq!(fired.state, AlertState::Firing, "{name}");
        assert_eq!(fired.value, 0.8, "{name}");
        assert_eq!(fired.samples, 10, "{name}");
        assert_eq!(fired.at_ns, 2 * SECOND, "{name}: the 2nd bucket's end");
        assert_eq!(fired.window_ns, SECOND, "{name}");
        assert_eq!(fired.step.as_deref(), Some("check"), "{name}");
        assert_eq!(resolved.state, AlertState::Resolved, "{name}");
        assert_eq!(resolved.value, 0.1, "{name}");
        assert_eq!(resolved.threshold, 0.2, "{name}");
        assert_eq!(resolved.at_ns, 6 * SECOND, "{name}");
        let report = ex.report();
        assert_eq!(
            (report.alerts.fired, report.alerts.resolved),
            (1, 1),
            "{name}"
        );
        assert_eq!(report.alerts.events, events, "{name}");
        assert!(report.to_string().contains("check-errors"), "{name}");
    }
}

/// A p99 rule on step `work` (5 ms each) above 1 ms with at least `min` samples in the 1 s
/// window, 100 runs a second, each preset and level, sampling one run in `period`: fires
/// exactly when the window holds `min` samples.
#[test]
fn a_percentile_rule_never_fires_on_fewer_than_its_minimum_samples() {
    for (name, cfg) in matrix::presets_at_levels() {
        let level = cfg.telemetry.level;
        for period in [1, 4, 64] {
            let name = format!("{name}/1 in {period}");
            let mut cfg = cfg.clone();
            cfg.telemetry.run_sample_period = period;
            let min = 20;
            cfg.monitor.rules.push(AlertRule {
                step: Some("work".into()),
                window: Duration::from_secs(1),
                above: 0.001,
                clear_below: 0.0005,
                min_samples: min,
                ..AlertRule::new("work-p99", Metric::Latency)
            });
            let clock = ManualClock::new(0);
            let ex = Executor::<u64, ()>::builder(cfg)
                .clock(clock.clone())
                .build()
                .unwrap();
            let g = graph(&Time::Manual(clock.clone()), 0, Duration::from_millis(5));
            let mut fired_with = None;
            for _ in 0..3 {
                bucket(&ex, &g, &clock, &[1; 100]);
                let events = ex.poll_monitor();
                let w = ex.windows();
                let samples = step(&w.windows[0], "work").map_or(0, |s| s.latency.samples);
                if !events.is_empty() {
                    fired_with.get_or_insert(samples);
                    assert_eq!(events[0].samples, samples, "{name}");
                }
                if samples < min {
                    assert!(w.firing.is_empty(), "{name}: {samples} samples");
                } else {
                    let p99 = step(&w.windows[0], "work").unwrap().latency.p99_ns;
                    assert!((4_700_000..=5_300_000).contains(&p99), "{name}: {p99}");
                    assert_eq!(w.firing, ["work-p99"], "{name}: {samples} samples");
                }
            }
            let sampled = level >= TelemetryLevel::Histograms && 100 / period as u64 >= min;
            assert_eq!(fired_with.is_some(), sampled, "{name}: {fired_with:?}");
        }
    }
}

#[test]
fn a_refusal_rate_rule_reads_refused_submissions() {
    let clock = ManualClock::new(0);
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1;
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.max_limit = 1;
    cfg.adaptive_concurrency.initial_limit = 1;
    cfg.adaptive_concurrency.min_limit = 1;
    cfg.monitor.rules.push(AlertRule {
        window: Duration::from_secs(1),
        above: 0.5,
        clear_below: 0.1,
        ..AlertRule::new("refusals", Metric::RefusalRate)
    });
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(clock.clone())
        .build()
        .unwrap();
    // A step that holds the only admission slot until released.
    let gate = Arc::new(AtomicU64::new(0));
    let g = {
        let gate = Arc::clone(&gate);
        Arc::new(
            Graph::build(|b| {
                b.task("hold", move |x: u64, _| {
                    while gate.load(Ordering::SeqCst) == 0 {
                        std::thread::yield_now();
                    }
                    Ok(x)
                })
            })
            .unwrap(),
        )
    };
    let held = ex.submit(&g, 0, (), Priority::Normal).unwrap();
    let mut refused = 0;
    for i in 0..9 {
        if ex.submit(&g, i, (), Priority::Normal).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 9, "the limit is 1");
    gate.store(1, Ordering::SeqCst);
    held.wait().unwrap();
    clock.advance(SECOND);
    let events = ex.poll_monitor();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].value, 0.9);
    assert_eq!(events[0].samples, 10);
    let w = ex.windows();
    assert_eq!((w.windows[0].submitted, w.windows[0].refused), (10, 9));
}

#[test]
fn reconfiguring_the_monitor_restarts_its_windows_and_keeps_the_alert_totals() {
    let clock = ManualClock::new(0);
    let mut cfg = OptimizationConfig::latency();
    cfg.monitor.rules.push(error_rule());
    let ex = Executor::<u64, ()>::builder(cfg.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let g = graph(&Time::Manual(clock.clone()), 10, Duration::ZERO);
    bucket(&ex, &g, &clock, &inputs(9));
    bucket(&ex, &g, &clock, &inputs(9));
    assert_eq!(ex.windows().firing, ["check-errors"]);
    // The same monitor section: nothing restarts.
    let mut same = cfg.clone();
    same.result_cache.enabled = false;
    ex.reconfigure(same).unwrap();
    assert_eq!(ex.windows().firing, ["check-errors"]);
    let mut other = cfg;
    other.monitor.rules[0].above = 0.95;
    ex.reconfigure(other).unwrap();
    bucket(&ex, &g, &clock, &inputs(9));
    let w = ex.windows();
    assert!(w.firing.is_empty());
    assert_eq!(
        w.windows[2].total.ended, 10,
        "only the bucket after the change"
    );
    assert_eq!(ex.report().alerts.fired, 1);
    // Switched off: no windows.
    let mut off = OptimizationConfig::latency();
    off.monitor.enabled = false;
    ex.reconfigure(off).unwrap();
    bucket(&ex, &g, &clock, &inputs(1));
    assert!(ex.windows().windows.is_empty());
    // Time on: the per-tick clock is the runtime's (nanoseconds).
    assert_eq!(ticks(Duration::from_secs(1)), SECOND);
}

#[test]
fn alerts_are_instant_events_in_the_trace() {
    let clock = ManualClock::new(0);
    let mut cfg = OptimizationConfig::latency();
    cfg.monitor.rules.push(error_rule());
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(clock.clone())
        .build()
        .unwrap();
    let g = graph(&Time::Manual(clock.clone()), 10, Duration::ZERO);
    bucket(&ex, &g, &clock, &inputs(9));
    bucket(&ex, &g, &clock, &inputs(9));
    let mut json = Vec::new();
    ex.write_trace(&mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.contains(r#""name":"alert check-errors firing","cat":"alert""#),
        "{json}"
    );
    assert!(
        json.contains(r#""ts":2000000.000"#),
        "at the 2nd bucket's end: {json}"
    );
    assert!(json.contains("flujo monitor"), "{json}");
}

/// `slow` takes 1 to 1.6 ms (by input), times `factor`; every run sampled.
fn varying(clock: &ManualClock, factor: &Arc<AtomicU64>) -> Arc<Graph<u64, ()>> {
    let (clock, factor) = (clock.clone(), Arc::clone(factor));
    Arc::new(
        Graph::build(|b| {
            b.task("slow", move |x: u64, _| {
                let us = 1_000 + (x % 7) * 100;
                clock.advance(us * 1_000 * factor.load(Ordering::SeqCst));
                Ok(x)
            })
        })
        .unwrap(),
    )
}

#[test]
fn the_detector_reports_a_doubled_step_latency_within_three_windows_and_a_pinned_baseline_holds() {
    // Step latencies come from sampled runs, per step from `histograms`: under every preset at
    // those levels (every run sampled), the same doubling is reported the same way.
    for (name, mut cfg) in matrix::presets_at_levels() {
        if cfg.telemetry.level < TelemetryLevel::Histograms {
            continue;
        }
        cfg.telemetry.run_sample_period = 1;
        doubled_latency(cfg, &name);
    }
}

fn doubled_latency(cfg: OptimizationConfig, name: &str) {
    let clock = ManualClock::new(0);
    let (tx, rx) = mpsc::channel::<AlertEvent>();
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(clock.clone())
        .on_alert(move |e| tx.send(e.clone()).unwrap())
        .build()
        .unwrap();
    let factor = Arc::new(AtomicU64::new(1));
    let g = varying(&clock, &factor);
    let inputs: Vec<u64> = (0..100).collect();
    // 30 steady seconds: no shift.
    for _ in 0..30 {
        bucket(&ex, &g, &clock, &inputs);
    }
    ex.poll_monitor();
    assert!(
        rx.try_iter().all(|e| e.state != AlertState::Shift),
        "{name}"
    );
    // Twice as slow: reported within 3 buckets, as a ratio near 2.
    factor.store(2, Ordering::SeqCst);
    let mut when = None;
    for second in 0..3 {
        bucket(&ex, &g, &clock, &inputs);
        ex.poll_monitor();
        if let Some(e) = rx.try_iter().find(|e| e.state == AlertState::Shift) {
            assert_eq!(e.rule, "regression slow latency", "{name}");
            assert_eq!(e.step.as_deref(), Some("slow"), "{name}");
            assert!((1.8..2.2).contains(&e.value), "{name}: {e:?}");
            assert_eq!(e.samples, 100, "{name}");
            when = Some(second);
            break;
        }
    }
    assert!(when.is_some(), "{name}: not reported within 3 windows");
    assert_eq!(ex.report().alerts.shifts, 1, "{name}");
    // Unpinned, the detector learns the new level: 20 more seconds at 2x, no more shifts.
    for _ in 0..20 {
        bucket(&ex, &g, &clock, &inputs);
    }
    ex.poll_monitor();
    assert_eq!(ex.report().alerts.shifts, 1, "{name}");
    // Pinned at 2x: back to 1x is a shift down, reported on every window while it lasts.
    assert_eq!(ex.pin_baselines(Some("slow")), 1, "{name}");
    assert_eq!(ex.pin_baselines(Some("nope")), 0, "{name}");
    factor.store(1, Ordering::SeqCst);
    for _ in 0..5 {
        bucket(&ex, &g, &clock, &inputs);
    }
    ex.poll_monitor();
    let down: Vec<AlertEvent> = rx
        .try_iter()
        .filter(|e| e.state == AlertState::Shift)
        .collect();
    assert!(down.len() >= 3, "{name}: {down:?}");
    assert!(down.iter().all(|e| e.value < 0.6), "{name}: {down:?}");
}

#[test]
fn the_detector_reports_an_error_rate_jump_from_exact_counts_at_every_level() {
    // Per-step counts exist from `counters`: every preset at those levels reports the jump;
    // at `off` there is nothing per step to watch, so nothing is reported.
    for (name, cfg) in matrix::presets_at_levels() {
        let clock = ManualClock::new(0);
        let per_step = cfg.telemetry.level >= TelemetryLevel::Counters;
        let ex = Executor::<u64, ()>::builder(cfg)
            .clock(clock.clone())
            .build()
            .unwrap();
        let g = graph(&Time::Manual(clock.clone()), 10, Duration::ZERO);
        let step = |inputs: &[u64]| bucket(&ex, &g, &clock, inputs);
        let shifts = error_rate_jump(&ex, step);
        if per_step {
            assert!(shifts >= 1, "{name}");
        } else {
            assert_eq!(shifts, 0, "{name}: no per-step counts at level off");
        }
    }
}

#[test]
fn the_detector_reports_an_error_rate_jump_on_the_real_clock() {
    let mut cfg = OptimizationConfig::throughput();
    let res = Duration::from_millis(20);
    cfg.monitor.resolution = res;
    cfg.monitor.windows = vec![res];
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let g = graph(&Time::Real, 10, Duration::ZERO);
    // Each bucket: the inputs run at the start of a bucket (100 trivial runs take far less
    // than 20 ms), then the clock is slept to the next bucket's start.
    let to_next_bucket = || sleep_to_next_bucket(&ex, res);
    to_next_bucket();
    let step = |inputs: &[u64]| {
        for &i in inputs {
            ex.run(&g, i, ()).unwrap();
        }
        to_next_bucket();
    };
    assert!(error_rate_jump(&ex, step) >= 1);
}

#[test]
fn the_detector_reports_a_doubled_step_latency_on_the_real_clock() {
    // The latency detector on `Executor::new`'s own clock: `slow` sleeps 1 ms, then 2 ms.
    // Sleeps on a loaded machine overshoot at random, so the steady phase is not asserted
    // quiet here (the manual-clock test above asserts that exactly); what is asserted is that
    // the doubling is reported, on `slow`, as a ratio near 2, within five windows.
    for preset in ["latency", "throughput"] {
        let mut cfg = OptimizationConfig::preset(preset).unwrap();
        cfg.telemetry.level = TelemetryLevel::Histograms;
        cfg.telemetry.run_sample_period = 1;
        let res = Duration::from_millis(100);
        cfg.monitor.resolution = res;
        cfg.monitor.windows = vec![res];
        let (tx, rx) = mpsc::channel::<AlertEvent>();
        let ex = Executor::<u64, ()>::builder(cfg)
            .on_alert(move |e| tx.send(e.clone()).unwrap())
            .build()
            .unwrap();
        let millis = Arc::new(AtomicU64::new(1));
        let g = {
            let millis = Arc::clone(&millis);
            Arc::new(
                Graph::build(|b| {
                    b.task("slow", move |x: u64, _| {
                        std::thread::sleep(Duration::from_millis(millis.load(Ordering::SeqCst)));
                        Ok(x)
                    })
                })
                .unwrap(),
            )
        };
        // 20 runs at the start of each bucket (20 to 40 ms of a 100 ms bucket), then the clock
        // is slept to the next bucket's start.
        let to_next_bucket = || sleep_to_next_bucket(&ex, res);
        let bucket = || {
            for i in 0..20 {
                ex.run(&g, i, ()).unwrap();
            }
            to_next_bucket();
        };
        to_next_bucket();
        // The default warm-up is 10 windows: 12 steady ones. A false alarm on a loaded
        // machine makes the detector learn again for 10 windows: then 12 more (3 tries).
        let mut false_alarms = 0;
        loop {
            for _ in 0..12 {
                bucket();
            }
            ex.poll_monitor();
            if !rx.try_iter().any(|e| e.state == AlertState::Shift) {
                break;
            }
            false_alarms += 1;
            assert!(
                false_alarms < 3,
                "{preset}: the steady phase never stayed quiet"
            );
        }
        millis.store(2, Ordering::SeqCst);
        let mut shift = None;
        for _ in 0..5 {
            bucket();
            ex.poll_monitor();
            shift = rx.try_iter().find(|e| e.state == AlertState::Shift);
            if shift.is_some() {
                break;
            }
        }
        let e = shift.unwrap_or_else(|| {
            panic!("{preset}: no shift within 5 windows ({false_alarms} false alarms before)")
        });
        assert_eq!(e.rule, "regression slow latency", "{preset}");
        assert_eq!(e.step.as_deref(), Some("slow"), "{preset}");
        assert!((1.5..3.0).contains(&e.value), "{preset}: {e:?}");
        assert!(e.samples >= 20, "{preset}: {e:?}");
    }
}

/// Sleeps until just past the start of the next bucket of `res` on `ex`'s clock.
fn sleep_to_next_bucket(ex: &Executor<u64, ()>, res: Duration) {
    let res_ns = ticks(res);
    let now = ex.clock().now();
    std::thread::sleep(Duration::from_nanos(res_ns - now % res_ns + 100_000));
}

/// `check` fails inputs divisible by 10: 1 in 100 for 20 buckets (no shift), then 1 in 10 for
/// five; returns the shifts reported.
fn error_rate_jump(ex: &Executor<u64, ()>, mut bucket: impl FnMut(&[u64])) -> u64 {
    let steady: Vec<u64> = (0..100)
        .map(|i| if i == 0 { 0 } else { i * 10 + 1 })
        .collect();
    for _ in 0..20 {
        bucket(&steady);
    }
    ex.poll_monitor();
    assert_eq!(ex.report().alerts.shifts, 0, "no shift while steady");
    let bad: Vec<u64> = (0..100).collect();
    for _ in 0..5 {
        bucket(&bad);
    }
    ex.poll_monitor();
    let a = ex.report().alerts;
    if a.shifts > 0 {
        assert!(a
            .events
            .iter()
            .any(|e| e.rule == "regression check error_rate" && e.value > 5.0));
    }
    a.shifts
}

#[test]
fn the_windows_show_each_breakers_state_now() {
    use flujo_core::graph::TaskConfig;
    use flujo_core::policy::{Breaker, BreakerConfig};
    let clock = ManualClock::new(0);
    let ex = Executor::<u64, ()>::builder(OptimizationConfig::latency())
        .clock(clock.clone())
        .build()
        .unwrap();
    let br = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            window_calls: 1,
            failure_rate_percent_to_open: 0,
            window_calls_min: 1,
            slow_call_ticks: 0,
            open_ticks: 10 * SECOND,
            half_open_probes_max: 1,
            half_open_successes_to_close: 1,
        })
        .unwrap(),
    );
    let g = Graph::<u64, ()>::build(|b| {
        b.task_with(
            "remote",
            |_, _: &mut _| Err(StepError::transient("down")),
            TaskConfig::new().breaker(Arc::clone(&br)),
        )
    })
    .unwrap();
    ex.run(&g, 1, ()).unwrap();
    assert_eq!(
        ex.windows().breakers,
        [("remote".to_string(), "open".to_string())]
    );
    clock.advance(11 * SECOND);
    // The open period passed: the next call is the half-open probe; it fails, so open again.
    ex.run(&g, 1, ()).unwrap();
    assert_eq!(ex.windows().breakers[0].1, "open");
}
