//! Submission: [`SubmitSpec`], [`Executor::submit`], [`Executor::submit_with`] and
//! [`Executor::submit_async`], through admission (the limit's permit and a place in the
//! priority's queue), refusing at once or waiting for room (see `crate::room`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use flujo_core::context::Context;
use flujo_core::graph::{Clock, Graph};
use flujo_core::policy::Usage;

use super::{Executor, Finished, Inner, Job, Rejected};
use crate::clock::{self, RuntimeClock};
use crate::room::{Sleep, Waiter};
use crate::ticket::Ticket;
use crate::{Priority, Refusal};

/// Per-submission options of [`Executor::submit_with`] and [`Executor::submit_async`]: a
/// [`RunSpec`](crate::RunSpec) for a queued run, with the queue's priority and how long to wait for room.
///
/// ```
/// # use std::time::Duration;
/// # use flujo_runtime::{Priority, SubmitSpec};
/// let spec = SubmitSpec::default().priority(Priority::High).deadline(Duration::from_secs(1));
/// assert_eq!((spec.priority, spec.budget, spec.wait), (Priority::High, None, None));
/// let patient = spec.wait(Duration::from_millis(20));
/// assert_eq!(patient.wait, Some(Duration::from_millis(20)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SubmitSpec {
    /// The queue the run waits in ([`Priority::Normal`] by default).
    pub priority: Priority,
    /// As [`RunSpec::deadline`](crate::RunSpec::deadline), measured from the submission: time spent waiting for room
    /// and queued counts.
    pub deadline: Option<Duration>,
    /// The run's usage budget.
    pub budget: Option<Usage>,
    /// How long the submission waits for room, as the executor's clock reads it: for a
    /// permit of the concurrency limit and a place in its priority's queue. `None` (the
    /// default): it does not wait, and is refused at once with
    /// [`Refusal::OverLimit`] or [`Refusal::QueueFull`]. With a wait, it is refused with the
    /// reason that still held when the wait ran out, or with [`Refusal::ShuttingDown`] as
    /// soon as a shutdown begins; its input and context come back in [`Rejected`] either way.
    /// `Duration::MAX` (or any wait the clock cannot represent) waits without bound. A zero
    /// wait does not wait.
    ///
    /// How the wait works (who wakes a waiter, its order, its bound of
    /// [`WAITERS_MAX`](crate::WAITERS_MAX) waiters) is told at [`Executor::submit_with`].
    pub wait: Option<Duration>,
}

