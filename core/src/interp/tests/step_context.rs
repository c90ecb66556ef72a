//! A sequence of tasks frozen as a task run (the stretch loop) and the same tasks on the
//! full pipeline give the same results.

use std::format;
use std::string::ToString;
use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::graph::{ManualClock, TaskConfig};
use crate::policy::{Backoff, Breaker, Recovery, RecoveryTable, RetryPolicy};
use crate::telemetry::{NullSink, Sampler};

/// Tasks under every policy the stretch loop runs: those of
/// `lean_and_full_paths_give_the_same_results`, created in the same order in both graphs so
/// their node ids match, and of `every_record_buffer_size_keeps_a_prefix_and_counts_the_rest`.
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
