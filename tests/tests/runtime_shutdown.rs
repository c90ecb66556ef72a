//! Shutdown, cancellation and deadlines of the runtime's executor: no submission is lost or
//! left hanging, later submissions are refused with their input handed back, a cancel or a
//! deadline stops a run at its next step, and a failing forked branch stops its siblings.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::graph::ManualClock;
use flujo_core::graph::{CancelFlag, FailureStrategy, Graph, ParallelOptions, StepError};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Drain, Executor, Finished, Priority, Refusal, RunSpec};

/// Generous bound for anything the tests wait on; reaching it is a failure.
const BOUND: Duration = Duration::from_secs(10);

/// Waits (bounded) until `done()` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn config() -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 2;
    // A fixed limit high enough for every submission of these tests.
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.max_limit = 256;
    cfg
}

/// A graph whose first step counts itself started, then waits for the gate to open.
fn gated(started: &Arc<AtomicUsize>, gate: &Arc<AtomicBool>) -> Arc<Graph<u64, u64>> {
    let (started, gate) = (started.clone(), gate.clone());
    Arc::new(
        Graph::build(move |b| {
            let wait = b.task("wait", move |x, _| {
                started.fetch_add(1, Ordering::SeqCst);
                wait_until("the gate", || gate.load(Ordering::SeqCst));
                Ok(x)
            });
            let add = b.task("add", |x, _| Ok(x + 1));
            b.sequence("root", &[wait, add])
        })
        .unwrap(),
    )
}

#[test]
fn hand_back_shutdown_resolves_every_ticket_and_refuses_later_submissions() {
    let ex = Arc::new(Executor::<u64, u64>::new(config()).unwrap());
    let (started, gate) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let g = gated(&started, &gate);
    let n = 20u64;
    let tickets: Vec<(u64, _)> = (0..n)
        .map(|i| {
            let t = ex.submit(&g, i, i * 10, Priority::Normal);
            (i, t.expect("admitted"))
        })
        .collect();
    // Both workers are busy in the gated step; the rest are queued.
    wait_until("two runs started", || started.load(Ordering::SeqCst) == 2);
    let shutdown = {
        let ex = ex.clone();
        std::thread::spawn(move || ex.shutdown(Drain::HandBack))
    };
    // The queued runs are handed back while the two started ones still wait at the gate.
    let mut tickets: Vec<_> = tickets
        .into_iter()
        .map(|(i, t)| (i, Some(t), None))
        .collect();
    wait_until("the queued runs handed back", || {
        let mut resolved = 0;
        for (_, t, done) in &mut tickets {
            if let Some(ticket) = t {
                if let Some(d) = ticket.try_poll().expect("not abandoned") {
                    *done = Some(d);
                    *t = None;
                }
            }
            resolved += usize::from(t.is_none());
        }
        resolved == (n - 2) as usize
    });
    // The shutdown has begun: later submissions are refused, input back.
    let r = ex.submit(&g, 777, 7, Priority::High).expect_err("refused");
    assert_eq!(r.reason, Refusal::ShuttingDown);
    assert_eq!((r.input, r.context), (777, 7));
    assert!(
        !shutdown.is_finished(),
        "the shutdown waits for the started runs"
    );
    gate.store(true, Ordering::SeqCst);
    let (mut ran, mut handed_back) = (0, 0);
    for (i, t, done) in tickets {
        let done = match (t, done) {
            (None, Some(d)) => d,
            (Some(t), None) => t.wait_timeout(BOUND).expect("a started run resolves"),
            _ => unreachable!(),
        };
        match done {
            Finished::Ran(done) => {
                assert_eq!(done.outcome, Outcome::Succeeded);
                assert_eq!((done.output, done.context), (Some(i + 1), i * 10));
                ran += 1;
            }
            Finished::HandedBack(back) => {
                assert_eq!(back.reason, Refusal::ShuttingDown);
                assert_eq!((back.input, back.context), (i, i * 10));
                handed_back += 1;
            }
            Finished::Panicked(p) => panic!("{p}"),
            other => panic!("{other:?}"),
        }
    }
    gate.store(true, Ordering::SeqCst);
    let report = shutdown.join().unwrap();
    assert_eq!(ran + handed_back, n);
    assert_eq!(ran, 2, "only the two started runs ran");
    assert_eq!(report.handed_back, handed_back);
    assert_eq!(report.finished, ran);
    let runs = ex.report().runs;
    assert_eq!(runs.rejected_shutting_down, 1);
    assert_eq!(runs.completed, ran);
    // A second shutdown is harmless, and still refuses.
    let again = ex.shutdown(Drain::Finish);
    assert_eq!(again, report);
    let r = ex.submit(&g, 1, 2, Priority::Low).expect_err("refused");
    assert_eq!(
        (r.reason, r.input, r.context),
        (Refusal::ShuttingDown, 1, 2)
    );
}

