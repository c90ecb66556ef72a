//! W18_cache_bypass: a cacheable step whose keys never repeat, run through `Executor::run`
//! on one worker (latency preset), shared by the criterion (`peers/w18_cache_bypass.rs`) and
//! instruction-count (`iai/w18_cache_bypass.rs`) benches. Three setups of the same graph:
//!
//! - `cache_on`: the result cache on, no bypass: every run computes the key, misses, stores
//!   (and evicts once the cache is full);
//! - `cache_off`: the result cache switched off: the step just runs;
//! - `bypass`: the cache on with the automatic cache bypass (`degradation.cache_bypass`,
//!   default settings), warmed past the first window so the step is bypassed: one run in
//!   `probe_every` (100) probes, the rest skip the cache before the key is computed.
//!
//! The goal: `bypass` within 10 % of `cache_off`.
#![allow(dead_code)] // each bench target uses its part

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, TaskConfig};
use flujo_runtime::config::{CacheBypass, OptimizationConfig};
use flujo_runtime::Executor;

/// The graph: a cacheable `parse` step, then two plain steps.
pub fn w18_graph() -> Graph<u64, ()> {
    Graph::build(|b| {
        let parse = b.task_with(
            "parse",
            |x: u64, _: &mut _| Ok(x.wrapping_mul(3).wrapping_add(1)),
            TaskConfig::new().cacheable(StepFingerprint::builder("w18-parse", 1).build()),
        );
        let a = b.task("a", |x, _| Ok(x + 1));
        let c = b.task("b", |x, _| Ok(x + 2));
        b.sequence("W18", &[parse, a, c])
    })
    .expect("W18 builds")
}

/// What run `x` returns.
pub fn w18_expected(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(4)
}

/// The three setups, by function id.
pub const SETUPS: [&str; 3] = ["cache_on", "cache_off", "bypass"];

/// The configuration of setup `name` (one of [`SETUPS`]).
pub fn w18_config(name: &str) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1;
    match name {
        "cache_on" => cfg.result_cache.enabled = true,
        "cache_off" => cfg.result_cache.enabled = false,
        "bypass" => {
            cfg.result_cache.enabled = true;
            cfg.degradation.cache_bypass = CacheBypass {
                enabled: true,
                ..CacheBypass::default()
            };
        }
        other => panic!("no W18 setup {other}"),
    }
    cfg
}

/// An executor of setup `name` that already ran `warm_up` never-repeating inputs (from
/// `u64::MAX / 2` down, so the measured inputs from 0 up never meet them). For `bypass`, it
/// checks the step is bypassed.
pub fn w18_warmed(name: &str, warm_up: u64) -> (Executor<u64, ()>, Graph<u64, ()>) {
    let ex = Executor::new(w18_config(name)).expect("valid");
    let g = w18_graph();
    for i in 0..warm_up {
        let x = u64::MAX / 2 - i;
        let done = ex.run(&g, x, ()).expect("no panic");
        assert_eq!(done.output, Some(w18_expected(x)));
    }
    let steps = ex.report().health.selection.steps;
    assert_eq!(
        steps.first().is_some_and(|r| r.bypassed),
        name == "bypass",
        "{name}: {steps:?}"
    );
    (ex, g)
}
