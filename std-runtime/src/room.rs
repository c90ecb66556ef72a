//! Room for waiting submissions: the executor's count of pending submissions, with a flag
//! that says a submission waits for room, and the waiters themselves.
//!
//! A waiting submission ([`SubmitSpec::wait`](crate::SubmitSpec::wait)) that finds the
//! concurrency limit reached, or its priority's queue full, registers here and sleeps (a
//! blocking call) or returns `Pending` (an async one) until a submission *ends*: its run
//! finished or it was handed back or refused after taking a permit. Every room a waiter can
//! lack is given back by an end: a permit is released, and a queue place freed by a pop, on
//! the ending thread before its end is counted.
//!
//! # The word
//!
//! [`Room::pending`] is one `AtomicUsize`: the number of admitted submissions not yet ended,
//! and the top bit [`WAITING`], set while at least one waiter is registered. Every write to
//! it is a read-modify-write with `AcqRel`:
//!
//! | who | operation | when |
//! |---|---|---|
//! | an admitted submission | `fetch_add(1)` ([`Room::begin`]) | before it is queued |
//! | its end | `fetch_sub(1)` ([`Room::end`]) | after its permit and queue place are given back |
//! | a waiter | `fetch_or(WAITING)` ([`Room::enter`]) | under the lock, on every registration |
//! | the waiter list emptied | `fetch_and(!WAITING)` | under the lock |
//!
//! So a submission's end costs nothing it did not cost before: the `fetch_sub` it already
//! made returns the flag, and only when the flag is set does the end take the lock and wake
//! the first waiter ([`Room::wake_one`]). The count stays far below the flag (it is bounded
//! by the concurrency limit plus the queues, `u32`-sized).
//!
//! # No lost wake-up
//!
//! A waiter *registers* (under the lock: its entry, then the `fetch_or`), and only then tries
//! to get in again. The ending side gives the room back, then makes its `fetch_sub`. Both
//! are read-modify-writes on the one word, so they are ordered in its modification order
//! (no store-buffering: nothing here needs a `SeqCst` fence, so loom checks it as it runs):
//!
//! - the end comes first: the waiter's `fetch_or` reads its value (or a later one; every
//!   write to the word is a read-modify-write, so it continues the end's release sequence)
//!   and acquires it, so the room given back before the end is visible to the waiter's
//!   second try, which then sees the room or somebody else's use of it (whose end is, by the
//!   same argument, still to come);
//! - the registration comes first: the end's `fetch_sub` returns the flag, which is cleared
//!   only when the list is emptied under the lock; so the end wakes the first waiter, or
//!   another end already did.
//!
//! Each end wakes one waiter, the first registered (FIFO; a waiter that fails again keeps
//! its place). A woken waiter that gets in wakes the next one if the limit still has room
//! (the limit may have grown, or several ends may have been counted by one wake); one that
//! gives up without trying after it was woken (a timeout, a dropped future) passes its wake
//! on. A waiter can lose its room to a submission that does not wait (barging, as with
//! `std`'s mutex); the end of that submission wakes it again.
//!
//! Closing the room ([`Room::close`], at shutdown) wakes every waiter and refuses every
//! later registration; the waiters then see the executor closed.
//!
//! # Bounds
//!
//! At most [`WAITERS_MAX`] waiters are registered at once; a waiting submission that finds
//! the list full is refused at once with the reason that held. A blocking waiter is one
//! thread; an async waiter is one pending future, so the list holds as many as the host keeps
//! futures waiting, up to the bound. The list's memory (about 32 bytes a waiter) is kept at its
//! high-water mark.

use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use crate::Refusal;

/// The flag bit of [`Room::pending`]: a waiter is registered.
pub(crate) const WAITING: usize = 1 << (usize::BITS - 1);

/// The most waiters registered at once.
pub const WAITERS_MAX: usize = 1 << 16;

// The pending count (below `u32::MAX` submissions: the limit and the queues are `u32`-bounded)
// never reaches the flag.
const _: () = assert!(WAITING > u32::MAX as usize);

