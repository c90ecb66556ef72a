//! Loom models of [`AdaptiveLimit`]: every interleaving (up to the preemption bound) of the
//! acquire CAS, the release and the limit update under the (loom) mutex.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

use loom::sync::Arc;
use loom::thread;

use super::AdaptiveLimit;
use crate::config::{AdmissionConfig, Algorithm};

/// An AIMD limit (step 1, halving) from 1 up to `max_limit`, starting at 1.
fn aimd_limit(max_limit: u32) -> Arc<AdaptiveLimit> {
    let config = AdmissionConfig {
        enabled: true,
        algorithm: Algorithm::Aimd,
        min_limit: 1,
        max_limit,
        initial_limit: 1,
        aimd_increase: 1,
        aimd_backoff_ratio: 0.5,
        gradient_smoothing: 0.2,
        gradient_tolerance: 1.5,
        bbr_headroom: 0.5,
        bbr_window: 64,
    };
    Arc::new(AdaptiveLimit::new(config).unwrap())
}

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

/// Two threads each try twice to acquire against a fixed limit of 1 (the smallest there is)
/// and end their permits every way: success, dropped, ignored. A holder always sees exactly
/// one permit in flight, its own; at the end nothing is in flight, the limit has not moved and
/// `acquired == succeeded + dropped + ignored`, `acquired + rejected == attempts`.
#[test]
fn loom_acquire_release_limit_one() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let limit = aimd_limit(1);
        let worker = |t: u32| {
            let limit = Arc::clone(&limit);
            thread::spawn(move || {
                let mut ends = [0u64; 3];
                for round in 0..2 {
                    let Some(permit) = limit.try_acquire() else {
                        continue;
                    };
                    assert_eq!(permit.in_flight, 1, "admitted beside another permit");
                    assert_eq!(limit.in_flight(), 1, "in flight above the limit");
                    match (t + round) % 3 {
                        0 => {
                            permit.success(1_000);
                            ends[0] += 1;
                        }
                        1 => {
                            permit.dropped();
                            ends[1] += 1;
                        }
                        _ => {
                            drop(permit);
                            ends[2] += 1;
                        }
                    }
                }
                ends
            })
        };
        let a = worker(0);
        let b = worker(1);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());

        assert_eq!(limit.in_flight(), 0);
        assert_eq!(limit.limit(), 1);
        let stats = limit.stats();
        assert_eq!(
            (stats.succeeded, stats.dropped, stats.ignored),
            (a[0] + b[0], a[1] + b[1], a[2] + b[2])
        );
        assert_eq!(
            stats.acquired,
            stats.succeeded + stats.dropped + stats.ignored
        );
        assert_eq!(stats.acquired + stats.rejected, 4);
        assert!(
            stats.acquired >= 2,
            "an attempt was refused with nothing held"
        );
        assert_eq!((stats.increases, stats.decreases), (0, 0));
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}

/// The limit moves while permits come and go: bounds 1..=2, one thread ends its permits with
/// successes (raising the limit at saturation), the other with a drop and an ignore. The
/// in-flight count never passes the largest limit, the atomic limit always ends equal to the
/// one under the lock (it is published there), and as every change is by one here,
/// `limit == initial + increases - decreases`.
#[test]
fn loom_limit_moves_under_acquires() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let limit = aimd_limit(2);
        let succeeder = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(permit) = limit.try_acquire() {
                        assert!(permit.in_flight <= 2 && limit.in_flight() <= 2);
                        permit.success(1_000);
                    }
                }
            })
        };
        let dropper = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || {
                if let Some(permit) = limit.try_acquire() {
                    assert!(permit.in_flight <= 2 && limit.in_flight() <= 2);
                    permit.dropped();
                }
                drop(limit.try_acquire());
            })
        };
        succeeder.join().unwrap();
        dropper.join().unwrap();

        assert_eq!(limit.in_flight(), 0);
        let now = limit.limit();
        assert_eq!(
            now,
            limit.lock().limit,
            "the atomic limit strayed from the state's"
        );
        assert!((1..=2).contains(&now));
        let stats = limit.stats();
        assert_eq!(
            stats.acquired,
            stats.succeeded + stats.dropped + stats.ignored
        );
        assert_eq!(stats.acquired + stats.rejected, 4);
        assert_eq!(u64::from(now) + stats.decreases, 1 + stats.increases);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}

/// BBR's delivered count and pressure under interleavings: bounds 1..=3 from 2; one thread
/// ends two permits with successes, the other sets a pressure, ends a permit with a success,
/// and lifts the pressure. The atomic limit always ends equal to the one under the lock and
/// inside the bounds, nothing is left in flight, and every success or drop was counted once
/// as ended (`ended == succeeded + dropped`: each rate sample's delivered count is a
/// difference of this counter, so it is at least 1).
#[test]
fn loom_bbr_pressure_and_delivered() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let limit = Arc::new(
            AdaptiveLimit::new(AdmissionConfig {
                enabled: true,
                algorithm: Algorithm::Bbr,
                min_limit: 1,
                max_limit: 3,
                initial_limit: 2,
                aimd_increase: 1,
                aimd_backoff_ratio: 0.5,
                gradient_smoothing: 0.2,
                gradient_tolerance: 1.5,
                bbr_headroom: 0.5,
                bbr_window: 8,
            })
            .unwrap(),
        );
        let succeeder = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || {
                for _ in 0..2 {
                    if let Some(permit) = limit.try_acquire() {
                        assert!(limit.in_flight() <= 3);
                        permit.success(1_000);
                    }
                }
            })
        };
        let presser = {
            let limit = Arc::clone(&limit);
            thread::spawn(move || {
                limit.set_pressure(0.5).unwrap();
                if let Some(permit) = limit.try_acquire() {
                    permit.success(2_000);
                }
                limit.set_pressure(0.0).unwrap();
            })
        };
        succeeder.join().unwrap();
        presser.join().unwrap();

        assert_eq!(limit.in_flight(), 0);
        let now = limit.limit();
        assert_eq!(now, limit.lock().limit, "the atomic limit strayed");
        assert!((1..=3).contains(&now));
        assert_eq!(limit.pressure(), 0.0);
        let stats = limit.stats();
        assert_eq!(
            limit.ends.ended.load(crate::sync::Ordering::Relaxed),
            stats.succeeded + stats.dropped
        );
        assert_eq!(stats.acquired, stats.succeeded + stats.ignored);
        assert_eq!(stats.acquired + stats.rejected, 3);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}
