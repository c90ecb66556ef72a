//! Unit tests of [`Room`]: the flag follows the list, a wake takes the first waiter, a
//! woken waiter keeps its place, a wake not used goes on, close wakes everyone.

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::sync::Arc;
use std::task::{Wake as StdWake, Waker};

use super::*;

/// A waker that counts its wakes.
struct Counter(AtomicUsize);

impl StdWake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

fn counting() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (Arc::clone(&c), Waker::from(c))
}

fn woken(c: &Counter) -> usize {
    c.0.load(StdOrdering::SeqCst)
}

#[test]
fn the_flag_is_set_exactly_while_a_waiter_is_registered_and_ends_keep_the_count() {
    let room = Room::new();
    room.begin();
    room.begin();
    assert_eq!((room.pending(), room.has_waiters()), (2, false));
    let (c, w) = counting();
    let mut waiter = Waiter::default();
    assert_eq!(room.enter(&mut waiter, Some(&w)), Entered::Waiting);
    assert_eq!((room.pending(), room.has_waiters()), (2, true));
    assert!(!room.end(), "one of two ended");
    assert_eq!(woken(&c), 1, "an end wakes the registered waiter");
    assert_eq!((room.pending(), room.has_waiters()), (1, false));
    assert!(room.end(), "the last one ended");
    assert_eq!(woken(&c), 1, "nobody registered: no wake");
    room.leave(&mut waiter, true);
    assert!(!room.has_waiters());
}

#[test]
fn wakes_go_first_come_first_served_and_a_woken_waiter_keeps_its_place() {
    let room = Room::new();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let (mut a, mut b) = (Waiter::default(), Waiter::default());
    assert_eq!(room.enter(&mut a, Some(&wa)), Entered::Waiting);
    assert_eq!(room.enter(&mut b, Some(&wb)), Entered::Waiting);
    room.wake_one();
    assert_eq!((woken(&ca), woken(&cb)), (1, 0));
    // `a` failed again: it goes back before `b`.
    assert_eq!(room.enter(&mut a, Some(&wa)), Entered::Waiting);
    room.wake_one();
    assert_eq!((woken(&ca), woken(&cb)), (2, 0));
    // `a` gets in; `b` is woken next.
    room.leave(&mut a, true);
    room.wake_one();
    assert_eq!((woken(&ca), woken(&cb)), (2, 1));
    assert!(!room.has_waiters());
    room.leave(&mut b, true);
}

#[test]
fn a_woken_waiter_that_gives_up_passes_the_wake_on() {
    let room = Room::new();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let (mut a, mut b) = (Waiter::default(), Waiter::default());
    room.enter(&mut a, Some(&wa));
    room.enter(&mut b, Some(&wb));
    room.wake_one();
    assert_eq!((woken(&ca), woken(&cb)), (1, 0));
    room.leave(&mut a, false);
    assert_eq!((woken(&ca), woken(&cb)), (1, 1), "the wake went on to `b`");
    // A waiter that leaves before it is woken takes nothing from the others.
    let (cc, wc) = counting();
    let mut c = Waiter::default();
    room.enter(&mut c, Some(&wc));
    room.enter(&mut b, Some(&wb));
    room.leave(&mut c, false);
    assert_eq!((woken(&cb), woken(&cc)), (1, 0));
    room.leave(&mut b, false);
    assert!(!room.has_waiters());
}

#[test]
fn a_new_poll_replaces_the_waker_of_a_registered_waiter() {
    let room = Room::new();
    let (old, w_old) = counting();
    let (new, w_new) = counting();
    let mut a = Waiter::default();
    room.enter(&mut a, Some(&w_old));
    room.enter(&mut a, Some(&w_new));
    room.wake_one();
    assert_eq!((woken(&old), woken(&new)), (0, 1));
    room.leave(&mut a, true);
}

#[test]
fn close_wakes_every_waiter_and_refuses_later_ones() {
    let room = Room::new();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let (mut a, mut b) = (Waiter::default(), Waiter::default());
    room.enter(&mut a, Some(&wa));
    room.enter(&mut b, Some(&wb));
    room.close();
    assert_eq!((woken(&ca), woken(&cb)), (1, 1));
    assert!(!room.has_waiters());
    assert_eq!(room.enter(&mut a, Some(&wa)), Entered::Closed);
    let mut late = Waiter::default();
    assert_eq!(room.enter(&mut late, None), Entered::Closed);
    room.leave(&mut a, false);
    room.leave(&mut b, false);
}

#[test]
fn the_list_is_bounded() {
    let room = Room::new();
    let mut waiters: Vec<Waiter> = (0..WAITERS_MAX).map(|_| Waiter::default()).collect();
    for w in &mut waiters {
        assert_eq!(room.enter(w, None), Entered::Waiting);
    }
    let mut one_more = Waiter::default();
    assert_eq!(room.enter(&mut one_more, None), Entered::Crowded);
    // A registered one can still register again (it keeps its place).
    assert_eq!(room.enter(&mut waiters[7], None), Entered::Waiting);
    room.leave(&mut waiters[0], false);
    assert_eq!(room.enter(&mut one_more, None), Entered::Waiting);
}

#[test]
fn a_blocking_wait_gets_in_after_an_end_and_times_out_without_one() {
    let room = Arc::new(Room::new());
    let free = Arc::new(AtomicUsize::new(0));
    room.begin();
    let (r, f) = (Arc::clone(&room), Arc::clone(&free));
    let waiter = std::thread::spawn(move || {
        let attempt = |_| {
            f.fetch_update(StdOrdering::SeqCst, StdOrdering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .map(|_| ())
            .map_err(|_| Refusal::OverLimit)
        };
        r.wait_blocking(attempt, || Sleep::Unbounded, Refusal::OverLimit, || false)
    });
    std::thread::sleep(Duration::from_millis(20));
    free.store(1, StdOrdering::SeqCst);
    room.end();
    assert_eq!(waiter.join().unwrap(), Ok(()));

    // Nothing ends: a bounded wait runs out with the reason of its last try.
    let mut sleeps = 0;
    let got = room.wait_blocking(
        |_| Err::<(), _>(Refusal::QueueFull),
        || {
            sleeps += 1;
            if sleeps > 3 {
                Sleep::Expired
            } else {
                Sleep::For(Duration::from_millis(1))
            }
        },
        Refusal::OverLimit,
        || false,
    );
    assert_eq!(got, Err(Refusal::QueueFull));
    assert!(!room.has_waiters());
}
