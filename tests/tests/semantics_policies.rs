//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! task policies, in the contract's order: breaker, cache, usage reservation, attempts
//! (pre-processors, step, post-processors, validators; timeouts; backoff), classification by
//! the recovery table, fallback, and the step record.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::semantics::{
    add, cancellable, check, lean, record, run_with, trips_on_one_failure, Ctx, B, G,
};
use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{
    CancelFlag, Clock, Graph, ManualClock, NoClock, NodeRef, ParallelOptions, StepCx, StepError,
    StepFlags, TaskConfig,
};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, Runner, RunnerConfig, StepRecord};
use flujo_core::policy::{
    Backoff, Breaker, BreakerConfig, BreakerState, CallOutcome, ErrorClass, Recovery,
    RecoveryTable, RetryPolicy, Usage,
};
use flujo_core::telemetry::{Counter, StepOutcome};

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
        assert_eq!(r.counters.get(Counter::UsageOverruns), 1);
        assert_eq!(r.counters.get(Counter::StepsSucceeded), 1);
        let err = r.error.unwrap();
        assert_eq!((err.step, err.kind.class()), ("spend", ErrorClass::Usage));
        let over = flujo_core::policy::UsageDenied {
            limit: flujo_core::policy::UsageLimit::Cost,
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
        assert_eq!(r.counters.get(Counter::UsageOverruns), 0);
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
            denied: flujo_core::policy::UsageDenied {
                limit: flujo_core::policy::UsageLimit::Cost,
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

#[test]
fn an_attempt_over_its_timeout_fails_as_a_timeout_and_is_retried_with_the_deadline_seen() {
    // The clock is the step's: attempt 1 takes 50 ticks (over the 10-tick timeout), the
    // retry takes 5. The step sees its attempt's deadline, 10 ticks after the attempt began.
    let clock = ManualClock::new(0);
    let deadlines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, d) = (clock.clone(), Arc::clone(&deadlines));
    let g = Graph::<u64, ()>::build(move |b| {
        let (c, d) = (c.clone(), Arc::clone(&d));
        b.task_with(
            "slow",
            move |x: u64, cx: &mut flujo_core::graph::StepCx<'_, ()>| {
                d.lock().unwrap().push((cx.now(), cx.deadline()));
                let took = if cx.attempt() == 1 { 50 } else { 5 };
                c.advance(took);
                Ok(x + 1)
            },
            TaskConfig::new()
                .timeout(10)
                .retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        )
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let r = runner.run(&g, 1, (), &clock, &RunOptions::default());
    assert_eq!((r.outcome, r.output), (Outcome::Succeeded, Some(2)));
    assert_eq!(r.records[0].attempts, 2);
    assert_eq!(r.records[0].error_class, Some(ErrorClass::Timeout));
    assert_eq!(*deadlines.lock().unwrap(), vec![(0, 10), (50, 60)]);
}
