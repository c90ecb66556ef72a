//! The runtime's time model, under every preset, every telemetry level and both clocks (the
//! real one, where steps sleep, and a `ManualClock` that steps advance): a breaker opens,
//! waits out its open period and a probe closes it; an attempt timeout fires; the slow-call
//! rule trips; a deadline stops a run; a breaker shared by two executors made a second apart
//! keeps its open period; a result cache entry expires when its TTL has passed; a usage overrun
//! aborts every run. Telemetry samples one run in many at most, so most of these runs
//! are unsampled: sampling must never change a decision.
//!
//! Each setup runs on a thread of its own, so the real clock's waits overlap.

#[path = "common/matrix.rs"]
mod matrix;

use matrix::{each_setup, setups, Setup, Time};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::{Backoff, BreakerState, RetryPolicy, Usage};
use flujo_core::policy::{Breaker, BreakerConfig, ErrorClass};
use flujo_core::telemetry::Counter;
use flujo_runtime::clock::ticks;
use flujo_runtime::{Completed, Executor, Finished, Priority, RunSpec, SubmitSpec};

/// A remote call: fails while `failing`, takes `spend` (ns) of the setup's time, counts its
/// calls.
#[derive(Clone, Default)]
struct Remote {
    failing: Arc<AtomicBool>,
    spend_ns: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

impl Remote {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn set_spend(&self, d: Duration) {
        self.spend_ns.store(ticks(d), Ordering::SeqCst);
    }

    /// A one-task graph calling the remote with `cfg`.
    fn graph(&self, time: &Time, cfg: TaskConfig<u64, ()>) -> Graph<u64, ()> {
        let (remote, time) = (self.clone(), time.clone());
        Graph::build(|b| {
            b.task_with(
                "remote",
                move |x: u64, _| {
                    remote.calls.fetch_add(1, Ordering::SeqCst);
                    time.pass(Duration::from_nanos(remote.spend_ns.load(Ordering::SeqCst)));
                    if remote.failing.load(Ordering::SeqCst) {
                        Err(StepError::transient("remote down"))
                    } else {
                        Ok(x + 1)
                    }
                },
                cfg,
            )
        })
        .expect("a valid graph")
    }
}

/// A breaker that opens after one failure (or one call at least `slow` long) for `open`, and
/// closes after one successful probe.
fn breaker(open: Duration, slow: Option<Duration>) -> Arc<Breaker> {
    let cfg = BreakerConfig {
        consecutive_failures_to_open: 1,
        window_calls: 1,
        failure_rate_percent_to_open: 0,
        window_calls_min: 1,
        slow_call_ticks: slow.map_or(0, ticks),
        open_ticks: ticks(open),
        half_open_probes_max: 1,
        half_open_successes_to_close: 1,
    };
    Arc::new(Breaker::new(cfg).expect("a valid breaker"))
}

/// The class of the step error a run failed with.
fn failure_class(name: &str, done: &Completed<u64, ()>) -> ErrorClass {
    match &done.error {
        Some(f) => match &f.kind {
            ErrorKind::Step(e) => e.class(),
            other => panic!("{name}: not a step error: {other:?}"),
        },
        None => panic!("{name}: the run did not fail: {done:?}"),
    }
}

/// The open period: long enough that a run right after a trip cannot outlast it on a
/// loaded machine (real clock).
const OPEN: Duration = Duration::from_secs(2);

/// The slow-call threshold: well above what a call that does nothing takes even when its
/// thread is preempted.
const SLOW_CALL: Duration = Duration::from_millis(100);

#[test]
fn a_breaker_opens_waits_out_its_open_period_and_a_probe_closes_it() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor();
        let remote = Remote::default();
        let br = breaker(OPEN, None);
        let g = remote.graph(&s.time, TaskConfig::new().breaker(Arc::clone(&br)));

        remote.set_failing(true);
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Failed, "{name}");
        assert_eq!(
            br.state(),
            BreakerState::Open,
            "{name}: one failure opens it"
        );
        for _ in 0..5 {
            let done = ex.run(&g, 1, ()).unwrap();
            assert_eq!(
                failure_class(name, &done),
                ErrorClass::CircuitOpen,
                "{name}"
            );
        }
        assert_eq!(remote.calls(), 1, "{name}: an open breaker fails fast");

        remote.set_failing(false);
        s.time.pass(OPEN + Duration::from_millis(20));
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.output, Some(2), "{name}: the probe ran and succeeded");
        assert_eq!(remote.calls(), 2, "{name}");
        assert_eq!(
            br.state(),
            BreakerState::Closed,
            "{name}: one good probe closes it"
        );
        let counts = br.transition_counts();
        assert_eq!(
            (
                counts.closed_to_open,
                counts.open_to_half_open,
                counts.half_open_to_closed
            ),
            (1, 1, 1),
            "{name}"
        );
    });
}

