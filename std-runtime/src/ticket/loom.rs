//! Loom models of the ticket cell: every interleaving (up to the preemption bound) of a wait
//! (spin, then park) or an await (waker registration) against completion or abandonment,
//! cancellation, either side dropping last, and the recycled cell's reuse from the pool.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Wake, Waker};

use core::future::Future;
use core::pin::Pin;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use super::{Cells, TicketError};

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

/// Counts its drops (a loom atomic: the model checks the count's ordering too).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A waker that counts its wakes (in a loom atomic, so the model orders them).
struct Flag(AtomicUsize);

impl Wake for Flag {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A waker that unparks a loom thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: StdArc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this loom thread until it is ready, parking while it is pending (a lost
/// wake-up leaves the thread parked for ever, which loom reports as a deadlock).
fn block_on<F: Future + Unpin>(mut fut: F) -> F::Output {
    let waker = Waker::from(StdArc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// A counting waker and its handle.
fn flag() -> (StdArc<Flag>, Waker) {
    let flag = StdArc::new(Flag(AtomicUsize::new(0)));
    (StdArc::clone(&flag), Waker::from(StdArc::clone(&flag)))
}

/// A completer on another thread completes (or abandons, in the first round of the second
/// model) while the ticket waits: parked at once in the first round, after the spin (two
/// turns and a yield under loom) in the second. The wait returns the value or
/// `Abandoned` (a lost wake-up is a deadlock, which loom reports), the value is dropped exactly
/// once, and whichever side drops last puts the cell back: the next pairing reuses it, pending
/// and clean, and a second round through the reused cell (completed on another thread too)
/// works the same.
#[test]
fn loom_wait_vs_complete_then_reuse() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    for abandon in [false, true] {
        builder().check(move || {
            ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
            let cells = Cells::new(1);
            let drops = Arc::new(AtomicUsize::new(0));
            for round in 0..2u8 {
                let (completer, ticket) = cells.pair();
                let value = Counted(Arc::clone(&drops));
                let worker = thread::spawn(move || {
                    if abandon && round == 0 {
                        drop(completer);
                        drop(value);
                    } else {
                        completer.complete(value);
                    }
                });
                // Round 0 parks at once (a spin's yields let the model run the completer
                // first, so the park would rarely race it); round 1 spins, then parks.
                let waited = if round == 0 {
                    ticket.wait_parked()
                } else {
                    ticket.wait()
                };
                match waited {
                    Ok(value) => {
                        assert!(!(abandon && round == 0), "a value from an abandoned cell");
                        drop(value);
                    }
                    Err(error) => {
                        assert_eq!(error, TicketError::Abandoned);
                        assert!(abandon && round == 0, "abandoned though completed");
                    }
                }
                worker.join().unwrap();
                assert_eq!(drops.load(Ordering::Relaxed), usize::from(round) + 1);
                // Both sides gone, whichever last: the one cell is back, clean.
                assert_eq!((cells.made(), cells.idle()), (1, 1), "round {round}");
            }
        });
    }
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 2);
}

/// The ticket is polled with one waker, then (if still pending) with another, while a
/// completer on another thread completes. Whatever the order: the value comes out of a poll or
/// the second waker is woken (a wake-up lost between the registration and the completion
/// would leave it unwoken); the first waker is never woken after being replaced by a poll that
/// saw the work pending; then the cell, recycled by the side dropped last, holds no waker.
#[test]
fn loom_waker_replaced_between_polls_vs_complete() {
    builder().check(|| {
        let cells = Cells::new(1);
        let (completer, mut ticket) = cells.pair();
        let worker = thread::spawn(move || completer.complete(5u8));
        let (first, first_waker) = flag();
        let (second, second_waker) = flag();
        let mut got = None;
        if let Poll::Ready(r) = Pin::new(&mut ticket).poll(&mut Context::from_waker(&first_waker)) {
            got = Some(r);
        }
        if got.is_none() {
            let polled = Pin::new(&mut ticket).poll(&mut Context::from_waker(&second_waker));
            if let Poll::Ready(r) = polled {
                got = Some(r);
            }
        }
        worker.join().unwrap();
        match got {
            Some(result) => assert_eq!(result, Ok(5)),
            None => {
                // Pending twice: the completion woke the waker stored last.
                assert_eq!(second.0.load(Ordering::Acquire), 1, "the wake-up was lost");
                assert_eq!(
                    first.0.load(Ordering::Acquire),
                    0,
                    "a replaced waker was woken"
                );
                let ready = Pin::new(&mut ticket).poll(&mut Context::from_waker(&second_waker));
                assert_eq!(ready, Poll::Ready(Ok(5)));
            }
        }
        drop(ticket);
        drop((first_waker, second_waker));
        // The recycled cell dropped every waker it stored.
        assert_eq!(StdArc::strong_count(&first), 1);
        assert_eq!(StdArc::strong_count(&second), 1);
        assert_eq!((cells.made(), cells.idle()), (1, 1));
    });
}

/// [`block_on`] awaits the ticket (it parks the loom thread on `Pending` and is unparked by the
/// waker) while the completer completes on another thread, in one round, and
/// abandons it in the next, through the same recycled cell: the await ends with the value, then
/// with `Abandoned`, and never hangs.
#[test]
fn loom_await_vs_complete_and_abandon() {
    builder().check(|| {
        let cells = Cells::new(1);
        for round in 0..2u8 {
            let (completer, ticket) = cells.pair();
            let worker = thread::spawn(move || {
                if round == 0 {
                    completer.complete(round);
                } else {
                    drop(completer);
                }
            });
            let result = block_on(ticket);
            let want = if round == 0 {
                Ok(0)
            } else {
                Err(TicketError::Abandoned)
            };
            assert_eq!(result, want);
            worker.join().unwrap();
            assert_eq!((cells.made(), cells.idle()), (1, 1));
        }
    });
}

/// The ticket registers a waker, cancels and is dropped (the future given up) while the
/// completer, on another thread, sees the flag or not and completes: the completion wakes at
/// most the one waker, the value is dropped exactly once whoever goes last, the cancelled cell
/// is freed rather than put back (with its waker), and the next pairing makes a fresh, clean
/// cell.
#[test]
fn loom_cancel_and_drop_registered_future_vs_complete() {
    builder().check(|| {
        let cells = Cells::new(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let (completer, mut ticket) = cells.pair();
        let value = Counted(Arc::clone(&drops));
        let worker = thread::spawn(move || {
            let cancelled = completer.is_cancelled();
            completer.complete((cancelled, value));
        });
        let (woken, waker) = flag();
        let polled = Pin::new(&mut ticket).poll(&mut Context::from_waker(&waker));
        ticket.cancel();
        drop(ticket);
        drop(polled);
        worker.join().unwrap();
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert!(woken.0.load(Ordering::Acquire) <= 1);
        drop(waker);
        assert_eq!(
            StdArc::strong_count(&woken),
            1,
            "the freed cell kept the waker"
        );
        assert_eq!(cells.idle(), 0, "a cancelled cell was put back");
        let (completer, ticket) = cells.pair();
        assert_eq!(cells.made(), 2);
        assert!(!ticket.is_cancelled() && !completer.is_orphaned());
    });
}
