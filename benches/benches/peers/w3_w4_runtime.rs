//! The std runtime's `Executor` on fork-join work, beside its peers:
//!
//! - `W3_tree`: nested two-branch fan-outs to 2^16 `x + 1` leaves, reduced by sum; `flujo`
//!   (an executor on a 1-thread pool, inline cutoff of the latency preset), `rayon_join`,
//!   `chili` and `sequential`, all on one thread. `flujo_cutoff_<n>` / `flujo_cutoff_off`
//!   (information) are the same run with another inline cutoff. `W3_tree_2thread`: the
//!   same on two threads (information).
//! - `W4_fanout`: one fan-out of 1000 trivial branches; `flujo` beside `rayon_scope` (one
//!   spawn per branch writing its slot), on one thread; `W4_fanout_2thread` (information).
//! - `submit_latency`: submit-to-completion of a 10-step chain of `x + 1` from outside the
//!   pool, on a 1-thread pool (`_1thread`, the gate: `flujo_submit_1thread <=
//!   rayon_spawn_channel_1thread`) and one thread per core (`_default`, information):
//!   `flujo_submit_*` (`Executor::submit`, then `Ticket::wait`), `rayon_spawn_channel_*`
//!   (`ThreadPool::spawn` of the plain chain, the result back on a bounded crossbeam
//!   channel), `tokio_spawn_*` (`Runtime::spawn` on a multi-thread runtime, then `block_on`
//!   of the `JoinHandle`), and `flujo_run_inline` (`Executor::run`, no hand-off: the floor).
//!   Percentiles and the CPU cost: `cargo run --release -p flujo-benches --example
//!   submit_latency`.
//! - `W12_config_off`: W1, W2, W7 and W8 through `Executor::run_with`, with everything on
//!   (`<workload>_on`) and with each optimization off (`<workload>_off_<name>`).
use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, TaskConfig};
use flujo_runtime::config::{Optimization, OptimizationConfig};
use flujo_runtime::{Executor, RunSpec};

#[path = "../shared/w3_w4.rs"]
mod shared;
// The W1, W2 and W8 builders (also loaded by `peers/w1_w2_w8.rs`, privately).
#[allow(clippy::duplicate_mod)]
#[path = "../shared/w1_w2_w8.rs"]
mod shared_w;

// The submit_latency chain and its peers (also loaded by `examples/submit_latency.rs`).
#[path = "../shared/submit.rs"]
mod shared_submit;

use shared::*;
use shared_submit::{
    chain10, flujo_submit_wait, rayon_spawn_channel, reply_channel, tokio_runtime, tokio_spawn,
    STEPS,
};
use shared_w::{w1_graph, w2_graph, w8_context, w8_graph, Ctx1K, CHAIN, W8_WRITER};

/// Depth of the W3 tree: 2^16 leaves.
const DEPTH: u32 = 16;

fn run_u64(exec: &Executor<u64, ()>, graph: &Graph<u64, ()>, x: u64) -> u64 {
    exec.run_with(graph, x, (), &RunSpec::default(), |r| r.output)
        .expect("no panic")
        .expect("the run succeeds")
}

fn w3(c: &mut Criterion, threads: usize, group_name: &str) {
    let graph = w3_graph(DEPTH);
    let want = tree_sum(DEPTH, 7);
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);

    // `flujo` is the latency preset's cutoff (4096). On one thread nothing forks, so the
    // other cutoffs are information for two threads only.
    let cutoffs: &[(&str, Option<u32>)] = if threads == 1 {
        &[("flujo", Some(4096))]
    } else {
        &[
            ("flujo", Some(4096)),
            ("flujo_cutoff_64", Some(64)),
            ("flujo_cutoff_off", None),
        ]
    };
    for &(id, cutoff) in cutoffs {
        let exec = executor(threads, cutoff);
        assert_eq!(run_u64(&exec, &graph, 7), want, "{group_name}/{id}");
        group.bench_function(id, |b| b.iter(|| run_u64(&exec, &graph, black_box(7))));
    }

    let pool = rayon_pool(threads);
    assert_eq!(pool.install(|| rayon_tree(DEPTH, 7)), want);
    group.bench_function("rayon_join", |b| {
        b.iter(|| pool.install(|| rayon_tree(DEPTH, black_box(7))))
    });

    let chili = chili_pool(threads);
    assert_eq!(chili_tree(&mut chili.scope(), DEPTH, 7), want);
    group.bench_function("chili", |b| {
        b.iter(|| chili_tree(&mut chili.scope(), DEPTH, black_box(7)))
    });

    assert_eq!(sequential_tree(DEPTH, 7), want);
    group.bench_function("sequential", |b| {
        b.iter(|| sequential_tree(DEPTH, black_box(7)))
    });
    group.finish();
}

fn w4(c: &mut Criterion, threads: usize, group_name: &str) {
    let graph = w4_graph();
    let want = w4_sum(7);
    let mut group = c.benchmark_group(group_name);
    // The fan-out's analysed cost is 1000 (one task per branch): under the preset's cutoff
    // (4096) it runs inline; `flujo_forked` forks it (on two threads; one never forks).
    let exec = executor(threads, Some(4096));
    assert_eq!(run_u64(&exec, &graph, 7), want);
    group.bench_function("flujo", |b| b.iter(|| run_u64(&exec, &graph, black_box(7))));
    if threads > 1 {
        let forked = executor(threads, None);
        assert_eq!(run_u64(&forked, &graph, 7), want);
        group.bench_function("flujo_forked", |b| {
            b.iter(|| run_u64(&forked, &graph, black_box(7)))
        });
    }

    let pool = rayon_pool(threads);
    let mut slots = vec![0u64; W4_BRANCHES];
    assert_eq!(pool.install(|| rayon_scope_fan(&mut slots, 7)), want);
    group.bench_function("rayon_scope", |b| {
        b.iter(|| pool.install(|| rayon_scope_fan(&mut slots, black_box(7))))
    });
    group.finish();
}

