//! Waits that lend their thread (`docs/waiting.md`): a run backing off runs queued runs of its
//! priority or higher on its worker meanwhile, never shortens its own gap, holds its thread in
//! a forked branch and past the nesting bounds, and loses nothing when a shutdown meets it.
//! Under every preset and telemetry level, on the real clock (where waits lend) and on a
//! manual one (where a backoff advances the clock at once and nothing is lent).

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_runtime::clock::ticks;
use flujo_runtime::{Drain, Executor, Finished, Priority};
use matrix::{each_setup, Setup, Time};

/// What the runs of one test did, in the order they did it.
type Log = Arc<Mutex<Vec<String>>>;

/// A one-step graph that logs `name` and succeeds.
fn healthy(log: &Log, name: &str) -> Arc<Graph<u64, ()>> {
    let (log, name) = (Arc::clone(log), name.to_string());
    Arc::new(
        Graph::build(|b| {
            b.task("healthy", move |x, _| {
                log.lock().unwrap().push(name.clone());
                Ok(x + 1)
            })
        })
        .unwrap(),
    )
}

/// A one-step graph whose step fails its first attempt (logging `"<name> failed"`), backs
/// off `backoff`, and logs `"<name> retried"` when its second attempt runs; it records the gap between the two
/// attempts, on the executor's clock, in `gaps`.
fn outage(
    ex: &Executor<u64, ()>,
    log: &Log,
    gaps: &Arc<Mutex<Vec<u64>>>,
    name: &str,
    backoff: Duration,
) -> Arc<Graph<u64, ()>> {
    gated_outage(ex, log, gaps, name, backoff, Arc::default())
}

/// [`outage`] whose first attempt starts only once it can take `gate`'s lock (the test holds
/// it while it submits what the backoff must find queued).
fn gated_outage(
    ex: &Executor<u64, ()>,
    log: &Log,
    gaps: &Arc<Mutex<Vec<u64>>>,
    name: &str,
    backoff: Duration,
    gate: Arc<Mutex<()>>,
) -> Arc<Graph<u64, ()>> {
    let (log, gaps, name) = (Arc::clone(log), Arc::clone(gaps), name.to_string());
    let clock = ex.clock().clone();
    let first = Arc::new(Mutex::new(None::<u64>));
    let retry = RetryPolicy::new(
        2,
        Backoff::Constant {
            delay_ticks: ticks(backoff),
        },
    )
    .unwrap();
    Arc::new(
        Graph::build(|b| {
            b.task_with(
                "outage",
                move |x, cx| {
                    use flujo_core::graph::Clock;
                    if cx.attempt() == 1 {
                        drop(gate.lock().unwrap());
                    }
                    let now = clock.now();
                    if cx.attempt() == 1 {
                        *first.lock().unwrap() = Some(now);
                        log.lock().unwrap().push(format!("{name} failed"));
                        return Err(StepError::transient("first attempt fails"));
                    }
                    let started = first.lock().unwrap().expect("the first attempt ran");
                    gaps.lock().unwrap().push(now - started);
                    log.lock().unwrap().push(format!("{name} retried"));
                    Ok(x + 1)
                },
                TaskConfig::new().retry(retry),
            )
        })
        .unwrap(),
    )
}

/// `s` on 1 worker, with room for every submission of these tests (queues of 128, the
/// limit fixed at 128 runs in flight).
fn single_worker(s: &Setup) -> Executor<u64, ()> {
    let mut s = s.clone();
    s.cfg.workers = 1;
    s.cfg.queues.capacity = [128; 3];
    s.cfg.adaptive_concurrency.enabled = false;
    s.cfg.adaptive_concurrency.max_limit = 128;
    s.cfg.adaptive_concurrency.initial_limit = 128;
    s.executor()
}

