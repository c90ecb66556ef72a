//! Node configuration: a task's policies, and the options of the composite nodes.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::{NodeRef, StepError, StepFlags};
use crate::cache::{CacheKey, CanonicalEncode, StepFingerprint};
use crate::context::MergeStrategy;
use crate::policy::{Breaker, ErrorClass, Recovery, RecoveryTable, RetryPolicy, Usage};
use crate::sync::Arc;

/// A pre- or post-processor: transforms the payload, reading the context.
pub type Processor<P, C> = Box<dyn Fn(P, &C) -> Result<P, StepError> + Send + Sync>;
/// A validator: checks an output; its error is classified as validation and becomes the
/// next attempt's feedback.
pub type Validator<P, C> = Box<dyn Fn(&P, &C) -> Result<(), StepError> + Send + Sync>;
/// An ordered reduce: `acc = reduce(acc, next)` in declaration order.
pub type Reducer<P> = Box<dyn Fn(P, P) -> P + Send + Sync>;
/// An ordered reduce that can fail: an error fails the node (the typed builder's reducers,
/// folds and map reducers).
pub type FallibleReducer<P> = Box<dyn Fn(P, P) -> Result<P, StepError> + Send + Sync>;

/// A node's reduce as the graph keeps it: an untyped builder's, which cannot fail, or a typed
/// builder's, which can. Two kinds rather than one fallible kind, because wrapping every
/// infallible reducer in `Ok` measured 5% more instructions on W3_tree's pure fan-outs.
pub(crate) enum Reduce<P> {
    Plain(Reducer<P>),
    Fallible(FallibleReducer<P>),
}

