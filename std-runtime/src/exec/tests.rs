//! The executor's own rules; integration tests (differential, stress, shutdown) live in the
//! `tests` crate.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::ErrorClass;
use flujo_core::telemetry::Counter;

use super::*;
use crate::ticket::Ticket;
use crate::Priority;

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
    assert_eq!(
        e.kind.to_string(),
        "Panic: step panicked: two is not allowed"
    );
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

#[test]
fn the_report_counts_every_run_and_the_trace_parses_back_with_the_step_spans() {
    let g = Arc::new(
        Graph::<u64, ()>::build(|b| {
            let a = b.task("parse", |x, _| Ok(x + 1));
            let c = b.task("score", |x, _| Ok(x * 2));
            b.sequence("pipeline", &[a, c])
        })
        .unwrap(),
    );
    let mut cfg = forking(2);
    cfg.telemetry.level = TelemetryLevel::Events;
    cfg.telemetry.run_sample_period = 1;
    let ex = Executor::new(cfg).unwrap();
    for i in 0..50 {
        assert_eq!(ex.run(&g, i, ()).unwrap().output, Some((i + 1) * 2));
    }
    // In batches under the initial concurrency limit (16), so none is refused.
    for batch in 0..5 {
        let tickets: Vec<_> = (0..10)
            .map(|i| {
                ex.submit(&g, batch * 10 + i, (), Priority::Normal)
                    .ok()
                    .unwrap()
            })
            .collect();
        for t in tickets {
            assert!(matches!(t.wait().unwrap(), Finished::Ran(_)));
        }
    }
    let report = ex.report();
    assert_eq!(report.runs.completed, 100);
    assert_eq!(report.runs.succeeded, 100);
    assert_eq!(report.counter(Counter::StepsRun), 200);
    assert_eq!(report.step("parse").map(|s| s.executions), Some(100));
    let table = report.to_string();
    assert!(
        table.contains("parse") && table.contains("score"),
        "{table}"
    );

    let mut json = Vec::new();
    ex.write_trace(&mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let spans = |name: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["name"] == name)
            .count()
    };
    assert_eq!((spans("parse"), spans("score")), (100, 100));
}

#[test]
fn the_report_reads_each_breaker_exactly_even_when_no_run_was_sampled() {
    use flujo_core::policy::{Breaker, BreakerConfig};
    // One breaker guards two steps (one row, named after the first), another one step. The
    // telemetry keeps counters only, so no event is ever recorded, and the rows still count
    // every transition and refusal, as the breakers themselves do.
    let config = BreakerConfig {
        consecutive_failures_to_open: 1,
        open_ticks: u64::MAX,
        ..BreakerConfig::DEFAULT
    };
    let shared = Arc::new(Breaker::new(config).unwrap());
    let alone = Arc::new(Breaker::new(config).unwrap());
    let g = Graph::<u64, ()>::build(|b| {
        let a = b.task_with(
            "a",
            |_, _| Err(StepError::transient("down")),
            TaskConfig::new().breaker(shared.clone()),
        );
        let c = b.task_with("c", |x, _| Ok(x), TaskConfig::new().breaker(shared.clone()));
        let d = b.task_with("d", |x, _| Ok(x), TaskConfig::new().breaker(alone.clone()));
        b.sequence("s", &[d, a, c])
    })
    .unwrap();
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 2;
    cfg.telemetry.level = crate::config::TelemetryLevel::Counters;
    let ex = Executor::new(cfg).unwrap();
    for i in 0..6 {
        assert_eq!(ex.run(&g, i, ()).unwrap().outcome, Outcome::Failed);
    }
    let report = ex.report();
    assert!(report.breakers_exact);
    assert_eq!(report.telemetry.events_recorded, 0);
    assert_eq!(report.breakers.len(), 2);
    let row = |name: &str| report.breakers.iter().find(|r| r.step == name).unwrap();
    // Run 0 fails `a` and opens the shared breaker for good (`c` is never reached); `a` is
    // refused in each of the five later runs.
    let counts = shared.transition_counts();
    let shared_row = row("a (+others)");
    assert_eq!(shared_row.to_open, counts.closed_to_open as u64);
    assert_eq!((shared_row.to_open, shared_row.to_closed), (1, 0));
    assert_eq!(shared_row.rejected, shared.refusals() as u64);
    assert_eq!(shared_row.rejected, 5);
    let alone_row = row("d");
    assert_eq!((alone_row.to_open, alone_row.rejected), (0, 0));
    assert!(report.to_string().contains("exact"));
}

