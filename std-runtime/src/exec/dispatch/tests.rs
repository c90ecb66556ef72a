//! The protocol's transitions, one thread at a time: (state, event) -> (state, answer).

use super::{count, Dispatchers, Empty, LINGER, LINGER_TURNS, PLACE, QUEUED};
use crate::sync::{current_cpu, same_cpu, Ordering, NO_CPU};

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
        assert_eq!(d.submitted(NO_CPU), claimed, "{max} {before:#b}");
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
    assert!(d.submitted(NO_CPU));
    assert!(d.submitted(NO_CPU));
    assert!(!d.submitted(NO_CPU));
    assert_eq!(d.running(), 2);
    // The first to leave finds `QUEUED` and looks again; then both leave.
    assert!(!d.try_leave());
    assert!(d.try_leave());
    assert!(d.try_leave());
    assert_eq!((d.running(), state(&d)), (0, 0));
}

#[test]
fn a_submission_leaves_its_job_to_a_lingering_dispatcher() {
    // (max, state before, claimed, state after): with `LINGER` set, a free place is not
    // taken; `QUEUED` is set for the lingering dispatcher (which holds a place).
    let table = [
        (1, PLACE | LINGER, false, PLACE | LINGER | QUEUED),
        (2, PLACE | LINGER, false, PLACE | LINGER | QUEUED),
        (2, PLACE | LINGER | QUEUED, false, PLACE | LINGER | QUEUED),
        (
            3,
            (2 * PLACE) | LINGER,
            false,
            (2 * PLACE) | LINGER | QUEUED,
        ),
    ];
    for (max, before, claimed, after) in table {
        let d = at(max, before);
        assert_eq!(d.submitted(NO_CPU), claimed, "{max} {before:#b}");
        assert_eq!(state(&d), after, "{max} {before:#b}");
    }
}

#[test]
fn a_dispatcher_finding_the_queues_empty_looks_again_lingers_or_leaves() {
    // (state before, what next, state after)
    let table = [
        (PLACE | QUEUED, Empty::LookAgain, PLACE),
        (PLACE, Empty::Linger, PLACE | LINGER),
        (2 * PLACE, Empty::Linger, (2 * PLACE) | LINGER),
        // Another one lingers: this one leaves, the other keeps its bit and place.
        ((2 * PLACE) | LINGER, Empty::Left, PLACE | LINGER),
        // `QUEUED` first, whoever lingers.
        (
            (2 * PLACE) | LINGER | QUEUED,
            Empty::LookAgain,
            (2 * PLACE) | LINGER,
        ),
    ];
    for (before, next, after) in table {
        let d = at(2, before);
        assert_eq!(d.try_linger(), next, "{before:#b}");
        assert_eq!(state(&d), after, "{before:#b}");
    }
}

#[test]
fn a_linger_ends_looking_again_when_queued_else_leaving() {
    // (state before, left, state after)
    let table = [
        (PLACE | LINGER, true, 0),
        (PLACE | LINGER | QUEUED, false, PLACE),
        ((2 * PLACE) | LINGER, true, PLACE),
        ((2 * PLACE) | LINGER | QUEUED, false, 2 * PLACE),
    ];
    for (before, left, after) in table {
        let d = at(2, before);
        assert_eq!(d.queued(), before & QUEUED != 0);
        assert_eq!(d.end_linger(), left, "{before:#b}");
        assert_eq!(state(&d), after, "{before:#b}");
    }
}

#[test]
fn a_linger_returns_at_once_when_queued_and_after_its_bound_otherwise() {
    let d = at(1, PLACE | LINGER | QUEUED);
    d.linger();
    assert_eq!(
        state(&d),
        PLACE | LINGER | QUEUED,
        "a linger only reads the word"
    );
    // Nothing queued: it returns after its bound (it does not wait for ever).
    let d = at(1, PLACE | LINGER);
    d.linger();
    assert!(d.end_linger(), "{:#b}", state(&d));
    assert_eq!(state(&d), 0);
}

#[test]
fn a_linger_sees_a_submission_from_another_thread() {
    // A dispatcher lingers (on this thread) while another thread submits: `submitted` sets
    // `QUEUED`, the linger returns, and its end looks again. The linger is short (10 µs), so
    // the submission may come after it: then the linger ends by leaving, and the submission
    // (after the leave) takes the free place. Either way the job is seen, by exactly one.
    // Fewer rounds under Miri, where each linger's clock is emulated.
    for _ in 0..if cfg!(miri) { 4 } else { 200 } {
        let d = Dispatchers::new(1);
        assert!(d.submitted(NO_CPU));
        assert_eq!(d.try_linger(), Empty::Linger);
        std::thread::scope(|s| {
            let submitter = s.spawn(|| d.submitted(NO_CPU));
            d.linger();
            let left = d.end_linger();
            let claimed = submitter.join().unwrap();
            // Looked again (kept the place), or left and the submitter took it.
            assert_eq!(left, claimed);
        });
        // The one place is held by exactly one dispatcher (the one that looked again, or
        // the submitter's fresh one), with nothing pending in the word.
        assert_eq!(state(&d), PLACE);
    }
}

