//! A bounded pool of OS threads for blocking calls, and a [`Step`] that runs its call there
//! ([`BlockingPool::step`]): issue 16's "blocking steps off the pool" (design:
//! `docs/waiting.md`).
//!
//! A step that blocks on I/O (a remote call, a file, a lock held elsewhere) holds whatever
//! thread runs it for as long as it blocks. On the executor's compute pool that is a worker
//! (and its dispatcher place) that no other run can use meanwhile. A [`BlockingPool`] moves the
//! call to a thread of its own; the compute thread waits for the result with
//! [`StepCx::wait_until`], and the runtime's clock decides what that thread does meanwhile
//! (it may run other queued runs: see `docs/waiting.md`).
//!
//! # What it bounds
//!
//! - **Threads**: at most [`BlockingConfig::threads`] OS threads, started lazily as calls need
//!   them (named `flujo-blocking-<n>`) and kept until the pool closes.
//! - **Calls waiting for a thread**: at most [`BlockingConfig::queue`], first in, first out.
//!   A call that finds every thread busy and the queue full is refused at once
//!   ([`Reason::Full`]), and the refusal hands its input back ([`Refused::into_inner`]).
//! - **Memory**: one small shared slot per call (the input, the closure, then the result),
//!   freed when both the caller's [`Pending`] and the thread are done with it.
//!
//! # What time limits and cancellation can do, and what they cannot
//!
//! A synchronous call cannot be suspended or killed: Rust has no safe way to stop a thread
//! from outside. So every limit here is cooperative:
//!
//! - A caller that stops waiting (its [`Pending`] is dropped or [`abandon`](Pending::abandon)ed;
//!   for a [`BlockingStep`]: its attempt's timeout, its run's deadline or its run's cancel)
//!   raises the call's flag, which the call reads with [`CallCx::should_stop`]. The caller
//!   goes on at once; the call's result, when it comes, is dropped (counted as
//!   [`abandoned`](BlockingStats::abandoned)).
//! - A call that ignores its flag **keeps its blocking thread until it returns**, and counts
//!   against the bound meanwhile: enough such calls fill the pool, and further calls are
//!   refused ([`Reason::Full`]). The run that gave up on it is not held up.
//! - [`shutdown`](BlockingPool::shutdown) raises the flag of every running call once its grace
//!   has passed, and reports the calls that still run ([`BlockingReport`]); their threads are
//!   left to end on their own.
//!
//! A call given up before it started never starts (its input and closure are dropped).
//!
//! # Panics
//!
//! A panic inside a call is caught on its blocking thread, which lives on, and comes back as
//! [`CallError::Panicked`] (for a [`BlockingStep`]: a failed attempt of class
//! [`ErrorClass::Panic`]). In a build with `panic = "abort"` nothing can catch it
//! ([`PANICS_CAUGHT`](crate::PANICS_CAUGHT)).
//!
//! # The protocol
//!
//! One `Mutex` + `Condvar` pair guards the queue and the counts (calls are milliseconds
//! long: the lock is not the cost). A thread is *handed* a call: a caller that finds an idle
//! thread gives it a *token* and wakes it, so a queued call counts as waiting for a thread
//! only when no token promises one (`queue.len() - tokens`, the bounded quantity). A thread
//! that ends a call promises itself the next unpromised call, or counts itself idle, under the
//! lock that counts the call's end (a caller that saw its call end finds the thread free).
//! Each call's slot has its own small lock (taken after the pool's, never before), for the
//! call's stage: queued, running, done, taken or given up.
//!
//! # Examples
//!
//! A call on the pool, from a plain thread:
//!
//! ```
//! use std::time::Duration;
//! use flujo_runtime::blocking::{BlockingConfig, BlockingPool, Reason};
//!
//! let pool = BlockingPool::new(BlockingConfig { threads: 1, queue: 0 }).unwrap();
//! let pending = pool
//!     .call(20_u64, |x, _cx| {
//!         std::thread::sleep(Duration::from_millis(10)); // a remote call, say
//!         x + 1
//!     })
//!     .unwrap();
//! // The only thread is busy and there is no queue: the next call is refused, input back.
//! let refused = pool.call(7_u64, |x, _| x).unwrap_err();
//! assert_eq!((refused.reason, refused.into_inner()), (Reason::Full, 7));
//! assert_eq!(pending.wait().ok(), Some(21));
//! assert_eq!(pool.stats().completed, 1);
//! ```
//!
//! A blocking step in a graph run by an [`Executor`](crate::Executor), with an attempt
//! timeout that gives up on a call that takes too long:
//!
//! ```
//! use std::time::Duration;
//! use flujo_core::graph::{Graph, StepError, TaskConfig};
//! use flujo_core::interp::Outcome;
//! use flujo_core::policy::ErrorClass;
//! use flujo_runtime::blocking::{BlockingConfig, BlockingPool};
//! use flujo_runtime::clock::ticks;
//! use flujo_runtime::config::OptimizationConfig;
//! use flujo_runtime::Executor;
//!
//! let pool = BlockingPool::new(BlockingConfig::default()).unwrap();
//! let g = Graph::<u64, ()>::build(|b| {
//!     // The call: "remote" answers x * 2 after `x` ms, and stops early when told to.
//!     let remote = pool.step(|x: u64, cx| {
//!         for _ in 0..x {
//!             if cx.should_stop() {
//!                 return Err(StepError::transient("given up"));
//!             }
//!             std::thread::sleep(Duration::from_millis(1));
//!         }
//!         Ok(x * 2)
//!     });
//!     let timeout = TaskConfig::new().timeout(ticks(Duration::from_millis(500)));
//!     let call = b.step("remote", remote, timeout);
//!     let add = b.task("add", |x, _| Ok(x + 1));
//!     b.sequence("main", &[call, add])
//! })
//! .unwrap();
//! let ex = Executor::new(OptimizationConfig::latency()).unwrap();
//!
//! let done = ex.run(&g, 3, ()).unwrap();
//! assert_eq!(done.output, Some(3 * 2 + 1));
//!
//! // 60 s is far past the timeout: the attempt fails with a timeout, the call is told to stop.
//! let done = ex.run(&g, 60_000, ()).unwrap();
//! assert_eq!(done.outcome, Outcome::Failed);
//! assert_eq!(done.error.unwrap().kind.class(), ErrorClass::Timeout);
//! let report = pool.shutdown(Duration::from_secs(5));
//! assert_eq!((report.stats.completed, report.stats.abandoned), (1, 1));
//! assert_eq!(report.stats.running, 0);
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::PoisonError;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use flujo_core::graph::{StaticStepError, Step, StepCx, StepError};
use flujo_core::policy::ErrorClass;

