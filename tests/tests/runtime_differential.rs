//! Differential test: random graphs (the generator of `graph_property`) give the same
//! output, outcome, error and final context under the runtime's `Executor::run_with`, in
//! every preset and with each optimization that must not change results switched off, as
//! under the core's `Runner::run`. A run whose fan-outs all ran inline (the graph's cost is
//! within the inline cutoff) and succeeded writes exactly the same step records; any other
//! writes at least the core's, in order: forked siblings declared after a failing branch may
//! have run steps before they saw the cancel, and that failure may have been absorbed by an
//! enclosing fan-out under the ignore strategy, so even a successful run can hold more.

mod common;

use common::{gen, Ctx, Prng};
use flujo_core::graph::{Graph, NoClock, NodeId};
use flujo_core::interp::StepRecord;
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, RunResult, Runner, RunnerConfig};
use flujo_core::policy::{ErrorClass, Usage};
use flujo_core::telemetry::StepOutcome;
use flujo_runtime::config::{Optimization, OptimizationConfig};
use flujo_runtime::{Executor, RunSpec};

/// A step record without its timings.
type Rec = (
    NodeId,
    StepOutcome,
    u32,
    bool,
    bool,
    Option<ErrorClass>,
    Usage,
);

fn rec(r: &StepRecord) -> Rec {
    (
        r.node,
        r.outcome,
        r.attempts,
        r.cache_hit,
        r.fallback_used,
        r.error_class,
        r.usage,
    )
}

/// What a run did, comparable across hosts.
#[derive(Debug, PartialEq)]
struct Seen {
    output: Option<i64>,
    outcome: Outcome,
    error: Option<(NodeId, String, ErrorKind)>,
    context: Ctx,
    records: Vec<Rec>,
}

fn seen(r: RunResult<'_, i64, Ctx>) -> Seen {
    Seen {
        output: r.output,
        outcome: r.outcome,
        error: r.error.map(|e| (e.node, e.step.to_string(), e.kind)),
        context: r.context,
        records: r.records.iter().map(rec).collect(),
    }
}

fn is_subsequence(small: &[Rec], big: &[Rec]) -> bool {
    let mut it = big.iter();
    small.iter().all(|x| it.any(|y| y == x))
}

fn cfg_of(ex: &Executor<i64, Ctx>) -> std::sync::Arc<OptimizationConfig> {
    ex.config()
}

fn configs() -> Vec<(String, OptimizationConfig)> {
    let mut v: Vec<(String, OptimizationConfig)> = OptimizationConfig::PRESETS
        .iter()
        .map(|name| {
            let mut cfg = OptimizationConfig::preset(name).unwrap();
            // Keep the pools small on a shared machine.
            cfg.workers = 2;
            ((*name).to_string(), cfg)
        })
        .collect();
    for o in Optimization::ALL {
        if o.changes_results() {
            continue;
        }
        let mut cfg = OptimizationConfig::latency().with_off(o);
        cfg.workers = 2;
        v.push((format!("latency without {o}"), cfg));
    }
    let mut forked = OptimizationConfig::latency();
    forked.inline_cutoff.enabled = false;
    forked.workers = 2;
    v.push(("every fan-out forked".to_string(), forked));
    v
}

#[test]
fn random_graphs_run_the_same_under_the_runtime_as_under_the_core() {
    let graphs = if cfg!(miri) { 3 } else { 300 };
    let executors: Vec<(String, Executor<i64, Ctx>)> = configs()
        .into_iter()
        .map(|(name, cfg)| (name, Executor::new(cfg).unwrap()))
        .collect();
    let mut rng = Prng(0x0D1F_F001);
    let mut runner = Runner::new(RunnerConfig::default());
    let (mut ok, mut failed, mut longer, mut exact) = (0usize, 0usize, 0usize, 0usize);
    for _ in 0..graphs {
        let tree = gen(&mut rng, 4);
        let g = Graph::build(|b| common::build(&tree, b, &mut 0)).expect("valid");
        for _ in 0..4 {
            let input = rng.below(1000) as i64;
            let start = Ctx([rng.below(3) as i64, 0, -1]);
            let want = seen(runner.run(&g, input, start.clone(), &NoClock, &RunOptions::default()));
            match want.outcome {
                Outcome::Succeeded => ok += 1,
                _ => failed += 1,
            }
            for (name, ex) in &executors {
                let got = ex
                    .run_with(&g, input, start.clone(), &RunSpec::default(), seen)
                    .unwrap_or_else(|p| panic!("{name}: {p}"));
                let what = || format!("{name}: {tree:?} on {input}");
                assert_eq!(got.output, want.output, "{}", what());
                assert_eq!(got.outcome, want.outcome, "{}", what());
                assert_eq!(got.error, want.error, "{}", what());
                assert_eq!(got.context, want.context, "{}", what());
                let inline = cfg_of(ex).inline_cutoff.enabled
                    && g.cost(g.root()) <= cfg_of(ex).inline_cutoff.max_cost;
                if want.outcome == Outcome::Succeeded && inline {
                    assert_eq!(got.records, want.records, "{}", what());
                    exact += 1;
                } else {
                    assert!(
                        is_subsequence(&want.records, &got.records),
                        "{}: core {:?}, runtime {:?}",
                        what(),
                        want.records,
                        got.records
                    );
                    longer += usize::from(got.records.len() > want.records.len());
                }
            }
        }
    }
    assert!(
        ok > graphs && failed > graphs / 10,
        "ok {ok}, failed {failed}"
    );
    // Both comparisons are exercised.
    assert!(
        exact > graphs && longer > 0,
        "exact {exact}, longer {longer}"
    );
    for (name, ex) in &executors {
        let r = ex.report();
        assert_eq!(
            r.runs.completed,
            (graphs * 4) as u64,
            "{name}: every run is counted once"
        );
    }
}
