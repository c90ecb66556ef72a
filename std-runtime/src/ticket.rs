//! A one-shot completion handle: the executor completes, the submitter waits or awaits.
//!
//! [`pair`] makes a [`Completer`] (kept by whoever runs the work) and a [`Ticket`] (handed to
//! whoever submitted it). Both share one `Arc`'d cell: an atomic state word, a slot for the
//! value, a `Mutex` over an optional [`Waker`] with a `Condvar` for parked waiters, and a
//! [`CancelFlag`] the submitter raises and the run polls.
//!
//! The state moves only forward, each move one atomic operation:
//!
//! | from | event | to |
//! |---|---|---|
//! | `Pending` | [`Completer::complete`] (writes the value, then settles with `Release`) | `Done` |
//! | `Pending` | the completer is dropped without completing | `Abandoned` |
//! | `Done` | a wait, poll or await takes the value (after an `Acquire` load saw `Done`) | `Taken` |
//!
//! Two flags ride on the same word, both raised by the ticket side only: `parked` (a thread
//! waits on the `Condvar`) and `waker` (an await registered a [`Waker`]). The completer settles
//! with one `fetch_or` and takes the lock only when it sees one of them, so a completion that
//! nobody waits for yet, and a wait that finds the value already there, take no lock at all.
//!
//! So a waiter never hangs on a completer that died (a panic unwinding through the executor
//! drops the completer, and the waiter gets [`TicketError::Abandoned`]), and the value is
//! handed out exactly once. Cancellation is a separate flag, not a state: the work may still
//! complete after a cancel, and its value is then delivered as usual.
//!
//! # Waiting
//!
//! [`Ticket::wait`] first spins on the state word, for at most [`SPIN_TIME`] (30 µs): a few
//! turns of a CPU spin hint ([`SPIN_TURNS`], about 2 µs), then yields of the CPU, loading the
//! state after each; then it parks on the `Condvar`. A ticket whose run an executor left to a
//! dispatcher on the submitter's own CPU skips the turns and yields from the start: that
//! dispatcher runs only when the waiter gives the CPU up. Waking a parked thread costs tens of
//! microseconds on a virtual machine, far more than a short run takes, so a submit-then-wait
//! of a short run is done before the spin ends and never parks. A host with more waiting
//! threads than cores, where spinning waiters would take CPU from the runs, waits with
//! [`Ticket::wait_parked`], which parks at once, or sets its own bound with
//! [`Ticket::wait_with_spin`]. [`Ticket::wait_timeout`] spins for at most the smaller of its
//! timeout and [`SPIN_TIME`].
//!
//! # Async
//!
//! A [`Ticket`] is a [`Future`] (and [`Unpin`]): an async host awaits it directly,
//! `ticket.await`, and gets what [`wait`](Ticket::wait) would return. A poll that finds the
//! work pending stores the task's waker in the cell (replacing the one of an earlier poll,
//! unless it would wake the same task); completion and abandonment wake it. A poll after the
//! value was taken returns [`TicketError::AlreadyTaken`]. Nothing blocks: an executor thread
//! completing the ticket only calls [`Waker::wake`].
//!
//! # Dropping
//!
//! Dropping a ticket (or the future awaiting it, which is the ticket itself) does not stop the
//! run: the work goes on, and its value is dropped when it completes, by the completer's
//! thread. A dropped future's waker is dropped with it (the task is not woken, nor kept
//! alive, by a run it gave up). A run can see that nobody will read its value with
//! [`Completer::is_orphaned`]. To stop the work, [`Ticket::cancel`] before dropping. Dropping
//! the completer without completing abandons the ticket (and wakes its waiter or its task).
//!
//! # Recycled cells
//!
//! [`pair`] allocates a fresh cell. The executor instead takes its pairs from a bounded pool of
//! cells ([`Cells`]), so a submission allocates nothing once the pool holds as many cells as
//! there are tickets alive at once. A cell counts its live sides (completer and ticket); the
//! side dropped last puts it back: it drops a value nobody took and a waker left over, sets the
//! state back to `Pending` and returns the cell to its pool (or frees it when the pool already
//! keeps [`Cells::keep`] cells, or was dropped). Nothing can reach a cell once both sides are
//! gone (the cancel flag is lent only as a borrow of the completer), so a reused cell is as
//! good as new. A [`CancelFlag`] cannot be lowered again, so a cell whose flag was raised is
//! freed instead of reused: a cancelled submission costs one allocation later.
//!
//! A cell holds its pool by a strong reference; the pool's owner ([`Cells`]) closes the pool
//! when it is dropped, freeing the idle cells and every cell that comes back later, so the
//! pool goes with its last cell.

