use alloc::vec::Vec;

use crate::policy::{
    Breaker, BreakerConfig, BreakerConfigError, BreakerState, CallOutcome, IllegalTransition,
    Permit, Rejected, Transition, TransitionCounts,
};

/// Two failures in a row open it; no rate rule; 10 ticks open; 2 probes, 2 successes close.
const STREAK: BreakerConfig = BreakerConfig {
    consecutive_failures_to_open: 2,
    window_calls: 8,
    failure_rate_percent_to_open: 0,
    window_calls_min: 1,
    slow_call_ticks: 5,
    open_ticks: 10,
    half_open_probes_max: 2,
    half_open_successes_to_close: 2,
};

/// A breaker and an injected clock.
struct Sim {
    breaker: Breaker,
    now: u64,
    held: Vec<Permit>,
}

/// One event of a table row.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// Acquire (must succeed) and record at once.
    Call(CallOutcome, u64),
    /// Acquire and hold the permit (`true`: expected to succeed).
    Acquire(bool),
    /// Record held permit `i`.
    Record(usize, CallOutcome),
    /// Give held permit `i` back.
    Release(usize),
    /// Advance the clock.
    Tick(u64),
}

use CallOutcome::{Failure as F, Success as S};
use Ev::*;

impl Sim {
    fn new(config: BreakerConfig, now: u64) -> Self {
        Self {
            breaker: Breaker::new(config).unwrap(),
            now,
            held: Vec::new(),
        }
    }

    /// A breaker of `config` driven into `state` at `now`.
    fn in_state(config: BreakerConfig, state: BreakerState, now: u64) -> Self {
        let mut sim = Self::new(config, now);
        if state != BreakerState::Closed {
            while sim.breaker.state() == BreakerState::Closed {
                sim.apply(Call(F, 0));
            }
            if state == BreakerState::HalfOpen {
                sim.now = sim.now.saturating_add(config.open_ticks);
                sim.apply(Acquire(true));
                sim.apply(Release(0));
            }
        }
        assert_eq!(sim.breaker.state(), state);
        sim
    }

    fn apply(&mut self, ev: Ev) -> Option<Transition> {
        match ev {
            Call(outcome, latency) => {
                let permit = self.breaker.try_acquire(self.now).expect("call admitted");
                self.breaker.record(permit, outcome, latency, self.now)
            }
            Acquire(expect_ok) => {
                let got = self.breaker.try_acquire(self.now);
                assert_eq!(got.is_ok(), expect_ok, "{ev:?}: {got:?}");
                if let Ok(permit) = got {
                    self.held.push(permit);
                }
                None
            }
            Record(i, outcome) => {
                let permit = self.held.remove(i);
                self.breaker.record(permit, outcome, 0, self.now)
            }
            Release(i) => {
                let permit = self.held.remove(i);
                self.breaker.release(permit);
                None
            }
            Tick(ticks) => {
                self.now = self.now.saturating_add(ticks);
                None
            }
        }
    }
}

fn t(from: BreakerState, to: BreakerState) -> Option<Transition> {
    Some(Transition::new(from, to).unwrap())
}

#[test]
fn transition_table_allows_exactly_four() {
    let legal = [
        (BreakerState::Closed, BreakerState::Open),
        (BreakerState::Open, BreakerState::HalfOpen),
        (BreakerState::HalfOpen, BreakerState::Closed),
        (BreakerState::HalfOpen, BreakerState::Open),
    ];
    let mut indices = Vec::new();
    for from in BreakerState::ALL {
        for to in BreakerState::ALL {
            let result = Transition::new(from, to);
            if legal.contains(&(from, to)) {
                let tr = result.unwrap();
                assert_eq!((tr.from(), tr.to()), (from, to));
                indices.push(tr.index());
            } else {
                assert_eq!(result, Err(IllegalTransition { from, to }));
            }
        }
    }
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2, 3]);
    assert_eq!(Transition::COUNT, 4);
}

