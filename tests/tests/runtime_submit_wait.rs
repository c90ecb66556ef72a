//! Waiting submission (`SubmitSpec::wait`, `Executor::submit_async`): a submission that finds
//! the concurrency limit reached or its queue full waits for room instead of being refused,
//! blocking or awaited. Several submitting threads meet no refusal and every run completes
//! exactly once; a wait that runs out hands the input back with the reason that held (on the
//! real clock and on a manual one); a shutdown hands every waiting input back; thousands of
//! async submissions on a tokio runtime all get in; a dropped or abandoned async submission
//! leaks no permit and wedges nobody. Under the three presets where it matters; the report's
//! identity holds throughout.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context as TaskContext, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::{Graph, ManualClock};
use flujo_core::interp::Outcome;
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::report::Runs;
use flujo_runtime::{Drain, Executor, Finished, Priority, Refusal, SubmitSpec};

/// Generous bound for anything the tests wait on; reaching it is a failure.
const BOUND: Duration = Duration::from_secs(30);

/// Waits (bounded) until `done()` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        thread::sleep(Duration::from_micros(100));
    }
}

/// `preset` with `workers` threads, a fixed concurrency limit and queues of `queue` places.
fn config(
    preset: &OptimizationConfig,
    workers: usize,
    limit: u32,
    queue: usize,
) -> OptimizationConfig {
    let mut cfg = preset.clone();
    cfg.workers = workers;
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.min_limit = 1;
    cfg.adaptive_concurrency.initial_limit = 1;
    cfg.adaptive_concurrency.max_limit = limit;
    cfg.queues.capacity = [queue; 3];
    cfg
}

/// Checks `submitted = completed + panicked + handed_back + rejected + in_flight`.
fn assert_identity(runs: &Runs) {
    assert_eq!(
        runs.submitted,
        runs.completed + runs.panicked + runs.handed_back + runs.rejected() + runs.in_flight,
        "{runs:?}"
    );
}

/// A graph `x -> x + 1` whose step spins a little, so that runs overlap.
fn busy() -> Arc<Graph<u64, u64>> {
    Arc::new(
        Graph::build(|b| {
            b.task("busy", |x: u64, _| {
                let until = Instant::now() + Duration::from_micros(20);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                Ok(x + 1)
            })
        })
        .unwrap(),
    )
}

/// A graph whose step counts itself started, then waits for the gate to open.
fn gated(started: &Arc<AtomicUsize>, gate: &Arc<AtomicBool>) -> Arc<Graph<u64, u64>> {
    let (started, gate) = (started.clone(), gate.clone());
    Arc::new(
        Graph::build(move |b| {
            b.task("gate", move |x: u64, _| {
                started.fetch_add(1, Ordering::SeqCst);
                wait_until("the gate", || gate.load(Ordering::SeqCst));
                Ok(x + 1)
            })
        })
        .unwrap(),
    )
}

/// A waker that counts its wakes.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The run a finished ticket holds: its output.
fn ran(done: Finished<u64, u64>) -> u64 {
    match done {
        Finished::Ran(done) => {
            assert_eq!(done.outcome, Outcome::Succeeded);
            done.output.expect("a succeeded run has an output")
        }
        other => panic!("{other:?}"),
    }
}