#[test]
fn a_linger_skips_its_spin_only_after_a_submitter_on_its_own_cpu() {
    let d = Dispatchers::new(1);
    // No submitter seen yet, or one whose CPU is unknown: spin.
    assert_eq!(d.linger_turns(3), LINGER_TURNS);
    assert!(d.submitted(NO_CPU));
    assert_eq!(d.linger_turns(3), LINGER_TURNS);
    assert_eq!(d.linger_turns(NO_CPU), LINGER_TURNS);
    // The last submitter ran on CPU 3: a linger there does not spin, one elsewhere does.
    assert_eq!(d.try_linger(), Empty::Linger);
    assert!(!d.submitted(3));
    assert_eq!(d.linger_turns(3), 0);
    assert_eq!(d.linger_turns(2), LINGER_TURNS);
    assert!(!same_cpu(NO_CPU, NO_CPU));
}

#[test]
fn a_lingering_dispatcher_tells_its_cpu_until_the_linger_ends() {
    let d = Dispatchers::new(1);
    assert!(d.submitted(NO_CPU));
    assert_eq!(d.lingers_on(), NO_CPU, "nobody lingers yet");
    assert_eq!(d.try_linger(), Empty::Linger);
    d.linger();
    // The thread may have moved since, so only the kind of answer is checked: a CPU on
    // Linux (outside Miri), none elsewhere.
    if cfg!(all(target_os = "linux", not(miri))) {
        assert_ne!(d.lingers_on(), NO_CPU);
        assert_ne!(current_cpu(), NO_CPU);
    } else {
        assert_eq!(d.lingers_on(), NO_CPU);
    }
    assert!(d.end_linger());
    assert_eq!(d.lingers_on(), NO_CPU, "a linger's end clears it");
}

#[cfg(all(target_os = "linux", not(miri)))]
#[test]
fn a_linger_beside_its_submitter_moves_off_its_cpu_once_a_gap() {
    use crate::sync::affinity;
    // On a thread of its own: its pace starts afresh, and its pin ends with it.
    std::thread::spawn(|| {
        let all = affinity::get();
        let d = Dispatchers::new(1);
        let moves = || d.moves.load(Ordering::Relaxed);
        let start = std::time::Instant::now();
        // This thread is both the submitter and the dispatcher: its linger is beside it.
        let here = current_cpu();
        assert!(d.submitted(here));
        assert_eq!(d.try_linger(), Empty::Linger);
        d.linger();
        if affinity::count(&all) >= 2 {
            assert_eq!(moves(), 1, "moved off the submitter's CPU");
            assert_ne!(d.lingers_on(), here, "lingered on the CPU it moved to");
        } else {
            assert_eq!(moves(), 0, "no other CPU to move to");
        }
        assert!(affinity::same(&affinity::get(), &all), "affinity restored");
        assert!(d.end_linger());
        // Beside its submitter again at once: paced, it does not move before the gap ends.
        let first = moves();
        assert!(d.submitted(current_cpu()));
        assert_eq!(d.try_linger(), Empty::Linger);
        d.linger();
        let second = moves();
        if start.elapsed() < super::MOVE_GAP {
            assert_eq!(second, first, "no move within the gap");
        } else {
            // Descheduled past the gap: it may have moved once more.
            assert!(second - first <= 1, "{first} then {second}");
        }
        assert!(d.end_linger());
        // Pinned to one CPU, it stays, and lingers there.
        let pin = affinity::only(current_cpu());
        affinity::set(&pin);
        std::thread::sleep(super::MOVE_GAP);
        let before = moves();
        assert!(d.submitted(current_cpu()));
        assert_eq!(d.try_linger(), Empty::Linger);
        d.linger();
        assert_eq!(moves(), before, "nowhere to move to");
        assert!(affinity::same(&affinity::get(), &pin), "still pinned");
        assert!(d.end_linger());
    })
    .join()
    .unwrap();
}

#[test]
#[should_panic(expected = "at least one dispatcher")]
fn no_places_is_refused() {
    let _ = Dispatchers::new(0);
}
