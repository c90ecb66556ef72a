//! Typed graphs (`Graph::build_typed`): every node kind with differently typed stages, under
//! the core runner and the runtime's executor; fallible reducers and splitters; a wrong run
//! input; caching keyed on a typed task's own input. The refused connections are the
//! `compile_fail` doctests of `flujo_core::graph::{Node, TypedBuilder}`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use flujo_core::cache::{CacheKey, FixedCache, StepFingerprint};
use flujo_core::graph::{
    Carries, FailureStrategy, Graph, GraphRule, Join, LoopOptions, MapOptions, NoClock,
    ParallelOptions, StepError, TaskConfig, WRONG_PAYLOAD,
};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig};
use flujo_core::policy::ErrorClass;

/// A raw input line.
#[derive(Clone, Debug, PartialEq)]
struct Line(String);

/// A parsed event.
#[derive(Clone, Debug, PartialEq)]
struct Event {
    user: String,
    amount: u64,
}

/// An event with what the pipeline looked up.
#[derive(Clone, Debug, PartialEq)]
struct Enriched {
    event: Event,
    vip: bool,
}

flujo_core::payload! {
    #[derive(Clone, Debug, PartialEq)]
    enum Flow {
        Line(Line),
        Event(Event),
        Enriched(Enriched),
        Score(u64),
        Lines(Vec<Line>),
    }
}

fn parse(line: Line) -> Result<Event, StepError> {
    let (user, amount) = line
        .0
        .split_once(',')
        .ok_or_else(|| StepError::permanent("no comma"))?;
    let amount = amount
        .trim()
        .parse()
        .map_err(|_| StepError::permanent("bad amount"))?;
    Ok(Event {
        user: user.to_string(),
        amount,
    })
}

fn enrich(event: Event) -> Enriched {
    let vip = event.user.starts_with("vip");
    Enriched { event, vip }
}

fn score(e: &Enriched) -> u64 {
    e.event.amount * if e.vip { 2 } else { 1 }
}

fn pipeline() -> Graph<Flow, ()> {
    Graph::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let e = b.task("enrich", |ev: Event, _| Ok(enrich(ev)));
        let s = b.task("score", |en: Enriched, _| Ok(score(&en)));
        b.sequence("pipeline", p.then(e).then(s))
    })
    .unwrap()
}

fn run(g: &Graph<Flow, ()>, input: Flow) -> (Outcome, Option<Flow>, Option<ErrorKind>) {
    let mut runner = Runner::new(RunnerConfig::default());
    let r = runner.run(g, input, (), &NoClock, &RunOptions::default());
    (r.outcome, r.output, r.error.map(|e| e.kind))
}

#[test]
fn a_typed_sequence_runs_three_differently_typed_stages() {
    let g = pipeline();
    assert_eq!(g.len(), 4);
    let (outcome, out, _) = run(&g, Flow::from(Line("vip-ann, 21".into())));
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(out.and_then(Flow::take::<u64>), Some(42));
    let (outcome, out, _) = run(&g, Flow::from(Line("bob, 21".into())));
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(out.and_then(Flow::take::<u64>), Some(21));
}

#[test]
fn a_typed_steps_error_is_the_runs_error() {
    let (outcome, out, kind) = run(&pipeline(), Flow::from(Line("no comma here".into())));
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(out, None);
    match kind {
        Some(ErrorKind::Step(e)) => assert_eq!(e.reason(), "no comma"),
        other => panic!("expected the step's error, got {other:?}"),
    }
}

#[test]
fn a_wrong_run_input_fails_the_first_step_with_wrong_payload() {
    let (outcome, out, kind) = run(&pipeline(), Flow::Score(3));
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(out, None);
    match kind {
        Some(ErrorKind::Step(e)) => {
            assert_eq!(e.class(), ErrorClass::Permanent);
            assert_eq!(e, StepError::from_static(&WRONG_PAYLOAD));
        }
        other => panic!("expected WRONG_PAYLOAD, got {other:?}"),
    }
}