#[test]
fn a_config_change_at_run_time_is_seen_whole_by_later_runs() {
    let g = Graph::<u64, ()>::build(|b| b.task("id", |x, _| Ok(x))).unwrap();
    let ex = Executor::new(forking(1)).unwrap();
    let mut bad = forking(1);
    bad.max_records = 0;
    assert_eq!(
        ex.reconfigure(bad).unwrap_err().field(),
        Some("max_records")
    );
    let mut cfg = OptimizationConfig::low_memory();
    cfg.workers = 1;
    let generation = ex.reconfigure(cfg.clone()).unwrap();
    assert!(generation >= 1);
    assert_eq!(*ex.config(), cfg);
    assert_eq!(ex.run(&g, 3, ()).unwrap().output, Some(3));
}

#[test]
fn pool_counts_are_loans_and_survive_a_reconfiguration() {
    let g = Graph::<u64, ()>::build(|b| b.task("id", |x, _| Ok(x))).unwrap();
    let ex = Executor::new(forking(1)).unwrap();
    for i in 0..10 {
        assert_eq!(ex.run(&g, i, ()).unwrap().output, Some(i));
    }
    let pool = ex.report().pool;
    assert_eq!(
        (pool.pool_misses, pool.pool_hits, pool.pool_idle),
        (1, 9, 1)
    );
    // A new configuration rebuilds the pooled runner in place on its next loan, keeping its counts.
    ex.reconfigure(OptimizationConfig::throughput()).unwrap();
    ex.run(&g, 0, ()).unwrap();
    let report = ex.report();
    assert_eq!((report.pool.pool_misses, report.pool.pool_hits), (1, 10));
    assert_eq!(report.runs.completed, 11);
    assert_eq!(report.step("id").map(|s| s.executions), Some(11));
}

/// A graph whose first step waits for `gate` (opened by the test, so bounded) and then
/// notes its input in `order`.
fn gated(
    gate: &Arc<std::sync::atomic::AtomicBool>,
    order: &Arc<Mutex<Vec<u64>>>,
) -> Arc<Graph<u64, ()>> {
    let (gate, order) = (Arc::clone(gate), Arc::clone(order));
    Arc::new(
        Graph::<u64, ()>::build(move |b| {
            b.task("gated", move |x: u64, _: &mut _| {
                while !gate.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                lock(&order).push(x);
                Ok(x + 1)
            })
        })
        .unwrap(),
    )
}

