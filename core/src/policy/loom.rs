//! Loom models of the breaker's atomic state machine: every interleaving of two threads, the
//! real code under loom's atomics.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

use alloc::vec::Vec;

use loom::sync::Arc;
use loom::thread;

use crate::policy::{Breaker, BreakerConfig, BreakerState, CallOutcome, Rejected};

const CONFIG: BreakerConfig = BreakerConfig {
    consecutive_failures_to_open: 2,
    window_calls: 2,
    failure_rate_percent_to_open: 0,
    window_calls_min: 1,
    slow_call_ticks: 0,
    open_ticks: 10,
    half_open_probes_max: 1,
    half_open_successes_to_close: 1,
};

fn model(name: &str, iterations: &'static StdAtomicUsize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        iterations.fetch_add(1, StdOrdering::Relaxed);
        f();
    });
    let ran = iterations.load(StdOrdering::Relaxed);
    std::eprintln!("{name}: {ran} iterations");
    assert!(ran > 1, "the model explored only {ran} interleaving(s)");
}

/// A breaker of `config` opened at tick 0 (deadline `config.open_ticks`).
fn opened(config: BreakerConfig) -> Breaker {
    let breaker = Breaker::new(config).unwrap();
    for _ in 0..config.consecutive_failures_to_open {
        let permit = breaker.try_acquire(0).unwrap();
        breaker.record(permit, CallOutcome::Failure, 0, 0);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker
}

#[test]
fn loom_two_failures_open_the_breaker_exactly_once() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    model(
        "loom_two_failures_open_the_breaker_exactly_once",
        &ITERATIONS,
        || {
            let breaker = Arc::new(Breaker::new(CONFIG).unwrap());
            let threads: [_; 2] = core::array::from_fn(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    breaker.record(permit, CallOutcome::Failure, 0, 0)
                })
            });
            let reported = threads
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .count();
            assert_eq!(reported, 1);
            assert_eq!(breaker.state(), BreakerState::Open);
            let counts = breaker.transition_counts();
            assert_eq!(counts.closed_to_open, 1);
            assert_eq!(counts.total(), 1);
            assert_eq!(
                breaker.try_acquire(9).unwrap_err(),
                Rejected {
                    state: BreakerState::Open
                }
            );
            assert!(breaker.try_acquire(10).unwrap().is_probe());
        },
    );
}

#[test]
fn loom_one_probe_for_two_callers_after_the_deadline() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    model(
        "loom_one_probe_for_two_callers_after_the_deadline",
        &ITERATIONS,
        || {
            let breaker = Arc::new(opened(CONFIG));
            let threads: [_; 2] = core::array::from_fn(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    breaker
                        .try_acquire(10)
                        .map(|permit| (permit.is_probe(), permit.transition().is_some()))
                })
            });
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let granted = results.iter().filter(|r| **r == Ok((true, true))).count();
            assert_eq!(
                granted, 1,
                "one probe, and it reports the transition: {results:?}"
            );
            assert!(results.iter().all(|r| *r == Ok((true, true))
                || *r
                    == Err(Rejected {
                        state: BreakerState::HalfOpen
                    })));
            assert_eq!(breaker.state(), BreakerState::HalfOpen);
            assert_eq!(breaker.transition_counts().open_to_half_open, 1);
        },
    );
}

#[test]
fn loom_racing_probe_outcomes_make_one_transition() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    let config = BreakerConfig {
        half_open_probes_max: 2,
        ..CONFIG
    };
    model(
        "loom_racing_probe_outcomes_make_one_transition",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(opened(config));
            let probes = [
                breaker.try_acquire(10).unwrap(),
                breaker.try_acquire(10).unwrap(),
            ];
            let threads: Vec<_> = probes
                .into_iter()
                .zip([CallOutcome::Success, CallOutcome::Failure])
                .map(|(permit, outcome)| {
                    let breaker = breaker.clone();
                    thread::spawn(move || breaker.record(permit, outcome, 0, 10))
                })
                .collect();
            let reported: Vec<_> = threads
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect();
            // Whichever outcome lands first decides; the other belongs to a finished period.
            assert_eq!(reported.len(), 1);
            assert_eq!(reported[0].to(), breaker.state());
            let counts = breaker.transition_counts();
            assert_eq!(counts.half_open_to_closed + counts.half_open_to_open, 1);
        },
    );
}

