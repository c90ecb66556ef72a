//! The semantics contract, one test per rule, on the single-thread interpreter.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::boxed::Box;
use std::format;
use std::string::ToString;
use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::cache::StepFingerprint;
use crate::context::MergeStrategy;
use crate::graph::{
    FailureStrategy, GraphBuilder, LoopOptions, ManualClock, MapOptions, NoClock, NodeRef,
    ParallelOptions, StepCx, StepFlags, TaskConfig,
};
use crate::policy::{Backoff, Breaker, BreakerConfig, Recovery, RecoveryTable, RetryPolicy};
use crate::policy::{BreakerState, CallOutcome};

std::thread_local! {
    static CLONES: Cell<usize> = const { Cell::new(0) };
}

/// A three-part context that counts its copies.
#[derive(Debug, Default, PartialEq)]
struct Ctx {
    a: i64,
    b: i64,
    log: Vec<u32>,
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

fn clones() -> usize {
    CLONES.with(Cell::get)
}

type G = Graph<i64, Ctx>;
type B<'a> = GraphBuilder<'a, i64, Ctx>;

fn add(b: &mut B<'_>, name: &str, n: i64) -> NodeRef {
    b.task(name, move |x, _| Ok(x + n))
}

fn fail(b: &mut B<'_>, name: &str, class: ErrorClass) -> NodeRef {
    b.task(name, move |_, _| Err(StepError::new(class, "boom")))
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

fn record<'a>(g: &G, recs: &'a [StepRecord], name: &str) -> &'a StepRecord {
    let id = g.find(name).unwrap();
    recs.iter()
        .find(|r| r.node == id)
        .unwrap_or_else(|| panic!("no record for {name}"))
}

// ---- Sequence -----------------------------------------------------------------------------

#[test]
fn sequence_feeds_each_output_to_the_next_input() {
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let m = b.task("m", |x, _| Ok(x * 10));
        let c = add(b, "c", 3);
        b.sequence("s", &[a, m, c])
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(23)));
    assert_eq!(recs.len(), 3);
}

#[test]
fn sequence_stops_at_the_first_failure() {
    let ran = Arc::new(AtomicU32::new(0));
    let r2 = ran.clone();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let f = fail(b, "f", ErrorClass::Permanent);
        let c = b.task("c", move |x, _| {
            r2.fetch_add(1, Ordering::Relaxed);
            Ok(x)
        });
        b.sequence("s", &[a, f, c])
    })
    .unwrap();
    let (outcome, out, _, err, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Failed, None));
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the step after the failure never ran"
    );
    assert_eq!(err.unwrap(), "step `f` (node 1): Permanent: boom");
    assert_eq!(recs.len(), 2);
}

// ---- Parallel -----------------------------------------------------------------------------

#[test]
fn parallel_branches_all_get_the_same_input() {
    let g = G::build(|b| {
        let branches: Vec<_> = (0..4)
            .map(|i| b.task(&format!("b{i}"), |x, _| Ok(x)))
            .collect();
        b.parallel(
            "p",
            &branches,
            |a, x| {
                assert_eq!(a, x);
                a
            },
            ParallelOptions::new(),
        )
    })
    .unwrap();
    assert_eq!(check(&g, 7).1, Some(7));
}

#[test]
fn parallel_reduces_in_declaration_order() {
    let g = G::build(|b| {
        let branches: Vec<_> = (1..=4).map(|i| add(b, &format!("b{i}"), i)).collect();
        b.parallel(
            "p",
            &branches,
            |acc, x| acc * 10 + (x - 100),
            ParallelOptions::new(),
        )
    })
    .unwrap();
    // First output (101) seeds the fold: 101*10+2, *10+3, *10+4.
    assert_eq!(check(&g, 100).1, Some(((101 * 10 + 2) * 10 + 3) * 10 + 4));
}

#[test]
fn parallel_branch_that_does_not_write_never_copies_the_context() {
    let g = G::build(|b| {
        let readers: Vec<_> = (0..8)
            .map(|i| b.task(&format!("r{i}"), |x, cx| Ok(x + cx.ctx().a)))
            .collect();
        b.parallel("p", &readers, |a, x| a + x, ParallelOptions::new())
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let before = clones();
    let r = runner.run(
        &g,
        1,
        Ctx {
            a: 2,
            ..Ctx::default()
        },
        &NoClock,
        &RunOptions::default(),
    );
    assert_eq!(r.output, Some(8 * 3));
    assert_eq!(clones() - before, 0);
}

#[test]
fn parallel_merge_overwrite_takes_the_last_branch_that_wrote_a_part() {
    let g = G::build(|b| {
        let w1 = set_a(b, "w1", 1);
        let w2 = set_a(b, "w2", 2);
        let wb = set_b(b, "wb", 5);
        b.parallel(
            "p",
            &[w1, w2, wb],
            |a, _| a,
            ParallelOptions::new().merge(MergeStrategy::Overwrite),
        )
    })
    .unwrap();
    let ctx = check(&g, 0).2;
    assert_eq!((ctx.a, ctx.b), (2, 5));
}

#[test]
fn parallel_merge_keep_first_takes_the_first_branch_that_wrote_a_part() {
    let g = G::build(|b| {
        let w1 = set_a(b, "w1", 1);
        let w2 = set_a(b, "w2", 2);
        b.parallel(
            "p",
            &[w1, w2],
            |a, _| a,
            ParallelOptions::new().merge(MergeStrategy::KeepFirst),
        )
    })
    .unwrap();
    assert_eq!(check(&g, 0).2.a, 1);
}

#[test]
fn parallel_merge_no_merge_discards_branch_writes() {
    let g = G::build(|b| {
        let w1 = set_a(b, "w1", 1);
        b.parallel(
            "p",
            &[w1],
            |a, _| a,
            ParallelOptions::new().merge(MergeStrategy::NoMerge),
        )
    })
    .unwrap();
    let (outcome, _, ctx, _, _) = check(&g, 0);
    assert_eq!((outcome, ctx.a), (Outcome::Succeeded, 0));
}

#[test]
fn parallel_merge_error_on_conflict_names_the_conflicting_part() {
    let g = G::build(|b| {
        let w1 = set_b(b, "w1", 1);
        let w2 = set_a(b, "w2", 2);
        let w3 = set_b(b, "w3", 3);
        b.parallel("p", &[w1, w2, w3], |a, _| a, ParallelOptions::new())
    })
    .unwrap();
    let (outcome, _, ctx, err, _) = check(&g, 0);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(ctx, Ctx::default(), "a failed merge changes nothing");
    let err = err.unwrap();
    assert!(
        err.contains("step `p`") && err.contains("part `b`") && err.contains("branch 2"),
        "{err}"
    );
}

#[test]
fn parallel_merge_user_merges_in_declaration_order() {
    let g = G::build(|b| {
        let branches: Vec<_> = (1..=3)
            .map(|i| {
                b.task_with(
                    &format!("w{i}"),
                    move |x, cx| {
                        cx.ctx_mut()?.log.push(i);
                        Ok(x)
                    },
                    TaskConfig::new().writes_context(),
                )
            })
            .collect();
        let merge = MergeStrategy::User(Box::new(|m: &mut Ctx, base: &Ctx, br: &Ctx| {
            m.log.extend_from_slice(&br.log[base.log.len()..]);
            Ok(())
        }));
        b.parallel(
            "p",
            &branches,
            |a, _| a,
            ParallelOptions::new().merge(merge),
        )
    })
    .unwrap();
    assert_eq!(check(&g, 0).2.log, vec![1, 2, 3]);
}

#[test]
fn parallel_propagate_fails_on_a_branch_failure_and_stops_later_branches() {
    let ran = Arc::new(AtomicU32::new(0));
    let r2 = ran.clone();
    let g = G::build(|b| {
        let ok = add(b, "ok", 1);
        let f = fail(b, "f", ErrorClass::Permanent);
        let later = b.task("later", move |x, _| {
            r2.fetch_add(1, Ordering::Relaxed);
            Ok(x)
        });
        b.parallel("p", &[ok, f, later], |a, x| a + x, ParallelOptions::new())
    })
    .unwrap();
    let (outcome, _, _, err, _) = check(&g, 0);
    assert_eq!(outcome, Outcome::Failed);
    assert!(err.unwrap().contains("step `f`"));
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "siblings after the failure are not started"
    );
}

#[test]
fn parallel_ignore_succeeds_when_at_least_one_branch_succeeds() {
    let g = G::build(|b| {
        let f = fail(b, "f", ErrorClass::Permanent);
        let ok = add(b, "ok", 1);
        let w = b.task_with(
            "w_then_fail",
            |_, cx| {
                cx.ctx_mut()?.a = 99;
                Err(StepError::permanent("after writing"))
            },
            TaskConfig::new().writes_context(),
        );
        let ok2 = add(b, "ok2", 2);
        let opts = ParallelOptions::new().failure(FailureStrategy::Ignore);
        b.parallel("p", &[f, ok, w, ok2], |a, x| a + x, opts)
    })
    .unwrap();
    let (outcome, out, ctx, _, _) = check(&g, 10);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(11 + 12)));
    assert_eq!(ctx.a, 0, "a failed branch's writes are discarded");
}

#[test]
fn parallel_ignore_fails_when_every_branch_fails() {
    let g = G::build(|b| {
        let f1 = fail(b, "f1", ErrorClass::Permanent);
        let f2 = fail(b, "f2", ErrorClass::Transient);
        b.parallel(
            "p",
            &[f1, f2],
            |a, _| a,
            ParallelOptions::new().failure(FailureStrategy::Ignore),
        )
    })
    .unwrap();
    let (outcome, _, _, err, recs) = check(&g, 0);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(err.unwrap(), "step `p` (node 2): all 2 branches failed");
    assert_eq!(recs.len(), 2, "each failed branch left its record");
}

#[test]
fn parallel_ignore_still_aborts_on_usage_or_cancelled() {
    for class in [ErrorClass::Usage, ErrorClass::Cancelled] {
        let g = G::build(|b| {
            let f = fail(b, "f", class);
            let ok = add(b, "ok", 1);
            b.parallel(
                "p",
                &[f, ok],
                |a, _| a,
                ParallelOptions::new().failure(FailureStrategy::Ignore),
            )
        })
        .unwrap();
        let (outcome, _, _, err, _) = check(&g, 0);
        assert_eq!(outcome, Outcome::Aborted, "{class:?}");
        assert!(err.unwrap().contains("step `f`"));
    }
}

// ---- Loop, Switch, Map --------------------------------------------------------------------

