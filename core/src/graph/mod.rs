//! Step graphs: built in a bump arena, validated, then frozen into a flat index-based graph.
//!
//! A [`GraphBuilder`] allocates its nodes (names, kinds, child lists) in a `bumpalo` arena
//! while the host describes the pipeline; [`GraphBuilder::freeze`] validates every rule and
//! copies the structure into a [`Graph`]: struct-of-arrays indexed by `u32`, with no pointer
//! into the (then dropped) arena, `Send + Sync` and shareable behind an `Arc`.
//!
//! Node kinds ([`NodeKind`]): Task, Sequence, Parallel, Loop, Switch, Map. The payload `P`
//! (what flows between nodes) and the context `C` (what steps share) are the host's types.
//!
//! Architecture invariant: a frozen graph is valid; running it never meets a structural
//! error (an empty sequence, an unbounded loop, a fallback cycle, a dangling index).
//!
//! Architecture invariant: building is the only place that validates or allocates per node;
//! the interpreter only indexes.

mod analysis;
mod builder;
mod error;
mod step;
mod task;
mod typed;

use alloc::boxed::Box;
use core::fmt;

pub use crate::step_error::{StaticStepError, StepError, UserError};
pub use analysis::StepFlags;
pub use builder::GraphBuilder;
/// The arena a [`GraphBuilder`] allocates its nodes in ([`GraphBuilder::new_in`]),
/// re-exported so that a host needs no `bumpalo` dependency of its own (and never a second
/// version of it). [`Graph::build`] makes one itself.
pub use bumpalo::Bump;
pub use error::{GraphError, GraphRule};
pub(crate) use step::{Cancel, RunEnv, UNTIMED};
pub use step::{CancelFlag, Clock, ManualClock, NoClock, Step, StepCx};
pub use task::{
    ExitPredicate, FailureStrategy, FallibleReducer, Items, LoopOptions, MapOptions, NoValidator,
    ParallelOptions, Processor, Reducer, Selector, Splitter, TaskConfig, TypedValidator, Validator,
};
pub use typed::{Carries, Chain, Join, Node, TypedBuilder, TypedItems, WRONG_PAYLOAD};

use crate::context::MergeStrategy;
use crate::policy::Breaker;
pub(crate) use task::{Reduce, TaskPolicy};

/// The longest fallback chain a task may have (build error beyond).
pub const MAX_FALLBACK_CHAIN: usize = 10;

/// The most levels a graph may nest: a task is one level, a composite node one more than its
/// deepest child (a build error beyond). The interpreter recurses once per level (plus at
/// most [`MAX_FALLBACK_CHAIN`] fallback hops inside a task), so this bounds its stack use.
pub const MAX_DEPTH: usize = 64;

/// The most nodes a graph holds: node indices are `u32`, and `u32::MAX` is kept as "none".
pub const MAX_NODES: usize = u32::MAX as usize - 1;

/// Index of a node in a frozen [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The index as `usize`.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A handle to a node of one [`GraphBuilder`]; using it with another builder is a
/// [`GraphRule::ForeignHandle`] error. Its index is the node's [`NodeId`] once frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    builder: u32,
    index: u32,
}

