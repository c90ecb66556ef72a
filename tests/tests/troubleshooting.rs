//! The symptoms of `docs/troubleshooting.md` that no other test reproduced, each beside its
//! fix: a deadline that does not stop a slow step (timeouts are cooperative), a breaker that
//! stays open, a cache that never hits, and a slow first run (warm-up). Time-dependent ones
//! run under every preset, telemetry level and both clocks (`common/matrix.rs`).

#[path = "common/matrix.rs"]
mod matrix;

use matrix::{each_setup, presets_at_levels, Time};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::{Breaker, BreakerConfig, BreakerState, ErrorClass};
use flujo_core::telemetry::Counter;
use flujo_runtime::clock::ticks;
use flujo_runtime::{Completed, Executor, RunSpec};

/// A step that works in 400 slices of 1 ms; with `polls`, it checks `should_stop` before
/// each slice and gives up when told. `slices` counts the slices it worked. Then `after`.
fn slow_step_graph(time: &Time, polls: bool, slices: &Arc<AtomicU32>) -> Graph<u64, ()> {
    let (time, slices) = (time.clone(), Arc::clone(slices));
    Graph::build(|b| {
        let slow = b.task("slow", move |x: u64, cx| {
            for _ in 0..400 {
                if polls && cx.should_stop() {
                    return Err(StepError::timeout("stopped at the deadline"));
                }
                time.pass(Duration::from_millis(1));
                slices.fetch_add(1, Ordering::SeqCst);
            }
            Ok(x)
        });
        let after = b.task("after", |x: u64, _| Ok(x + 1));
        b.sequence("s", &[slow, after])
    })
    .unwrap()
}

#[test]
fn a_step_that_ignores_the_deadline_runs_to_its_end_and_one_that_polls_stops_at_it() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor::<u64, ()>();
        // Long enough that a preempted thread still starts the step before it.
        let spec = RunSpec::default().deadline(Duration::from_millis(200));

        // The symptom: the step works all 400 ms, past the 200 ms deadline; the deadline is
        // seen only at the next step, which never runs.
        let slices = Arc::default();
        let g = slow_step_graph(&s.time, false, &slices);
        let done = ex
            .run_with(&g, 1, (), &spec, |r| Completed::from(r))
            .unwrap();
        assert_eq!(slices.load(Ordering::SeqCst), 400, "{name}: ran to its end");
        assert_eq!(done.outcome, Outcome::Aborted, "{name}");
        let err = done.error.expect(name);
        assert_eq!(
            (err.step.as_str(), &err.kind),
            ("after", &ErrorKind::DeadlineExceeded),
            "{name}"
        );

        // The fix: the step polls `should_stop` and stops at the deadline.
        let slices = Arc::default();
        let g = slow_step_graph(&s.time, true, &slices);
        let done = ex
            .run_with(&g, 1, (), &spec, |r| Completed::from(r))
            .unwrap();
        let worked = slices.load(Ordering::SeqCst);
        match s.time {
            // Each slice passes exactly 1 ms: the 200th reaches the deadline.
            Time::Manual(_) => assert_eq!(worked, 200, "{name}"),
            // Each slice sleeps at least 1 ms, so at most 200 fit before the deadline.
            Time::Real => assert!((1..=200).contains(&worked), "{name}: {worked} slices"),
        }
        assert_ne!(done.outcome, Outcome::Succeeded, "{name}");
        assert_eq!(
            done.error.expect(name).step,
            "slow",
            "{name}: it stopped in the step"
        );
    });
}

/// A breaker that opens on one failure and stays open `OPEN`.
fn breaker() -> Arc<Breaker> {
    let cfg = BreakerConfig {
        consecutive_failures_to_open: 1,
        window_calls: 1,
        failure_rate_percent_to_open: 0,
        window_calls_min: 1,
        slow_call_ticks: 0,
        open_ticks: ticks(OPEN),
        half_open_probes_max: 1,
        half_open_successes_to_close: 1,
    };
    Arc::new(Breaker::new(cfg).unwrap())
}

/// Long enough that quick runs right after a trip cannot outlast it on a loaded machine.
const OPEN: Duration = Duration::from_millis(1_500);

fn failure_class(done: &Completed<u64, ()>) -> Option<ErrorClass> {
    match &done.error.as_ref()?.kind {
        ErrorKind::Step(e) => Some(e.class()),
        _ => None,
    }
}