#[test]
fn loom_a_caller_never_sees_an_unwritten_deadline() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // Opened at 2^32 + 5 for 2^32 ticks: both halves of the deadline change. A caller at
    // deadline - 1 must never be let through as a probe.
    let opened_at = (1u64 << 32) + 5;
    let config = BreakerConfig {
        open_ticks: 1 << 32,
        consecutive_failures_to_open: 1,
        ..CONFIG
    };
    model(
        "loom_a_caller_never_sees_an_unwritten_deadline",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let opener = {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(opened_at).unwrap();
                    breaker.record(permit, CallOutcome::Failure, 0, opened_at)
                })
            };
            let caller = {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    breaker
                        .try_acquire(opened_at + (1 << 32) - 1)
                        .map(|permit| permit.is_probe())
                })
            };
            assert!(opener.join().unwrap().is_some());
            let got = caller.join().unwrap();
            assert!(
                got == Ok(false)
                    || got
                        == Err(Rejected {
                            state: BreakerState::Open
                        }),
                "{got:?}"
            );
            assert_eq!(breaker.state(), BreakerState::Open);
        },
    );
}

#[test]
fn loom_the_failure_count_follows_racing_outcomes_in_the_window() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // A window of 2 already holding a failure; a failure and a success race into it. Once
    // both are recorded, the count the success path tests equals the window's set bits.
    let config = BreakerConfig {
        consecutive_failures_to_open: 0,
        window_calls: 2,
        failure_rate_percent_to_open: 0,
        ..CONFIG
    };
    model(
        "loom_the_failure_count_follows_racing_outcomes_in_the_window",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let permit = breaker.try_acquire(0).unwrap();
            breaker.record(permit, CallOutcome::Failure, 0, 0);
            let threads: [_; 2] = core::array::from_fn(|i| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    let outcome = if i == 0 {
                        CallOutcome::Failure
                    } else {
                        CallOutcome::Success
                    };
                    breaker.record(permit, outcome, 0, 0);
                })
            });
            for t in threads {
                t.join().unwrap();
            }
            let (count, bits) = breaker.failure_counts();
            assert_eq!(count, bits);
            assert_eq!(breaker.state(), BreakerState::Closed);
        },
    );
}

#[test]
fn loom_racing_failures_that_fill_the_rate_window_open_it_once() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // Rate rule only: both of the last 2 calls failed. Neither failure alone opens it, both
    // together must, whatever the interleaving.
    let config = BreakerConfig {
        consecutive_failures_to_open: 0,
        window_calls: 2,
        failure_rate_percent_to_open: 100,
        window_calls_min: 2,
        ..CONFIG
    };
    model(
        "loom_racing_failures_that_fill_the_rate_window_open_it_once",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let threads: [_; 2] = core::array::from_fn(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    breaker.record(permit, CallOutcome::Failure, 0, 0)
                })
            });
            let reported = threads
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .count();
            assert_eq!(reported, 1);
            assert_eq!(breaker.state(), BreakerState::Open);
            assert_eq!(breaker.transition_counts().closed_to_open, 1);
        },
    );
}

/// Window of 1, streak rule only (`consecutive` failures in a row), no rate rule.
fn one_call_window(consecutive: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures_to_open: consecutive,
        window_calls: 1,
        failure_rate_percent_to_open: 0,
        window_calls_min: 1,
        ..CONFIG
    }
}

/// Checks a breaker whose racing records are all done: closed, no transition, the clean bit
/// only over healthy statistics, the failure count exact; then that a success followed by
/// `consecutive - 1` failures does not open it (no streak survives a success, clean or
/// not), and that one more failure does.
fn assert_settled(breaker: &Breaker, consecutive: u32) {
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.transition_counts().total(), 0);
    let (clean, healthy) = breaker.clean();
    assert!(!clean || healthy, "clean over unhealthy statistics");
    let (count, bits) = breaker.failure_counts();
    assert_eq!(count, bits);
    let call = |outcome| {
        let permit = breaker.try_acquire(0).unwrap();
        breaker.record(permit, outcome, 0, 0)
    };
    assert_eq!(call(CallOutcome::Success), None);
    for _ in 1..consecutive {
        assert_eq!(
            call(CallOutcome::Failure),
            None,
            "a streak outlived a success"
        );
    }
    assert!(call(CallOutcome::Failure).is_some());
    assert_eq!(breaker.transition_counts().closed_to_open, 1);
}