impl NodeRef {
    /// The id this node has in the frozen graph.
    pub const fn id(self) -> NodeId {
        NodeId(self.index)
    }
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeKind {
    /// A user step.
    Task,
    /// Children in order, each one's output the next one's input.
    Sequence,
    /// Branches on the same input, reduced in declaration order.
    Parallel,
    /// A body repeated until an exit predicate holds or a bound is hit.
    Loop,
    /// A selector picks one arm (by key; a default arm when none matches).
    Switch,
    /// Split into items, a body per item, reduce.
    Map,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    #[inline(always)]
    pub(crate) fn range(self) -> core::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A task of a sequence whose children are all tasks (a *task chain*), with what the
/// interpreter needs in one place, so it never goes through the generic node dispatch.
///
/// The interpreter runs a task chain as *stretches*: consecutive tasks that one loop runs with
/// one step context, one clock read per task and the record cursor in locals. Plain tasks
/// and *lean* policy tasks (no cache, no usage estimate) join stretches; the other policy
/// tasks run alone through the full policy pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainTask {
    pub(crate) node: u32,
    pub(crate) task: u32,
    /// Index into `Graph::policies`, or `NO_POLICY` for a plain task.
    pub(crate) policy: u32,
    /// How many tasks from this one on (this one included) belong to its stretch; 0 for a
    /// task that runs through the full policy pipeline.
    pub(crate) stretch: u32,
    pub(crate) may_write: bool,
    /// A policy task whose first attempt the stretch loop runs itself (breaker, processors,
    /// validators; failures leave the loop for the recovery path).
    pub(crate) lean: bool,
    /// Whether the stretch starting here holds a lean policy task (else it is all plain).
    pub(crate) stretch_lean: bool,
    /// What a lean task's attempt runs around its step.
    pub(crate) checks: AroundStep,
    /// Whether a failed first attempt can need the input again (retry or fallback), so the
    /// stretch loop keeps a copy of it.
    pub(crate) keep: bool,
    /// A lean task's circuit breaker, so the stretch loop reaches it without the policy.
    pub(crate) breaker: Option<BreakerRef>,
}

/// A task's circuit breaker, as the graph's task chains keep it: a pointer to the `Breaker`
/// inside the `Arc` of the task's configuration (in `Graph::policies`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BreakerRef(core::ptr::NonNull<Breaker>);

// SAFETY: a `BreakerRef` only gives out `&Breaker` (see `get`), and `Breaker` is `Sync`, so
// sharing or sending the pointer across threads is sharing a `&Breaker`.
unsafe impl Send for BreakerRef {}
// SAFETY: as for `Send`.
unsafe impl Sync for BreakerRef {}

impl BreakerRef {
    /// A reference to the breaker in `breaker`, if any.
    pub(crate) fn of(breaker: Option<&crate::sync::Arc<Breaker>>) -> Option<Self> {
        breaker.map(|b| BreakerRef(core::ptr::NonNull::from(&**b)))
    }

    /// The breaker.
    ///
    /// # Safety
    ///
    /// The `Arc` it was taken from must still hold it for `'a`: true for as long as the
    /// graph whose task chain has it is borrowed, because the graph owns that `Arc` (in its
    /// policies, never changed after freezing) and drops it only when it is dropped itself.
    #[inline(always)]
    pub(crate) unsafe fn get<'a>(self) -> &'a Breaker {
        // SAFETY: the caller keeps the `Arc` (and so the pointee) alive for `'a`.
        unsafe { self.0.as_ref() }
    }
}

/// What a policy task's attempt runs around its step. The builder compiles a task's typed
/// validator into its step (see `GraphBuilder::step`), so a task with only that one has
/// nothing around its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AroundStep {
    /// Nothing: the attempt is the step.
    None,
    /// Processors, or boxed validators: the general order.
    Many,
}

impl AroundStep {
    /// The checks of a task with these flags and `validators` validators left beside its
    /// step.
    pub(crate) fn of(flags: StepFlags, validators: usize) -> Self {
        let processors = flags.intersects(StepFlags::PRE_PROCESSORS | StepFlags::POST_PROCESSORS);
        if processors || validators > 0 {
            AroundStep::Many
        } else {
            AroundStep::None
        }
    }
}

impl ChainTask {
    /// Whether the stretch loop runs this task (plain, or a lean policy task).
    #[inline(always)]
    pub(crate) fn in_stretch(self) -> bool {
        self.policy == NO_POLICY || self.lean
    }
}

pub(crate) struct SeqNode {
    pub(crate) children: Span,
    /// When every child is a task: a span of `Graph::chains`.
    pub(crate) tasks: Option<Span>,
}

pub(crate) struct ParNode<C> {
    pub(crate) branches: Span,
    pub(crate) merge: MergeStrategy<C>,
    pub(crate) failure: FailureStrategy,
    pub(crate) max_width: u32,
    /// The node's ops in [`Graph::pure_ops`], when it is a pure fan-out (see [`PureOp`]).
    pub(crate) program: Option<Span>,
}

