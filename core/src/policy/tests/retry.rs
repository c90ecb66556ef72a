use alloc::vec::Vec;

use crate::policy::{
    Backoff, Decision, ErrorClass, Recovery, RecoveryTable, RetryPolicy, RetryPolicyError, Rng,
    ATTEMPTS_MAX,
};

/// The delays a policy produces for transient failures until it stops retrying.
fn delays(policy: RetryPolicy, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed);
    let mut state = policy.start();
    let mut out = Vec::new();
    loop {
        match state.on_failure(ErrorClass::Transient, &RecoveryTable::DEFAULT, &mut rng) {
            Decision::RetryAfter(ticks) => out.push(ticks),
            Decision::Fallback => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(state.attempts(), policy.attempts_max());
    assert_eq!(state.attempts_left(), 0);
    assert_eq!(out.len() as u32, policy.attempts_max() - 1);
    out
}

#[test]
fn delays_per_attempt_for_each_backoff() {
    let rows: [(u32, Backoff, &[u64]); 5] = [
        (4, Backoff::Constant { delay_ticks: 7 }, &[7, 7, 7]),
        (1, Backoff::Constant { delay_ticks: 7 }, &[]),
        (
            6,
            Backoff::Exponential {
                base_ticks: 10,
                factor: 2,
                delay_ticks_max: 100,
            },
            &[10, 20, 40, 80, 100],
        ),
        (
            4,
            Backoff::Exponential {
                base_ticks: 3,
                factor: 1,
                delay_ticks_max: 3,
            },
            &[3, 3, 3],
        ),
        (
            5,
            Backoff::Exponential {
                base_ticks: 0,
                factor: 10,
                delay_ticks_max: 5,
            },
            &[0, 0, 0, 0],
        ),
    ];
    for (attempts, backoff, expected) in rows {
        let policy = RetryPolicy::new(attempts, backoff).unwrap();
        assert_eq!(delays(policy, 0), expected, "{backoff:?}");
    }
}

#[test]
fn exponential_saturates_at_the_cap_without_overflow() {
    let policy = RetryPolicy::new(
        ATTEMPTS_MAX,
        Backoff::Exponential {
            base_ticks: u64::MAX / 3,
            factor: u32::MAX,
            delay_ticks_max: u64::MAX,
        },
    )
    .unwrap();
    let got = delays(policy, 0);
    assert_eq!(got[0], u64::MAX / 3);
    assert!(got[1..].iter().all(|&d| d == u64::MAX));

    let capped = RetryPolicy::new(
        ATTEMPTS_MAX,
        Backoff::Exponential {
            base_ticks: 1,
            factor: 3,
            delay_ticks_max: 1_000,
        },
    )
    .unwrap();
    let got = delays(capped, 0);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "monotone: {got:?}");
    assert_eq!(*got.last().unwrap(), 1_000);
    assert_eq!(&got[..7], &[1, 3, 9, 27, 81, 243, 729]);
}

#[test]
fn jitter_stays_in_bounds_and_is_deterministic_per_seed() {
    let backoff = Backoff::DecorrelatedJitter {
        base_ticks: 5,
        delay_ticks_max: 400,
    };
    let policy = RetryPolicy::new(ATTEMPTS_MAX, backoff).unwrap();
    let seeds = if cfg!(miri) { 3 } else { 500 };
    let mut distinct = 0;
    for seed in 0..seeds {
        let got = delays(policy, seed);
        let mut prev = 5u64;
        for &d in &got {
            assert!(d >= 5 && d <= (prev * 3).min(400), "{d} after {prev}");
            prev = d;
        }
        assert_eq!(got, delays(policy, seed), "seed {seed} must replay");
        if got != delays(policy, seed + 1) {
            distinct += 1;
        }
    }
    assert!(distinct > 0);

    // Near the top of u64: 3 * prev saturates, the cap holds.
    let huge = RetryPolicy::new(
        ATTEMPTS_MAX,
        Backoff::DecorrelatedJitter {
            base_ticks: u64::MAX / 2,
            delay_ticks_max: u64::MAX,
        },
    )
    .unwrap();
    assert!(delays(huge, 1).iter().all(|&d| d >= u64::MAX / 2));

    // base == cap: always the base.
    let flat = RetryPolicy::new(
        8,
        Backoff::DecorrelatedJitter {
            base_ticks: 9,
            delay_ticks_max: 9,
        },
    )
    .unwrap();
    assert_eq!(delays(flat, 4), [9; 7]);
}