#[test]
fn loop_stops_when_the_exit_predicate_holds_and_records_it() {
    let g = G::build(|b| {
        let body = add(b, "body", 1);
        b.loop_(
            "lp",
            body,
            LoopOptions::new()
                .max_iterations(100)
                .until(|x, _, _| *x >= 5),
        )
    })
    .unwrap();
    let (_, out, _, _, recs) = check(&g, 0);
    assert_eq!(out, Some(5));
    let lp = record(&g, &recs, "lp");
    assert_eq!((lp.attempts, lp.loop_exit), (5, Some(LoopExit::Predicate)));
}

#[test]
fn loop_stops_at_its_iteration_bound_and_records_it() {
    let g = G::build(|b| {
        let body = add(b, "body", 1);
        b.loop_(
            "lp",
            body,
            LoopOptions::new().max_iterations(3).until(|_, _, _| false),
        )
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 0);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(3)));
    let lp = record(&g, &recs, "lp");
    assert_eq!((lp.attempts, lp.loop_exit), (3, Some(LoopExit::Bound)));
    assert_eq!(recs.len(), 4, "three body records, then the loop's");
}

#[test]
fn switch_runs_the_arm_the_selector_picks() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        let c = add(b, "c", 200);
        b.switch("br", |x, _| (*x % 2) as u64, &[(0, a), (1, c)], None)
    })
    .unwrap();
    assert_eq!(check(&g, 4).1, Some(104));
    assert_eq!(check(&g, 5).1, Some(205));
}

#[test]
fn switch_runs_the_default_arm_when_no_key_matches() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        let d = add(b, "d", 900);
        b.switch("br", |x, _| *x as u64, &[(0, a)], Some(d))
    })
    .unwrap();
    assert_eq!(check(&g, 3).1, Some(903));
}

#[test]
fn switch_without_match_or_default_fails_naming_the_key() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        b.switch("br", |x, _| *x as u64, &[(0, a)], None)
    })
    .unwrap();
    let (outcome, _, _, err, _) = check(&g, 3);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        err.unwrap(),
        "step `br` (node 1): no arm for key 3 and no default arm"
    );
}

fn digits_map(max_items: u32) -> G {
    G::build(|b| {
        let body = b.task("sq", |x, _| Ok(x * x));
        b.map(
            "m",
            |x, _, items| {
                let mut v = x;
                while v > 0 {
                    if items.push(v % 10).is_err() {
                        break;
                    }
                    v /= 10;
                }
                Ok(0)
            },
            body,
            |acc, y| acc * 100 + y,
            MapOptions::new().max_items(max_items),
        )
    })
    .unwrap()
}

#[test]
fn map_splits_runs_the_body_per_item_and_reduces_in_item_order() {
    // Items of 123 are 3, 2, 1 (pushed in that order); squares 9, 4, 1 fold as 9|04|01.
    assert_eq!(check(&digits_map(8), 123).1, Some(90401));
}

#[test]
fn map_with_no_items_returns_the_split_seed() {
    assert_eq!(check(&digits_map(8), 0).1, Some(0));
}

#[test]
fn map_with_more_items_than_its_bound_fails() {
    let (outcome, _, _, err, _) = check(&digits_map(2), 123);
    assert_eq!(outcome, Outcome::Failed);
    assert!(err.unwrap().contains("more than 2 items"));
}

// ---- Task policies, in order --------------------------------------------------------------

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

#[test]
fn open_breaker_fails_fast_and_the_fallback_still_runs() {
    let breaker = trips_on_one_failure();
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let g = G::build(|b| {
        let fb = add(b, "fb", 1000);
        let cfg = TaskConfig::new().breaker(breaker.clone()).fallback(fb);
        b.task_with(
            "guarded",
            move |x, _| {
                c2.fetch_add(1, Ordering::Relaxed);
                if x < 0 {
                    Err(StepError::permanent("negative"))
                } else {
                    Ok(x)
                }
            },
            cfg,
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(10);
    let r = runner.run(&g, -1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(
        r.output,
        Some(999),
        "first call fails, fallback answers, breaker opens"
    );
    let r = runner.run(&g, 5, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(
        r.output,
        Some(1005),
        "open breaker: the step is not called, the fallback is"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let rec = record(&g, r.records, "guarded");
    assert_eq!(
        (rec.attempts, rec.error_class, rec.fallback_used),
        (0, Some(ErrorClass::CircuitOpen), true)
    );
}

#[test]
fn cache_hit_returns_the_stored_output_without_running_the_step() {
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let g = Graph::<u64, u64>::build(|b| {
        b.task_with(
            "sq",
            move |x, _| {
                c2.fetch_add(1, Ordering::Relaxed);
                Ok(x * x)
            },
            TaskConfig::new().cacheable(StepFingerprint::builder("step", 42).build()),
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    for (input, expect, hit) in [(3, 9, false), (3, 9, true), (4, 16, false), (3, 9, true)] {
        let r = runner.run(&g, input, 0, &NoClock, &RunOptions::default());
        assert_eq!(r.output, Some(expect));
        assert_eq!(r.records[0].cache_hit, hit, "input {input}");
        assert_eq!(r.records[0].attempts, u32::from(!hit));
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // Switching the cache off changes speed, never results.
    let mut off = Runner::new(RunnerConfig {
        cache_capacity: 0,
        ..RunnerConfig::default()
    });
    let r = off.run(&g, 3, 0, &NoClock, &RunOptions::default());
    assert_eq!((r.output, r.records[0].cache_hit), (Some(9), false));
}

/// A lean policy task for the stretch tests below: retried, validated (typed), guarded by
/// `breaker`, adding `n`.
fn lean(b: &mut B<'_>, name: &str, n: i64, breaker: &Arc<Breaker>) -> NodeRef {
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

#[test]
fn breakers_switched_off_are_neither_asked_nor_told_in_a_lean_stretch() {
    // An open breaker would refuse; with breakers off the tasks run and it learns nothing.
    let breaker = trips_on_one_failure();
    let permit = breaker.try_acquire(0).unwrap();
    assert!(breaker.record(permit, CallOutcome::Failure, 0, 0).is_some());
    let before = breaker.transition_counts();
    let g = G::build(|b| {
        let a = lean(b, "a", 1, &breaker);
        let c = lean(b, "c", 2, &breaker);
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let mut off = Runner::new(RunnerConfig {
        breakers: false,
        ..RunnerConfig::default()
    });
    let clock = ManualClock::new(10);
    let r = off.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(4)));
    // A failure (the validator rejects -5 + 1) is not counted either; no fallback: it fails.
    let r = off.run(&g, -5, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.records[0].error_class, Some(ErrorClass::Validation));
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.transition_counts(), before);
    assert_eq!(breaker.refusals(), 0);
    // Switched on, the same graph meets the open breaker.
    let mut on = Runner::new(RunnerConfig::default());
    let r = on.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(r.records[0].error_class, Some(ErrorClass::CircuitOpen));
    assert_eq!(breaker.refusals(), 1);
}

#[test]
fn a_lean_stretch_stops_before_the_task_after_a_cancel() {
    let flag = Arc::new(CancelFlag::new());
    let f2 = flag.clone();
    let breaker = trips_on_one_failure();
    let g = G::build(|b| {
        let a = lean(b, "a", 1, &breaker);
        let cancel = b.task_with(
            "cancel",
            move |x, _| {
                f2.cancel();
                Ok(x)
            },
            TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        );
        let c = lean(b, "c", 1, &breaker);
        b.sequence("s", &[a, cancel, c])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &cancellable(&flag));
    assert_eq!(r.outcome, Outcome::Aborted);
    let err = r.error.unwrap();
    assert_eq!((err.step, err.kind), ("c", ErrorKind::Cancelled));
    let outcomes: Vec<_> = r.records.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Succeeded,
            StepOutcome::Succeeded,
            StepOutcome::Aborted
        ]
    );
    // Without a cancel the same runner runs it through (the turn without stop tests).
    let r = run_with(&mut runner, &g, 0, &RunOptions::default());
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
}

#[test]
fn a_lean_task_drops_the_input_it_kept_for_a_retry_it_did_not_need() {
    // Each lean task keeps a copy of its input for a retry; a success drops it, a failure
    // hands it to the retry. The payload counts its live copies.
    let breaker = trips_on_one_failure();
    let payload = Arc::new(0u8);
    let g = Graph::<Arc<u8>, ()>::build(|b| {
        let retry = || TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap());
        let a = b.task_with("a", |x, _| Ok(x), retry().breaker(breaker.clone()));
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() == 1 {
                    Err(StepError::transient("once"))
                } else {
                    Ok(x)
                }
            },
            retry(),
        );
        let c = b.task_with("c", |x, _| Ok(x), retry().validate(|_, _| Ok(())));
        b.sequence("s", &[a, flaky, c])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    for _ in 0..3 {
        let r = runner.run(&g, payload.clone(), (), &NoClock, &RunOptions::default());
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.records[1].attempts, 2);
        assert!(Arc::ptr_eq(r.output.as_ref().unwrap(), &payload));
    }
    assert_eq!(Arc::strong_count(&payload), 1, "no copy outlives its run");
}

#[test]
fn validators_run_in_the_order_they_were_added_whether_typed_or_boxed() {
    // The typed validator is compiled into the step when it is first and no post-processor
    // runs between them; otherwise it is boxed in its place. Either way the order holds and
    // the analysis sees validators.
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let note = |name: &'static str| {
        let log = log.clone();
        move |_: &i64, _: &Ctx| {
            log.lock().unwrap().push(name);
            Ok(())
        }
    };
    let g = G::build(|b| {
        let l = log.clone();
        let step = move |x, _: &mut StepCx<'_, Ctx>| {
            l.lock().unwrap().push("step");
            Ok(x)
        };
        let l = log.clone();
        let post = TaskConfig::new()
            .post(move |y, _| {
                l.lock().unwrap().push("post");
                Ok(y)
            })
            .validate(note("typed after post"))
            .validate(note("boxed after post"));
        let after_boxed = TaskConfig::new()
            .validate_boxed(note("boxed first"))
            .validate(note("typed second"));
        let fused = TaskConfig::new()
            .validate(note("typed first"))
            .validate(note("boxed second"));
        let a = b.task_with("post", step.clone(), post);
        let c = b.task_with("after_boxed", step.clone(), after_boxed);
        let d = b.task_with("fused", step, fused);
        b.sequence("s", &[a, c, d])
    })
    .unwrap();
    for name in ["post", "after_boxed", "fused"] {
        let flags = g.step_flags(g.find(name).unwrap()).unwrap();
        assert!(flags.contains(StepFlags::VALIDATORS), "{name}");
    }
    let (outcome, ..) = check(&g, 1);
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "step",
            "post",
            "typed after post",
            "boxed after post",
            "step",
            "boxed first",
            "typed second",
            "step",
            "typed first",
            "boxed second",
        ]
    );
}

#[test]
fn the_breaker_and_the_cache_come_before_the_usage_reservation() {
    // The task's estimate is more than the budget: reserving it would abort the run. An open
    // breaker (1) and a cache hit (2) answer before the reservation (3), so it never happens.
    let tiny = RunOptions {
        budget: Some(Usage { cost: 1, tokens: 1 }),
        ..RunOptions::default()
    };
    let estimate = Usage {
        cost: 10,
        tokens: 0,
    };
    let breaker = trips_on_one_failure();
    let permit = breaker.try_acquire(0).unwrap();
    let _ = breaker.record(permit, CallOutcome::Failure, 0, 0);
    let guarded = G::build(|b| {
        let fb = add(b, "fb", 100);
        let cfg = TaskConfig::new()
            .usage_estimate(estimate)
            .breaker(breaker.clone())
            .fallback(fb);
        b.task_with("guarded", |x, _| Ok(x), cfg)
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(10);
    let r = runner.run(&guarded, 1, Ctx::default(), &clock, &tiny);
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(101)));
    let rec = record(&guarded, r.records, "guarded");
    assert_eq!(rec.error_class, Some(ErrorClass::CircuitOpen));

    let cached = G::build(|b| {
        let cfg = TaskConfig::new()
            .usage_estimate(estimate)
            .cacheable(StepFingerprint::builder("double", 1).build());
        b.task_with("double", |x, _| Ok(x * 2), cfg)
    })
    .unwrap();
    let r = run_with(&mut runner, &cached, 4, &tiny);
    assert!(matches!(
        r.error.map(|e| e.kind),
        Some(ErrorKind::UsageDenied { requested, .. }) if requested == estimate
    ));
    let r = run_with(&mut runner, &cached, 4, &RunOptions::default());
    assert_eq!((r.output, r.records[0].cache_hit), (Some(8), false));
    let r = run_with(&mut runner, &cached, 4, &tiny);
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(8)));
    assert!(r.records[0].cache_hit);
}

/// A task that reports `cost` of usage (and writes `a` when `writes`), configured by `cfg`.
fn spender(
    b: &mut B<'_>,
    name: &str,
    cost: u64,
    writes: bool,
    cfg: TaskConfig<i64, Ctx>,
) -> NodeRef {
    let cfg = if writes { cfg.writes_context() } else { cfg };
    b.task_with(
        name,
        move |x, cx| {
            cx.report_usage(Usage { cost, tokens: 0 });
            if writes {
                cx.ctx_mut()?.a = 1;
            }
            Ok(x + 1)
        },
        cfg,
    )
}

/// A budget of `cost` (and ample tokens).
fn budget(cost: u64) -> RunOptions<'static> {
    RunOptions {
        budget: Some(Usage { cost, tokens: 1000 }),
        ..RunOptions::default()
    }
}