/// 4 threads submit `per_thread` runs each on `cfg`, waiting for room when `wait`, else
/// retrying on every refusal as a host without waiting does. Every run completes exactly
/// once; returns the refusals the threads met.
fn four_submitters(cfg: OptimizationConfig, per_thread: u64, wait: bool) -> u64 {
    let ex = Arc::new(Executor::<u64, u64>::new(cfg).unwrap());
    let g = busy();
    let refusals = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (ex, g, refusals) = (ex.clone(), g.clone(), refusals.clone());
            thread::spawn(move || {
                let mut spec = SubmitSpec::default().priority(Priority::ALL[t as usize % 3]);
                if wait {
                    spec = spec.wait(BOUND);
                }
                let mut outputs = Vec::new();
                let mut tickets = Vec::new();
                for i in 0..per_thread {
                    let (mut input, mut context) = (t * 1_000_000 + i, t);
                    loop {
                        match ex.submit_with(&g, input, context, &spec) {
                            Ok(ticket) => break tickets.push(ticket),
                            Err(back) => {
                                assert_ne!(back.reason, Refusal::ShuttingDown);
                                refusals.fetch_add(1, Ordering::Relaxed);
                                (input, context) = (back.input, back.context);
                                thread::yield_now();
                            }
                        }
                    }
                    // Keep a few tickets in hand, as a host would.
                    if tickets.len() >= 8 {
                        for ticket in tickets.drain(..) {
                            outputs.push(ran(ticket.wait().unwrap()));
                        }
                    }
                }
                for ticket in tickets {
                    outputs.push(ran(ticket.wait().unwrap()));
                }
                outputs
            })
        })
        .collect();
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for t in threads {
        for out in t.join().unwrap() {
            *seen.entry(out - 1).or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, 4 * per_thread, "every input ran");
    assert!(seen.values().all(|&n| n == 1), "every input ran once");
    let runs = ex.report().runs;
    assert_identity(&runs);
    let refusals = refusals.load(Ordering::Relaxed) as u64;
    assert_eq!(runs.completed, 4 * per_thread);
    assert_eq!(runs.rejected(), refusals);
    assert_eq!(runs.in_flight, 0);
    refusals
}

#[test]
fn four_waiting_submitters_meet_no_refusal_and_every_run_completes_once() {
    let per_thread = if cfg!(debug_assertions) {
        1_500
    } else {
        12_000
    };
    for name in OptimizationConfig::PRESETS {
        let preset = OptimizationConfig::preset(name).unwrap();
        // Over the limit (2 runs at once, roomy queues), and with full queues (a limit of
        // 16 over queues of 2 places).
        for (limit, queue) in [(2, 64), (16, 2)] {
            let cfg = config(&preset, 2, limit, queue);
            let waiting = four_submitters(cfg.clone(), per_thread, true);
            assert_eq!(waiting, 0, "{name}, limit {limit}, queue {queue}");
            let retrying = four_submitters(cfg, per_thread, false);
            eprintln!(
                "{name}, limit {limit}, queue {queue}: {} runs; refusals: {waiting} waiting, \
                 {retrying} retrying without waiting",
                4 * per_thread
            );
        }
    }
}

/// The time a test runs on.
#[derive(Clone, Debug)]
enum Time {
    Real,
    Manual(ManualClock),
}

fn executor(cfg: OptimizationConfig, time: &Time) -> Arc<Executor<u64, u64>> {
    let b = Executor::builder(cfg);
    let b = match time {
        Time::Real => b,
        Time::Manual(c) => b.clock(c.clone()),
    };
    Arc::new(b.build().unwrap())
}