use crate::config::ConfigError;
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

/// The largest accepted [`BlockingConfig::threads`].
pub const MAX_BLOCKING_THREADS: usize = 1024;
/// The largest accepted [`BlockingConfig::queue`].
pub const MAX_BLOCKING_QUEUE: usize = 1 << 20;

/// The bounds of a [`BlockingPool`].
///
/// # Examples
///
/// ```
/// use flujo_runtime::blocking::{BlockingConfig, MAX_BLOCKING_THREADS};
/// assert_eq!(BlockingConfig::default(), BlockingConfig { threads: 8, queue: 256 });
/// assert!(BlockingConfig { threads: 0, queue: 1 }.validate().is_err());
/// let err = BlockingConfig { threads: MAX_BLOCKING_THREADS + 1, queue: 1 }.validate();
/// assert_eq!(err.unwrap_err().field(), Some("blocking.threads"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockingConfig {
    /// The most OS threads the pool runs calls on, in `1..=`[`MAX_BLOCKING_THREADS`]. Each
    /// is started when a call finds no idle thread, and kept until the pool closes.
    pub threads: usize,
    /// The most calls that wait for a thread, in `0..=`[`MAX_BLOCKING_QUEUE`] (0: a call
    /// that finds no idle thread, and no room to start one, is refused at once).
    pub queue: usize,
}

impl BlockingConfig {
    /// Checks both bounds.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `blocking.threads` or `blocking.queue`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BLOCKING_THREADS).contains(&self.threads) {
            return Err(ConfigError::Invalid {
                field: "blocking.threads",
                rule: format!(
                    "must be in 1..={MAX_BLOCKING_THREADS} (is {})",
                    self.threads
                ),
            });
        }
        if self.queue > MAX_BLOCKING_QUEUE {
            return Err(ConfigError::Invalid {
                field: "blocking.queue",
                rule: format!("must be in 0..={MAX_BLOCKING_QUEUE} (is {})", self.queue),
            });
        }
        Ok(())
    }
}

impl Default for BlockingConfig {
    /// 8 threads, 256 calls waiting.
    fn default() -> Self {
        Self {
            threads: 8,
            queue: 256,
        }
    }
}

/// Why a call was refused (it never ran; its input was handed back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Every thread was busy, none could be started, and the queue held
    /// [`BlockingConfig::queue`] calls.
    Full,
    /// The pool was shut down (or its last handle dropped): before the call was made, or
    /// while it waited in the queue.
    ShutDown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Full => "the blocking pool's threads are busy and its queue is full",
            Reason::ShutDown => "the blocking pool is shut down",
        })
    }
}

impl std::error::Error for Reason {}

/// A call the pool did not run, with its input, untouched.
pub struct Refused<P> {
    /// The input the call was made with.
    pub input: P,
    /// Why.
    pub reason: Reason,
}

impl<P> Refused<P> {
    /// The input back.
    pub fn into_inner(self) -> P {
        self.input
    }
}

