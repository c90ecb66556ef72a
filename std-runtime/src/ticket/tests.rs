use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use super::{pair, Cells, Ticket, TicketError, WaitError, PARKED, WAKER};

#[test]
fn wait_across_threads() {
    let rounds = if cfg!(miri) { 5 } else { 200 };
    for round in 0..rounds {
        let (completer, ticket) = pair::<String>();
        let worker = thread::spawn(move || completer.complete(format!("done {round}")));
        assert_eq!(ticket.wait(), Ok(format!("done {round}")));
        worker.join().unwrap();
    }
}

#[test]
fn a_ticket_that_skips_its_spin_still_gets_its_value() {
    for delay in [Duration::ZERO, Duration::from_millis(2)] {
        let (completer, mut ticket) = pair();
        ticket.spin_none();
        let h = thread::spawn(move || {
            thread::sleep(delay);
            completer.complete(9u32);
        });
        assert_eq!(ticket.wait(), Ok(9));
        h.join().unwrap();
    }
    let (completer, mut ticket) = pair::<u32>();
    ticket.spin_none();
    let ticket = match ticket.wait_timeout(Duration::from_millis(1)) {
        Err(WaitError::Timeout(t)) => t,
        other => panic!("{other:?}"),
    };
    completer.complete(3);
    assert_eq!(ticket.wait(), Ok(3));
}

#[test]
fn wait_before_and_after_completion() {
    // Completed before anyone waits: the value is kept.
    let (completer, ticket) = pair();
    completer.complete(1u8);
    assert_eq!(ticket.wait(), Ok(1));
}