/// A wait for room that runs out hands the input back with the reason that held: over the
/// limit, then with the queue full; on the real clock (it waited its time) and on a manual
/// one (it waits until the clock is moved, however long that takes in real time).
#[test]
fn a_wait_that_runs_out_hands_the_input_back_with_the_reason_that_held() {
    for time in [Time::Real, Time::Manual(ManualClock::new(0))] {
        for (limit, queue, reason) in [(1, 8, Refusal::OverLimit), (8, 1, Refusal::QueueFull)] {
            let (started, gate) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicBool::new(false)),
            );
            let g = gated(&started, &gate);
            let ex = executor(
                config(&OptimizationConfig::latency(), 1, limit, queue),
                &time,
            );
            // One run holds the only worker (and, with a limit of 1, the only permit);
            // with a queue of 1, a second one fills it.
            let mut tickets = vec![ex.submit(&g, 1, 0, Priority::Normal).unwrap()];
            wait_until("the first run started", || {
                started.load(Ordering::SeqCst) == 1
            });
            if reason == Refusal::QueueFull {
                tickets.push(ex.submit(&g, 2, 0, Priority::Normal).unwrap());
            }
            let plain = ex.submit(&g, 3, 30, Priority::Normal).unwrap_err();
            assert_eq!((plain.reason, plain.input, plain.context), (reason, 3, 30));

            let wait = Duration::from_millis(30);
            let spec = SubmitSpec::default().wait(wait);
            let back = match &time {
                Time::Real => {
                    let start = Instant::now();
                    let back = ex.submit_with(&g, 4, 40, &spec).unwrap_err();
                    assert!(start.elapsed() >= wait, "it waited its time");
                    back
                }
                Time::Manual(clock) => {
                    let waiting = {
                        let (ex, g) = (ex.clone(), g.clone());
                        thread::spawn(move || ex.submit_with(&g, 4, 40, &spec))
                    };
                    // Real time passes, the executor's clock does not: it still waits.
                    thread::sleep(wait * 3);
                    assert!(!waiting.is_finished(), "it waits for the manual clock");
                    clock.advance(ticks(wait));
                    waiting.join().unwrap().unwrap_err()
                }
            };
            assert_eq!(
                (back.reason, back.input, back.context),
                (reason, 4, 40),
                "{time:?}"
            );
            gate.store(true, Ordering::SeqCst);
            let outputs: Vec<u64> = tickets
                .into_iter()
                .map(|t| ran(t.wait().unwrap()))
                .collect();
            assert_eq!(
                outputs.len(),
                if reason == Refusal::QueueFull { 2 } else { 1 }
            );
            let runs = ex.report().runs;
            assert_identity(&runs);
            assert_eq!(runs.rejected(), 2, "{runs:?}");
            let counted = match reason {
                Refusal::OverLimit => runs.rejected_over_limit,
                _ => runs.rejected_queue_full,
            };
            assert_eq!(counted, 2);
            // The room is back: a waiting submission gets in at once.
            let t = ex.submit_with(&g, 5, 0, &spec).unwrap();
            assert_eq!(ran(t.wait().unwrap()), 6);
        }
    }
}

/// A shutdown refuses every waiting submission at once with `ShuttingDown`, blocking and
/// async, and nothing is lost: inputs in = outputs out + inputs handed back.
#[test]
fn a_shutdown_hands_every_waiting_input_back() {
    let (started, gate) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let g = gated(&started, &gate);
    let ex = executor(
        config(&OptimizationConfig::throughput(), 2, 1, 8),
        &Time::Real,
    );
    let held = ex.submit(&g, 0, 0, Priority::High).unwrap();
    wait_until("the first run started", || {
        started.load(Ordering::SeqCst) == 1
    });
    let spec = SubmitSpec::default().wait(Duration::MAX);
    let blocking: Vec<_> = (1..=3u64)
        .map(|i| {
            let (ex, g) = (ex.clone(), g.clone());
            thread::spawn(move || ex.submit_with(&g, i, i * 10, &spec))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let asynchronous: Vec<_> = (4..=6u64)
        .map(|i| rt.spawn(ex.submit_async(&g, i, i * 10, &spec)))
        .collect();
    // Every submission is counted and waits.
    wait_until("all seven submitted", || ex.report().runs.submitted == 7);
    thread::sleep(Duration::from_millis(20));
    assert!(blocking.iter().all(|t| !t.is_finished()), "they wait");
    let shutdown = {
        let ex = ex.clone();
        thread::spawn(move || ex.shutdown(Drain::HandBack))
    };
    let mut back = Vec::new();
    for t in blocking {
        back.push(t.join().unwrap().expect_err("refused at the shutdown"));
    }
    for t in asynchronous {
        back.push(
            rt.block_on(t)
                .unwrap()
                .expect_err("refused at the shutdown"),
        );
    }
    assert!(!shutdown.is_finished(), "the held run is still at its gate");
    let mut handed: Vec<u64> = back
        .iter()
        .map(|b| {
            assert_eq!(b.reason, Refusal::ShuttingDown);
            assert_eq!(b.context, b.input * 10);
            b.input
        })
        .collect();
    handed.sort_unstable();
    assert_eq!(handed, [1, 2, 3, 4, 5, 6]);
    gate.store(true, Ordering::SeqCst);
    assert_eq!(ran(held.wait().unwrap()), 1);
    shutdown.join().unwrap();
    let runs = ex.report().runs;
    assert_identity(&runs);
    assert_eq!((runs.submitted, runs.completed), (7, 1));
    assert_eq!(runs.rejected_shutting_down, 6);
    assert_eq!(runs.in_flight, 0);
    // Inputs in = outputs out + handed back.
    assert_eq!(7, 1 + handed.len());
}

/// Thousands of async submissions on a small limit, spawned on a multi-thread tokio runtime:
/// each waits for room without blocking a thread, all get in, every run completes once.
#[test]
fn thousands_of_async_submissions_on_a_small_limit_all_get_in() {
    let n = if cfg!(debug_assertions) {
        2_000u64
    } else {
        10_000
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for name in OptimizationConfig::PRESETS {
        let preset = OptimizationConfig::preset(name).unwrap();
        let ex = executor(config(&preset, 2, 2, 4), &Time::Real);
        let g = busy();
        let spec = SubmitSpec::default().wait(Duration::MAX);
        let outputs = rt.block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let spec = spec.priority(Priority::ALL[i as usize % 3]);
                    tokio::spawn(ex.submit_async(&g, i, i, &spec))
                })
                .collect();
            let mut tickets = Vec::with_capacity(tasks.len());
            for t in tasks {
                tickets.push(t.await.unwrap().expect("every submission gets in"));
            }
            let mut outputs = Vec::with_capacity(tickets.len());
            for t in tickets {
                outputs.push(ran(t.await.unwrap()));
            }
            outputs
        });
        let mut inputs: Vec<u64> = outputs.iter().map(|o| o - 1).collect();
        inputs.sort_unstable();
        assert!(inputs.iter().copied().eq(0..n), "{name}: every run once");
        let runs = ex.report().runs;
        assert_identity(&runs);
        assert_eq!((runs.completed, runs.rejected(), runs.in_flight), (n, 0, 0));
    }
}