#[test]
fn state_event_table() {
    use BreakerState::{Closed, HalfOpen, Open};
    // (from, events, to, transition caused by the last event)
    let rows: &[(BreakerState, &[Ev], BreakerState, Option<Transition>)] = &[
        (Closed, &[Call(S, 0)], Closed, None),
        (Closed, &[Call(F, 0)], Closed, None),
        (Closed, &[Call(F, 0), Call(F, 0)], Open, t(Closed, Open)),
        (Closed, &[Call(F, 0), Call(S, 0), Call(F, 0)], Closed, None),
        (Closed, &[Call(S, 4), Call(S, 4)], Closed, None),
        (Closed, &[Call(S, 5), Call(S, 9)], Open, t(Closed, Open)),
        (
            Closed,
            &[Call(F, 0), Call(S, u64::MAX)],
            Open,
            t(Closed, Open),
        ),
        (Closed, &[Tick(u64::MAX)], Closed, None),
        (Closed, &[Acquire(true), Release(0)], Closed, None),
        (Open, &[Acquire(false)], Open, None),
        (Open, &[Tick(9), Acquire(false)], Open, None),
        (Open, &[Tick(10), Acquire(true)], HalfOpen, None),
        (Open, &[Tick(u64::MAX), Acquire(true)], HalfOpen, None),
        (HalfOpen, &[Acquire(true), Record(0, S)], HalfOpen, None),
        (
            HalfOpen,
            &[Acquire(true), Acquire(true), Record(0, S), Record(0, S)],
            Closed,
            t(HalfOpen, Closed),
        ),
        (
            HalfOpen,
            &[Acquire(true), Record(0, F)],
            Open,
            t(HalfOpen, Open),
        ),
        (
            HalfOpen,
            &[Acquire(true), Acquire(true), Acquire(false)],
            HalfOpen,
            None,
        ),
        (
            HalfOpen,
            &[
                Acquire(true),
                Acquire(true),
                Release(0),
                Acquire(true),
                Acquire(false),
            ],
            HalfOpen,
            None,
        ),
        (HalfOpen, &[Tick(u64::MAX), Acquire(true)], HalfOpen, None),
        // A probe that outlives its period is ignored.
        (
            HalfOpen,
            &[Acquire(true), Acquire(true), Record(1, F), Record(0, S)],
            Open,
            None,
        ),
    ];
    for (i, (from, events, to, last)) in rows.iter().enumerate() {
        let mut sim = Sim::in_state(STREAK, *from, 1_000);
        let mut caused = None;
        for ev in events.iter() {
            caused = sim.apply(*ev);
        }
        assert_eq!(sim.breaker.state(), *to, "row {i}: {from:?} {events:?}");
        assert_eq!(caused, *last, "row {i}: {from:?} {events:?}");
    }
}

#[test]
fn open_rejects_until_the_deadline_then_half_open_rejects_beyond_the_probes() {
    let mut sim = Sim::in_state(STREAK, BreakerState::Open, 50);
    assert_eq!(
        sim.breaker.try_acquire(59).unwrap_err(),
        Rejected {
            state: BreakerState::Open
        }
    );
    // Time running backwards keeps it open.
    assert!(sim.breaker.try_acquire(0).is_err());
    sim.now = 60;
    sim.apply(Acquire(true));
    sim.apply(Acquire(true));
    assert!(sim.held.iter().all(Permit::is_probe));
    assert_eq!(
        sim.breaker.try_acquire(60).unwrap_err(),
        Rejected {
            state: BreakerState::HalfOpen
        }
    );
}

#[test]
fn times_near_u64_max_saturate() {
    // Opened 5 ticks before the end of time with 100 ticks to wait: the deadline is u64::MAX.
    let mut sim = Sim::in_state(
        BreakerConfig {
            open_ticks: 100,
            ..STREAK
        },
        BreakerState::Open,
        u64::MAX - 5,
    );
    assert!(sim.breaker.try_acquire(u64::MAX - 1).is_err());
    sim.now = u64::MAX;
    sim.apply(Acquire(true));
    assert_eq!(sim.breaker.state(), BreakerState::HalfOpen);
    // A failing probe at u64::MAX with the longest open period reopens without overflow.
    assert_eq!(
        sim.apply(Record(0, F)),
        t(BreakerState::HalfOpen, BreakerState::Open)
    );
    assert!(sim.breaker.try_acquire(u64::MAX - 1).is_err());
    assert!(sim.breaker.try_acquire(u64::MAX).is_ok());

    let sim = Sim::in_state(
        BreakerConfig {
            open_ticks: u64::MAX,
            ..STREAK
        },
        BreakerState::Open,
        u64::MAX,
    );
    assert!(sim.breaker.try_acquire(u64::MAX).is_ok());

    // A deadline above 2^32 exercises both 32-bit halves.
    let opened = (1u64 << 32) - 1;
    let sim = Sim::in_state(
        BreakerConfig {
            open_ticks: 3,
            ..STREAK
        },
        BreakerState::Open,
        opened,
    );
    assert!(sim.breaker.try_acquire(opened + 2).is_err());
    assert!(sim.breaker.try_acquire(opened + 3).is_ok());
}