#[test]
fn wait_timeout_then_wait_again_succeeds() {
    let (completer, ticket) = pair::<u32>();
    let ticket = match ticket.wait_timeout(Duration::from_millis(2)) {
        Err(WaitError::Timeout(ticket)) => ticket,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert!(!ticket.is_cancelled());
    let worker = thread::spawn(move || completer.complete(9));
    // Long enough that it does not time out on a loaded machine; returns as soon as completed.
    let ticket = match ticket.wait_timeout(Duration::from_secs(60)) {
        Ok(value) => {
            assert_eq!(value, 9);
            None
        }
        Err(WaitError::Timeout(ticket)) => Some(ticket),
        Err(other) => panic!("unexpected {other:?}"),
    };
    if let Some(ticket) = ticket {
        assert_eq!(ticket.wait(), Ok(9));
    }
    worker.join().unwrap();
}

#[test]
fn wait_timeout_returns_value_already_there_and_handles_huge_timeouts() {
    let (completer, ticket) = pair();
    completer.complete('x');
    assert_eq!(ticket.wait_timeout(Duration::ZERO).unwrap(), 'x');

    let (completer, ticket) = pair();
    completer.complete('y');
    assert_eq!(ticket.wait_timeout(Duration::MAX).unwrap(), 'y');

    let (completer, ticket) = pair::<char>();
    drop(completer);
    assert!(matches!(
        ticket.wait_timeout(Duration::from_millis(1)),
        Err(WaitError::Failed(TicketError::Abandoned))
    ));
}

#[test]
fn poll_then_spent() {
    let (completer, mut ticket) = pair::<Vec<u8>>();
    assert_eq!(ticket.try_poll(), Ok(None));
    assert_eq!(ticket.try_poll(), Ok(None));
    completer.complete(vec![1, 2]);
    assert_eq!(ticket.try_poll(), Ok(Some(vec![1, 2])));
    assert_eq!(ticket.try_poll(), Err(TicketError::AlreadyTaken));
    assert!(matches!(
        ticket.wait_timeout(Duration::ZERO),
        Err(WaitError::Failed(TicketError::AlreadyTaken))
    ));
}

#[test]
fn double_take_errors_on_wait() {
    let (completer, mut ticket) = pair();
    completer.complete(3u64);
    assert_eq!(ticket.try_poll(), Ok(Some(3)));
    assert_eq!(ticket.wait(), Err(TicketError::AlreadyTaken));
}

#[test]
fn cancel_is_seen_by_the_completer() {
    let (completer, ticket) = pair::<bool>();
    assert!(!completer.is_cancelled());
    assert!(!completer.cancel_flag().is_cancelled());
    let worker = thread::spawn(move || {
        // Bounded: the main thread cancels right away.
        while !completer.cancel_flag().is_cancelled() {
            thread::yield_now();
        }
        let cancelled = completer.is_cancelled();
        completer.complete(cancelled);
    });
    ticket.cancel();
    assert!(ticket.is_cancelled());
    assert_eq!(ticket.wait(), Ok(true));
    worker.join().unwrap();
}

#[test]
fn abandoned_completer_wakes_waiter() {
    let (completer, ticket) = pair::<u8>();
    let worker = thread::spawn(move || ticket.wait());
    drop(completer);
    assert_eq!(worker.join().unwrap(), Err(TicketError::Abandoned));

    let (completer, mut ticket) = pair::<u8>();
    drop(completer);
    assert_eq!(ticket.try_poll(), Err(TicketError::Abandoned));
    assert_eq!(ticket.try_poll(), Err(TicketError::Abandoned));
}

#[test]
fn panicking_runner_abandons() {
    let (completer, ticket) = pair::<u8>();
    let worker = thread::spawn(move || {
        let _completer = completer;
        panic!("step blew up");
    });
    assert!(worker.join().is_err());
    assert_eq!(ticket.wait(), Err(TicketError::Abandoned));
}

/// Counts drops of the values in flight.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn value_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    // Ticket dropped first: the value goes with the shared cell.
    let (completer, ticket) = pair();
    drop(ticket);
    assert!(completer.is_orphaned());
    completer.complete(Counted(Arc::clone(&drops)));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Completed, never taken.
    let (completer, ticket) = pair();
    assert!(!completer.is_orphaned());
    completer.complete(Counted(Arc::clone(&drops)));
    drop(ticket);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // Taken: dropped by the taker, not again by the cell.
    let (completer, ticket) = pair();
    completer.complete(Counted(Arc::clone(&drops)));
    let value = ticket.wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(value);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn debug_shows_state() {
    let (completer, mut ticket) = pair::<u8>();
    assert!(format!("{ticket:?}").contains("Pending"));
    assert!(format!("{completer:?}").contains("cancelled: false"));
    completer.complete(1);
    assert!(format!("{ticket:?}").contains("Done"));
    assert_eq!(ticket.try_poll(), Ok(Some(1)));
    assert!(format!("{ticket:?}").contains("Taken"));
    assert_eq!(
        TicketError::Abandoned.to_string(),
        "the work was abandoned before it completed"
    );
}

#[test]
fn pooled_cells_are_reused_once_both_sides_are_gone() {
    let cells = Cells::new(4);
    assert_eq!((cells.made(), cells.idle(), cells.keep()), (0, 0, 4));
    let rounds = if cfg!(miri) { 5 } else { 100 };
    for round in 0..rounds {
        let (completer, ticket) = cells.pair();
        assert_eq!(cells.idle(), 0);
        let worker = thread::spawn(move || completer.complete(round));
        assert_eq!(ticket.wait(), Ok(round));
        worker.join().unwrap();
        // Both sides gone: the cell is back.
        assert_eq!((cells.made(), cells.idle()), (1, 1), "round {round}");
    }
    // Only one side gone: the cell stays out.
    let (completer, ticket) = cells.pair();
    drop(ticket);
    assert_eq!(cells.idle(), 0);
    drop(completer);
    assert_eq!((cells.made(), cells.idle()), (1, 1));
}

#[test]
fn a_reused_cell_starts_pending_with_nothing_of_its_last_use() {
    let cells = Cells::new(4);
    let drops = Arc::new(AtomicUsize::new(0));
    // Completed, never taken: the value is dropped when the cell is put back.
    let (completer, ticket) = cells.pair();
    completer.complete(Counted(Arc::clone(&drops)));
    drop(ticket);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Abandoned, then reused: pending again, and completes normally.
    let (completer, ticket) = cells.pair();
    drop(completer);
    assert!(matches!(
        ticket.wait().map(|_| ()),
        Err(TicketError::Abandoned)
    ));
    let (completer, mut ticket) = cells.pair();
    assert_eq!(cells.made(), 1);
    assert!(ticket.try_poll().unwrap().is_none());
    assert!(format!("{ticket:?}").contains("Pending"));
    assert!(!completer.is_orphaned());
    assert!(!completer.is_cancelled());
    completer.complete(Counted(Arc::clone(&drops)));
    let value = ticket.wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(value);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // Orphaned is told by the live sides, not by the pool's hold on the cell.
    let (completer, ticket) = cells.pair();
    assert!(!completer.is_orphaned());
    drop(ticket);
    assert!(completer.is_orphaned());
    drop(completer);
    assert_eq!(cells.made(), 1);
}

#[test]
fn a_cancelled_cell_is_freed_not_reused() {
    let cells = Cells::new(4);
    let (completer, ticket) = cells.pair();
    ticket.cancel();
    completer.complete(1u8);
    assert_eq!(ticket.wait(), Ok(1));
    // The raised flag cannot be lowered: the cell is gone, the next pairing makes one.
    assert_eq!(cells.idle(), 0);
    let (completer, ticket) = cells.pair();
    assert_eq!(cells.made(), 2);
    assert!(!ticket.is_cancelled());
    assert!(!completer.cancel_flag().is_cancelled());
    completer.complete(2);
    assert_eq!(ticket.wait(), Ok(2));
    assert_eq!(cells.idle(), 1);
}

#[test]
fn the_pool_keeps_at_most_its_bound_and_may_go_first() {
    let cells = Cells::new(2);
    let pairs: Vec<_> = (0..5).map(|_| cells.pair()).collect();
    assert_eq!(cells.made(), 5);
    for (completer, ticket) in pairs {
        completer.complete(0u8);
        drop(ticket);
    }
    assert_eq!(cells.idle(), 2);
    // A cell outliving its pool is freed with its last side.
    let (completer, ticket) = cells.pair();
    drop(cells);
    completer.complete(7u8);
    assert_eq!(ticket.wait(), Ok(7));
}

#[test]
fn sides_dropped_on_two_threads_recycle_each_cell_once() {
    let cells = Cells::new(64);
    let rounds = if cfg!(miri) { 10 } else { 2000 };
    for round in 0..rounds {
        let (completer, ticket) = cells.pair();
        let worker = thread::spawn(move || completer.complete(round));
        drop(ticket);
        worker.join().unwrap();
    }
    // Each round put its cell back exactly once: one cell served them all.
    assert_eq!((cells.made(), cells.idle()), (1, 1));
}

/// Waits until the ticket's waiter has parked (the flag is raised under the lock just before
/// the `Condvar` wait), so the completion that follows must wake a parked thread.
fn until_parked<T>(shared: &super::Shared<T>) {
    while shared.state.load(Ordering::Acquire) & PARKED == 0 {
        thread::yield_now();
    }
}

#[test]
fn wait_spins_then_parks_and_is_woken() {
    let rounds = if cfg!(miri) { 2 } else { 20 };
    for round in 0..rounds {
        let (completer, ticket) = pair::<u32>();
        let shared = Arc::clone(&ticket.shared);
        let waiter = thread::spawn(move || ticket.wait());
        // The spin (bounded) ends, and the waiter parks: only the completion can wake it.
        until_parked(&shared);
        completer.complete(round);
        assert_eq!(waiter.join().unwrap(), Ok(round));
    }
}

#[test]
fn wait_parked_parks_at_once_and_is_woken() {
    let (completer, ticket) = pair::<&str>();
    let shared = Arc::clone(&ticket.shared);
    let waiter = thread::spawn(move || ticket.wait_parked());
    until_parked(&shared);
    completer.complete("late");
    assert_eq!(waiter.join().unwrap(), Ok("late"));
    // A value already there is taken without parking; an abandoned ticket fails.
    let (completer, ticket) = pair();
    completer.complete(3u8);
    assert_eq!(ticket.wait_parked(), Ok(3));
    let (completer, ticket) = pair::<u8>();
    let shared = Arc::clone(&ticket.shared);
    let waiter = thread::spawn(move || ticket.wait_parked());
    until_parked(&shared);
    drop(completer);
    assert_eq!(waiter.join().unwrap(), Err(TicketError::Abandoned));
}

#[test]
fn a_completion_during_the_spin_needs_no_park() {
    let (completer, ticket) = pair::<u32>();
    let shared = Arc::clone(&ticket.shared);
    let worker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(2));
        completer.complete(8);
    });
    // A spin bound far longer than the completion takes: the waiter never parks.
    assert_eq!(ticket.wait_with_spin(Duration::from_secs(600)), Ok(8));
    worker.join().unwrap();
    assert_eq!(shared.state.load(Ordering::Acquire), super::TAKEN);
}

