//! Blocking steps (`flujo_runtime::blocking`) run by an `Executor`, through the public API:
//! a call's output reaches its run's output; an attempt's timeout, a run's deadline and a
//! run's cancel reach the call (its `should_stop` turns true, the run ends with the timeout
//! or the cancel, the call is counted abandoned); a retry policy retries a refused call; and
//! while blocking calls hold an executor's workers, other runs still complete.
//!
//! Time-dependent behaviour is checked under every preset, every telemetry level and both
//! clocks (`common/matrix.rs`): a call that "takes" time lets the setup's time pass.

#[path = "common/matrix.rs"]
mod matrix;

use matrix::{each_setup, Time};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::{CancelFlag, Graph, Step, StepError, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_core::policy::{Backoff, ErrorClass, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::blocking::{BlockingConfig, BlockingPool, CallCx};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Completed, Executor, Finished, Priority, RunSpec, SubmitSpec};

fn pool(threads: usize, queue: usize) -> BlockingPool {
    BlockingPool::new(BlockingConfig { threads, queue }).expect("a valid pool")
}

/// A pool of one thread, started (by a first call) and idle: a call made on it starts at
/// once, without waiting for a thread to be created.
fn warm_pool(queue: usize) -> BlockingPool {
    let p = pool(1, queue);
    p.call((), |(), _| ()).unwrap().wait().unwrap();
    assert_eq!(p.stats().threads, 1);
    p
}

/// How long a call may take before it is given up: long enough that the call has started by
/// then even on a loaded machine (a call given up before it starts never runs, so could not
/// see its flag).
const LIMIT: Duration = Duration::from_millis(200);

/// Waits until `cond` holds; fails the test (instead of hanging) after a minute.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "never happened: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The output of a submitted run.
fn ran(name: &str, finished: Finished<u64, ()>) -> Completed<u64, ()> {
    match finished {
        Finished::Ran(done) => done,
        other => panic!("{name}: {other:?}"),
    }
}

/// A call that lets 1 ms of the setup's time pass until it is told to stop, then notes it.
/// `started` is raised when it runs.
fn stubborn_until_told(
    time: &Time,
    started: &Arc<AtomicBool>,
    saw_stop: &Arc<AtomicBool>,
) -> impl Fn(u64, &CallCx<'_>) -> Result<u64, StepError> + Send + Sync + 'static {
    let (time, started, saw_stop) = (time.clone(), Arc::clone(started), Arc::clone(saw_stop));
    move |x, cx| {
        started.store(true, Ordering::SeqCst);
        while !cx.should_stop() {
            time.pass(Duration::from_millis(1));
        }
        saw_stop.store(true, Ordering::SeqCst);
        Ok(x)
    }
}

#[test]
fn a_blocking_steps_output_reaches_the_runs_output() {
    each_setup(2, |s| {
        let name = &s.name;
        let ex: Executor<u64, ()> = s.executor();
        let pool = pool(2, 16);
        let time = s.time.clone();
        let g = Arc::new(
            Graph::build(|b| {
                let remote = pool.step(move |x: u64, _: &CallCx<'_>| {
                    time.pass(Duration::from_millis(1));
                    Ok(x * 2)
                });
                let call = b.step("remote", remote, TaskConfig::new());
                let add = b.task("add", |x, _| Ok(x + 1));
                b.sequence("main", &[call, add])
            })
            .unwrap(),
        );
        let done = ex.run(&g, 20, ()).unwrap();
        assert_eq!(
            (done.outcome, done.output),
            (Outcome::Succeeded, Some(41)),
            "{name}"
        );
        let wait = SubmitSpec::default().wait(Duration::MAX);
        let tickets: Vec<_> = (0..8_u64)
            .map(|i| ex.submit_with(&g, i, (), &wait).expect(name))
            .collect();
        for (i, t) in (0..).zip(tickets) {
            assert_eq!(
                ran(name, t.wait().unwrap()).output,
                Some(i * 2 + 1),
                "{name}"
            );
        }
        let st = pool.stats();
        assert_eq!(
            (st.accepted, st.completed, st.abandoned),
            (9, 9, 0),
            "{name}: {st:?}"
        );
        assert!(st.threads <= 2, "{name}: {st:?}");
    });
}

#[test]
fn an_attempt_timeout_reaches_the_call() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex: Executor<u64, ()> = s.executor();
        let pool = warm_pool(4);
        let (started, saw_stop) = (Arc::default(), Arc::default());
        let call = stubborn_until_told(&s.time, &started, &saw_stop);
        let g = Graph::build(|b| {
            let timeout = TaskConfig::new().timeout(ticks(LIMIT));
            b.step("remote", pool.step(call), timeout)
        })
        .unwrap();
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Failed, "{name}");
        let err = done.error.expect(name);
        assert_eq!(err.kind.class(), ErrorClass::Timeout, "{name}: {err}");
        // The run went on at its timeout; the call then saw its flag and returned.
        wait_for(name, || pool.stats().abandoned == 1);
        assert!(
            started.load(Ordering::SeqCst) && saw_stop.load(Ordering::SeqCst),
            "{name}"
        );
        let st = pool.stats();
        assert_eq!(
            (st.completed, st.abandoned, st.running),
            (1, 1, 0),
            "{name}: {st:?}"
        );
    });
}