use core::fmt;
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::panic::RefUnwindSafe;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use flujo_core::graph::CancelFlag;

use crate::sync::{spin_hint, Arc, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, UnsafeCell};

/// Turns of a CPU spin hint (`pause`) that a wait spins first, each followed by a load of the
/// state word: about 1.7 µs on the project's VMs (AMD EPYC, 2 vCPUs: about 26 ns a turn),
/// enough for a hand-off to a pool thread that is awake and a short run. Under loom: 2 turns,
/// each a yield to the model.
pub const SPIN_TURNS: u32 = if cfg!(loom) { 2 } else { 64 };

/// How long [`Ticket::wait`] spins before it parks: [`SPIN_TURNS`] turns of a spin hint, then
/// `yield`s of the CPU until this much time has passed since the wait began.
///
/// Chosen by measurement (`std-runtime/examples/ticket_spin_cost.rs`, and the `submit_latency`
/// bench): waking a parked thread costs tens of microseconds on the project's VMs (about 60 µs
/// when their CPUs are idle), and a submit-then-wait of a 10-task chain on a 1-worker
/// executor completes in about 2.7 µs when the waiter spins (p50; 18 µs when it parks at
/// once), so the spin covers a short run with a wide margin, while a wait that outlasts it
/// wastes at most half the cost of the park and wake-up it then pays anyway. The yields keep a
/// spinning waiter from holding a CPU that the run it waits for needs: on a machine with more
/// busy threads than cores, a pure spin delays the run by the whole spin (measured: p50 55 µs
/// for a 55 µs pure spin against 5 µs parked, at a load of 10 on 2 cores), while a yielding
/// one lets it run at once (5.6 µs).
pub const SPIN_TIME: Duration = Duration::from_micros(30);

/// The state word: the phase in the low two bits, then the ticket side's two flags.
const PHASE: usize = 0b11;
/// Not completed yet.
const PENDING: usize = 0;
/// Completed; the value waits in the slot.
const DONE: usize = 1;
/// The completer was dropped without completing.
const ABANDONED: usize = 2;
/// The value was handed out (`DONE | 2`: taking it is one `or`).
const TAKEN: usize = 3;
/// A thread waits (or is about to) on the `Condvar`; raised under the lock.
const PARKED: usize = 1 << 2;
/// A waker is stored in the cell; raised under the lock.
const WAKER: usize = 1 << 3;

/// The cell a completer and its ticket share.
struct Shared<T> {
    /// Phase and flags (see the constants). Only the completer leaves `Pending`; after that
    /// only the ticket side writes it, until the last side resets it.
    state: AtomicUsize,
    /// The value: written by the completer before it settles `Done`, moved out by the ticket
    /// after it saw `Done`, or dropped by the last side (or the cell's `Drop`) while `Done`.
    value: UnsafeCell<MaybeUninit<T>>,
    /// The waker of the last poll that found the work pending; also the `Condvar`'s lock.
    waiter: Mutex<Option<Waker>>,
    /// Wakes a thread parked in a wait.
    ready: Condvar,
    /// Raised by the ticket side, read by the run.
    cancel: CancelFlag,
    /// Live sides: 2 from the pairing until the completer and the ticket are dropped.
    sides: AtomicUsize,
    /// The pool the cell goes back to when both sides are gone (`None`: a lone [`pair`]).
    home: Option<Arc<Pool<T>>>,
}