#[test]
fn waits_of_every_spin_take_the_value_once() {
    let rounds = if cfg!(miri) { 3 } else { 300 };
    for round in 0..rounds {
        let (completer, ticket) = pair::<u32>();
        let shared = Arc::clone(&ticket.shared);
        let worker = thread::spawn(move || completer.complete(round));
        let got = match round % 3 {
            0 => ticket.wait(),
            1 => ticket.wait_parked(),
            _ => ticket.wait_with_spin(Duration::from_micros(1)),
        };
        assert_eq!(got, Ok(round));
        worker.join().unwrap();
        // Parked or not (the timing decides), the value was handed out once.
        assert_eq!(
            shared.state.load(Ordering::Acquire) & super::PHASE,
            super::TAKEN
        );
    }
}

/// Counts its wakes.
struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountWakes>, Waker) {
    let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
    (Arc::clone(&wakes), Waker::from(Arc::clone(&wakes)))
}

fn poll<T>(ticket: &mut Ticket<T>, waker: &Waker) -> Poll<Result<T, TicketError>> {
    Pin::new(ticket).poll(&mut Context::from_waker(waker))
}

#[test]
fn future_poll_registers_and_completion_wakes() {
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = pair::<String>();
    assert_eq!(poll(&mut ticket, &waker), Poll::Pending);
    assert_eq!(poll(&mut ticket, &waker), Poll::Pending);
    assert_ne!(ticket.shared.state.load(Ordering::Acquire) & WAKER, 0);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    let worker = thread::spawn(move || completer.complete("v".to_string()));
    worker.join().unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    assert_eq!(poll(&mut ticket, &waker), Poll::Ready(Ok("v".to_string())));
    // Polled after the value went: spent, at once.
    assert_eq!(
        poll(&mut ticket, &waker),
        Poll::Ready(Err(TicketError::AlreadyTaken))
    );
    assert_eq!(ticket.try_poll(), Err(TicketError::AlreadyTaken));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
}