impl<P> Reduce<P> {
    /// `reduce(acc, next)`.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: P, next: P) -> Result<P, StepError> {
        match self {
            Reduce::Plain(f) => Ok(f(acc, next)),
            Reduce::Fallible(f) => f(acc, next),
        }
    }
}
/// A loop's exit predicate over the iteration's output, the context and the number of
/// iterations done (from 1).
pub type ExitPredicate<P, C> = Box<dyn Fn(&P, &C, u32) -> bool + Send + Sync>;
/// A branch selector: the key of the arm to run.
pub type Selector<P, C> = Box<dyn Fn(&P, &C) -> u64 + Send + Sync>;
/// A map's split: pushes the items, returns the reduce's initial accumulator.
pub type Splitter<P, C> =
    Box<dyn Fn(P, &C, &mut Items<'_, P>) -> Result<P, StepError> + Send + Sync>;

/// How a cacheable task computes its key: BLAKE3 over its fingerprint and its input's
/// canonical encoding ([`CacheKey::new`]), through a function pointer so `TaskConfig` needs
/// no `CanonicalEncode` bound unless it caches.
pub(crate) struct CacheSlot<P> {
    pub(crate) fingerprint: StepFingerprint,
    pub(crate) key: fn(&StepFingerprint, &P) -> CacheKey,
}

/// Whether `table` maps some class it is consulted for (usage and cancelled never are) to
/// `recovery`.
pub(crate) fn table_uses(table: &RecoveryTable, recovery: Recovery) -> bool {
    ErrorClass::ALL
        .iter()
        .any(|&class| table.lookup(class) == Ok(recovery))
}

/// A task's policy configuration: retry, recovery, processors, validators, fallback, cache,
/// breaker, usage estimate, default output, and its declared context access.
///
/// Every setting has a default that costs nothing: a task built with `TaskConfig::new()`
/// alone is *plain* and runs on the interpreter's fast path.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, StepError, TaskConfig, NoClock};
/// use flujo_core::policy::{Backoff, RetryPolicy};
/// use flujo_core::interp::{Runner, RunOptions};
///
/// let retry = RetryPolicy::new(3, Backoff::Constant { delay_ticks: 5 }).unwrap();
/// let g = Graph::<u64, ()>::build(|b| {
///     b.task_with(
///         "flaky",
///         |x, cx| if cx.attempt() < 3 { Err(StepError::transient("busy")) } else { Ok(x) },
///         TaskConfig::new()
///             .retry(retry)
///             .validate(|out: &u64, _| if *out > 0 { Ok(()) } else { Err(StepError::validation("zero")) }),
///     )
/// })
/// .unwrap();
/// let mut runner = Runner::new(Default::default());
/// let r = runner.run(&g, 7, (), &NoClock, &RunOptions::default());
/// assert_eq!(r.output, Some(7));
/// assert_eq!(r.records[0].attempts, 3);
/// ```
///
/// # The first validator is typed
///
/// `V` is the type of the first validator added with [`validate`](Self::validate)
/// ([`NoValidator`] until then). The builder compiles it into the task's step (one call runs the
/// step and checks its output, and the check inlines), unless something must run between
/// them: post-processors, or boxed validators added before it with
/// [`validate_boxed`](Self::validate_boxed); it is then boxed in its place. Further
/// validators are boxed. All run in the order they were added, and all behave the same: an
/// error is classified as validation and becomes the next attempt's feedback.
pub struct TaskConfig<P, C, V = NoValidator> {
    pub(crate) reads: bool,
    pub(crate) writes: bool,
    pub(crate) retry: RetryPolicy,
    pub(crate) recovery: RecoveryTable,
    pub(crate) pre: Vec<Processor<P, C>>,
    pub(crate) post: Vec<Processor<P, C>>,
    pub(crate) validators: Vec<Validator<P, C>>,
    pub(crate) fallback: Option<NodeRef>,
    pub(crate) cache: Option<CacheSlot<P>>,
    pub(crate) breaker: Option<Arc<Breaker>>,
    pub(crate) usage_estimate: Usage,
    pub(crate) default_output: Option<P>,
    pub(crate) timeout: Option<u64>,
    /// The first validator (see the type's docs).
    pub(crate) check: V,
    /// How many boxed validators were added before `check` (they run before it).
    pub(crate) check_at: usize,
    /// Whether the builder compiled a first validator into the task's step (so the task has
    /// one though `check` and `validators` no longer show it).
    pub(crate) fused_check: bool,
}

/// The first-validator slot of a [`TaskConfig`] that has no validator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoValidator;

mod sealed {
    pub trait Sealed<P, C> {}
}

/// The first-validator slot of a [`TaskConfig`]: [`NoValidator`], or the validator (a closure
/// over the output and the context). Sealed: [`TaskConfig::validate`] is the way to fill it.
pub trait TypedValidator<P, C>: sealed::Sealed<P, C> + Send + Sync + 'static {
    /// Whether this is a validator (`false` for [`NoValidator`]).
    const SOME: bool;
    /// AroundStep a step's output.
    fn check(&self, output: &P, ctx: &C) -> Result<(), StepError>;
}

impl<P, C> sealed::Sealed<P, C> for NoValidator {}

impl<P, C> TypedValidator<P, C> for NoValidator {
    const SOME: bool = false;
    #[inline(always)]
    fn check(&self, _: &P, _: &C) -> Result<(), StepError> {
        Ok(())
    }
}

impl<P, C, V> sealed::Sealed<P, C> for V where
    V: Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static
{
}

impl<P, C, V> TypedValidator<P, C> for V
where
    V: Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static,
{
    const SOME: bool = true;
    #[inline(always)]
    fn check(&self, output: &P, ctx: &C) -> Result<(), StepError> {
        self(output, ctx)
    }
}

impl<P, C> Default for TaskConfig<P, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P, C, V: TypedValidator<P, C>> fmt::Debug for TaskConfig<P, C, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskConfig")
            .field("flags", &self.flags())
            .field("retry", &self.retry)
            .field("recovery", &self.recovery)
            .field("fallback", &self.fallback)
            .field("usage_estimate", &self.usage_estimate)
            .finish_non_exhaustive()
    }
}

