//! A one-shot completion handle: the executor completes, the submitter waits.
//!
//! [`pair`] makes a [`Completer`] (kept by whoever runs the work) and a [`Ticket`] (handed to
//! whoever submitted it). Both share one `Arc`'d cell: a `Mutex` over the state and a `Condvar`
//! that wakes waiters, plus a [`CancelFlag`] the submitter raises and the run polls.
//!
//! The state moves only forward:
//!
//! | from | event | to |
//! |---|---|---|
//! | `Pending` | [`Completer::complete`] | `Done(value)` |
//! | `Pending` | the completer is dropped without completing | `Abandoned` |
//! | `Done(value)` | a wait or poll takes the value | `Taken` |
//!
//! So a waiter never hangs on a completer that died (a panic unwinding through the executor
//! drops the completer, and the waiter gets [`TicketError::Abandoned`]), and the value is
//! handed out exactly once. Cancellation is a separate flag, not a state: the work may still
//! complete after a cancel, and its value is then delivered as usual.
//!
//! # Recycled cells
//!
//! [`pair`] allocates a fresh cell. The executor instead takes its pairs from a bounded pool of
//! cells ([`Cells`]), so a submission allocates nothing once the pool holds as many cells as
//! there are tickets alive at once. A cell counts its live sides (completer and ticket); the
//! side dropped last puts it back: it drops a value nobody took, sets the state back to
//! `Pending` and returns the cell to its pool (or frees it when the pool already keeps
//! [`Cells::keep`] cells, or is gone). Nothing can reach a cell once both sides are gone (the
//! cancel flag is lent only as a borrow of the completer), so a reused cell is as good as new.
//! A [`CancelFlag`] cannot be lowered again, so a cell whose flag was raised is freed instead of
//! reused: a cancelled submission costs one allocation later.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use flujo_core::graph::CancelFlag;

/// Where a ticket's value is.
enum State<T> {
    /// Not completed yet.
    Pending,
    /// Completed; the value waits to be taken.
    Done(T),
    /// The value was handed out.
    Taken,
    /// The completer was dropped without completing.
    Abandoned,
}

/// The cell a completer and its ticket share.
struct Shared<T> {
    /// The state; every change happens under this lock and is followed by a `notify_all`.
    state: Mutex<State<T>>,
    /// Wakes waiters when the state leaves `Pending`.
    ready: Condvar,
    /// Raised by the ticket side, read by the run.
    cancel: CancelFlag,
    /// Live sides: 2 from the pairing until the completer and the ticket are dropped.
    sides: AtomicUsize,
    /// The pool the cell goes back to when both sides are gone (`Weak::new()`: none).
    home: Weak<Cells<T>>,
}

impl<T> Shared<T> {
    /// A pending cell with both sides live, going back to `home` when they are gone.
    fn new(home: Weak<Cells<T>>) -> Self {
        Self {
            state: Mutex::new(State::Pending),
            ready: Condvar::new(),
            cancel: CancelFlag::new(),
            sides: AtomicUsize::new(2),
            home,
        }
    }

    /// Locks the state. No code that can panic runs under the lock, but a poisoned lock still
    /// holds a consistent state (every write is one assignment), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves `Pending` for `next` (and wakes every waiter); does nothing in any other state.
    fn settle(&self, next: State<T>) {
        let mut state = self.lock();
        if matches!(*state, State::Pending) {
            *state = next;
            drop(state);
            self.ready.notify_all();
        }
    }

    /// One side is gone (called last thing by each side's `Drop`). The second one recycles
    /// the cell: nobody else can reach it any more (the `AcqRel` decrement orders both sides'
    /// last uses before the reset).
    fn release(self: &Arc<Self>) {
        if self.sides.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // A raised flag cannot be lowered: that cell is freed with its last `Arc`.
        if self.cancel.is_cancelled() {
            return;
        }
        let Some(home) = self.home.upgrade() else {
            return;
        };
        // A value nobody took is dropped here, outside the lock.
        let old = core::mem::replace(&mut *self.lock(), State::Pending);
        drop(old);
        home.put(Arc::clone(self));
    }
}

/// Takes the value out of a settled state: `None` while it is still pending.
fn take<T>(state: &mut State<T>) -> Option<Result<T, TicketError>> {
    match state {
        State::Pending => None,
        State::Taken => Some(Err(TicketError::AlreadyTaken)),
        State::Abandoned => Some(Err(TicketError::Abandoned)),
        State::Done(_) => match core::mem::replace(state, State::Taken) {
            State::Done(value) => Some(Ok(value)),
            _ => unreachable!("the state was just seen as Done"),
        },
    }
}

