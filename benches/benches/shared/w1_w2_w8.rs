//! The W1, W2 and W8 workloads, shared by the criterion (`peers/w1_w2_w8.rs`) and the
//! instruction-count (`iai/w1_w2_w8.rs`) benches, with their peers.
#![allow(dead_code)] // each bench target uses its part

use std::sync::Arc;

use flujo_core::context::Context;
use flujo_core::context::MergeStrategy;
use flujo_core::graph::{Graph, GraphBuilder, NodeRef, ParallelOptions, StepError, TaskConfig};
use flujo_core::interp::{Runner, RunnerConfig, Telemetry};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::policy::{Breaker, BreakerConfig};
use flujo_core::telemetry::{NullSink, Sampler};

/// Tasks in the W1 and W2 chains.
pub const CHAIN: usize = 100;

/// W1: a sequence of 100 plain `x + 1` tasks.
pub fn w1_graph() -> Graph<u64, ()> {
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1)))
            .collect();
        b.sequence("W1", &steps)
    })
    .expect("W1 builds")
}

/// The floor of W1: the same 100 closures called through `&dyn Fn`.
pub fn w1_steps() -> Vec<Box<dyn Fn(u64) -> u64>> {
    (0..CHAIN)
        .map(|_| Box::new(|x: u64| x + 1) as Box<dyn Fn(u64) -> u64>)
        .collect()
}

/// W2's runner: telemetry on (exact counters, every step's latency in the histogram, its
/// start and end events offered to a sink that takes them and keeps nothing).
pub fn w2_runner() -> Runner<u64, ()> {
    let telemetry = Telemetry::new(NullSink, Sampler::always());
    Runner::with_telemetry(RunnerConfig::default(), telemetry)
}

/// W2's runner with telemetry sampling one task execution in 64 (information: a sampled
/// chain must not cost more than one that keeps every execution).
pub fn w2_runner_sampled() -> Runner<u64, ()> {
    let telemetry = Telemetry::new(NullSink, Sampler::one_in(64));
    Runner::with_telemetry(RunnerConfig::default(), telemetry)
}

/// W2: W1 with retry (3 attempts, none needed), one validator and a circuit breaker (shared
/// by the chain) on every task; run by [`w2_runner`] (telemetry on). The validator is
/// added with `TaskConfig::validate`, so it is typed and compiled into the task's step.
pub fn w2_graph() -> Graph<u64, ()> {
    w2_graph_with(false)
}

/// W2 with its validator boxed (`TaskConfig::validate_boxed`; information: what a
/// validator costs when the stretch loop calls it on its own).
pub fn w2_graph_boxed_validator() -> Graph<u64, ()> {
    w2_graph_with(true)
}

fn w2_graph_with(boxed: bool) -> Graph<u64, ()> {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 5,
            open_ticks: 100,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    );
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| {
                let validator = |x: &u64, _: &()| {
                    if *x > 0 {
                        Ok(())
                    } else {
                        Err(StepError::validation("zero"))
                    }
                };
                let cfg = TaskConfig::new()
                    .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap())
                    .breaker(breaker.clone());
                let name = format!("s{i}");
                if boxed {
                    b.task_with(&name, |x, _| Ok(x + 1), cfg.validate_boxed(validator))
                } else {
                    b.task_with(&name, |x, _| Ok(x + 1), cfg.validate(validator))
                }
            })
            .collect();
        b.sequence("W2", &steps)
    })
    .expect("W2 builds")
}

/// W8's context: 1 KiB in eight parts of 128 bytes, each on the heap.
#[derive(Debug, PartialEq, Eq)]
pub struct Ctx1K {
    pub parts: [Vec<u8>; 8],
}

impl Clone for Ctx1K {
    fn clone(&self) -> Self {
        Ctx1K {
            parts: self.parts.clone(),
        }
    }
    /// Reuses the copy's memory, as the engine's spare copies expect.
    fn clone_from(&mut self, src: &Self) {
        for (mine, theirs) in self.parts.iter_mut().zip(&src.parts) {
            mine.clone_from(theirs);
        }
    }
}

impl Context for Ctx1K {
    const PARTS: usize = 8;
    fn part_name(index: usize) -> &'static str {
        ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        self.parts[index] == other.parts[index]
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        self.parts[index].clone_from(&from.parts[index]);
    }
}

/// The branch that writes (the others only read).
pub const W8_WRITER: usize = 3;
/// Branches of the fan-out.
pub const W8_BRANCHES: usize = 8;

pub fn w8_context() -> Ctx1K {
    Ctx1K {
        parts: std::array::from_fn(|p| (0..128).map(|i| (p * 128 + i) as u8).collect()),
    }
}

/// Branch `i`'s step as a plain function of the input and the context: readers add a byte of
/// their part; the writer (see [`w8_write`]) also writes its part.
pub fn w8_step(i: usize) -> impl Fn(u64, &Ctx1K) -> u64 {
    move |x, ctx| x + u64::from(ctx.parts[i][1])
}

/// The writer's change to the context.
pub fn w8_write(x: u64, ctx: &mut Ctx1K) {
    ctx.parts[W8_WRITER][0] = x as u8;
}

/// W8's eight branches over the context, branch [`W8_WRITER`] writing.
pub fn w8_branches(b: &mut GraphBuilder<'_, u64, Ctx1K>) -> Vec<NodeRef> {
    (0..W8_BRANCHES)
        .map(|i| {
            let step = w8_step(i);
            if i == W8_WRITER {
                b.task_with(
                    &format!("b{i}"),
                    move |x, cx| {
                        let y = step(x, cx.ctx());
                        w8_write(x, cx.ctx_mut()?);
                        Ok(y)
                    },
                    TaskConfig::new().writes_context(),
                )
            } else {
                b.task(&format!("b{i}"), move |x, cx| Ok(step(x, cx.ctx())))
            }
        })
        .collect()
}

/// W8: one parallel node, eight branches over the context, one of them writing; branch
/// contexts merge back by overwrite, outputs reduce by sum.
pub fn w8_graph() -> Graph<u64, Ctx1K> {
    Graph::build(|b| {
        let branches = w8_branches(b);
        b.parallel(
            "fan",
            &branches,
            |a, x| a + x,
            ParallelOptions::new().merge(MergeStrategy::Overwrite),
        )
    })
    .expect("W8 builds")
}

/// The W8 peer: every branch works on its own deep clone of the context; the clones that
/// changed a part are merged back by overwrite, in branch order.
pub fn deep_clone_fan_out(ctx: &mut Ctx1K, x: u64) -> u64 {
    let mut copies: Vec<Ctx1K> = (0..W8_BRANCHES).map(|_| ctx.clone()).collect();
    let mut sum = 0;
    for (i, copy) in copies.iter_mut().enumerate() {
        sum += w8_step(i)(x, copy);
        if i == W8_WRITER {
            w8_write(x, copy);
        }
    }
    let mut merged = ctx.clone();
    for copy in &copies {
        for p in 0..W8_BRANCHES {
            if copy.parts[p] != ctx.parts[p] {
                merged.parts[p].clone_from(&copy.parts[p]);
            }
        }
    }
    *ctx = merged;
    sum
}