/// One operation of a *pure fan-out*'s program: a leaf, or a fan-out opening.
///
/// A parallel node is pure when every node under it is a plain task that does not write the
/// context, or a pure parallel node. No branch of it can then write, so every branch sees
/// the same context and merging is a no-op, and each leaf gets the fan-out's input. Step
/// analysis lays such a subtree out flat, in declaration order (a fan-out, then its
/// branches' ops), and the interpreter runs it as one loop over the ops with a stack of open
/// fan-outs instead of a call per node (`interp::exec::pure`). A fan-out closes when its
/// last branch has handed up its result, so it needs no op of its own to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PureOp {
    /// The node.
    pub(crate) node: u32,
    /// A leaf's task slot, or a fan-out's parallel slot.
    pub(crate) slot: u32,
    /// A fan-out's branch count, with [`PureOp::PROPAGATE`]; 0 for a leaf.
    fan: u32,
    /// The ops of the node's subtree, itself included (1 for a leaf).
    pub(crate) len: u32,
}

impl PureOp {
    /// The bit of `fan` set when a failed branch fails the fan-out.
    const PROPAGATE: u32 = 1 << 31;

    pub(crate) fn leaf(node: u32, task: u32) -> Self {
        Self {
            node,
            slot: task,
            fan: 0,
            len: 1,
        }
    }

    /// A fan-out of `branches >= 1` (fewer than `2^31`: node indices are `u32`).
    pub(crate) fn fan(node: u32, par: u32, branches: u32, propagate: bool, len: u32) -> Self {
        debug_assert!((1..Self::PROPAGATE).contains(&branches));
        let bit = if propagate { Self::PROPAGATE } else { 0 };
        Self {
            node,
            slot: par,
            fan: branches | bit,
            len,
        }
    }

    /// The branches of a fan-out; 0 for a leaf.
    #[inline(always)]
    pub(crate) fn branches(self) -> u32 {
        self.fan & !Self::PROPAGATE
    }

    /// Whether a failed branch fails the fan-out (else it is skipped).
    #[inline(always)]
    pub(crate) fn propagates(self) -> bool {
        self.fan & Self::PROPAGATE != 0
    }
}

pub(crate) struct LoopNode<P, C> {
    pub(crate) body: u32,
    pub(crate) max_iterations: u32,
    pub(crate) exit: Option<ExitPredicate<P, C>>,
}

pub(crate) struct SwitchNode<P, C> {
    pub(crate) arms: Span,
    pub(crate) keys: Box<[u64]>,
    pub(crate) default: Option<u32>,
    pub(crate) selector: Selector<P, C>,
}

pub(crate) struct MapNode<P, C> {
    pub(crate) body: u32,
    pub(crate) split: Splitter<P, C>,
    pub(crate) reduce: Reduce<P>,
    pub(crate) max_items: u32,
    pub(crate) max_width: u32,
    pub(crate) merge: MergeStrategy<C>,
}

pub(crate) const NO_POLICY: u32 = u32::MAX;

