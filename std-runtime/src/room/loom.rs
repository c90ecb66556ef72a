//! Loom models of [`Room`]'s wake-up protocol, with the real [`AdaptiveLimit`] and (for
//! queue room) the real [`PriorityQueues`]: a waiter that fails to get in and registers,
//! against a holder that gives its room back and ends. No wake-up is lost (a waiter asleep
//! with nobody left to wake it is a loom deadlock) and the waiter gets in.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};

use loom::thread;

use super::{Room, Sleep, Waiter};
use crate::admission::{AdaptiveLimit, OwnedPermit};
use crate::config::{AdmissionConfig, QueueConfig};
use crate::queue::PriorityQueues;
use crate::{Priority, Refusal};

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

/// Wakes a model thread parked in [`block_on`].
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this model thread, parking between polls until its waker is called (loom's
/// own `block_on` needs its `futures` feature).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(std::sync::Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// A fixed limit of `n`.
fn fixed_limit(n: u32) -> std::sync::Arc<AdaptiveLimit> {
    let config = AdmissionConfig {
        enabled: false,
        min_limit: 1,
        max_limit: n,
        initial_limit: 1,
        ..AdmissionConfig::default()
    };
    std::sync::Arc::new(AdaptiveLimit::new(config).unwrap())
}

/// One try for a permit, as the executor makes it.
fn acquire(limit: &std::sync::Arc<AdaptiveLimit>) -> Result<OwnedPermit, Refusal> {
    limit.try_acquire_owned().ok_or(Refusal::OverLimit)
}

/// A blocking waiter (its first try failed or not) against a holder that releases its permit
/// and ends, on a limit of 1: the waiter gets the permit in every interleaving.
#[test]
fn loom_blocking_waiter_vs_releasing_holder() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let room = loom::sync::Arc::new(Room::new());
        let limit = fixed_limit(1);
        let held = acquire(&limit).unwrap();
        room.begin();
        let holder = {
            let room = loom::sync::Arc::clone(&room);
            thread::spawn(move || {
                drop(held);
                room.end();
            })
        };
        let got = match acquire(&limit) {
            Ok(permit) => Ok(permit),
            Err(reason) => room.wait_blocking(
                |_| acquire(&limit),
                || Sleep::Unbounded,
                reason,
                || limit.in_flight() < limit.limit(),
            ),
        };
        let permit = got.expect("the waiter gets the permit");
        assert_eq!(limit.in_flight(), 1);
        holder.join().unwrap();
        drop(permit);
        assert!(!room.has_waiters());
        assert_eq!(room.pending(), 0);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}

/// Two blocking waiters and one holder on a limit of 1. Each waiter that gets in is
/// admitted (`begin`) and ends after it (`end`), as a run would: one end wakes one waiter, so
/// both get in, one after the other, in every interleaving.
#[test]
fn loom_two_waiters_get_in_one_after_the_other() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let room = loom::sync::Arc::new(Room::new());
        let limit = fixed_limit(1);
        let held = acquire(&limit).unwrap();
        room.begin();
        let waiter = |room: loom::sync::Arc<Room>, limit: std::sync::Arc<AdaptiveLimit>| {
            thread::spawn(move || {
                let permit = room
                    .wait_blocking(
                        |_| acquire(&limit),
                        || Sleep::Unbounded,
                        Refusal::OverLimit,
                        || limit.in_flight() < limit.limit(),
                    )
                    .expect("each waiter gets in");
                room.begin();
                drop(permit);
                room.end();
            })
        };
        let a = waiter(loom::sync::Arc::clone(&room), limit.clone());
        let b = waiter(loom::sync::Arc::clone(&room), limit.clone());
        drop(held);
        room.end();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!((limit.in_flight(), room.pending()), (0, 0));
        assert!(!room.has_waiters());
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}

/// A waiting submission as a future (the protocol of `SubmitFuture`), run by loom's
/// `block_on` (which parks until the waker is called), against a releasing holder.
#[test]
fn loom_async_waiter_vs_releasing_holder() {
    struct Wait<'a> {
        room: &'a Room,
        limit: &'a std::sync::Arc<AdaptiveLimit>,
        waiter: Waiter,
        reason: Refusal,
    }
    impl Future for Wait<'_> {
        type Output = Result<OwnedPermit, Refusal>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = &mut *self;
            let limit = this.limit;
            this.room.poll_wait(
                &mut this.waiter,
                cx.waker(),
                false,
                &mut this.reason,
                |_| acquire(limit),
                || limit.in_flight() < limit.limit(),
            )
        }
    }
    builder().check(|| {
        let room = loom::sync::Arc::new(Room::new());
        let limit = fixed_limit(1);
        let held = acquire(&limit).unwrap();
        room.begin();
        let holder = {
            let room = loom::sync::Arc::clone(&room);
            thread::spawn(move || {
                drop(held);
                room.end();
            })
        };
        let wait = Wait {
            room: &room,
            limit: &limit,
            waiter: Waiter::default(),
            reason: Refusal::OverLimit,
        };
        let permit = block_on(wait).expect("the waiter gets the permit");
        holder.join().unwrap();
        drop(permit);
        assert!(!room.has_waiters());
    });
}

/// Queue room: a full queue of capacity 1 whose item a dispatcher pops and then ends, against
/// a waiter whose push was refused `QueueFull` (no limit involved). The waiter's item gets in.
#[test]
fn loom_queue_full_waiter_vs_popping_dispatcher() {
    builder().check(|| {
        let room = loom::sync::Arc::new(Room::new());
        let queues = loom::sync::Arc::new(
            PriorityQueues::new(QueueConfig {
                capacity: [1, 1, 1],
                aging: 0,
            })
            .unwrap(),
        );
        queues.push(1u32, Priority::Normal).unwrap();
        room.begin();
        let dispatcher = {
            let (room, queues) = (
                loom::sync::Arc::clone(&room),
                loom::sync::Arc::clone(&queues),
            );
            thread::spawn(move || {
                assert_eq!(queues.pop(), Some((1, Priority::Normal)));
                room.end();
            })
        };
        let push = |looking: bool| {
            if looking && queues.len_of(Priority::Normal) >= queues.capacity_of(Priority::Normal) {
                return Err(Refusal::QueueFull);
            }
            queues.push(2u32, Priority::Normal).map_err(|r| r.reason)
        };
        let got = match push(false) {
            Ok(()) => Ok(()),
            Err(reason) => room.wait_blocking(push, || Sleep::Unbounded, reason, || false),
        };
        got.expect("the waiter's item gets in");
        dispatcher.join().unwrap();
        assert_eq!(queues.len(), 1);
    });
}