fn submit_latency(c: &mut Criterion) {
    let graph = Arc::new(chain10());
    let want = 7 + STEPS;
    let mut group = c.benchmark_group("submit_latency");
    // `_1thread`: a pool of one thread; `_default`: one thread per core.
    for (suffix, workers) in [("1thread", 1), ("default", 0)] {
        let exec = Executor::new(exec_config(workers, Some(64))).expect("executor builds");
        assert_eq!(flujo_submit_wait(&exec, &graph, 7), want);
        group.bench_function(format!("flujo_submit_{suffix}"), |b| {
            b.iter(|| flujo_submit_wait(&exec, &graph, black_box(7)))
        });
        drop(exec);

        let pool = rayon_pool(workers);
        let reply = reply_channel();
        assert_eq!(rayon_spawn_channel(&pool, &reply, 7), want);
        group.bench_function(format!("rayon_spawn_channel_{suffix}"), |b| {
            b.iter(|| rayon_spawn_channel(&pool, &reply, black_box(7)))
        });
        drop(pool);

        let rt = tokio_runtime(workers);
        assert_eq!(tokio_spawn(&rt, 7), want);
        group.bench_function(format!("tokio_spawn_{suffix}"), |b| {
            b.iter(|| tokio_spawn(&rt, black_box(7)))
        });
    }
    let exec = executor(1, Some(64));
    assert_eq!(run_u64(&exec, &graph, 7), want);
    group.bench_function("flujo_run_inline", |b| {
        b.iter(|| run_u64(&exec, &graph, black_box(7)))
    });
    group.finish();
}

/// W7's input: 64 bytes.
type In64 = [u64; 8];

fn w7_graph() -> Graph<In64, ()> {
    Graph::build(|b| {
        let cfg = TaskConfig::new().cacheable(StepFingerprint::builder("w7-step", 1).build());
        b.task_with(
            "cached",
            |x: In64, _| {
                let mut y = x;
                y[0] = x.iter().sum();
                Ok(y)
            },
            cfg,
        )
    })
    .expect("W7 builds")
}

/// The W12 configurations: everything on (the latency preset, one worker), then each
/// optimization off.
fn w12_configs() -> Vec<(String, OptimizationConfig)> {
    let mut on = OptimizationConfig::latency();
    on.workers = 1;
    let mut v = vec![("on".to_string(), on.clone())];
    for o in Optimization::ALL {
        v.push((format!("off_{}", o.name()), on.clone().with_off(o)));
    }
    v
}

fn w12(c: &mut Criterion) {
    let mut group = c.benchmark_group("W12_config_off");
    let w1 = w1_graph();
    let w2 = w2_graph();
    let w7 = w7_graph();
    let w8 = w8_graph();
    let w7_in: In64 = [1, 2, 3, 4, 5, 6, 7, 8];
    let w7_want = {
        let mut y = w7_in;
        y[0] = 36;
        y
    };
    for (suffix, cfg) in w12_configs() {
        let e1: Executor<u64, ()> = Executor::new(cfg.clone()).expect("executor builds");
        assert_eq!(run_u64(&e1, &w1, 7), 7 + CHAIN as u64);
        group.bench_function(format!("W1_{suffix}"), |b| {
            b.iter(|| run_u64(&e1, &w1, black_box(7)))
        });
        assert_eq!(run_u64(&e1, &w2, 7), 7 + CHAIN as u64);
        group.bench_function(format!("W2_{suffix}"), |b| {
            b.iter(|| run_u64(&e1, &w2, black_box(7)))
        });

        let e7: Executor<In64, ()> = Executor::new(cfg.clone()).expect("executor builds");
        let run7 = |x: In64| {
            e7.run_with(&w7, x, (), &RunSpec::default(), |r| r.output)
                .expect("no panic")
                .expect("the run succeeds")
        };
        assert_eq!(run7(w7_in), w7_want);
        assert_eq!(
            run7(w7_in),
            w7_want,
            "the (possible) hit gives the same output"
        );
        group.bench_function(format!("W7_{suffix}"), |b| {
            b.iter(|| run7(black_box(w7_in)))
        });

        let e8: Executor<u64, Ctx1K> = Executor::new(cfg).expect("executor builds");
        let mut ctx = Some(w8_context());
        let mut run8 = |x: u64| {
            let cx = ctx.take().expect("the context comes back from every run");
            let (out, cx) = e8
                .run_with(&w8, x, cx, &RunSpec::default(), |r| (r.output, r.context))
                .expect("no panic");
            let written = cx.parts[W8_WRITER][0];
            ctx = Some(cx);
            (out.expect("the run succeeds"), written)
        };
        // Eight readers add byte 1 of their part (p * 128 + 1); the writer sets its byte 0.
        let want8: u64 = (0..8u64).map(|p| 7 + ((p * 128 + 1) as u8) as u64).sum();
        assert_eq!(
            run8(7),
            (want8, 7),
            "the sum, and the writer's change merged"
        );
        group.bench_function(format!("W8_{suffix}"), |b| b.iter(|| run8(black_box(7))));
    }
    group.finish();
}

/// The criterion groups `W3_tree`, `W3_tree_2thread`, `W4_fanout`, `W4_fanout_2thread`,
/// `submit_latency`, `W12_config_off`.
pub fn benches(c: &mut Criterion) {
    w3(c, 1, "W3_tree");
    w3(c, 2, "W3_tree_2thread");
    w4(c, 1, "W4_fanout");
    w4(c, 2, "W4_fanout_2thread");
    submit_latency(c);
    w12(c);
}