/// A frozen, validated step graph: flat arrays indexed by `u32`, `Send + Sync`, shareable
/// behind an `Arc` and runnable any number of times.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, NoClock};
/// use flujo_core::interp::{Runner, RunOptions, Outcome};
///
/// let g = Graph::<u64, ()>::build(|b| {
///     let inc = b.task("inc", |x, _| Ok(x + 1));
///     let dbl = b.task("double", |x, _| Ok(x * 2));
///     b.sequence("pipeline", &[inc, dbl])
/// })
/// .unwrap();
/// let mut runner = Runner::new(Default::default());
/// let r = runner.run(&g, 20, (), &NoClock, &RunOptions::default());
/// assert_eq!(r.outcome, Outcome::Succeeded);
/// assert_eq!(r.output, Some(42));
/// assert_eq!(r.records.len(), 2);
/// ```
pub struct Graph<P, C> {
    /// The id of the builder it was frozen from (see [`Graph::id`]).
    pub(crate) id: u32,
    pub(crate) root: u32,
    /// The analysed cost of each node (see [`Graph::cost`]).
    pub(crate) cost: Box<[u32]>,
    pub(crate) kind: Box<[NodeKind]>,
    /// Index into the kind's table (`tasks`, `seqs`, `pars`, ...).
    pub(crate) slot: Box<[u32]>,
    pub(crate) name: Box<[Box<str>]>,
    pub(crate) task_node: Box<[u32]>,
    pub(crate) task_step: Box<[Box<dyn Step<P, C>>]>,
    pub(crate) task_flags: Box<[StepFlags]>,
    /// Index into `policies`, or `NO_POLICY` for a plain task.
    pub(crate) task_policy: Box<[u32]>,
    pub(crate) policies: Box<[TaskPolicy<P, C>]>,
    pub(crate) children: Box<[u32]>,
    /// The task chains of sequences whose children are all tasks.
    pub(crate) chains: Box<[ChainTask]>,
    pub(crate) seqs: Box<[SeqNode]>,
    pub(crate) pars: Box<[ParNode<C>]>,
    /// The parallel nodes' reducers, by slot (dense: a pure program reads one per fan-out).
    pub(crate) par_reduce: Box<[Reduce<P>]>,
    pub(crate) loops: Box<[LoopNode<P, C>]>,
    pub(crate) switches: Box<[SwitchNode<P, C>]>,
    pub(crate) maps: Box<[MapNode<P, C>]>,
    /// The programs of the pure fan-outs (see [`PureOp`]); a node's lies in its
    /// outermost pure ancestor's.
    pub(crate) pure_ops: Box<[PureOp]>,
}

impl<P, C> Graph<P, C> {
    /// Builds a graph in a fresh arena: `f` describes it and returns the root.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::Graph;
    /// let g = Graph::<i32, ()>::build(|b| b.task("neg", |x, _| Ok(-x))).unwrap();
    /// assert_eq!(g.len(), 1);
    /// ```
    pub fn build(
        f: impl FnOnce(&mut GraphBuilder<'_, P, C>) -> NodeRef,
    ) -> Result<Self, GraphError> {
        let bump = bumpalo::Bump::new();
        let mut builder = GraphBuilder::new_in(&bump);
        let root = f(&mut builder);
        builder.freeze(root)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.kind.len()
    }

    /// Whether the graph has no nodes (never true for a frozen graph).
    pub fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }

    /// The root node.
    pub fn root(&self) -> NodeId {
        NodeId(self.root)
    }

    /// The node's name.
    pub fn name(&self, node: NodeId) -> &str {
        &self.name[node.index()]
    }

    /// The node's kind.
    pub fn kind(&self, node: NodeId) -> NodeKind {
        self.kind[node.index()]
    }

    /// The step analysis of a task node (`None` for other kinds).
    pub fn step_flags(&self, node: NodeId) -> Option<StepFlags> {
        match self.kind[node.index()] {
            NodeKind::Task => Some(self.task_flags[self.slot[node.index()] as usize]),
            _ => None,
        }
    }