#[test]
fn a_graph_of_one_type_is_its_own_payload() {
    // `u64: Carries<u64>`: the typed builder over a plain payload, with a fallible reducer.
    let g = Graph::<u64, ()>::build_typed(|b| {
        let inc = b.task("inc", |x: u64, _| Ok(x + 1));
        let dbl = b.task("dbl", |x: u64, _| Ok(x * 2));
        let both = b.parallel(
            "both",
            &[inc, dbl],
            |a, x| {
                a.checked_add(x)
                    .ok_or_else(|| StepError::permanent("overflow"))
            },
            ParallelOptions::new(),
        );
        let sq = b.task("sq", |x: u64, _| Ok(x * x));
        b.sequence("s", both.then(sq))
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = runner.run(&g, 3, (), &NoClock, &RunOptions::default());
    assert_eq!(r.output, Some(100));
    let r = runner.run(&g, u64::MAX / 2, (), &NoClock, &RunOptions::default());
    assert_eq!(r.outcome, Outcome::Failed);
    match &r.error.as_ref().unwrap().kind {
        ErrorKind::Step(e) => assert_eq!(e.reason(), "overflow"),
        other => panic!("expected the reducer's error, got {other:?}"),
    }
    assert_eq!(r.error.as_ref().unwrap().step, "both");
}

/// A map over lines: split a batch into lines, run the typed pipeline per line, sum the
/// scores; a bad line fails its item, an empty batch fails the splitter, and an overflowing
/// sum fails the reducer.
fn batch_graph() -> Graph<Flow, ()> {
    Graph::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let e = b.task("enrich", |ev: Event, _| Ok(enrich(ev)));
        let s = b.task("score", |en: Enriched, _| Ok(score(&en)));
        let per_line = b.sequence("per-line", p.then(e).then(s));
        b.map(
            "batch",
            |lines: Vec<Line>, _, items| {
                if lines.is_empty() {
                    return Err(StepError::validation("empty batch"));
                }
                for l in lines {
                    items
                        .push(l)
                        .map_err(|_| StepError::permanent("too many lines"))?;
                }
                Ok(0u64)
            },
            per_line,
            |total: u64, s: u64| {
                total
                    .checked_add(s)
                    .ok_or(StepError::permanent("sum overflow"))
            },
            MapOptions::new().max_items(8),
        )
    })
    .unwrap()
}

fn lines(v: &[&str]) -> Flow {
    Flow::from(v.iter().map(|s| Line(s.to_string())).collect::<Vec<_>>())
}

#[test]
fn a_typed_map_splits_runs_its_body_per_item_and_reduces() {
    let g = batch_graph();
    let (outcome, out, _) = run(&g, lines(&["vip-a, 5", "b, 7", "c, 1"]));
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(out.and_then(Flow::take::<u64>), Some(18));
}

#[test]
fn a_typed_splitters_error_fails_the_map() {
    let (outcome, _, kind) = run(&batch_graph(), lines(&[]));
    assert_eq!(outcome, Outcome::Failed);
    match kind {
        Some(ErrorKind::Step(e)) => {
            assert_eq!(e.class(), ErrorClass::Validation);
            assert_eq!(e.reason(), "empty batch");
        }
        other => panic!("expected the splitter's error, got {other:?}"),
    }
    // Past the bound: the typed item is handed back, and this splitter turns that into its
    // own error (which the map reports rather than its bound).
    let nine: Vec<&str> = std::iter::repeat_n("a, 1", 9).collect();
    let (outcome, _, kind) = run(&batch_graph(), lines(&nine));
    assert_eq!(outcome, Outcome::Failed);
    match kind {
        Some(ErrorKind::Step(e)) => assert_eq!(e.reason(), "too many lines"),
        other => panic!("expected the splitter's error, got {other:?}"),
    }
}

#[test]
fn a_typed_map_reducers_error_fails_the_map() {
    let max = format!("a, {}", u64::MAX);
    let (outcome, out, kind) = run(&batch_graph(), lines(&["a, 1", &max]));
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(out, None);
    match kind {
        Some(ErrorKind::Step(e)) => assert_eq!(e.reason(), "sum overflow"),
        other => panic!("expected the reducer's error, got {other:?}"),
    }
}