/// How a registered waiter is woken.
enum Wake {
    /// A blocking call, asleep on [`Room::wakeup`].
    Thread,
    /// An async one.
    Task(Waker),
}

/// One registered waiter.
struct Entry {
    /// The waiter's number, given at its first registration: the list is sorted by it.
    id: u64,
    wake: Wake,
}

/// The waiter list, under [`Room::waiters`].
struct Waiters {
    /// Registered waiters, sorted by `id` (FIFO: ids grow). `WAITING` is set in the word
    /// exactly while this is non-empty (both change under the lock).
    queue: VecDeque<Entry>,
    /// The next waiter's id.
    next_id: u64,
    /// Set by [`Room::close`]: no registration from then on.
    closed: bool,
}

impl Waiters {
    /// The position of waiter `id` in the list.
    fn find(&self, id: u64) -> Result<usize, usize> {
        self.queue.binary_search_by_key(&id, |e| e.id)
    }
}

/// One waiting submission's place, kept across its tries (see [`Room::enter`]).
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    /// Its id, from its first registration.
    id: Option<u64>,
    /// Whether it registered since it last left: its entry is in the list, or was taken out by
    /// a wake (then it was woken).
    registered: bool,
}

/// What [`Room::enter`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entered {
    /// Registered (or still registered): try again, then wait.
    Waiting,
    /// The room is closed (shutdown): stop waiting.
    Closed,
    /// [`WAITERS_MAX`] waiters are registered: stop waiting.
    Crowded,
}

/// How long a blocking waiter sleeps before it reads the clock again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// The wait's bound has passed.
    Expired,
    /// At most this long (woken earlier by a wake).
    For(Duration),
    /// Until woken.
    Unbounded,
}

/// The pending count and the waiters (see the [module docs](self)).
pub(crate) struct Room {
    /// Admitted submissions not yet ended | [`WAITING`]. Every write is an `AcqRel`
    /// read-modify-write (see the module docs).
    pending: AtomicUsize,
    /// The waiters.
    waiters: Mutex<Waiters>,
    /// Blocking waiters sleep on it (with the `waiters` lock); woken all at once, each looks
    /// whether its entry was taken out.
    wakeup: Condvar,
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.pending.load(Ordering::Relaxed);
        f.debug_struct("Room")
            .field("pending", &(word & !WAITING))
            .field("waiting", &(word & WAITING != 0))
            .finish_non_exhaustive()
    }
}