fn ran(ticket: Ticket<Finished<u64, ()>>) -> u64 {
    match ticket.wait() {
        Ok(Finished::Ran(done)) => done.output.unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn submissions_reuse_the_executors_ticket_cells() {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1;
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let g = Arc::new(Graph::<u64, ()>::build(|b| b.task("inc", |x, _| Ok(x + 1))).unwrap());
    let rounds = if cfg!(miri) { 5 } else { 200 };
    for i in 0..rounds {
        let ticket = ex.submit(&g, i, (), Priority::ALL[i as usize % 3]).unwrap();
        assert_eq!(ran(ticket), i + 1);
    }
    ex.shutdown(Drain::Finish);
    let cells = &ex.inner.cells;
    // One cell in use at a time, plus at most one whose completer the dispatcher is still
    // putting back when the next submission pairs (it does so before it runs the next job).
    assert!(
        (1..=2).contains(&cells.made()),
        "{} cells made",
        cells.made()
    );
    assert_eq!(cells.idle(), cells.made(), "every cell is back");
    assert_eq!(cells.keep(), TICKET_CELLS_KEPT);
}

#[test]
fn one_dispatcher_runs_a_queued_burst_in_priority_order() {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1;
    cfg.adaptive_concurrency.enabled = false;
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let order = Arc::new(Mutex::new(Vec::new()));
    let g = gated(&gate, &order);
    // The first submission holds the one dispatcher; the others queue behind it.
    let first = ex.submit(&g, 0, (), Priority::Low).unwrap();
    // Bounded: the dispatcher it started takes it at once.
    while !ex.inner.queues.is_empty() {
        std::thread::yield_now();
    }
    let mut tickets = Vec::new();
    for (i, priority) in [Priority::Low, Priority::Normal, Priority::High]
        .into_iter()
        .cycle()
        .take(9)
        .enumerate()
    {
        tickets.push(ex.submit(&g, 1 + i as u64, (), priority).unwrap());
    }
    assert!(ex.inner.dispatchers.running() <= 1);
    gate.store(true, Ordering::Release);
    assert_eq!(ran(first), 1);
    for (i, ticket) in tickets.into_iter().enumerate() {
        assert_eq!(ran(ticket), 2 + i as u64);
    }
    // Inputs 1..=9 went Low, Normal, High in turn: High first, then Normal, then Low
    // (aging 8 does not reach in within 9 pops), each level in FIFO order.
    assert_eq!(*lock(&order), [0, 3, 6, 9, 2, 5, 8, 1, 4, 7]);
    assert_eq!(ex.shutdown(Drain::Finish).finished, 10);
}

#[test]
fn a_shutdown_hands_back_what_the_busy_dispatchers_left_queued() {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 2;
    cfg.adaptive_concurrency.enabled = false;
    let ex = Arc::new(Executor::<u64, ()>::new(cfg).unwrap());
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let order = Arc::new(Mutex::new(Vec::new()));
    let g = gated(&gate, &order);
    let n = 20u64;
    let submit = |i| ex.submit(&g, i, (), Priority::Normal).unwrap();
    let mut tickets: Vec<_> = (0..2).map(submit).collect();
    // Bounded: the two dispatchers they started take them at once and are held.
    while !ex.inner.queues.is_empty() {
        std::thread::yield_now();
    }
    tickets.extend((2..n).map(submit));
    // Every place is taken: no dispatcher more was started, the rest is queued.
    assert_eq!(ex.inner.dispatchers.running(), 2);
    assert_eq!(ex.inner.queues.len() as u64, n - 2);
    let busy = 2;
    let opener = {
        let (gate, ex) = (Arc::clone(&gate), Arc::clone(&ex));
        std::thread::spawn(move || {
            // Bounded: the main thread starts the shutdown right away, which closes them.
            while !ex.inner.queues.is_closed() {
                std::thread::yield_now();
            }
            gate.store(true, Ordering::Release);
        })
    };
    let report = ex.shutdown(Drain::HandBack);
    opener.join().unwrap();
    let (mut ran_n, mut back) = (0, 0);
    for (i, ticket) in tickets.into_iter().enumerate() {
        match ticket.wait().unwrap() {
            Finished::Ran(done) => {
                assert_eq!(done.output, Some(i as u64 + 1));
                ran_n += 1;
            }
            Finished::HandedBack(r) => {
                assert_eq!((r.reason, r.input), (Refusal::ShuttingDown, i as u64));
                back += 1;
            }
            Finished::Panicked(p) => panic!("{p}"),
        }
    }
    assert_eq!(ran_n + back, n);
    assert_eq!(report.handed_back, back);
    assert_eq!(report.finished, ran_n);
    assert!(ran_n >= busy, "the runs held at the gate finished");
    // Every permit came back: a run's as a success, a handed-back one's as ignored.
    let limit = ex.inner.limit.stats();
    assert_eq!(ex.inner.limit.in_flight(), 0);
    assert_eq!((limit.succeeded, limit.ignored), (ran_n, back));
}

#[test]
fn a_submission_refused_by_a_full_queue_gives_its_permit_back() {
    for (preset, level, manual) in every_setup() {
        let setup = format!("{preset}/{level:?}/manual {manual}");
        let ex = one_worker(preset, level, manual, |cfg| cfg.queues.capacity = [1, 1, 1]);
        let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let order = Arc::new(Mutex::new(Vec::new()));
        let g = gated(&gate, &order);
        let first = ex.submit(&g, 1, (), Priority::Normal).unwrap();
        // Bounded: the dispatcher it started takes it at once and is held at the gate.
        while !ex.inner.queues.is_empty() {
            std::thread::yield_now();
        }
        let second = ex.submit(&g, 2, (), Priority::Normal).unwrap();
        let back = ex.submit(&g, 3, (), Priority::Normal).unwrap_err();
        assert_eq!(
            (back.reason, back.input),
            (Refusal::QueueFull, 3),
            "{setup}"
        );
        // The third took a permit before it found the queue full, and gave it back unused.
        assert_eq!(ex.inner.limit.in_flight(), 2, "{setup}");
        assert_eq!(ex.inner.limit.stats().ignored, 1, "{setup}");
        gate.store(true, Ordering::Release);
        assert_eq!((ran(first), ran(second)), (2, 3), "{setup}");
        let stats = ex.inner.limit.stats();
        assert_eq!(
            (stats.acquired, stats.succeeded, stats.ignored),
            (3, 2, 1),
            "{setup}"
        );
        assert_eq!(ex.inner.limit.in_flight(), 0, "{setup}");
    }
}

/// An input whose armed copies panic when dropped (clones are unarmed).
#[derive(Debug)]
struct Bomb {
    value: u64,
    armed: bool,
}

impl Clone for Bomb {
    fn clone(&self) -> Self {
        Self {
            value: self.value,
            armed: false,
        }
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("an armed bomb was dropped");
        }
    }
}

#[test]
fn a_value_panicking_in_its_drop_leaves_the_dispatchers_and_the_shutdown_working() {
    let panics = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&panics);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .panic_handler(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let ex = Executor::<Bomb, ()>::builder(OptimizationConfig::latency())
        .pool(pool)
        .build()
        .unwrap();
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = Arc::clone(&gate);
    let g = Arc::new(
        Graph::<Bomb, ()>::build(move |b| {
            let open = Arc::clone(&open);
            b.task("arm", move |x: Bomb, _: &mut _| {
                while !open.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                Ok(Bomb {
                    value: x.value + 1,
                    armed: x.value == 0,
                })
            })
        })
        .unwrap(),
    );
    let bomb = |value| Bomb {
        value,
        armed: false,
    };
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Its ticket is dropped before it completes: the completer drops the armed output, and
    // the panic unwinds out of the one dispatcher.
    drop(ex.submit(&g, bomb(0), (), Priority::High).ok().unwrap());
    gate.store(true, Ordering::Release);
    let ticket = ex.submit(&g, bomb(1), (), Priority::High).ok().unwrap();
    // Bounded: a stuck dispatcher place would leave it queued forever.
    let out = match ticket.wait_timeout(Duration::from_secs(60)) {
        Ok(Finished::Ran(done)) => done.output.map(|b| b.value),
        Ok(other) => panic!("{other:?}"),
        Err(_) => panic!("the second submission was never run"),
    };
    std::panic::set_hook(prev);
    assert_eq!(out, Some(2));
    let report = ex.shutdown(Drain::Finish);
    assert_eq!(report.finished, 2);
    assert_eq!(panics.load(Ordering::SeqCst), 1);
}

#[test]
fn no_submission_is_stranded_while_dispatchers_come_and_go() {
    for threads in [1, 2, 3] {
        let mut cfg = OptimizationConfig::latency();
        cfg.workers = threads;
        cfg.adaptive_concurrency.enabled = false;
        let ex = Arc::new(Executor::<u64, ()>::new(cfg).unwrap());
        let g = Arc::new(Graph::<u64, ()>::build(|b| b.task("inc", |x, _| Ok(x + 1))).unwrap());
        let each: u64 = if cfg!(miri) { 5 } else { 400 };
        let submitters: Vec<_> = (0..3u64)
            .map(|s| {
                let (ex, g) = (Arc::clone(&ex), Arc::clone(&g));
                std::thread::spawn(move || {
                    // Submitter 0 waits for each at once (the dispatchers keep going idle);
                    // the others let up to 8 queue before waiting.
                    let window = if s == 0 { 1 } else { 8 };
                    let mut tickets = std::collections::VecDeque::new();
                    for i in 0..each {
                        let x = s * 1_000_000 + i;
                        let priority = Priority::ALL[(i % 3) as usize];
                        tickets.push_back((x, ex.submit(&g, x, (), priority).unwrap()));
                        while tickets.len() >= window {
                            let (x, t) = tickets.pop_front().unwrap();
                            // Bounded: a stranded submission would wait forever.
                            match t.wait_timeout(Duration::from_secs(60)) {
                                Ok(Finished::Ran(done)) => assert_eq!(done.output, Some(x + 1)),
                                Ok(other) => panic!("{other:?}"),
                                Err(_) => panic!("submission {x} stranded ({threads} threads)"),
                            }
                        }
                    }
                    for (x, t) in tickets {
                        match t.wait_timeout(Duration::from_secs(60)) {
                            Ok(Finished::Ran(done)) => assert_eq!(done.output, Some(x + 1)),
                            Ok(other) => panic!("{other:?}"),
                            Err(_) => panic!("submission {x} stranded ({threads} threads)"),
                        }
                    }
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        let report = ex.shutdown(Drain::Finish);
        assert_eq!(report.finished, 3 * each);
        assert!(ex.inner.dispatchers.running() <= threads);
        let cells = &ex.inner.cells;
        assert!(
            cells.made() <= 3 * 8 + 2 * threads + 3,
            "{} ticket cells made for {} submissions",
            cells.made(),
            3 * each
        );
    }
}

/// Silences panics whose message contains "injected" (the rest still print).
fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !msg.contains("injected") {
            default(info);
        }
    }));
}

/// Asserts the report's identity: every submission in exactly one line.
fn assert_identity(runs: &crate::report::Runs) {
    assert_eq!(
        runs.submitted,
        runs.completed + runs.panicked + runs.handed_back + runs.rejected() + runs.in_flight,
        "{runs:?}"
    );
    assert_eq!(
        runs.completed,
        runs.succeeded + runs.failed + runs.aborted,
        "{runs:?}"
    );
}

#[test]
fn report_returns_while_a_step_is_blocked() {
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let g = Graph::<u64, ()>::build(|b| b.task("id", |x, _| Ok(x))).unwrap();
    // The blocked graph: its step says it started, then waits for the test's release.
    let blocking = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            b.task("wait", move |x, _| {
                lock(&started_tx).send(()).unwrap();
                lock(&blocked)
                    .recv_timeout(Duration::from_secs(30))
                    .expect("released by the test");
                Ok(x + 1)
            })
        })
        .unwrap(),
    );
    // One pool thread: the only worker thread is held by the blocked step.
    let ex = Executor::new(forking(1)).unwrap();
    ex.run(&g, 1, ()).unwrap();
    let ticket = ex.submit(&blocking, 1, (), Priority::Normal).ok().unwrap();
    started
        .recv_timeout(Duration::from_secs(30))
        .expect("the step started");
    // The step is blocked until after this returns: a report waiting for it would hang
    // here (and the test would fail at the ticket's bounded wait below, never released).
    let during = ex.report();
    release.send(()).unwrap();
    assert_eq!(during.runs.in_flight, 1);
    assert_eq!((during.runs.completed, during.runs.inline), (1, 1));
    assert_identity(&during.runs);
    match ticket.wait_timeout(Duration::from_secs(30)) {
        Ok(Finished::Ran(done)) => assert_eq!(done.output, Some(2)),
        other => panic!("{other:?}"),
    }
    let after = ex.report();
    assert_eq!((after.runs.in_flight, after.runs.completed), (0, 2));
    assert_identity(&after.runs);
}

