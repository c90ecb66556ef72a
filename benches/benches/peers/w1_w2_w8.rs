//! W1_chain, W1_executor_run, W2_chain_policies and W8_context: the interpreter on a chain of
//! 100 trivial tasks (against a plain loop of the same closures), the same chain through
//! `Executor::run` under each preset (against the core `Runner` it wraps), the same chain with
//! policies on (against the chain without them), and an 8-branch fan-out over a 1 KiB context
//! with one writer (against deep-cloning the context per branch).
use std::hint::black_box;

use criterion::Criterion;

#[path = "../shared/w1_w2_w8.rs"]
mod shared;
use flujo_benches::TickClock;
use flujo_core::graph::NoClock;
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};
use flujo_core::telemetry::Counter;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::Executor;
use shared::{
    deep_clone_fan_out, w1_graph, w1_steps, w2_graph, w2_runner, w8_context, w8_graph, w8_step,
    W8_WRITER,
};

/// Each implementation's answer, checked before anything is measured.
fn check() {
    let opts = RunOptions::default();
    let (w1, w2) = (w1_graph(), w2_graph());
    let mut runner = Runner::new(RunnerConfig::default());
    let mut w2_runner = w2_runner();
    let clock = TickClock::new(0);
    for input in [0u64, 7, 1 << 40] {
        let r = runner.run(&w1, input, (), &NoClock, &opts);
        assert_eq!(
            (r.outcome, r.output, r.records.len()),
            (Outcome::Succeeded, Some(input + 100), 100)
        );
        let r = w2_runner.run(&w2, input, (), &clock, &opts);
        assert_eq!(
            (r.outcome, r.output, r.records.len()),
            (Outcome::Succeeded, Some(input + 100), 100)
        );
        assert!(r.records.iter().all(|rec| rec.attempts == 1));
        assert_eq!(r.counters.get(Counter::StepsSucceeded), 100);
        let floor = w1_steps().iter().fold(input, |x, f| f(x));
        assert_eq!(floor, input + 100);
    }

    let w8 = w8_graph();
    let mut runner = Runner::new(RunnerConfig::default());
    let mut ctx = w8_context();
    let mut peer_ctx = w8_context();
    for input in 1..4u64 {
        let r = runner.run(&w8, input, ctx, &NoClock, &opts);
        assert_eq!(r.outcome, Outcome::Succeeded);
        let out = r.output.expect("the fan-out succeeds");
        ctx = r.context;
        let peer_out = deep_clone_fan_out(&mut peer_ctx, input);
        assert_eq!(out, peer_out, "same reduce");
        assert_eq!(ctx, peer_ctx, "same merged context");
        assert_eq!(
            ctx.parts[W8_WRITER][0], input as u8,
            "the writer's change is merged"
        );
    }
    assert_eq!(
        w8_step(0)(5, &w8_context()),
        5 + u64::from(w8_context().parts[0][1])
    );
}

/// The criterion groups `W1_chain`, `W2_chain_policies`, `W8_context`.
pub fn benches(c: &mut Criterion) {
    check();
    let opts = RunOptions::default();

    let mut group = c.benchmark_group("W1_chain");
    let w1 = w1_graph();
    let mut runner = Runner::new(RunnerConfig::default());
    group.bench_function("flujo", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            runner.run(&w1, black_box(i), (), &NoClock, &opts).output
        });
    });
    let steps = w1_steps();
    group.bench_function("loop", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let mut x = black_box(i);
            for step in &steps {
                x = step(black_box(x));
            }
            x
        });
    });
    group.finish();

    // The twin of iai's W1_executor_run: what a host pays per inline run on top of the core.
    let mut group = c.benchmark_group("W1_executor_run");
    for (id, mut cfg) in [
        ("latency", OptimizationConfig::latency()),
        ("throughput", OptimizationConfig::throughput()),
        ("low_memory", OptimizationConfig::low_memory()),
    ] {
        cfg.workers = 1;
        let ex = Executor::<u64, ()>::new(cfg).expect("a preset is valid");
        let run = |i: u64| ex.run(&w1, i, ()).expect("no panic").output;
        assert_eq!(run(7), Some(107));
        group.bench_function(id, |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                run(black_box(i))
            });
        });
    }
    group.bench_function("core_runner", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            runner.run(&w1, black_box(i), (), &NoClock, &opts).output
        });
    });
    group.finish();

    let mut group = c.benchmark_group("W2_chain_policies");
    let w2 = w2_graph();
    let mut w2_runner = w2_runner();
    let clock = TickClock::new(0);
    // Checked before measuring (a filter may skip the bench itself).
    let r = w2_runner.run(&w2, 1, (), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(1 + shared::CHAIN as u64));
    let latencies = w2_runner
        .telemetry()
        .expect("on")
        .latency_histogram()
        .count();
    assert_eq!(latencies, shared::CHAIN as u64, "telemetry saw the steps");
    group.bench_function("flujo", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            clock.advance(1);
            w2_runner.run(&w2, black_box(i), (), &clock, &opts).output
        });
    });
    group.bench_function("no_policies", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            runner.run(&w1, black_box(i), (), &NoClock, &opts).output
        });
    });
    group.finish();

    let mut group = c.benchmark_group("W8_context");
    let w8 = w8_graph();
    let mut runner = Runner::new(RunnerConfig::default());
    let mut ctx = Some(w8_context());
    group.bench_function("flujo", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let c = ctx.take().expect("the context comes back from every run");
            let r = runner.run(&w8, black_box(i), c, &NoClock, &opts);
            let out = r.output;
            ctx = Some(r.context);
            out
        });
    });
    let mut peer_ctx = w8_context();
    group.bench_function("deep_clone", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            deep_clone_fan_out(&mut peer_ctx, black_box(i))
        });
    });
    group.finish();
}