#[test]
fn a_breaker_stays_open_while_no_time_passes_or_its_probe_fails_and_closes_on_a_good_probe() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex = s.executor::<u64, ()>();
        let br = breaker();
        let (failing, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let (f, c) = (Arc::clone(&failing), Arc::clone(&calls));
        let g = Graph::build(|b| {
            b.task_with(
                "remote",
                move |x: u64, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        Err(StepError::transient("503"))
                    } else {
                        Ok(x + 1)
                    }
                },
                TaskConfig::new().breaker(Arc::clone(&br)),
            )
        })
        .unwrap();
        let circuit_open = |what: &str| {
            for _ in 0..5 {
                let done = ex.run(&g, 1, ()).unwrap();
                assert_eq!(
                    failure_class(&done),
                    Some(ErrorClass::CircuitOpen),
                    "{name}: {what}"
                );
            }
        };

        ex.run(&g, 1, ()).unwrap();
        assert_eq!(
            br.state(),
            BreakerState::Open,
            "{name}: one failure opens it"
        );
        // Symptom 1: no time passes (a manual clock nobody advances): it stays open, even
        // though the remote is back.
        failing.store(false, Ordering::SeqCst);
        circuit_open("no time passed");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{name}: fails fast, no call"
        );

        // Symptom 2: the open period passes but the probe fails: open again.
        failing.store(true, Ordering::SeqCst);
        s.time.pass(OPEN + Duration::from_millis(20));
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(
            failure_class(&done),
            Some(ErrorClass::Transient),
            "{name}: the probe ran"
        );
        assert_eq!(
            br.state(),
            BreakerState::Open,
            "{name}: a failed probe reopens it"
        );
        circuit_open("after a failed probe");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{name}");

        // The fix: the remote recovers and time passes; a good probe closes it.
        failing.store(false, Ordering::SeqCst);
        s.time.pass(OPEN + Duration::from_millis(20));
        assert_eq!(ex.run(&g, 1, ()).unwrap().output, Some(2), "{name}");
        assert_eq!(br.state(), BreakerState::Closed, "{name}");
        let t = br.transition_counts();
        assert_eq!(
            (
                t.closed_to_open,
                t.open_to_half_open,
                t.half_open_to_open,
                t.half_open_to_closed
            ),
            (1, 2, 1, 1),
            "{name}"
        );
    });
}

/// A tier lookup, cacheable on its `u64` input, after `key` (which makes that input).
fn lookup_graph(key: fn(u64) -> u64, computed: &Arc<AtomicU64>) -> Graph<u64, ()> {
    let computed = Arc::clone(computed);
    Graph::build(|b| {
        let key = b.task("key", move |x: u64, _| Ok(key(x)));
        let cfg = TaskConfig::new().cacheable(StepFingerprint::builder("tier", 1).build());
        let tier = b.task_with(
            "tier",
            move |customer: u64, _| {
                computed.fetch_add(1, Ordering::SeqCst);
                Ok(customer % 1000 % 3)
            },
            cfg,
        );
        b.sequence("s", &[key, tier])
    })
    .unwrap()
}

#[test]
fn a_cache_keyed_on_a_request_id_never_hits_and_one_keyed_on_what_repeats_does() {
    // 300 requests from 10 customers: each request's input is `request id * 1000 + customer`.
    let requests = || (0..300u64).map(|id| id * 1000 + id % 10);
    for (name, cfg) in presets_at_levels() {
        let run_all = |ex: &Executor<u64, ()>, g: &Graph<u64, ()>| {
            for x in requests() {
                let done = ex.run(g, x, ()).unwrap();
                assert_eq!(done.output, Some(x % 1000 % 3), "{name}");
            }
        };
        // The symptom: the key includes the request id, so it never repeats: 300 misses.
        let ex = Executor::<u64, ()>::new(cfg.clone()).unwrap();
        let computed = Arc::default();
        run_all(&ex, &lookup_graph(|x| x, &computed));
        assert_eq!(computed.load(Ordering::SeqCst), 300, "{name}");
        let report = ex.report();
        assert_eq!(report.counters.get(Counter::CacheHits), 0, "{name}");
        assert_eq!(report.counters.get(Counter::CacheMisses), 300, "{name}");

        // The fix: key on the customer alone: 10 misses, then 290 hits.
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        let computed = Arc::default();
        run_all(&ex, &lookup_graph(|x| x % 1000, &computed));
        assert_eq!(computed.load(Ordering::SeqCst), 10, "{name}");
        assert_eq!(ex.report().counters.get(Counter::CacheHits), 290, "{name}");
    }
}

#[test]
fn the_first_run_makes_a_pooled_runner_and_warm_runs_reuse_it() {
    let g = Graph::<u64, ()>::build(|b| b.task("inc", |x, _| Ok(x + 1))).unwrap();
    for (name, mut cfg) in presets_at_levels() {
        cfg.workers = 1;
        // The symptom's cause: the first run pays for making a pooled runner (fresh pages for
        // its arena and records); later runs borrow it back.
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        ex.run(&g, 0, ()).unwrap();
        assert_eq!(
            (ex.report().pool.pool_misses, ex.report().pool.pool_hits),
            (1, 0),
            "{name}"
        );
        for x in 0..50 {
            assert_eq!(ex.run(&g, x, ()).unwrap().output, Some(x + 1), "{name}");
        }
        let pool = ex.report().pool;
        assert_eq!(
            (pool.pool_misses, pool.pool_hits),
            (1, 50),
            "{name}: warm runs reuse it"
        );
    }
}