/// Rate rule only: 50% of the last 4 calls, once 4 were seen.
const RATE: BreakerConfig = BreakerConfig {
    consecutive_failures_to_open: 0,
    window_calls: 4,
    failure_rate_percent_to_open: 50,
    window_calls_min: 4,
    ..STREAK
};

#[test]
fn failure_rate_respects_the_minimum_calls_and_slides() {
    use BreakerState::{Closed, Open};
    let rows: &[(&[CallOutcome], BreakerState)] = &[
        (&[F, F, F], Closed),             // 100%, but only 3 calls
        (&[F, F, F, F], Open),            // 4 calls
        (&[S, F, S, F], Open),            // 50%
        (&[S, S, S, F], Closed),          // 25%
        (&[S, S, S, F, F], Open),         // last 4: S S F F
        (&[F, S, S, S, S, S, F], Closed), // the first failure slid out: S S S F
        (&[F, F, S, S, S, S, S, F], Closed),
        (&[F, S, S, S, S, F, S, F], Open), // last 4: S F S F
    ];
    for (outcomes, expected) in rows {
        let mut sim = Sim::new(RATE, 0);
        for outcome in outcomes.iter() {
            if sim.breaker.state() == Closed {
                sim.apply(Call(*outcome, 0));
            }
        }
        assert_eq!(sim.breaker.state(), *expected, "{outcomes:?}");
    }
    // A successful success streak never opens it.
    let mut sim = Sim::new(RATE, 0);
    for _ in 0..100 {
        sim.apply(Call(S, 0));
    }
    assert_eq!(sim.breaker.state(), Closed);
}

#[test]
fn window_of_256_calls_crosses_words() {
    let config = BreakerConfig {
        window_calls: 256,
        window_calls_min: 256,
        failure_rate_percent_to_open: 10,
        ..RATE
    };
    let mut sim = Sim::new(config, 0);
    // 25 failures spread over 256 calls: 9.8%, stays closed; the 26th opens it.
    for i in 0..256 {
        sim.apply(Call(if i % 10 == 3 && i < 250 { F } else { S }, 0));
    }
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
    assert_eq!(
        sim.apply(Call(F, 0)),
        t(BreakerState::Closed, BreakerState::Open)
    );
}

#[test]
fn slow_calls_count_as_failures() {
    let mut sim = Sim::new(STREAK, 0);
    sim.apply(Call(S, 4));
    sim.apply(Call(S, 5));
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
    assert_eq!(
        sim.apply(Call(S, 6)),
        t(BreakerState::Closed, BreakerState::Open)
    );
    // slow_call_ticks == 0 switches the rule off.
    let mut sim = Sim::new(
        BreakerConfig {
            slow_call_ticks: 0,
            ..STREAK
        },
        0,
    );
    for _ in 0..10 {
        sim.apply(Call(S, u64::MAX));
    }
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
}

#[test]
fn permits_from_an_earlier_period_are_ignored() {
    let mut sim = Sim::new(STREAK, 0);
    sim.apply(Acquire(true)); // held through the opening
    sim.apply(Call(F, 0));
    sim.apply(Call(F, 0));
    assert_eq!(sim.breaker.state(), BreakerState::Open);
    assert_eq!(sim.apply(Record(0, F)), None);
    sim.apply(Tick(10));
    sim.apply(Acquire(true));
    sim.apply(Acquire(true));
    sim.apply(Record(0, S));
    assert_eq!(
        sim.apply(Record(0, S)),
        t(BreakerState::HalfOpen, BreakerState::Closed)
    );
    // A closed permit of the first period, recorded in the second, changes nothing.
    sim.apply(Call(F, 0));
    let counts = sim.breaker.transition_counts();
    assert_eq!(
        counts,
        TransitionCounts {
            closed_to_open: 1,
            open_to_half_open: 1,
            half_open_to_closed: 1,
            half_open_to_open: 0
        }
    );
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
    // The window and streak were cleared by the opening: one failure is not two.
    assert_eq!(
        sim.apply(Call(F, 0)),
        t(BreakerState::Closed, BreakerState::Open)
    );
}