impl<P> fmt::Debug for Refused<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<P> fmt::Display for Refused<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocking call refused: {}", self.reason)
    }
}

impl<P> std::error::Error for Refused<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// A call that panicked on its blocking thread (the thread lives on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPanicked {
    /// The panic's message.
    pub message: String,
}

impl fmt::Display for CallPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocking call panicked: {}", self.message)
    }
}

impl std::error::Error for CallPanicked {}

/// Why an accepted call gave no result.
pub enum CallError<P> {
    /// It panicked.
    Panicked(CallPanicked),
    /// It waited in the queue until the pool shut down, and never ran: its input is handed
    /// back (the reason is [`Reason::ShutDown`]).
    Refused(Refused<P>),
}

impl<P> fmt::Debug for CallError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Panicked(p) => f.debug_tuple("Panicked").field(p).finish(),
            CallError::Refused(r) => f.debug_tuple("Refused").field(r).finish(),
        }
    }
}

impl<P> fmt::Display for CallError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Panicked(p) => p.fmt(f),
            CallError::Refused(r) => r.fmt(f),
        }
    }
}

impl<P> std::error::Error for CallError<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Panicked(p) => Some(p),
            CallError::Refused(r) => Some(&r.reason),
        }
    }
}

/// What a call sees besides its input: whether it should stop early.
#[derive(Debug)]
pub struct CallCx<'a> {
    /// Raised when the caller gives up (its [`Pending`] dropped or abandoned).
    given_up: &'a AtomicBool,
    /// Raised when a shutdown's grace has passed.
    pool_stop: &'a AtomicBool,
}

impl CallCx<'_> {
    /// Whether the call should stop early: its caller gave up on it (a [`Pending`] dropped or
    /// [`abandon`](Pending::abandon)ed; for a [`BlockingStep`], its attempt's timeout, its
    /// run's deadline or its run's cancel), or the pool's
    /// [`shutdown`](BlockingPool::shutdown) grace passed. A call that never looks keeps its
    /// thread until it returns.
    pub fn should_stop(&self) -> bool {
        self.given_up.load(Ordering::Acquire) || self.pool_stop.load(Ordering::Acquire)
    }
}

/// Exact counts of a pool's calls, read together under its lock.
///
/// Every accepted call is in exactly one place:
/// `accepted == completed + panicked + abandoned + handed_back + running + queued`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingStats {
    /// Calls accepted (handed a [`Pending`]).
    pub accepted: u64,
    /// Calls refused with [`Reason::Full`].
    pub refused_full: u64,
    /// Calls refused with [`Reason::ShutDown`] when they were made.
    pub refused_shut_down: u64,
    /// Calls that returned while their caller still waited (result delivered, or left in a
    /// [`Pending`] nobody took).
    pub completed: u64,
    /// Calls that panicked (whether or not their caller still waited).
    pub panicked: u64,
    /// Calls their caller gave up on that did not panic: they returned after it (their
    /// result dropped), or never started.
    pub abandoned: u64,
    /// Accepted calls still queued when a shutdown's grace passed (or the last handle was
    /// dropped), handed back into their [`Pending`] as [`Reason::ShutDown`].
    pub handed_back: u64,
    /// Calls a thread has taken: running, or just handed to a woken thread. At most
    /// [`BlockingConfig::threads`].
    pub running: usize,
    /// Calls waiting for a thread. At most [`BlockingConfig::queue`].
    pub queued: usize,
    /// Threads alive (started and not yet exited). At most [`BlockingConfig::threads`].
    pub threads: usize,
}

/// What [`BlockingPool::shutdown`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingReport {
    /// The counts when it returned. `stats.running` calls still ran: they ignored their
    /// [`should_stop`](CallCx::should_stop) flag (nothing can stop them), and
    /// `stats.threads` threads are left to end on their own.
    pub stats: BlockingStats,
    /// Queued calls this shutdown handed back as [`Reason::ShutDown`].
    pub handed_back: u64,
    /// Threads joined by this shutdown.
    pub threads_joined: usize,
    /// Whether the grace passed before every call had ended (the flag of the calls still
    /// running was then raised).
    pub grace_passed: bool,
}

impl BlockingReport {
    /// Whether every call ended and every thread was joined.
    pub fn is_clean(&self) -> bool {
        self.stats.running == 0 && self.stats.queued == 0 && self.stats.threads == 0
    }
}

/// A bounded pool of OS threads for blocking calls (see the [module](self) docs).
///
/// Cheap to clone (an `Arc`): every clone is the same pool. When the last clone is dropped
/// the pool closes without waiting: queued calls are handed back as [`Reason::ShutDown`],
/// and each thread exits after its current call (detached).
#[derive(Clone)]
pub struct BlockingPool {
    handle: Arc<Handle>,
}