/// A graph whose parallel reducer panics (outside any step) on inputs `x % 3 == 0`.
fn reducer_panics() -> Arc<Graph<u64, ()>> {
    Arc::new(
        Graph::<u64, ()>::build(|b| {
            let a = b.task("a", |x, _| Ok(x));
            let c = b.task("c", |x, _| Ok(x));
            b.parallel(
                "both",
                &[a, c],
                |x, y| {
                    assert!(x % 3 != 0, "injected reducer panic");
                    x + y
                },
                Default::default(),
            )
        })
        .unwrap(),
    )
}

#[test]
fn a_run_panicking_outside_a_step_is_counted_and_frees_its_pooled_runner() {
    quiet_injected_panics();
    for workers in [1, 2] {
        let ex = Executor::new(forking(workers)).unwrap();
        let g = reducer_panics();
        // Inline: one panics, one runs.
        assert!(ex.run(&g, 3, ()).is_err());
        assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2));
        // Submitted: each ends as a panic or a run.
        let tickets: Vec<_> = (0..12u64)
            .map(|x| (x, ex.submit(&g, x, (), Priority::Normal).ok().unwrap()))
            .collect();
        for (x, t) in tickets {
            match t.wait_timeout(Duration::from_secs(30)) {
                Ok(Finished::Panicked(p)) => {
                    assert_eq!(x % 3, 0);
                    // One prefix, the run's: the payload is not taken for a step's.
                    assert_eq!(
                        p.to_string(),
                        "run panicked outside a step: injected reducer panic"
                    );
                }
                Ok(Finished::Ran(done)) => assert_eq!(done.output, Some(2 * x)),
                other => panic!("{x}: {other:?}"),
            }
        }
        let shut = ex.shutdown(Drain::Finish);
        assert_eq!(shut.finished, 12);
        let report = ex.report();
        let runs = report.runs;
        assert_identity(&runs);
        assert_eq!(runs.in_flight, 0, "{workers} workers: {runs:?}");
        assert_eq!(
            (runs.panicked, runs.completed, runs.inline),
            (1 + 4, 1 + 8, 2)
        );
        assert_eq!(runs.submitted, 12 + 2);
        // A panicked run's pooled runner is freed, not lent again; its counts stay.
        assert!(report.pool.pool_freed >= 5, "{:?}", report.pool);
        // The step records of a panicked run unwind with it: the steps count the runs ended.
        assert_eq!(report.step("a").map(|s| s.executions), Some(9));
    }
}