#[test]
fn an_attempt_timeout_fires_in_every_run() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor();
        let remote = Remote::default();
        remote.set_spend(Duration::from_millis(5));
        let cfg = TaskConfig::new().timeout(ticks(Duration::from_millis(1)));
        let g = remote.graph(&s.time, cfg);
        for run in 0..5 {
            let done = ex.run(&g, 1, ()).unwrap();
            assert_eq!(done.outcome, Outcome::Failed, "{name}: run {run}");
            assert_eq!(failure_class(name, &done), ErrorClass::Timeout, "{name}");
        }
        // A generous timeout lets the same step through.
        let cfg = TaskConfig::new().timeout(ticks(Duration::from_secs(60)));
        let g = remote.graph(&s.time, cfg);
        assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2), "{name}");
    });
}

#[test]
fn the_slow_call_rule_trips_the_breaker() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor();
        let remote = Remote::default();
        // Thresholds far apart, so that a fast call preempted on a loaded machine (the real
        // clock) still reads as fast.
        let br = breaker(OPEN, Some(SLOW_CALL));
        let g = remote.graph(&s.time, TaskConfig::new().breaker(Arc::clone(&br)));
        for _ in 0..3 {
            assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2), "{name}");
        }
        assert_eq!(
            br.state(),
            BreakerState::Closed,
            "{name}: fast calls keep it closed"
        );

        remote.set_spend(2 * SLOW_CALL);
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.output, Some(2), "{name}: a slow call still succeeds");
        assert_eq!(
            br.state(),
            BreakerState::Open,
            "{name}: but counts as a failure"
        );
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(
            failure_class(name, &done),
            ErrorClass::CircuitOpen,
            "{name}"
        );
        assert_eq!(remote.calls(), 4, "{name}");
    });
}

/// A two-task chain whose first task takes 5 ms; `next` counts its calls.
fn slow_then_next(time: &Time, next_calls: &Arc<AtomicU64>) -> Arc<Graph<u64, ()>> {
    let (time, next_calls) = (time.clone(), Arc::clone(next_calls));
    let g = Graph::build(|b| {
        let slow = b.task("slow", move |x: u64, _| {
            time.pass(Duration::from_millis(5));
            Ok(x + 1)
        });
        let next = b.task("next", move |x: u64, _| {
            next_calls.fetch_add(1, Ordering::SeqCst);
            Ok(x * 2)
        });
        b.sequence("chain", &[slow, next])
    })
    .expect("a valid graph");
    Arc::new(g)
}

#[test]
fn a_deadline_stops_a_run_inline_and_submitted() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor();
        let next_calls = Arc::new(AtomicU64::new(0));
        let g = slow_then_next(&s.time, &next_calls);
        let expect_stopped = |done: &Completed<u64, ()>| {
            assert_eq!(done.outcome, Outcome::Aborted, "{name}");
            let failure = done.error.as_ref().expect("a failure");
            assert_eq!(failure.kind, ErrorKind::DeadlineExceeded, "{name}");
            // On the real clock a loaded machine may pass the deadline even before `slow`.
            if matches!(s.time, Time::Manual(_)) {
                assert_eq!(failure.step, "next", "{name}: stopped before `next`");
            }
        };
        let spec = RunSpec::default().deadline(Duration::from_millis(1));
        for _ in 0..3 {
            expect_stopped(
                &ex.run_with(&g, 1, (), &spec, |r| Completed::from(r))
                    .unwrap(),
            );
        }
        let ticket = ex
            .submit_with(
                &g,
                1,
                (),
                &SubmitSpec::default().deadline(Duration::from_millis(1)),
            )
            .unwrap_or_else(|r| panic!("{name}: refused: {}", r.reason));
        match ticket.wait().unwrap() {
            Finished::Ran(done) => expect_stopped(&done),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(next_calls.load(Ordering::SeqCst), 0, "{name}");

        // Any duration is accepted: one too far to represent is no deadline.
        let spec = RunSpec::default().deadline(Duration::MAX);
        let done = ex
            .run_with(&g, 1, (), &spec, |r| Completed::from(r))
            .unwrap();
        assert_eq!(done.output, Some(4), "{name}");
        let ticket = ex
            .submit_with(
                &g,
                1,
                (),
                &SubmitSpec::default()
                    .priority(Priority::High)
                    .deadline(Duration::MAX),
            )
            .unwrap_or_else(|r| panic!("{name}: refused: {}", r.reason));
        match ticket.wait().unwrap() {
            Finished::Ran(done) => assert_eq!(done.output, Some(4), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    });
}

