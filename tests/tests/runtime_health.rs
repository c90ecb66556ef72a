//! Health and degradation through the public API: the same pressure takes the same actions,
//! at the same ticks, under every preset and telemetry level (manual clock); actions take
//! effect (shedding refuses with `Refusal::Shed`, admission tightens) and are undone after the
//! dwell; the real clock does the same. The cache's and `try_run`'s actions
//! (`bypass_large_payloads`, `refuse_runs`) are checked under every preset and level on a
//! manual clock, and on the real clock.

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use flujo_core::graph::{Clock, Graph, ManualClock, StepError};
use flujo_runtime::config::{Action, AlertRule, DegradationLevel, Metric, OptimizationConfig};
use flujo_runtime::monitor::health::{Health, HealthEvent};
use flujo_runtime::{Executor, Priority, Refusal};
use matrix::Time;

const S: u64 = 1_000_000_000;

/// Inputs: 0 succeeds at once, 1 takes 5 ms, 2 fails.
fn graph(time: Time) -> Arc<Graph<u64, ()>> {
    Arc::new(
        Graph::build(|b| {
            b.task("work", move |x: u64, _| match x {
                1 => {
                    time.pass(Duration::from_millis(5));
                    Ok(x)
                }
                2 => Err(StepError::permanent("bad")),
                _ => Ok(x),
            })
        })
        .unwrap(),
    )
}

/// Two rules on every run ("slow": p99 above 4 ms; "errors": error rate above a half) and two
/// levels: "busy" on slow sheds Low, stops sampling and inlines more; "failing" on errors, a
/// critical level, sheds Normal, shrinks the cache, tightens admission and frees idle runners.
fn configure(cfg: &mut OptimizationConfig, resolution: Duration, dwell: Duration) {
    cfg.monitor.resolution = resolution;
    cfg.monitor.windows = vec![resolution];
    cfg.monitor.rules = vec![
        AlertRule {
            window: resolution,
            above: 0.004,
            clear_below: 0.002,
            min_samples: 10,
            ..AlertRule::new("slow", Metric::Latency)
        },
        AlertRule {
            window: resolution,
            above: 0.5,
            clear_below: 0.1,
            min_samples: 10,
            ..AlertRule::new("errors", Metric::ErrorRate)
        },
    ];
    cfg.degradation.enabled = true;
    cfg.degradation.min_dwell = dwell;
    cfg.degradation.levels = vec![
        DegradationLevel {
            name: "busy".into(),
            when: vec!["slow".into()],
            actions: vec![
                Action::ShedLow,
                Action::StopSampling,
                Action::InlineMore { factor: 4 },
            ],
            critical: false,
        },
        DegradationLevel {
            name: "failing".into(),
            when: vec!["errors".into()],
            actions: vec![
                Action::ShedNormal,
                Action::ShrinkCache { share: 0.5 },
                Action::TightenAdmission { share: 0.5 },
                Action::FreeIdleRunners,
            ],
            critical: true,
        },
    ];
}

/// Whether a submission of `p` is shed (anything else is fine: the run is waited for).
fn shed(ex: &Executor<u64, ()>, g: &Arc<Graph<u64, ()>>, p: Priority) -> bool {
    match ex.submit(g, 0, (), p) {
        Ok(t) => {
            t.wait().unwrap();
            false
        }
        Err(back) => {
            assert_eq!(back.reason, Refusal::Shed, "{p:?}");
            true
        }
    }
}

