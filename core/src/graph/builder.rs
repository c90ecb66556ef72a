//! The graph builder: nodes allocated in a bump arena while building, validated and
//! flattened by [`GraphBuilder::freeze`].

use alloc::boxed::Box;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt;

use bumpalo::Bump;

use super::analysis::pure_programs;
use super::task::{Reduce, TaskPolicy, TypedValidator};
use super::{
    AroundStep, BreakerRef, ChainTask, ExitPredicate, Graph, GraphError, GraphRule, LoopNode,
    LoopOptions, MapNode, MapOptions, NodeKind, NodeRef, ParNode, ParallelOptions, Selector,
    SeqNode, Span, Splitter, Step, StepCx, StepError, StepFlags, SwitchNode, TaskConfig, Validator,
    MAX_DEPTH, MAX_FALLBACK_CHAIN, MAX_NODES, NO_POLICY,
};
use super::{FailureStrategy, Items};
use crate::context::MergeStrategy;
use crate::policy::ErrorClass;
use crate::sync::statics::{AtomicU32, Ordering};

/// Source of builder ids, so a handle used with the wrong builder is caught.
static NEXT_BUILDER_ID: AtomicU32 = AtomicU32::new(1);

/// A node while building; lives in the arena (it is `Copy`, so never needs dropping).
#[derive(Clone, Copy)]
struct BuildNode<'a> {
    name: &'a str,
    kind: NodeKind,
    /// Index into the builder's side table for the kind.
    slot: u32,
    /// Children: sequence children, parallel branches, branch arms, loop or map body.
    children: &'a [NodeRef],
}

struct BuildTask<P, C> {
    step: Box<dyn Step<P, C>>,
    cfg: TaskConfig<P, C>,
}

/// A step with its typed validator compiled in: the step, then the check of its output
/// (an error classified as validation), in one call.
struct Checked<S, V> {
    step: S,
    check: V,
}

impl<P, C, S, V> Step<P, C> for Checked<S, V>
where
    S: Step<P, C>,
    V: TypedValidator<P, C>,
{
    #[inline]
    fn run(&self, input: P, cx: &mut StepCx<'_, C>) -> Result<P, StepError> {
        let y = self.step.run(input, cx)?;
        match self.check.check(&y, cx.ctx()) {
            Ok(()) => Ok(y),
            Err(e) => Err(e.with_class(ErrorClass::Validation)),
        }
    }
}

struct BuildPar<P, C> {
    merge: MergeStrategy<C>,
    failure: FailureStrategy,
    max_width: Option<u32>,
    reduce: Reduce<P>,
}

struct BuildLoop<P, C> {
    max_iterations: Option<u32>,
    exit: Option<ExitPredicate<P, C>>,
}

struct BuildSwitch<P, C> {
    keys: Vec<u64>,
    default: Option<NodeRef>,
    selector: Selector<P, C>,
}

struct BuildMap<P, C> {
    split: Splitter<P, C>,
    reduce: Reduce<P>,
    opts: MapOptions<C>,
}

/// Builds a [`Graph`]: each method adds a node and returns its handle; [`freeze`](Self::freeze)
/// validates and flattens. Errors (a foreign handle, too many nodes) are kept and reported by
/// `freeze`, so building code needs no `?` on every line.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Bump, GraphBuilder, LoopOptions};
/// let bump = Bump::new();
/// let mut b = GraphBuilder::<u32, ()>::new_in(&bump);
/// let body = b.task("inc", |x, _| Ok(x + 1));
/// let lp = b.loop_("count", body, LoopOptions::new().max_iterations(10).until(|x, _, _| *x >= 3));
/// let g = b.freeze(lp).unwrap();
/// assert_eq!(g.len(), 2);
/// ```
pub struct GraphBuilder<'a, P, C> {
    bump: &'a Bump,
    id: u32,
    node_limit: usize,
    nodes: Vec<&'a BuildNode<'a>>,
    tasks: Vec<BuildTask<P, C>>,
    pars: Vec<BuildPar<P, C>>,
    loops: Vec<BuildLoop<P, C>>,
    switches: Vec<BuildSwitch<P, C>>,
    maps: Vec<BuildMap<P, C>>,
    error: Option<GraphError>,
}

