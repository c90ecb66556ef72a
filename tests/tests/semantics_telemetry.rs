//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! exact counters, sampled telemetry (events, latency histogram, pause), and the clock
//! reads behind latencies: a clock that measures no latency is read only where a decision
//! needs the time.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use common::semantics::{add, trips_on_one_failure, Ctx, G};
use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{CancelFlag, Clock, Graph, ManualClock, StepCx, StepError, TaskConfig};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig, Telemetry};
use flujo_core::policy::BreakerState;
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, ErrorClass, RetryPolicy};
use flujo_core::telemetry::Counter;

#[test]
fn run_counters_are_exact_and_every_step_run_has_one_outcome() {
    use flujo_core::telemetry::Counter;
    let breaker = trips_on_one_failure();
    let g = G::build(|b| {
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() < 3 {
                    Err(StepError::transient("busy"))
                } else {
                    Ok(x)
                }
            },
            TaskConfig::new().retry(RetryPolicy::new(3, Backoff::NONE).unwrap()),
        );
        let cached = b.task_with(
            "cached",
            |x, _| Ok(x + 1),
            TaskConfig::new()
                .no_context()
                .cacheable(StepFingerprint::builder("cached", 1).build()),
        );
        let fb = add(b, "fb", 100);
        let guarded = b.task_with(
            "guarded",
            |_, _| Err(StepError::permanent("down")),
            TaskConfig::new().breaker(breaker.clone()).fallback(fb),
        );
        let plain = add(b, "plain", 1);
        b.sequence("s", &[flaky, cached, guarded, plain])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let clock = ManualClock::new(0);
    for run in 0..3u64 {
        let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        assert_eq!(r.output, Some(103));
        let c = r.counters;
        let get = |counter| c.get(counter);
        assert_eq!(get(Counter::StepsRun), r.records.len() as u64);
        assert_eq!(get(Counter::StepsRun), 5, "four tasks and one fallback");
        assert_eq!(
            get(Counter::StepsSucceeded),
            5,
            "the guarded task succeeds by fallback"
        );
        assert_eq!(get(Counter::Retries), 2);
        assert_eq!(get(Counter::FallbacksUsed), 1);
        assert_eq!(
            (get(Counter::CacheHits), get(Counter::CacheMisses)),
            if run == 0 { (0, 1) } else { (1, 0) }
        );
        // The first run's failure opens the breaker; later runs are refused at once.
        assert_eq!(
            (get(Counter::BreakerTrips), get(Counter::BreakerRejections)),
            if run == 0 { (1, 0) } else { (0, 1) }
        );
    }
}

#[test]
fn telemetry_records_every_sampled_step_and_counts_every_step() {
    use flujo_core::telemetry::{Counter, EventKind, Sampler, StepOutcome as End, VecSink};
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let flaky = b.task_with(
            "flaky",
            |x, cx| {
                if cx.attempt() == 1 {
                    Err(StepError::transient("once"))
                } else {
                    Ok(x * 2)
                }
            },
            TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        );
        let c = add(b, "c", 3);
        b.sequence("s", &[a, flaky, c])
    })
    .unwrap();
    let clock = ManualClock::new(0);
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let r = runner.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(7));
    let tel = runner.telemetry().unwrap();
    let kinds: Vec<EventKind> = tel.sink().events().iter().map(|e| e.kind).collect();
    let end = EventKind::StepEnd {
        outcome: End::Succeeded,
    };
    assert_eq!(
        kinds,
        [
            EventKind::StepStart,
            end,
            EventKind::StepStart,
            EventKind::Retry { attempt: 2 },
            end,
            EventKind::StepStart,
            end
        ]
    );
    assert_eq!(tel.latency_histogram().count(), 3);
    assert_eq!(tel.counters().get(Counter::Retries), 1);

    // Sampled one in two: events and latencies thin out, counters stay exact.
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::one_in(2));
    let mut sampled = Runner::with_telemetry(RunnerConfig::default(), tel);
    let mut off = Runner::new(RunnerConfig::default());
    for _ in 0..4 {
        let a = sampled.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        let (out, recs) = (a.output, a.records.to_vec());
        let b = off.run(&g, 1, Ctx::default(), &clock, &RunOptions::default());
        assert_eq!(
            (out, &recs[..]),
            (b.output, b.records),
            "telemetry changes no result"
        );
    }
    let tel = sampled.telemetry().unwrap();
    assert_eq!(tel.counters().get(Counter::StepsRun), 12);
    assert_eq!(tel.latency_histogram().count(), 6);
    assert_eq!(tel.events_dropped(), 0);
}

