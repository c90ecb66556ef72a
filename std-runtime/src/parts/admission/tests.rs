use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;

use super::{AdaptiveLimit, LimitError, LimitStats, Permit};
use crate::config::{AdmissionConfig, Algorithm};

/// AIMD, +1 and halving (the bounds are set by [`limit`]).
const AIMD: AdmissionConfig = AdmissionConfig {
    enabled: true,
    algorithm: Algorithm::Aimd,
    min_limit: 1,
    max_limit: 1,
    initial_limit: 1,
    aimd_increase: 1,
    aimd_backoff_ratio: 0.5,
    gradient_smoothing: 0.2,
    gradient_tolerance: 1.5,
};
/// Gradient, smoothing 0.2 and tolerance 1.5.
const GRADIENT: AdmissionConfig = AdmissionConfig {
    algorithm: Algorithm::Gradient,
    ..AIMD
};

/// A limit of `tuning`'s algorithm within `min_limit..=max_limit`.
fn limit(
    tuning: AdmissionConfig,
    min_limit: u32,
    max_limit: u32,
    initial_limit: u32,
) -> AdaptiveLimit {
    AdaptiveLimit::new(AdmissionConfig {
        min_limit,
        max_limit,
        initial_limit,
        ..tuning
    })
    .unwrap()
}

/// A small xorshift generator: deterministic test programs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn assert_conserved(stats: LimitStats) {
    assert_eq!(
        stats.acquired,
        stats.succeeded + stats.dropped + stats.ignored,
        "{stats:?}"
    );
}

#[test]
fn config_validation_names_the_field() {
    let base = AdmissionConfig {
        min_limit: 2,
        max_limit: 10,
        initial_limit: 5,
        ..AIMD
    };
    let cases: [(AdmissionConfig, LimitError, &str); 10] = [
        (
            AdmissionConfig {
                min_limit: 0,
                ..base
            },
            LimitError::MinLimitZero,
            "min_limit",
        ),
        (
            AdmissionConfig {
                min_limit: 11,
                ..base
            },
            LimitError::MinAboveMax {
                min_limit: 11,
                max_limit: 10,
            },
            "min_limit",
        ),
        (
            AdmissionConfig {
                initial_limit: 1,
                ..base
            },
            LimitError::InitialOutOfBounds {
                initial_limit: 1,
                min_limit: 2,
                max_limit: 10,
            },
            "initial_limit",
        ),
        (
            AdmissionConfig {
                initial_limit: 11,
                ..base
            },
            LimitError::InitialOutOfBounds {
                initial_limit: 11,
                min_limit: 2,
                max_limit: 10,
            },
            "initial_limit",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Aimd,
                aimd_increase: 0,
                aimd_backoff_ratio: 0.5,
                ..base
            },
            LimitError::IncreaseZero,
            "aimd_increase",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Aimd,
                aimd_increase: 1,
                aimd_backoff_ratio: 1.0,
                ..base
            },
            LimitError::BackoffRatio(1.0),
            "aimd_backoff_ratio",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Aimd,
                aimd_increase: 1,
                aimd_backoff_ratio: 0.0,
                ..base
            },
            LimitError::BackoffRatio(0.0),
            "aimd_backoff_ratio",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Gradient,
                gradient_smoothing: 0.0,
                gradient_tolerance: 2.0,
                ..base
            },
            LimitError::Smoothing(0.0),
            "gradient_smoothing",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Gradient,
                gradient_smoothing: 1.5,
                gradient_tolerance: 2.0,
                ..base
            },
            LimitError::Smoothing(1.5),
            "gradient_smoothing",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Gradient,
                gradient_smoothing: 0.5,
                gradient_tolerance: 0.9,
                ..base
            },
            LimitError::Tolerance(0.9),
            "gradient_tolerance",
        ),
    ];
    for (config, error, field) in cases {
        let got = AdaptiveLimit::new(config).unwrap_err();
        assert_eq!(got, error);
        assert_eq!(got.field(), field);
        assert!(got.to_string().contains(&format!("`{field}`")), "{got}");
    }
    // NaN is refused too.
    let nan = AdmissionConfig {
        algorithm: Algorithm::Aimd,
        aimd_increase: 1,
        aimd_backoff_ratio: f64::NAN,
        ..base
    };
    assert_eq!(
        AdaptiveLimit::new(nan).unwrap_err().field(),
        "aimd_backoff_ratio"
    );
    let nan = AdmissionConfig {
        algorithm: Algorithm::Gradient,
        gradient_smoothing: 0.5,
        gradient_tolerance: f64::NAN,
        ..base
    };
    assert_eq!(
        AdaptiveLimit::new(nan).unwrap_err().field(),
        "gradient_tolerance"
    );
    // The edges that are allowed.
    for config in [
        AdmissionConfig {
            min_limit: 5,
            max_limit: 5,
            initial_limit: 5,
            ..base
        },
        AdmissionConfig {
            algorithm: Algorithm::Gradient,
            gradient_smoothing: 1.0,
            gradient_tolerance: 1.0,
            ..base
        },
        AdmissionConfig::default(),
    ] {
        assert!(AdaptiveLimit::new(config).is_ok(), "{config:?}");
    }
}

