//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! the step context and a run's results: declared context writes, copy-on-write reads,
//! cancellation and run deadlines, the step record buffer, and runs that give the same
//! results however often, on whichever path, they run.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::semantics::{
    add, cancellable, check, clones, lean, run_with, set_a, set_b, trips_on_one_failure, Ctx, B, G,
};
use flujo_core::graph::{
    CancelFlag, Clock, LoopOptions, ManualClock, NoClock, NodeRef, ParallelOptions, StepError,
    TaskConfig,
};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig, Telemetry};
use flujo_core::policy::{
    Backoff, Breaker, ErrorClass, Recovery, RecoveryTable, RetryPolicy, Usage,
};
use flujo_core::telemetry::{NullSink, Sampler, StepOutcome};

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

/// Tasks under every policy the stretch loop runs, for
/// `every_record_buffer_size_keeps_a_prefix_and_counts_the_rest`: a copy of the tasks of
/// flujo-core's `lean_and_full_paths_give_the_same_results`
/// (`core/src/interp/tests/step_context.rs`), which stays in the core because it reads the
/// frozen graph's layout.
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