impl<P, C> TaskConfig<P, C> {
    /// No policies: one attempt, the default recovery table, reads the context, no writes.
    pub fn new() -> Self {
        Self {
            reads: true,
            writes: false,
            retry: RetryPolicy::NONE,
            recovery: RecoveryTable::DEFAULT,
            pre: Vec::new(),
            post: Vec::new(),
            validators: Vec::new(),
            fallback: None,
            cache: None,
            breaker: None,
            usage_estimate: Usage::ZERO,
            timeout: None,
            default_output: None,
            check: NoValidator,
            check_at: 0,
            fused_check: false,
        }
    }

    /// Adds a validator, run on the post-processed output after the ones added before it.
    /// The first one added this way is typed: the builder compiles it into the task's step
    /// when nothing has to run between the two (see the type's docs).
    #[must_use]
    pub fn validate<V>(self, check: V) -> TaskConfig<P, C, V>
    where
        V: Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static,
    {
        self.with_check(check)
    }
}

impl<P, C, V> TaskConfig<P, C, V>
where
    V: Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static,
{
    /// Adds a further validator (boxed), run after the ones added before it.
    #[must_use]
    pub fn validate(
        self,
        f: impl Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static,
    ) -> Self {
        self.validate_boxed(f)
    }
}

impl<P, C, V> TaskConfig<P, C, V> {
    /// Adds a validator, boxed, without changing the configuration's type (for one built
    /// conditionally); it runs after the validators added before it.
    #[must_use]
    pub fn validate_boxed(
        mut self,
        f: impl Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Box::new(f));
        self
    }

    /// The same configuration with `check` as its typed validator, run after the boxed
    /// ones added so far.
    fn with_check<W>(self, check: W) -> TaskConfig<P, C, W> {
        let check_at = self.validators.len();
        let mut cfg = self.map_check(|_| check);
        cfg.check_at = check_at;
        cfg
    }

    /// The configuration without its first validator, and that validator.
    pub(crate) fn split(self) -> (TaskConfig<P, C>, V) {
        let mut taken = None;
        let mut cfg = self.map_check(|check| {
            taken = Some(check);
            NoValidator
        });
        cfg.check_at = 0;
        (cfg, taken.expect("map_check calls its function once"))
    }

    /// The same configuration with the first-validator slot replaced by `f` of it.
    fn map_check<W>(self, f: impl FnOnce(V) -> W) -> TaskConfig<P, C, W> {
        TaskConfig {
            check: f(self.check),
            check_at: self.check_at,
            fused_check: self.fused_check,
            reads: self.reads,
            writes: self.writes,
            retry: self.retry,
            recovery: self.recovery,
            pre: self.pre,
            post: self.post,
            validators: self.validators,
            fallback: self.fallback,
            cache: self.cache,
            breaker: self.breaker,
            usage_estimate: self.usage_estimate,
            timeout: self.timeout,
            default_output: self.default_output,
        }
    }

    /// Declares that the step writes the context (through `StepCx::ctx_mut`).
    #[must_use]
    pub fn writes_context(mut self) -> Self {
        self.writes = true;
        self
    }

    /// Declares that the step does not read the context either.
    #[must_use]
    pub fn no_context(mut self) -> Self {
        self.reads = false;
        self.writes = false;
        self
    }

    /// Retries with backoff.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The recovery table (what each error class leads to).
    #[must_use]
    pub fn recovery(mut self, table: RecoveryTable) -> Self {
        self.recovery = table;
        self
    }

    /// Adds a pre-processor (run in order before the step, on every attempt).
    #[must_use]
    pub fn pre(
        mut self,
        f: impl Fn(P, &C) -> Result<P, StepError> + Send + Sync + 'static,
    ) -> Self {
        self.pre.push(Box::new(f));
        self
    }

    /// Adds a post-processor (run in order after the step, before the validators).
    #[must_use]
    pub fn post(
        mut self,
        f: impl Fn(P, &C) -> Result<P, StepError> + Send + Sync + 'static,
    ) -> Self {
        self.post.push(Box::new(f));
        self
    }

    /// The fallback task, run on the original input when recovery says fall back.
    #[must_use]
    pub fn fallback(mut self, task: NodeRef) -> Self {
        self.fallback = Some(task);
        self
    }

    /// Caches outputs by a key over `fingerprint` (the step's identity and the settings that
    /// change its output) and the input's canonical encoding.
    #[must_use]
    pub fn cacheable(mut self, fingerprint: StepFingerprint) -> Self
    where
        P: CanonicalEncode,
    {
        self.cache = Some(CacheSlot {
            fingerprint,
            key: |fingerprint, input| CacheKey::new(fingerprint, input),
        });
        self
    }

    /// Guards the step with a (shareable) circuit breaker.
    #[must_use]
    pub fn breaker(mut self, breaker: Arc<Breaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Usage reserved from the run's budget before the step runs.
    #[must_use]
    pub fn usage_estimate(mut self, estimate: Usage) -> Self {
        self.usage_estimate = estimate;
        self
    }

    /// A timeout of `ticks` per attempt: the attempt's step context reports a deadline at
    /// most `ticks` after it started (so [`StepCx::should_stop`](super::StepCx::should_stop)
    /// turns true), and an attempt that takes longer fails with a
    /// [`ErrorClass::Timeout`](crate::policy::ErrorClass::Timeout) error (its output
    /// discarded), which the recovery table handles like any timeout (retried by default).
    /// Ticks are the host clock's: nanoseconds under `flujo-runtime` (give it
    /// `flujo_runtime::clock::ticks(Duration)`).
    #[must_use]
    pub fn timeout(mut self, ticks: u64) -> Self {
        self.timeout = Some(ticks);
        self
    }

    /// The output used when recovery says skip.
    #[must_use]
    pub fn default_output(mut self, output: P) -> Self {
        self.default_output = Some(output);
        self
    }
}