#[test]
fn aimd_grows_at_saturation_only() {
    let l = limit(
        AdmissionConfig {
            aimd_increase: 2,
            aimd_backoff_ratio: 0.5,
            ..AIMD
        },
        1,
        100,
        10,
    );
    // One in flight of ten: the caller is the bottleneck, the limit stays.
    l.try_acquire().unwrap().success(5);
    assert_eq!(l.limit(), 10);
    // Five of ten (2 * 5 >= 10): the limit is in use, it grows.
    let permits: Vec<_> = (0..5).map(|_| l.try_acquire().unwrap()).collect();
    let mut permits = permits.into_iter();
    permits.next_back().unwrap().success(5);
    assert_eq!(l.limit(), 12);
    // Four of twelve (acquired as 4th): no growth.
    permits.next_back().unwrap().success(5);
    assert_eq!(l.limit(), 12);
    drop(permits);
    assert_eq!(l.in_flight(), 0);

    // Sustained saturation: the limit climbs to the maximum and stays there.
    let mut out: VecDeque<Permit<&AdaptiveLimit>> = VecDeque::new();
    for _ in 0..500 {
        while let Some(permit) = l.try_acquire() {
            out.push_back(permit);
        }
        assert_eq!(out.len() as u32, l.in_flight());
        out.pop_front().unwrap().success(1_000);
    }
    assert_eq!(l.limit(), 100);
    drop(out);
    let stats = l.stats();
    assert_conserved(stats);
    assert!(stats.increases >= 44, "{stats:?}");
    assert_eq!(stats.decreases, 0);
}

#[test]
fn aimd_shrinks_on_drops_to_the_minimum() {
    let l = limit(AIMD, 2, 100, 40);
    let mut seen = Vec::new();
    for _ in 0..6 {
        l.try_acquire().unwrap().dropped();
        seen.push(l.limit());
    }
    assert_eq!(seen, [20, 10, 5, 2, 2, 2]);
    let stats = l.stats();
    assert_eq!((stats.dropped, stats.decreases, stats.increases), (6, 4, 0));
    assert_conserved(stats);
}

/// Keeps the limit saturated: fills every free slot, then ends the oldest permit with
/// `latency_ns`, `samples` times; returns the limit after.
fn saturate<'a>(
    l: &'a AdaptiveLimit,
    out: &mut VecDeque<Permit<&'a AdaptiveLimit>>,
    latency_ns: u64,
    samples: usize,
) -> u32 {
    for _ in 0..samples {
        while out.len() < l.limit() as usize {
            match l.try_acquire() {
                Some(permit) => out.push_back(permit),
                None => break,
            }
        }
        if let Some(permit) = out.pop_front() {
            permit.success(latency_ns);
        }
    }
    l.limit()
}

#[test]
fn gradient_follows_latency() {
    let l = limit(GRADIENT, 4, 200, 20);
    let mut out = VecDeque::new();
    // Steady latency: the headroom lets the limit probe upwards.
    let warm = saturate(&l, &mut out, 1_000_000, 100);
    assert!(warm > 20, "warm {warm}");
    // Latency rises tenfold (beyond the tolerance): the limit shrinks.
    let slow = saturate(&l, &mut out, 10_000_000, 60);
    assert!(slow < warm, "warm {warm} slow {slow}");
    let after_rise = l.stats();
    assert!(after_rise.decreases > 0);
    // Latency falls back: the long-term RTT is above the new one, the limit grows again.
    let fast = saturate(&l, &mut out, 1_000_000, 60);
    assert!(fast > slow, "slow {slow} fast {fast}");
    assert!(l.stats().increases > after_rise.increases);
    drop(out);
    assert_conserved(l.stats());
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn gradient_tolerates_latency_within_tolerance_and_ignores_idle_samples() {
    let l = limit(GRADIENT, 1, 1000, 40);
    let mut out = VecDeque::new();
    let before = saturate(&l, &mut out, 1_000_000, 30);
    // 1.4x the long-term RTT is inside a tolerance of 1.5: still growing.
    let after = saturate(&l, &mut out, 1_400_000, 30);
    assert!(after > before, "{before} -> {after}");
    drop(out);
    // One permit out of a limit in the tens: app-limited, the estimate does not move.
    let idle = l.limit();
    for _ in 0..20 {
        l.try_acquire().unwrap().success(100_000_000);
    }
    assert_eq!(l.limit(), idle);
}

#[test]
fn gradient_drops_shrink() {
    let l = limit(GRADIENT, 3, 100, 80);
    l.try_acquire().unwrap().dropped();
    // 80 * (0.8 + 0.2 * 0.5) = 72
    assert_eq!(l.limit(), 72);
    for _ in 0..100 {
        l.try_acquire().unwrap().dropped();
    }
    assert_eq!(l.limit(), 3);
}

#[test]
fn limit_never_leaves_bounds_under_random_programs() {
    let steps = if cfg!(miri) { 200 } else { 20_000 };
    for (seed, algorithm) in [
        (1, AIMD),
        (2, GRADIENT),
        (
            3,
            AdmissionConfig {
                aimd_increase: 7,
                aimd_backoff_ratio: 0.97,
                ..AIMD
            },
        ),
    ] {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ seed);
        let l = limit(algorithm, 2, 64, 10);
        let mut out = VecDeque::new();
        let mut bounds = (2, 64);
        for _ in 0..steps {
            match rng.below(10) {
                0..=3 => {
                    if let Some(permit) = l.try_acquire() {
                        out.push_back(permit);
                    }
                }
                4..=5 => {
                    if let Some(permit) = out.pop_front() {
                        permit.success(rng.below(20_000_000));
                    }
                }
                6 => {
                    if let Some(permit) = out.pop_back() {
                        permit.dropped();
                    }
                }
                7 => drop(out.pop_front()),
                8 => {
                    let min = 1 + rng.below(40) as u32;
                    let max = min + rng.below(60) as u32;
                    l.set_bounds(min, max).unwrap();
                    bounds = (min, max);
                }
                _ => {
                    // Invalid bounds are refused and change nothing.
                    assert_eq!(l.set_bounds(0, 5), Err(LimitError::MinLimitZero));
                    assert!(l.set_bounds(9, 8).is_err());
                }
            }
            let now = l.limit();
            assert_eq!(l.bounds(), bounds);
            assert!(
                bounds.0 <= now && now <= bounds.1,
                "{now} outside {bounds:?}"
            );
            assert_eq!(l.in_flight() as usize, out.len());
        }
        drop(out);
        assert_conserved(l.stats());
    }
}

