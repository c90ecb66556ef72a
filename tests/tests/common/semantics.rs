//! Fixtures of the semantics contract tests (`semantics_*.rs`): a three-part context that
//! counts its copies, step builders, and runs that return what the tests assert.
//!
//! flujo-core keeps a copy of the fixtures its own interpreter tests need (those that read
//! the frozen graph's private layout) in `core/src/interp/tests/mod.rs`.

use std::cell::Cell;
use std::sync::Arc;

use flujo_core::context::Context;
use flujo_core::graph::{CancelFlag, Graph, GraphBuilder, NoClock, NodeRef, StepError, TaskConfig};
use flujo_core::interp::{Outcome, RunOptions, RunResult, Runner, RunnerConfig, StepRecord};
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, ErrorClass, RetryPolicy};

std::thread_local! {
    static CLONES: Cell<usize> = const { Cell::new(0) };
}

/// A three-part context that counts its copies.
#[derive(Debug, Default, PartialEq)]
pub struct Ctx {
    pub a: i64,
    pub b: i64,
    pub log: Vec<u32>,
}

impl Clone for Ctx {
    fn clone(&self) -> Self {
        CLONES.with(|c| c.set(c.get() + 1));
        Ctx {
            a: self.a,
            b: self.b,
            log: self.log.clone(),
        }
    }
    fn clone_from(&mut self, src: &Self) {
        CLONES.with(|c| c.set(c.get() + 1));
        self.a = src.a;
        self.b = src.b;
        self.log.clone_from(&src.log);
    }
}

impl Context for Ctx {
    const PARTS: usize = 3;
    fn part_name(index: usize) -> &'static str {
        ["a", "b", "log"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        match index {
            0 => self.a == other.a,
            1 => self.b == other.b,
            _ => self.log == other.log,
        }
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        match index {
            0 => self.a = from.a,
            1 => self.b = from.b,
            _ => self.log.clone_from(&from.log),
        }
    }
}

pub fn clones() -> usize {
    CLONES.with(Cell::get)
}

pub type G = Graph<i64, Ctx>;

pub type B<'a> = GraphBuilder<'a, i64, Ctx>;

pub fn add(b: &mut B<'_>, name: &str, n: i64) -> NodeRef {
    b.task(name, move |x, _| Ok(x + n))
}

pub fn fail(b: &mut B<'_>, name: &str, class: ErrorClass) -> NodeRef {
    b.task(name, move |_, _| Err(StepError::new(class, "boom")))
}

pub fn set_a(b: &mut B<'_>, name: &str, v: i64) -> NodeRef {
    b.task_with(
        name,
        move |x, cx| {
            cx.ctx_mut()?.a = v;
            Ok(x)
        },
        TaskConfig::new().writes_context(),
    )
}

pub fn set_b(b: &mut B<'_>, name: &str, v: i64) -> NodeRef {
    b.task_with(
        name,
        move |x, cx| {
            cx.ctx_mut()?.b = v;
            Ok(x)
        },
        TaskConfig::new().writes_context(),
    )
}

pub fn run_with<'r>(
    runner: &'r mut Runner<i64, Ctx>,
    g: &'r G,
    input: i64,
    opts: &RunOptions<'_>,
) -> RunResult<'r, i64, Ctx> {
    runner.run(g, input, Ctx::default(), &NoClock, opts)
}

pub fn check(
    g: &G,
    input: i64,
) -> (
    Outcome,
    Option<i64>,
    Ctx,
    Option<std::string::String>,
    Vec<StepRecord>,
) {
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, g, input, &RunOptions::default());
    (
        r.outcome,
        r.output,
        r.context,
        r.error.as_ref().map(ToString::to_string),
        r.records.to_vec(),
    )
}

/// Options of a run that answers to `flag`.
pub fn cancellable(flag: &CancelFlag) -> RunOptions<'_> {
    RunOptions {
        cancel: Some(flag),
        ..RunOptions::default()
    }
}

pub fn record<'a>(g: &G, recs: &'a [StepRecord], name: &str) -> &'a StepRecord {
    let id = g.find(name).unwrap();
    recs.iter()
        .find(|r| r.node == id)
        .unwrap_or_else(|| panic!("no record for {name}"))
}

/// A breaker that opens on one failure and stays open for 1000 ticks.
pub fn trips_on_one_failure() -> Arc<Breaker> {
    Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            open_ticks: 1000,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    )
}

/// A lean policy task for the stretch tests below: retried, validated (typed), guarded by
/// `breaker`, adding `n`.
pub fn lean(b: &mut B<'_>, name: &str, n: i64, breaker: &Arc<Breaker>) -> NodeRef {
    let cfg = TaskConfig::new()
        .retry(RetryPolicy::new(2, Backoff::NONE).unwrap())
        .validate(|y: &i64, _| {
            if *y >= 0 {
                Ok(())
            } else {
                Err(StepError::validation("negative"))
            }
        })
        .breaker(breaker.clone());
    b.task_with(name, move |x, _| Ok(x + n), cfg)
}
