//! Bottlenecks (`Report::bottlenecks`): the critical-path shares of sampled runs, under every
//! preset, every telemetry level and both clocks (`common/matrix.rs`).
//!
//! What each telemetry level gives: `off` and `counters` sample no run (no step latency is
//! measured), so the report has no bottleneck rows; `histograms` and `events` sample one run
//! in `telemetry.run_sample_period` per pooled runner, and every sampled run is split into
//! rows. The tests here set the period to 1, so that every run is sampled whatever the
//! preset's own period is.

#[path = "common/matrix.rs"]
mod matrix;

use matrix::{each_setup, Setup, Time};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_runtime::config::TelemetryLevel;
use flujo_runtime::report::{BottleneckKind, BottleneckRow, Report};
use flujo_runtime::{Finished, Priority};

/// How long the slow step takes: a few milliseconds of the setup's clock.
const SLOW: Duration = Duration::from_millis(4);
/// How long the other timed steps take on the manual clock (on the real one they take what
/// they take: a sleep this short oversleeps by more than itself on a loaded machine).
const BRISK: Duration = Duration::from_micros(100);

/// Lets [`BRISK`] pass on the manual clock.
fn brisk(time: &Time) {
    if let Time::Manual(c) = time {
        c.advance(flujo_runtime::clock::ticks(BRISK));
    }
}

/// A pipeline with one deliberately slow step inside a fan-out, beside a branch that takes
/// no time, and the other node kinds around it (a map, a loop, a task that falls back), so
/// that the records of every kind are matched to the graph.
fn pipeline(time: &Time) -> Graph<u64, ()> {
    Graph::build(|b| {
        let t = time.clone();
        let prepare = b.task("prepare", move |x, _| {
            brisk(&t);
            Ok(x)
        });
        let quick = b.task("quick", |x, _| Ok(x));
        let t = time.clone();
        let slow = b.task("slow", move |x, _| {
            t.pass(SLOW);
            Ok(x)
        });
        // The slow branch declared last: on the manual clock the quick branch, forked, may
        // see the slow one's advance, and a tie goes to the later branch.
        let fan = b.parallel(
            "fan",
            &[quick, slow],
            |x, y| x + y,
            ParallelOptions::default(),
        );
        let item = b.task("item", |x, _| Ok(x));
        let each = b.map(
            "each",
            |x, _, items| {
                for i in 0..3 {
                    items
                        .push(x + i)
                        .map_err(|_| StepError::permanent("too many items"))?;
                }
                Ok(0)
            },
            item,
            |x, y| x + y,
            MapOptions::new().max_items(4),
        );
        let tick = b.task("tick", |x, _| Ok(x));
        let poll = b.loop_("poll", tick, LoopOptions::new().max_iterations(2));
        let rescue = b.task("rescue", |x, _| Ok(x));
        // A permanent failure falls back (the default recovery table).
        let cfg = TaskConfig::new().fallback(rescue);
        let flaky = b.task_with("flaky", |_, _| Err(StepError::permanent("always")), cfg);
        let t = time.clone();
        let finish = b.task("finish", move |x, _| {
            brisk(&t);
            Ok(x)
        });
        b.sequence("pipeline", &[prepare, fan, each, poll, flaky, finish])
    })
    .unwrap()
}

/// Each graph's shares sum to 1 (within rounding), each in `[0, 1]`.
fn assert_shares_sum_to_one(name: &str, rows: &[BottleneckRow]) {
    let mut sums: HashMap<u32, f64> = HashMap::new();
    for r in rows {
        assert!((0.0..=1.0).contains(&r.share), "{name}: {r:?}");
        *sums.entry(r.graph_id).or_default() += r.share;
    }
    for (graph, sum) in sums {
        assert!((sum - 1.0).abs() < 1e-9, "{name}: graph {graph}: {sum}");
    }
}

fn sampled_every_run(setup: &Setup) -> Setup {
    let mut s = setup.clone();
    s.cfg.telemetry.run_sample_period = 1;
    s
}

