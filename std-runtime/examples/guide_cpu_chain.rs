//! docs/guide.md, "CPU-bound chains on the calling thread": a chain of pure CPU steps run
//! inline by `Executor::run` (no hand-off to the pool), and the same graph run by the core's
//! `Runner` alone. It checks every output against plain Rust and the report's counts, and
//! exits non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_cpu_chain`

use std::process::ExitCode;

use flujo_core::graph::{Graph, NoClock};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::Executor;

const RUNS: u64 = 100_000;

/// One round of a 64-bit mix (SplitMix64's finaliser): the "CPU work" of each step.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The same pipeline in plain Rust: the reference the runs are checked against.
fn expected(x: u64) -> u64 {
    (0..8).fold(x, |z, i| mix(z.wrapping_add(i)))
}

/// Eight plain tasks in a sequence. Plain tasks (no policies) run in the interpreter's lean
/// loop when `fast_paths` is on.
fn chain() -> Graph<u64, ()> {
    Graph::build(|b| {
        let steps: Vec<_> = (0..8u64)
            .map(|i| {
                b.task(&format!("mix{i}"), move |z: u64, _| {
                    Ok(mix(z.wrapping_add(i)))
                })
            })
            .collect();
        b.sequence("chain", &steps)
    })
    .expect("a valid graph")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guide_cpu_chain: MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let graph = chain();

    // The settings that matter for inline CPU chains (docs/guide.md says what each costs):
    let mut cfg = OptimizationConfig::latency();
    cfg.pooling = true; // one pooled runner is reused by every run: no allocation per run
    cfg.fast_paths = true; // sequences of plain tasks take the lean loop
    cfg.telemetry.level = TelemetryLevel::Counters; // exact counts, no latency histograms
    cfg.telemetry.run_sample_period = 1024; // one run in 1024 has its steps timed
    cfg.workers = 1; // a chain never forks: the pool only serves submissions
    let ex = Executor::<u64, ()>::new(cfg).map_err(|e| format!("build: {e}"))?;

    // 1. Through the executor, on this thread.
    let mut sum = 0u64;
    for x in 0..RUNS {
        let done = ex
            .run(&graph, x, ())
            .map_err(|p| format!("run {x} panicked: {p:?}"))?;
        let out = done.output.ok_or(format!("run {x}: no output"))?;
        if done.outcome != Outcome::Succeeded || out != expected(x) {
            return Err(format!(
                "run {x}: {:?} {out}, want {}",
                done.outcome,
                expected(x)
            ));
        }
        sum = sum.wrapping_add(out);
    }

    // 2. The core's runner alone, no runtime: what a host without threads or std clocks does.
    let mut runner = Runner::new(RunnerConfig::default());
    let mut core_sum = 0u64;
    for x in 0..RUNS {
        let r = runner.run(&graph, x, (), &NoClock, &RunOptions::default());
        core_sum = core_sum.wrapping_add(r.output.ok_or(format!("core run {x}: no output"))?);
    }
    if core_sum != sum {
        return Err(format!("core sum {core_sum} != executor sum {sum}"));
    }

    // The report's counts are exact whatever the sampling: every run inline, one pooled
    // runner made (the first run's) and reused by all the others.
    let report = ex.report();
    let runs = &report.runs;
    if (runs.completed, runs.succeeded, runs.inline) != (RUNS, RUNS, RUNS) {
        return Err(format!("report runs {runs:?}"));
    }
    if report.pool.pool_misses != 1 || report.pool.pool_hits != RUNS - 1 {
        return Err(format!("pool: {:?}", report.pool));
    }
    if report.step("mix7").map(|s| s.executions) != Some(RUNS) {
        return Err("step mix7 did not run once per run".into());
    }
    println!(
        "guide_cpu_chain: {RUNS} inline runs and {RUNS} core runs agree (sum {sum:#x}); \
         {:.0} runs/s; one pooled runner made, reused {} times",
        report.throughput_runs_per_s, report.pool.pool_hits
    );
    Ok(())
}
