//! The process's OS threads stay within the executor's compute pool, plus the blocking pool's
//! bound, plus 2 (the test harness's), while a load of runs with blocking steps runs
//! (`docs/waiting.md`, "The bounds and what they cost").
//!
//! One test, in a binary of its own, so that the harness adds only its own threads. Linux
//! only (it counts the entries of `/proc/self/task`); elsewhere it says so and passes.

use std::sync::Arc;
use std::time::Duration;

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_runtime::blocking::{BlockingConfig, BlockingPool, CallCx};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Drain, Executor, Finished, SubmitSpec};

/// The process's threads now, or `None` where `/proc/self/task` cannot be read.
fn os_threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

#[test]
fn os_threads_stay_within_the_compute_pool_plus_the_blocking_bound_plus_two() {
    let Some(before) = os_threads() else {
        eprintln!("skipped: /proc/self/task cannot be read (not Linux)");
        return;
    };
    let mut cfg = OptimizationConfig::throughput();
    cfg.workers = 2;
    let ex: Executor<u64, ()> = Executor::new(cfg).unwrap();
    let pool = BlockingPool::new(BlockingConfig {
        threads: 4,
        queue: 8,
    })
    .unwrap();
    let bound = ex.threads() + pool.config().threads + 2;

    // One run in three makes a blocking call: half of them take 1 ms; the others take 8 ms
    // and ignore their flag, so they outlast their 4 ms timeout and hold their thread after
    // they are given up (each such run retries twice). The pool fills, refuses, and a retry
    // finds room later.
    let g = Arc::new(
        Graph::build(|b| {
            let call = pool.step(|x: u64, cx: &CallCx<'_>| {
                if x % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(8));
                } else if cx.should_stop() {
                    return Err(StepError::transient("told to stop"));
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(x)
            });
            let backoff = Backoff::Constant {
                delay_ticks: ticks(Duration::from_millis(1)),
            };
            let cfg = TaskConfig::new()
                .timeout(ticks(Duration::from_millis(4)))
                .retry(RetryPolicy::new(3, backoff).unwrap());
            let blocking = b.step("blocking", call, cfg);
            let quick = b.task("quick", |x, _| Ok(x));
            b.switch(
                "kind",
                |x: &u64, _: &()| u64::from(x.is_multiple_of(3)),
                &[(0, quick), (1, blocking)],
                None,
            )
        })
        .unwrap(),
    );

    let mut most = before;
    let mut sample = || {
        let n = os_threads().expect("readable a moment ago");
        most = most.max(n);
        n
    };
    let wait = SubmitSpec::default().wait(Duration::MAX);
    let mut tickets = Vec::new();
    let runs = 600_u64;
    for i in 0..runs {
        tickets.push(ex.submit_with(&g, i, (), &wait).expect("waits for room"));
        sample();
    }
    let mut ran = 0;
    for mut t in tickets {
        loop {
            sample();
            match t.try_poll().unwrap() {
                Some(Finished::Ran(_)) => break,
                Some(other) => panic!("{other:?}"),
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        ran += 1;
    }
    let stats = pool.stats();
    let alive = stats.threads;
    let last = sample();
    eprintln!(
        "OS threads: {before} before, at most {most}, bound {bound}; blocking pool: {stats:?}"
    );
    assert_eq!(ran, runs);
    assert!(
        alive >= 1 && last >= before + ex.threads() + alive - 1,
        "the count sees the pools' threads: {last} threads, {before} before, {} compute, \
         {alive} blocking",
        ex.threads()
    );
    assert!(
        most <= bound,
        "{most} OS threads at most, over the bound {bound} ({} compute + {} blocking + 2; \
         {before} before the executor)",
        ex.threads(),
        pool.config().threads
    );
    ex.shutdown(Drain::Finish);
    let report = pool.shutdown(Duration::from_secs(60));
    assert!(report.is_clean(), "{report:?}");
}