#[test]
fn transitions_are_counted_exactly() {
    let mut sim = Sim::new(
        BreakerConfig {
            open_ticks: 1,
            ..STREAK
        },
        0,
    );
    let cycles: usize = if cfg!(miri) { 5 } else { 1_000 };
    for i in 0..cycles {
        sim.apply(Call(F, 0));
        assert_eq!(
            sim.apply(Call(F, 0)),
            t(BreakerState::Closed, BreakerState::Open)
        );
        sim.apply(Tick(1));
        sim.apply(Acquire(true));
        if i % 2 == 0 {
            assert_eq!(
                sim.apply(Record(0, F)),
                t(BreakerState::HalfOpen, BreakerState::Open)
            );
            sim.apply(Tick(1));
            sim.apply(Acquire(true));
        }
        sim.apply(Acquire(true));
        sim.apply(Record(0, S));
        assert_eq!(
            sim.apply(Record(0, S)),
            t(BreakerState::HalfOpen, BreakerState::Closed)
        );
    }
    let counts = sim.breaker.transition_counts();
    let reopened = cycles.div_ceil(2);
    assert_eq!(counts.closed_to_open, cycles);
    assert_eq!(counts.half_open_to_open, reopened);
    assert_eq!(counts.open_to_half_open, cycles + reopened);
    assert_eq!(counts.half_open_to_closed, cycles);
    assert_eq!(counts.total(), 3 * cycles + 2 * reopened);
}

#[test]
fn config_validation_names_the_field() {
    let rows = [
        (BreakerConfig::DEFAULT, Ok(())),
        (
            BreakerConfig {
                window_calls: 0,
                ..STREAK
            },
            Err(BreakerConfigError::WindowCalls),
        ),
        (
            BreakerConfig {
                window_calls: 257,
                ..STREAK
            },
            Err(BreakerConfigError::WindowCalls),
        ),
        (
            BreakerConfig {
                failure_rate_percent_to_open: 101,
                ..STREAK
            },
            Err(BreakerConfigError::FailureRatePercent),
        ),
        (
            BreakerConfig {
                window_calls_min: 9,
                ..STREAK
            },
            Err(BreakerConfigError::WindowCallsMin),
        ),
        (
            BreakerConfig {
                window_calls_min: 0,
                ..STREAK
            },
            Err(BreakerConfigError::WindowCallsMin),
        ),
        (
            BreakerConfig {
                half_open_probes_max: 65,
                ..STREAK
            },
            Err(BreakerConfigError::HalfOpenProbesMax),
        ),
        (
            BreakerConfig {
                half_open_probes_max: 0,
                ..STREAK
            },
            Err(BreakerConfigError::HalfOpenProbesMax),
        ),
        (
            BreakerConfig {
                half_open_successes_to_close: 3,
                ..STREAK
            },
            Err(BreakerConfigError::HalfOpenSuccessesToClose),
        ),
        (
            BreakerConfig {
                half_open_probes_max: 64,
                half_open_successes_to_close: 64,
                window_calls: 256,
                ..STREAK
            },
            Ok(()),
        ),
    ];
    for (config, expected) in rows {
        assert_eq!(config.validate(), expected, "{config:?}");
        assert_eq!(Breaker::new(config).map(|_| ()), expected);
    }
}

#[test]
fn probe_bound_of_64_fills_the_state_word_field() {
    let config = BreakerConfig {
        half_open_probes_max: 64,
        half_open_successes_to_close: 64,
        ..STREAK
    };
    let mut sim = Sim::in_state(config, BreakerState::Open, 0);
    sim.apply(Tick(10));
    for _ in 0..64 {
        sim.apply(Acquire(true));
    }
    sim.apply(Acquire(false));
    for _ in 0..63 {
        assert_eq!(sim.apply(Record(0, S)), None);
    }
    assert_eq!(sim.breaker.state(), BreakerState::HalfOpen);
    assert_eq!(
        sim.apply(Record(0, S)),
        t(BreakerState::HalfOpen, BreakerState::Closed)
    );
}

