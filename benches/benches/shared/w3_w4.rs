//! The W3 (binary tree) and W4 (flat fan-out) workloads and their peers, shared by the
//! criterion (`peers/w3_w4_runtime.rs`) and the instruction-count (`iai/w3_tree.rs`) benches.
#![allow(dead_code)] // each bench target uses its part

use flujo_core::graph::{Graph, GraphBuilder, NodeRef, ParallelOptions};
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::Executor;

/// The W3 leaf: `x + 1`.
#[inline(always)]
pub fn leaf(x: u64) -> u64 {
    x + 1
}

/// The right sum of a tree of depth `depth` over input `x`.
pub fn tree_sum(depth: u32, x: u64) -> u64 {
    (1u64 << depth) * leaf(x)
}

/// Nodes of a tree of depth `depth` (leaves and fan-outs).
pub fn tree_nodes(depth: u32) -> u64 {
    (1u64 << (depth + 1)) - 1
}

fn subtree(b: &mut GraphBuilder<'_, u64, ()>, depth: u32, name: &mut u32) -> NodeRef {
    *name += 1;
    let id = *name;
    if depth == 0 {
        return b.task(&format!("l{id}"), |x, _| Ok(leaf(x)));
    }
    let left = subtree(b, depth - 1, name);
    let right = subtree(b, depth - 1, name);
    b.parallel(
        &format!("p{id}"),
        &[left, right],
        |a, x| a + x,
        ParallelOptions::new(),
    )
}

/// W3: nested two-branch parallel nodes to `depth`, `x + 1` leaves, reduced by sum.
pub fn w3_graph(depth: u32) -> Graph<u64, ()> {
    Graph::build(|b| {
        let mut name = 0;
        subtree(b, depth, &mut name)
    })
    .expect("W3 builds")
}

/// The W3 peer: recursive `rayon::join` (call inside `pool.install`).
pub fn rayon_tree(depth: u32, x: u64) -> u64 {
    if depth == 0 {
        return leaf(x);
    }
    let (a, b) = rayon::join(|| rayon_tree(depth - 1, x), || rayon_tree(depth - 1, x));
    a + b
}

/// The W3 peer: chili's heartbeat `Scope::join`.
pub fn chili_tree(scope: &mut chili::Scope<'_>, depth: u32, x: u64) -> u64 {
    if depth == 0 {
        return leaf(x);
    }
    let (a, b) = scope.join(
        |s| chili_tree(s, depth - 1, x),
        |s| chili_tree(s, depth - 1, x),
    );
    a + b
}

/// The W3 floor: plain recursion.
pub fn sequential_tree(depth: u32, x: u64) -> u64 {
    if depth == 0 {
        return leaf(std::hint::black_box(x));
    }
    sequential_tree(depth - 1, x) + sequential_tree(depth - 1, x)
}

/// Branches of the W4 fan-out.
pub const W4_BRANCHES: usize = 1000;

/// W4: one parallel node with 1000 `x + i` branches, reduced by sum.
pub fn w4_graph() -> Graph<u64, ()> {
    Graph::build(|b| {
        let branches: Vec<_> = (0..W4_BRANCHES as u64)
            .map(|i| b.task(&format!("b{i}"), move |x, _| Ok(x + i)))
            .collect();
        b.parallel("fan", &branches, |a, x| a + x, ParallelOptions::new())
    })
    .expect("W4 builds")
}

/// The right W4 sum over input `x`.
pub fn w4_sum(x: u64) -> u64 {
    let n = W4_BRANCHES as u64;
    n * x + n * (n - 1) / 2
}

/// The W4 peer: `rayon::scope` with one spawn per branch writing its slot, then the sum
/// (call inside `pool.install`).
pub fn rayon_scope_fan(slots: &mut [u64], x: u64) -> u64 {
    rayon::scope(|s| {
        for (i, slot) in slots.iter_mut().enumerate() {
            s.spawn(move |_| *slot = x + i as u64);
        }
    });
    slots.iter().sum()
}

/// The executors' configuration: the latency preset, `workers` threads, telemetry off, and
/// the inline cutoff at `max_cost` (`None`: off, every fan-out forks).
pub fn exec_config(workers: usize, max_cost: Option<u32>) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = workers;
    cfg.telemetry.level = TelemetryLevel::Off;
    match max_cost {
        Some(m) => cfg.inline_cutoff.max_cost = m,
        None => cfg.inline_cutoff.enabled = false,
    }
    cfg
}

/// An executor on its own `workers`-thread pool.
pub fn executor(workers: usize, max_cost: Option<u32>) -> Executor<u64, ()> {
    Executor::new(exec_config(workers, max_cost)).expect("executor builds")
}

/// A rayon pool of `threads` threads.
pub fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool builds")
}

/// A chili pool of `threads` threads (the calling thread counts as one).
pub fn chili_pool(threads: usize) -> chili::ThreadPool {
    chili::ThreadPool::with_config(chili::Config {
        thread_count: std::num::NonZero::new(threads),
        ..chili::Config::default()
    })
}