#[test]
fn finish_shutdown_runs_everything_queued() {
    let ex = Executor::<u64, u64>::new(config()).unwrap();
    let g = Arc::new(
        Graph::build(|b| {
            let nap = b.task("nap", |x, _| {
                std::thread::sleep(Duration::from_micros(200));
                Ok(x * 2)
            });
            let add = b.task("add", |x, _| Ok(x + 1));
            b.sequence("root", &[nap, add])
        })
        .unwrap(),
    );
    let n = 40u64;
    let tickets: Vec<_> = (0..n)
        .map(|i| {
            let p = [Priority::High, Priority::Normal, Priority::Low][(i % 3) as usize];
            (i, ex.submit(&g, i, i, p).expect("admitted"))
        })
        .collect();
    let report = ex.shutdown(Drain::Finish);
    assert_eq!(report.handed_back, 0);
    assert_eq!(report.finished, n);
    for (i, t) in tickets {
        // The shutdown returned: every ticket is already resolved.
        match t.wait_timeout(Duration::from_millis(1)).expect("resolved") {
            Finished::Ran(done) => assert_eq!(done.output, Some(i * 2 + 1)),
            other => panic!("{other:?}"),
        }
    }
    let r = ex.submit(&g, 5, 6, Priority::High).expect_err("refused");
    assert_eq!(
        (r.reason, r.input, r.context),
        (Refusal::ShuttingDown, 5, 6)
    );
}

/// A graph whose first step signals it started, then waits (bounded) until the run is told
/// to stop; the second step must then never run.
fn stoppable(started: &Arc<AtomicBool>, saw_stop: &Arc<AtomicBool>) -> Graph<u64, ()> {
    let (started, saw_stop) = (started.clone(), saw_stop.clone());
    Graph::build(move |b| {
        let wait = b.task("wait", move |x, cx| {
            started.store(true, Ordering::SeqCst);
            let t = Instant::now();
            while !cx.should_stop() && t.elapsed() < BOUND {
                std::thread::sleep(Duration::from_micros(50));
            }
            saw_stop.store(cx.should_stop(), Ordering::SeqCst);
            Ok(x)
        });
        let after = b.task("after", |_, _| -> Result<u64, StepError> {
            panic!("the step after a cancel never runs")
        });
        b.sequence("root", &[wait, after])
    })
    .unwrap()
}