impl SubmitSpec {
    /// Sets [`priority`](Self::priority).
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets [`deadline`](Self::deadline).
    #[must_use]
    pub fn deadline(mut self, after: Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Sets [`budget`](Self::budget).
    #[must_use]
    pub fn budget(mut self, budget: Usage) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets [`wait`](Self::wait): wait up to `up_to` for room instead of being refused.
    #[must_use]
    pub fn wait(mut self, up_to: Duration) -> Self {
        self.wait = Some(up_to);
        self
    }
}

/// A submission made by [`Executor::submit_async`]: resolves to its [`Ticket`] once it got
/// in, or to [`Rejected`] (input and context included) when it was refused, its wait ran out
/// (checked when polled), or a shutdown began.
///
/// Dropping it while it waits drops the input and context (the report counts the submission
/// refused with the reason that held); [`give_up`](Self::give_up) hands them back instead.
#[must_use = "a waiting submission gets in only while its future is polled"]
pub struct SubmitFuture<P, C> {
    inner: Arc<Inner<P, C>>,
    graph: Arc<Graph<P, C>>,
    /// How every later try is made.
    at: Try,
    /// The tick the wait runs out at (`None`: no bound).
    until: Option<u64>,
    /// Its place among the waiters.
    waiter: Waiter,
    state: Waiting<P, C>,
}

/// Where a [`SubmitFuture`] is.
enum Waiting<P, C> {
    /// Waiting for room, holding the input and context and the reason of its last try (not
    /// counted yet).
    Held(Rejected<P, C>),
    /// Resolved, not yet taken (the refusal is counted).
    Done(Result<Ticket<Finished<P, C>>, Rejected<P, C>>),
    /// Taken by a poll or [`SubmitFuture::give_up`].
    Taken,
}

/// How a submission tries to get in.
#[derive(Clone, Copy, Debug)]
struct Try {
    priority: Priority,
    /// The run's deadline tick.
    deadline: Option<u64>,
    budget: Option<Usage>,
    /// A registered waiter's try: no permit is taken while the queue is full.
    looking: bool,
    /// Whether a refusal is final, so counted by the try.
    count: bool,
}

impl<P, C> SubmitFuture<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Stops waiting. Returns the submission's result if it has one (it got in, or was
    /// refused), else hands the input and context back in [`Rejected`] with the reason that
    /// held, counted as a refusal. `None` once a poll returned the result.
    ///
    /// With a host timer: `match tokio::time::timeout(d, &mut future).await { Ok(r) => r,
    /// Err(_) => future.give_up().expect("not resolved") }`.
    // The future's own output, in an `Option`: spelt out rather than named by one more alias.
    #[allow(clippy::type_complexity)]
    pub fn give_up(mut self) -> Option<Result<Ticket<Finished<P, C>>, Rejected<P, C>>> {
        match std::mem::replace(&mut self.state, Waiting::Taken) {
            Waiting::Taken => None,
            Waiting::Done(result) => Some(result),
            Waiting::Held(back) => {
                self.inner.room.leave(&mut self.waiter, false);
                Some(Err(self.inner.refuse(back, self.at.priority)))
            }
        }
    }

    /// Whether the submission is still waiting for room (a poll may get it in).
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, Waiting::Held(_))
    }
}

impl<P, C> Future for SubmitFuture<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    type Output = Result<Ticket<Finished<P, C>>, Rejected<P, C>>;

    /// # Panics
    ///
    /// If polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let back = match std::mem::replace(&mut this.state, Waiting::Taken) {
            Waiting::Done(result) => return Poll::Ready(result),
            Waiting::Taken => panic!("a `SubmitFuture` polled after it completed"),
            Waiting::Held(back) => back,
        };
        let Self {
            inner,
            graph,
            at,
            until,
            waiter,
            state,
        } = this;
        let Rejected {
            mut reason,
            input,
            context,
        } = back;
        let expired = until.is_some_and(|t| inner.clock.now() >= t);
        let mut held = Some((input, context));
        let attempt = |looking: bool| {
            let (input, context) = held.take().expect("a waiter holds its input between tries");
            let at = Try { looking, ..*at };
            inner
                .admit(graph, input, context, inner.clock.now(), at)
                .map_err(|back| {
                    held = Some((back.input, back.context));
                    back.reason
                })
        };
        let room_left = || inner.limit.in_flight() < inner.limit.limit();
        let polled =
            inner
                .room
                .poll_wait(waiter, cx.waker(), expired, &mut reason, attempt, room_left);
        let back = |reason, held: Option<(P, C)>| {
            let (input, context) = held.expect("a waiter holds its input until it got in");
            Rejected {
                reason,
                input,
                context,
            }
        };
        match polled {
            Poll::Ready(Ok(ticket)) => Poll::Ready(Ok(ticket)),
            Poll::Ready(Err(reason)) => {
                Poll::Ready(Err(inner.refuse(back(reason, held), at.priority)))
            }
            Poll::Pending => {
                *state = Waiting::Held(back(reason, held));
                Poll::Pending
            }
        }
    }
}

/// It pins nothing: the input and context are moved, never pinned.
impl<P, C> Unpin for SubmitFuture<P, C> {}