/// The pool's owner side: dropping the last one closes the pool. The threads hold only the
/// [`Shared`] part, so they do not keep the pool open.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        st.hand_back_queued();
        // Idle threads exit now; busy ones after their call. Their handles are dropped with
        // the state (detached).
        self.shared.work.notify_all();
    }
}

/// The state the threads and the handles share.
struct Shared {
    state: Mutex<State>,
    /// Idle threads wait here for a token or the close.
    work: Condvar,
    /// A shutdown waits here for calls to end and threads to exit.
    changed: Condvar,
    /// Raised once a shutdown's grace has passed: every call's `should_stop` turns true.
    stop: AtomicBool,
    cfg: BlockingConfig,
}

impl Shared {
    /// A thread ended a call (counted by the caller of this): it promises itself the next
    /// unpromised call if one waits, else it is idle. Done under the same lock as the count,
    /// so a caller that saw its call end finds the thread free.
    fn call_ended(&self, st: &mut State) {
        debug_assert!(st.popped > 0);
        st.popped -= 1;
        if st.queue.len() > st.tokens {
            st.tokens += 1;
        } else {
            st.idle += 1;
        }
        if st.closed {
            self.changed.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Recovered: every update under the lock is a few counter steps and queue moves that
        // leave the state whole; only a user drop (an input or closure given up) can panic
        // in between, after the state was updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The queue and the counts, under [`Shared::state`].
struct State {
    /// Calls not started, oldest first.
    queue: VecDeque<Arc<dyn Job>>,
    /// Queued calls promised to a thread (woken, just started, or just done with a call).
    /// `tokens <= queue.len()`; `queue.len() - tokens` calls wait for a thread (at most
    /// `cfg.queue`).
    tokens: usize,
    /// Threads waiting for a token and not promised one. Threads not running a call number
    /// `idle + tokens` (any of them may take any token); when `idle > 0` every queued call
    /// is promised.
    idle: usize,
    /// Threads alive, `<= cfg.threads`.
    threads: usize,
    /// Threads ever started (names them).
    started: usize,
    /// Calls popped from the queue and not yet ended, `<= threads`.
    popped: usize,
    /// No call is accepted any more; threads exit when no token is left for them.
    closed: bool,
    /// The threads' handles, joined by `shutdown` (at most `cfg.threads`: a thread exits only
    /// once the pool is closed, so none is started after its handle is dropped).
    handles: Vec<JoinHandle<()>>,
    counts: BlockingStats,
}

impl State {
    /// Gives every queued call back to its `Pending` as [`Reason::ShutDown`]; the threads
    /// that were promised one become idle. Returns how many.
    fn hand_back_queued(&mut self) -> u64 {
        let mut n = 0;
        // The closures of the calls handed back are dropped here, under the pool's lock (the
        // slot is type-erased: only it can drop its closure). A closure's drop that calls into
        // this pool would deadlock; none of this crate's does.
        while let Some(job) = self.queue.pop_front() {
            if job.hand_back() {
                n += 1;
            } else {
                // Its caller gave up on it a moment ago and did not find it queued any more.
                self.counts.abandoned += 1;
            }
        }
        self.idle += self.tokens;
        self.tokens = 0;
        self.counts.handed_back += n;
        n
    }

    fn stats(&self) -> BlockingStats {
        debug_assert!(self.tokens <= self.queue.len());
        BlockingStats {
            running: self.popped + self.tokens,
            queued: self.queue.len() - self.tokens,
            threads: self.threads,
            ..self.counts
        }
    }
}

/// A queued call, type-erased for the queue.
trait Job: Send + Sync {
    /// Runs the call on this thread, unless its caller gave up first, and counts how it
    /// ended (under the pool's lock, together with publishing its outcome, so a caller that
    /// sees the outcome sees it counted).
    fn run(&self, shared: &Shared);
    /// Hands the input back to the caller: the call will never run. `false` when its caller
    /// had given up on it already.
    fn hand_back(&self) -> bool;
}

/// A call's slot, as its [`Pending`] sees it.
trait Slot<P, T>: Send + Sync {
    /// Whether an outcome is in (a result, a panic, the input handed back).
    fn is_done(&self) -> bool;
    /// The outcome, if it is in (then the slot is spent).
    fn take(&self) -> Option<Result<T, CallError<P>>>;
    /// Makes the current thread the one the call's end unparks.
    fn set_waiter(&self);
    /// Gives up on the call (raising its flag, dropping what the slot holds, with no lock
    /// held) and says at which stage it was.
    fn give_up(&self) -> GaveUpAt;
}

/// The stage a call was at when its caller gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GaveUpAt {
    /// Not started: in the queue, or popped by a thread about to start it.
    NotStarted,
    /// Running, or over (its outcome, dropped now, was already counted).
    Later,
}

/// One call: its stage, its caller's thread, and two flags read without the lock.
struct CallSlot<P, T, F> {
    /// An outcome is in (`Stage::Done`, or taken). Written under `inner`; read by `is_done`.
    done: AtomicBool,
    /// The caller gave up. Read by the call's [`CallCx::should_stop`].
    given_up: AtomicBool,
    inner: Mutex<Inner<P, T, F>>,
}

struct Inner<P, T, F> {
    stage: Stage<P, T, F>,
    /// The thread unparked when the outcome comes in: the caller's, or the last to wait.
    waiter: Thread,
}

enum Stage<P, T, F> {
    Queued(P, F),
    Running,
    Done(Result<T, CallError<P>>),
    /// The outcome was taken, or the caller gave up: nothing is left in the slot.
    Spent,
}

impl<P, T, F> CallSlot<P, T, F> {
    fn lock(&self) -> MutexGuard<'_, Inner<P, T, F>> {
        // Recovered: the stage is replaced in one assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P, T, F> Job for CallSlot<P, T, F>
where
    P: Send,
    T: Send,
    F: FnOnce(P, &CallCx<'_>) -> T + Send,
{
    fn run(&self, shared: &Shared) {
        let started = {
            let mut inner = self.lock();
            match std::mem::replace(&mut inner.stage, Stage::Running) {
                Stage::Queued(input, f) => Some((input, f)),
                other => {
                    // Given up after it left the queue and before it started.
                    inner.stage = other;
                    None
                }
            }
        };
        let Some((input, f)) = started else {
            let mut st = shared.lock();
            st.counts.abandoned += 1;
            shared.call_ended(&mut st);
            return;
        };
        let cx = CallCx {
            given_up: &self.given_up,
            pool_stop: &shared.stop,
        };
        let (outcome, payload) = match panic::catch_unwind(AssertUnwindSafe(|| f(input, &cx))) {
            Ok(out) => (Ok(out), None),
            Err(payload) => {
                let message = panic_message(&*payload);
                (
                    Err(CallError::Panicked(CallPanicked { message })),
                    Some(payload),
                )
            }
        };
        let panicked = payload.is_some();
        let mut st = shared.lock();
        let mut inner = self.lock();
        let given_up = if let Stage::Running = inner.stage {
            inner.stage = Stage::Done(outcome);
            self.done.store(true, Ordering::Release);
            inner.waiter.unpark();
            None
        } else {
            Some(outcome)
        };
        match (panicked, &given_up) {
            (true, _) => st.counts.panicked += 1,
            (false, None) => st.counts.completed += 1,
            (false, Some(_)) => st.counts.abandoned += 1,
        }
        shared.call_ended(&mut st);
        drop(inner);
        drop(st);
        // User values (a given-up result, a panic's payload) are dropped with no lock held;
        // a panic there unwinds into the thread's own guard, the call already counted.
        drop(given_up);
        drop(payload);
    }

    fn hand_back(&self) -> bool {
        let mut inner = self.lock();
        match std::mem::replace(&mut inner.stage, Stage::Spent) {
            Stage::Queued(input, f) => {
                inner.stage = Stage::Done(Err(CallError::Refused(Refused {
                    input,
                    reason: Reason::ShutDown,
                })));
                self.done.store(true, Ordering::Release);
                inner.waiter.unpark();
                drop(inner);
                drop(f);
                true
            }
            other => {
                inner.stage = other;
                false
            }
        }
    }
}

impl<P, T, F> Slot<P, T> for CallSlot<P, T, F>
where
    P: Send,
    T: Send,
    F: Send,
{
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<Result<T, CallError<P>>> {
        if !self.is_done() {
            return None;
        }
        let mut inner = self.lock();
        match std::mem::replace(&mut inner.stage, Stage::Spent) {
            Stage::Done(outcome) => Some(outcome),
            other => {
                inner.stage = other;
                None
            }
        }
    }

    fn set_waiter(&self) {
        let me = thread::current();
        let mut inner = self.lock();
        if inner.waiter.id() != me.id() {
            inner.waiter = me;
        }
    }

    fn give_up(&self) -> GaveUpAt {
        self.given_up.store(true, Ordering::Release);
        let mut inner = self.lock();
        let stage = std::mem::replace(&mut inner.stage, Stage::Spent);
        drop(inner);
        match stage {
            Stage::Queued(..) => GaveUpAt::NotStarted,
            // Still running: the thread sees `Spent` at its end and drops the result. Done:
            // the outcome (counted when the call ended) is dropped here.
            Stage::Running | Stage::Spent | Stage::Done(_) => GaveUpAt::Later,
        }
    }
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic payload that is not a string".to_owned()
    }
}

/// An accepted call: its outcome when it comes, or giving up on it.
///
/// Dropping it before its outcome was taken gives up on the call ([`abandon`](Self::abandon)).
/// `P` is the call's input type (handed back if the pool shuts down before the call ran),
/// `T` its result.
pub struct Pending<P, T> {
    /// `None` once the outcome was taken or the call given up.
    slot: Option<Arc<dyn Slot<P, T>>>,
    shared: Arc<Shared>,
}

impl<P, T> fmt::Debug for Pending<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("done", &self.is_done())
            .field("spent", &self.slot.is_none())
            .finish()
    }
}

impl<P, T> Pending<P, T> {
    /// Whether the outcome is in (or was taken): [`try_take`](Self::try_take) will not
    /// return `None` for want of it. A load of one atomic: fit for polling, as in
    /// `cx.wait_until(|| pending.is_done())`.
    pub fn is_done(&self) -> bool {
        self.slot.as_ref().is_none_or(|s| s.is_done())
    }