#[test]
fn a_breaker_shared_by_two_executors_made_a_second_apart_keeps_its_open_period() {
    let all = setups(1);
    let first: Vec<Executor<u64, ()>> = all.iter().map(Setup::executor).collect();
    // One real second for every setup at once; each manual clock moves a second too.
    thread::sleep(Duration::from_secs(1));
    for s in &all {
        if let Time::Manual(c) = &s.time {
            c.advance(ticks(Duration::from_secs(1)));
        }
    }
    let second: Vec<Executor<u64, ()>> = all.iter().map(Setup::executor).collect();
    thread::scope(|scope| {
        for ((s, a), b) in all.iter().zip(&first).zip(&second) {
            scope.spawn(move || {
                let name = &s.name;
                let remote = Remote::default();
                let br = breaker(OPEN, None);
                let g = remote.graph(&s.time, TaskConfig::new().breaker(Arc::clone(&br)));
                remote.set_failing(true);
                assert_eq!(a.run(&g, 1, ()).unwrap().outcome, Outcome::Failed, "{name}");
                assert_eq!(br.state(), BreakerState::Open, "{name}");
                // The second executor sees it open too: the same time scale.
                let done = b.run(&g, 1, ()).unwrap();
                assert_eq!(
                    failure_class(name, &done),
                    ErrorClass::CircuitOpen,
                    "{name}"
                );

                remote.set_failing(false);
                s.time.pass(OPEN + Duration::from_millis(20));
                // Had the second executor its own origin (a second later), the breaker
                // would look open to it for another second.
                let done = b.run(&g, 1, ()).unwrap();
                assert_eq!(done.output, Some(2), "{name}: the probe closes it");
                assert_eq!(br.state(), BreakerState::Closed, "{name}");
                assert_eq!(remote.calls(), 2, "{name}");
            });
        }
    });
}

#[test]
fn a_cached_output_expires_when_its_ttl_has_passed() {
    // Long enough that a hit right after the computation cannot outlast it (real clock).
    const TTL: Duration = Duration::from_secs(2);
    each_setup(1, |s| {
        let name = &s.name;
        let mut cfg = s.cfg.clone();
        cfg.result_cache.ttl = Some(TTL);
        let setup = Setup { cfg, ..s.clone() };
        let ex = setup.executor();
        let remote = Remote::default();
        let fp = StepFingerprint::builder("remote", 1).build();
        let g = remote.graph(&s.time, TaskConfig::new().cacheable(fp));
        for _ in 0..3 {
            assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2), "{name}");
        }
        assert_eq!(remote.calls(), 1, "{name}: computed once, then hits");
        s.time.pass(TTL + Duration::from_millis(20));
        assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2), "{name}");
        assert_eq!(remote.calls(), 2, "{name}: expired, computed again");
    });
}

#[test]
fn a_usage_overrun_aborts_every_run_inline_and_submitted() {
    // Reported usage past the budget aborts the run right after the step, sampled or not: 70
    // runs cover the latency preset's one-in-64 sampling. `spend` runs plain (the stretch
    // loop) and with a retry policy (the policy pipeline).
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor();
        let next_calls = Arc::new(AtomicU64::new(0));
        for cfg in [
            TaskConfig::new(),
            TaskConfig::new().retry(RetryPolicy::new(2, Backoff::NONE).unwrap()),
        ] {
            let (time, calls) = (s.time.clone(), Arc::clone(&next_calls));
            let g = Arc::new(
                Graph::<u64, ()>::build(move |b| {
                    let spend = b.task_with(
                        "spend",
                        move |x, cx| {
                            time.pass(Duration::from_micros(100));
                            cx.report_usage(Usage {
                                cost: 50,
                                tokens: 0,
                            });
                            Ok(x + 1)
                        },
                        cfg,
                    );
                    let next = b.task("next", move |x, _| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok(x + 1)
                    });
                    b.sequence("s", &[spend, next])
                })
                .unwrap(),
            );
            let budget = Usage {
                cost: 10,
                tokens: 1000,
            };
            let expect = |done: &Completed<u64, ()>| {
                assert_eq!(
                    (done.outcome, done.output),
                    (Outcome::Aborted, None),
                    "{name}"
                );
                let e = done.error.as_ref().expect("an overrun names its step");
                assert_eq!(e.step, "spend", "{name}");
                assert!(
                    matches!(e.kind, ErrorKind::UsageOverrun { .. }),
                    "{name}: {e}"
                );
            };
            for _ in 0..35 {
                let spec = RunSpec::default().budget(budget);
                expect(
                    &ex.run_with(&g, 1, (), &spec, |r| Completed::from(r))
                        .unwrap(),
                );
                let spec = SubmitSpec::default().budget(budget);
                let ticket = ex
                    .submit_with(&g, 1, (), &spec)
                    .unwrap_or_else(|r| panic!("{name}: refused: {}", r.reason));
                match ticket.wait().unwrap() {
                    Finished::Ran(done) => expect(&done),
                    other => panic!("{name}: {other:?}"),
                }
            }
            // Without a budget the same graph runs through.
            assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(3), "{name}");
        }
        assert_eq!(
            next_calls.load(Ordering::SeqCst),
            2,
            "{name}: only the unbudgeted runs"
        );
        let overruns = ex.report().counters.get(Counter::UsageOverruns);
        assert_eq!(overruns, 2 * 70, "{name}: every overrun counted");
    });
}
