//! The host a run executes in: what a concurrent runtime lends the interpreter without
//! taking any of its rules.
//!
//! The core interpreter runs every node on the calling thread ([`Inline`]). A runtime that
//! has threads implements [`Host`] and runs graphs with
//! [`Runner::run_in`](super::Runner::run_in); the interpreter then asks it three things:
//!
//! - [`guard`](Host::guard) each attempt (a runtime with unwinding turns a panicking step
//!   into a failed one of class [`ErrorClass::Panic`](crate::policy::ErrorClass::Panic));
//! - whether to [`fork`](Host::fork) a fan-out ([`forks`](Host::forks), given its width and
//!   analysed [`cost`](crate::graph::Graph::cost)); a forked fan-out hands the host a
//!   [`Fan`] and one [`Lane`] per branch (or map item), the host calls [`Fan::run`] on each
//!   with a runner of its own (on any thread, in any order, at once), and the interpreter folds the
//!   results in declaration order with the same merge, reduce, failure and budget rules as
//!   the inline path;
//! - a [`SharedCache`] for cacheable steps, shared by every run (else each runner uses its
//!   own fixed cache).
//!
//! Forked branches differ from inline ones only where timing does: a branch that fails under
//! the propagate strategy (or aborts) cancels the siblings declared *after* it, which inline
//! would never have started; those may have run some steps, which are counted and recorded.
//! Siblings declared before it are never cancelled by it, so the failure the run reports is
//! the one the inline path reports.

use alloc::vec::Vec;

use super::records::StepRecord;
use super::results::{ErrorKind, Stop};
use crate::cache::CacheKey;
use crate::graph::{Cancel, CancelFlag, Graph, NodeId, StepError};
use crate::policy::{Usage, UsageBudget};
use crate::telemetry::Counters;

/// What a run asks of the host it runs in: a guard around each attempt, forks, a shared
/// cache (see the [`Runner::run_in`](super::Runner::run_in) docs).
///
/// Every method but [`fork`](Host::fork) has a default that does what the core alone does.
pub trait Host<P, C, K>: Sync + Sized {
    /// Runs one attempt of a step (pre-processors, step, post-processors, validators). A
    /// host that can catch panics returns one as an error; the default just calls it.
    #[inline(always)]
    fn guard(&self, attempt: impl FnOnce() -> Result<P, StepError>) -> Result<P, StepError> {
        attempt()
    }

    /// Whether to fork the fan-out `node` of `width` branches (or items, `width >= 2`)
    /// whose analysed cost is `cost`. The default never forks.
    #[inline(always)]
    fn forks(&self, node: NodeId, width: usize, cost: u32) -> bool {
        let _ = (node, width, cost);
        false
    }

    /// Runs every branch: calls [`Fan::run`] once on each, with a runner of the host's,
    /// possibly at once on several threads, and returns when all have run. At most
    /// `max_width` run at the same time (the fan-out's bound). A branch left unrun is a bug
    /// of the host, and the interpreter panics on it.
    fn fork(&self, max_width: usize, fan: &Fan<'_, P, C, K, Self>, lanes: &mut [Lane<P, C>]);

    /// The cache shared by every run, if the host has one (else cacheable steps use the
    /// runner's own [`FixedCache`](crate::cache::FixedCache)).
    #[inline(always)]
    fn cache(&self) -> Option<&dyn SharedCache<P>> {
        None
    }
}

/// A result cache shared by concurrent runs, with one computation per key: a caller that
/// misses while another computes the same key waits for it.
pub trait SharedCache<P>: Sync {
    /// Whether this execution of the cacheable task `node` uses the cache at all, asked
    /// before its key is computed (for a step whose inputs never repeat, computing the key is
    /// most of what caching costs). `false` runs the step as if it were not cacheable: no key,
    /// no lookup, no fill, and no hit or miss counted. The default always uses the cache.
    #[inline(always)]
    fn wants(&self, node: NodeId) -> bool {
        let _ = node;
        true
    }

    /// The output stored for `key`, the key of an execution of the task `node`. `None` makes
    /// the caller the key's computer: it must call [`fill`](Self::fill) once for it, whatever
    /// happens.
    fn lookup(&self, node: NodeId, key: &CacheKey) -> Option<P>;

    /// Ends the computation a `None` from [`lookup`](Self::lookup) handed out: stores
    /// `output` (the step succeeded) or gives up (`None`: waiters compute for themselves).
    fn fill(&self, key: CacheKey, output: Option<&P>);
}

/// The core's own host: everything on the calling thread, panics unwind, no shared cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inline;

impl<P, C, K> Host<P, C, K> for Inline {
    fn fork(&self, _max_width: usize, _fan: &Fan<'_, P, C, K, Self>, _: &mut [Lane<P, C>]) {
        unreachable!("`Inline::forks` is false, so it is never asked to fork")
    }
}

/// What every branch of a forked fan-out shares: the graph, the parent's context, the
/// clock, the deadline and cancel flags, the host. [`run`](Self::run) runs one [`Lane`].
pub struct Fan<'a, P, C, K, H> {
    pub(crate) g: &'a Graph<P, C>,
    pub(crate) base: &'a C,
    pub(crate) clock: &'a K,
    pub(crate) deadline: u64,
    pub(crate) cancel: Option<&'a Cancel<'a>>,
    /// One flag per branch; branch `i` answers to `flags[i]`.
    pub(crate) flags: &'a [CancelFlag],
    /// Whether a failure cancels the later siblings (propagate; an abort always does).
    pub(crate) stop_later: bool,
    pub(crate) limited: bool,
    /// Whether the run records telemetry (its branches then do too, on their runners').
    pub(crate) telemetry: bool,
    pub(crate) host: &'a H,
}

/// A lane: one branch (or map item) of a forked fan-out, which the host runs once: its
/// node, input and share of the budget,
/// and, once run, what it did. It borrows nothing, so the interpreter reuses the memory of
/// these (and of their record buffers) run after run.
pub struct Lane<P, C> {
    pub(crate) node: u32,
    pub(crate) input: Option<P>,
    pub(crate) index: usize,
    pub(crate) budget: UsageBudget,
    pub(crate) records: Vec<StepRecord>,
    pub(crate) out: Option<BranchOut<P, C>>,
}

/// What a forked branch did.
pub(crate) struct BranchOut<P, C> {
    pub(crate) result: Result<P, (Stop, ErrorKind)>,
    /// Its context, when it wrote one.
    pub(crate) context: Option<C>,
    pub(crate) usage: Usage,
    pub(crate) counters: Counters,
    pub(crate) dropped: u32,
}

impl<P, C, K, H> core::fmt::Debug for Fan<'_, P, C, K, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fan")
            .field("branches", &self.flags.len())
            .field("stop_later", &self.stop_later)
            .finish_non_exhaustive()
    }
}

impl<P, C> core::fmt::Debug for Lane<P, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lane")
            .field("node", &self.node)
            .field("index", &self.index)
            .field("ran", &self.out.is_some())
            .finish_non_exhaustive()
    }
}

impl<P, C> Lane<P, C> {
    /// The node this branch runs.
    pub fn node(&self) -> NodeId {
        NodeId(self.node)
    }

    /// Its position in the fan-out (declaration order, from 0).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it has run.
    pub fn has_run(&self) -> bool {
        self.out.is_some()
    }
}
