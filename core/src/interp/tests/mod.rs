//! The interpreter's tests that need private access: they read the frozen graph's layout
//! (a sequence frozen as a task run, the programs of pure fan-outs) beside the results they
//! check. The semantics contract, through the public API, is tested in flujo-tests
//! (`tests/tests/semantics_*.rs`, fixtures in `tests/tests/common/semantics.rs`).

mod pure_fanout;
mod step_context;

use std::string::ToString;
use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::graph::{CancelFlag, Graph, GraphBuilder, NoClock, NodeRef, StepError, TaskConfig};
use crate::policy::{Breaker, BreakerConfig, ErrorClass, Usage};

use crate::context::tests::Ctx;

type G = Graph<i64, Ctx>;

type B<'a> = GraphBuilder<'a, i64, Ctx>;

fn add(b: &mut B<'_>, name: &str, n: i64) -> NodeRef {
    b.task(name, move |x, _| Ok(x + n))
}

fn set_a(b: &mut B<'_>, name: &str, v: i64) -> NodeRef {
    b.task_with(
        name,
        move |x, cx| {
            cx.ctx_mut()?.a = v;
            Ok(x)
        },
        TaskConfig::new().writes_context(),
    )
}

fn set_b(b: &mut B<'_>, name: &str, v: i64) -> NodeRef {
    b.task_with(
        name,
        move |x, cx| {
            cx.ctx_mut()?.b = v;
            Ok(x)
        },
        TaskConfig::new().writes_context(),
    )
}

fn run_with<'r>(
    runner: &'r mut Runner<i64, Ctx>,
    g: &'r G,
    input: i64,
    opts: &RunOptions<'_>,
) -> RunResult<'r, i64, Ctx> {
    runner.run(g, input, Ctx::default(), &NoClock, opts)
}

fn check(
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
fn cancellable(flag: &CancelFlag) -> RunOptions<'_> {
    RunOptions {
        cancel: Some(flag),
        ..RunOptions::default()
    }
}

/// A breaker that opens on one failure and stays open for 1000 ticks.
fn trips_on_one_failure() -> Arc<Breaker> {
    Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            open_ticks: 1000,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    )
}
