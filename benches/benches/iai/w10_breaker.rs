//! W10_breaker in instructions: `OPS` permit checks + success records on a closed breaker with
//! the default rules, single thread. Only `flujo` has a hard limit; failsafe is for
//! comparison.
#![allow(non_snake_case)] // The group is named after the workload id.

use std::hint::black_box;

use ::failsafe::CircuitBreaker as _;
use flujo_core::policy::{Breaker, BreakerConfig, BreakerState, CallOutcome};
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

/// Calls per bench, so setup is noise: Ir per call is the total over `OPS`.
const OPS: u64 = 100_000;
/// The Ir budget of the `flujo` bench: about 1.15x the measured 2_806_046 (28 Ir per call,
/// loop and `black_box`es included; 3_403_639 before the clean bit; failsafe measured
/// 40_234_643, 402 Ir per call).
const FLUJO_IR_LIMIT: u64 = 3_230_000;

type Failsafe = ::failsafe::StateMachine<
    ::failsafe::failure_policy::OrElse<
        ::failsafe::failure_policy::SuccessRateOverTimeWindow<::failsafe::backoff::EqualJittered>,
        ::failsafe::failure_policy::ConsecutiveFailures<::failsafe::backoff::EqualJittered>,
    >,
    (),
>;

fn flujo_breaker() -> Breaker {
    Breaker::new(BreakerConfig::DEFAULT).expect("default config is valid")
}

fn failsafe_breaker() -> Failsafe {
    ::failsafe::Config::new().build()
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, FLUJO_IR_LIMIT)]))
)]
#[bench::closed(setup = flujo_breaker)]
fn flujo(breaker: Breaker) -> u64 {
    let mut admitted = 0;
    for now in 0..OPS {
        let permit = breaker.try_acquire(black_box(now)).expect("closed");
        let transition = breaker.record(permit, black_box(CallOutcome::Success), 1, now);
        admitted += u64::from(black_box(transition).is_none());
    }
    assert_eq!(admitted, OPS);
    assert_eq!(breaker.state(), BreakerState::Closed);
    admitted
}

#[library_benchmark]
#[bench::closed(setup = failsafe_breaker)]
fn failsafe(breaker: Failsafe) -> u64 {
    let mut admitted = 0;
    for _ in 0..OPS {
        let result = breaker.call(|| Ok::<u64, ()>(black_box(1)));
        admitted += black_box(result).unwrap_or(0);
    }
    assert_eq!(admitted, OPS);
    assert!(breaker.is_call_permitted());
    admitted
}

library_benchmark_group!(name = W10_breaker; benchmarks = flujo, failsafe);
