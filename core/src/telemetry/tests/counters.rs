use std::collections::BTreeSet;

use super::Rng;
use crate::policy::BreakerState;
use crate::telemetry::{Counter, Counters, Event, EventKind, StepOutcome};

#[test]
fn counters_are_exact_against_a_model() {
    let mut rng = Rng::new(1);
    let mut counters = Counters::new();
    let mut model = [0u64; Counter::COUNT];
    for _ in 0..if cfg!(miri) { 50 } else { 100_000 } {
        let counter = Counter::ALL[rng.below(Counter::COUNT as u64) as usize];
        let n = rng.below(4);
        if n == 1 {
            counters.increment(counter);
        } else {
            counters.add_n(counter, n);
        }
        model[counter.index()] += n;
    }
    for (counter, value) in counters.iter() {
        assert_eq!(value, model[counter.index()], "{}", counter.name());
    }
}

#[test]
fn add_sums_every_counter_and_saturates() {
    let mut a = Counters::new();
    let mut b = Counters::new();
    for (i, &counter) in Counter::ALL.iter().enumerate() {
        a.add_n(counter, i as u64);
        b.add_n(counter, 100 * i as u64);
    }
    a.add(&b);
    for (i, &counter) in Counter::ALL.iter().enumerate() {
        assert_eq!(a.get(counter), 101 * i as u64);
    }
    b.add_n(Counter::Retries, u64::MAX);
    assert_eq!(b.get(Counter::Retries), u64::MAX);
    a.add(&b);
    assert_eq!(a.get(Counter::Retries), u64::MAX);
    a.reset();
    assert_eq!(a, Counters::new());
}

#[test]
fn counter_indices_and_names_are_distinct() {
    for (i, counter) in Counter::ALL.iter().enumerate() {
        assert_eq!(counter.index(), i);
    }
    let names: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names.len(), Counter::COUNT);
    assert!(names
        .iter()
        .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
}

#[test]
fn events_map_to_counters_table() {
    use BreakerState::*;
    let table: &[(EventKind, Option<Counter>)] = &[
        (EventKind::StepStart, Some(Counter::StepsRun)),
        (
            EventKind::StepEnd {
                outcome: StepOutcome::Succeeded,
            },
            Some(Counter::StepsSucceeded),
        ),
        (
            EventKind::StepEnd {
                outcome: StepOutcome::Failed,
            },
            Some(Counter::StepsFailed),
        ),
        (
            EventKind::StepEnd {
                outcome: StepOutcome::Skipped,
            },
            Some(Counter::StepsSkipped),
        ),
        (
            EventKind::StepEnd {
                outcome: StepOutcome::Aborted,
            },
            Some(Counter::StepsAborted),
        ),
        (EventKind::Retry { attempt: 2 }, Some(Counter::Retries)),
        (EventKind::CacheHit, Some(Counter::CacheHits)),
        (EventKind::CacheMiss, Some(Counter::CacheMisses)),
        (
            EventKind::Fallback { to_step: 3 },
            Some(Counter::FallbacksUsed),
        ),
        (EventKind::BreakerRejected, Some(Counter::BreakerRejections)),
        (
            EventKind::BreakerTransition {
                from: Closed,
                to: Open,
            },
            Some(Counter::BreakerTrips),
        ),
        (
            EventKind::BreakerTransition {
                from: HalfOpen,
                to: Open,
            },
            Some(Counter::BreakerTrips),
        ),
        (
            EventKind::BreakerTransition {
                from: Open,
                to: HalfOpen,
            },
            None,
        ),
        (
            EventKind::BreakerTransition {
                from: HalfOpen,
                to: Closed,
            },
            None,
        ),
        (EventKind::UsageDenied, Some(Counter::UsageDenials)),
    ];
    for &(kind, expected) in table {
        assert_eq!(Counter::of_event(kind), expected, "{kind:?}");
        let mut counters = Counters::new();
        counters.count_event(&Event::new(0, 0, kind));
        let total: u64 = counters.iter().map(|(_, v)| v).sum();
        assert_eq!(total, u64::from(expected.is_some()), "{kind:?}");
        if let Some(counter) = expected {
            assert_eq!(counters.get(counter), 1, "{kind:?}");
        }
    }
}
