//! The executor's own rules; integration tests (differential, stress, shutdown) live in the
//! `tests` crate.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use flujo_core::graph::{Graph, StepError, StepFingerprint, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::ErrorClass;
use flujo_core::telemetry::Counter;

use super::*;

fn forking(workers: usize) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.inline_cutoff.enabled = false;
    cfg.workers = workers;
    cfg
}

#[test]
fn a_cacheable_step_runs_once_for_many_runs_through_the_shared_cache() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let g = Graph::<u64, ()>::build(move |b| {
        let seen = Arc::clone(&seen);
        b.task_with(
            "square",
            move |x: u64, _: &mut _| {
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(x * x)
            },
            TaskConfig::new().cacheable(StepFingerprint::builder("square", 1).build()),
        )
    })
    .unwrap();
    let ex = Executor::new(forking(2)).unwrap();
    for _ in 0..5 {
        let done = ex.run(&g, 7, ()).unwrap();
        assert_eq!(done.output, Some(49));
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1, "four hits");
    assert_eq!(ex.report().counter(Counter::CacheHits), 4);

    let mut off = forking(2);
    off.result_cache.enabled = false;
    ex.reconfigure(off).unwrap();
    assert_eq!(ex.run(&g, 7, ()).unwrap().output, Some(49));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the cache off, the step runs"
    );
}

#[test]
fn a_panicking_step_is_a_failed_step_and_the_executor_stays_healthy() {
    let g = Graph::<u64, ()>::build(|b| {
        let ok = b.task("ok", |x, _| Ok(x + 1));
        let boom = b.task("boom", |x: u64, _| {
            if x == 2 {
                panic!("two is not allowed");
            }
            Ok(x)
        });
        b.sequence("s", &[ok, boom])
    })
    .unwrap();
    let ex = Executor::new(forking(2)).unwrap();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let done = ex.run(&g, 1, ()).unwrap();
    std::panic::set_hook(prev);
    assert_eq!(done.outcome, Outcome::Failed);
    let e = done.error.unwrap();
    assert_eq!(e.step, "boom");
    assert_eq!(e.kind.class(), ErrorClass::Panic);
    assert!(e.kind.to_string().contains("two is not allowed"), "{e}");
    assert_eq!(ex.run(&g, 5, ()).unwrap().output, Some(6));
}

#[test]
fn forked_fan_outs_give_the_inline_results_in_declaration_order() {
    let g = Graph::<u64, ()>::build(|b| {
        let branches: Vec<_> = (0..16u64)
            .map(|i| b.task(&format!("b{i}"), move |x, _| Ok(x * 100 + i)))
            .collect();
        // Not commutative: the order of the reduce shows.
        b.parallel("p", &branches, |a, x| a * 3 + x, Default::default())
    })
    .unwrap();
    let expected = (0..16u64).map(|i| 100 + i).reduce(|a, x| a * 3 + x);
    let ex = Executor::new(forking(2)).unwrap();
    for _ in 0..20 {
        let order = ex
            .run_with(&g, 1, (), &RunSpec::default(), |r| {
                (
                    r.output,
                    r.records.iter().map(|r| r.node).collect::<Vec<_>>(),
                )
            })
            .unwrap();
        assert_eq!(order.0, expected);
        let names: Vec<_> = order.1.iter().map(|&n| g.name(n).to_string()).collect();
        let declared: Vec<_> = (0..16).map(|i| format!("b{i}")).collect();
        assert_eq!(names, declared, "records in declaration order");
    }
}

#[test]
fn a_failed_propagate_branch_reports_the_first_failure_in_declaration_order() {
    let g = Graph::<u64, ()>::build(|b| {
        let branches: Vec<_> = (0..8u64)
            .map(|i| {
                b.task(&format!("b{i}"), move |x, _| {
                    if i == 3 || i == 6 {
                        Err(StepError::permanent(format!("branch {i}")))
                    } else {
                        Ok(x)
                    }
                })
            })
            .collect();
        b.parallel("p", &branches, |a, x| a + x, Default::default())
    })
    .unwrap();
    let ex = Executor::new(forking(2)).unwrap();
    for _ in 0..20 {
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Failed);
        let e = done.error.unwrap();
        assert_eq!(e.step, "b3");
        assert_eq!(e.kind, ErrorKind::Step(StepError::permanent("branch 3")));
    }
}

#[test]
fn a_submission_refused_hands_its_input_and_context_back() {
    let g = Arc::new(Graph::<u64, u64>::build(|b| b.task("id", |x, _| Ok(x))).unwrap());
    let ex = Executor::new(forking(1)).unwrap();
    ex.shutdown(Drain::Finish);
    let back = ex.submit(&g, 41, 7, Priority::Low).unwrap_err();
    assert_eq!(
        (back.reason, back.input, back.context),
        (Refusal::ShuttingDown, 41, 7)
    );
    assert_eq!(ex.report().runs.rejected_shutting_down, 1);
}