#[test]
fn a_run_deadline_reaches_the_call() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex: Executor<u64, ()> = s.executor();
        let pool = warm_pool(4);
        let (started, saw_stop) = (Arc::default(), Arc::default());
        let call = stubborn_until_told(&s.time, &started, &saw_stop);
        let g = Graph::build(|b| b.step("remote", pool.step(call), TaskConfig::new())).unwrap();
        let spec = RunSpec::default().deadline(LIMIT);
        let done = ex
            .run_with(&g, 1, (), &spec, |r| Completed::from(r))
            .unwrap();
        assert_ne!(done.outcome, Outcome::Succeeded, "{name}");
        let err = done.error.expect(name);
        assert_eq!(err.kind.class(), ErrorClass::Timeout, "{name}: {err}");
        wait_for(name, || pool.stats().abandoned == 1);
        assert!(
            started.load(Ordering::SeqCst) && saw_stop.load(Ordering::SeqCst),
            "{name}"
        );
    });
}

#[test]
fn a_cancel_reaches_the_call() {
    each_setup(1, |s| {
        let name = &s.name;
        let ex: Executor<u64, ()> = s.executor();
        let pool = pool(1, 4);
        let (started, saw_stop) = (Arc::default(), Arc::default());
        // No time passes on its own here: the call waits for its flag only.
        let call = stubborn_until_told(&Time::Real, &started, &saw_stop);
        let g = Graph::build(|b| b.step("remote", pool.step(call), TaskConfig::new())).unwrap();
        let cancel = CancelFlag::new();
        let done = thread::scope(|sc| {
            let run = sc.spawn(|| {
                let spec = RunSpec::default().cancel(&cancel);
                ex.run_with(&g, 1, (), &spec, |r| Completed::from(r))
                    .unwrap()
            });
            wait_for(name, || started.load(Ordering::SeqCst));
            cancel.cancel();
            run.join().unwrap()
        });
        assert_eq!(done.outcome, Outcome::Aborted, "{name}");
        let err = done.error.expect(name);
        assert_eq!(err.kind.class(), ErrorClass::Cancelled, "{name}: {err}");
        wait_for(name, || pool.stats().abandoned == 1);
        assert!(saw_stop.load(Ordering::SeqCst), "{name}");

        // A submitted run's ticket cancels it the same way.
        let g = Arc::new(g);
        started.store(false, Ordering::SeqCst);
        let ticket = ex.submit(&g, 2, (), Priority::Normal).expect(name);
        wait_for(name, || started.load(Ordering::SeqCst));
        ticket.cancel();
        let done = ran(name, ticket.wait().unwrap());
        assert_eq!(
            done.error.expect(name).kind.class(),
            ErrorClass::Cancelled,
            "{name}"
        );
        wait_for(name, || pool.stats().abandoned == 2);
    });
}