#[test]
fn a_ticket_cancelled_while_its_run_is_in_progress_aborts_at_the_next_step() {
    let ex = Executor::<u64, ()>::new(config()).unwrap();
    let (started, saw_stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let g = Arc::new(stoppable(&started, &saw_stop));
    let ticket = ex.submit(&g, 3, (), Priority::Normal).expect("admitted");
    wait_until("the run started", || started.load(Ordering::SeqCst));
    ticket.cancel();
    match ticket.wait_timeout(BOUND).expect("resolves") {
        Finished::Ran(done) => {
            assert_eq!(done.outcome, Outcome::Aborted);
            let e = done.error.expect("an aborted run has an error");
            assert_eq!(e.kind, ErrorKind::Cancelled);
            assert_eq!(e.step, "after");
            assert_eq!(done.output, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        saw_stop.load(Ordering::SeqCst),
        "the running step saw the cancel"
    );
    assert_eq!(ex.report().runs.aborted, 1);
}

#[test]
fn a_run_cancelled_before_it_starts_aborts_at_its_first_step() {
    let ex = Executor::<u64, ()>::new(config()).unwrap();
    let (started, saw_stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let g = stoppable(&started, &saw_stop);
    let cancel = CancelFlag::new();
    cancel.cancel();
    let spec = RunSpec::default().cancel(&cancel);
    let (outcome, error) = ex
        .run_with(&g, 1, (), &spec, |r| {
            (r.outcome, r.error.map(|e| (e.step.to_string(), e.kind)))
        })
        .unwrap();
    assert_eq!(outcome, Outcome::Aborted);
    assert_eq!(error, Some(("wait".to_string(), ErrorKind::Cancelled)));
    assert!(!started.load(Ordering::SeqCst));
}

#[test]
fn a_passed_deadline_aborts_the_run_before_its_next_step() {
    // The executor's clock is driven by the slow step, so no pre-emption of the test thread
    // can move the deadline before the first step (a real clock made this test timed).
    let clock = ManualClock::new(0);
    let ex = Executor::<u64, ()>::builder(config())
        .clock(clock.clone())
        .build()
        .unwrap();
    let g = Graph::<u64, ()>::build(move |b| {
        let slow = b.task("slow", move |x, _| {
            clock.advance(ticks(Duration::from_millis(5)));
            Ok(x + 1)
        });
        let next = b.task("next", |x, _| Ok(x + 1));
        b.sequence("root", &[slow, next])
    })
    .unwrap();
    let spec = RunSpec::default().deadline(Duration::from_millis(1));
    let (outcome, error, records) = ex
        .run_with(&g, 1, (), &spec, |r| {
            (
                r.outcome,
                r.error.map(|e| (e.step.to_string(), e.kind)),
                r.records.len(),
            )
        })
        .unwrap();
    assert_eq!(outcome, Outcome::Aborted);
    assert_eq!(
        error,
        Some(("next".to_string(), ErrorKind::DeadlineExceeded))
    );
    assert!(records >= 1, "the slow step ran and was recorded");
    // Without a deadline the same graph succeeds.
    assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(3));
}

#[test]
fn a_failing_forked_branch_makes_its_later_sibling_see_should_stop() {
    let mut cfg = config();
    cfg.inline_cutoff.enabled = false;
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let slow_started = Arc::new(AtomicBool::new(false));
    let saw_stop = Arc::new(AtomicBool::new(false));
    let g = {
        let (slow_started, saw_stop) = (slow_started.clone(), saw_stop.clone());
        let slow_started2 = slow_started.clone();
        Graph::<u64, ()>::build(move |b| {
            let fail = b.task("fail", move |_, _| {
                // Fail only once the sibling runs, so the stop lands while it runs.
                wait_until("the slow sibling", || slow_started2.load(Ordering::SeqCst));
                Err(StepError::permanent("injected"))
            });
            let slow = b.task("slow", move |x, cx| {
                slow_started.store(true, Ordering::SeqCst);
                let t = Instant::now();
                while !cx.should_stop() && t.elapsed() < BOUND {
                    std::thread::sleep(Duration::from_micros(50));
                }
                saw_stop.store(cx.should_stop(), Ordering::SeqCst);
                Ok(x)
            });
            b.parallel(
                "par",
                &[fail, slow],
                |a, b| a + b,
                ParallelOptions::new().failure(FailureStrategy::Propagate),
            )
        })
        .unwrap()
    };
    let done = ex.run(&g, 1, ()).unwrap();
    assert_eq!(done.outcome, Outcome::Failed);
    let e = done.error.expect("failed");
    assert_eq!(e.step, "fail");
    assert!(matches!(e.kind, ErrorKind::Step(ref s) if s.reason() == "injected"));
    assert!(slow_started.load(Ordering::SeqCst));
    assert!(
        saw_stop.load(Ordering::SeqCst),
        "the sibling saw should_stop"
    );
}

/// A fork of two tasks whose reducer panics (outside any step) on odd inputs.
fn reducer_panics_on_odd() -> Arc<Graph<u64, u64>> {
    Arc::new(
        Graph::build(|b| {
            let a = b.task("left", |x, _| Ok(x));
            let c = b.task("right", |_, _| Ok(0));
            b.parallel(
                "fork",
                &[a, c],
                |x, y| {
                    assert!(x % 2 == 0, "injected reducer panic on {x}");
                    x + y
                },
                ParallelOptions::default(),
            )
        })
        .unwrap(),
    )
}

#[test]
fn after_shutdown_the_report_accounts_for_every_submission_with_none_in_flight() {
    common::quiet_injected_panics();
    const QUEUED: u64 = 10;
    for workers in [1usize, 2] {
        for drain in [Drain::Finish, Drain::HandBack] {
            let what = format!("{workers} workers, {drain:?}");
            let mut cfg = config();
            cfg.workers = workers;
            let ex = Arc::new(Executor::<u64, u64>::new(cfg).unwrap());
            let (started, gate) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicBool::new(false)),
            );
            let held = gated(&started, &gate);
            let reducing = reducer_panics_on_odd();
            // Every worker thread held at the gate; the rest queued behind them.
            let mut tickets: Vec<_> = (0..workers as u64)
                .map(|i| ex.submit(&held, i, i, Priority::High).ok().unwrap())
                .collect();
            wait_until("every worker held", || {
                started.load(Ordering::SeqCst) == workers
            });
            tickets.extend(
                (0..QUEUED).map(|i| ex.submit(&reducing, i, i, Priority::Low).ok().unwrap()),
            );
            // An inline run that panics outside a step counts too (in submitted and panicked).
            assert!(ex.run(&reducing, 1, 1).is_err());
            let shutdown = {
                let ex = ex.clone();
                std::thread::spawn(move || ex.shutdown(drain))
            };
            if drain == Drain::HandBack {
                // The report waits for no running step: it shows the hand-back under way.
                wait_until("the queued runs handed back", || {
                    ex.report().runs.handed_back == QUEUED
                });
            }
            gate.store(true, Ordering::SeqCst);
            let shut = shutdown.join().unwrap();
            let refused = ex.submit(&held, 0, 0, Priority::High).err().unwrap();
            assert_eq!(refused.reason, Refusal::ShuttingDown);

            let (mut ran, mut panicked, mut handed_back) = (0, 0, 0);
            for t in tickets {
                match t.wait_timeout(BOUND) {
                    Ok(Finished::Ran(done)) => {
                        assert_eq!(done.outcome, Outcome::Succeeded, "{what}");
                        ran += 1;
                    }
                    Ok(Finished::Panicked(p)) => {
                        assert!(p.message.contains("injected reducer panic"), "{p}");
                        panicked += 1;
                    }
                    Ok(Finished::HandedBack(_)) => handed_back += 1,
                    Ok(other) => panic!("{what}: {other:?}"),
                    Err(_) => panic!("{what}: a ticket did not resolve"),
                }
            }
            let expected = match drain {
                Drain::Finish => (workers as u64 + QUEUED / 2, QUEUED / 2, 0),
                Drain::HandBack => (workers as u64, 0, QUEUED),
            };
            assert_eq!((ran, panicked, handed_back), expected, "{what}");
            assert_eq!(
                (shut.finished, shut.handed_back),
                (ran + panicked, handed_back)
            );

            let runs = ex.report().runs;
            assert_eq!(runs.in_flight, 0, "{what}: {runs:?}");
            assert_eq!(runs.submitted, workers as u64 + QUEUED + 1 + 1, "{what}");
            assert_eq!(runs.completed, ran, "{what}");
            assert_eq!(runs.panicked, panicked + 1, "{what}: the inline one too");
            assert_eq!(runs.handed_back, handed_back, "{what}");
            assert_eq!((runs.rejected(), runs.rejected_shutting_down), (1, 1));
            assert_eq!(runs.inline, 1, "{what}");
            assert_eq!(
                runs.submitted,
                runs.completed
                    + runs.panicked
                    + runs.handed_back
                    + runs.rejected()
                    + runs.in_flight,
                "{what}: {runs:?}"
            );
        }
    }
}