#[test]
fn idle_pooled_runners_past_the_bound_are_freed_after_a_forked_burst_and_keep_their_counts() {
    const CALLERS: usize = 48;
    const ROUNDS: u64 = 3;
    let (started, gate) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let (seen, open) = (Arc::clone(&started), Arc::clone(&gate));
    // Each run holds its pooled runner at the gate, then forks two branches on the pool.
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            let (seen, open) = (Arc::clone(&seen), Arc::clone(&open));
            let wait = b.task("wait", move |x, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                let start = std::time::Instant::now();
                while !open.load(Ordering::Acquire) {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "gate never opened"
                    );
                    std::thread::yield_now();
                }
                Ok(x)
            });
            let a = b.task("a", |x, _| Ok(x + 1));
            let c = b.task("c", |x, _| Ok(x + 2));
            let both = b.parallel("both", &[a, c], |x, y| x + y, Default::default());
            b.sequence("root", &[wait, both])
        })
        .unwrap(),
    );
    let ex = Arc::new(Executor::new(forking(2)).unwrap());
    let idle_max = ex.report().pool.pool_idle_max;
    assert_eq!(idle_max, 32, "2 * 2 threads + 4 + 16, a power of two");
    let mut peak_reserved = 0;
    for round in 0..ROUNDS {
        gate.store(false, Ordering::Release);
        started.store(0, Ordering::SeqCst);
        let callers: Vec<_> = (0..CALLERS as u64)
            .map(|x| {
                let (ex, g) = (Arc::clone(&ex), Arc::clone(&g));
                std::thread::spawn(move || ex.run(&g, x, ()).unwrap().output)
            })
            .collect();
        let start = std::time::Instant::now();
        while started.load(Ordering::SeqCst) < CALLERS as u32 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "callers never started"
            );
            std::thread::yield_now();
        }
        // Every caller holds a pooled runner at the gate: more live runners than the idle bound.
        let during = ex.report().pool;
        assert!(during.pool_live >= CALLERS as u64, "{during:?}");
        peak_reserved = peak_reserved.max(during.arena_bytes_reserved);
        gate.store(true, Ordering::Release);
        for (x, c) in callers.into_iter().enumerate() {
            let x = x as u64;
            assert_eq!(c.join().unwrap(), Some(2 * x + 3), "round {round}");
        }
        let after = ex.report();
        let pool = after.pool;
        assert!(pool.pool_live <= idle_max, "{pool:?}");
        assert!(pool.pool_idle <= idle_max, "{pool:?}");
        assert!(
            pool.pool_freed >= (round + 1) * (CALLERS as u64 - idle_max),
            "{pool:?}"
        );
        assert!(
            pool.arena_bytes_reserved < peak_reserved,
            "{pool:?}, {peak_reserved}"
        );
        assert!(
            pool.arena_bytes_reserved <= pool.arena_bytes_reserved_idle_max,
            "{pool:?}"
        );
        // Freed pooled runners' counts are kept: every run and step of every round.
        let runs = (round + 1) * CALLERS as u64;
        assert_eq!((after.runs.completed, after.runs.inline), (runs, runs));
        assert_eq!(after.runs.submitted, runs);
        assert_identity(&after.runs);
        for step in ["wait", "a", "c"] {
            assert_eq!(after.step(step).map(|s| s.executions), Some(runs), "{step}");
        }
        assert_eq!(pool.pool_hits + pool.pool_misses, {
            // Each run and each forked branch is one loan.
            runs * 3
        });
    }
}