/// Checks the run of `spend (reports 50) -> after` under a budget of 10: the overrun aborts
/// the run after `spend`, whose own record says it succeeded.
fn assert_overrun_aborts(g: &G, writes: bool) {
    for fast_paths in [true, false] {
        let config = RunnerConfig {
            fast_paths,
            ..RunnerConfig::default()
        };
        let mut runner = Runner::new(config);
        let r = run_with(&mut runner, g, 0, &budget(10));
        assert_eq!(r.outcome, Outcome::Aborted, "fast paths {fast_paths}");
        assert_eq!(r.output, None);
        assert_eq!(r.usage.cost, 50, "the usage happened and is counted");
        assert_eq!(r.records.len(), 1, "the run stops before `after`");
        let spend = record(g, r.records, "spend");
        assert_eq!(
            (spend.outcome, spend.usage.cost),
            (StepOutcome::Succeeded, 50)
        );
        assert_eq!(r.context.a, i64::from(writes), "the step's writes stand");
        assert_eq!(r.counters.get(crate::telemetry::Counter::UsageOverruns), 1);
        assert_eq!(r.counters.get(crate::telemetry::Counter::StepsSucceeded), 1);
        let err = r.error.unwrap();
        assert_eq!((err.step, err.kind.class()), ("spend", ErrorClass::Usage));
        let over = crate::policy::UsageDenied {
            limit: crate::policy::UsageLimit::Cost,
            max: 10,
            wanted: 50,
        };
        assert_eq!(
            err.kind,
            ErrorKind::UsageOverrun {
                reported: Usage {
                    cost: 50,
                    tokens: 0
                },
                over
            }
        );
        assert_eq!(
            err.to_string(),
            "step `spend` (node 0): reported usage Usage { cost: 50, tokens: 0 } took the \
             budget past cost_max of 10: usage reached 50"
        );
        // Without a budget the same graph runs to the end.
        let r = run_with(&mut runner, g, 0, &RunOptions::default());
        assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
        assert_eq!(r.counters.get(crate::telemetry::Counter::UsageOverruns), 0);
    }
}

#[test]
fn reported_usage_past_the_budget_aborts_the_run_after_a_plain_step() {
    for writes in [false, true] {
        let g = G::build(|b| {
            let spend = spender(b, "spend", 50, writes, TaskConfig::new());
            let after = add(b, "after", 1);
            b.sequence("s", &[spend, after])
        })
        .unwrap();
        assert_overrun_aborts(&g, writes);
    }
}

#[test]
fn reported_usage_past_the_budget_aborts_the_run_after_a_policy_step() {
    // A breaker alone makes a lean task (run in the stretch loop); a retry policy or an
    // estimate one of the full pipeline.
    let configs: [fn() -> TaskConfig<i64, Ctx>; 3] = [
        || TaskConfig::new().breaker(Arc::new(Breaker::new(BreakerConfig::DEFAULT).unwrap())),
        || TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        || TaskConfig::new().usage_estimate(Usage { cost: 5, tokens: 0 }),
    ];
    for cfg in configs {
        for writes in [false, true] {
            let g = G::build(|b| {
                let spend = spender(b, "spend", 50, writes, cfg());
                let after = add(b, "after", 1);
                b.sequence("s", &[spend, after])
            })
            .unwrap();
            assert_overrun_aborts(&g, writes);
        }
    }
}

#[test]
fn reported_usage_up_to_the_budget_does_not_abort() {
    let g = G::build(|b| {
        let spend = spender(b, "spend", 10, false, TaskConfig::new());
        let after = add(b, "after", 1);
        b.sequence("s", &[spend, after])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &budget(10));
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
    let r = run_with(&mut runner, &g, 0, &budget(9));
    assert_eq!(r.outcome, Outcome::Aborted);
}

#[test]
fn a_failed_step_that_overruns_aborts_the_run() {
    // A plain task, and a policy task whose fallback runs (and succeeds) before its usage is
    // settled: either way the overrun aborts the run after the step.
    for name in ["plain", "with_fb"] {
        let g = G::build(|b| {
            let fb = add(b, "fb", 0);
            let failing = |_: i64, cx: &mut StepCx<'_, Ctx>| -> Result<i64, StepError> {
                cx.report_usage(Usage {
                    cost: 50,
                    tokens: 0,
                });
                Err(StepError::permanent("down"))
            };
            let cfg = if name == "with_fb" {
                TaskConfig::new().fallback(fb)
            } else {
                TaskConfig::new()
            };
            let t = b.task_with(name, failing, cfg);
            let after = add(b, "after", 1);
            b.sequence("s", &[t, after])
        })
        .unwrap();
        let mut runner = Runner::new(RunnerConfig::default());
        let r = run_with(&mut runner, &g, 0, &budget(10));
        assert_eq!(r.outcome, Outcome::Aborted, "{name}");
        let step = record(&g, r.records, name);
        let own_end = if name == "plain" {
            StepOutcome::Failed
        } else {
            StepOutcome::Succeeded
        };
        assert_eq!(step.outcome, own_end, "the step's own end: {name}");
        let err = r.error.unwrap();
        assert_eq!((err.step, err.kind.class()), (name, ErrorClass::Usage));
        let after = g.find("after").unwrap();
        assert!(r.records.iter().all(|rec| rec.node != after));
    }
}

#[test]
fn a_branch_that_overruns_its_share_aborts_the_run() {
    // A budget of 10 split two ways: 6 is within the run's budget but past a share of 5.
    let g = G::build(|b| {
        let spend = spender(b, "spend", 6, false, TaskConfig::new());
        let other = add(b, "other", 1);
        b.parallel(
            "p",
            &[spend, other],
            |x, y| x + y,
            ParallelOptions::default(),
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &budget(10));
    assert_eq!(r.outcome, Outcome::Aborted);
    let err = r.error.unwrap();
    assert_eq!(err.step, "spend");
    assert!(matches!(
        err.kind,
        ErrorKind::UsageOverrun { over, .. } if (over.max, over.wanted) == (5, 6)
    ));
}

#[test]
fn usage_denial_aborts_with_partial_results_never_retried_nor_fallback() {
    let fb_calls = Arc::new(AtomicU32::new(0));
    let f2 = fb_calls.clone();
    let g = G::build(|b| {
        let spend = b.task_with(
            "spend",
            |x, cx| {
                cx.report_usage(Usage {
                    cost: 7,
                    tokens: 70,
                });
                cx.ctx_mut()?.a = 1;
                Ok(x + 1)
            },
            TaskConfig::new()
                .writes_context()
                .usage_estimate(Usage { cost: 7, tokens: 0 }),
        );
        let fb = b.task("fb", move |x, _| {
            f2.fetch_add(1, Ordering::Relaxed);
            Ok(x)
        });
        let cfg = TaskConfig::new()
            .usage_estimate(Usage { cost: 5, tokens: 0 })
            .retry(RetryPolicy::new(3, Backoff::NONE).unwrap())
            .fallback(fb);
        let big = b.task_with("big", |x, _| Ok(x), cfg);
        b.sequence("s", &[spend, big])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let opts = RunOptions {
        budget: Some(Usage {
            cost: 10,
            tokens: 1000,
        }),
        ..RunOptions::default()
    };
    let r = run_with(&mut runner, &g, 0, &opts);
    assert_eq!(r.outcome, Outcome::Aborted);
    assert_eq!(r.output, None);
    assert_eq!(
        r.context.a, 1,
        "partial results: the first step's writes stay"
    );
    assert_eq!(
        r.usage,
        Usage {
            cost: 7,
            tokens: 70
        }
    );
    assert_eq!(r.records.len(), 2);
    let big = record(&g, r.records, "big");
    assert_eq!(
        (big.outcome, big.attempts, big.fallback_used),
        (StepOutcome::Aborted, 0, false)
    );
    assert_eq!(fb_calls.load(Ordering::Relaxed), 0);
    let err = r.error.unwrap();
    assert_eq!(err.step, "big");
    assert!(matches!(
        err.kind,
        ErrorKind::UsageDenied {
            requested: Usage { cost: 5, .. },
            denied: crate::policy::UsageDenied {
                limit: crate::policy::UsageLimit::Cost,
                max: 10,
                wanted: 12
            }
        }
    ));
}

#[test]
fn retries_until_success_within_max_attempts() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new().retry(RetryPolicy::new(4, Backoff::NONE).unwrap());
        b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() < 3 {
                    Err(StepError::transient("busy"))
                } else {
                    Ok(x)
                }
            },
            cfg,
        )
    })
    .unwrap();
    let (outcome, _, _, _, recs) = check(&g, 1);
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(
        (recs[0].attempts, recs[0].error_class),
        (3, Some(ErrorClass::Transient))
    );
}