#[test]
fn the_slow_step_is_the_top_bottleneck_under_every_setup() {
    each_setup(2, |setup| {
        let setup = sampled_every_run(setup);
        let name = &setup.name;
        let ex = setup.executor::<u64, ()>();
        let g = Arc::new(pipeline(&setup.time));
        const INLINE: u64 = 4;
        const SUBMITTED: u64 = 4;
        for i in 0..INLINE {
            let done = ex.run(&g, i, ()).unwrap();
            assert_eq!(done.outcome, Outcome::Succeeded, "{name}");
        }
        let report = ex.report();
        assert_eq!(report.telemetry.bottleneck_runs_skipped, 0, "{name}");
        let rows = &report.bottlenecks;
        if setup.cfg.telemetry.level < TelemetryLevel::Histograms {
            assert!(rows.is_empty(), "{name}: no run is sampled: {rows:?}");
            assert!(report.to_string().contains("(no sampled runs)"), "{name}");
            return;
        }
        assert_shares_sum_to_one(name, rows);
        // On the manual clock the slow step is the top row. On the real clock it is the top
        // step; a fan-out's fork and join can hold more on a loaded machine (a forked
        // branch waits for a pool thread to wake: 8 to 18 ms a run was seen here at a load
        // average of 10), and that is the fan-out's share, rightly.
        let top = match setup.time {
            Time::Manual(_) => &rows[0],
            Time::Real => rows
                .iter()
                .find(|r| r.kind == BottleneckKind::Step)
                .expect("a step row"),
        };
        assert_eq!(
            (top.step.as_str(), top.kind, top.graph.as_str()),
            ("slow", BottleneckKind::Step, "pipeline"),
            "{name}: {rows:#?}"
        );
        assert_eq!((top.runs, top.graph_runs), (INLINE, INLINE), "{name}");
        assert!(top.critical_ns >= INLINE * SLOW.as_nanos() as u64, "{name}");
        assert!(
            rows.iter().all(|r| r.kind != BottleneckKind::Queue),
            "{name}: inline runs"
        );
        // Every row is one of the graph's nodes or the run overhead; the quick branch, never
        // longer than the slow one, is never on the path.
        let known = [
            "prepare",
            "slow",
            "fan",
            "item",
            "each",
            "tick",
            "poll",
            "flaky",
            "rescue",
            "finish",
            "(queue)",
            "(run overhead)",
        ];
        for r in rows {
            assert!(known.contains(&r.step.as_str()), "{name}: {r:?}");
        }
        if let Time::Manual(_) = setup.time {
            // The manual clock moves only in the timed steps: the slow one holds 4 ms of each
            // run's 4.2 ms, the rest is prepare's and finish's; nothing else holds any.
            let share = SLOW.as_nanos() as f64 / (SLOW + 2 * BRISK).as_nanos() as f64;
            assert!((top.share - share).abs() < 1e-9, "{name}: {rows:#?}");
            for step in ["prepare", "finish"] {
                let row = rows.iter().find(|r| r.step == step).expect(step);
                assert_eq!(row.critical_ns, INLINE * BRISK.as_nanos() as u64, "{name}");
            }
            assert!(
                rows[3..].iter().all(|r| r.critical_ns == 0),
                "{name}: {rows:#?}"
            );
        }
        let text = report.to_string();
        assert!(text.contains("bottlenecks"), "{name}");
        assert!(text.contains("slow"), "{name}");

        // Submitted runs add their queue waits (none on the manual clock, which does not
        // move while they wait); the slow step stays the top step.
        for i in 0..SUBMITTED {
            let ticket = ex
                .submit(&g, i, (), Priority::Normal)
                .unwrap_or_else(|r| panic!("{name}: refused: {}", r.reason));
            match ticket.wait().unwrap() {
                Finished::Ran(done) => assert_eq!(done.outcome, Outcome::Succeeded, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let report = ex.report();
        let rows = &report.bottlenecks;
        assert_eq!(report.telemetry.bottleneck_runs_skipped, 0, "{name}");
        assert_shares_sum_to_one(name, rows);
        let top_step = rows
            .iter()
            .find(|r| r.kind == BottleneckKind::Step)
            .expect("a step");
        assert_eq!(top_step.step, "slow", "{name}: {rows:#?}");
        assert_eq!(top_step.graph_runs, INLINE + SUBMITTED, "{name}");
        let queue = rows.iter().find(|r| r.kind == BottleneckKind::Queue);
        match setup.time {
            Time::Manual(_) => assert!(queue.is_none(), "{name}: {rows:#?}"),
            Time::Real => assert!(queue.is_some_and(|q| q.runs <= SUBMITTED), "{name}"),
        }
    });
}

#[test]
fn a_run_that_waited_in_the_queue_shows_its_wait() {
    // One worker: the first run holds it (its first step waits until the second run is
    // queued) while its slow step moves the manual clock, so the second run waits at least
    // that long in the queue.
    let clock = flujo_core::graph::ManualClock::new(0);
    let time = Time::Manual(clock.clone());
    let queued = Arc::new(AtomicBool::new(false));
    let g = Arc::new(
        Graph::<u64, ()>::build(|b| {
            let q = Arc::clone(&queued);
            let hold = b.task("hold", move |x, _| {
                let until = Instant::now() + Duration::from_secs(10);
                while x == 0 && !q.load(Ordering::Acquire) && Instant::now() < until {
                    thread::yield_now();
                }
                Ok(x)
            });
            let t = time.clone();
            let slow = b.task("slow", move |x, _| {
                t.pass(SLOW);
                Ok(x)
            });
            b.sequence("held", &[hold, slow])
        })
        .unwrap(),
    );
    for preset in flujo_runtime::config::OptimizationConfig::PRESETS {
        let mut cfg = flujo_runtime::config::OptimizationConfig::preset(preset).unwrap();
        cfg.workers = 1;
        cfg.telemetry.level = TelemetryLevel::Histograms;
        cfg.telemetry.run_sample_period = 1;
        let ex = flujo_runtime::Executor::builder(cfg)
            .clock(clock.clone())
            .build()
            .unwrap();
        queued.store(false, Ordering::Release);
        let first = ex.submit(&g, 0, (), Priority::Normal).unwrap();
        let second = ex.submit(&g, 1, (), Priority::Normal).unwrap();
        queued.store(true, Ordering::Release);
        for t in [first, second] {
            assert!(matches!(t.wait().unwrap(), Finished::Ran(_)), "{preset}");
        }
        let report: Report = ex.report();
        let rows = &report.bottlenecks;
        assert_shares_sum_to_one(preset, rows);
        let queue = rows
            .iter()
            .find(|r| r.kind == BottleneckKind::Queue)
            .unwrap_or_else(|| panic!("{preset}: {rows:#?}"));
        assert!(
            queue.critical_ns >= SLOW.as_nanos() as u64,
            "{preset}: {rows:#?}"
        );
        let slow = rows.iter().find(|r| r.step == "slow").expect("slow");
        assert_eq!(slow.critical_ns, 2 * SLOW.as_nanos() as u64, "{preset}");
        assert_eq!(slow.graph_runs, 2, "{preset}");
    }
}

#[test]
fn runs_whose_records_did_not_fit_are_skipped_and_counted() {
    let mut cfg = flujo_runtime::config::OptimizationConfig::latency();
    cfg.telemetry.level = TelemetryLevel::Histograms;
    cfg.telemetry.run_sample_period = 1;
    cfg.max_records = 2;
    let ex = flujo_runtime::Executor::<u64, ()>::new(cfg).unwrap();
    let g = pipeline(&Time::Real);
    for i in 0..3 {
        ex.run(&g, i, ()).unwrap();
    }
    let report = ex.report();
    assert!(report.telemetry.records_dropped > 0);
    assert_eq!(report.telemetry.bottleneck_runs_skipped, 3);
    assert!(report.bottlenecks.is_empty());
}