    /// The outcome if it is in, without waiting. `None` when it is not in yet, or was
    /// already taken.
    pub fn try_take(&mut self) -> Option<Result<T, CallError<P>>> {
        let outcome = self.slot.as_ref()?.take()?;
        self.slot = None;
        Some(outcome)
    }

    /// Waits for the outcome, parking this thread (the call's end unparks it). For plain
    /// threads: a step waits with [`StepCx::wait_until`] instead.
    ///
    /// Waits as long as the call runs: a call that never returns never ends this wait.
    ///
    /// # Panics
    /// If the outcome was already taken.
    pub fn wait(mut self) -> Result<T, CallError<P>> {
        loop {
            if let Some(outcome) = self.wait_timeout(Duration::from_secs(3600)) {
                return outcome;
            }
            assert!(self.slot.is_some(), "the outcome was already taken");
        }
    }

    /// Waits at most `timeout` for the outcome; `None` when it did not come (or was already
    /// taken). The call goes on either way.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T, CallError<P>>> {
        let slot = self.slot.as_ref()?;
        if !slot.is_done() {
            slot.set_waiter();
            let until = Instant::now().checked_add(timeout);
            while !slot.is_done() {
                match until {
                    None => thread::park(),
                    Some(until) => {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        thread::park_timeout(left);
                    }
                }
            }
        }
        self.try_take()
    }

