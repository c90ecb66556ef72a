//! Shutdown within a time limit (`Executor::shutdown_with`), under every preset and telemetry
//! level, on the real clock and on a manual one: once the limit passes on the executor's
//! clock, the queued submissions are handed back with their inputs, a running step that polls
//! its cancel flag stops, one that ignores it is reported still running (and counted in
//! flight until it ends), and the report's totals stay whole throughout.

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::Graph;
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_runtime::clock::ticks;
use flujo_runtime::report::Runs;
use flujo_runtime::ticket::Ticket;
use flujo_runtime::{Drain, Executor, Finished, Priority, Refusal, ShutdownReport, ShutdownSpec};
use matrix::{each_setup, Setup, Time};

/// Generous bound for anything the tests wait on; reaching it is a failure.
const BOUND: Duration = Duration::from_secs(10);

/// The shutdown's time limit and grace.
const LIMIT: Duration = Duration::from_millis(30);
const GRACE: Duration = Duration::from_millis(30);

/// Waits (bounded, in real time) until `done()` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        thread::sleep(Duration::from_micros(100));
    }
}

/// What the graphs' first step does once started.
#[derive(Clone, Copy)]
enum Hold {
    /// Polls `should_stop` until it is raised.
    PollsFlag,
    /// Ignores the flag: waits for the gate.
    IgnoresFlag,
}

/// A graph whose first step counts itself started, then holds as `hold` says; the second step
/// counts the runs that reached it.
fn held(
    hold: Hold,
    started: &Arc<AtomicU64>,
    gate: &Arc<AtomicBool>,
    reached: &Arc<AtomicU64>,
) -> Arc<Graph<u64, ()>> {
    let (started, gate, reached) = (started.clone(), gate.clone(), reached.clone());
    Arc::new(
        Graph::build(move |b| {
            let hold = b.task("hold", move |x, cx| {
                started.fetch_add(1, Ordering::SeqCst);
                let t = Instant::now();
                let done = || match hold {
                    Hold::PollsFlag => cx.should_stop(),
                    Hold::IgnoresFlag => gate.load(Ordering::SeqCst),
                };
                while !done() && t.elapsed() < BOUND {
                    thread::sleep(Duration::from_micros(50));
                }
                Ok(x)
            });
            let after = b.task("after", move |x, _| {
                reached.fetch_add(1, Ordering::SeqCst);
                Ok(x + 1)
            });
            b.sequence("root", &[hold, after])
        })
        .unwrap(),
    )
}

/// The report's identity: every submission is ended one way, or in flight.
fn assert_whole(runs: &Runs, what: &str) {
    assert_eq!(
        runs.submitted,
        runs.completed + runs.panicked + runs.handed_back + runs.rejected() + runs.in_flight,
        "{what}: {runs:?}"
    );
}

/// Runs a shutdown with `spec` on its own thread and moves the setup's time on until it
/// returns: on the real clock it only waits; on a manual clock it first checks that the
/// shutdown is still waiting while the clock stands still, then advances the clock.
fn shut_down(s: &Setup, ex: &Arc<Executor<u64, ()>>, spec: ShutdownSpec) -> ShutdownReport {
    let shutdown = {
        let ex = ex.clone();
        thread::spawn(move || ex.shutdown_with(&spec))
    };
    if let Time::Manual(clock) = &s.time {
        thread::sleep(Duration::from_millis(30));
        assert!(
            !shutdown.is_finished(),
            "{}: the shutdown returned before its limit on the manual clock",
            s.name
        );
        let start = Instant::now();
        while !shutdown.is_finished() {
            assert!(
                start.elapsed() < BOUND,
                "{}: the shutdown never returned",
                s.name
            );
            clock.advance(ticks(LIMIT));
            thread::sleep(Duration::from_millis(1));
        }
    }
    shutdown.join().expect("the shutdown does not panic")
}

/// Submits `n` runs of `g` with inputs `from..from + n`.
fn submit(
    ex: &Executor<u64, ()>,
    g: &Arc<Graph<u64, ()>>,
    from: u64,
    n: u64,
) -> Vec<Ticket<Finished<u64, ()>>> {
    (from..from + n)
        .map(|i| ex.submit(g, i, (), Priority::Normal).expect("admitted"))
        .collect()
}

/// Checks that each ticket hands back its input, unrun.
fn assert_handed_back(tickets: Vec<Ticket<Finished<u64, ()>>>, from: u64, what: &str) {
    for (i, t) in (from..).zip(tickets) {
        match t.wait_timeout(BOUND).expect("resolves") {
            Finished::HandedBack(back) => {
                assert_eq!(
                    (back.reason, back.input),
                    (Refusal::ShuttingDown, i),
                    "{what}"
                );
            }
            other => panic!("{what}: queued run {i} ended as {other:?}"),
        }
    }
}