/// The scenario on a manual clock: returns the health after each second and the moves.
fn scenario(cfg: OptimizationConfig, name: &str) -> (Vec<Health>, Vec<HealthEvent>) {
    let clock = ManualClock::new(0);
    let (tx, rx) = mpsc::channel();
    let ex = Executor::<u64, ()>::builder(cfg.clone())
        .clock(clock.clone())
        .on_health(move |e| tx.send(e.clone()).unwrap())
        .build()
        .unwrap();
    let g = graph(Time::Manual(clock.clone()));
    let max = cfg.adaptive_concurrency.max_limit;
    // Per second: healthy, slow, failing, then healthy for five seconds.
    let plan = [0, 1, 2, 0, 0, 0, 0, 0];
    let mut healths = Vec::new();
    for (second, &input) in plan.iter().enumerate() {
        for _ in 0..20 {
            ex.run(&g, input, ()).unwrap();
        }
        clock.advance(S - clock.now() % S);
        let health = ex.health();
        let (low, normal, high) = (
            shed(&ex, &g, Priority::Low),
            shed(&ex, &g, Priority::Normal),
            shed(&ex, &g, Priority::High),
        );
        match health {
            Health::Healthy => assert_eq!((low, normal), (false, false), "{name} {second}"),
            Health::Degraded(1) => assert_eq!((low, normal), (true, false), "{name} {second}"),
            Health::Critical => {
                assert_eq!((low, normal), (true, true), "{name} {second}");
                assert!(ex.concurrency_limit() <= (max / 2).max(1), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!high, "{name}: High is never shed");
        healths.push(health);
    }
    let report = ex.report();
    let events: Vec<HealthEvent> = rx.try_iter().collect();
    assert_eq!(report.health.events, events, "{name}");
    let refused_low_normal = healths
        .iter()
        .map(|h| match h {
            Health::Healthy => 0,
            Health::Degraded(_) => 1,
            Health::Critical => 2,
        })
        .sum::<u64>();
    assert_eq!(report.runs.rejected_shed, refused_low_normal, "{name}");
    for row in &report.health.actions {
        assert_eq!(
            (row.taken, row.undone, row.active),
            (1, 1, false),
            "{name}: {row:?}"
        );
    }
    (healths, events)
}

#[test]
fn the_same_pressure_takes_the_same_actions_under_every_preset_and_level() {
    let mut first: Option<(Vec<Health>, Vec<HealthEvent>)> = None;
    for (name, mut cfg) in matrix::presets_at_levels() {
        configure(&mut cfg, Duration::from_secs(1), Duration::from_secs(3));
        let got = scenario(cfg, &name);
        let (healths, events) = &got;
        assert_eq!(
            healths,
            &[
                Health::Healthy,
                Health::Degraded(1),
                Health::Critical,
                // The dwell: 3 s from the move at 3 s.
                Health::Critical,
                Health::Critical,
                Health::Healthy,
                Health::Healthy,
                Health::Healthy,
            ],
            "{name}"
        );
        let ticks: Vec<u64> = events.iter().map(|e| e.at_ns / S).collect();
        assert_eq!(ticks, [2, 3, 6], "{name}");
        assert_eq!(
            events[0].taken,
            ["shed_low", "stop_sampling", "inline_more"]
        );
        assert_eq!(events[1].triggers, ["errors"], "{name}");
        assert_eq!(
            events[2].undone.len(),
            7,
            "{name}: every action of both levels"
        );
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "{name}: the same moves as the first setup"),
        }
    }
}

