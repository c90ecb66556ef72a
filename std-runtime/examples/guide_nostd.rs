//! docs/guide.md, "The no_std core on a microcontroller-class target": the core's `Runner`
//! with a clock of the host's own (a millisecond tick counter, as a SysTick interrupt would
//! keep), a retry whose backoff is in ticks, an attempt timeout in ticks, a runner sized for
//! a small RAM, and the pipeline of `nostd-check/` (which CI builds for
//! `thumbv7em-none-eabihf`) run with a `ManualClock`. Everything in `firmware` uses `core`,
//! `alloc` and `flujo_core` only; this file is a std program so that CI can run it. It
//! checks every output and record, and exits non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_nostd`

use std::process::ExitCode;

/// The part that would live in a `#![no_std]` firmware crate (see `nostd-check/src/lib.rs`).
mod firmware {
    use core::sync::atomic::{AtomicU32, Ordering};

    use flujo_core::graph::{
        Clock, Graph, LoopOptions, ManualClock, ParallelOptions, StepError, TaskConfig,
    };
    use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig};
    use flujo_core::policy::{Backoff, ErrorClass, RetryPolicy};

    /// A millisecond tick counter. On the board a timer interrupt increments `MS`; here the
    /// clock's own `wait` does, so a backoff of `n` ticks passes `n` ticks.
    pub static MS: AtomicU32 = AtomicU32::new(0);

    pub struct SysTick;

    impl Clock for SysTick {
        fn now(&self) -> u64 {
            u64::from(MS.load(Ordering::Relaxed))
        }
        /// A backoff: on the board, sleep until the tick (`wfi` in a loop); the core's
        /// default `wait` does not wait at all, and only reports the delays in the records.
        fn wait(&self, ticks: u64) {
            MS.fetch_add(ticks as u32, Ordering::Relaxed);
        }
    }

    /// A runner sized for a small RAM: 16 records per run, no spare context copies kept, a
    /// step-output cache of 8 entries.
    pub fn runner<P: Clone>() -> Runner<P, ()> {
        Runner::new(RunnerConfig {
            max_records: 16,
            max_spare_contexts: 0,
            cache_capacity: 8,
            ..RunnerConfig::default()
        })
    }

    /// A sensor read that fails its first attempt (a bus glitch), retried 5 ticks later, then
    /// scaled; the read may take at most 10 ticks per attempt.
    pub fn sensor_pipeline() -> Graph<u32, ()> {
        Graph::build(|b| {
            let read = b.task_with(
                "read_sensor",
                |raw: u32, cx| {
                    if cx.attempt() == 1 {
                        return Err(StepError::transient("i2c: NACK"));
                    }
                    MS.fetch_add(2, Ordering::Relaxed); // the read takes 2 ms
                    Ok(raw)
                },
                TaskConfig::new()
                    .timeout(10)
                    .retry(RetryPolicy::new(3, Backoff::Constant { delay_ticks: 5 }).unwrap()),
            );
            let stuck = b.task_with(
                "read_stuck",
                |raw: u32, _| {
                    MS.fetch_add(25, Ordering::Relaxed); // the bus hangs for 25 ms
                    Ok(raw)
                },
                TaskConfig::new().timeout(10),
            );
            let scale = b.task("scale", |raw: u32, _| Ok(raw.saturating_mul(3) / 2));
            let pick = b.switch(
                "pick",
                |raw: &u32, _| u64::from(*raw == 0),
                &[(1, stuck)],
                Some(read),
            );
            b.sequence("sample", &[pick, scale])
        })
        .expect("a valid graph")
    }

    /// Runs the sensor pipeline on `raw`: the output, the read's attempts and error class, and
    /// the ticks the run took.
    pub fn sample(raw: u32) -> (Option<u32>, u32, Option<ErrorClass>, u64) {
        let g = sensor_pipeline();
        let mut r = runner::<u32>();
        let start = SysTick.now();
        let res = r.run(&g, raw, (), &SysTick, &RunOptions::default());
        let read = res.records.first().copied();
        (
            res.output,
            read.map_or(0, |rec| rec.attempts),
            read.and_then(|rec| rec.error_class),
            SysTick.now() - start,
        )
    }

    /// `nostd-check`'s pipeline, run with a `ManualClock`: `x + 1`, then `x * 2` and `x * 3`
    /// in parallel (summed), then `+ 10` until at least 100 (at most 50 times).
    pub fn nostd_check_demo(input: u32) -> Option<u32> {
        let graph = Graph::<u32, ()>::build(|b| {
            let inc = b.task("inc", |x: u32, _| Ok(x.saturating_add(1)));
            let double = b.task("double", |x: u32, _| Ok(x.saturating_mul(2)));
            let triple = b.task("triple", |x: u32, _| Ok(x.saturating_mul(3)));
            let fan = b.parallel(
                "fan",
                &[double, triple],
                |a: u32, c: u32| a.saturating_add(c),
                ParallelOptions::default(),
            );
            let add10 = b.task("add10", |x: u32, _| Ok(x.saturating_add(10)));
            let grow = b.loop_(
                "grow",
                add10,
                LoopOptions::new()
                    .max_iterations(50)
                    .until(|x: &u32, _, _| *x >= 100),
            );
            b.sequence("pipeline", &[inc, fan, grow])
        })
        .ok()?;
        let clock = ManualClock::default();
        let mut r = runner::<u32>();
        let res = r.run(&graph, input, (), &clock, &RunOptions::default());
        match res.outcome {
            Outcome::Succeeded => res.output,
            Outcome::Failed | Outcome::Aborted => None,
        }
    }
}

fn main() -> ExitCode {
    use flujo_core::policy::ErrorClass;
    let mut ok = true;
    let mut check = |what: &str, pass: bool| {
        if !pass {
            eprintln!("guide_nostd: MISMATCH: {what}");
            ok = false;
        }
    };
    // A glitch, a 5-tick backoff, a 2-tick read: 7 ticks, two attempts, the glitch's class.
    let (out, attempts, class, took) = firmware::sample(100);
    check(
        "retried read",
        (out, attempts, class, took) == (Some(150), 2, Some(ErrorClass::Transient), 7),
    );
    // A read that hangs 25 ticks overruns its 10-tick timeout: it is not interrupted (the
    // core cannot pre-empt a step), its result is discarded and the run fails as a timeout.
    let (out, _, class, took) = firmware::sample(0);
    check(
        "stuck read",
        (out, class, took) == (None, Some(ErrorClass::Timeout), 25),
    );
    // nostd-check's own answers (its unit test asserts the same).
    check(
        "nostd-check demo",
        firmware::nostd_check_demo(1) == Some(100),
    );
    check(
        "nostd-check demo",
        firmware::nostd_check_demo(20) == Some(115),
    );
    if !ok {
        return ExitCode::FAILURE;
    }
    println!(
        "guide_nostd: retried read 150 after 7 ticks (2 attempts); a hung read failed as a \
         timeout after 25 ticks; nostd-check's pipeline gives 100 and 115"
    );
    ExitCode::SUCCESS
}