#[test]
fn attempts_are_bounded_and_validated() {
    let rows = [
        (
            0,
            Backoff::NONE,
            Err(RetryPolicyError::AttemptsOutOfRange { requested: 0 }),
        ),
        (1, Backoff::NONE, Ok(())),
        (ATTEMPTS_MAX, Backoff::NONE, Ok(())),
        (
            ATTEMPTS_MAX + 1,
            Backoff::NONE,
            Err(RetryPolicyError::AttemptsOutOfRange {
                requested: ATTEMPTS_MAX + 1,
            }),
        ),
        (
            3,
            Backoff::Exponential {
                base_ticks: 1,
                factor: 0,
                delay_ticks_max: 9,
            },
            Err(RetryPolicyError::FactorZero),
        ),
        (
            3,
            Backoff::Exponential {
                base_ticks: 10,
                factor: 2,
                delay_ticks_max: 9,
            },
            Err(RetryPolicyError::BaseAboveMax),
        ),
        (
            3,
            Backoff::DecorrelatedJitter {
                base_ticks: 0,
                delay_ticks_max: 9,
            },
            Err(RetryPolicyError::JitterBaseZero),
        ),
        (
            3,
            Backoff::DecorrelatedJitter {
                base_ticks: 10,
                delay_ticks_max: 9,
            },
            Err(RetryPolicyError::BaseAboveMax),
        ),
    ];
    for (attempts, backoff, expected) in rows {
        assert_eq!(
            RetryPolicy::new(attempts, backoff).map(|_| ()),
            expected,
            "{attempts} {backoff:?}"
        );
    }
    assert_eq!(RetryPolicy::default(), RetryPolicy::NONE);
    assert_eq!(RetryPolicy::NONE.attempts_max(), 1);
}

#[test]
fn decisions_follow_the_table_and_aborts_spend_no_attempt() {
    let policy = RetryPolicy::new(3, Backoff::Constant { delay_ticks: 1 }).unwrap();
    let mut rng = Rng::new(0);
    for recovery in [
        Recovery::Retry,
        Recovery::Fallback,
        Recovery::Skip,
        Recovery::Fail,
    ] {
        let table = RecoveryTable::uniform(recovery);
        for class in ErrorClass::ALL {
            let mut state = policy.start();
            let decision = state.on_failure(class, &table, &mut rng);
            let expected = match (class.always_aborts(), recovery) {
                (true, _) => Decision::Abort,
                (false, Recovery::Retry) => Decision::RetryAfter(1),
                (false, Recovery::Fallback) => Decision::Fallback,
                (false, Recovery::Skip) => Decision::Skip,
                (false, Recovery::Fail) => Decision::Fail,
            };
            assert_eq!(decision, expected, "{class} under {recovery:?}");
            let attempts = if expected == Decision::RetryAfter(1) {
                2
            } else {
                1
            };
            assert_eq!(state.attempts(), attempts);
        }
    }
}

#[test]
fn mixed_failures_respect_attempts_left() {
    let policy = RetryPolicy::new(3, Backoff::Constant { delay_ticks: 4 }).unwrap();
    let table = RecoveryTable::DEFAULT;
    let mut rng = Rng::new(0);
    let mut state = policy.start();
    assert_eq!(state.attempts_left(), 2);
    assert_eq!(
        state.on_failure(ErrorClass::Timeout, &table, &mut rng),
        Decision::RetryAfter(4)
    );
    // A validation failure falls back without spending an attempt.
    let mut probe = state.clone();
    assert_eq!(
        probe.on_failure(ErrorClass::Validation, &table, &mut rng),
        Decision::Fallback
    );
    assert_eq!(probe.attempts(), 2);
    assert_eq!(
        state.on_failure(ErrorClass::Transient, &table, &mut rng),
        Decision::RetryAfter(4)
    );
    assert_eq!(state.attempts_left(), 0);
    // Out of attempts: a retryable failure falls back, an aborting one still aborts.
    assert_eq!(
        state
            .clone()
            .on_failure(ErrorClass::Transient, &table, &mut rng),
        Decision::Fallback
    );
    assert_eq!(
        state.on_failure(ErrorClass::Cancelled, &table, &mut rng),
        Decision::Abort
    );
    assert_eq!(state.attempts(), 3);
}