/// Makes a connected [`Completer`] and [`Ticket`].
///
/// # Examples
///
/// ```
/// let (completer, ticket) = flujo_runtime::ticket::pair();
/// std::thread::spawn(move || completer.complete(6 * 7));
/// assert_eq!(ticket.wait(), Ok(42));
/// ```
pub fn pair<T>() -> (Completer<T>, Ticket<T>) {
    sides(Arc::new(Shared::new(Weak::new())))
}

/// The two sides of a pending cell whose `sides` count is 2.
fn sides<T>(shared: Arc<Shared<T>>) -> (Completer<T>, Ticket<T>) {
    (
        Completer {
            shared: Arc::clone(&shared),
        },
        Ticket { shared },
    )
}

/// A bounded pool of ticket cells: [`Cells::pair`] reuses a cell whose completer and ticket
/// are both gone, and allocates only when none is free (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use flujo_runtime::ticket::Cells;
///
/// let cells = Cells::new(16);
/// for round in 0..3 {
///     let (completer, ticket) = cells.pair();
///     completer.complete(round);
///     assert_eq!(ticket.wait(), Ok(round));
/// }
/// // Both sides were gone after each round: one cell served all three.
/// assert_eq!((cells.made(), cells.idle()), (1, 1));
/// ```
pub struct Cells<T> {
    /// Cells with no live side, ready to pair.
    free: Mutex<Vec<Arc<Shared<T>>>>,
    /// The most cells `free` keeps.
    keep: usize,
    /// Cells allocated so far.
    made: AtomicUsize,
}

impl<T> Cells<T> {
    /// An empty pool that keeps at most `keep` free cells (more are freed as they come back).
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            keep,
            made: AtomicUsize::new(0),
        })
    }

    /// [`pair`] from this pool: a free cell if there is one, else a new one that comes back
    /// here when both its sides are gone.
    pub fn pair(self: &Arc<Self>) -> (Completer<T>, Ticket<T>) {
        let free = self.lock().pop();
        let shared = match free {
            Some(cell) => {
                // Nobody else holds the cell: it was put back after both its sides went.
                cell.sides.store(2, Ordering::Relaxed);
                cell
            }
            None => {
                self.made.fetch_add(1, Ordering::Relaxed);
                Arc::new(Shared::new(Arc::downgrade(self)))
            }
        };
        sides(shared)
    }

    /// The most free cells the pool keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Free cells now in the pool.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Cells allocated by [`pair`](Self::pair) so far (each pairing that found no free one).
    pub fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    /// Keeps `cell` if there is room (it is freed otherwise, outside the lock).
    fn put(&self, cell: Arc<Shared<T>>) {
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(cell);
        } else {
            drop(free);
            drop(cell);
        }
    }

    /// The free list; a poisoned lock still holds a valid list (pushes and pops only).
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Shared<T>>>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> fmt::Debug for Cells<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cells")
            .field("keep", &self.keep)
            .field("idle", &self.idle())
            .field("made", &self.made())
            .finish()
    }
}

/// Why a ticket gives no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// The completer was dropped without completing (the executor stopped or panicked).
    Abandoned,
    /// The value was already handed out by an earlier [`Ticket::try_poll`].
    AlreadyTaken,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Abandoned => "the work was abandoned before it completed",
            Self::AlreadyTaken => "the ticket's value was already taken",
        })
    }
}

impl std::error::Error for TicketError {}

/// Why [`Ticket::wait_timeout`] returned without a value.
#[non_exhaustive]
pub enum WaitError<T> {
    /// The time ran out while the work was still pending; the ticket is handed back so the
    /// caller can wait again, poll, or cancel.
    Timeout(Ticket<T>),
    /// The ticket will never give a value.
    Failed(TicketError),
}

impl<T> WaitError<T> {
    /// The ticket handed back by a timeout, if this is one.
    pub fn into_ticket(self) -> Option<Ticket<T>> {
        match self {
            Self::Timeout(ticket) => Some(ticket),
            Self::Failed(_) => None,
        }
    }
}

impl<T> From<TicketError> for WaitError<T> {
    fn from(error: TicketError) -> Self {
        Self::Failed(error)
    }
}

impl<T> fmt::Debug for WaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