#[test]
fn a_sampler_keeping_nothing_records_no_step_but_every_breaker_transition() {
    use flujo_core::telemetry::{Counter, EventKind, Sampler, VecSink};
    let breaker = trips_on_one_failure();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let fb = add(b, "fb", 100);
        let guarded = b.task_with(
            "guarded",
            |x, _| {
                if x == 2 {
                    Err(StepError::permanent("two"))
                } else {
                    Ok(x)
                }
            },
            TaskConfig::new().breaker(breaker.clone()).fallback(fb),
        );
        let c = add(b, "c", 3);
        b.sequence("s", &[a, guarded, c])
    })
    .unwrap();
    let clock = ManualClock::new(0);
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::never());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let outputs: Vec<_> = [1, 5]
        .iter()
        .map(|&x| {
            runner
                .run(&g, x, Ctx::default(), &clock, &RunOptions::default())
                .output
        })
        .collect();
    // 1 + 1 = 2 fails and falls back (102 + 3); the open breaker refuses 6, which falls back.
    assert_eq!(outputs, [Some(105), Some(109)]);
    let tel = runner.telemetry().unwrap();
    let kinds: Vec<EventKind> = tel.sink().events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.len(),
        2,
        "the opening and the refusal, nothing else: {kinds:?}"
    );
    assert!(kinds
        .iter()
        .all(|k| !matches!(k, EventKind::StepStart | EventKind::StepEnd { .. })));
    assert_eq!(tel.latency_histogram().count(), 0);
    assert_eq!(
        tel.counters().get(Counter::StepsRun),
        8,
        "counters stay exact"
    );
    assert_eq!(tel.counters().get(Counter::BreakerTrips), 1);
}