impl Room {
    /// No submission pending, no waiter.
    pub(crate) fn new() -> Self {
        Self {
            pending: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters {
                queue: VecDeque::new(),
                next_id: 0,
                closed: false,
            }),
            wakeup: Condvar::new(),
        }
    }

    /// Admitted submissions not yet ended.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire) & !WAITING
    }

    /// Whether a waiter is registered (a snapshot).
    pub(crate) fn has_waiters(&self) -> bool {
        self.pending.load(Ordering::Acquire) & WAITING != 0
    }

    /// One more submission admitted (before it is queued).
    #[inline]
    pub(crate) fn begin(&self) {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        debug_assert!(before & !WAITING < u32::MAX as usize, "pending {before:#x}");
    }

    /// One submission ended: call after its permit and queue place were given back. Wakes
    /// the first waiter if one is registered. Returns whether it was the last pending one.
    #[inline]
    pub(crate) fn end(&self) -> bool {
        let before = self.pending.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            before & !WAITING > 0,
            "a submission ended with none pending"
        );
        if before & WAITING != 0 {
            self.wake_one();
        }
        before & !WAITING == 1
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Nothing under the lock panics but an allocation failure; the list stays consistent
        // (each change is one push or removal, and the flag follows it).
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the first registered waiter (taking its entry out), if any.
    #[cold]
    pub(crate) fn wake_one(&self) {
        let mut waiters = self.lock();
        let first = self.take_first(&mut waiters);
        drop(waiters);
        self.wake(first);
    }

    /// Takes the first entry out, clearing the flag when the list empties.
    fn take_first(&self, waiters: &mut Waiters) -> Option<Wake> {
        let first = waiters.queue.pop_front()?;
        if waiters.queue.is_empty() {
            self.pending.fetch_and(!WAITING, Ordering::AcqRel);
        }
        Some(first.wake)
    }

    /// Wakes a waiter taken out of the list (outside the lock: a waker is user code).
    fn wake(&self, wake: Option<Wake>) {
        match wake {
            None => {}
            Some(Wake::Thread) => self.wakeup.notify_all(),
            Some(Wake::Task(waker)) => waker.wake(),
        }
    }

    /// Closes the room (shutdown): wakes every waiter and refuses every later registration.
    /// Idempotent.
    pub(crate) fn close(&self) {
        let mut waiters = self.lock();
        waiters.closed = true;
        let all = std::mem::take(&mut waiters.queue);
        self.pending.fetch_and(!WAITING, Ordering::AcqRel);
        drop(waiters);
        let mut threads = false;
        for entry in all {
            match entry.wake {
                Wake::Thread => threads = true,
                Wake::Task(waker) => waker.wake(),
            }
        }
        if threads {
            self.wakeup.notify_all();
        }
    }

    /// Registers `waiter` (woken through `waker`, or as a blocking thread without one), or
    /// updates its waker if it is still registered. After [`Entered::Waiting`] the caller
    /// tries to get in again, and waits only if that fails.
    pub(crate) fn enter(&self, waiter: &mut Waiter, waker: Option<&Waker>) -> Entered {
        let mut waiters = self.lock();
        if waiters.closed {
            return Entered::Closed;
        }
        let id = *waiter.id.get_or_insert_with(|| {
            let id = waiters.next_id;
            waiters.next_id += 1;
            id
        });
        let wake = || match waker {
            Some(w) => Wake::Task(w.clone()),
            None => Wake::Thread,
        };
        match waiters.find(id) {
            Ok(at) => {
                // Still registered (not woken): a new poll may bring a new waker.
                if let (Wake::Task(old), Some(new)) = (&mut waiters.queue[at].wake, waker) {
                    if !old.will_wake(new) {
                        *old = new.clone();
                    }
                }
            }
            Err(at) => {
                if waiters.queue.len() >= WAITERS_MAX {
                    return Entered::Crowded;
                }
                // A woken waiter keeps its place: the list is sorted by id.
                waiters.queue.insert(at, Entry { id, wake: wake() });
            }
        }
        waiter.registered = true;
        // On every registration, so that the waiter's try that follows is ordered after
        // every end this read-modify-write sees (see the module docs).
        self.pending.fetch_or(WAITING, Ordering::AcqRel);
        Entered::Waiting
    }

    /// `waiter` stops waiting: it got in (`admitted`) or gives up. Its entry is taken out;
    /// if a wake had taken it out already, and the waiter did not get in, the wake goes on to
    /// the next waiter. (A waiter that got in and may have left room wakes the next one
    /// itself, [`Room::wake_one`].)
    pub(crate) fn leave(&self, waiter: &mut Waiter, admitted: bool) {
        if !std::mem::take(&mut waiter.registered) {
            return;
        }
        let Some(id) = waiter.id else {
            return;
        };
        let mut waiters = self.lock();
        match waiters.find(id) {
            Ok(at) => {
                waiters.queue.remove(at);
                if waiters.queue.is_empty() {
                    self.pending.fetch_and(!WAITING, Ordering::AcqRel);
                }
            }
            Err(_) if !admitted => {
                // Woken, and the wake is not used: the next waiter gets it.
                let next = self.take_first(&mut waiters);
                drop(waiters);
                self.wake(next);
            }
            Err(_) => {}
        }
    }

    /// Whether `waiter` is still registered and not yet woken.
    fn is_waiting(waiters: &Waiters, waiter: &Waiter) -> bool {
        !waiters.closed && waiter.id.is_some_and(|id| waiters.find(id).is_ok())
    }

    /// Sleeps (a blocking waiter, registered) until it is woken or `sleep` has passed.
    pub(crate) fn sleep(&self, waiter: &Waiter, sleep: Sleep) {
        let until = match sleep {
            Sleep::Expired => return,
            Sleep::For(d) => Instant::now().checked_add(d),
            Sleep::Unbounded => None,
        };
        let mut waiters = self.lock();
        while Self::is_waiting(&waiters, waiter) {
            waiters = match until {
                None => self
                    .wakeup
                    .wait(waiters)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return;
                    }
                    self.wakeup
                        .wait_timeout(waiters, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Waits for room, blocking, with the protocol of the [module docs](self). `attempt`
    /// tries to get in (`registered`: the waiter is registered, so a try may first look for
    /// room without taking any); `sleep` says how long to sleep before the next try, reading
    /// the caller's clock. Returns what got in, or the reason that held when the wait ended
    /// (timed out, closed, crowded, or a refusal that waiting cannot mend).
    pub(crate) fn wait_blocking<T>(
        &self,
        mut attempt: impl FnMut(bool) -> Result<T, Refusal>,
        mut sleep: impl FnMut() -> Sleep,
        mut reason: Refusal,
        room_left: impl Fn() -> bool,
    ) -> Result<T, Refusal> {
        // Leaves the list however the wait ends (a panic in `attempt` included), so that no
        // entry stays behind to swallow a wake.
        let mut leaving = Leaving {
            room: self,
            waiter: Waiter::default(),
        };
        let waiter = &mut leaving.waiter;
        loop {
            let left = sleep();
            if left == Sleep::Expired {
                break;
            }
            match self.enter(waiter, None) {
                Entered::Waiting => {}
                Entered::Closed => {
                    reason = Refusal::ShuttingDown;
                    break;
                }
                Entered::Crowded => break,
            }
            match attempt(true) {
                Ok(admitted) => {
                    self.admitted(waiter, room_left);
                    return Ok(admitted);
                }
                Err(Refusal::ShuttingDown) => {
                    reason = Refusal::ShuttingDown;
                    break;
                }
                Err(other) => reason = other,
            }
            self.sleep(waiter, left);
        }
        Err(reason)
    }

    /// One poll of an async waiter, with the protocol of the [module docs](self): registers
    /// it (or updates its waker), then tries `attempt` (see [`wait_blocking`](Self::wait_blocking)).
    /// `Pending` while it waits (`reason` then holds the reason of its last try); `expired`
    /// ends the wait with that reason.
    pub(crate) fn poll_wait<T>(
        &self,
        waiter: &mut Waiter,
        waker: &Waker,
        expired: bool,
        reason: &mut Refusal,
        attempt: impl FnOnce(bool) -> Result<T, Refusal>,
        room_left: impl Fn() -> bool,
    ) -> Poll<Result<T, Refusal>> {
        if expired {
            self.leave(waiter, false);
            return Poll::Ready(Err(*reason));
        }
        match self.enter(waiter, Some(waker)) {
            Entered::Waiting => {}
            Entered::Closed => {
                self.leave(waiter, false);
                return Poll::Ready(Err(Refusal::ShuttingDown));
            }
            Entered::Crowded => {
                self.leave(waiter, false);
                return Poll::Ready(Err(*reason));
            }
        }
        match attempt(true) {
            Ok(admitted) => {
                self.admitted(waiter, room_left);
                Poll::Ready(Ok(admitted))
            }
            Err(Refusal::ShuttingDown) => {
                self.leave(waiter, false);
                Poll::Ready(Err(Refusal::ShuttingDown))
            }
            Err(other) => {
                *reason = other;
                Poll::Pending
            }
        }
    }

    /// A registered waiter got in: it leaves, and wakes the next one if `room_left` says
    /// there may be room for it too.
    pub(crate) fn admitted(&self, waiter: &mut Waiter, room_left: impl Fn() -> bool) {
        self.leave(waiter, true);
        if self.has_waiters() && room_left() {
            self.wake_one();
        }
    }
}

/// A blocking waiter's place that leaves the list when dropped.
struct Leaving<'a> {
    room: &'a Room,
    waiter: Waiter,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.room.leave(&mut self.waiter, false);
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;