    /// Gives up on the call: its [`CallCx::should_stop`] turns true; a call not yet started
    /// never starts; a running one keeps its thread until it returns, and its result is then
    /// dropped. The same as dropping the `Pending`.
    pub fn abandon(mut self) {
        self.give_up();
    }

    fn give_up(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        // The slot first (its input and closure are dropped with no lock held), then the
        // queue: a thread that pops the call meanwhile finds it given up and counts it, and
        // so does a shutdown that hands it back; else it is still queued, and counted here.
        if slot.give_up() != GaveUpAt::NotStarted {
            return;
        }
        let me = Arc::as_ptr(&slot).cast::<()>();
        let mut st = self.shared.lock();
        let at = st
            .queue
            .iter()
            .position(|job| std::ptr::eq(Arc::as_ptr(job).cast::<()>(), me));
        if let Some(at) = at {
            let job = st.queue.remove(at);
            st.counts.abandoned += 1;
            if st.queue.len() < st.tokens {
                // The call a woken thread was promised is gone: that thread is idle.
                st.tokens -= 1;
                st.idle += 1;
            }
            drop(st);
            drop(job);
        }
    }
}

impl<P, T> Drop for Pending<P, T> {
    fn drop(&mut self) {
        self.give_up();
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("config", &self.handle.shared.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockingPool {
    /// A pool of `cfg`'s bounds. No thread is started until a call needs one.
    ///
    /// # Errors
    /// The [`validate`](BlockingConfig::validate) error of `cfg`.
    pub fn new(cfg: BlockingConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                tokens: 0,
                idle: 0,
                threads: 0,
                started: 0,
                popped: 0,
                closed: false,
                handles: Vec::new(),
                counts: BlockingStats::default(),
            }),
            work: Condvar::new(),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            cfg,
        });
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The pool's bounds.
    pub fn config(&self) -> BlockingConfig {
        self.handle.shared.cfg
    }