#[test]
fn typed_parallel_reducer_errors_fail_the_node_under_both_failure_strategies() {
    for failure in [FailureStrategy::Propagate, FailureStrategy::Ignore] {
        let g = Graph::<Flow, ()>::build_typed(|b| {
            let p = b.task("parse", |l: Line, _| parse(l));
            let a = b.task("a", |e: Event, _| Ok(e.amount));
            let c = b.task("c", |e: Event, _| Ok(e.amount + 1));
            let fan = b.parallel(
                "fan",
                &[a, c],
                |x: u64, y: u64| {
                    if x == y {
                        Ok(x)
                    } else {
                        Err(StepError::validation("branches disagree"))
                    }
                },
                ParallelOptions::new().failure(failure),
            );
            b.sequence("s", p.then(fan))
        })
        .unwrap();
        let (outcome, _, kind) = run(&g, Flow::from(Line("a, 1".into())));
        assert_eq!(outcome, Outcome::Failed, "{failure:?}");
        match kind {
            Some(ErrorKind::Step(e)) => assert_eq!(e.reason(), "branches disagree"),
            other => panic!("expected the reducer's error, got {other:?}"),
        }
    }
}

#[test]
fn a_typed_switch_picks_an_arm_by_the_input() {
    let g = Graph::<Flow, ()>::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let small = b.task("small", |e: Event, _| Ok(e.amount));
        let big = b.task("big", |e: Event, _| Ok(e.amount / 10));
        let other = b.task("other", |_: Event, _| Ok(0u64));
        let pick = b.switch(
            "size",
            |e: &Event, _| u64::from(e.amount >= 100),
            &[(0, small), (1, big)],
            Some(other),
        );
        b.sequence("s", p.then(pick))
    })
    .unwrap();
    let (_, out, _) = run(&g, Flow::from(Line("a, 7".into())));
    assert_eq!(out.and_then(Flow::take::<u64>), Some(7));
    let (_, out, _) = run(&g, Flow::from(Line("a, 700".into())));
    assert_eq!(out.and_then(Flow::take::<u64>), Some(70));
}

#[test]
fn a_typed_loop_sees_its_bodys_output_type() {
    let g = Graph::<Flow, ()>::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let halve = b.task("halve", |mut e: Event, _| {
            e.amount /= 2;
            Ok(e)
        });
        let lp = b.loop_(
            "halving",
            halve,
            LoopOptions::new()
                .max_iterations(64)
                .until(|e: &Event, _, _| e.amount < 10),
        );
        let amount = b.task("amount", |e: Event, _| Ok(e.amount));
        b.sequence("s", p.then(lp).then(amount))
    })
    .unwrap();
    let (_, out, _) = run(&g, Flow::from(Line("a, 100".into())));
    assert_eq!(out.and_then(Flow::take::<u64>), Some(6));
}

#[test]
fn a_cacheable_typed_task_keys_on_its_own_input_type_only() {
    // `Flow` has no canonical encoding (`Line` and the others have none); the cached task
    // needs one for its input, `u64`, only.
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let fingerprint = StepFingerprint::builder("expensive", 1).build();
    let g = Graph::<Flow, ()>::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let amount = b.task("amount", |e: Event, _| Ok(e.amount));
        let expensive = b.task_with(
            "expensive",
            move |x: u64, _| {
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(x * 3)
            },
            TaskConfig::new().cacheable_input::<u64>(fingerprint),
        );
        b.sequence("s", p.then(amount).then(expensive))
    })
    .unwrap();
    let config = RunnerConfig {
        cache_capacity: 64,
        ..RunnerConfig::default()
    };
    let mut runner = Runner::new(config);
    for line in ["a, 5", "b, 5", "c, 6", "d, 5"] {
        let r = runner.run(
            &g,
            Flow::from(Line(line.into())),
            (),
            &NoClock,
            &RunOptions::default(),
        );
        assert_eq!(r.outcome, Outcome::Succeeded);
    }
    // 5 three times (one miss), 6 once.
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // The key is the one of the input alone, as a host computing it would.
    let mut cache: FixedCache<u64> = FixedCache::new(4).unwrap();
    let key = CacheKey::new(&fingerprint, &5u64);
    assert!(cache.insert(key, 15, 0).is_none());
}