impl<P, C> Drop for SubmitFuture<P, C> {
    fn drop(&mut self) {
        // Leaves the waiter list if still in it (also after a panic in a poll), passing on a
        // wake it did not use.
        self.inner.room.leave(&mut self.waiter, false);
        if let Waiting::Held(back) = &self.state {
            // Dropped while waiting: the input and context go with it; the submission ends
            // refused.
            self.inner.rejected[back.reason.index()].fetch_add(1, Ordering::Release);
        }
    }
}

impl<P, C> fmt::Debug for SubmitFuture<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            Waiting::Held(back) => format!("waiting ({})", back.reason),
            Waiting::Done(Ok(_)) => "admitted".to_string(),
            Waiting::Done(Err(back)) => format!("refused ({})", back.reason),
            Waiting::Taken => "taken".to_string(),
        };
        f.debug_struct("SubmitFuture")
            .field("state", &state)
            .field("priority", &self.at.priority)
            .finish_non_exhaustive()
    }
}

/// How often a submission waiting on a [`ManualClock`](flujo_core::graph::ManualClock) reads
/// the clock again (real time: nothing tells it that the clock was moved).
const MANUAL_CLOCK_SLICE: Duration = Duration::from_millis(1);

impl<P, C> Executor<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Queues a run of `graph` at `priority`. Returns a ticket to wait on, poll or cancel,
    /// or hands `input` and `context` back with the reason: the concurrency limit is
    /// reached, the priority's queue is full, or the executor is shutting down. To wait for
    /// room instead of being refused, see [`SubmitSpec::wait`] ([`submit_with`](Self::submit_with),
    /// [`submit_async`](Self::submit_async)).
    ///
    /// The run is taken by a dispatcher (at most one per pool thread, each looping until
    /// the queues are empty); the submission starts one only when fewer are running. Once
    /// warm it allocates nothing of its own while the dispatchers are busy: the ticket's
    /// cell is reused (a cancelled ticket's cell is not). Starting a dispatcher boxes a
    /// rayon job, so a lone submit-then-wait, which finds none running, allocates once.
    pub fn submit(
        &self,
        graph: &Arc<Graph<P, C>>,
        input: P,
        context: C,
        priority: Priority,
    ) -> Result<Ticket<Finished<P, C>>, Rejected<P, C>> {
        self.submit_with(
            graph,
            input,
            context,
            &SubmitSpec::default().priority(priority),
        )
    }

    /// [`submit`](Self::submit) with the options of `spec`: priority, a deadline (from the
    /// submission), a usage budget, and how long to wait for room.
    ///
    /// # Waiting for room
    ///
    /// Without [`SubmitSpec::wait`] a submission that finds the concurrency limit reached or
    /// its queue full is refused at once. With it, the call blocks until the submission gets
    /// in, the wait runs out (the input and context come back in [`Rejected`] with the reason
    /// that still held), or a shutdown begins ([`Refusal::ShuttingDown`], at once). Nothing is
    /// lost: the report counts the submission once, as accepted or as refused with that
    /// reason; while it waits it is in flight. A shutdown wakes every waiting submission but
    /// does not wait for them: each is refused by its own call (a blocking one at once, an
    /// async one when next polled), and until then the report counts it in flight.
    ///
    /// A waiting submission is woken when another submission ends (its run finished, or it
    /// was handed back), which is when a permit and a queue place come free; waiters are
    /// woken one per end, first come first served, and a woken one that gets in wakes the
    /// next while the limit has room. A submission that does not wait can still take the room
    /// first; its own end then wakes the waiter. At most [`WAITERS_MAX`](crate::WAITERS_MAX) submissions wait at
    /// once; one more is refused at once with its reason. The wait's bound is read on the
    /// executor's clock: on a [`ManualClock`](flujo_core::graph::ManualClock) the waiting
    /// thread reads it again every millisecond of real time. A submission from a thread of the
    /// executor's own pool (from inside a run) does not wait: it would hold a thread the runs
    /// it waits for may need.
    ///
    /// When nobody waits this costs nothing: a submission's end already made one atomic
    /// read-modify-write, which now also tells it whether to wake anyone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flujo_core::graph::{Clock, Graph};
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::{Executor, Finished, Refusal, SubmitSpec};
    ///
    /// let mut cfg = OptimizationConfig::latency();
    /// cfg.adaptive_concurrency.enabled = false;
    /// (cfg.adaptive_concurrency.min_limit, cfg.adaptive_concurrency.initial_limit) = (1, 1);
    /// cfg.adaptive_concurrency.max_limit = 1; // one submission at a time
    /// let ex = Executor::<u64, ()>::new(cfg).unwrap();
    /// let g = Arc::new(Graph::build(|b| b.task("sleep", |x, _| {
    ///     std::thread::sleep(Duration::from_millis(5));
    ///     Ok(x + 1)
    /// })).unwrap());
    ///
    /// let first = ex.submit_with(&g, 1, (), &SubmitSpec::default()).unwrap();
    /// // The limit is taken: a second submission that does not wait is refused ...
    /// let back = ex.submit_with(&g, 2, (), &SubmitSpec::default()).unwrap_err();
    /// assert_eq!((back.reason, back.input), (Refusal::OverLimit, 2));
    /// // ... and one that waits gets in when the first ends.
    /// let spec = SubmitSpec::default().wait(Duration::from_secs(10));
    /// let second = ex.submit_with(&g, 2, (), &spec).unwrap();
    /// for (ticket, want) in [(first, 2), (second, 3)] {
    ///     match ticket.wait().unwrap() {
    ///         Finished::Ran(done) => assert_eq!(done.output, Some(want)),
    ///         other => panic!("{other:?}"),
    ///     }
    /// }
    /// ```
    pub fn submit_with(
        &self,
        graph: &Arc<Graph<P, C>>,
        input: P,
        context: C,
        spec: &SubmitSpec,
    ) -> Result<Ticket<Finished<P, C>>, Rejected<P, C>> {
        let inner = &self.inner;
        // Counted before anything can end it (see `Inner::submitted`).
        inner.submitted.fetch_add(1, Ordering::Relaxed);
        let now = inner.clock.now();
        let deadline = spec.deadline.and_then(|d| clock::deadline_from(now, d));
        let wait = spec.wait.filter(|_| !inner.on_pool());
        let try_at = Try {
            priority: spec.priority,
            deadline,
            budget: spec.budget,
            looking: false,
            count: wait.is_none(),
        };
        let back = match inner.admit(graph, input, context, now, try_at) {
            Ok(ticket) => return Ok(ticket),
            Err(back) => back,
        };
        match wait {
            None => Err(back),
            Some(_) if back.reason == Refusal::ShuttingDown => {
                Err(inner.refuse(back, try_at.priority))
            }
            Some(wait) => {
                let until = clock::deadline_from(now, wait);
                inner.wait_for_room(graph, back, try_at, until)
            }
        }
    }

    /// [`submit_with`](Self::submit_with), awaited: a future that resolves when the
    /// submission got in (to its [`Ticket`]) or was refused (to [`Rejected`], input and
    /// context included). The submission is made by this call, as by `submit_with`: when
    /// there is room the future is ready at once; when there is none and
    /// [`SubmitSpec::wait`] allows it, the future waits for room without blocking, woken
    /// when a submission ends (see `submit_with`), or at a shutdown, when it resolves to
    /// [`Refusal::ShuttingDown`]. Without `wait` it resolves to the refusal.
    ///
    /// **Bounding the wait.** `SubmitSpec::wait` is checked on the executor's clock each time
    /// the future is polled, but nothing wakes the future when it runs out (the executor
    /// keeps no timer). To bound the wait in time, give it a long `wait`
    /// (`Duration::MAX`: none) and put the future under the host's own timer, for example
    /// `tokio::time::timeout(d, &mut future)`, then take the input back with
    /// [`SubmitFuture::give_up`]. **Dropping** the future while it waits drops the input
    /// and context with it (the report counts the submission refused, with the reason that
    /// held); `give_up` hands them back instead.
    ///
    /// The future is `Unpin`, `Send` when the input and context are, and `'static`: it holds
    /// the executor's state and the graph by `Arc`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use flujo_core::graph::{Clock, Graph};
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::{Executor, Finished, SubmitSpec};
    ///
    /// let mut cfg = OptimizationConfig::latency();
    /// cfg.adaptive_concurrency.enabled = false;
    /// (cfg.adaptive_concurrency.min_limit, cfg.adaptive_concurrency.initial_limit) = (1, 1);
    /// cfg.adaptive_concurrency.max_limit = 2;
    /// let ex = Arc::new(Executor::<u64, ()>::new(cfg).unwrap());
    /// let g = Arc::new(Graph::build(|b| b.task("inc", |x, _| Ok(x + 1))).unwrap());
    /// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    /// let spec = SubmitSpec::default().wait(Duration::MAX);
    /// let sum: u64 = rt.block_on(async {
    ///     // 100 submissions on a limit of 2: each waits for room, none is refused.
    ///     let futures: Vec<_> = (0..100).map(|x| ex.submit_async(&g, x, (), &spec)).collect();
    ///     let mut sum = 0;
    ///     for f in futures {
    ///         let ticket = f.await.unwrap();
    ///         match ticket.await.unwrap() {
    ///             Finished::Ran(done) => sum += done.output.unwrap(),
    ///             other => panic!("{other:?}"),
    ///         }
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, (1..=100).sum::<u64>());
    /// assert_eq!(ex.report().runs.rejected(), 0);
    /// ```
    pub fn submit_async(
        &self,
        graph: &Arc<Graph<P, C>>,
        input: P,
        context: C,
        spec: &SubmitSpec,
    ) -> SubmitFuture<P, C> {
        let inner = &self.inner;
        inner.submitted.fetch_add(1, Ordering::Relaxed);
        let now = inner.clock.now();
        let deadline = spec.deadline.and_then(|d| clock::deadline_from(now, d));
        let try_at = Try {
            priority: spec.priority,
            deadline,
            budget: spec.budget,
            looking: false,
            count: spec.wait.is_none(),
        };
        let state = match inner.admit(graph, input, context, now, try_at) {
            Ok(ticket) => Waiting::Done(Ok(ticket)),
            Err(back) if spec.wait.is_none() => Waiting::Done(Err(back)),
            Err(back) if back.reason == Refusal::ShuttingDown => {
                Waiting::Done(Err(inner.refuse(back, try_at.priority)))
            }
            Err(back) => Waiting::Held(back),
        };
        SubmitFuture {
            inner: Arc::clone(inner),
            graph: Arc::clone(graph),
            at: Try {
                looking: true,
                count: false,
                ..try_at
            },
            until: spec.wait.and_then(|w| clock::deadline_from(now, w)),
            waiter: Waiter::default(),
            state,
        }
    }
}