#[test]
fn future_polled_after_completion_is_ready_without_waking() {
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = pair();
    completer.complete(11u16);
    assert_eq!(poll(&mut ticket, &waker), Poll::Ready(Ok(11)));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    // The waker was never stored.
    drop(waker);
    assert_eq!(Arc::strong_count(&wakes), 1);
}

#[test]
fn future_waker_replaced_between_polls_wakes_the_last() {
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();
    let (completer, mut ticket) = pair::<u8>();
    assert_eq!(poll(&mut ticket, &first_waker), Poll::Pending);
    assert_eq!(poll(&mut ticket, &second_waker), Poll::Pending);
    // The replaced waker was dropped by the cell.
    drop(first_waker);
    assert_eq!(Arc::strong_count(&first), 1);
    completer.complete(1);
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    // The same task polling again keeps its stored waker (no clone).
    let (third, third_waker) = counting_waker();
    let (completer, mut ticket) = pair::<u8>();
    assert_eq!(poll(&mut ticket, &third_waker), Poll::Pending);
    assert_eq!(poll(&mut ticket, &third_waker), Poll::Pending);
    assert_eq!(
        Arc::strong_count(&third),
        3,
        "ours, our waker's, the cell's"
    );
    drop(completer);
    assert_eq!(third.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll(&mut ticket, &third_waker),
        Poll::Ready(Err(TicketError::Abandoned))
    );
}