#[test]
fn the_payload_macro_round_trips_every_stage_type() {
    let e = Event {
        user: "u".into(),
        amount: 1,
    };
    let p: Flow = Carries::wrap(e.clone());
    assert_eq!(p.get::<Event>(), Some(&e));
    assert_eq!(p.get::<u64>(), None);
    assert_eq!(Carries::<Line>::take(p.clone()), Err(p.clone()));
    assert_eq!(p.take::<Event>(), Some(e));
    assert_eq!(Flow::from(3u64), Flow::Score(3));
}

#[test]
fn typed_graphs_run_the_same_under_the_runtimes_executor() {
    use flujo_runtime::config::OptimizationConfig;
    use flujo_runtime::Executor;
    for config in [
        OptimizationConfig::latency(),
        OptimizationConfig::throughput(),
        OptimizationConfig::low_memory(),
    ] {
        let exec: Executor<Flow, ()> = Executor::new(config).unwrap();
        let g = batch_graph();
        let r = exec
            .run(&g, lines(&["vip-a, 5", "b, 7", "c, 1", "d, 2"]), ())
            .unwrap();
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.output.and_then(Flow::take::<u64>), Some(20));
        let r = exec.run(&g, lines(&["a, 1", "oops"]), ()).unwrap();
        assert_eq!(r.outcome, Outcome::Failed);
    }
}

/// A join of differently typed branches over a parsed event: the event itself, its score
/// (`u64`) and a flag (`bool`), each folded into the event by its own fold.
fn join_graph(fold_fails: bool) -> Graph<Flow, ()> {
    Graph::build_typed(|b| {
        let p = b.task("parse", |l: Line, _| parse(l));
        let same = b.task("same", |e: Event, _| Ok(e));
        let double = b.task("double", |e: Event, _| Ok(e.amount * 2));
        let vip = b.task("vip", |e: Event, _| Ok(enrich(e)));
        let join = Join::new(same)
            .fold(double, move |mut e: Event, d: u64| {
                if fold_fails {
                    return Err(StepError::validation("fold refused"));
                }
                e.amount = d;
                Ok(e)
            })
            .fold(vip, |mut e: Event, en: Enriched| {
                if en.vip {
                    e.user = e.user.to_uppercase();
                }
                Ok(e)
            });
        // Ignore is overridden: a join needs every branch.
        let joined = b.join(
            "join",
            join,
            ParallelOptions::new().failure(FailureStrategy::Ignore),
        );
        b.sequence("s", p.then(joined))
    })
    .unwrap()
}

#[test]
fn a_typed_join_folds_each_branch_type_into_the_first() {
    let (outcome, out, _) = run(&join_graph(false), Flow::from(Line("vip-x, 4".into())));
    assert_eq!(outcome, Outcome::Succeeded);
    let want = Event {
        user: "VIP-X".into(),
        amount: 8,
    };
    assert_eq!(out.and_then(Flow::take::<Event>), Some(want));
    let (outcome, _, kind) = run(&join_graph(true), Flow::from(Line("a, 4".into())));
    assert_eq!(outcome, Outcome::Failed);
    match kind {
        Some(ErrorKind::Step(e)) => assert_eq!(e.reason(), "fold refused"),
        other => panic!("expected the fold's error, got {other:?}"),
    }
}

#[test]
fn a_join_with_two_branches_of_one_type_is_a_build_error() {
    let e = Graph::<Flow, ()>::build_typed(|b| {
        let same = b.task("same", |e: Event, _| Ok(e));
        let a = b.task("a", |e: Event, _| Ok(e.amount));
        let c = b.task("c", |e: Event, _| Ok(e.amount + 1));
        let join = Join::new(same)
            .fold(a, |e: Event, _: u64| Ok(e))
            .fold(c, |e: Event, _: u64| Ok(e));
        b.join("join", join, ParallelOptions::new())
    })
    .unwrap_err();
    assert_eq!(
        (e.node.as_str(), e.rule),
        ("join", GraphRule::AmbiguousJoin)
    );
}