#[test]
fn a_retry_policy_retries_a_refused_call() {
    for preset in OptimizationConfig::PRESETS {
        let cfg = OptimizationConfig::preset(preset).unwrap();
        let ex: Executor<u64, ()> = Executor::new(cfg).unwrap();
        // One thread, no queue: while `held` runs, every call is refused.
        let pool = pool(1, 0);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g2 = Arc::clone(&gate);
        let held = pool
            .call((), move |(), _| {
                let mut open = g2.0.lock().unwrap();
                while !*open {
                    open = g2.1.wait(open).unwrap();
                }
            })
            .unwrap();
        let step = pool.step(|x: u64, _: &CallCx<'_>| Ok(x + 100));
        let (p2, attempts) = (pool.clone(), Arc::new(AtomicU64::new(0)));
        let a2 = Arc::clone(&attempts);
        let g = Graph::build(|b| {
            // The blocking step, run through `Step::run`; after the first attempt's refusal,
            // the pool is freed, so the retry finds room.
            let task = move |x: u64, cx: &mut flujo_core::graph::StepCx<'_, ()>| {
                a2.fetch_add(1, Ordering::SeqCst);
                let out = step.run(x, cx);
                if cx.attempt() == 1 {
                    let e = out.as_ref().expect_err("refused: the pool is full");
                    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
                    *gate.0.lock().unwrap() = true;
                    gate.1.notify_all();
                    wait_for("the pool's thread free", || p2.stats().running == 0);
                }
                out
            };
            let retry = RetryPolicy::new(3, Backoff::NONE).unwrap();
            b.task_with("remote", task, TaskConfig::new().retry(retry))
        })
        .unwrap();
        let done = ex.run(&g, 1, ()).unwrap();
        assert_eq!(done.output, Some(101), "{preset}: {:?}", done.error);
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "{preset}");
        assert_eq!(done.counters.get(Counter::Retries), 1, "{preset}");
        held.wait().unwrap();
        let st = pool.stats();
        assert_eq!((st.refused_full, st.completed), (1, 2), "{preset}: {st:?}");
    }
}

/// While two blocking calls hold the executor's workers (waiting for their calls), other
/// submitted runs still complete, before the blocking ones do: the waiting workers run
/// them (help-while-waiting). The blocking calls hold until those runs are done, or 2 s at
/// most, so without help the test fails (the blocking runs end first) instead of hanging.
#[test]
fn other_runs_complete_while_blocking_calls_hold_the_workers() {
    for workers in [1, 2] {
        for preset in OptimizationConfig::PRESETS {
            let name = format!("{preset}/{workers} workers");
            let mut cfg = OptimizationConfig::preset(preset).unwrap();
            cfg.workers = workers;
            other_runs_complete_while_blocking(&name, cfg, workers);
        }
    }
}

fn other_runs_complete_while_blocking(name: &str, cfg: OptimizationConfig, workers: usize) {
    let ex: Executor<u64, ()> = Executor::new(cfg).unwrap();
    let pool = pool(2, 4);
    let release = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let (r2, seq2) = (Arc::clone(&release), Arc::clone(&seq));
    // Input 0: a quick run; input 1: a blocking run. Each notes when it ended.
    let g = Arc::new(
        Graph::build(|b| {
            let hold = pool.step(move |x: u64, _: &CallCx<'_>| {
                let until = Instant::now() + Duration::from_secs(2);
                while x == 1 && !r2.load(Ordering::SeqCst) && Instant::now() < until {
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(x)
            });
            let quick = b.task("quick", |x, _| Ok(x));
            let blocking = b.step("blocking", hold, TaskConfig::new());
            let pick = b.switch(
                "kind",
                |x: &u64, _: &()| *x,
                &[(0, quick), (1, blocking)],
                None,
            );
            let note = b.task("note", move |_, _| Ok(seq2.fetch_add(1, Ordering::SeqCst)));
            b.sequence("main", &[pick, note])
        })
        .unwrap(),
    );
    let wait = SubmitSpec::default().wait(Duration::MAX);
    let blocking: Vec<_> = (0..2)
        .map(|_| ex.submit_with(&g, 1, (), &wait).expect(name))
        .collect();
    // Each worker holds a blocking call (one worker takes the second blocking run only if it
    // helps while it waits).
    wait_for(name, || pool.stats().running >= workers.min(2));
    let quick: Vec<_> = (0..16)
        .map(|_| ex.submit_with(&g, 0, (), &wait).expect(name))
        .collect();
    let quick_ends: Vec<u64> = quick
        .into_iter()
        .map(|t| ran(name, t.wait().unwrap()).output.expect(name))
        .collect();
    release.store(true, Ordering::SeqCst);
    let blocking_ends: Vec<u64> = blocking
        .into_iter()
        .map(|t| ran(name, t.wait().unwrap()).output.expect(name))
        .collect();
    let last_quick = quick_ends.iter().max().unwrap();
    let first_blocking = blocking_ends.iter().min().unwrap();
    assert!(
        last_quick < first_blocking,
        "{name}: quick runs ended at {quick_ends:?}, blocking ones at {blocking_ends:?}"
    );
}