/// Equal latencies in a row go into the histogram together; the histogram still holds every
/// sampled latency once a run ends, whether latencies repeat or change.
#[test]
fn latency_histogram_is_exact_when_latencies_repeat_and_change() {
    use flujo_core::telemetry::{NullSink, Sampler};
    struct Ticks(Arc<AtomicU32>);
    impl Clock for Ticks {
        fn now(&self) -> u64 {
            u64::from(self.0.load(Ordering::Relaxed))
        }
    }
    let ticks = Arc::new(AtomicU32::new(0));
    let clock = Ticks(ticks.clone());
    let g = Graph::<u64, ()>::build(|b| {
        let steps: Vec<_> = (0..6u64)
            .map(|i| {
                let c = ticks.clone();
                b.task(&format!("s{i}"), move |x, _| {
                    c.fetch_add(i as u32 / 2, Ordering::Relaxed);
                    Ok(x + 1)
                })
            })
            .collect();
        b.sequence("s", &steps)
    })
    .unwrap();
    let tel = Telemetry::new(NullSink, Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    for run in 1..=2u64 {
        let r = runner.run(&g, 0, (), &clock, &RunOptions::default());
        assert_eq!(r.output, Some(6));
        let lat: Vec<u64> = r.records.iter().map(|rec| rec.latency_ticks).collect();
        assert_eq!(lat, [0, 0, 1, 1, 2, 2]);
        let h = runner.telemetry().unwrap().latency_histogram();
        assert_eq!(h.count(), 6 * run);
        assert_eq!(h.sum(), 6 * u128::from(run));
        assert_eq!((h.min(), h.max()), (Some(0), Some(2)));
    }
}

#[test]
fn a_paused_telemetry_records_nothing_but_still_sums_the_counters() {
    use flujo_core::telemetry::{Sampler, VecSink};
    let g = Graph::<u64, ()>::build(|b| {
        let a = b.task("a", |x, _| Ok(x + 1));
        let c = b.task("c", |x, _| Ok(x * 2));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
    let clock = ManualClock::new(0);
    runner.telemetry_mut().unwrap().set_paused(true);
    let r = runner.run(&g, 1, (), &clock, &RunOptions::default());
    assert_eq!(r.output, Some(4));
    let t = runner.telemetry().unwrap();
    assert!(t.is_paused());
    assert_eq!(
        (t.sink().events().len(), t.latency_histogram().count()),
        (0, 0)
    );
    assert_eq!(t.counters().get(Counter::StepsSucceeded), 2);
    runner.telemetry_mut().unwrap().set_paused(false);
    runner.run(&g, 1, (), &clock, &RunOptions::default());
    let t = runner.telemetry().unwrap();
    assert_eq!(
        (t.sink().events().len(), t.latency_histogram().count()),
        (4, 2)
    );
    assert_eq!(t.counters().get(Counter::StepsSucceeded), 4);
}

/// A clock that measures no latencies (`Clock::measures_latency` is false) and counts its
/// reads; steps move it.
struct Unmeasured {
    now: AtomicU64,
    reads: AtomicU64,
}

impl Unmeasured {
    fn new() -> Self {
        Self {
            now: AtomicU64::new(1_000),
            reads: AtomicU64::new(0),
        }
    }

    fn reads(&self) -> u64 {
        self.reads.swap(0, Ordering::Relaxed)
    }
}

impl Clock for Unmeasured {
    fn now(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.now.load(Ordering::Relaxed)
    }

    fn measures_latency(&self) -> bool {
        false
    }
}

/// A chain of `n` tasks that each move `clock` by 10 ticks; the task at `policed` (if any)
/// takes `cfg`.
fn ten_tick_chain(
    clock: &Arc<Unmeasured>,
    n: usize,
    policed: Option<(usize, TaskConfig<u64, ()>)>,
) -> Graph<u64, ()> {
    let mut policed = policed;
    Graph::build(|b| {
        let steps: Vec<_> = (0..n)
            .map(|i| {
                let c = Arc::clone(clock);
                let step = move |x: u64, _: &mut StepCx<'_, ()>| {
                    c.now.fetch_add(10, Ordering::Relaxed);
                    Ok(x + 1)
                };
                match policed.take_if(|(at, _)| *at == i) {
                    Some((_, cfg)) => b.task_with(&format!("s{i}"), step, cfg),
                    None => b.task(&format!("s{i}"), step),
                }
            })
            .collect();
        b.sequence("chain", &steps)
    })
    .unwrap()
}

#[test]
fn an_unmeasured_clock_is_read_only_where_a_decision_needs_the_time() {
    for fast_paths in [true, false] {
        let cfg = RunnerConfig {
            fast_paths,
            ..RunnerConfig::default()
        };
        let mut runner = Runner::new(cfg);
        let clock = Arc::new(Unmeasured::new());
        let opts = RunOptions::default();

        // Plain tasks: no read at all, and every latency is 0.
        let g = ten_tick_chain(&clock, 50, None);
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.output, Some(50));
        assert!(r.records.iter().all(|rec| rec.latency_ticks == 0));
        drop(r);
        assert_eq!(clock.reads(), 0, "fast paths {fast_paths}");

        // A cancel flag needs no time either.
        let flag = CancelFlag::new();
        let cancel = RunOptions {
            cancel: Some(&flag),
            ..RunOptions::default()
        };
        assert_eq!(runner.run(&g, 0, (), &*clock, &cancel).output, Some(50));
        assert_eq!(clock.reads(), 0, "fast paths {fast_paths}");

        // A deadline is tested before every task, and stops the run on time.
        let deadline = RunOptions {
            deadline: Some(clock.now.load(Ordering::Relaxed) + 95),
            ..RunOptions::default()
        };
        let r = runner.run(&g, 0, (), &*clock, &deadline);
        assert_eq!(r.outcome, Outcome::Aborted);
        assert_eq!(
            r.error.as_ref().unwrap().step,
            "s10",
            "ten tasks fit in 95 ticks"
        );
        drop(r);
        assert_eq!(
            clock.reads(),
            12,
            "one read per task tested, one for the stop's record"
        );

        // A breaker's task reads the clock for its permit and for the latency it learns:
        // a slow call (30 ticks against a 20-tick rule) opens it.
        let br = Arc::new(
            Breaker::new(BreakerConfig {
                consecutive_failures_to_open: 1,
                slow_call_ticks: 20,
                ..BreakerConfig::DEFAULT
            })
            .unwrap(),
        );
        let slow = Arc::clone(&clock);
        let g = Graph::build(|b| {
            let s = b.task_with(
                "slow",
                move |x: u64, _: &mut StepCx<'_, ()>| {
                    slow.now.fetch_add(30, Ordering::Relaxed);
                    Ok(x + 1)
                },
                TaskConfig::new().breaker(Arc::clone(&br)),
            );
            let t = b.task("t", |x, _| Ok(x + 1));
            b.sequence("chain", &[s, t])
        })
        .unwrap();
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.output, Some(2));
        assert_eq!(
            r.records[0].latency_ticks, 30,
            "the breaker's task is timed"
        );
        assert_eq!(r.records[1].latency_ticks, 0, "the plain one is not");
        drop(r);
        assert_eq!(clock.reads(), 2, "fast paths {fast_paths}");
        assert_eq!(br.state(), BreakerState::Open, "the slow call counted");

        // An attempt timeout reads it around the attempt, and fires.
        let g = ten_tick_chain(&clock, 3, Some((1, TaskConfig::new().timeout(5))));
        let r = runner.run(&g, 0, (), &*clock, &opts);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.records[1].error_class, Some(ErrorClass::Timeout));
    }
}