#[test]
fn a_panic_in_run_withs_closure_counts_the_ended_run_once() {
    quiet_injected_panics();
    let g = Graph::<u64, ()>::build(|b| b.task("id", |x, _| Ok(x))).unwrap();
    let ex = Executor::new(forking(1)).unwrap();
    let spec = RunSpec::default();
    let r = ex.run_with(&g, 1, (), &spec, |_| -> u64 {
        panic!("injected panic in the caller's closure")
    });
    assert!(r.unwrap_err().message.contains("injected"));
    let runs = ex.report().runs;
    assert_eq!((runs.completed, runs.panicked, runs.inline), (1, 0, 1));
    assert_identity(&runs);
}

/// Pins the calling thread (and the threads it spawns later) to the CPU it runs on now.
#[cfg(target_os = "linux")]
fn pin_to_this_cpu() -> u32 {
    let cpu = crate::sync::current_cpu();
    assert_ne!(cpu, crate::sync::NO_CPU, "sched_getcpu answers on Linux");
    crate::sync::affinity::set(&crate::sync::affinity::only(cpu));
    cpu
}

/// Every preset, telemetry level and clock (`true`: a manual one) an executor-level timing
/// test runs under.
fn every_setup() -> impl Iterator<Item = (&'static str, TelemetryLevel, bool)> {
    OptimizationConfig::PRESETS.into_iter().flat_map(|preset| {
        [
            TelemetryLevel::Off,
            TelemetryLevel::Counters,
            TelemetryLevel::Histograms,
            TelemetryLevel::Events,
        ]
        .into_iter()
        .flat_map(move |level| [false, true].map(|manual| (preset, level, manual)))
    })
}