/// Dropping a waiting async submission (registered, or already woken and not yet polled)
/// frees its place and passes its wake on: later submissions get in, no permit leaks. The
/// dropped one is counted refused, with its reason. `give_up` hands the input back.
#[test]
fn dropped_or_abandoned_async_submissions_leak_nothing_and_wedge_nobody() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for name in OptimizationConfig::PRESETS {
        let preset = OptimizationConfig::preset(name).unwrap();
        let (started, gate) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let g = gated(&started, &gate);
        let ex = executor(config(&preset, 2, 1, 8), &Time::Real);
        let held = ex.submit(&g, 0, 0, Priority::Normal).unwrap();
        wait_until("the first run started", || {
            started.load(Ordering::SeqCst) == 1
        });
        let spec = SubmitSpec::default().wait(Duration::MAX);
        let short = Duration::from_millis(5);
        rt.block_on(async {
            // Registered, then dropped.
            let mut dropped = ex.submit_async(&g, 1, 0, &spec);
            assert!(tokio::time::timeout(short, &mut dropped).await.is_err());
            drop(dropped);
            // Registered, then given up: the input comes back.
            let mut abandoned = ex.submit_async(&g, 2, 20, &spec);
            assert!(tokio::time::timeout(short, &mut abandoned).await.is_err());
            assert!(abandoned.is_waiting());
            let back = abandoned.give_up().unwrap().unwrap_err();
            assert_eq!(
                (back.reason, back.input, back.context),
                (Refusal::OverLimit, 2, 20)
            );
            // Registered first (polled by hand, with a waker that counts), woken by the held
            // run's end, dropped before it is polled again: its wake goes on to `next`,
            // which is spawned and gets in.
            let mut woken = ex.submit_async(&g, 3, 0, &spec);
            let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
            let waker = Waker::from(wakes.clone());
            let polled = Pin::new(&mut woken).poll(&mut TaskContext::from_waker(&waker));
            assert!(polled.is_pending());
            let next = tokio::spawn(ex.submit_async(&g, 4, 0, &spec));
            tokio::time::sleep(short).await;
            assert!(!next.is_finished(), "the limit is taken");
            gate.store(true, Ordering::SeqCst);
            let held = held.await;
            assert_eq!(ran(held.unwrap()), 1);
            let woke = || wakes.0.load(Ordering::SeqCst) == 1;
            tokio::time::timeout(BOUND, async {
                while !woke() {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
            })
            .await
            .expect("the first waiter is woken");
            assert!(!next.is_finished(), "one end wakes one waiter");
            drop(woken);
            let ticket = tokio::time::timeout(BOUND, next)
                .await
                .expect("the wake went on")
                .unwrap()
                .unwrap();
            let done = ticket.await;
            assert_eq!(ran(done.unwrap()), 5);
        });
        // No permit leaked: a submission that does not wait gets the only one.
        let t = ex.submit(&g, 5, 0, Priority::Low).unwrap();
        assert_eq!(ran(t.wait().unwrap()), 6);
        let runs = ex.report().runs;
        assert_identity(&runs);
        assert_eq!((runs.submitted, runs.completed), (6, 3), "{name}");
        assert_eq!(runs.rejected_over_limit, 3, "dropped, given up, dropped");
        assert_eq!(runs.in_flight, 0);
    }
}