    /// The circuit breakers of the graph's tasks, each with the task it guards (a breaker
    /// shared by several tasks comes once per task), in task order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use flujo_core::graph::{Graph, TaskConfig};
    /// use flujo_core::policy::{Breaker, BreakerConfig};
    ///
    /// let breaker = Arc::new(Breaker::new(BreakerConfig::DEFAULT).unwrap());
    /// let g = Graph::<u64, ()>::build(|b| {
    ///     let cfg = TaskConfig::new().breaker(breaker.clone());
    ///     let guarded = b.task_with("remote", |x, _| Ok(x), cfg);
    ///     let plain = b.task("local", |x, _| Ok(x));
    ///     b.sequence("s", &[guarded, plain])
    /// })
    /// .unwrap();
    /// let found: Vec<_> = g.breakers().collect();
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(g.name(found[0].0), "remote");
    /// assert!(Arc::ptr_eq(found[0].1, &breaker));
    /// ```
    pub fn breakers(&self) -> impl Iterator<Item = (NodeId, &crate::sync::Arc<Breaker>)> + '_ {
        self.policies
            .iter()
            .filter_map(|p| p.cfg.breaker.as_ref().map(|b| (NodeId(p.node), b)))
    }

    /// The fan-out width bound of a parallel or map node (`None` for other kinds): how many
    /// branches or items may run at once under a concurrent runtime.
    pub fn max_width(&self, node: NodeId) -> Option<u32> {
        let slot = self.slot[node.index()] as usize;
        match self.kind[node.index()] {
            NodeKind::Parallel => Some(self.pars[slot].max_width),
            NodeKind::Map => Some(self.maps[slot].max_width),
            _ => None,
        }
    }

    /// An id no other graph of this process has (until 2^32 graphs were built): a host that
    /// keeps per-graph statistics keys them by it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The analysed cost of a node, computed when the graph was frozen: how many task
    /// executions its subtree makes at most (a task counts 1; sequences and parallel nodes
    /// sum their children; a switch counts its dearest arm; loops and maps multiply their
    /// body by their bound; saturating at `u32::MAX`). A concurrent runtime compares a
    /// fan-out's cost with its cutoff to decide whether forking pays.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::Graph;
    /// let g = Graph::<u64, ()>::build(|b| {
    ///     let a = b.task("a", |x, _| Ok(x + 1));
    ///     let c = b.task("c", |x, _| Ok(x + 2));
    ///     let s = b.sequence("s", &[a, c]);
    ///     let d = b.task("d", |x, _| Ok(x));
    ///     b.parallel("p", &[s, d], |x, y| x + y, Default::default())
    /// })
    /// .unwrap();
    /// assert_eq!(g.cost(g.root()), 3);
    /// ```
    pub fn cost(&self, node: NodeId) -> u32 {
        self.cost[node.index()]
    }

    /// The node's children, in order: a sequence's children, a parallel node's branches, a
    /// switch's arms (its default arm last), a loop's or a map's body; none for a task. A
    /// node may be the child of several parents.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::{Graph, NodeKind};
    /// let g = Graph::<u64, ()>::build(|b| {
    ///     let a = b.task("a", |x, _| Ok(x + 1));
    ///     let c = b.task("c", |x, _| Ok(x * 2));
    ///     b.sequence("s", &[a, c])
    /// })
    /// .unwrap();
    /// let names: Vec<&str> = g.children(g.root()).map(|c| g.name(c)).collect();
    /// assert_eq!(names, ["a", "c"]);
    /// assert_eq!(g.children(g.find("a").unwrap()).len(), 0);
    /// ```
    pub fn children(&self, node: NodeId) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        let slot = self.slot[node.index()] as usize;
        let span: &[u32] = match self.kind[node.index()] {
            NodeKind::Task => &[],
            NodeKind::Sequence => &self.children[self.seqs[slot].children.range()],
            NodeKind::Parallel => &self.children[self.pars[slot].branches.range()],
            NodeKind::Loop => core::slice::from_ref(&self.loops[slot].body),
            NodeKind::Map => core::slice::from_ref(&self.maps[slot].body),
            NodeKind::Switch => {
                // The default arm, if any, follows the keyed arms in `children`.
                let sw = &self.switches[slot];
                let arms = sw.arms.range();
                let end = arms.end + usize::from(sw.default.is_some());
                debug_assert!(sw.default.is_none_or(|d| self.children[arms.end] == d));
                &self.children[arms.start..end]
            }
        };
        span.iter().map(|&c| NodeId(c))
    }

    /// The fallback of a task node: the task that runs when its recovery says so (`None`
    /// for a task without one, and for other kinds).
    pub fn fallback(&self, node: NodeId) -> Option<NodeId> {
        if self.kind[node.index()] != NodeKind::Task {
            return None;
        }
        let policy = self.task_policy[self.slot[node.index()] as usize];
        let task = self.policies.get(policy as usize)?.fallback_task?;
        Some(NodeId(self.task_node[task as usize]))
    }

    /// The node named `name` (the first, if names repeat).
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.name
            .iter()
            .position(|n| &**n == name)
            .map(|i| NodeId(i as u32))
    }
}

impl<P, C> fmt::Debug for Graph<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.kind.len())
            .field("tasks", &self.task_node.len())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