impl<P, C, V: TypedValidator<P, C>> TaskConfig<P, C, V> {
    /// The step analysis of this configuration.
    pub fn flags(&self) -> StepFlags {
        let mut f = StepFlags::EMPTY;
        let set = |f: &mut StepFlags, cond: bool, bit: StepFlags| {
            if cond {
                *f |= bit;
            }
        };
        set(&mut f, self.reads, StepFlags::READS_CONTEXT);
        set(&mut f, self.writes, StepFlags::WRITES_CONTEXT);
        set(&mut f, !self.pre.is_empty(), StepFlags::PRE_PROCESSORS);
        set(&mut f, !self.post.is_empty(), StepFlags::POST_PROCESSORS);
        let validators = V::SOME || self.fused_check || !self.validators.is_empty();
        set(&mut f, validators, StepFlags::VALIDATORS);
        set(&mut f, self.fallback.is_some(), StepFlags::FALLBACK);
        set(&mut f, self.cache.is_some(), StepFlags::CACHE);
        set(&mut f, self.breaker.is_some(), StepFlags::BREAKER);
        set(&mut f, self.retry.attempts_max() > 1, StepFlags::RETRY);
        set(&mut f, self.usage_estimate != Usage::ZERO, StepFlags::USAGE);
        set(&mut f, self.timeout.is_some(), StepFlags::TIMEOUT);
        set(
            &mut f,
            table_uses(&self.recovery, Recovery::Skip),
            StepFlags::SKIP,
        );
        f
    }
}

/// A frozen task's policies (fallback resolved to a task index), with the task's index,
/// node and step analysis at hand so the interpreter reads one entry.
pub(crate) struct TaskPolicy<P, C> {
    pub(crate) cfg: TaskConfig<P, C>,
    pub(crate) fallback_task: Option<u32>,
    pub(crate) task: u32,
    pub(crate) node: u32,
    pub(crate) flags: StepFlags,
}

/// What a parallel node does when a branch fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureStrategy {
    /// All branches must succeed; the first failure fails the node and siblings are told to
    /// stop (not started, on the single-thread interpreter).
    #[default]
    Propagate,
    /// Failed branches are left out of the reduce; at least one must succeed. An abort
    /// (usage, cancelled) still aborts.
    Ignore,
}

/// Options of a parallel node.
#[derive(Debug, Default)]
pub struct ParallelOptions<C> {
    pub(crate) merge: MergeStrategy<C>,
    pub(crate) failure: FailureStrategy,
    pub(crate) max_width: Option<u32>,
}