impl<T> fmt::Display for WaitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for the ticket"),
            Self::Failed(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<T> std::error::Error for WaitError<T> {}

/// The submitter's side: waits for (or polls) the value, and can ask the work to stop.
///
/// # Examples
///
/// ```
/// use flujo_runtime::ticket::{pair, TicketError, WaitError};
/// use std::time::Duration;
///
/// let (completer, mut ticket) = pair::<u32>();
/// assert_eq!(ticket.try_poll(), Ok(None));
///
/// // Nothing completes it yet: the timeout hands the ticket back.
/// let ticket = match ticket.wait_timeout(Duration::from_millis(1)) {
///     Err(WaitError::Timeout(ticket)) => ticket,
///     other => panic!("expected a timeout, got {other:?}"),
/// };
///
/// ticket.cancel();
/// assert!(completer.cancel_flag().is_cancelled());
/// drop(completer); // the runner gave up without completing
/// assert_eq!(ticket.wait(), Err(TicketError::Abandoned));
/// ```
pub struct Ticket<T> {
    /// The cell shared with the completer.
    shared: Arc<Shared<T>>,
}

impl<T> Ticket<T> {
    /// Blocks until the work completes and returns its value.
    ///
    /// # Errors
    ///
    /// [`TicketError::Abandoned`] if the completer was dropped without completing,
    /// [`TicketError::AlreadyTaken`] if [`try_poll`](Self::try_poll) already returned the value.
    pub fn wait(self) -> Result<T, TicketError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = take(&mut state) {
                return result;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until the work completes or `timeout` passes.
    ///
    /// A timeout too large to add to the current instant waits without a limit.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] with this ticket if the work is still pending when the time is
    /// up; [`WaitError::Failed`] with the reasons of [`wait`](Self::wait).
    pub fn wait_timeout(self, timeout: Duration) -> Result<T, WaitError<T>> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.wait().map_err(WaitError::Failed);
        };
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = take(&mut state) {
                return result.map_err(WaitError::Failed);
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                return Err(WaitError::Timeout(self));
            }
            // A spurious wake-up or a timeout both loop back: the state decides.
            state = self
                .shared
                .ready
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes the value if the work completed, without blocking: `Ok(None)` while it is pending.
    ///
    /// After this returned `Ok(Some(_))` the ticket is spent: later polls and waits return
    /// [`TicketError::AlreadyTaken`].
    ///
    /// # Errors
    ///
    /// [`TicketError::Abandoned`] if the completer was dropped without completing,
    /// [`TicketError::AlreadyTaken`] if the value was already taken.
    pub fn try_poll(&mut self) -> Result<Option<T>, TicketError> {
        take(&mut self.shared.lock()).transpose()
    }

    /// Asks the work to stop: raises the shared [`CancelFlag`] that the run polls. The work may
    /// still complete (with whatever result a cancelled run gives), so keep waiting for it.
    pub fn cancel(&self) {
        self.shared.cancel.cancel();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl<T> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match *self.shared.lock() {
            State::Pending => "Pending",
            State::Done(_) => "Done",
            State::Taken => "Taken",
            State::Abandoned => "Abandoned",
        };
        f.debug_struct("Ticket")
            .field("state", &state)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The runner's side: completes the ticket once, and exposes the cancel flag to pass into a
/// run. Dropping it without completing wakes the waiters with [`TicketError::Abandoned`].
///
/// # Examples
///
/// ```
/// use flujo_runtime::ticket::pair;
///
/// let (completer, ticket) = pair();
/// let worker = std::thread::spawn(move || {
///     // A run would receive `completer.cancel_flag()` and stop early once it is raised.
///     let stopped_early = completer.cancel_flag().is_cancelled();
///     completer.complete(stopped_early);
/// });
/// worker.join().unwrap();
/// assert_eq!(ticket.wait(), Ok(false));
/// ```
pub struct Completer<T> {
    /// The cell shared with the ticket.
    shared: Arc<Shared<T>>,
}

impl<T> Completer<T> {
    /// Delivers the value and wakes every waiter. If the ticket was dropped meanwhile, the
    /// value is dropped with the shared cell.
    pub fn complete(self, value: T) {
        self.shared.settle(State::Done(value));
        // `Drop` runs next and finds the state settled: it changes nothing.
    }

    /// The flag the ticket side raises with [`Ticket::cancel`]; pass it into the run.
    pub fn cancel_flag(&self) -> &CancelFlag {
        &self.shared.cancel
    }

    /// Whether the ticket side asked the work to stop.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Whether the ticket was dropped: nobody will read the value (the run may skip the work).
    pub fn is_orphaned(&self) -> bool {
        self.shared.sides.load(Ordering::Acquire) == 1
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.shared.settle(State::Abandoned);
        self.shared.release();
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
