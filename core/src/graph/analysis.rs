//! Step analysis: what each task needs, computed once at build time so the interpreter takes
//! a fast path for plain tasks.

use alloc::vec::Vec;
use core::fmt;

use super::{FailureStrategy, NodeKind, ParNode, PureOp, Span, NO_POLICY};

/// What a task needs at run time, as a bit set computed when the graph is frozen.
///
/// A task with none of the [`StepFlags::POLICIES`] bits is *plain*: the interpreter calls it
/// without looking at any policy (no input clone, no retry state, no breaker, cache or budget).
///
/// # Examples
///
/// ```
/// use flujo_core::graph::StepFlags;
/// let f = StepFlags::READS_CONTEXT | StepFlags::RETRY;
/// assert!(f.contains(StepFlags::RETRY));
/// assert!(!f.is_plain());
/// assert!(StepFlags::READS_CONTEXT.is_plain());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StepFlags(u16);

impl StepFlags {
    /// No needs.
    pub const EMPTY: StepFlags = StepFlags(0);
    /// The task may read the context.
    pub const READS_CONTEXT: StepFlags = StepFlags(1 << 0);
    /// The task may write the context (declared; undeclared writes are refused).
    pub const WRITES_CONTEXT: StepFlags = StepFlags(1 << 1);
    /// Pre-processors run before the step.
    pub const PRE_PROCESSORS: StepFlags = StepFlags(1 << 2);
    /// Post-processors run after the step.
    pub const POST_PROCESSORS: StepFlags = StepFlags(1 << 3);
    /// Validators check the output.
    pub const VALIDATORS: StepFlags = StepFlags(1 << 4);
    /// A fallback task exists.
    pub const FALLBACK: StepFlags = StepFlags(1 << 5);
    /// Outputs are cached.
    pub const CACHE: StepFlags = StepFlags(1 << 6);
    /// A circuit breaker guards the task.
    pub const BREAKER: StepFlags = StepFlags(1 << 7);
    /// More than one attempt is allowed.
    pub const RETRY: StepFlags = StepFlags(1 << 8);
    /// A usage estimate is reserved before running.
    pub const USAGE: StepFlags = StepFlags(1 << 9);
    /// The recovery table can skip with the default output.
    pub const SKIP: StepFlags = StepFlags(1 << 10);
    /// Each attempt has a timeout.
    pub const TIMEOUT: StepFlags = StepFlags(1 << 11);

    /// The policies that decide by the time (a breaker's open period and slow-call rule, an
    /// attempt's timeout, a cache entry's expiry): a task with one reads the clock even in a
    /// run whose clock measures no latencies (`Clock::measures_latency`).
    pub const TIMED: StepFlags = StepFlags(Self::CACHE.0 | Self::BREAKER.0 | Self::TIMEOUT.0);

    /// Every bit that takes a task off the fast path.
    pub const POLICIES: StepFlags = StepFlags(
        Self::PRE_PROCESSORS.0
            | Self::POST_PROCESSORS.0
            | Self::VALIDATORS.0
            | Self::FALLBACK.0
            | Self::CACHE.0
            | Self::BREAKER.0
            | Self::RETRY.0
            | Self::USAGE.0
            | Self::SKIP.0
            | Self::TIMEOUT.0,
    );

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: StepFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    #[inline]
    pub const fn intersects(self, other: StepFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the task takes the fast path (no policy bit set).
    #[inline]
    pub const fn is_plain(self) -> bool {
        !self.intersects(Self::POLICIES)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl core::ops::BitOr for StepFlags {
    type Output = StepFlags;
    fn bitor(self, rhs: StepFlags) -> StepFlags {
        StepFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for StepFlags {
    fn bitor_assign(&mut self, rhs: StepFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for StepFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 12] = [
            "READS_CONTEXT",
            "WRITES_CONTEXT",
            "PRE_PROCESSORS",
            "POST_PROCESSORS",
            "VALIDATORS",
            "FALLBACK",
            "CACHE",
            "BREAKER",
            "RETRY",
            "USAGE",
            "SKIP",
            "TIMEOUT",
        ];
        let mut list = f.debug_set();
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

/// Lays out the programs of the *pure fan-outs* (see [`PureOp`]): returns the ops and, per
/// parallel node (by slot), the span of its program.
///
/// Children come before their parents (a node is built from nodes that exist), so one pass
/// in index order decides every node's purity and program length before its parents'. The
/// programs are then laid out from the last node down, so an outermost pure fan-out is laid
/// out first and the pure fan-outs inside it take their spans inside its program. A node
/// shared by several parents (the graph is a DAG) is laid out once per use; the total is
/// kept under `2 * nodes + 64` ops (a tree needs at most `nodes`), and a fan-out that would
/// go over it has no program (it takes the general path, which is never wrong).
pub(crate) fn pure_programs<C>(
    kind: &[NodeKind],
    slot: &[u32],
    children: &[u32],
    pars: &[ParNode<C>],
    task_flags: &[StepFlags],
    task_policy: &[u32],
) -> (Vec<PureOp>, Vec<Option<Span>>) {
    let n = kind.len();
    // Program length (saturating) of each node that is pure, else `None`.
    let mut len: Vec<Option<u32>> = Vec::with_capacity(n);
    for i in 0..n {
        let s = slot[i] as usize;
        let l = match kind[i] {
            NodeKind::Task => (task_policy[s] == NO_POLICY
                && !task_flags[s].contains(StepFlags::WRITES_CONTEXT))
            .then_some(1),
            NodeKind::Parallel => children[pars[s].branches.range()]
                .iter()
                .try_fold(1u32, |acc, &c| Some(acc.saturating_add(len[c as usize]?))),
            _ => None,
        };
        len.push(l);
    }
    let budget = n.saturating_mul(2).saturating_add(64);
    let mut ops = Vec::new();
    let mut spans: Vec<Option<Span>> = alloc::vec![None; pars.len()];
    for i in (0..n).rev() {
        let s = slot[i] as usize;
        let Some(l) = len[i] else { continue };
        if kind[i] != NodeKind::Parallel || spans[s].is_some() {
            continue;
        }
        if ops.len().saturating_add(l as usize) > budget {
            continue;
        }
        lay_out(i as u32, kind, slot, children, pars, &mut ops, &mut spans);
    }
    (ops, spans)
}

/// Appends the program of pure node `node` to `ops`, giving each parallel node in it that
/// has no span yet this one.
fn lay_out<C>(
    node: u32,
    kind: &[NodeKind],
    slot: &[u32],
    children: &[u32],
    pars: &[ParNode<C>],
    ops: &mut Vec<PureOp>,
    spans: &mut [Option<Span>],
) {
    let s = slot[node as usize];
    if kind[node as usize] == NodeKind::Task {
        ops.push(PureOp::leaf(node, s));
        return;
    }
    let par = &pars[s as usize];
    let begin = ops.len();
    ops.push(PureOp::leaf(node, s)); // replaced below, once the length is known
    for &c in &children[par.branches.range()] {
        lay_out(c, kind, slot, children, pars, ops, spans);
    }
    let len = (ops.len() - begin) as u32;
    let propagate = par.failure == FailureStrategy::Propagate;
    ops[begin] = PureOp::fan(node, s, par.branches.len, propagate, len);
    let span = &mut spans[s as usize];
    if span.is_none() {
        *span = Some(Span {
            start: begin as u32,
            len,
        });
    }
}