// SAFETY: the value is never shared by reference: the completer moves it in before the
// `Release` that settles `Done`, and exactly one party moves or drops it out after an
// `Acquire` that saw `Done` (the ticket, which is unique and marks it `Taken`; or the side
// dropped last, ordered after both sides by the `AcqRel` count; or the cell's `Drop`). So
// sending the cell, or sharing it between threads, only ever moves a `T` between threads:
// `T: Send` is enough, as for `Mutex<T>`. The other fields are `Send + Sync`.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as for `Send` above: a `&Shared<T>` gives no `&T`, only the moves described there.
unsafe impl<T: Send> Sync for Shared<T> {}

// A panic while the cell is shared (a user `Drop` of a value or a waker, a waker's `wake`)
// leaves it consistent: every state change is one atomic operation, and a value is moved out
// of the slot before the state stops saying it is there. So it is as unwind-safe as the
// `Mutex` it replaced.
impl<T> RefUnwindSafe for Shared<T> {}

impl<T> Shared<T> {
    /// A pending cell with both sides live, going back to `home` when they are gone.
    fn new(home: Option<Arc<Pool<T>>>) -> Self {
        Self {
            state: AtomicUsize::new(PENDING),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            waiter: Mutex::new(None),
            ready: Condvar::new(),
            cancel: CancelFlag::new(),
            sides: AtomicUsize::new(2),
            home,
        }
    }