    /// Hands `f(input, cx)` to a blocking thread: an idle one, a new one if fewer than
    /// [`threads`](BlockingConfig::threads) are alive, else the queue. The call's end unparks
    /// the thread that made it (or that last waited on its [`Pending`]).
    ///
    /// # Errors
    /// [`Refused`] with the input, untouched: [`Reason::Full`] when no thread is free and the
    /// queue holds [`queue`](BlockingConfig::queue) calls, [`Reason::ShutDown`] once the pool
    /// is shut down.
    pub fn call<P, T, F>(&self, input: P, f: F) -> Result<Pending<P, T>, Refused<P>>
    where
        P: Send + 'static,
        T: Send + 'static,
        F: FnOnce(P, &CallCx<'_>) -> T + Send + 'static,
    {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        if st.closed {
            st.counts.refused_shut_down += 1;
            return Err(Refused {
                input,
                reason: Reason::ShutDown,
            });
        }
        // Where it goes: to an idle thread, to a new thread, or to wait in the queue.
        let promised = if st.idle > 0 {
            st.idle -= 1;
            true
        } else if st.threads < shared.cfg.threads && self.start_thread(&mut st) {
            true
        } else if st.queue.len() - st.tokens < shared.cfg.queue && st.threads > 0 {
            false
        } else {
            st.counts.refused_full += 1;
            return Err(Refused {
                input,
                reason: Reason::Full,
            });
        };
        let slot = Arc::new(CallSlot {
            done: AtomicBool::new(false),
            given_up: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                stage: Stage::Queued(input, f),
                waiter: thread::current(),
            }),
        });
        st.queue.push_back(Arc::clone(&slot) as Arc<dyn Job>);
        st.counts.accepted += 1;
        if promised {
            st.tokens += 1;
            shared.work.notify_one();
        }
        debug_assert!(st.queue.len() - st.tokens <= shared.cfg.queue);
        drop(st);
        Ok(Pending {
            slot: Some(slot),
            shared: Arc::clone(shared),
        })
    }

    /// Starts a thread, counted alive and idle (the caller promises it the call it queues).
    /// `false` when the OS refused to start one.
    fn start_thread(&self, st: &mut State) -> bool {
        let shared = Arc::clone(&self.handle.shared);
        let n = st.started;
        let spawned = thread::Builder::new()
            .name(format!("flujo-blocking-{n}"))
            .spawn(move || worker(&shared));
        match spawned {
            Ok(handle) => {
                st.started += 1;
                st.threads += 1;
                st.handles.push(handle);
                true
            }
            Err(_) => false,
        }
    }

    /// A step that runs `f` on this pool (see [`BlockingStep`]).
    ///
    /// `f` is shared by every call (an `Arc`, cloned per call); it gets the step's input and
    /// the call's [`CallCx`], whose [`should_stop`](CallCx::should_stop) turns true when the
    /// attempt gives up on the call.
    pub fn step<P, F>(&self, f: F) -> BlockingStep<P, F>
    where
        P: Send + 'static,
        F: Fn(P, &CallCx<'_>) -> Result<P, StepError> + Send + Sync + 'static,
    {
        BlockingStep {
            pool: self.clone(),
            f: Arc::new(f),
            _input: PhantomData,
        }
    }

    /// The exact counts, read together under the pool's lock.
    pub fn stats(&self) -> BlockingStats {
        self.handle.shared.lock().stats()
    }

    /// Shuts the pool down, waiting at most `grace` (then a few lock turns):
    ///
    /// 1. Refuses every new call ([`Reason::ShutDown`], input back), on every clone.
    /// 2. Lets the accepted calls run, queued ones included, until they end or `grace` passes.
    /// 3. If `grace` passes first: hands every call still queued back into its [`Pending`]
    ///    ([`CallError::Refused`], input back), and raises every running call's
    ///    [`should_stop`](CallCx::should_stop) flag.
    /// 4. Joins the threads that exited, and reports what still runs.
    ///
    /// Nothing accepted is lost: each call completes, panics, is abandoned by its caller or
    /// is handed back. A call that ignores its flag cannot be stopped (Rust has no safe way
    /// to kill a thread): it keeps its thread, reported in
    /// [`stats.running`](BlockingReport::stats), until it returns; a later `shutdown` joins
    /// the threads that have exited by then.
    pub fn shutdown(&self, grace: Duration) -> BlockingReport {
        let shared = &self.handle.shared;
        let until = Instant::now().checked_add(grace);
        let mut st = shared.lock();
        st.closed = true;
        shared.work.notify_all();
        while st.threads > 0 || !st.queue.is_empty() {
            let left = until.map_or(Duration::MAX, |u| {
                u.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                break;
            }
            st = shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let grace_passed = st.popped > 0 || !st.queue.is_empty();
        let mut handed_back = 0;
        if grace_passed {
            handed_back = st.hand_back_queued();
            shared.stop.store(true, Ordering::Release);
            shared.work.notify_all();
        }
        // A thread alive while no call runs is idle, told to exit: it needs only the lock.
        while st.threads > 0 && st.popped == 0 {
            st = shared
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // With no thread alive, every handle's thread has returned or is about to (it
        // counted itself out under this lock): joining them waits for nothing else.
        let all = st.threads == 0;
        let handles = std::mem::take(&mut st.handles);
        let (done, left): (Vec<_>, Vec<_>) =
            handles.into_iter().partition(|h| all || h.is_finished());
        st.handles = left;
        drop(st);
        let threads_joined = done.len();
        for h in done {
            // A thread's body catches every call's panic; an error here would be a panic of
            // the pool's own code, already reported by the panic hook.
            let _ = h.join();
        }
        BlockingReport {
            stats: self.stats(),
            handed_back,
            threads_joined,
            grace_passed,
        }
    }
}

/// A blocking thread's life: wait for a token, run the call it promises, and again; exit
/// when the pool is closed and no token is left. A thread that ends a call promises itself
/// the next unpromised call, if any ([`Shared::call_ended`]).
fn worker(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.tokens > 0 {
            st.tokens -= 1;
            let Some(job) = st.queue.pop_front() else {
                unreachable!("a token promises a queued call");
            };
            st.popped += 1;
            drop(st);
            // `run` catches the call's panic and counts the call; this guard catches a panic
            // from dropping a given-up call's result or a panic's payload (after the count),
            // so the thread lives on either way.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || {
                job.run(shared);
                drop(job);
            }));
            st = shared.lock();
            continue;
        }
        if st.closed {
            st.idle -= 1;
            st.threads -= 1;
            shared.changed.notify_all();
            return;
        }
        st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
}

