//! W10_breaker: a permit check and a success record on a closed circuit breaker, single
//! thread. Both breakers use their default rules (consecutive failures or a failure rate over
//! a window); failsafe goes through its sync `CircuitBreaker::call` with a trivial closure.
use std::hint::black_box;

use criterion::Criterion;
use failsafe::CircuitBreaker as _;
use flujo_core::policy::{Breaker, BreakerConfig, BreakerState, CallOutcome};

/// Runs enough calls to fill both breakers' windows and checks they stay closed, and that a
/// failure streak does open them, so a broken breaker fails before it is measured.
fn check() {
    let breaker = Breaker::new(BreakerConfig::DEFAULT).expect("default config is valid");
    for now in 0..1_000 {
        let permit = breaker.try_acquire(now).expect("a closed breaker admits");
        assert_eq!(breaker.record(permit, CallOutcome::Success, 1, now), None);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    for now in 1_000..1_005 {
        let permit = breaker.try_acquire(now).expect("still closed");
        breaker.record(permit, CallOutcome::Failure, 1, now);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.transition_counts().closed_to_open, 1);

    let peer = failsafe::Config::new().build();
    for _ in 0..1_000 {
        assert_eq!(peer.call(|| Ok::<u64, ()>(1)).ok(), Some(1));
    }
    assert!(peer.is_call_permitted());
    let mut rejected = false;
    for _ in 0..100 {
        if let Err(failsafe::Error::Rejected) = peer.call(|| Err::<u64, ()>(())) {
            rejected = true;
            break;
        }
    }
    assert!(rejected, "failsafe never opened");
}

/// The criterion group `W10_breaker`.
pub fn benches(c: &mut Criterion) {
    check();
    let mut group = c.benchmark_group("W10_breaker");

    let breaker = Breaker::new(BreakerConfig::DEFAULT).expect("default config is valid");
    group.bench_function("flujo", |b| {
        let mut now = 0u64;
        b.iter(|| {
            now += 1;
            let permit = breaker.try_acquire(black_box(now)).expect("closed");
            black_box(breaker.record(permit, black_box(CallOutcome::Success), 1, now))
        });
    });
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.transition_counts().total(), 0);

    let peer = failsafe::Config::new().build();
    group.bench_function("failsafe", |b| {
        b.iter(|| {
            let result = peer.call(|| Ok::<u64, ()>(black_box(1)));
            black_box(result.is_ok())
        });
    });
    assert!(peer.is_call_permitted());

    group.finish();
}