impl<P, C> Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Counts a refusal of a submission of `priority` (and, feature `tracing`, emits it) and
    /// returns it.
    fn refuse(&self, back: Rejected<P, C>, priority: Priority) -> Rejected<P, C> {
        self.rejected[back.reason.index()].fetch_add(1, Ordering::Release);
        #[cfg(feature = "tracing")]
        crate::tracing_spans::refused(back.reason, priority);
        #[cfg(not(feature = "tracing"))]
        let _ = priority;
        back
    }

    /// Whether the calling thread is one of the executor's pool (inside a run).
    fn on_pool(&self) -> bool {
        self.pool.current_thread_index().is_some()
    }

    /// One try to admit a submission made at tick `now`: a permit, then a place in the queue
    /// of `at.priority`. Hands input and context back with the reason (counted when
    /// `at.count`).
    fn admit(
        self: &Arc<Self>,
        graph: &Arc<Graph<P, C>>,
        input: P,
        context: C,
        now: u64,
        at: Try,
    ) -> Result<Ticket<Finished<P, C>>, Rejected<P, C>> {
        let refuse = |reason: Refusal, input: P, context: C| {
            let back = Rejected {
                reason,
                input,
                context,
            };
            Err(if at.count {
                self.refuse(back, at.priority)
            } else {
                back
            })
        };
        if self.closed.load(Ordering::Acquire) {
            return refuse(Refusal::ShuttingDown, input, context);
        }
        if self.degrade.sheds(at.priority) {
            return refuse(Refusal::Shed, input, context);
        }
        // A registered waiter first looks for a place, so that while the queue is full it
        // takes no permit: a permit taken and given back ends a submission, which would wake
        // the next waiter, and the waiters would wake each other in turn.
        if at.looking && self.queues.len_of(at.priority) >= self.queues.capacity_of(at.priority) {
            return refuse(Refusal::QueueFull, input, context);
        }
        let Some(permit) = self.limit.try_acquire_slip() else {
            return refuse(Refusal::OverLimit, input, context);
        };
        self.note_limit();
        let (completer, mut ticket) = self.cells.pair();
        let job = Job {
            graph: Arc::clone(graph),
            input,
            context,
            deadline: at.deadline,
            budget: at.budget,
            completer,
            permit: Some(permit),
            submitted: now,
            #[cfg(feature = "tracing")]
            parent: crate::tracing_spans::Parent::submitted(),
        };
        self.room.begin();
        if let Err(back) = self.queues.push(job, at.priority) {
            let reason = back.reason;
            let Job {
                input,
                context,
                permit,
                ..
            } = back.into_inner();
            // The permit was never used: dropping it frees the slot without a signal, before
            // the submission ends, whose end wakes a waiter (see `room`). The refusal is
            // counted before the end too, so a shutdown that saw none pending reports none
            // in flight.
            self.give_back(permit);
            let refused = refuse(reason, input, context);
            self.end_one();
            return refused;
        }
        if self.kick() {
            ticket.spin_none();
        }
        Ok(ticket)
    }

    /// Waits (blocking) for room for a submission refused with `back` (not counted), until
    /// tick `until` of the executor's clock (`None`: no bound). See `room`.
    fn wait_for_room(
        self: &Arc<Self>,
        graph: &Arc<Graph<P, C>>,
        back: Rejected<P, C>,
        at: Try,
        until: Option<u64>,
    ) -> Result<Ticket<Finished<P, C>>, Rejected<P, C>> {
        let Rejected {
            reason,
            input,
            context,
        } = back;
        let mut held = Some((input, context));
        let attempt = |looking: bool| {
            let (input, context) = held.take().expect("a waiter holds its input between tries");
            let at = Try { looking, ..at };
            self.admit(graph, input, context, self.clock.now(), at)
                .map_err(|back| {
                    held = Some((back.input, back.context));
                    back.reason
                })
        };
        let sleep = || self.sleep_for(until);
        let room_left = || self.limit.in_flight() < self.limit.limit();
        match self.room.wait_blocking(attempt, sleep, reason, room_left) {
            Ok(ticket) => Ok(ticket),
            Err(reason) => {
                let (input, context) = held.take().expect("a refused waiter holds its input");
                let back = Rejected {
                    reason,
                    input,
                    context,
                };
                Err(self.refuse(back, at.priority))
            }
        }
    }

    /// How long a blocking waiter sleeps before it reads the clock again, for a wait until
    /// tick `until`.
    fn sleep_for(&self, until: Option<u64>) -> Sleep {
        let Some(until) = until else {
            return Sleep::Unbounded;
        };
        let now = self.clock.now();
        if now >= until {
            return Sleep::Expired;
        }
        let left = clock::duration(until - now);
        match self.clock {
            RuntimeClock::Mono(_) => Sleep::For(left),
            RuntimeClock::Manual(_) => Sleep::For(left.min(MANUAL_CLOCK_SLICE)),
        }
    }
}
