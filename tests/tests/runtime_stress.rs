//! Stress: thousands of concurrent submissions from several threads at random priorities,
//! with injected faults (transient errors, retried or not, panicking steps, panics outside a
//! step in a parallel reducer, short sleeps, cancels), through small queues and a small
//! concurrency limit so that some are refused. Every submission ends exactly once, and the
//! executor's report agrees with what the test saw: its identity
//! `submitted = completed + panicked + handed back + rejected + in flight` holds.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use flujo_core::context::Context;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::ErrorClass;
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::{Executor, Finished, Priority, Refusal};

/// A context that carries the submission's id, to check it comes back intact.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tag(u64);

impl Context for Tag {
    const PARTS: usize = 1;
    fn part_name(_: usize) -> &'static str {
        "tag"
    }
    fn part_eq(&self, other: &Self, _: usize) -> bool {
        self == other
    }
    fn copy_part(&mut self, from: &Self, _: usize) {
        self.0 = from.0;
    }
}

fn panics(x: u64) -> bool {
    x % 11 == 4
}

fn fails(x: u64) -> bool {
    x % 13 == 7
}

/// Whether a submission goes to the graph whose reducer panics.
fn reduced(x: u64) -> bool {
    x.is_multiple_of(5)
}

/// Whether the reducer panics on `x` (outside any step: the run ends `Panicked`).
fn reducer_panics(x: u64) -> bool {
    x.is_multiple_of(3)
}

/// Whether the test cancels the submission right after it is accepted.
fn cancelled(x: u64) -> bool {
    x % 19 == 9
}

/// A fork of two tasks whose reducer panics on the inputs of [`reducer_panics`].
fn reducing_graph() -> Graph<u64, Tag> {
    Graph::build(|b| {
        let a = b.task("left", |x, _| Ok(x));
        let c = b.task("right", |_, _| Ok(0));
        b.parallel(
            "fork",
            &[a, c],
            |x, y| {
                assert!(!reducer_panics(x), "injected reducer panic on {x}");
                x + y
            },
            Default::default(),
        )
    })
    .unwrap()
}

fn graph() -> Graph<u64, Tag> {
    Graph::build(|b| {
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if x % 3 == 0 && cx.attempt() == 1 {
                    return Err(StepError::transient("first attempt"));
                }
                Ok(x + 1)
            },
            TaskConfig::new()
                .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap()),
        );
        let boom = b.task("boom", |x, _| {
            assert!(!panics(x - 1), "injected panic on {}", x - 1);
            Ok(x + 1)
        });
        let nap = b.task("nap", |x, _| {
            if x % 4 == 1 {
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(x + 1)
        });
        let bad = b.task("bad", |x, _| {
            if fails(x - 3) {
                return Err(StepError::transient("not retried"));
            }
            Ok(x)
        });
        b.sequence("root", &[flaky, boom, nap, bad])
    })
    .unwrap()
}

#[derive(Default)]
struct Totals {
    submitted: AtomicU64,
    rejected: AtomicU64,
    handed_back: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    aborted: AtomicU64,
    panicked_steps: AtomicU64,
    /// Runs that panicked outside a step.
    panicked_runs: AtomicU64,
}

