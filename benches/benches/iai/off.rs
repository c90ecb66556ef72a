//! W12_config_off under callgrind: one mixed workload that every optimization touches, run with
//! everything on and with each optimization switched off in turn; setup (the executor or
//! runner, the graph, warm-up runs) is not counted. `RUNS` runs per bench.
//!
//! The workload (`mixed_graph`), one run over a 1 KiB context (W8's `Ctx1K`):
//! 1. a cacheable step that costs about as much as hashing its input twice (a 64-round mix;
//!    the input is `i % 8`, so after warm-up every run is a hit of the result cache);
//! 2. W1's 50 plain `x + 1` tasks, then 50 of W2's (retry, validator, a shared breaker);
//! 3. W8's fan-out: 8 branches over the context, one writing, merged by overwrite;
//! 4. a pure fan-out of 16 plain `x + 1` branches, reduced by sum.
//!
//! - `mixed`: through `Executor::run`, latency preset, one worker, on a `ManualClock` moved
//!   10 µs per run (see [`TICKS_PER_RUN`]); ids `on` and `off_<name>` for every
//!   `Optimization` (`Optimization::ALL`, `with_off`).
//! - `mixed_core`: the core's `Runner::run` (`RunnerConfig::default()`), for the switches the
//!   core owns: `fast_paths`, `copy_on_write`, `result_cache` (its step cache, capacity 0),
//!   `breakers`.
//!
//! On one worker nothing forks, so `inline_cutoff` off should read as on (its time effect on
//! two workers is `W4_fanout_2thread/flujo_forked`); `adaptive_concurrency` limits `submit`,
//! which `run` does not pass, so what it shows is the per-run bookkeeping it keeps.
//! `benches/perfdoc.py` reads these summaries into the off-table of `docs/configuration.md`.
#![allow(non_snake_case)] // the group module is named after the workload id

use std::hint::black_box;
use std::sync::Arc;

use flujo_benches::TickClock;
use flujo_core::cache::StepFingerprint;
use flujo_core::context::MergeStrategy;
use flujo_core::graph::{Graph, ManualClock, ParallelOptions, StepError, TaskConfig};
use flujo_core::interp::{RunOptions, Runner, RunnerConfig};
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::config::{Optimization, OptimizationConfig};
use flujo_runtime::Executor;
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

use crate::w1_w2_w8_shared as shared;
use shared::{w8_branches, w8_context, Ctx1K, W8_BRANCHES, W8_WRITER};

/// Runs per bench (a multiple of the latency preset's sampling period, 64).
const RUNS: u64 = 256;
/// Warm-up runs: one sampling period, and every one of the 8 cache keys stored.
const WARM_UP: u64 = 64;
/// Distinct inputs, so the cacheable step hits after warm-up.
const KEYS: u64 = 8;
/// Branches of the pure fan-out.
const PURE: u64 = 16;

/// Hard `Ir` limits: the counts measured on 2026-12-07 (one iai run, `cargo bench -p
/// flujo-benches --bench iai`) plus 15%, rounded up to a thousand.
mod limits {
    /// Measured 12_791_324.
    pub const ON: u64 = 14_711_000;
    /// Measured 164_956_767.
    pub const OFF_POOLING: u64 = 189_701_000;
    /// Measured 16_721_604.
    pub const OFF_COPY_ON_WRITE: u64 = 19_230_000;
    /// Measured 16_241_912.
    pub const OFF_FAST_PATHS: u64 = 18_679_000;
    /// Measured 12_791_324.
    pub const OFF_INLINE_CUTOFF: u64 = 14_711_000;
    /// Measured 10_892_076.
    pub const OFF_RESULT_CACHE: u64 = 12_526_000;
    /// Measured 10_635_984.
    pub const OFF_TELEMETRY: u64 = 12_232_000;
    /// Measured 12_509_724.
    pub const OFF_BREAKERS: u64 = 14_387_000;
    /// Measured 12_791_324.
    pub const OFF_ADAPTIVE_CONCURRENCY: u64 = 14_711_000;
    /// Measured 10_068_619.
    pub const CORE_ON: u64 = 11_579_000;
    /// Measured 13_670_283.
    pub const CORE_OFF_FAST_PATHS: u64 = 15_721_000;
    /// Measured 14_057_099.
    pub const CORE_OFF_COPY_ON_WRITE: u64 = 16_166_000;
    /// Measured 9_985_547.
    pub const CORE_OFF_RESULT_CACHE: u64 = 11_484_000;
    /// Measured 9_774_219.
    pub const CORE_OFF_BREAKERS: u64 = 11_241_000;
}

fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

