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
    bbr_headroom: 0.5,
    bbr_window: 64,
};
/// Gradient, smoothing 0.2 and tolerance 1.5.
const GRADIENT: AdmissionConfig = AdmissionConfig {
    algorithm: Algorithm::Gradient,
    ..AIMD
};
/// BBR, headroom 0.5, a window of 64 samples.
const BBR: AdmissionConfig = AdmissionConfig {
    algorithm: Algorithm::Bbr,
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
    let cases: [(AdmissionConfig, LimitError, &str); 14] = [
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
        (
            AdmissionConfig {
                bbr_headroom: -0.1,
                ..base
            },
            LimitError::Headroom(-0.1),
            "bbr_headroom",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Bbr,
                bbr_headroom: 16.5,
                ..base
            },
            LimitError::Headroom(16.5),
            "bbr_headroom",
        ),
        (
            AdmissionConfig {
                bbr_window: 7,
                ..base
            },
            LimitError::Window(7),
            "bbr_window",
        ),
        (
            AdmissionConfig {
                algorithm: Algorithm::Bbr,
                bbr_window: (1 << 20) + 1,
                ..base
            },
            LimitError::Window((1 << 20) + 1),
            "bbr_window",
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
    let nan = AdmissionConfig {
        bbr_headroom: f64::NAN,
        ..base
    };
    assert_eq!(AdaptiveLimit::new(nan).unwrap_err().field(), "bbr_headroom");
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
        AdmissionConfig {
            algorithm: Algorithm::Bbr,
            bbr_headroom: 0.0,
            bbr_window: 8,
            ..base
        },
        AdmissionConfig {
            algorithm: Algorithm::Bbr,
            bbr_headroom: 16.0,
            bbr_window: 1 << 20,
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
        (4, BBR),
        (
            5,
            AdmissionConfig {
                bbr_headroom: 0.0,
                bbr_window: 8,
                ..BBR
            },
        ),
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
                7 if rng.below(4) == 0 => {
                    // Pressure: refused outside 0..=1, else taken at once.
                    assert!(l.set_pressure(1.5).is_err());
                    let share = [0.0, 0.3, 1.0][rng.below(3) as usize];
                    l.set_pressure(share).unwrap();
                    assert_eq!(l.pressure(), share);
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

#[test]
fn a_slip_holds_its_slot_until_attached_and_then_ends_as_a_permit() {
    let l = limit(AIMD, 2, 2, 2);
    let slips: Vec<_> = std::iter::from_fn(|| l.try_acquire_slip()).collect();
    assert_eq!(slips.len(), 2);
    assert_eq!(l.in_flight(), 2);
    assert_eq!(l.stats().rejected, 1);
    // The same record as the permit it stands for: in flight 1 and 2 at their acquires.
    assert_eq!(
        slips.iter().map(|s| s.in_flight).collect::<Vec<_>>(),
        [1, 2]
    );
    let mut slips = slips.into_iter();
    l.attach(slips.next().unwrap()).success(5);
    assert_eq!(l.in_flight(), 1);
    drop(l.attach(slips.next().unwrap()));
    assert_eq!(l.in_flight(), 0);
    let stats = l.stats();
    assert_conserved(stats);
    assert_eq!((stats.succeeded, stats.ignored), (1, 1));
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

/// A synthetic server on manual ticks (ns) for the BBR tests: `workers` slots, each run taking
/// `service` ns once it holds a slot, served first come first served; the clients keep the
/// limit full (every free permit is taken at once, so demand always exceeds capacity). The
/// latency a permit reports runs from its acquire to its end, queueing included, as the
/// executor measures it.
struct Server<'a> {
    limit: &'a AdaptiveLimit,
    workers: usize,
    service: u64,
    now: u64,
    /// Admitted, not yet started: (acquired at, permit).
    queue: VecDeque<(u64, Permit<&'a AdaptiveLimit>)>,
    /// Started: (ends at, acquired at, permit).
    running: Vec<(u64, u64, Permit<&'a AdaptiveLimit>)>,
}

impl<'a> Server<'a> {
    fn new(limit: &'a AdaptiveLimit, workers: usize, service: u64) -> Self {
        Self {
            limit,
            workers,
            service,
            now: 0,
            queue: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// Fills the limit, starts what fits on the workers, then moves the clock to the next end
    /// and ends every run due then with `success(latency)`. Returns the limit after it.
    fn step(&mut self) -> u32 {
        while let Some(permit) = self.limit.try_acquire() {
            self.queue.push_back((self.now, permit));
        }
        while self.running.len() < self.workers {
            let Some((at, permit)) = self.queue.pop_front() else {
                break;
            };
            self.running.push((self.now + self.service, at, permit));
        }
        let next = self
            .running
            .iter()
            .map(|r| r.0)
            .min()
            .expect("runs running");
        self.now = next;
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].0 == next {
                let (end, at, permit) = self.running.swap_remove(i);
                permit.success(end - at);
            } else {
                i += 1;
            }
        }
        self.limit.limit()
    }

    /// `steps` steps; the limits after each.
    fn run(&mut self, steps: usize) -> Vec<u32> {
        (0..steps).map(|_| self.step()).collect()
    }
}

/// The most frequent value (the highest among ties).
fn mode(values: &[u32]) -> u32 {
    let mut counts = std::collections::BTreeMap::new();
    for &v in values {
        *counts.entry(v).or_insert(0usize) += 1;
    }
    let top = counts.values().copied().max().unwrap();
    *counts.iter().rev().find(|(_, &c)| c == top).unwrap().0
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_converges_to_capacity_times_headroom() {
    // 4 workers, 1 ms each: capacity 4 runs at once (4 per ms × 1 ms); headroom 0.5 -> 6.
    for initial in [1, 6, 50] {
        let l = limit(BBR, 1, 100, initial);
        let mut server = Server::new(&l, 4, 1_000_000);
        server.run(2_000);
        let limits = server.run(2_000);
        assert_eq!(mode(&limits), 6, "from {initial}: {limits:?}");
        // Outside the brief RTT probes (half the estimate: 2) it stays at 6.
        assert!(
            limits.iter().all(|&x| x == 6 || x == 2),
            "from {initial}: {limits:?}"
        );
        let probing = limits.iter().filter(|&&x| x == 2).count();
        // Probes every 64 samples: at most a fifth of the steps here (a short window).
        assert!(probing > 0 && probing * 5 < limits.len(), "{probing}");
    }
    // Headroom 0: the limit sits one run above the estimate (4 + 1), so it can still probe up.
    let l = limit(
        AdmissionConfig {
            bbr_headroom: 0.0,
            ..BBR
        },
        1,
        100,
        1,
    );
    let mut server = Server::new(&l, 4, 1_000_000);
    server.run(2_000);
    assert_eq!(mode(&server.run(2_000)), 5);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_estimate_is_in_runs_not_time() {
    // Capacity 8 at 10 µs and at 10 ms alike: 12 with headroom 0.5.
    for service in [10_000, 10_000_000] {
        let l = limit(BBR, 1, 100, 16);
        let mut server = Server::new(&l, 8, service);
        server.run(3_000);
        assert_eq!(mode(&server.run(2_000)), 12, "service {service} ns");
    }
    // A server that slows down uniformly keeps its estimate: as many at once, each longer.
    let l = limit(BBR, 1, 100, 16);
    let mut server = Server::new(&l, 8, 1_000_000);
    server.run(3_000);
    server.service = 3_000_000;
    server.run(3_000);
    assert_eq!(mode(&server.run(2_000)), 12);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_falls_when_latency_grows() {
    // The server loses half its workers (a saturated CPU): the same runs take twice as long
    // once queued, and the limit falls from 12 to 6 within a few windows.
    let l = limit(BBR, 1, 100, 16);
    let mut server = Server::new(&l, 8, 1_000_000);
    server.run(3_000);
    assert_eq!(l.limit(), 12);
    server.workers = 4;
    let after = server.run(3_000);
    assert_eq!(mode(&after[2_000..]), 6, "{after:?}");
    // And climbs back when the workers return.
    server.workers = 8;
    let back = server.run(3_000);
    assert_eq!(mode(&back[2_000..]), 12, "{back:?}");
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_queueing_does_not_inflate_the_estimate() {
    // A limit far above capacity makes every sample queue; the RTT probes find the true
    // latency, so the estimate comes down instead of following the queue up.
    let l = limit(BBR, 1, 1_000, 1_000);
    let mut server = Server::new(&l, 4, 1_000_000);
    let limits = server.run(6_000);
    assert_eq!(mode(&limits[4_000..]), 6, "{:?}", &limits[4_000..]);
    assert!(limits.iter().all(|&x| x <= 1_000));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_drops_shrink_it_and_successes_recover() {
    let l = limit(BBR, 1, 100, 6);
    let mut server = Server::new(&l, 4, 1_000_000);
    server.run(2_000);
    // Step until outside a probe, so the drops act on the full limit.
    while l.limit() != 6 {
        server.step();
    }
    // The server's runs end as cancelled (ignored: the limit stays), then runs meet overload
    // one after another: the ceiling is 6 × 0.7^k, so 4.2, 2.94, 2.06, 1.44.
    let now = server.now;
    drop(server);
    assert_eq!(l.limit(), 6);
    let mut seen = Vec::new();
    for _ in 0..4 {
        l.try_acquire().unwrap().dropped();
        seen.push(l.limit());
    }
    assert_eq!(seen, [4, 2, 2, 1]);
    // Successes raise the ceiling by about one run per round: back to 6.
    let mut server = Server::new(&l, 4, 1_000_000);
    server.now = now;
    let back = server.run(500);
    assert_eq!(mode(&back[300..]), 6, "{back:?}");
    drop(server);
    assert_conserved(l.stats());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_pressure_scales_the_limit_and_holds_the_estimate() {
    let l = limit(BBR, 1, 100, 16);
    let mut server = Server::new(&l, 8, 1_000_000);
    server.run(3_000);
    while l.limit() != 12 {
        server.step();
    }
    l.set_pressure(0.5).unwrap();
    assert_eq!(l.limit(), 6);
    // Held low for many windows, the limit stays at half the capacity estimate rather than
    // learning its own restriction as the capacity.
    let held = server.run(5_000);
    assert_eq!(mode(&held[4_000..]), 6, "{held:?}");
    assert!(held.iter().all(|&x| x <= 6));
    l.set_pressure(1.0).unwrap();
    assert_eq!(l.limit(), 1, "full pressure: the minimum");
    l.set_pressure(0.0).unwrap();
    let back = server.run(2_000);
    assert_eq!(mode(&back[1_000..]), 12, "{back:?}");
    assert!(matches!(l.set_pressure(f64::NAN), Err(LimitError::Pressure(p)) if p.is_nan()));
    assert!(matches!(l.set_pressure(-0.1), Err(LimitError::Pressure(_))));
    assert_eq!(l.pressure(), 0.0);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_never_leaves_its_bounds() {
    // Bounds tighter than the estimate hold it, at every step, probes included.
    let l = limit(BBR, 3, 5, 4);
    let mut server = Server::new(&l, 8, 1_000_000);
    let limits = server.run(3_000);
    assert!(limits.iter().all(|&x| (3..=5).contains(&x)), "{limits:?}");
    assert_eq!(mode(&limits[1_000..]), 5);
    // A floor above the capacity (8) keeps even the probes above it.
    l.set_bounds(20, 30).unwrap();
    let limits = server.run(3_000);
    assert!(limits.iter().all(|&x| (20..=30).contains(&x)), "{limits:?}");
    drop(server);
    assert_conserved(l.stats());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a long arithmetic simulation; the atomics it shares are under Miri in the other tests, BBR's races in loom_bbr_pressure_and_delivered"
)]
fn bbr_keeps_its_estimate_through_a_quiet_spell() {
    let l = limit(BBR, 1, 100, 16);
    let mut server = Server::new(&l, 8, 1_000_000);
    server.run(3_000);
    while l.limit() != 12 {
        server.step();
    }
    drop(server);
    // One run at a time for many windows: app-limited samples (1 in flight, below the limit)
    // do not make the server look like a one-run server.
    let mut seen = Vec::new();
    for _ in 0..2_000 {
        l.try_acquire().unwrap().success(1_000_000);
        seen.push(l.limit());
    }
    assert_eq!(mode(&seen), 12, "{seen:?}");
    assert!(seen.iter().all(|&x| x == 12 || x == 4), "{seen:?}");
    // A fresh limit under the same quiet load has never had its limit in use: it keeps its
    // initial limit (BBR's startup never lowers its window) ...
    let quiet = limit(BBR, 1, 100, 16);
    for _ in 0..2_000 {
        quiet.try_acquire().unwrap().success(1_000_000);
    }
    assert_eq!(quiet.limit(), 16);
    // ... until the limit turns work away: then 16 runs served one at a time (the k-th ends
    // after k ms) show a one-run server, and the estimate rules: 1 × 2 (headroom 0.5, and
    // one above the estimate).
    let held: Vec<_> = (0..16).map(|_| quiet.try_acquire().unwrap()).collect();
    assert!(quiet.try_acquire().is_none());
    for (k, permit) in (1..).zip(held) {
        permit.success(k * 1_000_000);
    }
    assert_eq!(quiet.limit(), 2);
}

#[test]
fn bbr_fields_are_validated_in_the_whole_configuration() {
    use crate::config::{ConfigError, OptimizationConfig};
    for preset in [
        OptimizationConfig::latency(),
        OptimizationConfig::throughput(),
        OptimizationConfig::low_memory(),
    ] {
        assert_eq!(preset.adaptive_concurrency.bbr_headroom, 1.0);
        assert_eq!(preset.adaptive_concurrency.bbr_window, 256);
        let mut cfg = preset.clone();
        cfg.adaptive_concurrency.algorithm = Algorithm::Bbr;
        assert!(cfg.validate().is_ok());
        for (bad, field) in [
            (
                AdmissionConfig {
                    bbr_headroom: f64::INFINITY,
                    ..cfg.adaptive_concurrency
                },
                "adaptive_concurrency.bbr_headroom",
            ),
            (
                AdmissionConfig {
                    bbr_window: 0,
                    ..cfg.adaptive_concurrency
                },
                "adaptive_concurrency.bbr_window",
            ),
        ] {
            let mut c = cfg.clone();
            c.adaptive_concurrency = bad;
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