/// An executor of one worker set up as `every_setup` says, its configuration changed by
/// `tweak` last.
fn one_worker(
    preset: &str,
    level: TelemetryLevel,
    manual: bool,
    tweak: impl FnOnce(&mut OptimizationConfig),
) -> Executor<u64, ()> {
    let mut cfg = OptimizationConfig::preset(preset).unwrap();
    cfg.workers = 1;
    cfg.telemetry.level = level;
    tweak(&mut cfg);
    let builder = Executor::builder(cfg);
    let builder = if manual {
        builder.clock(flujo_core::graph::ManualClock::new(0))
    } else {
        builder
    };
    builder.build().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_run_left_to_a_dispatcher_on_the_submitters_cpu_is_waited_for_without_a_spin() {
    // The submitting thread and the pool's thread (spawned by `Executor::new` on it, so
    // pinned too) share one CPU: once a dispatcher lingers, each submission is left to it and
    // its ticket skips the spin. Every preset and telemetry level, the real clock and a
    // manual one (the hint reads no clock); on a thread of its own, so the pin ends with it.
    std::thread::spawn(|| {
        let cpu = pin_to_this_cpu();
        let g = Arc::new(
            Graph::<u64, ()>::build(|b| b.task("inc", |x: u64, _: &mut _| Ok(x + 1))).unwrap(),
        );
        for (preset, level, manual) in every_setup() {
            let ex = one_worker(preset, level, manual, |_| {});
            let mut without_spin = 0;
            for x in 0..50u64 {
                let ticket = ex.submit(&g, x, (), Priority::Normal).ok().unwrap();
                without_spin += u32::from(!ticket.spins());
                match ticket.wait().unwrap() {
                    Finished::Ran(done) => assert_eq!(done.output, Some(x + 1)),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(crate::sync::current_cpu(), cpu, "still pinned");
            assert!(
                without_spin > 0,
                "{preset}/{level:?}/manual {manual}: every ticket spun"
            );
            // Pinned with it, the pool's thread had nowhere to move to.
            assert_eq!(ex.inner.dispatchers.moves.load(Ordering::Relaxed), 0);
            assert_eq!(ex.report().runs.completed, 50);
        }
    })
    .join()
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_dispatcher_lingering_on_the_submitters_cpu_moves_off_it() {
    use crate::sync::{affinity, current_cpu};
    // The submitter is pinned to its CPU; the pool's thread may run anywhere, and is put on
    // the submitter's CPU by a pin it is let out of at once (it stays until moved). Its next
    // linger then finds the last submitter beside it and moves off. Every preset and
    // telemetry level, both clocks (the move is paced on the real clock, whatever the
    // executor's). On a thread of its own, so the pins end with it.
    std::thread::spawn(|| {
        let all = affinity::get();
        let g = Arc::new(
            Graph::<u64, ()>::build(|b| b.task("inc", |x: u64, _: &mut _| Ok(x + 1))).unwrap(),
        );
        for (preset, level, manual) in every_setup() {
            let ex = one_worker(preset, level, manual, |_| {});
            let cpu = pin_to_this_cpu();
            let moves = || ex.inner.dispatchers.moves.load(Ordering::Relaxed);
            let mut ran = 0;
            // Bounded: the kernel may move the pool's thread away by itself before its
            // linger; five tries (a few milliseconds) put it beside the submitter for one.
            for _ in 0..5 {
                ex.inner.pool.broadcast(|_| {
                    affinity::set(&affinity::only(cpu));
                    affinity::set(&all);
                });
                for x in 0..20u64 {
                    let ticket = ex.submit(&g, x, (), Priority::Normal).ok().unwrap();
                    match ticket.wait().unwrap() {
                        Finished::Ran(done) => assert_eq!(done.output, Some(x + 1)),
                        other => panic!("{other:?}"),
                    }
                    ran += 1;
                }
                if moves() > 0 {
                    break;
                }
            }
            let setup = format!("{preset}/{level:?}/manual {manual}");
            if affinity::count(&all) >= 2 {
                assert!(moves() > 0, "{setup}: the pool's thread never moved");
            } else {
                assert_eq!(moves(), 0, "{setup}: one CPU, nowhere to move to");
            }
            let kept = ex
                .inner
                .pool
                .broadcast(|_| affinity::same(&affinity::get(), &all));
            assert_eq!(
                kept,
                [true],
                "{setup}: the pool's thread has its affinity back"
            );
            assert_eq!(current_cpu(), cpu, "{setup}: the submitter stayed");
            assert_eq!(ex.report().runs.completed, ran, "{setup}");
            affinity::set(&all);
        }
    })
    .join()
    .unwrap();
}