/// The refusals and give-ups of a [`BlockingStep`], static (no allocation on these paths).
static REFUSED_FULL: StaticStepError = StaticStepError::new(
    ErrorClass::Transient,
    "blocking pool full: the call was refused (a retry may find room)",
);
static REFUSED_SHUT_DOWN: StaticStepError = StaticStepError::new(
    ErrorClass::Transient,
    "blocking pool shut down: the call was refused",
);
static TIMED_OUT: StaticStepError = StaticStepError::new(
    ErrorClass::Timeout,
    "the blocking call did not end before the attempt's deadline; it was told to stop",
);
static CANCELLED: StaticStepError = StaticStepError::new(
    ErrorClass::Cancelled,
    "the run was cancelled while its blocking call ran; it was told to stop",
);

/// A [`Step`] that runs its call on a [`BlockingPool`] ([`BlockingPool::step`]).
///
/// An attempt hands `f(input, call_cx)` to the pool and waits for it with
/// [`StepCx::wait_until`] (the runtime's clock decides what the waiting thread does
/// meanwhile), then:
///
/// - the call returned: its result is the attempt's;
/// - the call panicked: the attempt fails with class [`ErrorClass::Panic`], carrying
///   [`CallPanicked`];
/// - the pool refused the call (full or shut down): the attempt fails with class
///   [`ErrorClass::Transient`], which the default recovery table retries (with the task's
///   [`RetryPolicy`](flujo_core::policy::RetryPolicy)). The input the refusal hands back is
///   dropped here: the core keeps its own copy of the input for a retry or a fallback;
/// - the attempt's deadline came first (its task's timeout, or its run's deadline): the
///   call is given up ([`CallCx::should_stop`] turns true, its result will be dropped) and
///   the attempt fails with class [`ErrorClass::Timeout`];
/// - the run was cancelled first: the call is given up the same way and the attempt fails
///   with class [`ErrorClass::Cancelled`] (which aborts the run).
///
/// A call that ignores its flag keeps its blocking thread until it returns; the run does
/// not wait for it.
pub struct BlockingStep<P, F> {
    pool: BlockingPool,
    f: Arc<F>,
    _input: PhantomData<fn(P) -> P>,
}

impl<P, F> fmt::Debug for BlockingStep<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingStep")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl<P, C, F> Step<P, C> for BlockingStep<P, F>
where
    P: Send + 'static,
    C: Clone,
    F: Fn(P, &CallCx<'_>) -> Result<P, StepError> + Send + Sync + 'static,
{
    fn run(&self, input: P, cx: &mut StepCx<'_, C>) -> Result<P, StepError> {
        let f = Arc::clone(&self.f);
        let mut pending = match self
            .pool
            .call(input, move |x, call: &CallCx<'_>| f(x, call))
        {
            Ok(pending) => pending,
            Err(refused) => {
                return Err(StepError::from_static(match refused.reason {
                    Reason::Full => &REFUSED_FULL,
                    Reason::ShutDown => &REFUSED_SHUT_DOWN,
                }))
            }
        };
        if cx.wait_until(|| pending.is_done()) {
            return match pending.try_take() {
                Some(Ok(result)) => result,
                Some(Err(CallError::Panicked(p))) => {
                    Err(StepError::from_error(ErrorClass::Panic, p))
                }
                Some(Err(CallError::Refused(_))) => Err(StepError::from_static(&REFUSED_SHUT_DOWN)),
                None => unreachable!("the outcome is in and was not taken"),
            };
        }
        pending.abandon();
        Err(StepError::from_static(if cx.is_cancelled() {
            &CANCELLED
        } else {
            &TIMED_OUT
        }))
    }
}

#[cfg(test)]
mod tests;