#[test]
fn abandon_wakes_the_future() {
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = pair::<u8>();
    assert_eq!(poll(&mut ticket, &waker), Poll::Pending);
    thread::spawn(move || drop(completer)).join().unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        poll(&mut ticket, &waker),
        Poll::Ready(Err(TicketError::Abandoned))
    );
}

#[test]
fn dropping_a_registered_future_does_not_stop_the_run_and_frees_the_waker() {
    let drops = Arc::new(AtomicUsize::new(0));
    let cells = Cells::new(4);
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = cells.pair();
    assert!(poll(&mut ticket, &waker).is_pending());
    drop(ticket);
    // The run goes on: not cancelled, only orphaned.
    assert!(!completer.is_cancelled());
    assert!(completer.is_orphaned());
    completer.complete(Counted(Arc::clone(&drops)));
    // Nobody to wake or read: the completion dropped the value and the recycling the waker.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    drop(waker);
    assert_eq!(
        Arc::strong_count(&wakes),
        1,
        "the recycled cell kept a waker"
    );
    assert_eq!((cells.made(), cells.idle()), (1, 1));
    // The reused cell starts with no waker and no flag.
    let (completer, mut ticket) = cells.pair();
    assert_eq!(ticket.shared.state.load(Ordering::Acquire), super::PENDING);
    assert!(ticket.shared.lock().is_none());
    completer.complete(Counted(Arc::clone(&drops)));
    assert!(matches!(ticket.try_poll(), Ok(Some(_))));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn a_registered_waker_left_after_a_late_completion_is_reset() {
    // The completion lands between the first poll's check and its registration: simulated by
    // completing while the poll's waker is stored, then polling to Ready (the waker stays
    // stored, unused) and recycling.
    let cells = Cells::new(4);
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = cells.pair();
    assert!(poll(&mut ticket, &waker).is_pending());
    completer.complete(2u8);
    assert_eq!(poll(&mut ticket, &waker), Poll::Ready(Ok(2)));
    drop(ticket);
    drop(waker);
    assert_eq!(Arc::strong_count(&wakes), 1);
    assert_eq!(cells.idle(), 1);
}

#[test]
fn cancel_then_await_sees_the_cancelled_run() {
    let (wakes, waker) = counting_waker();
    let (completer, mut ticket) = pair::<bool>();
    assert!(poll(&mut ticket, &waker).is_pending());
    ticket.cancel();
    let worker = thread::spawn(move || {
        let cancelled = completer.cancel_flag().is_cancelled();
        completer.complete(cancelled);
    });
    worker.join().unwrap();
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    assert_eq!(poll(&mut ticket, &waker), Poll::Ready(Ok(true)));
}

#[test]
fn ticket_is_unpin_send_and_sync() {
    fn check<F: Future + Unpin + Send + Sync>(_: &F) {}
    let (_completer, ticket) = pair::<u8>();
    check(&ticket);
}

#[test]
fn the_pool_dropped_first_frees_idle_and_returning_cells() {
    let drops = Arc::new(AtomicUsize::new(0));
    let cells = Cells::new(4);
    let (c1, t1) = cells.pair();
    let (c2, t2) = cells.pair();
    c1.complete(Counted(Arc::clone(&drops)));
    drop(t1);
    assert_eq!(cells.idle(), 1);
    let pool = Arc::downgrade(&cells.pool);
    drop(cells);
    // The idle cell went with the pool's owner; the one still out holds the pool.
    assert!(pool.upgrade().is_some());
    c2.complete(Counted(Arc::clone(&drops)));
    drop(t2);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert!(pool.upgrade().is_none(), "the last cell freed the pool");
}