#[test]
fn attempts_are_bounded_by_max_attempts() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).unwrap());
        b.task_with("down", |_, _| Err(StepError::transient("busy")), cfg)
    })
    .unwrap();
    let (outcome, _, _, err, recs) = check(&g, 1);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(recs[0].attempts, 3);
    assert_eq!(err.unwrap(), "step `down` (node 0): Transient: busy");
}

#[test]
fn a_failed_attempts_context_writes_are_discarded() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new()
            .writes_context()
            .retry(RetryPolicy::new(2, Backoff::NONE).unwrap());
        b.task_with(
            "w",
            |x, cx| {
                let attempt = cx.attempt();
                cx.ctx_mut()?.log.push(attempt);
                if attempt == 1 {
                    Err(StepError::transient("first"))
                } else {
                    Ok(x)
                }
            },
            cfg,
        )
    })
    .unwrap();
    assert_eq!(check(&g, 0).2.log, vec![2]);
}

#[test]
fn a_failed_attempts_error_is_the_next_attempts_feedback() {
    // A validator's error is classed as validation whatever class it was made with, typed
    // (compiled into the step) or boxed.
    let negative = |x: &i64, _: &Ctx| {
        if *x >= 0 {
            Ok(())
        } else {
            Err(StepError::permanent("negative"))
        }
    };
    let fix = |x: i64, cx: &mut StepCx<'_, Ctx>| match cx.feedback() {
        None => Ok(-x),
        Some(f) => {
            assert_eq!(
                (f.class(), f.reason()),
                (ErrorClass::Validation, "negative")
            );
            Ok(x)
        }
    };
    let cfg = || {
        TaskConfig::new()
            .retry(RetryPolicy::new(3, Backoff::NONE).unwrap())
            .recovery(RecoveryTable::DEFAULT.with(ErrorClass::Validation, Recovery::Retry))
    };
    let typed = G::build(|b| b.task_with("fix", fix, cfg().validate(negative))).unwrap();
    let boxed = G::build(|b| b.task_with("fix", fix, cfg().validate_boxed(negative))).unwrap();
    for g in [typed, boxed] {
        let (_, out, _, _, recs) = check(&g, 5);
        assert_eq!((out, recs[0].attempts), (Some(5), 2));
    }
}

#[test]
fn pre_processors_then_step_then_post_processors_then_validators() {
    let g = Graph::<Vec<u8>, ()>::build(|b| {
        let cfg = TaskConfig::new()
            .pre(|mut v: Vec<u8>, _| {
                v.push(b'p');
                Ok(v)
            })
            .pre(|mut v: Vec<u8>, _| {
                v.push(b'q');
                Ok(v)
            })
            .post(|mut v: Vec<u8>, _| {
                v.push(b'o');
                Ok(v)
            })
            .validate(|v: &Vec<u8>, _| {
                if v == b"pqso" {
                    Ok(())
                } else {
                    Err(StepError::validation("order"))
                }
            });
        b.task_with(
            "t",
            |mut v: Vec<u8>, _| {
                v.push(b's');
                Ok(v)
            },
            cfg,
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = runner.run(&g, Vec::new(), (), &NoClock, &RunOptions::default());
    assert_eq!(r.output.as_deref(), Some(&b"pqso"[..]));
}

#[test]
fn validation_failure_is_not_retried_by_default_and_falls_back() {
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let g = G::build(|b| {
        let fb = add(b, "fb", 1000);
        let cfg = TaskConfig::new()
            .retry(RetryPolicy::new(5, Backoff::NONE).unwrap())
            .validate(|_, _| Err(StepError::permanent("never ok")))
            .fallback(fb);
        b.task_with(
            "v",
            move |x, _| {
                c2.fetch_add(1, Ordering::Relaxed);
                Ok(x)
            },
            cfg,
        )
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(1001)));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "validation failures are not retried by default"
    );
    let v = record(&g, &recs, "v");
    assert_eq!(
        (v.error_class, v.fallback_used),
        (Some(ErrorClass::Validation), true),
        "validator errors are classed validation"
    );
}

#[test]
fn backoff_between_attempts_is_reported_to_the_clock() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new().retry(
            RetryPolicy::new(
                4,
                Backoff::Exponential {
                    base_ticks: 10,
                    factor: 2,
                    delay_ticks_max: 25,
                },
            )
            .unwrap(),
        );
        b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() < 4 {
                    Err(StepError::transient("busy"))
                } else {
                    Ok(x)
                }
            },
            cfg,
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(0);
    let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(1));
    assert_eq!(
        r.records[0].backoff_ticks,
        10 + 20 + 25,
        "exponential, capped"
    );
    assert_eq!(r.records[0].latency_ticks, 55, "latency includes the waits");
    assert_eq!(clock.now(), 55);
}

#[test]
fn permanent_errors_are_not_retried_by_default() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new().retry(RetryPolicy::new(5, Backoff::NONE).unwrap());
        b.task_with("p", |_, _| Err(StepError::permanent("no")), cfg)
    })
    .unwrap();
    let (outcome, _, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, recs[0].attempts), (Outcome::Failed, 1));
}

#[test]
fn recovery_skip_uses_the_default_output() {
    let g = G::build(|b| {
        let cfg = TaskConfig::new()
            .recovery(RecoveryTable::DEFAULT.with(ErrorClass::Permanent, Recovery::Skip))
            .default_output(-7);
        let s = b.task_with("s", |_, _| Err(StepError::permanent("no")), cfg);
        let next = add(b, "next", 1);
        b.sequence("seq", &[s, next])
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(-6)));
    assert_eq!(record(&g, &recs, "s").outcome, StepOutcome::Skipped);
}

#[test]
fn recovery_fail_fails_even_with_a_fallback() {
    let g = G::build(|b| {
        let fb = add(b, "fb", 1);
        let cfg = TaskConfig::new()
            .recovery(RecoveryTable::DEFAULT.with(ErrorClass::Permanent, Recovery::Fail))
            .fallback(fb);
        b.task_with("s", |_, _| Err(StepError::permanent("no")), cfg)
    })
    .unwrap();
    let (outcome, _, _, _, recs) = check(&g, 1);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(recs.len(), 1, "the fallback never ran");
}

#[test]
fn usage_and_cancelled_errors_always_abort_whatever_the_table_says() {
    for class in [ErrorClass::Usage, ErrorClass::Cancelled] {
        let g = G::build(|b| {
            let fb = add(b, "fb", 1);
            let table = RecoveryTable::DEFAULT.with(class, Recovery::Retry);
            let cfg = TaskConfig::new()
                .recovery(table)
                .retry(RetryPolicy::new(3, Backoff::NONE).unwrap())
                .fallback(fb);
            b.task_with("s", move |_, _| Err(StepError::new(class, "stop")), cfg)
        })
        .unwrap();
        let (outcome, _, _, _, recs) = check(&g, 1);
        assert_eq!(outcome, Outcome::Aborted, "{class:?}");
        assert_eq!(
            (recs.len(), recs[0].attempts, recs[0].outcome),
            (1, 1, StepOutcome::Aborted)
        );
    }
}

#[test]
fn a_fallback_runs_with_its_own_policies() {
    let g = G::build(|b| {
        let fb_cfg = TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).unwrap());
        let fb = b.task_with(
            "fb",
            |x, cx| {
                if cx.attempt() < 3 {
                    Err(StepError::transient("fb busy"))
                } else {
                    Ok(x + 50)
                }
            },
            fb_cfg,
        );
        b.task_with(
            "main",
            |_, _| Err(StepError::permanent("no")),
            TaskConfig::new().fallback(fb),
        )
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 1);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(51)));
    assert_eq!(record(&g, &recs, "fb").attempts, 3);
    let main = record(&g, &recs, "main");
    assert_eq!(
        (main.outcome, main.fallback_used),
        (StepOutcome::Succeeded, true)
    );
}

#[test]
fn a_fallback_chain_runs_until_one_succeeds() {
    let g = G::build(|b| {
        let last = add(b, "last", 3);
        let mid = b.task_with(
            "mid",
            |_, _| Err(StepError::permanent("mid")),
            TaskConfig::new().fallback(last),
        );
        b.task_with(
            "first",
            |_, _| Err(StepError::permanent("first")),
            TaskConfig::new().fallback(mid),
        )
    })
    .unwrap();
    let (_, out, _, _, recs) = check(&g, 1);
    assert_eq!(out, Some(4));
    assert_eq!(recs.len(), 3);
}

#[test]
fn a_failed_fallback_fails_the_run_naming_the_fallback() {
    let g = G::build(|b| {
        let fb = b.task("fb", |_, _| Err(StepError::permanent("fb broke")));
        b.task_with(
            "main",
            |_, _| Err(StepError::permanent("no")),
            TaskConfig::new().fallback(fb),
        )
    })
    .unwrap();
    let (outcome, _, _, err, recs) = check(&g, 1);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(err.unwrap(), "step `fb` (node 0): Permanent: fb broke");
    assert_eq!(record(&g, &recs, "main").outcome, StepOutcome::Failed);
}