#[test]
fn set_bounds_clamps_the_limit() {
    let l = limit(GRADIENT, 1, 100, 50);
    l.set_bounds(1, 10).unwrap();
    assert_eq!(l.limit(), 10);
    l.set_bounds(20, 30).unwrap();
    assert_eq!(l.limit(), 20);
    l.set_bounds(1, 100).unwrap();
    assert_eq!(l.limit(), 20);
    let stats = l.stats();
    assert_eq!((stats.decreases, stats.increases), (1, 1));
}

#[test]
fn acquire_refuses_at_the_limit_and_frees_on_every_end() {
    let l = limit(AIMD, 3, 3, 3);
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    let c = l.try_acquire().unwrap();
    assert!(l.try_acquire().is_none());
    assert_eq!(l.in_flight(), 3);
    a.success(1);
    assert_eq!(l.in_flight(), 2);
    b.dropped();
    drop(c);
    assert_eq!(l.in_flight(), 0);
    assert_eq!(
        l.stats(),
        LimitStats {
            acquired: 3,
            rejected: 1,
            succeeded: 1,
            dropped: 1,
            ignored: 1,
            increases: 0,
            decreases: 0,
        }
    );
}

#[test]
fn owned_permits_move_into_threads() {
    let l = Arc::new(limit(AIMD, 1, 8, 4));
    let permits: Vec<_> = std::iter::from_fn(|| l.try_acquire_owned()).collect();
    assert_eq!(permits.len(), 4);
    let handles: Vec<_> = permits
        .into_iter()
        .enumerate()
        .map(|(i, permit)| {
            thread::spawn(move || match i {
                0 => permit.success(10),
                1 => permit.dropped(),
                _ => drop(permit),
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = l.stats();
    assert_eq!((stats.succeeded, stats.dropped, stats.ignored), (1, 1, 2));
    assert_eq!(l.in_flight(), 0);
}

/// Four threads acquire and end permits; a separate counter of the permits held shows the
/// in-flight count never passing the limit (fixed) or the maximum (adaptive).
#[test]
fn concurrent_acquire_respects_the_limit() {
    let rounds = if cfg!(miri) { 50 } else { 50_000 };
    for (algorithm, min, max, initial) in [(AIMD, 3, 3, 3), (AIMD, 1, 6, 2), (GRADIENT, 2, 5, 3)] {
        let l = Arc::new(limit(algorithm, min, max, initial));
        let held = Arc::new(AtomicU32::new(0));
        let max_held = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (l, held, max_held) =
                    (Arc::clone(&l), Arc::clone(&held), Arc::clone(&max_held));
                thread::spawn(move || {
                    let mut rng = Rng(t + 11);
                    for _ in 0..rounds {
                        let Some(permit) = l.try_acquire() else {
                            thread::yield_now();
                            continue;
                        };
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        max_held.fetch_max(now, Ordering::SeqCst);
                        assert!(now <= max);
                        held.fetch_sub(1, Ordering::SeqCst);
                        match rng.below(8) {
                            0 => permit.dropped(),
                            1 => drop(permit),
                            _ => permit.success(1_000 + rng.below(1_000)),
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let seen = max_held.load(Ordering::SeqCst);
        assert!(seen >= 1 && seen <= max, "held {seen} with max {max}");
        assert_eq!(l.in_flight(), 0);
        let stats = l.stats();
        assert_conserved(stats);
        assert!(stats.acquired > 0);
        assert!((min..=max).contains(&l.limit()));
    }
}