#[test]
fn loom_a_failure_clearing_the_clean_bit_races_a_success_and_an_acquire() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // Clean before the race (a full window of one success). A failure clears the bit while
    // a success records (on the hot path or not) and a third thread acquires and records a
    // success. Whatever the order, the clean bit is never left over the failure, the
    // failure is never lost from the streak by a success that came before it, and nothing
    // transitions.
    let config = one_call_window(2);
    model(
        "loom_a_failure_clearing_the_clean_bit_races_a_success_and_an_acquire",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let permit = breaker.try_acquire(0).unwrap();
            assert_eq!(breaker.record(permit, CallOutcome::Success, 0, 0), None);
            assert_eq!(breaker.clean(), (true, true));
            let clean_permit = breaker.try_acquire(0).unwrap();
            let failure = {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    breaker.record(permit, CallOutcome::Failure, 0, 0)
                })
            };
            let success = {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.record(clean_permit, CallOutcome::Success, 0, 0))
            };
            let acquirer = {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    assert!(!permit.is_probe());
                    breaker.record(permit, CallOutcome::Success, 0, 0)
                })
            };
            assert_eq!(failure.join().unwrap(), None);
            assert_eq!(success.join().unwrap(), None);
            assert_eq!(acquirer.join().unwrap(), None);
            assert_settled(&breaker, 2);
        },
    );
}

#[test]
fn loom_a_success_marking_the_breaker_clean_races_a_failure() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // Unclean before the race: one failure in the streak and the window. A success (slow
    // path: it resets the streak, fills the window and tries to set the clean bit) races a
    // second failure. Success first: streak 1, window [F], unclean. Failure first: streak
    // 2, no opening (3 needed), then the success resets it and may mark it clean. Never
    // clean with the failure's writes in the statistics.
    let config = one_call_window(3);
    model(
        "loom_a_success_marking_the_breaker_clean_races_a_failure",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let permit = breaker.try_acquire(0).unwrap();
            assert_eq!(breaker.record(permit, CallOutcome::Failure, 0, 0), None);
            assert_eq!(breaker.clean(), (false, false));
            let threads: [_; 2] = core::array::from_fn(|i| {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    let permit = breaker.try_acquire(0).unwrap();
                    let outcome = if i == 0 {
                        CallOutcome::Success
                    } else {
                        CallOutcome::Failure
                    };
                    breaker.record(permit, outcome, 0, 0)
                })
            });
            for t in threads {
                assert_eq!(t.join().unwrap(), None);
            }
            assert_settled(&breaker, 3);
        },
    );
}

#[test]
fn loom_a_stale_failure_never_hides_under_a_later_periods_clean_bit() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    // A failure whose permit is of the first closed period races another thread that opens
    // the breaker, closes it again with one probe and records a success in the new period.
    // The stale failure's writes may land in the new period's statistics (a documented
    // race), but the clean bit is then never left set over them. (This model fails if the
    // failure skips its write to a non-closed word, or if the opener publishes `Open` with a
    // plain store, breaking the word's release sequence.)
    let config = BreakerConfig {
        consecutive_failures_to_open: 1,
        window_calls: 1,
        failure_rate_percent_to_open: 0,
        window_calls_min: 1,
        open_ticks: 0,
        half_open_probes_max: 1,
        half_open_successes_to_close: 1,
        ..CONFIG
    };
    model(
        "loom_a_stale_failure_never_hides_under_a_later_periods_clean_bit",
        &ITERATIONS,
        move || {
            let breaker = Arc::new(Breaker::new(config).unwrap());
            let stale = breaker.try_acquire(0).unwrap();
            let failure = {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.record(stale, CallOutcome::Failure, 0, 0))
            };
            let cycler = {
                let breaker = breaker.clone();
                thread::spawn(move || {
                    // Open (unless the stale failure already did), probe, close, succeed.
                    if let Ok(permit) = breaker.try_acquire(0) {
                        let outcome = if permit.is_probe() {
                            CallOutcome::Success
                        } else {
                            CallOutcome::Failure
                        };
                        breaker.record(permit, outcome, 0, 0);
                    }
                    for _ in 0..2 {
                        if let Ok(permit) = breaker.try_acquire(0) {
                            breaker.record(permit, CallOutcome::Success, 0, 0);
                        }
                    }
                })
            };
            failure.join().unwrap();
            cycler.join().unwrap();
            let (clean, healthy) = breaker.clean();
            assert!(!clean || healthy, "clean over a stale failure");
            let (count, bits) = breaker.failure_counts();
            assert_eq!(count, bits);
            let counts = breaker.transition_counts();
            assert!(counts.closed_to_open >= 1);
            assert!(counts.closed_to_open <= counts.half_open_to_closed + 1);
        },
    );
}