impl<P, C> fmt::Debug for GraphBuilder<'_, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("id", &self.id)
            .field("nodes", &self.nodes.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<'a, P, C> GraphBuilder<'a, P, C> {
    /// A builder whose nodes live in `bump` until [`freeze`](Self::freeze).
    pub fn new_in(bump: &'a Bump) -> Self {
        Self {
            bump,
            id: NEXT_BUILDER_ID.fetch_add(1, Ordering::Relaxed),
            node_limit: MAX_NODES,
            nodes: Vec::new(),
            tasks: Vec::new(),
            pars: Vec::new(),
            loops: Vec::new(),
            switches: Vec::new(),
            maps: Vec::new(),
            error: None,
        }
    }

    /// Lowers the node limit (tests of the "too many nodes" rule).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_node_limit(&mut self, limit: usize) {
        self.node_limit = limit;
    }

    /// Number of nodes added so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn fail(&mut self, name: &str, rule: GraphRule) {
        if self.error.is_none() {
            self.error = Some(GraphError {
                node: name.to_string(),
                rule,
            });
        }
    }

    /// Records a build error against the node about to be named `name` (the first error
    /// wins; `freeze` reports it).
    pub(crate) fn fail_rule(&mut self, name: &str, rule: GraphRule) {
        self.fail(name, rule);
    }

    fn check_handle(&mut self, name: &str, r: NodeRef) {
        if r.builder != self.id || r.index as usize >= self.nodes.len() {
            self.fail(name, GraphRule::ForeignHandle);
        }
    }

    fn add(&mut self, name: &str, kind: NodeKind, slot: usize, children: &[NodeRef]) -> NodeRef {
        for &c in children {
            self.check_handle(name, c);
        }
        if self.nodes.len() >= self.node_limit {
            self.fail(
                name,
                GraphRule::TooManyNodes {
                    limit: self.node_limit,
                },
            );
            return NodeRef {
                builder: self.id,
                index: u32::MAX,
            };
        }
        let node = self.bump.alloc(BuildNode {
            name: self.bump.alloc_str(name),
            kind,
            slot: slot as u32,
            children: self.bump.alloc_slice_copy(children),
        });
        let index = self.nodes.len() as u32;
        self.nodes.push(node);
        NodeRef {
            builder: self.id,
            index,
        }
    }

    /// A task running closure `f`, without policies (the fast path).
    pub fn task<F>(&mut self, name: &str, f: F) -> NodeRef
    where
        F: Fn(P, &mut StepCx<'_, C>) -> Result<P, StepError> + Send + Sync + 'static,
    {
        self.step(name, f, TaskConfig::new())
    }

    /// A task running closure `f` with the policies of `cfg`.
    pub fn task_with<F, V>(&mut self, name: &str, f: F, cfg: TaskConfig<P, C, V>) -> NodeRef
    where
        F: Fn(P, &mut StepCx<'_, C>) -> Result<P, StepError> + Send + Sync + 'static,
        V: TypedValidator<P, C>,
    {
        self.step(name, f, cfg)
    }

    /// A task running a [`Step`] implementation with the policies of `cfg`.
    ///
    /// A typed validator (see [`TaskConfig`]) is compiled into the step here, unless
    /// something runs between the two (post-processors, or boxed validators added before
    /// it): then it is boxed and takes its place among the validators.
    pub fn step<S, V>(&mut self, name: &str, step: S, cfg: TaskConfig<P, C, V>) -> NodeRef
    where
        S: Step<P, C> + 'static,
        V: TypedValidator<P, C>,
    {
        if let Some(fb) = cfg.fallback {
            self.check_handle(name, fb);
        }
        let at = cfg.check_at;
        let (mut cfg, check) = cfg.split();
        // The typed validator goes into the step when it is first and no post-processor runs
        // between them; else it is boxed and takes its place among the validators.
        let step: Box<dyn Step<P, C>> = if V::SOME && at == 0 && cfg.post.is_empty() {
            cfg.fused_check = true;
            Box::new(Checked { step, check })
        } else {
            if V::SOME {
                let check: Validator<P, C> = Box::new(move |y, ctx| check.check(y, ctx));
                cfg.validators.insert(at, check);
            }
            Box::new(step)
        };
        let slot = self.tasks.len();
        self.tasks.push(BuildTask { step, cfg });
        self.add(name, NodeKind::Task, slot, &[])
    }

    /// Sets (or replaces) the fallback of `task`.
    pub fn set_fallback(&mut self, task: NodeRef, fallback: NodeRef) {
        self.check_handle("<set_fallback>", task);
        self.check_handle("<set_fallback>", fallback);
        if self.error.is_some() {
            return;
        }
        let node = *self.nodes[task.index as usize];
        if node.kind != NodeKind::Task {
            let name = node.name;
            self.fail(name, GraphRule::FallbackNotTask);
            return;
        }
        self.tasks[node.slot as usize].cfg.fallback = Some(fallback);
    }

    /// A sequence: each child's output is the next one's input; the first failure stops it.
    pub fn sequence(&mut self, name: &str, children: &[NodeRef]) -> NodeRef {
        self.add(name, NodeKind::Sequence, 0, children)
    }

    /// A parallel node: every branch gets the input; outputs of the successful branches are
    /// folded with `reduce` in declaration order, the first one as the initial accumulator.
    pub fn parallel(
        &mut self,
        name: &str,
        branches: &[NodeRef],
        reduce: impl Fn(P, P) -> P + Send + Sync + 'static,
        opts: ParallelOptions<C>,
    ) -> NodeRef {
        self.parallel_of(name, branches, Reduce::Plain(Box::new(reduce)), opts)
    }

    /// [`parallel`](Self::parallel) with a reducer that can fail (the typed builder's).
    pub(crate) fn parallel_fallible(
        &mut self,
        name: &str,
        branches: &[NodeRef],
        reduce: impl Fn(P, P) -> Result<P, StepError> + Send + Sync + 'static,
        opts: ParallelOptions<C>,
    ) -> NodeRef {
        self.parallel_of(name, branches, Reduce::Fallible(Box::new(reduce)), opts)
    }

    fn parallel_of(
        &mut self,
        name: &str,
        branches: &[NodeRef],
        reduce: Reduce<P>,
        opts: ParallelOptions<C>,
    ) -> NodeRef {
        let slot = self.pars.len();
        self.pars.push(BuildPar {
            merge: opts.merge,
            failure: opts.failure,
            max_width: opts.max_width,
            reduce,
        });
        self.add(name, NodeKind::Parallel, slot, branches)
    }

    /// A loop: `body` runs on its own output until the exit predicate holds or the bound is
    /// hit; the exit reason is recorded.
    pub fn loop_(&mut self, name: &str, body: NodeRef, opts: LoopOptions<P, C>) -> NodeRef {
        let slot = self.loops.len();
        self.loops.push(BuildLoop {
            max_iterations: opts.max_iterations,
            exit: opts.exit,
        });
        self.add(name, NodeKind::Loop, slot, &[body])
    }

    /// A switch: `selector` picks the arm with its key; `default` runs when none matches
    /// (without one, no match fails the run with an error naming the key).
    pub fn switch(
        &mut self,
        name: &str,
        selector: impl Fn(&P, &C) -> u64 + Send + Sync + 'static,
        arms: &[(u64, NodeRef)],
        default: Option<NodeRef>,
    ) -> NodeRef {
        let slot = self.switches.len();
        let keys: Vec<u64> = arms.iter().map(|(k, _)| *k).collect();
        let mut children: Vec<NodeRef> = arms.iter().map(|(_, n)| *n).collect();
        if let Some(d) = default {
            children.push(d);
        }
        self.switches.push(BuildSwitch {
            keys,
            default,
            selector: Box::new(selector),
        });
        self.add(name, NodeKind::Switch, slot, &children)
    }

    /// A map: `split` turns the input into items (and returns the reduce's initial
    /// accumulator), `body` runs per item, outputs fold with `reduce` in item order.
    pub fn map(
        &mut self,
        name: &str,
        split: impl Fn(P, &C, &mut Items<'_, P>) -> Result<P, StepError> + Send + Sync + 'static,
        body: NodeRef,
        reduce: impl Fn(P, P) -> P + Send + Sync + 'static,
        opts: MapOptions<C>,
    ) -> NodeRef {
        self.map_of(
            name,
            Box::new(split),
            body,
            Reduce::Plain(Box::new(reduce)),
            opts,
        )
    }

    /// [`map`](Self::map) with a reducer that can fail (the typed builder's).
    pub(crate) fn map_fallible(
        &mut self,
        name: &str,
        split: impl Fn(P, &C, &mut Items<'_, P>) -> Result<P, StepError> + Send + Sync + 'static,
        body: NodeRef,
        reduce: impl Fn(P, P) -> Result<P, StepError> + Send + Sync + 'static,
        opts: MapOptions<C>,
    ) -> NodeRef {
        let reduce = Reduce::Fallible(Box::new(reduce));
        self.map_of(name, Box::new(split), body, reduce, opts)
    }

    fn map_of(
        &mut self,
        name: &str,
        split: Splitter<P, C>,
        body: NodeRef,
        reduce: Reduce<P>,
        opts: MapOptions<C>,
    ) -> NodeRef {
        let slot = self.maps.len();
        self.maps.push(BuildMap {
            split,
            reduce,
            opts,
        });
        self.add(name, NodeKind::Map, slot, &[body])
    }

    /// Validates every rule and flattens the graph rooted at `root`.
    pub fn freeze(mut self, root: NodeRef) -> Result<Graph<P, C>, GraphError> {
        self.check_handle("<root>", root);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.validate()?;
        Ok(self.flatten(root.index))
    }

    fn err(&self, node: usize, rule: GraphRule) -> GraphError {
        GraphError {
            node: self.nodes[node].name.to_string(),
            rule,
        }
    }

    fn validate(&self) -> Result<(), GraphError> {
        self.validate_depth()?;
        for (i, n) in self.nodes.iter().enumerate() {
            let slot = n.slot as usize;
            match n.kind {
                NodeKind::Task => self.validate_task(i, slot)?,
                NodeKind::Sequence if n.children.is_empty() => {
                    return Err(self.err(i, GraphRule::EmptySequence))
                }
                NodeKind::Parallel if n.children.is_empty() => {
                    return Err(self.err(i, GraphRule::EmptyParallel))
                }
                NodeKind::Parallel if self.pars[slot].max_width == Some(0) => {
                    return Err(self.err(i, GraphRule::ZeroWidth))
                }
                NodeKind::Loop if self.loops[slot].max_iterations.unwrap_or(0) == 0 => {
                    return Err(self.err(i, GraphRule::LoopWithoutBound))
                }
                NodeKind::Switch => {
                    let keys = &self.switches[slot].keys;
                    if keys.is_empty() {
                        return Err(self.err(i, GraphRule::EmptySwitch));
                    }
                    for (k, key) in keys.iter().enumerate() {
                        if keys[..k].contains(key) {
                            return Err(self.err(i, GraphRule::DuplicateArm { key: *key }));
                        }
                    }
                }
                NodeKind::Map => {
                    let opts = &self.maps[slot].opts;
                    if opts.max_items.unwrap_or(0) == 0 {
                        return Err(self.err(i, GraphRule::MapWithoutBound));
                    }
                    if opts.max_width == Some(0) {
                        return Err(self.err(i, GraphRule::ZeroWidth));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every node's nesting depth is at most [`MAX_DEPTH`]. A node's children were all made
    /// before it (a handle exists only once its node does), so one pass in index order sees
    /// every child's depth before its parent's.
    fn validate_depth(&self) -> Result<(), GraphError> {
        let mut depth: Vec<u8> = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let deepest_child = n
                .children
                .iter()
                .map(|c| {
                    debug_assert!((c.index as usize) < i, "children come first");
                    depth[c.index as usize]
                })
                .max()
                .unwrap_or(0);
            let d = usize::from(deepest_child) + 1;
            if d > MAX_DEPTH {
                return Err(self.err(i, GraphRule::TooDeep { limit: MAX_DEPTH }));
            }
            depth.push(d as u8);
        }
        Ok(())
    }

    fn validate_task(&self, node: usize, slot: usize) -> Result<(), GraphError> {
        let cfg = &self.tasks[slot].cfg;
        let flags = cfg.flags();
        if flags.contains(StepFlags::CACHE) && flags.contains(StepFlags::WRITES_CONTEXT) {
            return Err(self.err(node, GraphRule::CacheableWritesContext));
        }
        if flags.contains(StepFlags::SKIP) && cfg.default_output.is_none() {
            return Err(self.err(node, GraphRule::SkipWithoutDefault));
        }
        // Follow the fallback chain: at most MAX_FALLBACK_CHAIN hops, each to a task, never
        // back to a task already on the chain.
        let mut chain: [usize; MAX_FALLBACK_CHAIN + 1] = [usize::MAX; MAX_FALLBACK_CHAIN + 1];
        chain[0] = node;
        let mut current = cfg.fallback;
        let mut length = 0;
        while let Some(next) = current {
            let next = next.index as usize;
            if self.nodes[next].kind != NodeKind::Task {
                return Err(self.err(node, GraphRule::FallbackNotTask));
            }
            if chain[..=length].contains(&next) {
                return Err(self.err(node, GraphRule::FallbackCycle));
            }
            length += 1;
            if length > MAX_FALLBACK_CHAIN {
                return Err(self.err(node, GraphRule::FallbackChainTooLong { length }));
            }
            chain[length] = next;
            current = self.tasks[self.nodes[next].slot as usize].cfg.fallback;
        }
        Ok(())
    }

    fn flatten(self, root: u32) -> Graph<P, C> {
        let n = self.nodes.len();
        let mut kind = Vec::with_capacity(n);
        let mut slot = Vec::with_capacity(n);
        let mut name = Vec::with_capacity(n);
        let mut children: Vec<u32> = Vec::new();
        let mut seqs = Vec::new();
        let mut chains: Vec<ChainTask> = Vec::new();
        let mut pars = Vec::with_capacity(self.pars.len());
        let mut par_reduce = Vec::with_capacity(self.pars.len());
        let mut loops = Vec::with_capacity(self.loops.len());
        let mut switches = Vec::with_capacity(self.switches.len());
        let mut maps = Vec::with_capacity(self.maps.len());

        // Task tables first: the composite pass reads their flags.
        let mut task_node = alloc::vec![0u32; self.tasks.len()];
        let mut task_step = Vec::with_capacity(self.tasks.len());
        let mut task_flags = Vec::with_capacity(self.tasks.len());
        let mut task_policy = Vec::with_capacity(self.tasks.len());
        let mut policies = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.kind == NodeKind::Task {
                task_node[node.slot as usize] = i as u32;
            }
        }
        for t in self.tasks {
            let flags = t.cfg.flags();
            task_flags.push(flags);
            task_step.push(t.step);
            if flags.is_plain() {
                task_policy.push(NO_POLICY);
            } else {
                let fallback_task = t.cfg.fallback.map(|f| self.nodes[f.index as usize].slot);
                let task = task_policy.len() as u32;
                task_policy.push(policies.len() as u32);
                policies.push(TaskPolicy {
                    cfg: t.cfg,
                    fallback_task,
                    task,
                    node: task_node[task as usize],
                    flags,
                });
            }
        }

        let mut pars_in = self.pars.into_iter();
        let mut loops_in = self.loops.into_iter();
        let mut switches_in = self.switches.into_iter();
        let mut maps_in = self.maps.into_iter();
        for node in &self.nodes {
            kind.push(node.kind);
            name.push(Box::<str>::from(node.name));
            let span = Span {
                start: children.len() as u32,
                len: node.children.len() as u32,
            };
            children.extend(node.children.iter().map(|c| c.index));
            let s = match node.kind {
                NodeKind::Task => node.slot,
                NodeKind::Sequence => {
                    let all_tasks = node
                        .children
                        .iter()
                        .all(|c| self.nodes[c.index as usize].kind == NodeKind::Task);
                    let tasks = all_tasks.then(|| {
                        let start = chains.len();
                        chains.extend(node.children.iter().map(|c| {
                            let task = self.nodes[c.index as usize].slot;
                            let flags = task_flags[task as usize];
                            let policy = task_policy[task as usize];
                            let pol = policies.get(policy as usize);
                            let validators =
                                pol.map_or(0, |p: &TaskPolicy<P, C>| p.cfg.validators.len());
                            let breaker = pol.and_then(|p| BreakerRef::of(p.cfg.breaker.as_ref()));
                            ChainTask {
                                node: c.index,
                                task,
                                policy,
                                stretch: 0,
                                may_write: flags.contains(StepFlags::WRITES_CONTEXT),
                                lean: !flags.is_plain()
                                    && !flags.intersects(
                                        StepFlags::CACHE | StepFlags::USAGE | StepFlags::TIMEOUT,
                                    ),
                                stretch_lean: false,
                                checks: AroundStep::of(flags, validators),
                                keep: flags.intersects(StepFlags::RETRY | StepFlags::FALLBACK),
                                breaker,
                            }
                        }));
                        // Each task of a stretch learns how many tasks its stretch has left
                        // and whether a lean policy task is among them.
                        let (mut left, mut lean) = (0, false);
                        for t in chains[start..].iter_mut().rev() {
                            (left, lean) = if t.in_stretch() {
                                (left + 1, lean || t.lean)
                            } else {
                                (0, false)
                            };
                            t.stretch = left;
                            t.stretch_lean = lean;
                        }
                        Span {
                            start: start as u32,
                            len: node.children.len() as u32,
                        }
                    });
                    seqs.push(SeqNode {
                        children: span,
                        tasks,
                    });
                    seqs.len() as u32 - 1
                }
                NodeKind::Parallel => {
                    let p = pars_in.next().expect("one side entry per parallel node");
                    pars.push(ParNode {
                        branches: span,
                        merge: p.merge,
                        failure: p.failure,
                        max_width: p.max_width.unwrap_or(span.len),
                        program: None,
                    });
                    par_reduce.push(p.reduce);
                    pars.len() as u32 - 1
                }
                NodeKind::Loop => {
                    let l = loops_in.next().expect("one side entry per loop node");
                    loops.push(LoopNode {
                        body: node.children[0].index,
                        max_iterations: l.max_iterations.expect("validated: loop bound"),
                        exit: l.exit,
                    });
                    loops.len() as u32 - 1
                }
                NodeKind::Switch => {
                    let b = switches_in.next().expect("one side entry per switch node");
                    let arms = Span {
                        start: span.start,
                        len: b.keys.len() as u32,
                    };
                    switches.push(SwitchNode {
                        arms,
                        keys: b.keys.into_boxed_slice(),
                        default: b.default.map(|d| d.index),
                        selector: b.selector,
                    });
                    switches.len() as u32 - 1
                }
                NodeKind::Map => {
                    let m = maps_in.next().expect("one side entry per map node");
                    let max_items = m.opts.max_items.expect("validated: map bound");
                    maps.push(MapNode {
                        body: node.children[0].index,
                        split: m.split,
                        reduce: m.reduce,
                        max_items,
                        max_width: m.opts.max_width.unwrap_or(max_items),
                        merge: m.opts.merge,
                    });
                    maps.len() as u32 - 1
                }
            };
            slot.push(s);
        }
        let cost = subtree_costs(
            &kind, &slot, &children, &seqs, &pars, &loops, &switches, &maps,
        );
        let (pure_ops, programs) =
            pure_programs(&kind, &slot, &children, &pars, &task_flags, &task_policy);
        for (par, program) in pars.iter_mut().zip(programs) {
            par.program = program;
        }
        Graph {
            id: self.id,
            root,
            cost,
            kind: kind.into_boxed_slice(),
            slot: slot.into_boxed_slice(),
            name: name.into_boxed_slice(),
            task_node: task_node.into_boxed_slice(),
            task_step: task_step.into_boxed_slice(),
            task_flags: task_flags.into_boxed_slice(),
            task_policy: task_policy.into_boxed_slice(),
            policies: policies.into_boxed_slice(),
            children: children.into_boxed_slice(),
            chains: chains.into_boxed_slice(),
            seqs: seqs.into_boxed_slice(),
            pars: pars.into_boxed_slice(),
            par_reduce: par_reduce.into_boxed_slice(),
            loops: loops.into_boxed_slice(),
            switches: switches.into_boxed_slice(),
            maps: maps.into_boxed_slice(),
            pure_ops: pure_ops.into_boxed_slice(),
        }
    }
}

/// The analysed cost of every node: the task executions its subtree makes at most (a task
/// counts 1; sequences and parallel nodes sum their children; a branch takes its dearest arm;
/// loops and maps multiply their body by their bound), saturating. Children come before their
/// parents (a node is built from nodes that exist), so one pass in index order sees every
/// child's cost before its parent's.
#[allow(clippy::too_many_arguments)]
fn subtree_costs<P, C>(
    kind: &[NodeKind],
    slot: &[u32],
    children: &[u32],
    seqs: &[SeqNode],
    pars: &[ParNode<C>],
    loops: &[LoopNode<P, C>],
    switches: &[SwitchNode<P, C>],
    maps: &[MapNode<P, C>],
) -> Box<[u32]> {
    let mut cost = alloc::vec![0u32; kind.len()];
    for i in 0..kind.len() {
        let s = slot[i] as usize;
        let sum = |span: Span, cost: &[u32]| {
            children[span.range()].iter().fold(0u32, |acc, &c| {
                debug_assert!((c as usize) < i, "children precede their parent");
                acc.saturating_add(cost[c as usize])
            })
        };
        cost[i] = match kind[i] {
            NodeKind::Task => 1,
            NodeKind::Sequence => sum(seqs[s].children, &cost),
            NodeKind::Parallel => sum(pars[s].branches, &cost),
            NodeKind::Loop => cost[loops[s].body as usize].saturating_mul(loops[s].max_iterations),
            NodeKind::Switch => {
                let b = &switches[s];
                children[b.arms.range()]
                    .iter()
                    .chain(b.default.iter())
                    .map(|&c| cost[c as usize])
                    .max()
                    .unwrap_or(0)
            }
            NodeKind::Map => cost[maps[s].body as usize].saturating_mul(maps[s].max_items),
        };
    }
    cost.into_boxed_slice()
}