#[test]
fn threads_share_a_breaker_and_count_transitions_exactly() {
    use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};

    use crate::policy::Rng;

    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 3,
            window_calls: 16,
            failure_rate_percent_to_open: 40,
            window_calls_min: 8,
            slow_call_ticks: 0,
            open_ticks: 20,
            half_open_probes_max: 3,
            half_open_successes_to_close: 2,
        })
        .unwrap(),
    );
    let clock = Arc::new(AtomicU64::new(0));
    let reported = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let calls = if cfg!(miri) { 50 } else { 20_000 };
    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let (breaker, clock, reported) = (breaker.clone(), clock.clone(), reported.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed);
                let mut admitted = 0usize;
                for _ in 0..calls {
                    let now = clock.fetch_add(1, Ordering::Relaxed);
                    let Ok(permit) = breaker.try_acquire(now) else {
                        continue;
                    };
                    admitted += 1;
                    let outcome = if rng.below(3) == 0 { F } else { S };
                    if let Some(tr) = breaker.record(permit, outcome, 0, now) {
                        reported[tr.index()].fetch_add(1, Ordering::Relaxed);
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(admitted > 0);
    // With no record in flight, the clean bit is set only over healthy statistics.
    let (clean, healthy) = breaker.clean();
    assert!(!clean || healthy);
    let (count, bits) = breaker.failure_counts();
    assert_eq!(count, bits);
    // Every call not admitted was counted as refused, exactly once.
    assert_eq!(breaker.refusals(), 4 * calls - admitted);
    let counts = breaker.transition_counts();
    // Every transition a record made was reported by exactly one caller.
    assert_eq!(reported[0].load(Ordering::Relaxed), counts.closed_to_open);
    assert_eq!(
        reported[2].load(Ordering::Relaxed),
        counts.half_open_to_closed
    );
    assert_eq!(
        reported[3].load(Ordering::Relaxed),
        counts.half_open_to_open
    );
    if !cfg!(miri) {
        assert!(counts.closed_to_open > 0, "{counts:?}");
    }
    // The counts are a walk from Closed to the final state.
    let (c, o, h) = match breaker.state() {
        BreakerState::Closed => (0, 0, 0),
        BreakerState::Open => (1, 1, 0),
        BreakerState::HalfOpen => (1, 0, 1),
    };
    assert_eq!(counts.closed_to_open, counts.half_open_to_closed + c);
    assert_eq!(
        counts.closed_to_open + counts.half_open_to_open,
        counts.open_to_half_open + o
    );
    assert_eq!(
        counts.open_to_half_open,
        counts.half_open_to_closed + counts.half_open_to_open + h
    );
}

#[test]
fn names_and_messages() {
    let message = alloc::format!(
        "{}",
        IllegalTransition {
            from: BreakerState::Open,
            to: BreakerState::Closed
        }
    );
    assert_eq!(message, "illegal breaker transition open -> closed");
    let message = alloc::format!(
        "{}",
        Rejected {
            state: BreakerState::Open
        }
    );
    assert_eq!(message, "circuit breaker is open");
    assert_eq!(
        alloc::format!("{}", BreakerConfigError::WindowCalls),
        "breaker window_calls is not in 1..=256"
    );
}

#[test]
fn only_the_permit_that_half_opens_the_breaker_reports_the_transition() {
    let config = BreakerConfig {
        consecutive_failures_to_open: 1,
        open_ticks: 10,
        half_open_probes_max: 2,
        half_open_successes_to_close: 2,
        ..BreakerConfig::DEFAULT
    };
    let b = Breaker::new(config).unwrap();
    let closed = b.try_acquire(0).unwrap();
    assert_eq!(closed.transition(), None);
    b.record(closed, CallOutcome::Failure, 0, 0);
    assert_eq!(b.state(), BreakerState::Open);
    let first = b.try_acquire(10).unwrap();
    let t = first.transition().expect("the first probe half-opened it");
    assert_eq!(
        (t.from(), t.to()),
        (BreakerState::Open, BreakerState::HalfOpen)
    );
    let second = b.try_acquire(10).unwrap();
    assert!(second.is_probe());
    assert_eq!(second.transition(), None);
}

/// `STREAK` with no slow-call rule.
const QUICK: BreakerConfig = BreakerConfig {
    slow_call_ticks: 0,
    ..STREAK
};

#[test]
fn a_fresh_breaker_becomes_clean_once_its_window_fills_with_successes() {
    let mut sim = Sim::new(QUICK, 0);
    assert_eq!(sim.breaker.clean(), (false, false));
    for i in 1..QUICK.window_calls {
        assert_eq!(sim.apply(Call(S, 0)), None);
        assert_eq!(sim.breaker.clean(), (false, false), "after {i} successes");
    }
    assert_eq!(sim.apply(Call(S, 0)), None);
    assert_eq!(sim.breaker.clean(), (true, true));
    // More successes keep it clean and write nothing.
    for _ in 0..3 * QUICK.window_calls {
        assert_eq!(sim.apply(Call(S, 0)), None);
        assert_eq!(sim.breaker.clean(), (true, true));
    }
    assert_eq!(sim.breaker.failure_counts(), (0, 0));
    assert_eq!(sim.breaker.transition_counts().total(), 0);
}

#[test]
fn a_failure_makes_it_unclean_and_the_next_successes_reset_the_streak_as_before() {
    let mut sim = Sim::new(QUICK, 0);
    for _ in 0..QUICK.window_calls {
        sim.apply(Call(S, 0));
    }
    assert_eq!(sim.breaker.clean(), (true, true));
    assert_eq!(sim.apply(Call(F, 0)), None);
    assert_eq!(sim.breaker.clean(), (false, false));
    assert_eq!(sim.breaker.failure_counts(), (1, 1));
    // The success resets the streak: the next failure is the first of a new one.
    assert_eq!(sim.apply(Call(S, 0)), None);
    assert_eq!(
        sim.breaker.clean(),
        (false, false),
        "the failure is still in the window"
    );
    assert_eq!(sim.apply(Call(F, 0)), None);
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
    // Clean again once the window holds successes only: `window_calls` since that failure.
    for i in 1..QUICK.window_calls {
        sim.apply(Call(S, 0));
        assert_eq!(sim.breaker.clean(), (false, false), "after {i} successes");
    }
    sim.apply(Call(S, 0));
    assert_eq!(sim.breaker.clean(), (true, true));
    // A slow success is a failure: it clears the bit too, and counts in the streak.
    let slow = Breaker::new(STREAK).unwrap();
    for _ in 0..STREAK.window_calls {
        let permit = slow.try_acquire(0).unwrap();
        assert_eq!(slow.record(permit, S, 4, 0), None);
    }
    assert_eq!(slow.clean(), (true, true));
    let permit = slow.try_acquire(0).unwrap();
    assert_eq!(slow.record(permit, S, 5, 0), None);
    assert_eq!(slow.clean(), (false, false));
    let permit = slow.try_acquire(0).unwrap();
    assert_eq!(
        slow.record(permit, S, u64::MAX, 0),
        t(BreakerState::Closed, BreakerState::Open)
    );
    assert_eq!(
        slow.clean(),
        (false, false),
        "an open breaker is never clean"
    );
}

#[test]
fn the_clean_bit_is_never_a_transition() {
    let sim = Sim::new(
        BreakerConfig {
            consecutive_failures_to_open: 0,
            window_calls: 1,
            ..QUICK
        },
        0,
    );
    let flips = if cfg!(miri) { 20 } else { 2_000 };
    for i in 0..flips {
        let outcome = if i % 2 == 0 { S } else { F };
        let permit = sim.breaker.try_acquire(0).unwrap();
        assert!(!permit.is_probe());
        assert_eq!(permit.transition(), None);
        assert_eq!(sim.breaker.record(permit, outcome, 0, 0), None);
        assert_eq!(sim.breaker.clean(), (i % 2 == 0, i % 2 == 0));
        assert_eq!(sim.breaker.state(), BreakerState::Closed);
    }
    assert_eq!(sim.breaker.transition_counts(), TransitionCounts::default());
    assert_eq!(sim.breaker.refusals(), 0);
}

#[test]
fn permits_across_a_clean_flip_are_still_current() {
    let fill = |sim: &mut Sim| {
        for _ in 0..QUICK.window_calls {
            sim.apply(Call(S, 0));
        }
        assert_eq!(sim.breaker.clean(), (true, true));
    };
    // Taken unclean, recorded clean: the failure counts in the streak.
    let mut sim = Sim::new(QUICK, 0);
    sim.apply(Acquire(true));
    fill(&mut sim);
    assert_eq!(sim.apply(Record(0, F)), None);
    assert_eq!(sim.breaker.clean(), (false, false));
    assert_eq!(
        sim.apply(Call(F, 0)),
        t(BreakerState::Closed, BreakerState::Open)
    );

    // Taken clean, recorded after a failure made it unclean: a failure counts...
    let mut sim = Sim::new(QUICK, 0);
    fill(&mut sim);
    sim.apply(Acquire(true));
    sim.apply(Acquire(true));
    assert_eq!(sim.held[0], sim.held[1]);
    assert_eq!(sim.apply(Call(F, 0)), None);
    assert_eq!(
        sim.apply(Record(0, F)),
        t(BreakerState::Closed, BreakerState::Open)
    );
    assert_eq!(sim.apply(Record(0, S)), None, "the period ended");

    // ... and a success resets the streak (it is not taken for a healthy one).
    let mut sim = Sim::new(QUICK, 0);
    fill(&mut sim);
    sim.apply(Acquire(true));
    let clean_permit = sim.breaker.try_acquire(0).unwrap();
    assert_eq!(sim.apply(Call(F, 0)), None);
    assert_eq!(
        sim.held[0], clean_permit,
        "one period, whatever the clean bit"
    );
    assert_eq!(sim.breaker.record(clean_permit, S, 0, 0), None);
    assert_eq!(sim.apply(Call(F, 0)), None, "the success reset the streak");
    assert_eq!(sim.breaker.state(), BreakerState::Closed);

    // Taken clean, recorded clean again after a failure and a refill: a later generation of
    // the same period, still current (its success writes nothing).
    fill(&mut sim);
    assert_eq!(sim.apply(Record(0, S)), None);
    assert_eq!(sim.breaker.clean(), (true, true));
    assert_eq!(sim.breaker.transition_counts().total(), 0);
}

#[test]
fn a_permit_from_before_an_opening_never_makes_the_next_period_clean() {
    let config = BreakerConfig {
        window_calls: 1,
        open_ticks: 1,
        half_open_probes_max: 1,
        half_open_successes_to_close: 1,
        ..QUICK
    };
    let mut sim = Sim::new(config, 0);
    sim.apply(Call(S, 0));
    assert_eq!(sim.breaker.clean(), (true, true));
    sim.apply(Acquire(true)); // clean, held through the cycle
    sim.apply(Call(F, 0));
    assert_eq!(
        sim.apply(Call(F, 0)),
        t(BreakerState::Closed, BreakerState::Open)
    );
    assert_eq!(sim.breaker.clean(), (false, false));
    sim.apply(Tick(1));
    sim.apply(Acquire(true));
    assert_eq!(
        sim.apply(Record(1, S)),
        t(BreakerState::HalfOpen, BreakerState::Closed)
    );
    assert_eq!(
        sim.breaker.clean(),
        (false, false),
        "a new period starts unclean"
    );
    assert_eq!(sim.apply(Record(0, S)), None);
    assert_eq!(
        sim.breaker.clean(),
        (false, false),
        "a stale success writes nothing"
    );
    sim.apply(Call(S, 0));
    assert_eq!(sim.breaker.clean(), (true, true));
}

#[test]
fn the_failure_generation_wraps_within_a_period() {
    // No rule can open it: every failure stays in one closed period, each one stepping the
    // generation, past its 14 bits.
    let config = BreakerConfig {
        consecutive_failures_to_open: 0,
        failure_rate_percent_to_open: 0,
        window_calls: 2,
        ..QUICK
    };
    let mut sim = Sim::new(config, 0);
    let rounds = if cfg!(miri) { 20 } else { (1 << 14) + 3 };
    for _ in 0..rounds {
        assert_eq!(sim.apply(Call(F, 0)), None);
        assert_eq!(sim.breaker.clean(), (false, false));
        sim.apply(Call(S, 0));
        sim.apply(Call(S, 0));
        assert_eq!(sim.breaker.clean(), (true, true));
    }
    assert_eq!(sim.breaker.state(), BreakerState::Closed);
    assert_eq!(sim.breaker.transition_counts().total(), 0);
}
