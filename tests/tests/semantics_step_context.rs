//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! the step context and a run's results: declared context writes, copy-on-write reads,
//! cancellation and run deadlines, the step record buffer, and runs that give the same
//! results however often, on whichever path, they run.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::semantics::{
    add, cancellable, check, clones, lean, run_with, set_a, trips_on_one_failure, Ctx, G,
};
use flujo_core::graph::{CancelFlag, Clock, LoopOptions, NoClock, ParallelOptions, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig};
use flujo_core::policy::ErrorClass;
use flujo_core::telemetry::StepOutcome;

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
