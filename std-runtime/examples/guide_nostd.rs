//! docs/guide.md, "The no_std core on a microcontroller-class target": the core's `Runner`
//! with a clock of the host's own (a millisecond tick counter, as a SysTick interrupt would
//! keep), a retry whose backoff is in ticks, an attempt timeout in ticks, a runner sized for
//! a small RAM, and the pipeline of `nostd-check/` (the crate CI builds for
//! `thumbv7em-none-eabihf`, called here on the host: `flujo_nostd_check::run_demo`). Everything in `firmware` uses `core`,
//! `alloc` and `flujo_core` only; this file is a std program so that CI can run it. It
//! checks every output and record, and exits non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_nostd`

use std::process::ExitCode;

/// The part that would live in a `#![no_std]` firmware crate (see `nostd-check/src/lib.rs`).
mod firmware {
    use core::sync::atomic::{AtomicU32, Ordering};

    use flujo_core::graph::{Clock, Graph, StepError, TaskConfig};
    use flujo_core::interp::{RunOptions, Runner, RunnerConfig};
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
        flujo_nostd_check::run_demo(1) == Some(100),
    );
    check(
        "nostd-check demo",
        flujo_nostd_check::run_demo(20) == Some(115),
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
