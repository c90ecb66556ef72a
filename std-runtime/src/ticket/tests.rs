use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{pair, Cells, TicketError, WaitError};

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
