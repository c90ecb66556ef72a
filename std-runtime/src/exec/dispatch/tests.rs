//! The protocol's transitions, one thread at a time: (state, event) -> (state, answer).

use super::{count, Dispatchers, PLACE, QUEUED};
use crate::sync::Ordering;

fn at(max: usize, state: usize) -> Dispatchers {
    let d = Dispatchers::new(max);
    d.state.store(state, Ordering::Relaxed);
    d
}

fn state(d: &Dispatchers) -> usize {
    d.state.load(Ordering::Relaxed)
}

#[test]
fn a_submission_takes_a_free_place_or_sets_queued() {
    // (max, state before, claimed, state after)
    let table = [
        (1, 0, true, PLACE),
        (1, QUEUED, true, PLACE | QUEUED),
        (1, PLACE, false, PLACE | QUEUED),
        (1, PLACE | QUEUED, false, PLACE | QUEUED),
        (3, 2 * PLACE, true, 3 * PLACE),
        (3, 3 * PLACE, false, (3 * PLACE) | QUEUED),
    ];
    for (max, before, claimed, after) in table {
        let d = at(max, before);
        assert_eq!(d.submitted(), claimed, "{max} {before:#b}");
        assert_eq!(state(&d), after, "{max} {before:#b}");
        assert!(count(state(&d)) <= max);
    }
}

#[test]
fn a_leave_clears_queued_first_then_gives_the_place_up() {
    // (state before, left, state after)
    let table = [
        (PLACE, true, 0),
        (PLACE | QUEUED, false, PLACE),
        (2 * PLACE, true, PLACE),
        ((2 * PLACE) | QUEUED, false, 2 * PLACE),
    ];
    for (before, left, after) in table {
        let d = at(2, before);
        assert_eq!(d.try_leave(), left, "{before:#b}");
        assert_eq!(state(&d), after, "{before:#b}");
    }
}

#[test]
fn a_stop_hands_the_place_on_unless_nothing_is_queued() {
    // (queues empty, state before, hand on, state after)
    let table = [
        (false, PLACE, true, PLACE),
        (false, PLACE | QUEUED, true, PLACE | QUEUED),
        (true, PLACE | QUEUED, true, PLACE),
        (true, PLACE, false, 0),
    ];
    for (empty, before, hand_on, after) in table {
        let d = at(1, before);
        assert_eq!(d.stop(|| empty), hand_on, "{empty} {before:#b}");
        assert_eq!(state(&d), after, "{empty} {before:#b}");
    }
}

#[test]
fn a_round_trip_ends_where_it_began() {
    let d = Dispatchers::new(2);
    assert_eq!((d.max(), d.running()), (2, 0));
    assert!(d.submitted());
    assert!(d.submitted());
    assert!(!d.submitted());
    assert_eq!(d.running(), 2);
    // The first to leave finds `QUEUED` and looks again; then both leave.
    assert!(!d.try_leave());
    assert!(d.try_leave());
    assert!(d.try_leave());
    assert_eq!((d.running(), state(&d)), (0, 0));
}

#[test]
#[should_panic(expected = "at least one dispatcher")]
fn no_places_is_refused() {
    let _ = Dispatchers::new(0);
}
