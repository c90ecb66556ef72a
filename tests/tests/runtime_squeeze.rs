//! Memory under pressure through the public API: while payloads grow, the engine's exact held
//! bytes stay under their budgets; a memory squeeze (ballast held by "another part of the
//! process") takes the memory level, whose actions shrink the cache to a share of its budget
//! and free idle runners, and the level is undone once the ballast is gone. Under every preset
//! and telemetry level, on a manual clock (the dwell) and on the real one. Resident memory is
//! sampled and printed (`--nocapture`), not asserted: it is the process's, not the engine's.
//!
//! One test in this file, so no other test's allocations move the resident memory it reads.

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::Arc;
use std::time::Duration;

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, ManualClock, TaskConfig};
use flujo_runtime::config::{Action, DegradationLevel, OptimizationConfig};
use flujo_runtime::monitor::health::Health;
use flujo_runtime::monitor::resources;
use flujo_runtime::Executor;
use matrix::Time;

/// The result cache's byte budget.
const CACHE_BYTES: usize = 4 << 20;
/// The share of it the memory level keeps.
const SHRUNK: f64 = 0.25;
/// What the squeeze holds: well over the budget's headroom.
const BALLAST: usize = 96 << 20;

fn rss() -> u64 {
    resources::read().resident_bytes.unwrap_or(0)
}

#[test]
fn held_bytes_stay_under_their_budgets_while_payloads_grow_and_a_squeeze_shrinks_the_cache() {
    let mut setups: Vec<(String, OptimizationConfig, Time)> = matrix::presets_at_levels()
        .into_iter()
        .map(|(name, cfg)| (name, cfg, Time::Manual(ManualClock::new(0))))
        .collect();
    setups.push((
        "latency/real".into(),
        OptimizationConfig::latency(),
        Time::Real,
    ));
    for (name, cfg, time) in setups {
        squeeze(&name, cfg, time);
    }
}

fn squeeze(name: &str, mut cfg: OptimizationConfig, time: Time) {
    let base = rss();
    cfg.result_cache.enabled = true;
    cfg.result_cache.max_bytes = CACHE_BYTES;
    cfg.degradation.enabled = true;
    let dwell = match time {
        Time::Manual(_) => Duration::from_secs(1),
        Time::Real => Duration::from_millis(20),
    };
    cfg.degradation.min_dwell = dwell;
    // The health is evaluated as a bucket closes.
    cfg.monitor.resolution = dwell;
    cfg.monitor.windows = vec![dwell];
    cfg.degradation.memory.budget_bytes = base + (BALLAST as u64) * 2 / 3;
    cfg.degradation.levels = vec![DegradationLevel {
        name: "memory".into(),
        when: vec!["memory".into()],
        actions: vec![
            Action::ShrinkCache { share: SHRUNK },
            Action::FreeIdleRunners,
        ],
        critical: false,
    }];
    let ex = Executor::<Vec<u8>, ()>::builder(cfg)
        .clock(time.clock())
        .cache_weigher(|out: &Vec<u8>| out.len())
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // A cacheable step whose output is as many KiB as its input has bytes (its weight: its
    // length).
    let g = Arc::new(
        Graph::build(|b| {
            b.task_with(
                "grow",
                |x: Vec<u8>, _: &mut _| Ok(vec![x[0]; x.len() * 1024]),
                TaskConfig::new().cacheable(StepFingerprint::builder("grow", 1).build()),
            )
        })
        .unwrap(),
    );
    // Distinct keys, payloads from 1 KiB to 256 KiB: far more than the budget in all.
    // Returns the cache's peak weight.
    let run_all = |budget: usize, what: &str| {
        let mut peak = 0;
        for kib in 1..=256usize {
            let input = vec![(kib % 251) as u8; kib];
            let out = ex.run(&g, input, ()).unwrap().output.unwrap();
            assert_eq!(out.len(), kib * 1024, "{name}");
            let m = ex.report().memory;
            assert!(
                m.cache_weight_bytes <= budget as u64,
                "{name} {what}: {} cached bytes over the budget {budget}",
                m.cache_weight_bytes
            );
            peak = peak.max(m.cache_weight_bytes);
        }
        peak
    };
    let peak = run_all(CACHE_BYTES, "unpressed");
    // A shard takes its share of the budget: a sharded cache holds fewer of the largest payloads.
    assert!(
        peak > (CACHE_BYTES / 4) as u64,
        "{name}: the cache filled ({peak})"
    );
    let first_peak = peak;
    let unpressed_rss = rss();

    // The squeeze: the memory level is taken at the next poll, and the cache shrinks.
    let mut ballast = vec![0u8; BALLAST];
    for page in ballast.chunks_mut(4096) {
        page[0] = 1;
    }
    std::hint::black_box(&ballast);
    let start = std::time::Instant::now();
    for bucket in 1.. {
        time.pass(dwell);
        ex.poll_monitor();
        if ex.health() == Health::Degraded(1) {
            break;
        }
        match time {
            Time::Manual(_) => panic!("{name}: not taken at the first bucket's end"),
            Time::Real => assert!(bucket < 500, "{name}: not taken in {:?}", start.elapsed()),
        }
    }
    let shrunk = (CACHE_BYTES as f64 * SHRUNK) as usize;
    assert!(
        ex.report().memory.cache_weight_bytes <= shrunk as u64,
        "{name}: the cache shrank at once"
    );
    run_all(shrunk, "squeezed");
    let squeezed_rss = rss();

    // The ballast given back: undone after the dwell.
    drop(ballast);
    let start = std::time::Instant::now();
    while ex.health() != Health::Healthy {
        time.pass(dwell);
        ex.poll_monitor();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name}: not undone"
        );
    }
    let report = ex.report();
    for row in &report.health.actions {
        assert_eq!(
            (row.taken, row.undone, row.active),
            (1, 1, false),
            "{name}: {row:?}"
        );
    }
    let peak = run_all(CACHE_BYTES, "recovered");
    assert!(
        peak > shrunk as u64,
        "{name}: the full budget is used again ({peak})"
    );
    println!(
        "{name}: cache peak {first_peak} bytes, {peak} after recovery; resident {:.1} MiB at start, {:.1} unpressed, {:.1} squeezed, {:.1} after",
        base as f64 / 1048576.0,
        unpressed_rss as f64 / 1048576.0,
        squeezed_rss as f64 / 1048576.0,
        rss() as f64 / 1048576.0,
    );
}