/// Checks that the ticket's run was stopped by its raised flag before its second step.
fn assert_cancelled(ticket: Ticket<Finished<u64, ()>>, what: &str) {
    match ticket.wait_timeout(BOUND).expect("resolves") {
        Finished::Ran(done) => {
            assert_eq!(done.outcome, Outcome::Aborted, "{what}");
            let e = done.error.expect("an aborted run has an error");
            assert_eq!(
                (e.kind, e.step.as_str()),
                (ErrorKind::Cancelled, "after"),
                "{what}"
            );
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn at_the_limit_the_queue_is_handed_back_and_a_polling_step_stops() {
    const QUEUED: u64 = 3;
    each_setup(1, |s| {
        let what = s.name.as_str();
        let ex = Arc::new(s.executor::<u64, ()>());
        let (started, gate, reached) = Default::default();
        let g = held(Hold::PollsFlag, &started, &gate, &reached);
        let running = submit(&ex, &g, 0, 1).remove(0);
        wait_until("the run started", || started.load(Ordering::SeqCst) == 1);
        // The one worker is held: these wait in the queue. `Drain::Finish` would run them,
        // but the limit passes first.
        let queued = submit(&ex, &g, 10, QUEUED);
        let spec = ShutdownSpec::default().limit(LIMIT).grace(BOUND);
        let shut = shut_down(s, &ex, spec);
        assert_eq!(
            (shut.cancelled, shut.still_running),
            (1, 0),
            "{what}: {shut:?}"
        );
        assert_eq!(shut.handed_back, QUEUED, "{what}");
        assert_cancelled(running, what);
        assert_handed_back(queued, 10, what);
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "{what}: no run reached its second step"
        );
        let refused = ex.submit(&g, 99, (), Priority::High).expect_err("refused");
        assert_eq!(
            (refused.reason, refused.input),
            (Refusal::ShuttingDown, 99),
            "{what}"
        );
        let runs = ex.report().runs;
        assert_whole(&runs, what);
        assert_eq!(
            (
                runs.completed,
                runs.aborted,
                runs.handed_back,
                runs.in_flight
            ),
            (1, 1, QUEUED, 0),
            "{what}: {runs:?}"
        );
    });
}

#[test]
fn a_step_that_ignores_its_flag_is_reported_still_running_and_in_flight_until_it_ends() {
    each_setup(1, |s| {
        let what = s.name.as_str();
        let ex = Arc::new(s.executor::<u64, ()>());
        let (started, gate, reached) = Default::default();
        let g = held(Hold::IgnoresFlag, &started, &gate, &reached);
        let mut running = submit(&ex, &g, 0, 1).remove(0);
        wait_until("the run started", || started.load(Ordering::SeqCst) == 1);
        let spec = ShutdownSpec::default()
            .drain(Drain::HandBack)
            .limit(LIMIT)
            .grace(GRACE);
        let shut = shut_down(s, &ex, spec);
        assert_eq!(
            (shut.cancelled, shut.still_running),
            (1, 1),
            "{what}: {shut:?}"
        );
        assert!(
            matches!(running.try_poll(), Ok(None)),
            "{what}: the run is still under way"
        );
        let runs = ex.report().runs;
        assert_whole(&runs, what);
        assert_eq!((runs.completed, runs.in_flight), (0, 1), "{what}: {runs:?}");

        // It ends when its step returns; its flag was raised, so it stops before the next.
        gate.store(true, Ordering::SeqCst);
        assert_cancelled(running, what);
        wait_until("the report to count it", || ex.report().runs.in_flight == 0);
        let runs = ex.report().runs;
        assert_whole(&runs, what);
        assert_eq!((runs.completed, runs.aborted), (1, 1), "{what}: {runs:?}");
        assert_eq!(reached.load(Ordering::SeqCst), 0, "{what}");
    });
}

#[test]
fn a_limit_not_reached_cancels_nothing_and_every_queued_run_finishes() {
    each_setup(1, |s| {
        let what = s.name.as_str();
        let ex = Arc::new(s.executor::<u64, ()>());
        let (started, gate, reached) = Default::default();
        let g = held(Hold::IgnoresFlag, &started, &gate, &reached);
        // Open from the start: every run passes its first step at once.
        gate.store(true, Ordering::SeqCst);
        let tickets = submit(&ex, &g, 0, 4);
        // (4: the low-memory preset admits 4 at first.) A limit far off on either clock (the manual one is never moved past it).
        let shut = ex.shutdown_with(&ShutdownSpec::default().limit(Duration::from_secs(3600)));
        assert_eq!(
            (shut.cancelled, shut.still_running, shut.handed_back),
            (0, 0, 0),
            "{what}"
        );
        for (i, t) in (0..).zip(tickets) {
            match t.wait_timeout(BOUND).expect("resolves") {
                Finished::Ran(done) => assert_eq!(done.output, Some(i + 1), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let runs = ex.report().runs;
        assert_whole(&runs, what);
        assert_eq!((runs.succeeded, runs.in_flight), (4, 0), "{what}: {runs:?}");
    });
}

#[test]
fn with_two_workers_every_run_under_way_is_cancelled_at_the_limit() {
    // Both workers held by polling steps, the queue behind them: each run ends exactly once,
    // as cancelled or handed back.
    let mut cfg = flujo_runtime::config::OptimizationConfig::latency();
    cfg.workers = 2;
    let ex = Arc::new(Executor::<u64, ()>::new(cfg).unwrap());
    let (started, gate, reached) = Default::default();
    let g = held(Hold::PollsFlag, &started, &gate, &reached);
    let running = submit(&ex, &g, 0, 2);
    wait_until("both runs started", || started.load(Ordering::SeqCst) == 2);
    let queued = submit(&ex, &g, 10, 5);
    let shut = ex.shutdown_with(&ShutdownSpec::default().limit(LIMIT).grace(BOUND));
    assert_eq!(
        (shut.cancelled, shut.still_running, shut.handed_back),
        (2, 0, 5),
        "{shut:?}"
    );
    for t in running {
        assert_cancelled(t, "2 workers");
    }
    assert_handed_back(queued, 10, "2 workers");
    let runs = ex.report().runs;
    assert_whole(&runs, "2 workers");
    assert_eq!(
        (runs.aborted, runs.handed_back, runs.in_flight),
        (2, 5, 0),
        "{runs:?}"
    );
}