/// The async wait's bound is read on the executor's clock when the future is polled: on a
/// manual clock, a poll after the clock passed it resolves to the refusal, input back.
#[test]
fn an_async_wait_runs_out_when_polled_after_the_clock_passed_its_bound() {
    let clock = ManualClock::new(0);
    let (started, gate) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let g = gated(&started, &gate);
    let ex = executor(
        config(&OptimizationConfig::low_memory(), 1, 1, 8),
        &Time::Manual(clock.clone()),
    );
    let held = ex.submit(&g, 0, 0, Priority::Normal).unwrap();
    wait_until("the first run started", || {
        started.load(Ordering::SeqCst) == 1
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let spec = SubmitSpec::default().wait(Duration::from_secs(1));
    let mut waiting = ex.submit_async(&g, 7, 70, &spec);
    let short = Duration::from_millis(5);
    rt.block_on(async {
        assert!(tokio::time::timeout(short, &mut waiting).await.is_err());
        clock.advance(ticks(Duration::from_millis(999)));
        assert!(tokio::time::timeout(short, &mut waiting).await.is_err());
        clock.advance(ticks(Duration::from_millis(1)));
        let back = tokio::time::timeout(short, &mut waiting)
            .await
            .expect("resolved when polled")
            .unwrap_err();
        assert_eq!(
            (back.reason, back.input, back.context),
            (Refusal::OverLimit, 7, 70)
        );
    });
    assert!(waiting.give_up().is_none(), "the result was taken");
    gate.store(true, Ordering::SeqCst);
    assert_eq!(ran(held.wait().unwrap()), 1);
    let runs = ex.report().runs;
    assert_identity(&runs);
    assert_eq!((runs.completed, runs.rejected_over_limit), (1, 1));
}

/// A submission made from inside a run on the executor's own pool does not wait (it would
/// hold a thread the runs it waits for may need; here, the only permit is its own run's):
/// it is refused at once.
#[test]
fn a_submission_from_the_executors_own_pool_does_not_wait() {
    type Ex = Executor<u64, u64>;
    let slot: Arc<OnceLock<Weak<Ex>>> = Arc::new(OnceLock::new());
    let plain = Arc::new(Graph::build(|b| b.task("inc", |x: u64, _| Ok(x + 1))).unwrap());
    let g = {
        let slot = slot.clone();
        Arc::new(
            Graph::build(move |b| {
                let (slot, plain) = (slot.clone(), plain.clone());
                b.task("submit", move |x: u64, _| {
                    let ex = slot.get().and_then(Weak::upgrade).expect("the executor");
                    let spec = SubmitSpec::default().wait(BOUND);
                    let start = Instant::now();
                    let back = ex.submit_with(&plain, x, 0, &spec).expect_err("refused");
                    assert_eq!(back.reason, Refusal::OverLimit);
                    assert!(start.elapsed() < BOUND / 2, "refused at once");
                    Ok(back.input + 100)
                })
            })
            .unwrap(),
        )
    };
    let ex = executor(config(&OptimizationConfig::latency(), 2, 1, 8), &Time::Real);
    slot.set(Arc::downgrade(&ex)).unwrap();
    let t = ex.submit(&g, 9, 0, Priority::Normal).unwrap();
    assert_eq!(ran(t.wait().unwrap()), 109);
    let runs = ex.report().runs;
    assert_identity(&runs);
    assert_eq!((runs.completed, runs.rejected_over_limit), (1, 1));
}