/// The cacheable step's work: 64 rounds of a multiply-xor mix (about what a keyed hash of its
/// 8-byte input costs twice), kept by `black_box`; its output is `x + 1000`.
fn cached_step(x: u64) -> u64 {
    let mut acc = x;
    for round in 0..64u64 {
        acc = (acc ^ round)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17);
    }
    black_box(acc);
    x + 1000
}

/// What one run of [`mixed_graph`] returns for input `x`.
fn want(x: u64) -> u64 {
    let chain = x + 1000 + 100;
    // Readers add byte 1 of their part, `(p * 128 + 1) as u8`: 1 for even parts, 129 for odd.
    let fan: u64 = (0..W8_BRANCHES as u64)
        .map(|p| chain + u64::from((p * 128 + 1) as u8))
        .sum();
    PURE * (fan + 1)
}

/// The mixed workload (see the module docs).
fn mixed_graph() -> Graph<u64, Ctx1K> {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 5,
            open_ticks: 100,
            ..BreakerConfig::DEFAULT
        })
        .expect("a valid breaker"),
    );
    Graph::build(|b| {
        let mut steps = vec![b.task_with(
            "cached",
            |x, _| Ok(cached_step(x)),
            TaskConfig::new().cacheable(StepFingerprint::builder("w12-mixed", 1).build()),
        )];
        for i in 0..50 {
            steps.push(b.task(&format!("plain{i}"), |x, _| Ok(x + 1)));
        }
        for i in 0..50 {
            let cfg = TaskConfig::new()
                .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap())
                .breaker(breaker.clone())
                .validate(|x: &u64, _: &Ctx1K| {
                    if *x > 0 {
                        Ok(())
                    } else {
                        Err(StepError::validation("zero"))
                    }
                });
            steps.push(b.task_with(&format!("policy{i}"), |x, _| Ok(x + 1), cfg));
        }
        let branches = w8_branches(b);
        steps.push(b.parallel(
            "fan",
            &branches,
            |a, x| a + x,
            ParallelOptions::new().merge(MergeStrategy::Overwrite),
        ));
        let pure: Vec<_> = (0..PURE)
            .map(|i| b.task(&format!("pure{i}"), |x, _| Ok(x + 1)))
            .collect();
        steps.push(b.parallel("pure", &pure, |a, x| a + x, ParallelOptions::new()));
        b.sequence("W12_mixed", &steps)
    })
    .expect("the mixed workload builds")
}

/// The executor, the graph, the context, the clock, and whether every measured run must hit
/// the result cache (it is on).
type ExecSetup = (
    Executor<u64, Ctx1K>,
    Graph<u64, Ctx1K>,
    Ctx1K,
    ManualClock,
    bool,
);

/// Ticks (ns) the executor's clock moves per run: about one run's time on these VMs. The
/// clock is a `ManualClock` so that what runs on a timer (the monitor's poll, which also
/// reads `/proc` for BBR admission) runs at the same points in every measurement: on the real
/// clock it ran as often as valgrind's slowness let it, and the count varied run to run.
const TICKS_PER_RUN: u64 = 10_000;

/// An executor of the latency preset on one worker with `off` switched off, warmed up.
fn executor(off: Option<Optimization>) -> ExecSetup {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1;
    if let Some(o) = off {
        cfg = cfg.with_off(o);
    }
    let clock = ManualClock::new(0);
    let cache_on = cfg.is_on(Optimization::ResultCache);
    let ex = Executor::builder(cfg)
        .clock(clock.clone())
        .build()
        .expect("a preset is valid");
    let g = mixed_graph();
    let mut ctx = w8_context();
    for i in 0..WARM_UP {
        clock.advance(TICKS_PER_RUN);
        let done = ex.run(&g, i % KEYS, ctx).expect("no panic");
        assert_eq!(done.output, Some(want(i % KEYS)));
        ctx = done.context;
    }
    (ex, g, ctx, clock, cache_on)
}

fn run_executor(setup: ExecSetup) -> (u64, ExecSetup) {
    let (ex, g, mut ctx, clock, cache_on) = setup;
    let mut sum = 0u64;
    let mut hits = 0;
    for i in 0..RUNS {
        clock.advance(TICKS_PER_RUN);
        let done = ex.run(&g, black_box(i % KEYS), ctx).expect("no panic");
        sum = sum.wrapping_add(done.output.expect("the run succeeds"));
        hits += done.counters.get(Counter::CacheHits);
        ctx = done.context;
    }
    assert_eq!(sum, (0..RUNS).map(|i| want(i % KEYS)).sum::<u64>());
    assert_eq!(ctx.parts[W8_WRITER][0], (want_chain(RUNS - 1)) as u8);
    assert_eq!(
        hits,
        if cache_on { RUNS } else { 0 },
        "every run hits, or none"
    );
    (sum, (ex, g, ctx, clock, cache_on))
}