#[test]
fn step_record_holds_step_outcome_attempts_latency_cache_usage_class_fallback() {
    let g = G::build(|b| {
        let fb = add(b, "fb", 1);
        let cfg = TaskConfig::new()
            .retry(RetryPolicy::new(2, Backoff::Constant { delay_ticks: 3 }).unwrap())
            .fallback(fb);
        b.task_with(
            "t",
            |_, cx| {
                cx.report_usage(Usage { cost: 2, tokens: 5 });
                Err(StepError::transient("x"))
            },
            cfg,
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(100);
    let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    let t = *record(&g, r.records, "t");
    assert_eq!(
        t,
        StepRecord {
            node: g.find("t").unwrap(),
            outcome: StepOutcome::Succeeded,
            attempts: 2,
            latency_ticks: 3,
            backoff_ticks: 3,
            cache_hit: false,
            fallback_used: true,
            error_class: Some(ErrorClass::Transient),
            usage: Usage {
                cost: 4,
                tokens: 10
            },
            loop_exit: None,
        }
    );
    assert_eq!(
        r.usage,
        Usage {
            cost: 4,
            tokens: 10
        }
    );
}

// ---- Step context, results ----------------------------------------------------------------

#[test]
fn a_step_writing_the_context_without_declaring_it_aborts_with_a_clear_error() {
    let g = G::build(|b| {
        b.task("sneaky", |x, cx| {
            cx.ctx_mut()?.a = 1;
            Ok(x)
        })
    })
    .unwrap();
    let (outcome, _, ctx, err, _) = check(&g, 0);
    assert_eq!((outcome, ctx.a), (Outcome::Aborted, 0));
    assert!(err.unwrap().contains("step `sneaky`"), "names the step");
}

#[test]
fn a_step_that_only_reads_never_copies_the_context() {
    let g = G::build(|b| {
        let steps: Vec<_> = (0..10)
            .map(|i| b.task(&format!("r{i}"), |x, cx| Ok(x + cx.ctx().a)))
            .collect();
        b.sequence("s", &steps)
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let before = clones();
    let r = runner.run(
        &g,
        0,
        Ctx {
            a: 1,
            ..Ctx::default()
        },
        &NoClock,
        &RunOptions::default(),
    );
    assert_eq!((r.output, clones() - before), (Some(10), 0));
}

#[test]
fn cancelled_run_stops_before_the_next_step() {
    let flag = Arc::new(CancelFlag::new());
    let f2 = flag.clone();
    let g = G::build(|b| {
        let a = b.task("a", move |x, cx| {
            f2.cancel();
            assert!(cx.should_stop());
            Ok(x + 1)
        });
        let c = add(b, "c", 1);
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &cancellable(&flag));
    assert_eq!(r.outcome, Outcome::Aborted);
    let err = r.error.unwrap();
    assert_eq!((err.step, err.kind), ("c", ErrorKind::Cancelled));
    assert_eq!(r.records[1].error_class, Some(ErrorClass::Cancelled));
}

/// The clock of `run_deadline_stops_the_run_before_the_next_step`, which its steps move.
static DEADLINE_NOW: AtomicU64 = AtomicU64::new(0);

struct StepDrivenClock;

impl Clock for StepDrivenClock {
    fn now(&self) -> u64 {
        DEADLINE_NOW.load(Ordering::Relaxed)
    }
}

#[test]
fn run_deadline_stops_the_run_before_the_next_step() {
    // The first step starts before the deadline and takes the clock past it: the second is
    // stopped. Plain tasks, and lean policy tasks (the stretch loop's other turn).
    let breaker = trips_on_one_failure();
    let plain = G::build(|b| {
        let a = b.task("a", |x, _| {
            DEADLINE_NOW.fetch_add(10, Ordering::Relaxed);
            Ok(x + 1)
        });
        let c = add(b, "c", 1);
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let lean = G::build(|b| {
        let cfg = TaskConfig::new().breaker(breaker.clone());
        let a = b.task_with(
            "a",
            |x, _| {
                DEADLINE_NOW.fetch_add(10, Ordering::Relaxed);
                Ok(x + 1)
            },
            cfg,
        );
        let c = lean(b, "c", 1, &breaker);
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let opts = RunOptions {
        deadline: Some(5),
        ..RunOptions::default()
    };
    for g in [plain, lean] {
        DEADLINE_NOW.store(0, Ordering::Relaxed);
        let r = runner.run(&g, 0, Ctx::default(), &StepDrivenClock, &opts);
        assert_eq!((r.outcome, r.output), (Outcome::Aborted, None));
        let err = r.error.unwrap();
        assert_eq!((err.step, err.kind), ("c", ErrorKind::DeadlineExceeded));
        let outcomes: Vec<_> = r.records.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [StepOutcome::Succeeded, StepOutcome::Aborted]);
        // A run that starts at its deadline runs nothing.
        DEADLINE_NOW.store(5, Ordering::Relaxed);
        let r = runner.run(&g, 0, Ctx::default(), &StepDrivenClock, &opts);
        let err = r.error.unwrap();
        assert_eq!((err.step, err.kind), ("a", ErrorKind::DeadlineExceeded));
        assert_eq!((r.records.len(), r.records[0].attempts), (1, 0));
    }
}

#[test]
fn records_beyond_the_buffer_are_counted_not_lost_silently() {
    let g = G::build(|b| {
        let steps: Vec<_> = (0..10).map(|i| add(b, &format!("s{i}"), 1)).collect();
        b.sequence("s", &steps)
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig {
        max_records: 4,
        ..RunnerConfig::default()
    });
    let r = run_with(&mut runner, &g, 0, &RunOptions::default());
    assert_eq!(
        (r.output, r.records.len(), r.records_dropped),
        (Some(10), 4, 6)
    );
}

#[test]
fn a_runner_gives_the_same_results_run_after_run() {
    let g = G::build(|b| {
        let w = set_a(b, "w", 3);
        let r = b.task("r", |x, cx| Ok(x + cx.ctx().a));
        let p = b.parallel("p", &[w, r], |a, x| a + x, ParallelOptions::new());
        let body = add(b, "body", 2);
        let lp = b.loop_("lp", body, LoopOptions::new().max_iterations(3));
        b.sequence("s", &[p, lp])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    for _ in 0..5 {
        let r = run_with(&mut runner, &g, 1, &RunOptions::default());
        assert_eq!(
            (r.output, r.context.a, r.records.len()),
            (Some(1 + 1 + 6), 3, 6)
        );
    }
}

#[test]
fn plain_and_policy_tasks_give_the_same_results() {
    // Optimizations (the fast path) change speed, never results.
    let build = |policy: bool| {
        G::build(move |b| {
            let steps: Vec<_> = (0..5)
                .map(|i| {
                    let cfg = if policy {
                        TaskConfig::new()
                            .writes_context()
                            .validate_boxed(|_, _| Ok(()))
                    } else {
                        TaskConfig::new().writes_context()
                    };
                    b.task_with(
                        &format!("s{i}"),
                        move |x, cx| {
                            cx.ctx_mut()?.log.push(i);
                            Ok(x * 3 + i64::from(i))
                        },
                        cfg,
                    )
                })
                .collect();
            b.sequence("s", &steps)
        })
        .unwrap()
    };
    let (plain, policy) = (build(false), build(true));
    assert!(plain
        .step_flags(plain.find("s0").unwrap())
        .unwrap()
        .is_plain());
    assert!(!policy
        .step_flags(policy.find("s0").unwrap())
        .unwrap()
        .is_plain());
    let a = check(&plain, 1);
    let b = check(&policy, 1);
    assert_eq!((a.0, a.1, &a.2), (b.0, b.1, &b.2));
    assert_eq!(a.2.log, vec![0, 1, 2, 3, 4]);
}

#[test]
fn step_sees_its_attempt_number_and_deadline() {
    let g = G::build(|b| {
        b.task("t", |x, cx| {
            assert_eq!((cx.attempt(), cx.deadline(), cx.feedback()), (1, 77, None));
            assert!(!cx.is_cancelled());
            Ok(x)
        })
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(
        &mut runner,
        &g,
        0,
        &RunOptions {
            deadline: Some(77),
            ..RunOptions::default()
        },
    );
    assert_eq!(r.outcome, Outcome::Succeeded);
}

/// The tasks of `lean_and_full_paths_give_the_same_results`, created in the same order in
/// both graphs so their node ids match.
fn mixed_tasks(b: &mut B<'_>, breaker: &Arc<Breaker>) -> Vec<NodeRef> {
    let p0 = add(b, "p0", 1);
    // Retries: the first attempt of an odd input writes, then fails (the write is discarded).
    let l1 = b.task_with(
        "l1",
        |x, cx| {
            if x % 2 == 1 && cx.attempt() == 1 {
                cx.ctx_mut()?.a = -1;
                return Err(StepError::transient("odd"));
            }
            cx.ctx_mut()?.log.push(x as u32);
            Ok(x + 2)
        },
        TaskConfig::new()
            .writes_context()
            .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap()),
    );
    // A validator rejecting large outputs sends the task to its fallback.
    let fb = add(b, "fb", 5);
    let l2 = b.task_with(
        "l2",
        |x, _| Ok(x * 3),
        TaskConfig::new()
            .validate(|y: &i64, _| {
                if *y > 60 {
                    Err(StepError::validation("too big"))
                } else {
                    Ok(())
                }
            })
            .fallback(fb),
    );
    // A breaker opening after one failure, with a fallback.
    let fb2 = add(b, "fb2", 100);
    let l3 = b.task_with(
        "l3",
        |x, _| {
            if x % 7 == 0 {
                Err(StepError::permanent("sevens"))
            } else {
                Ok(x)
            }
        },
        TaskConfig::new().breaker(breaker.clone()).fallback(fb2),
    );
    // Usage reported by a lean task, and a pre- and a post-processor.
    let l4 = b.task_with(
        "l4",
        |x, cx| {
            cx.report_usage(Usage { cost: 3, tokens: 1 });
            Ok(x + cx.ctx().a)
        },
        TaskConfig::new()
            .pre(|x, _| Ok(x + 1))
            .post(|y, _| Ok(y * 2)),
    );
    let p5 = set_b(b, "p5", 9);
    // Skip with a default output on a permanent error.
    let l6 = b.task_with(
        "l6",
        |x, _| {
            if x % 5 == 0 {
                Err(StepError::permanent("fives"))
            } else {
                Ok(x)
            }
        },
        TaskConfig::new()
            .recovery(RecoveryTable::DEFAULT.with(ErrorClass::Permanent, Recovery::Skip))
            .default_output(42),
    );
    // A failure that nothing recovers ends the run.
    let l7 = b.task_with(
        "l7",
        |x, _| {
            if x % 11 == 0 {
                Err(StepError::permanent("elevens"))
            } else {
                Ok(x)
            }
        },
        TaskConfig::new().validate(|_, _| Ok(())),
    );
    // Two validators (the second reads the context written before): the stretch runs them
    // in order, through the general attempt; a rejection is retried with its feedback.
    let l8 = b.task_with(
        "l8",
        |x, cx| Ok(if cx.feedback().is_some() { x } else { x + 1 }),
        TaskConfig::new()
            .retry(RetryPolicy::new(2, Backoff::NONE).unwrap())
            .recovery(RecoveryTable::DEFAULT.with(ErrorClass::Validation, Recovery::Retry))
            .validate(|_, _| Ok(()))
            .validate(|y: &i64, ctx: &Ctx| {
                if (*y + ctx.b) % 4 == 0 {
                    Err(StepError::permanent("fours"))
                } else {
                    Ok(())
                }
            }),
    );
    vec![p0, l1, l2, l3, l4, p5, l6, l7, l8]
}

#[test]
fn lean_and_full_paths_give_the_same_results() {
    // In a sequence of tasks the stretch loop runs the first attempt of lean policy tasks
    // itself; a sequence with a non-task child sends every task through the full pipeline.
    // Optimizations change speed, never results.
    let (breaker_lean, breaker_full) = (trips_on_one_failure(), trips_on_one_failure());
    let lean = G::build(|b| {
        let tasks = mixed_tasks(b, &breaker_lean);
        b.sequence("run", &tasks)
    })
    .unwrap();
    let full = G::build(|b| {
        let mut tasks = mixed_tasks(b, &breaker_full);
        let last = add(b, "last", 0);
        let nested = b.sequence("nested", &[last]);
        tasks.push(nested);
        b.sequence("run", &tasks)
    })
    .unwrap();
    let run = lean.find("run").unwrap();
    assert!(lean.seqs[lean.slot[run.index()] as usize].tasks.is_some());
    let run = full.find("run").unwrap();
    assert!(full.seqs[full.slot[run.index()] as usize].tasks.is_none());
    let last = full.find("last").unwrap();

    let (mut rl, mut rf) = (
        Runner::new(RunnerConfig::default()),
        Runner::new(RunnerConfig::default()),
    );
    let mut outcomes = [0usize; 3];
    for input in 0..if cfg!(miri) { 12 } else { 60 } {
        let clock = ManualClock::new(input as u64);
        let a = rl.run(&lean, input, Ctx::default(), &clock, &RunOptions::default());
        let b = rf.run(&full, input, Ctx::default(), &clock, &RunOptions::default());
        let b_records: Vec<StepRecord> = b
            .records
            .iter()
            .filter(|r| r.node != last)
            .copied()
            .collect();
        assert_eq!(a.outcome, b.outcome, "input {input}");
        assert_eq!(a.output, b.output, "input {input}");
        assert_eq!(a.context, b.context, "input {input}");
        assert_eq!(
            a.error.as_ref().map(ToString::to_string),
            b.error.as_ref().map(ToString::to_string),
            "input {input}"
        );
        assert_eq!(a.records, &b_records[..], "input {input}");
        assert_eq!(a.usage, b.usage, "input {input}");
        outcomes[a.outcome as usize] += 1;
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both outcomes met: {outcomes:?}"
    );
}

#[test]
fn every_record_buffer_size_keeps_a_prefix_and_counts_the_rest() {
    // The stretch loop writes records without a check per record: a chunk of a stretch has
    // at most the room left, and a full buffer sends the rest to a slot that is only
    // counted. Whatever the room, a run gives the records an unbounded buffer would, cut to
    // the room, and counts the rest; with the fast paths on or off, telemetry on or off.
    let build = || {
        let breaker = trips_on_one_failure();
        G::build(|b| {
            let mut tasks = mixed_tasks(b, &breaker);
            let used = b.task("used", |x, cx| {
                cx.report_usage(Usage { cost: 1, tokens: 2 });
                Ok(x + 1)
            });
            tasks.insert(1, used);
            // A task with a usage estimate runs alone: the plain tasks after it are a
            // stretch of their own (writes, usage, a failure on multiples of 13).
            let alone = b.task_with(
                "alone",
                |x, _| Ok(x + 1),
                TaskConfig::new().usage_estimate(Usage { cost: 0, tokens: 0 }),
            );
            tasks.push(alone);
            for i in 0..3 {
                tasks.push(add(b, &format!("t{i}"), 1));
            }
            tasks.push(set_a(b, "w", 7));
            let used = b.task("used2", |x, cx| {
                cx.report_usage(Usage { cost: 2, tokens: 0 });
                Ok(x + cx.ctx().a)
            });
            tasks.push(used);
            tasks.push(b.task("thirteens", |x, _| {
                if x % 13 == 0 {
                    Err(StepError::permanent("thirteens"))
                } else {
                    Ok(x)
                }
            }));
            for i in 3..6 {
                tasks.push(add(b, &format!("t{i}"), 1));
            }
            b.sequence("run", &tasks)
        })
        .unwrap()
    };
    let inputs = if cfg!(miri) { 6 } else { 40 };
    let run = |max_records: usize, fast_paths: bool, telemetry: bool| {
        let g = build();
        let config = RunnerConfig {
            max_records,
            fast_paths,
            ..RunnerConfig::default()
        };
        let tel = telemetry.then(|| Telemetry::new(NullSink, Sampler::always()));
        let mut runner = Runner::build(config, tel);
        (0..inputs)
            .map(|input| {
                let clock = ManualClock::new(input as u64);
                let r = runner.run(&g, input, Ctx::default(), &clock, &RunOptions::default());
                (
                    (r.outcome, r.output, r.context, r.usage, r.counters),
                    r.records.to_vec(),
                    r.records_dropped,
                )
            })
            .collect::<Vec<_>>()
    };
    let unbounded = run(1024, false, false);
    for max_records in 0..=24 {
        for (fast_paths, telemetry) in [(true, false), (true, true), (false, false)] {
            let bounded = run(max_records, fast_paths, telemetry);
            for (input, (want, got)) in unbounded.iter().zip(&bounded).enumerate() {
                let kept = want.1.len().min(max_records);
                let why = format!("input {input}, room {max_records}, fast {fast_paths}");
                assert_eq!(want.2, 0, "{why}");
                assert_eq!(got.0, want.0, "{why}");
                assert_eq!(got.1, want.1[..kept], "{why}");
                assert_eq!(got.2 as usize, want.1.len() - kept, "{why}");
            }
        }
    }
}

// ---- Real policies, counters, telemetry ---------------------------------------------------

fn half_open_breaker() -> Arc<Breaker> {
    Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 1,
            open_ticks: 10,
            half_open_probes_max: 1,
            half_open_successes_to_close: 1,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    )
}

#[test]
fn a_cache_hit_gives_the_breaker_permit_back_without_an_outcome() {
    let breaker = half_open_breaker();
    let g = G::build(|b| {
        let cfg = TaskConfig::new()
            .cacheable(StepFingerprint::builder("guarded", 1).build())
            .breaker(breaker.clone());
        b.task_with(
            "guarded",
            |x, _| {
                if x < 0 {
                    Err(StepError::permanent("negative"))
                } else {
                    Ok(x * 10)
                }
            },
            cfg.no_context(),
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(0);
    let run = |runner: &mut Runner<i64, Ctx>, x| {
        let r = runner.run(&g, x, Ctx::default(), &clock, &RunOptions::default());
        (r.output, r.records[0])
    };
    assert_eq!(run(&mut runner, 5).0, Some(50), "cached");
    assert_eq!(run(&mut runner, -1).0, None, "a failure opens the breaker");
    assert_eq!(breaker.state(), BreakerState::Open);
    clock.advance(10);
    // The open period is over: this call takes the one half-open probe, and hits the cache.
    let (out, rec) = run(&mut runner, 5);
    assert_eq!((out, rec.cache_hit, rec.attempts), (Some(50), true, 0));
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "a hit is no outcome"
    );
    // The probe came back: the next call gets it, succeeds and closes the breaker.
    let (out, rec) = run(&mut runner, 7);
    assert_eq!((out, rec.error_class), (Some(70), None));
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// A parallel node of two branches, each reserving `estimate` and using `used`, then a task
/// reserving `after`.
fn split_graph(estimate: u64, used: [u64; 2], after: u64) -> G {
    G::build(|b| {
        let branches: Vec<NodeRef> = (0..2)
            .map(|i| {
                let cost = used[i];
                b.task_with(
                    &format!("b{i}"),
                    move |x, cx| {
                        cx.report_usage(Usage { cost, tokens: 0 });
                        Ok(x + 1)
                    },
                    TaskConfig::new().usage_estimate(Usage {
                        cost: estimate,
                        tokens: 0,
                    }),
                )
            })
            .collect();
        let par = b.parallel("par", &branches, |a, x| a + x, ParallelOptions::new());
        let last = b.task_with(
            "after",
            |x, _| Ok(x),
            TaskConfig::new().usage_estimate(Usage {
                cost: after,
                tokens: 0,
            }),
        );
        b.sequence("s", &[par, last])
    })
    .unwrap()
}

#[test]
fn parallel_branches_split_the_usage_budget_and_return_what_they_do_not_use() {
    let opts = RunOptions {
        budget: Some(Usage {
            cost: 10,
            tokens: 100,
        }),
        ..RunOptions::default()
    };
    let mut runner = Runner::new(RunnerConfig::default());
    // Each branch gets half: an estimate of 6 does not fit a share of 5, whatever the order.
    let (g1, g2, g3) = (
        split_graph(6, [1, 1], 0),
        split_graph(5, [1, 5], 4),
        split_graph(5, [1, 5], 5),
    );
    let r = run_with(&mut runner, &g1, 0, &opts);
    assert_eq!(r.outcome, Outcome::Aborted);
    assert_eq!(r.error.unwrap().step, "b0");
    // Estimates of 5 fit; the branches use 1 and 5, so 4 of the budget is left after them.
    let r = run_with(&mut runner, &g2, 0, &opts);
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
    assert_eq!(r.usage.cost, 6);
    let r = run_with(&mut runner, &g3, 0, &opts);
    assert_eq!(r.outcome, Outcome::Aborted);
    assert_eq!(r.error.unwrap().step, "after", "only 4 came back");
}

#[test]
fn run_counters_are_exact_and_every_step_run_has_one_outcome() {
    use crate::telemetry::Counter;
    let breaker = trips_on_one_failure();
    let g = G::build(|b| {
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() < 3 {
                    Err(StepError::transient("busy"))
                } else {
                    Ok(x)
                }
            },
            TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).unwrap()),
        );
        let cached = b.task_with(
            "cached",
            |x, _| Ok(x + 1),
            TaskConfig::new()
                .no_context()
                .cacheable(StepFingerprint::builder("cached", 1).build()),
        );
        let fb = add(b, "fb", 100);
        let guarded = b.task_with(
            "guarded",
            |_, _| Err(StepError::permanent("down")),
            TaskConfig::new().breaker(breaker.clone()).fallback(fb),
        );
        let plain = add(b, "plain", 1);
        b.sequence("s", &[flaky, cached, guarded, plain])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(0);
    for run in 0..3u64 {
        let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        assert_eq!(r.output, Some(103));
        let c = r.counters;
        let get = |counter| c.get(counter);
        assert_eq!(get(Counter::StepsRun), r.records.len() as u64);
        assert_eq!(get(Counter::StepsRun), 5, "four tasks and one fallback");
        assert_eq!(
            get(Counter::StepsSucceeded),
            5,
            "the guarded task succeeds by fallback"
        );
        assert_eq!(get(Counter::Retries), 2);
        assert_eq!(get(Counter::FallbacksUsed), 1);
        assert_eq!(
            (get(Counter::CacheHits), get(Counter::CacheMisses)),
            if run == 0 { (0, 1) } else { (1, 0) }
        );
        // The first run's failure opens the breaker; later runs are refused at once.
        assert_eq!(
            (get(Counter::BreakerTrips), get(Counter::BreakerRejections)),
            if run == 0 { (1, 0) } else { (0, 1) }
        );
    }
}

#[test]
fn telemetry_records_every_sampled_step_and_counts_every_step() {
    use crate::telemetry::{Counter, EventKind, Sampler, StepOutcome as End, VecSink};
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() == 1 {
                    Err(StepError::transient("once"))
                } else {
                    Ok(x * 2)
                }
            },
            TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        );
        let c = add(b, "c", 3);
        b.sequence("s", &[a, flaky, c])
    })
    .unwrap();
    let clock = ManualClock::new(0);
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(7));
    let tel = runner.telemetry().unwrap();
    let kinds: Vec<EventKind> = tel.sink().events().iter().map(|e| e.kind).collect();
    let end = EventKind::StepEnd {
        outcome: End::Succeeded,
    };
    assert_eq!(
        kinds,
        [
            EventKind::StepStart,
            end,
            EventKind::StepStart,
            EventKind::Retry { attempt: 2 },
            end,
            EventKind::StepStart,
            end
        ]
    );
    assert_eq!(tel.latency_histogram().count(), 3);
    assert_eq!(tel.counters().get(Counter::Retries), 1);

    // Sampled one in two: events and latencies thin out, counters stay exact.
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::one_in(2));
    let mut sampled = Runner::with_telemetry(RunnerConfig::default(), tel);
    let mut off = Runner::new(RunnerConfig::default());
    for _ in 0..4 {
        let a = sampled.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        let (out, recs) = (a.output, a.records.to_vec());
        let b = off.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        assert_eq!(
            (out, &recs[..]),
            (b.output, b.records),
            "telemetry changes no result"
        );
    }
    let tel = sampled.telemetry().unwrap();
    assert_eq!(tel.counters().get(Counter::StepsRun), 12);
    assert_eq!(tel.latency_histogram().count(), 6);
    assert_eq!(tel.events_dropped(), 0);
}

#[test]
fn a_sampler_keeping_nothing_records_no_step_but_every_breaker_transition() {
    use crate::telemetry::{Counter, EventKind, Sampler, VecSink};
    let breaker = trips_on_one_failure();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let fb = add(b, "fb", 100);
        let guarded = b.task_with(
            "guarded",
            |x, _| {
                if x == 2 {
                    Err(StepError::permanent("two"))
                } else {
                    Ok(x)
                }
            },
            TaskConfig::new().breaker(breaker.clone()).fallback(fb),
        );
        let c = add(b, "c", 3);
        b.sequence("s", &[a, guarded, c])
    })
    .unwrap();
    let clock = ManualClock::new(0);
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::never());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let outputs: Vec<_> = [1, 5]
        .iter()
        .map(|&x| {
            runner
                .run(&g, x, Ctx::default(), &clock, &RunOptions::default())
                .output
        })
        .collect();
    // 1 + 1 = 2 fails and falls back (102 + 3); the open breaker refuses 6, which falls back.
    assert_eq!(outputs, [Some(105), Some(109)]);
    let tel = runner.telemetry().unwrap();
    let kinds: Vec<EventKind> = tel.sink().events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.len(),
        2,
        "the opening and the refusal, nothing else: {kinds:?}"
    );
    assert!(kinds
        .iter()
        .all(|k| !matches!(k, EventKind::StepStart | EventKind::StepEnd { .. })));
    assert_eq!(tel.latency_histogram().count(), 0);
    assert_eq!(
        tel.counters().get(Counter::StepsRun),
        8,
        "counters stay exact"
    );
    assert_eq!(tel.counters().get(Counter::BreakerTrips), 1);
}

/// Equal latencies in a row go into the histogram together; the histogram still holds every
/// sampled latency once a run ends, whether latencies repeat or change.
#[test]
fn latency_histogram_is_exact_when_latencies_repeat_and_change() {
    use crate::telemetry::{NullSink, Sampler};
    struct Ticks(Arc<AtomicU32>);
    impl Clock for Ticks {
        fn now(&self) -> u64 {
            u64::from(self.0.load(Ordering::Relaxed))
        }
    }
    let ticks = Arc::new(AtomicU32::new(0));
    let clock = Ticks(ticks.clone());
    let g = Graph::<u64, ()>::build(|b| {
        let steps: Vec<_> = (0..6u64)
            .map(|i| {
                let c = ticks.clone();
                b.task(&format!("s{i}"), move |x, _| {
                    c.fetch_add(i as u32 / 2, Ordering::Relaxed);
                    Ok(x + 1)
                })
            })
            .collect();
        b.sequence("s", &steps)
    })
    .unwrap();
    let tel = Telemetry::new(NullSink, Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    for run in 1..=2u64 {
        let r = runner.run(&g, 0, (), &clock, &RunOptions::default());
        assert_eq!(r.output, Some(6));
        let lat: Vec<u64> = r.records.iter().map(|rec| rec.latency_ticks).collect();
        assert_eq!(lat, [0, 0, 1, 1, 2, 2]);
        let h = runner.telemetry().unwrap().latency_histogram();
        assert_eq!(h.count(), 6 * run);
        assert_eq!(h.sum(), 6 * u128::from(run));
        assert_eq!((h.min(), h.max()), (Some(0), Some(2)));
    }
}

/// A clock steps can move (`ManualClock` is not `Sync`).
struct StepClock(core::sync::atomic::AtomicU64);

impl Clock for StepClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn an_attempt_over_its_timeout_fails_as_a_timeout_and_is_retried_with_the_deadline_seen() {
    // The clock is the step's: attempt 1 takes 50 ticks (over the 10-tick timeout), the
    // retry takes 5. The step sees its attempt's deadline, 10 ticks after the attempt began.
    let clock = Arc::new(StepClock(0.into()));
    let deadlines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, d) = (Arc::clone(&clock), Arc::clone(&deadlines));
    let g = Graph::<u64, ()>::build(move |b| {
        let (c, d) = (Arc::clone(&c), Arc::clone(&d));
        b.task_with(
            "slow",
            move |x: u64, cx: &mut crate::graph::StepCx<'_, ()>| {
                d.lock().unwrap().push((cx.now(), cx.deadline()));
                let took = if cx.attempt() == 1 { 50 } else { 5 };
                c.0.fetch_add(took, Ordering::Relaxed);
                Ok(x + 1)
            },
            TaskConfig::new()
                .timeout(10)
                .retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = runner.run(&g, 1, (), &*clock, &RunOptions::default());
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
    assert_eq!(r.records[0].attempts, 2);
    assert_eq!(r.records[0].error_class, Some(ErrorClass::Timeout));
    assert_eq!(*deadlines.lock().unwrap(), vec![(0, 10), (50, 60)]);
}

#[test]
fn a_paused_telemetry_records_nothing_but_still_sums_the_counters() {
    use crate::telemetry::{Sampler, VecSink};
    let g = Graph::<u64, ()>::build(|b| {
        let a = b.task("a", |x, _| Ok(x + 1));
        let c = b.task("c", |x, _| Ok(x * 2));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let clock = ManualClock::new(0);
    runner.telemetry_mut().unwrap().set_paused(true);
    let r = runner.run(&g, 1, (), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(4));
    let t = runner.telemetry().unwrap();
    assert!(t.is_paused());
    assert_eq!(
        (t.sink().events().len(), t.latency_histogram().count()),
        (0, 0)
    );
    assert_eq!(t.counters().get(Counter::StepsSucceeded), 2);
    runner.telemetry_mut().unwrap().set_paused(false);
    runner.run(&g, 1, (), &clock, &RunOptions::default());
    let t = runner.telemetry().unwrap();
    assert_eq!(
        (t.sink().events().len(), t.latency_histogram().count()),
        (4, 2)
    );
    assert_eq!(t.counters().get(Counter::StepsSucceeded), 4);
}

// ---- Pure fan-outs --------------------------------------------------------------------------

/// A tree of parallel nodes `depth` deep, `width` branches each (the strategy alternating
/// with the level), over leaves `x * 2 + j` that fail as `class` when `(x + j) % fail_every`
/// is 0 and report usage `j` when `j % 3 == 0`. Reduces `a * 3 + x` (order matters).
fn pure_tree(
    b: &mut B<'_>,
    depth: u32,
    width: u32,
    j: &mut i64,
    fail: (i64, ErrorClass),
) -> NodeRef {
    *j += 1;
    let me = *j;
    if depth == 0 {
        let (every, class) = fail;
        return b.task(&format!("l{me}"), move |x, cx| {
            if me % 3 == 0 {
                cx.report_usage(Usage::new(me as u64, 0));
            }
            if (x + me).rem_euclid(every) == 0 {
                return Err(StepError::new(class, "leaf failed"));
            }
            Ok(x * 2 + me)
        });
    }
    let kids: Vec<_> = (0..width)
        .map(|_| pure_tree(b, depth - 1, width, j, fail))
        .collect();
    let failure = if depth.is_multiple_of(2) {
        FailureStrategy::Ignore
    } else {
        FailureStrategy::Propagate
    };
    b.parallel(
        &format!("p{me}"),
        &kids,
        |a, x| a.wrapping_mul(3).wrapping_add(x),
        ParallelOptions::new().failure(failure),
    )
}

/// The span of the program of parallel node `name`, if it has one.
fn program(g: &G, name: &str) -> Option<crate::graph::Span> {
    let id = g.find(name).unwrap();
    g.pars[g.slot[id.index()] as usize].program
}

#[test]
fn a_pure_fan_out_is_laid_out_once_and_its_inner_fan_outs_inside_it() {
    let g = G::build(|b| pure_tree(b, 3, 2, &mut 0, (1000, ErrorClass::Permanent))).unwrap();
    // The root (`p1`) holds every node of the tree, one op each.
    let root = program(&g, "p1").expect("the root is pure");
    assert_eq!((root.start, root.len as usize), (0, g.len()));
    assert_eq!(g.pure_ops.len(), g.len(), "each node laid out once");
    // An inner fan-out's program is its own subtree, inside the root's.
    let inner = program(&g, "p2").expect("an inner fan-out is pure");
    assert_eq!((inner.start, inner.len), (1, 7));
    let ops = &g.pure_ops[inner.start as usize..][..inner.len as usize];
    assert_eq!(ops[0].node, g.find("p2").unwrap().0);
    assert_eq!(ops[0].branches(), 2);
    assert!(!ops[0].propagates(), "p2 (depth 2) ignores failures");
    assert!(g.pure_ops[0].propagates(), "p1 (depth 3) propagates them");
}

#[test]
fn a_writer_a_policy_or_a_non_task_keeps_a_fan_out_on_the_general_path() {
    let g = G::build(|b| {
        let (x, y) = (add(b, "x", 1), add(b, "y", 2));
        let pure = b.parallel("pure", &[x, y], |a, v| a + v, ParallelOptions::new());
        let (w, z) = (set_a(b, "w", 1), add(b, "z", 3));
        let writes = b.parallel("writes", &[w, z], |a, v| a + v, ParallelOptions::new());
        let v = b.task_with("v", |x, _| Ok(x), TaskConfig::new().validate(|_, _| Ok(())));
        let u = add(b, "u", 4);
        let policy = b.parallel("policy", &[v, u], |a, v| a + v, ParallelOptions::new());
        let s1 = add(b, "s1", 5);
        let seq = b.sequence("seq", &[s1]);
        let t = add(b, "t", 6);
        let nested = b.parallel("nested", &[seq, t], |a, v| a + v, ParallelOptions::new());
        b.parallel(
            "top",
            &[pure, writes, policy, nested],
            |a, v| a + v,
            ParallelOptions::new(),
        )
    })
    .unwrap();
    assert!(program(&g, "pure").is_some());
    for general in ["writes", "policy", "nested", "top"] {
        assert!(program(&g, general).is_none(), "{general}");
    }
    // The general path hands the pure fan-out to its program: results as ever.
    let (outcome, out, _, _, recs) = check(&g, 0);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(3 + 3 + 4 + 11)));
    assert_eq!(recs.len(), 8);
}

#[test]
fn pure_fan_outs_give_the_general_paths_results_records_usage_and_counters() {
    // Optimizations change speed, never results: a pure program against the general path
    // (fast paths off), over trees whose leaves fail (skipped under ignore, ending the
    // fan-out under propagate, aborting the run as usage errors) depending on the input.
    let shapes = [(3, 2), (2, 3), (1, 4), (4, 2)];
    let fails = [
        (1000, ErrorClass::Permanent),
        (7, ErrorClass::Permanent),
        (3, ErrorClass::Transient),
        (11, ErrorClass::Usage),
    ];
    let inputs = if cfg!(miri) { 0..4 } else { 0..24 };
    let mut fast = Runner::new(RunnerConfig::default());
    let mut general = Runner::new(RunnerConfig {
        fast_paths: false,
        ..RunnerConfig::default()
    });
    let mut seen = [0usize; 3];
    for (depth, width) in shapes {
        for fail in fails {
            let g = G::build(|b| pure_tree(b, depth, width, &mut 0, fail)).unwrap();
            assert!(program(&g, "p1").is_some());
            for input in inputs.clone() {
                let a = run_with(&mut fast, &g, input, &RunOptions::default());
                let b = run_with(&mut general, &g, input, &RunOptions::default());
                let at = format!("depth {depth} width {width} {fail:?} input {input}");
                assert_eq!(a.outcome, b.outcome, "{at}");
                assert_eq!(a.output, b.output, "{at}");
                assert_eq!(
                    a.error.as_ref().map(ToString::to_string),
                    b.error.as_ref().map(ToString::to_string),
                    "{at}"
                );
                assert_eq!(a.records, b.records, "{at}");
                assert_eq!(a.usage, b.usage, "{at}");
                assert_eq!(a.counters, b.counters, "{at}");
                seen[a.outcome as usize] += 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "every outcome met: {seen:?}");
}

#[test]
fn a_pure_fan_out_stops_at_a_cancel_raised_by_one_of_its_leaves() {
    let flag = Arc::new(CancelFlag::new());
    let raise = flag.clone();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let stopper = b.task("stopper", move |x, _| {
            raise.cancel();
            Ok(x)
        });
        let later = add(b, "later", 2);
        let inner = b.parallel("inner", &[a, stopper], |a, v| a + v, ParallelOptions::new());
        b.parallel(
            "outer",
            &[inner, later],
            |a, v| a + v,
            ParallelOptions::new(),
        )
    })
    .unwrap();
    assert!(program(&g, "outer").is_some());
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &cancellable(&flag));
    assert_eq!(r.outcome, Outcome::Aborted);
    assert!(r.error.unwrap().to_string().contains("`later`"));
    let later = g.find("later").unwrap();
    let rec = r.records.iter().find(|r| r.node == later).unwrap();
    assert_eq!((rec.outcome, rec.attempts), (StepOutcome::Aborted, 0));
    assert_eq!(r.counters.get(Counter::StepsSucceeded), 2);
}

#[test]
fn a_node_shared_by_many_fan_outs_is_laid_out_within_a_bound() {
    // A DAG: each level is a fan-out over the level below, twice. Laid out in full, the top
    // would take 2^40 ops; fan-outs past the bound keep the general path and still give
    // the right sum.
    let g = G::build(|b| {
        let mut node = add(b, "leaf", 1);
        for level in 0..40 {
            node = b.parallel(
                &format!("p{level}"),
                &[node, node],
                |a, v| a.wrapping_add(v),
                ParallelOptions::new(),
            );
        }
        node
    })
    .unwrap();
    assert!(g.pure_ops.len() <= 2 * g.len() + 64);
    assert!(program(&g, "p39").is_none());
    assert!(program(&g, "p0").is_some());
    let small = G::build(|b| {
        let mut node = add(b, "leaf", 1);
        for level in 0..8 {
            node = b.parallel(
                &format!("p{level}"),
                &[node, node],
                |a, v| a + v,
                ParallelOptions::new(),
            );
        }
        node
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&small, 0);
    assert_eq!(
        (outcome, out, recs.len()),
        (Outcome::Succeeded, Some(256), 256)
    );
}

/// A clock that measures no latencies (`Clock::measures_latency` is false) and counts its
/// reads; steps move it.
struct Unmeasured {
    now: AtomicU64,
    reads: AtomicU64,
}

impl Unmeasured {
    fn new() -> Self {
        Self {
            now: AtomicU64::new(1_000),
            reads: AtomicU64::new(0),
        }
    }

    fn reads(&self) -> u64 {
        self.reads.swap(0, Ordering::Relaxed)
    }
}

impl Clock for Unmeasured {
    fn now(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.now.load(Ordering::Relaxed)
    }

    fn measures_latency(&self) -> bool {
        false
    }
}

/// A chain of `n` tasks that each move `clock` by 10 ticks; the task at `policed` (if any)
/// takes `cfg`.
fn ten_tick_chain(
    clock: &Arc<Unmeasured>,
    n: usize,
    policed: Option<(usize, TaskConfig<u64, ()>)>,
) -> Graph<u64, ()> {
    let mut policed = policed;
    Graph::build(|b| {
        let steps: Vec<_> = (0..n)
            .map(|i| {
                let c = Arc::clone(clock);
                let step = move |x: u64, _: &mut StepCx<'_, ()>| {
                    c.now.fetch_add(10, Ordering::Relaxed);
                    Ok(x + 1)
                };
                match policed.take_if(|(at, _)| *at == i) {
                    Some((_, cfg)) => b.task_with(&format!("s{i}"), step, cfg),
                    None => b.task(&format!("s{i}"), step),
                }
            })
            .collect();
        b.sequence("chain", &steps)
    })
    .unwrap()
}

#[test]
fn an_unmeasured_clock_is_read_only_where_a_decision_needs_the_time() {
    for fast_paths in [true, false] {
        let cfg = RunnerConfig {
            fast_paths,
            ..RunnerConfig::default()
        };
        let mut runner = Runner::new(cfg);
        let clock = Arc::new(Unmeasured::new());
        let opts = RunOptions::default();

        // Plain tasks: no read at all, and every latency is 0.
        let g = ten_tick_chain(&clock, 50, None);
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.output, Some(50));
        assert!(r.records.iter().all(|rec| rec.latency_ticks == 0));
        drop(r);
        assert_eq!(clock.reads(), 0, "fast paths {fast_paths}");

        // A cancel flag needs no time either.
        let flag = CancelFlag::new();
        let cancel = RunOptions {
            cancel: Some(&flag),
            ..RunOptions::default()
        };
        assert_eq!(runner.run(&g, 0, (), &*clock, &cancel).output, Some(50));
        assert_eq!(clock.reads(), 0, "fast paths {fast_paths}");

        // A deadline is tested before every task, and stops the run on time.
        let deadline = RunOptions {
            deadline: Some(clock.now.load(Ordering::Relaxed) + 95),
            ..RunOptions::default()
        };
        let r = runner.run(&g, 0, (), &*clock, &deadline);
        assert_eq!(r.outcome, Outcome::Aborted);
        assert_eq!(
            r.error.as_ref().unwrap().step,
            "s10",
            "ten tasks fit in 95 ticks"
        );
        drop(r);
        assert_eq!(
            clock.reads(),
            12,
            "one read per task tested, one for the stop's record"
        );

        // A breaker's task reads the clock for its permit and for the latency it learns:
        // a slow call (30 ticks against a 20-tick rule) opens it.
        let br = Arc::new(
            Breaker::new(BreakerConfig {
                consecutive_failures_to_open: 1,
                slow_call_ticks: 20,
                ..BreakerConfig::DEFAULT
            })
            .unwrap(),
        );
        let slow = Arc::clone(&clock);
        let g = Graph::build(|b| {
            let s = b.task_with(
                "slow",
                move |x: u64, _: &mut StepCx<'_, ()>| {
                    slow.now.fetch_add(30, Ordering::Relaxed);
                    Ok(x + 1)
                },
                TaskConfig::new().breaker(Arc::clone(&br)),
            );
            let t = b.task("t", |x, _| Ok(x + 1));
            b.sequence("chain", &[s, t])
        })
        .unwrap();
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.output, Some(2));
        assert_eq!(
            r.records[0].latency_ticks, 30,
            "the breaker's task is timed"
        );
        assert_eq!(r.records[1].latency_ticks, 0, "the plain one is not");
        drop(r);
        assert_eq!(clock.reads(), 2, "fast paths {fast_paths}");
        assert_eq!(br.state(), BreakerState::Open, "the slow call counted");

        // An attempt timeout reads it around the attempt, and fires.
        let g = ten_tick_chain(&clock, 3, Some((1, TaskConfig::new().timeout(5))));
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.records[1].error_class, Some(ErrorClass::Timeout));
    }
}