impl<C> ParallelOptions<C> {
    /// Error-on-conflict merge, propagate failures, width = number of branches.
    pub fn new() -> Self {
        Self {
            merge: MergeStrategy::default(),
            failure: FailureStrategy::default(),
            max_width: None,
        }
    }

    /// How branch contexts merge back.
    #[must_use]
    pub fn merge(mut self, merge: MergeStrategy<C>) -> Self {
        self.merge = merge;
        self
    }

    /// What a failed branch does to the node.
    #[must_use]
    pub fn failure(mut self, failure: FailureStrategy) -> Self {
        self.failure = failure;
        self
    }

    /// At most `width` branches run at once (under the runtime).
    #[must_use]
    pub fn max_width(mut self, width: u32) -> Self {
        self.max_width = Some(width);
        self
    }
}

/// Options of a loop node: the mandatory iteration bound and an optional exit predicate.
pub struct LoopOptions<P, C> {
    pub(crate) max_iterations: Option<u32>,
    pub(crate) exit: Option<ExitPredicate<P, C>>,
}

impl<P, C> Default for LoopOptions<P, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P, C> fmt::Debug for LoopOptions<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopOptions")
            .field("max_iterations", &self.max_iterations)
            .field("exit", &self.exit.is_some())
            .finish()
    }
}

impl<P, C> LoopOptions<P, C> {
    /// No bound yet (freezing fails until [`max_iterations`](Self::max_iterations) is set).
    pub fn new() -> Self {
        Self {
            max_iterations: None,
            exit: None,
        }
    }

    /// The iteration bound.
    #[must_use]
    pub fn max_iterations(mut self, bound: u32) -> Self {
        self.max_iterations = Some(bound);
        self
    }

    /// Stop after the iteration whose output satisfies `pred(output, context, iterations)`.
    #[must_use]
    pub fn until(mut self, pred: impl Fn(&P, &C, u32) -> bool + Send + Sync + 'static) -> Self {
        self.exit = Some(Box::new(pred));
        self
    }
}

/// Options of a map node: the mandatory item bound, width and the context merge.
#[derive(Debug, Default)]
pub struct MapOptions<C> {
    pub(crate) max_items: Option<u32>,
    pub(crate) max_width: Option<u32>,
    pub(crate) merge: MergeStrategy<C>,
}

impl<C> MapOptions<C> {
    /// No bound yet (freezing fails until [`max_items`](Self::max_items) is set).
    pub fn new() -> Self {
        Self {
            max_items: None,
            max_width: None,
            merge: MergeStrategy::default(),
        }
    }

    /// At most `bound` items per run of the node; a split producing more fails the node.
    #[must_use]
    pub fn max_items(mut self, bound: u32) -> Self {
        self.max_items = Some(bound);
        self
    }

    /// At most `width` items run at once (under the runtime).
    #[must_use]
    pub fn max_width(mut self, width: u32) -> Self {
        self.max_width = Some(width);
        self
    }

    /// How item contexts merge back (items are merged like parallel branches).
    #[must_use]
    pub fn merge(mut self, merge: MergeStrategy<C>) -> Self {
        self.merge = merge;
        self
    }
}

/// Where a map's split puts its items: bounded by the node's item bound.
pub struct Items<'a, P> {
    pub(crate) buf: &'a mut Vec<P>,
    pub(crate) base: usize,
    pub(crate) limit: usize,
    pub(crate) overflowed: bool,
}

impl<P> fmt::Debug for Items<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items")
            .field("len", &self.len())
            .field("limit", &self.limit)
            .finish()
    }
}

impl<P> Items<'_, P> {
    /// Adds an item; when the bound is reached the item is given back and the map fails.
    pub fn push(&mut self, item: P) -> Result<(), P> {
        if self.len() >= self.limit {
            self.overflowed = true;
            return Err(item);
        }
        self.buf.push(item);
        Ok(())
    }

    /// Items pushed so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.base
    }

    /// Whether no item was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