/// What the writing branch writes on the last run: its input, the chain's output.
fn want_chain(i: u64) -> u64 {
    i % KEYS + 1100
}

type CoreSetup = (Runner<u64, Ctx1K>, Graph<u64, Ctx1K>, Ctx1K);

/// The core's runner (`RunnerConfig::default()`, changed by `f`), warmed up.
fn runner(f: fn(&mut RunnerConfig)) -> CoreSetup {
    let mut cfg = RunnerConfig::default();
    f(&mut cfg);
    let mut runner = Runner::new(cfg);
    let g = mixed_graph();
    let mut ctx = w8_context();
    let clock = TickClock::new(0);
    for i in 0..WARM_UP {
        let r = runner.run(&g, i % KEYS, ctx, &clock, &RunOptions::default());
        assert_eq!(r.output, Some(want(i % KEYS)));
        ctx = r.context;
    }
    (runner, g, ctx)
}

fn run_core(setup: CoreSetup) -> (u64, CoreSetup) {
    let (mut runner, g, mut ctx) = setup;
    let clock = TickClock::new(0);
    let opts = RunOptions::default();
    let mut sum = 0u64;
    for i in 0..RUNS {
        clock.advance(1);
        let r = runner.run(&g, black_box(i % KEYS), ctx, &clock, &opts);
        sum = sum.wrapping_add(r.output.expect("the run succeeds"));
        ctx = r.context;
    }
    assert_eq!(sum, (0..RUNS).map(|i| want(i % KEYS)).sum::<u64>());
    assert_eq!(ctx.parts[W8_WRITER][0], (want_chain(RUNS - 1)) as u8);
    (sum, (runner, g, ctx))
}

fn core_on(_: &mut RunnerConfig) {}
fn core_off_fast_paths(c: &mut RunnerConfig) {
    c.fast_paths = false;
}
fn core_off_copy_on_write(c: &mut RunnerConfig) {
    c.copy_on_write = false;
}
fn core_off_result_cache(c: &mut RunnerConfig) {
    c.cache_capacity = 0;
}
fn core_off_breakers(c: &mut RunnerConfig) {
    c.breakers = false;
}

mod w12_config_off {
    use super::*;

    #[library_benchmark]
    #[bench::on(args = (None), setup = executor, config = limit(limits::ON))]
    #[bench::off_pooling(
        args = (Some(Optimization::Pooling)), setup = executor,
        config = limit(limits::OFF_POOLING))]
    #[bench::off_copy_on_write(
        args = (Some(Optimization::CopyOnWrite)), setup = executor,
        config = limit(limits::OFF_COPY_ON_WRITE))]
    #[bench::off_fast_paths(
        args = (Some(Optimization::FastPaths)), setup = executor,
        config = limit(limits::OFF_FAST_PATHS))]
    #[bench::off_inline_cutoff(
        args = (Some(Optimization::InlineCutoff)), setup = executor,
        config = limit(limits::OFF_INLINE_CUTOFF))]
    #[bench::off_result_cache(
        args = (Some(Optimization::ResultCache)), setup = executor,
        config = limit(limits::OFF_RESULT_CACHE))]
    #[bench::off_telemetry(
        args = (Some(Optimization::Telemetry)), setup = executor,
        config = limit(limits::OFF_TELEMETRY))]
    #[bench::off_breakers(
        args = (Some(Optimization::Breakers)), setup = executor,
        config = limit(limits::OFF_BREAKERS))]
    #[bench::off_adaptive_concurrency(
        args = (Some(Optimization::AdaptiveConcurrency)), setup = executor,
        config = limit(limits::OFF_ADAPTIVE_CONCURRENCY))]
    fn mixed(setup: ExecSetup) -> (u64, ExecSetup) {
        run_executor(setup)
    }

    #[library_benchmark]
    #[bench::on(args = (core_on), setup = runner, config = limit(limits::CORE_ON))]
    #[bench::off_fast_paths(
        args = (core_off_fast_paths), setup = runner,
        config = limit(limits::CORE_OFF_FAST_PATHS))]
    #[bench::off_copy_on_write(
        args = (core_off_copy_on_write), setup = runner,
        config = limit(limits::CORE_OFF_COPY_ON_WRITE))]
    #[bench::off_result_cache(
        args = (core_off_result_cache), setup = runner,
        config = limit(limits::CORE_OFF_RESULT_CACHE))]
    #[bench::off_breakers(
        args = (core_off_breakers), setup = runner,
        config = limit(limits::CORE_OFF_BREAKERS))]
    fn mixed_core(setup: CoreSetup) -> (u64, CoreSetup) {
        run_core(setup)
    }

    library_benchmark_group!(name = W12_config_off; benchmarks = mixed, mixed_core);
}
pub use w12_config_off::W12_config_off;
