//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! parallel nodes: one input for every branch, reduction in declaration order, the
//! merge strategies, the failure strategies, and the usage budget split between branches.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::semantics::{add, check, clones, fail, run_with, set_a, set_b, Ctx, G};
use flujo_core::context::MergeStrategy;
use flujo_core::graph::{
    FailureStrategy, NoClock, NodeRef, ParallelOptions, StepError, TaskConfig,
};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};
use flujo_core::policy::{ErrorClass, Usage};

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