fn check(done: Finished<u64, Tag>, x: u64, totals: &Totals) {
    match done {
        Finished::Ran(done) if done.outcome == Outcome::Aborted => {
            assert!(cancelled(x), "only cancelled runs abort: {x}");
            assert_eq!(done.context, Tag(x), "the context comes back");
            totals.aborted.fetch_add(1, Ordering::Relaxed);
        }
        Finished::Ran(done) if reduced(x) => {
            assert!(!reducer_panics(x), "{x} ran past its panicking reducer");
            assert_eq!((done.outcome, done.output), (Outcome::Succeeded, Some(x)));
            totals.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        Finished::Panicked(p) => {
            assert!(reduced(x) && reducer_panics(x), "{x}: {p}");
            assert!(p.message.contains("injected reducer panic"), "{p}");
            totals.panicked_runs.fetch_add(1, Ordering::Relaxed);
        }
        Finished::Ran(done) => {
            assert_eq!(done.context, Tag(x), "the context comes back");
            if panics(x) {
                assert_eq!(done.outcome, Outcome::Failed, "{x}");
                let e = done.error.expect("a failed run has an error");
                assert_eq!(e.step, "boom");
                match e.kind {
                    ErrorKind::Step(s) => {
                        assert_eq!(s.class(), ErrorClass::Panic);
                        assert!(s.reason().contains("injected panic"), "{}", s.reason());
                    }
                    other => panic!("{other:?}"),
                }
                totals.failed.fetch_add(1, Ordering::Relaxed);
                totals.panicked_steps.fetch_add(1, Ordering::Relaxed);
            } else if fails(x) {
                assert_eq!(done.outcome, Outcome::Failed, "{x}");
                let e = done.error.expect("a failed run has an error");
                assert_eq!(e.step, "bad");
                assert!(
                    matches!(e.kind, ErrorKind::Step(ref s) if s.class() == ErrorClass::Transient)
                );
                totals.failed.fetch_add(1, Ordering::Relaxed);
            } else {
                assert_eq!(done.outcome, Outcome::Succeeded, "{x}: {:?}", done.error);
                assert_eq!(done.output, Some(x + 3));
                totals.succeeded.fetch_add(1, Ordering::Relaxed);
            }
        }
        Finished::HandedBack(back) => {
            assert_eq!((back.input, back.context), (x, Tag(x)));
            totals.handed_back.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("{x}: {other:?}"),
    }
}

#[test]
fn concurrent_faulty_submissions_each_end_exactly_once_and_the_report_agrees() {
    common::quiet_injected_panics();
    const THREADS: u64 = 4;
    let per_thread: u64 = if cfg!(miri) { 10 } else { 750 };
    let mut cfg = OptimizationConfig::low_memory();
    cfg.workers = 2;
    cfg.queues.capacity = [4, 4, 4];
    cfg.adaptive_concurrency.min_limit = 1;
    cfg.adaptive_concurrency.initial_limit = 8;
    cfg.adaptive_concurrency.max_limit = 16;
    cfg.telemetry.level = TelemetryLevel::Histograms;
    let ex = Arc::new(Executor::new(cfg).unwrap());
    let g = Arc::new(graph());
    let reducing = Arc::new(reducing_graph());
    let totals = Arc::new(Totals::default());
    let start = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ex, g, totals, start) = (ex.clone(), g.clone(), totals.clone(), start.clone());
            let reducing = reducing.clone();
            std::thread::spawn(move || {
                let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut pending = Vec::new();
                start.wait();
                for i in 0..per_thread {
                    let x = t * 100_000 + i;
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let priority =
                        [Priority::High, Priority::Normal, Priority::Low][(seed % 3) as usize];
                    totals.submitted.fetch_add(1, Ordering::Relaxed);
                    let graph = if reduced(x) { &reducing } else { &g };
                    match ex.submit(graph, x, Tag(x), priority) {
                        Ok(ticket) => {
                            if cancelled(x) {
                                ticket.cancel();
                            }
                            pending.push((x, ticket));
                        }
                        Err(back) => {
                            assert!(
                                matches!(back.reason, Refusal::QueueFull | Refusal::OverLimit),
                                "{:?}",
                                back.reason
                            );
                            assert_eq!((back.input, back.context), (x, Tag(x)));
                            totals.rejected.fetch_add(1, Ordering::Relaxed);
                            // Back off: wait for this thread's oldest run.
                            if pending.is_empty() {
                                std::thread::yield_now();
                            } else {
                                let (x, ticket) = pending.remove(0);
                                let done = ticket
                                    .wait_timeout(Duration::from_secs(30))
                                    .unwrap_or_else(|_| panic!("ticket {x} did not resolve"));
                                check(done, x, &totals);
                            }
                        }
                    }
                    if pending.len() >= 24 {
                        for (x, ticket) in pending.drain(..) {
                            let done = ticket
                                .wait_timeout(Duration::from_secs(30))
                                .unwrap_or_else(|_| panic!("ticket {x} did not resolve"));
                            check(done, x, &totals);
                        }
                    }
                }
                for (x, ticket) in pending {
                    let done = ticket
                        .wait_timeout(Duration::from_secs(30))
                        .unwrap_or_else(|_| panic!("ticket {x} did not resolve"));
                    check(done, x, &totals);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let submitted = get(&totals.submitted);
    let rejected = get(&totals.rejected);
    let handed_back = get(&totals.handed_back);
    let ran = get(&totals.succeeded) + get(&totals.failed) + get(&totals.aborted);
    let panicked = get(&totals.panicked_runs);
    assert_eq!(submitted, THREADS * per_thread);
    assert_eq!(
        submitted,
        ran + panicked + handed_back + rejected,
        "each ends once"
    );
    assert!(panicked > 0, "some reducers panic");
    assert!(
        get(&totals.aborted) > 0,
        "some cancels land before the run ends"
    );
    assert!(rejected > 0, "the small queues and limit refuse some");
    assert!(ran >= submitted / 10, "ran {ran}, rejected {rejected}");
    assert!(get(&totals.panicked_steps) > 0);
    assert_eq!(handed_back, 0, "no shutdown: nothing is handed back");

    // The executor kept working after the panics.
    let after = ex.run(&g, 1, Tag(1)).unwrap();
    assert_eq!(after.output, Some(4));

    let report = ex.report();
    let runs = report.runs;
    assert_eq!(runs.in_flight, 0);
    assert_eq!(runs.completed, ran + 1);
    assert_eq!(runs.succeeded, get(&totals.succeeded) + 1);
    assert_eq!(runs.failed, get(&totals.failed));
    assert_eq!(runs.aborted, get(&totals.aborted));
    assert_eq!(runs.panicked, panicked);
    assert_eq!(runs.handed_back, 0);
    assert_eq!(runs.rejected(), rejected);
    assert_eq!(runs.rejected_shutting_down, 0);
    // The report counts the inline run as a submission too, as it ends.
    assert_eq!(runs.inline, 1);
    assert_eq!(runs.submitted, submitted + 1, "{runs:?}");
    assert_eq!(
        runs.submitted,
        runs.completed + runs.panicked + runs.handed_back + runs.rejected() + runs.in_flight,
        "{runs:?}"
    );
    // Pooled runners of panicked runs were freed; the idle ones are within the bound.
    assert!(report.pool.pool_freed >= panicked, "{:?}", report.pool);
    assert!(report.pool.pool_idle <= report.pool.pool_idle_max);
    let c = |k| report.counter(k);
    assert_eq!(
        c(Counter::StepsRun),
        c(Counter::StepsSucceeded)
            + c(Counter::StepsFailed)
            + c(Counter::StepsSkipped)
            + c(Counter::StepsAborted)
    );
    assert!(c(Counter::Retries) > 0);
    let shut = ex.shutdown(flujo_runtime::Drain::Finish);
    assert_eq!(shut.handed_back, 0);
    assert_eq!(shut.finished, ran + panicked);
    assert_eq!(ex.report().runs, runs, "nothing was left to run");
}