    /// Locks the waker slot. No code that can panic runs under the lock, but a poisoned lock
    /// still holds a consistent slot, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Option<Waker>> {
        self.waiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves `Pending` for `phase` (called by the completer only, once) and wakes the waiter
    /// the ticket side announced, if any.
    fn settle(&self, phase: usize) {
        // `Release`: the value written before is visible to whoever sees `Done`.
        let old = self.state.fetch_or(phase, Ordering::Release);
        if old & (PARKED | WAKER) == 0 {
            return;
        }
        // The flags are raised under the lock: taking it here waits until a parking thread
        // is inside `Condvar::wait` and a polling task's waker is stored.
        let waker = {
            let mut slot = self.lock();
            if old & WAKER != 0 {
                slot.take()
            } else {
                None
            }
        };
        if old & PARKED != 0 {
            self.ready.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Spins while the work is pending: up to `turns` turns of a CPU spin hint, then
    /// yields the CPU until `spin` has passed since the start (under loom, one yield: a model
    /// must not depend on the clock). Returns the last state seen. `Duration::ZERO` only loads
    /// the state once.
    fn spin(&self, spin: Duration, turns: u32) -> usize {
        let mut state = self.state.load(Ordering::Acquire);
        if spin.is_zero() {
            return state;
        }
        let mut turn = 0;
        while state & PHASE == PENDING && turn < turns {
            spin_hint();
            turn += 1;
            state = self.state.load(Ordering::Acquire);
        }
        if state & PHASE != PENDING {
            return state;
        }
        #[cfg(not(loom))]
        {
            let start = Instant::now();
            while state & PHASE == PENDING && start.elapsed() < spin {
                crate::sync::yield_now();
                state = self.state.load(Ordering::Acquire);
            }
        }
        #[cfg(loom)]
        {
            crate::sync::yield_now();
            state = self.state.load(Ordering::Acquire);
        }
        state
    }

    /// Parks until the work is settled (returns the state then) or `deadline` passes
    /// (returns `None`).
    fn park(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut slot = self.lock();
        loop {
            // Raised under the lock, so the completer that sees it waits for the lock, which
            // `Condvar::wait` gives up only once this thread waits.
            let state = self.state.fetch_or(PARKED, Ordering::Acquire) | PARKED;
            if state & PHASE != PENDING {
                return Some(state);
            }
            // A spurious wake-up or a timeout both loop back: the state decides.
            slot = match deadline {
                None => self
                    .ready
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.ready
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Stores `waker` for the completer; returns the state after the registration (the
    /// work may have settled meanwhile: the waker then stays stored, unused, until the cell is
    /// reset or freed).
    fn register(&self, waker: &Waker) -> usize {
        let mut slot = self.lock();
        let old = match &*slot {
            Some(stored) if stored.will_wake(waker) => None,
            _ => slot.replace(waker.clone()),
        };
        // `Acquire`: if the work settled meanwhile, its value is visible.
        let state = self.state.fetch_or(WAKER, Ordering::Acquire) | WAKER;
        drop(slot);
        // A replaced waker is dropped outside the lock.
        drop(old);
        state
    }

    /// One side is gone (called last thing by each side's `Drop`). The second one recycles
    /// the cell: nobody else can reach it any more (the `AcqRel` decrement orders both sides'
    /// last uses before the reset).
    fn release(this: &Arc<Self>) {
        if this.sides.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // A lone pair's cell is freed with its last `Arc` (its `Drop` drops the value).
        let Some(home) = &this.home else {
            return;
        };
        // A raised flag cannot be lowered: that cell is freed with its last `Arc`.
        if this.cancel.is_cancelled() {
            return;
        }
        let state = this.state.load(Ordering::Relaxed);
        let value = (state & PHASE == DONE).then(|| {
            // SAFETY: `Done`, not taken, and both sides are gone: the value is there and
            // nobody else can reach it (the `AcqRel` count orders the write before this).
            this.value
                .with_mut(|slot| unsafe { (*slot).assume_init_read() })
        });
        let waker = if state & WAKER != 0 {
            this.lock().take()
        } else {
            None
        };
        // Reset before the drops below, which run user code that may panic: the slot is
        // empty now, so an unwind leaves a pending cell that is simply freed.
        this.state.store(PENDING, Ordering::Relaxed);
        drop(value);
        drop(waker);
        home.put(Arc::clone(this));
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if self.state.load(Ordering::Relaxed) & PHASE == DONE {
            // SAFETY: `Done` and never taken: the value is in the slot, and `&mut self` is the
            // only access left.
            self.value
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
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
    sides(Arc::new(Shared::new(None)))
}

/// The two sides of a pending cell whose `sides` count is 2.
fn sides<T>(shared: Arc<Shared<T>>) -> (Completer<T>, Ticket<T>) {
    (
        Completer {
            shared: Arc::clone(&shared),
        },
        Ticket {
            shared,
            spin_turns: SPIN_TURNS,
        },
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
    /// The pool, shared with every cell it made.
    pool: Arc<Pool<T>>,
}

/// What [`Cells`] and its cells share.
struct Pool<T> {
    /// Cells with no live side, ready to pair.
    free: Mutex<Free<T>>,
    /// The most cells `free` keeps.
    keep: usize,
    /// Cells allocated so far.
    made: AtomicUsize,
}

/// The free list, and whether the pool still takes cells back.
struct Free<T> {
    /// Idle cells.
    cells: Vec<Arc<Shared<T>>>,
    /// Cleared when the [`Cells`] is dropped: cells coming back are freed from then on (an idle
    /// cell holds the pool, so keeping them would keep both alive for ever).
    open: bool,
}

impl<T> Cells<T> {
    /// An empty pool that keeps at most `keep` free cells (more are freed as they come back).
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            pool: Arc::new(Pool {
                free: Mutex::new(Free {
                    cells: Vec::new(),
                    open: true,
                }),
                keep,
                made: AtomicUsize::new(0),
            }),
        })
    }

    /// [`pair`] from this pool: a free cell if there is one, else a new one that comes back
    /// here when both its sides are gone.
    pub fn pair(&self) -> (Completer<T>, Ticket<T>) {
        let free = self.pool.lock().cells.pop();
        let shared = match free {
            Some(cell) => {
                // Nobody else holds the cell: it was put back after both its sides went (and
                // the pool's lock orders its reset before this).
                cell.sides.store(2, Ordering::Relaxed);
                cell
            }
            None => {
                self.pool.made.fetch_add(1, Ordering::Relaxed);
                Arc::new(Shared::new(Some(Arc::clone(&self.pool))))
            }
        };
        sides(shared)
    }

    /// The most free cells the pool keeps.
    pub fn keep(&self) -> usize {
        self.pool.keep
    }

    /// Free cells now in the pool.
    pub fn idle(&self) -> usize {
        self.pool.lock().cells.len()
    }

    /// Cells allocated by [`pair`](Self::pair) so far (each pairing that found no free one).
    pub fn made(&self) -> usize {
        self.pool.made.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Cells<T> {
    fn drop(&mut self) {
        let idle = {
            let mut free = self.pool.lock();
            free.open = false;
            core::mem::take(&mut free.cells)
        };
        // Freed outside the lock: each drops its hold on the pool.
        drop(idle);
    }
}

impl<T> Pool<T> {
    /// Keeps `cell` if the pool is open and has room (it is freed otherwise, outside the lock).
    fn put(&self, cell: Arc<Shared<T>>) {
        let mut free = self.lock();
        if free.open && free.cells.len() < self.keep {
            free.cells.push(cell);
        } else {
            drop(free);
            drop(cell);
        }
    }

    /// The free list; a poisoned lock still holds a valid list (pushes and pops only).
    fn lock(&self) -> MutexGuard<'_, Free<T>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> fmt::Debug for Cells<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cells")
            .field("keep", &self.keep())
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
    /// The value was already handed out by an earlier [`Ticket::try_poll`] or await.
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

/// The submitter's side: waits for, polls or awaits the value, and can ask the work to stop.
///
/// Dropping it does not stop the work (see the [module docs](self#dropping)).
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
///
/// Awaited in an async runtime:
///
/// ```
/// let (completer, ticket) = flujo_runtime::ticket::pair();
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// std::thread::spawn(move || completer.complete("done"));
/// assert_eq!(runtime.block_on(ticket), Ok("done"));
/// ```
pub struct Ticket<T> {
    /// The cell shared with the completer.
    shared: Arc<Shared<T>>,
    /// Turns of a spin hint a wait starts with: [`SPIN_TURNS`], or none when the work was
    /// left to a thread on the waiter's own CPU (see [`Ticket::spin_none`]).
    spin_turns: u32,
}

impl<T> Ticket<T> {
    /// Makes this ticket's waits skip their turns of a spin hint and yield the CPU from the
    /// start: the executor calls it when it left the work to a thread that runs on the
    /// submitter's CPU (see `crate::sync::current_cpu`), which cannot run it until the
    /// waiter gives the CPU up.
    #[inline]
    pub(crate) fn spin_none(&mut self) {
        self.spin_turns = 0;
    }

    /// Whether this ticket's waits spin first (see [`spin_none`](Self::spin_none)).
    #[cfg(test)]
    pub(crate) fn spins(&self) -> bool {
        self.spin_turns > 0
    }

    /// Blocks until the work completes and returns its value: spins for at most [`SPIN_TIME`],
    /// then parks (see the [module docs](self#waiting)).
    ///
    /// # Errors
    ///
    /// [`TicketError::Abandoned`] if the completer was dropped without completing,
    /// [`TicketError::AlreadyTaken`] if [`try_poll`](Self::try_poll) already returned the value.
    pub fn wait(self) -> Result<T, TicketError> {
        self.wait_with_spin(SPIN_TIME)
    }

    /// [`wait`](Self::wait) without the spin: parks at once, so the waiting thread uses no CPU
    /// until the work completes. For hosts with more waiting threads than cores, where
    /// spinning waiters would slow the runs they wait for.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let (completer, ticket) = flujo_runtime::ticket::pair();
    /// std::thread::spawn(move || completer.complete(7));
    /// assert_eq!(ticket.wait_parked(), Ok(7));
    /// ```
    pub fn wait_parked(self) -> Result<T, TicketError> {
        self.wait_with_spin(Duration::ZERO)
    }

    /// [`wait`](Self::wait) with a spin of at most `spin` instead of [`SPIN_TIME`]: up to
    /// [`SPIN_TURNS`] turns of a CPU spin hint, then yields of the CPU until `spin` has passed,
    /// then a park. `Duration::ZERO` is [`wait_parked`](Self::wait_parked). For hosts that
    /// measured their own hand-off and wake-up costs.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_with_spin(mut self, spin: Duration) -> Result<T, TicketError> {
        let state = self.shared.spin(spin, self.spin_turns);
        if let Some(result) = self.take(state) {
            return result;
        }
        self.park_until_settled()
    }

    /// Parks until the work settles, then takes the result.
    fn park_until_settled(mut self) -> Result<T, TicketError> {
        loop {
            // Without a deadline `park` returns only a settled state: this loops once.
            if let Some(result) = self.shared.park(None).and_then(|state| self.take(state)) {
                return result;
            }
        }
    }

    /// Blocks until the work completes or `timeout` passes. Spins first like
    /// [`wait`](Self::wait), for at most the smaller of `timeout` and [`SPIN_TIME`].
    ///
    /// A timeout too large to add to the current instant waits without a limit.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] with this ticket if the work is still pending when the time is
    /// up; [`WaitError::Failed`] with the reasons of [`wait`](Self::wait).
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<T, WaitError<T>> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.wait().map_err(WaitError::Failed);
        };
        let state = self.shared.spin(timeout.min(SPIN_TIME), self.spin_turns);
        if let Some(result) = self.take(state) {
            return result.map_err(WaitError::Failed);
        }
        // `park` returns a settled state or `None` once the deadline passed.
        match self
            .shared
            .park(Some(deadline))
            .and_then(|state| self.take(state))
        {
            Some(result) => result.map_err(WaitError::Failed),
            None => Err(WaitError::Timeout(self)),
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
        let state = self.shared.state.load(Ordering::Acquire);
        self.take(state).transpose()
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

    /// The result for a `state` loaded with `Acquire` (or stronger): `None` while pending. Moves
    /// the value out when it is there (`&mut self`: the ticket is the one taker).
    fn take(&mut self, state: usize) -> Option<Result<T, TicketError>> {
        match state & PHASE {
            PENDING => None,
            ABANDONED => Some(Err(TicketError::Abandoned)),
            TAKEN => Some(Err(TicketError::AlreadyTaken)),
            _ => {
                // SAFETY: `Done` was seen with `Acquire`, so the completer's write of the value
                // happened before; the value is still there (only this ticket takes it, and it
                // marks it taken right after); the last side only drops it once this side is
                // gone.
                let value = self
                    .shared
                    .value
                    .with_mut(|slot| unsafe { (*slot).assume_init_read() });
                // Only the ticket side writes the word once it is settled: a plain store keeps
                // the flags and marks the value gone.
                self.shared.state.store(state | TAKEN, Ordering::Relaxed);
                Some(Ok(value))
            }
        }
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, TicketError>;

    /// Ready with what [`Ticket::wait`] would return once the work settled; otherwise stores
    /// the task's waker (see the [module docs](self#async)).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let state = this.shared.state.load(Ordering::Acquire);
        if let Some(result) = this.take(state) {
            return Poll::Ready(result);
        }
        let state = this.shared.register(cx.waker());
        match this.take(state) {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        // A future dropped while registered takes its waker back: the task is not woken for
        // a ticket it gave up, nor kept alive until the run ends. (Its own flag: `Relaxed`.)
        if self.shared.state.load(Ordering::Relaxed) & WAKER != 0 {
            let waker = self.shared.lock().take();
            drop(waker);
        }
        Shared::release(&self.shared);
    }
}

impl<T> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared.state.load(Ordering::Acquire) & PHASE {
            PENDING => "Pending",
            DONE => "Done",
            TAKEN => "Taken",
            _ => "Abandoned",
        };
        f.debug_struct("Ticket")
            .field("state", &state)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The runner's side: completes the ticket once, and exposes the cancel flag to pass into a
/// run. Dropping it without completing wakes the waiter (or the awaiting task) with
/// [`TicketError::Abandoned`].
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
    /// Delivers the value and wakes the waiter or the awaiting task. If the ticket was dropped
    /// meanwhile, the value is dropped when the cell is recycled or freed (on this thread).
    pub fn complete(self, value: T) {
        // SAFETY: the slot is empty (the cell is pending: only this completer leaves
        // `Pending`, and `complete` takes it by value), and nobody reads it before `settle`
        // publishes it with `Release`.
        self.shared.value.with_mut(|slot| unsafe {
            (*slot).write(value);
        });
        self.shared.settle(DONE);
        // `Drop` runs next and finds the state settled: it only releases this side.
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
        // Only this side leaves `Pending`, so its own last write is what it reads.
        if self.shared.state.load(Ordering::Relaxed) & PHASE == PENDING {
            self.shared.settle(ABANDONED);
        }
        Shared::release(&self.shared);
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

#[cfg(all(test, loom))]
mod loom;
