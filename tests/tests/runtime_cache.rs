//! The executor's result cache, through the public API: it reads the executor's clock (TTL
//! under an injected `ManualClock`), its waits for another run's computation end at the
//! flight timeout from the configuration or at the waiting run's deadline, and it weighs
//! outputs with the host's weigher.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::ManualClock;
use flujo_core::graph::{Graph, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::telemetry::Counter;
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Executor, RunSpec};

/// How long the first computation of the slow step takes.
const SLOW: Duration = Duration::from_secs(1);

/// A graph of one cacheable step `x -> x + 1` that counts its calls in `calls`.
fn counting_graph(calls: &Arc<AtomicU32>) -> Graph<u64, ()> {
    let calls = Arc::clone(calls);
    Graph::build(move |b| {
        let fp = StepFingerprint::builder("inc", 1).build();
        b.task_with(
            "inc",
            move |x: u64, _: &mut _| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(x + 1)
            },
            TaskConfig::new().cacheable(fp),
        )
    })
    .unwrap()
}

/// A graph of one cacheable step `x -> x + 1` whose first call raises `started` and takes
/// [`SLOW`]; later calls are instant (the output is the same either way).
fn slow_first_graph(started: &Arc<AtomicBool>) -> Graph<u64, ()> {
    let started = Arc::clone(started);
    Graph::build(move |b| {
        let fp = StepFingerprint::builder("slow_inc", 1).build();
        b.task_with(
            "slow_inc",
            move |x: u64, _: &mut _| {
                if !started.swap(true, Ordering::SeqCst) {
                    thread::sleep(SLOW);
                }
                Ok(x + 1)
            },
            TaskConfig::new().cacheable(fp),
        )
    })
    .unwrap()
}

/// A small configuration with the cache on, `flight_timeout` as given.
fn config(flight_timeout: Option<Duration>) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::low_memory();
    cfg.workers = 2;
    cfg.result_cache.ttl = None;
    cfg.result_cache.flight_timeout = flight_timeout;
    cfg
}

/// Runs `graph` on 1 in a second thread, waits until its step is computing, then runs it on
/// 1 here with `spec`; returns how long the second run took, its output and outcome.
fn second_run_while_first_computes(
    ex: &Executor<u64, ()>,
    graph: &Graph<u64, ()>,
    started: &AtomicBool,
    spec: &RunSpec<'_>,
) -> (Duration, Option<u64>, Outcome) {
    thread::scope(|s| {
        let first = s.spawn(|| ex.run(graph, 1, ()).unwrap().output);
        while !started.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        let t0 = Instant::now();
        let (output, outcome) = ex
            .run_with(graph, 1, (), spec, |r| (r.output, r.outcome))
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(first.join().unwrap(), Some(2));
        (took, output, outcome)
    })
}

#[test]
fn cache_ttl_follows_the_executors_manual_clock() {
    let clock = ManualClock::new(0);
    let mut cfg = config(None);
    cfg.result_cache.ttl = Some(Duration::from_secs(1));
    let ex = Executor::builder(cfg).clock(clock.clone()).build().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let g = counting_graph(&calls);
    assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2));
    clock.advance(ticks(Duration::from_millis(999)));
    let hit = ex.run(&g, 1, ()).unwrap();
    assert_eq!(hit.output, Some(2));
    assert_eq!(
        hit.counters.get(Counter::CacheHits),
        1,
        "still live at 999 ms"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(ticks(Duration::from_millis(1)));
    let miss = ex.run(&g, 1, ()).unwrap();
    assert_eq!(miss.output, Some(2));
    assert_eq!(miss.counters.get(Counter::CacheHits), 0, "expired at 1 s");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_waiting_run_stops_waiting_at_its_deadline() {
    let ex = Executor::<u64, ()>::new(config(None)).unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let g = slow_first_graph(&started);
    let spec = RunSpec::default().deadline(Duration::from_millis(5));
    let (took, output, outcome) = second_run_while_first_computes(&ex, &g, &started, &spec);
    // Far below `SLOW`, so that a preempted thread on a loaded machine still passes.
    assert!(took < SLOW / 2, "waited {took:?}");
    // Past its deadline the run either computed the value itself or stopped before the step.
    match outcome {
        Outcome::Succeeded => assert_eq!(output, Some(2)),
        other => assert_eq!((other, output), (Outcome::Aborted, None)),
    }
}

#[test]
fn a_waiting_run_stops_waiting_at_the_configured_flight_timeout() {
    let ex = Executor::<u64, ()>::new(config(Some(Duration::from_millis(5)))).unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let g = slow_first_graph(&started);
    let (took, output, outcome) =
        second_run_while_first_computes(&ex, &g, &started, &RunSpec::default());
    // Far below `SLOW`, so that a preempted thread on a loaded machine still passes.
    assert!(took < SLOW / 2, "waited {took:?}");
    assert_eq!((outcome, output), (Outcome::Succeeded, Some(2)));
}

#[test]
fn without_a_timeout_or_deadline_a_run_waits_for_the_other_runs_value() {
    let ex = Executor::<u64, ()>::new(config(None)).unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let g = slow_first_graph(&started);
    let (took, output, outcome) =
        second_run_while_first_computes(&ex, &g, &started, &RunSpec::default());
    assert_eq!((outcome, output), (Outcome::Succeeded, Some(2)));
    // It waited for the first computation (most of SLOW, minus the time to get here).
    assert!(took >= SLOW / 2, "did not wait: {took:?}");
    assert_eq!(
        ex.report().counter(Counter::CacheHits),
        1,
        "the waiter's hit"
    );
}

#[test]
fn the_hosts_weigher_decides_what_fits() {
    let mut cfg = config(None);
    cfg.result_cache.shards = 1;
    cfg.result_cache.max_bytes = 1_000;
    let ex = Executor::builder(cfg)
        .cache_weigher(|out: &u64| *out as usize) // an output weighs its value in bytes
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let g = counting_graph(&calls);
    // Light: 10 bytes, stored; the second run is a hit.
    for (run, hits) in [(1, 0), (2, 1)] {
        let done = ex.run(&g, 9, ()).unwrap();
        assert_eq!(done.output, Some(10));
        assert_eq!(
            done.counters.get(Counter::CacheHits),
            hits,
            "light run {run}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Heavy: 5000 bytes, over the shard's 1000: never stored, every run computes.
    for run in 1..=2 {
        let done = ex.run(&g, 4_999, ()).unwrap();
        assert_eq!(done.output, Some(5_000));
        assert_eq!(done.counters.get(Counter::CacheHits), 0, "heavy run {run}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn by_default_an_output_weighs_its_size() {
    let mut cfg = config(None);
    cfg.result_cache.shards = 1;
    cfg.result_cache.max_bytes = size_of::<u64>();
    let ex = Executor::<u64, ()>::new(cfg).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let g = counting_graph(&calls);
    for _ in 0..2 {
        assert_eq!(ex.run(&g, 4_999, ()).unwrap().output, Some(5_000));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "8 bytes fit 8: stored");
}