#[test]
fn the_real_clock_degrades_and_recovers() {
    let mut cfg = OptimizationConfig::latency();
    configure(
        &mut cfg,
        Duration::from_millis(20),
        Duration::from_millis(60),
    );
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let g = graph(Time::Real);
    // Failing runs until the critical level is in force (a few buckets at most).
    let start = std::time::Instant::now();
    while ex.health() != Health::Critical {
        for _ in 0..20 {
            ex.run(&g, 2, ()).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never degraded");
    }
    assert!(shed(&ex, &g, Priority::Normal));
    assert!(!shed(&ex, &g, Priority::High));
    // Healthy runs until it recovers: after the dwell, once the rule resolved.
    while ex.health() != Health::Healthy {
        for _ in 0..20 {
            ex.run(&g, 0, ()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(start.elapsed() < Duration::from_secs(20), "never recovered");
    }
    assert!(!shed(&ex, &g, Priority::Low));
    let report = ex.report();
    assert!(report.health.transitions >= 2);
    assert!(report.runs.rejected_shed >= 1);
}

#[test]
fn a_changed_degradation_section_undoes_the_actions_in_force() {
    let clock = ManualClock::new(0);
    let mut cfg = OptimizationConfig::latency();
    configure(&mut cfg, Duration::from_secs(1), Duration::from_secs(3));
    let ex = Executor::<u64, ()>::builder(cfg.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let g = graph(Time::Manual(clock.clone()));
    for _ in 0..20 {
        ex.run(&g, 2, ()).unwrap();
    }
    clock.advance(S);
    assert_eq!(ex.health(), Health::Critical);
    let limit = ex.concurrency_limit();
    // Another preset's sizes: the actions in force are put back over them.
    let mut same = cfg.clone();
    same.adaptive_concurrency.max_limit = 128;
    ex.reconfigure(same).unwrap();
    assert_eq!(ex.health(), Health::Critical);
    assert!(ex.concurrency_limit() <= 64.max(limit));
    // A changed section: healthy again, every action undone and counted.
    let mut other = cfg;
    other.degradation.min_dwell = Duration::from_secs(1);
    ex.reconfigure(other).unwrap();
    assert_eq!(ex.health(), Health::Healthy);
    assert!(!shed(&ex, &g, Priority::Low));
    let report = ex.report();
    assert!(report
        .health
        .actions
        .iter()
        .all(|a| !a.active && a.taken == 1 && a.undone == 1));
}

/// Feeds 20 runs of `input` per step of `time` (a bucket) until the health is `want`; on a
/// manual clock it must take at most `within` buckets, on the real clock a few seconds.
fn drive_until(
    ex: &Executor<u64, ()>,
    g: &Arc<Graph<u64, ()>>,
    time: &Time,
    input: u64,
    want: Health,
    within: usize,
    name: &str,
) {
    let res = ex.config().monitor.resolution;
    let start = std::time::Instant::now();
    let mut buckets = 0;
    while ex.health() != want {
        for _ in 0..20 {
            ex.run(g, input, ()).unwrap();
        }
        time.pass(res);
        buckets += 1;
        match time {
            Time::Manual(_) => assert!(buckets <= within, "{name}: not {want:?}"),
            Time::Real => assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name}: not {want:?}"
            ),
        }
    }
}

/// The monitor on one rule ("errors": error rate above a half) and one level of `actions`,
/// with a bucket of `res` and a dwell of one bucket.
fn one_level(cfg: &mut OptimizationConfig, res: Duration, actions: Vec<Action>) {
    cfg.monitor.resolution = res;
    cfg.monitor.windows = vec![res];
    cfg.monitor.rules = vec![AlertRule {
        window: res,
        above: 0.5,
        clear_below: 0.1,
        min_samples: 10,
        ..AlertRule::new("errors", Metric::ErrorRate)
    }];
    cfg.degradation.enabled = true;
    cfg.degradation.min_dwell = res;
    cfg.degradation.levels = vec![DegradationLevel {
        name: "lean".into(),
        when: vec!["errors".into()],
        actions,
        critical: false,
    }];
}

/// Every preset at every level on a manual clock (1 s buckets), then the latency preset on
/// the real clock (20 ms buckets).
fn every_setup(mut check: impl FnMut(&str, OptimizationConfig, Time, Duration)) {
    for (name, cfg) in matrix::presets_at_levels() {
        let time = Time::Manual(ManualClock::new(0));
        check(&name, cfg, time, Duration::from_secs(1));
    }
    let real = Duration::from_millis(20);
    check(
        "latency/real",
        OptimizationConfig::latency(),
        Time::Real,
        real,
    );
}

#[test]
fn bypass_large_payloads_stops_storing_heavy_outputs_until_undone() {
    every_setup(bypass_large_payloads);
}

fn bypass_large_payloads(name: &str, mut cfg: OptimizationConfig, time: Time, res: Duration) {
    use flujo_core::cache::StepFingerprint;
    use flujo_core::graph::TaskConfig;
    use std::sync::atomic::{AtomicU64, Ordering};

    one_level(
        &mut cfg,
        res,
        vec![Action::BypassLargePayloads { bytes: 100 }],
    );
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(time.clock())
        .cache_weigher(|out: &u64| *out as usize) // an output weighs its value in bytes
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let cached = Arc::new(
        Graph::build(|b| {
            b.task_with(
                "sized",
                move |x: u64, _: &mut _| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok(x)
                },
                TaskConfig::new().cacheable(StepFingerprint::builder("sized", 1).build()),
            )
        })
        .unwrap(),
    );
    let failing = graph(time.clone());
    // Computes each input once, then reads it from the cache: the calls it made.
    let twice = |x: u64| {
        let before = calls.load(Ordering::SeqCst);
        ex.run(&cached, x, ()).unwrap();
        ex.run(&cached, x, ()).unwrap();
        calls.load(Ordering::SeqCst) - before
    };
    assert_eq!(
        (twice(50), twice(500)),
        (1, 1),
        "{name}: healthy: both cached"
    );
    drive_until(&ex, &failing, &time, 2, Health::Degraded(1), 1, name);
    // A light output is still stored; a heavy one is computed every time.
    assert_eq!((twice(60), twice(600)), (1, 2), "{name}");
    drive_until(&ex, &failing, &time, 0, Health::Healthy, 2, name);
    assert_eq!(
        twice(700),
        1,
        "{name}: undone: heavy outputs are stored again"
    );
    let row = &ex.report().health.actions[0];
    assert_eq!(
        (row.action.as_str(), row.taken, row.undone),
        ("bypass_large_payloads", 1, 1),
        "{name}"
    );
}

#[test]
fn refuse_runs_refuses_try_run_beyond_its_bound_never_run_and_the_report_counts_it() {
    every_setup(refuse_runs);
}

fn refuse_runs(name: &str, mut cfg: OptimizationConfig, time: Time, res: Duration) {
    use flujo_runtime::TryRunError;
    one_level(&mut cfg, res, vec![Action::RefuseRuns { above: 0 }]);
    let ex = Executor::<u64, ()>::builder(cfg)
        .clock(time.clock())
        .build()
        .unwrap();
    let g = graph(time.clone());
    assert!(
        ex.try_run(&g, 0, ()).is_ok(),
        "{name}: healthy: not refused"
    );
    drive_until(&ex, &g, &time, 2, Health::Degraded(1), 1, name);
    match ex.try_run(&g, 7, ()) {
        Err(TryRunError::Refused(back)) => {
            assert_eq!((back.reason, back.input), (Refusal::Shed, 7), "{name}");
        }
        other => panic!("{name}: {other:?}"),
    }
    // `run` is never refused.
    assert!(ex.run(&g, 0, ()).is_ok(), "{name}");
    let runs = ex.report().runs;
    assert_eq!(runs.rejected_shed, 1, "{name}");
    assert_eq!(
        runs.submitted,
        runs.completed + runs.panicked + runs.handed_back + runs.rejected() + runs.in_flight,
        "{name}"
    );
    // Healthy again after the dwell: accepted.
    drive_until(&ex, &g, &time, 0, Health::Healthy, 2, name);
    assert_eq!(ex.try_run(&g, 0, ()).unwrap().output, Some(0), "{name}");
}