fn succeeded(t: flujo_runtime::ticket::Ticket<Finished<u64, ()>>) {
    match t.wait().unwrap() {
        Finished::Ran(done) => assert_eq!(done.outcome, Outcome::Succeeded),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_run_backing_off_lends_its_worker_to_queued_runs_of_its_priority_and_up() {
    // Long enough that a loaded machine (every setup runs at once, on its own thread)
    // cannot starve the lending worker through the whole gap; the test takes about a gap.
    const GAP: Duration = Duration::from_secs(1);
    each_setup(1, |s| {
        let ex = single_worker(s);
        let log = Log::default();
        let gaps = Arc::default();
        // The outage's first attempt waits until all nine runs are queued, so a slow test
        // thread (a loaded machine) cannot leave some unsubmitted through the whole gap.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let out = gated_outage(&ex, &log, &gaps, "outage", GAP, Arc::clone(&gate));
        let out_ticket = ex.submit(&out, 0, (), Priority::Normal).ok().unwrap();
        let mut tickets = Vec::new();
        for (i, p) in [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .cycle()
            .take(9)
            .enumerate()
        {
            let g = healthy(&log, &format!("{p:?} {i}"));
            tickets.push(ex.submit(&g, 0, (), p).ok().unwrap());
        }
        drop(held);
        succeeded(out_ticket);
        tickets.into_iter().for_each(succeeded);
        let log = log.lock().unwrap().clone();
        let gap = gaps.lock().unwrap()[0];
        assert!(gap >= ticks(GAP), "{}: gap {gap} under the backoff", s.name);
        let waits = ex.report().waits;
        let failed = log.iter().position(|l| l == "outage failed").unwrap();
        let retried = log.iter().position(|l| l == "outage retried").unwrap();
        match s.time {
            Time::Real => {
                // Every High and Normal run ran before the retry (the dispatcher may have
                // run some before the outage run started), the rest during the gap, helped;
                // no Low one ran before the retry.
                let before: Vec<_> = log[..retried]
                    .iter()
                    .filter(|l| *l != "outage failed")
                    .collect();
                assert_eq!(before.len(), 6, "{}: {log:?}", s.name);
                assert!(
                    before.iter().all(|l| !l.starts_with("Low")),
                    "{}: {log:?}",
                    s.name
                );
                assert_eq!((waits.lent, waits.held), (1, 0), "{}", s.name);
                assert_eq!(
                    waits.helped,
                    (retried - failed - 1) as u64,
                    "{}: {log:?}",
                    s.name
                );
            }
            Time::Manual(_) => {
                // The backoff advanced the clock at once: nothing to lend, nothing counted.
                assert_eq!(
                    gap,
                    ticks(GAP),
                    "{}: a manual backoff moves its ticks",
                    s.name
                );
                assert_eq!(
                    (waits.lent, waits.held, waits.helped),
                    (0, 0, 0),
                    "{}",
                    s.name
                );
            }
        }
        let runs = ex.report().runs;
        assert_eq!((runs.completed, runs.in_flight), (10, 0), "{}", s.name);
    });
}

#[test]
fn an_inline_run_backing_off_runs_queued_work_on_the_host_thread() {
    // Long enough that a loaded machine cannot starve the host thread through the whole
    // gap (a CI run saw 1 of 4 run in a 30 ms gap); the test takes about a gap.
    const GAP: Duration = Duration::from_secs(1);
    each_setup(1, |s| {
        let ex = single_worker(s);
        let log = Log::default();
        // The only worker is held by a run waiting for the test to let it go.
        let (go, gate) = mpsc::channel::<()>();
        let (started, has_started) = mpsc::channel::<()>();
        let (gate, started) = (Mutex::new(gate), Mutex::new(started));
        let blocker = Arc::new(
            Graph::<u64, ()>::build(|b| {
                b.task("blocker", move |x, _| {
                    started.lock().unwrap().send(()).unwrap();
                    gate.lock().unwrap().recv().unwrap();
                    Ok(x)
                })
            })
            .unwrap(),
        );
        let held = ex.submit(&blocker, 0, (), Priority::High).ok().unwrap();
        has_started.recv().unwrap();
        let queued: Vec<_> = (0..4)
            .map(|i| {
                let g = healthy(&log, &format!("queued {i}"));
                ex.submit(&g, 0, (), Priority::Normal).ok().unwrap()
            })
            .collect();
        let gaps = Arc::default();
        let out = outage(&ex, &log, &gaps, "inline", GAP);
        let done = ex.run(&out, 0, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Succeeded, "{}", s.name);
        let helped = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("queued"))
            .count();
        match s.time {
            // The worker is held, so only the host thread can have run them, in the gap.
            Time::Real => assert_eq!(helped, 4, "{}", s.name),
            Time::Manual(_) => assert_eq!(helped, 0, "{}", s.name),
        }
        go.send(()).unwrap();
        succeeded(held);
        queued.into_iter().for_each(succeeded);
        assert!(gaps.lock().unwrap()[0] >= ticks(GAP), "{}", s.name);
    });
}

#[test]
fn nested_waits_stop_lending_at_the_bound_and_every_gap_holds() {
    // Every run backs off, so each wait's helped run backs off in turn: the nesting grows
    // until the bound, where the wait holds its thread. Real clock only (a manual one never
    // lends); every preset and level.
    const RUNS: usize = 80;
    const GAP: Duration = Duration::from_millis(3);
    each_setup(1, |s| {
        if matches!(s.time, Time::Manual(_)) {
            return;
        }
        let ex = single_worker(s);
        let log = Log::default();
        let gaps: Arc<Mutex<Vec<u64>>> = Arc::default();
        let tickets: Vec<_> = (0..RUNS)
            .map(|i| {
                let g = outage(&ex, &log, &gaps, &format!("{i}"), GAP);
                ex.submit(&g, 0, (), Priority::High).ok().unwrap()
            })
            .collect();
        tickets.into_iter().for_each(succeeded);
        let gaps = gaps.lock().unwrap();
        assert_eq!(gaps.len(), RUNS);
        assert!(
            gaps.iter().all(|&g| g >= ticks(GAP)),
            "{}: {gaps:?}",
            s.name
        );
        let w = ex.report().waits;
        assert_eq!(w.lent + w.held, RUNS as u64, "{}: {w:?}", s.name);
        assert!(
            w.held >= 1,
            "{}: the deepest wait held its thread: {w:?}",
            s.name
        );
        // The depth bound (32) or, in a debug build's larger frames, the stack budget.
        assert!(w.helped >= 8, "{}: nested: {w:?}", s.name);
    });
}

#[test]
fn a_wait_in_a_forked_branch_holds_its_thread() {
    each_setup(2, |s| {
        if matches!(s.time, Time::Manual(_)) {
            return;
        }
        let mut cfg = s.cfg.clone();
        cfg.inline_cutoff.enabled = false; // every fan-out forks
        let ex = Executor::<u64, ()>::builder(cfg).build().unwrap();
        let retry = RetryPolicy::new(
            2,
            Backoff::Constant {
                delay_ticks: ticks(Duration::from_millis(2)),
            },
        )
        .unwrap();
        let g = Graph::<u64, ()>::build(|b| {
            let flaky = b.task_with(
                "flaky",
                |x, cx| match cx.attempt() {
                    1 => Err(StepError::transient("once")),
                    _ => Ok(x + 1),
                },
                TaskConfig::new().retry(retry),
            );
            let other = b.task("other", |x, _| Ok(x * 2));
            b.parallel("both", &[flaky, other], |a, b| a + b, Default::default())
        })
        .unwrap();
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.output, Some(2 + 2), "{}", s.name);
        let w = ex.report().waits;
        assert_eq!((w.lent, w.held, w.helped), (0, 1, 0), "{}", s.name);
    });
}

#[test]
fn shutdown_meeting_runs_in_backoff_loses_nothing() {
    each_setup(1, |s| {
        let ex = single_worker(s);
        let log = Log::default();
        let gaps = Arc::default();
        let ran = Arc::new(AtomicU32::new(0));
        let mut tickets = Vec::new();
        for i in 0..12 {
            let g = if i % 3 == 0 {
                outage(&ex, &log, &gaps, &format!("{i}"), Duration::from_millis(5))
            } else {
                let ran = Arc::clone(&ran);
                Arc::new(
                    Graph::build(|b| {
                        b.task("healthy", move |x, _| {
                            ran.fetch_add(1, Ordering::Relaxed);
                            Ok(x + 1)
                        })
                    })
                    .unwrap(),
                )
            };
            tickets.push(ex.submit(&g, i, (), Priority::High).ok().unwrap());
        }
        let report = ex.shutdown(Drain::Finish);
        assert_eq!(report.finished, 12, "{}: {report:?}", s.name);
        assert_eq!(report.handed_back + report.still_running, 0, "{}", s.name);
        for (i, t) in tickets.into_iter().enumerate() {
            match t.wait().unwrap() {
                Finished::Ran(done) => {
                    assert_eq!(done.outcome, Outcome::Succeeded, "{}", s.name);
                    assert_eq!(done.output, Some(i as u64 + 1));
                }
                other => panic!("{}: {other:?}", s.name),
            }
        }
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        assert_eq!(gaps.lock().unwrap().len(), 4);
    });
}

#[test]
fn a_cancel_reaches_a_run_in_a_long_backoff_at_once() {
    // A 60 s backoff: on the real clock a cancel (by the ticket, or by a time-limited
    // shutdown) ends it early and the run is stopped, cancelled; on a manual clock the
    // backoff passes at once and the run succeeds. Either way the ticket ends.
    const GAP: Duration = Duration::from_secs(60);
    each_setup(1, |s| {
        let ex = single_worker(s);
        let log = Log::default();
        let gaps = Arc::default();
        let g = outage(&ex, &log, &gaps, "long", GAP);
        let by_ticket = ex.submit(&g, 0, (), Priority::High).ok().unwrap();
        let by_shutdown = ex.submit(&g, 1, (), Priority::High).ok().unwrap();
        // Both have failed their first attempt (or, on a manual clock, are done) before
        // the cancels.
        let started = std::time::Instant::now();
        while log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("failed"))
            .count()
            < 2
        {
            assert!(started.elapsed() < Duration::from_secs(10), "{}", s.name);
            std::thread::sleep(Duration::from_millis(1));
        }
        by_ticket.cancel();
        // A grace long enough for a loaded machine: the shutdown returns once the runs end.
        let report = ex.shutdown_with(
            &flujo_runtime::ShutdownSpec::default()
                .limit(Duration::from_millis(20))
                .grace(Duration::from_secs(10)),
        );
        assert_eq!(report.still_running, 0, "{}: {report:?}", s.name);
        for t in [by_ticket, by_shutdown] {
            match (t.wait().unwrap(), &s.time) {
                (Finished::Ran(done), Time::Real) => {
                    assert_eq!(done.outcome, Outcome::Aborted, "{}: {done:?}", s.name)
                }
                (Finished::Ran(done), Time::Manual(_)) => {
                    assert_eq!(done.outcome, Outcome::Succeeded, "{}", s.name)
                }
                (other, _) => panic!("{}: {other:?}", s.name),
            }
        }
        assert!(
            started.elapsed() < GAP / 2,
            "{}: a backoff outlived its cancel",
            s.name
        );
    });
}
