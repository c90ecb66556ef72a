//! Build-time validation errors.

use alloc::string::String;
use core::fmt;

/// Which build rule a graph broke. New rules may come (`#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphRule {
    /// A sequence has no children.
    EmptySequence,
    /// A parallel node has no branches.
    EmptyParallel,
    /// A switch node has no arms.
    EmptySwitch,
    /// Two arms of a switch node have the same key.
    DuplicateArm {
        /// The repeated key.
        key: u64,
    },
    /// A loop has no iteration bound (or a bound of 0).
    LoopWithoutBound,
    /// A map has no item bound (or a bound of 0).
    MapWithoutBound,
    /// A parallel or map node has a width of 0.
    ZeroWidth,
    /// A fallback points at a node that is not a task.
    FallbackNotTask,
    /// Following fallbacks from this task comes back to it.
    FallbackCycle,
    /// The fallback chain from this task is longer than [`MAX_FALLBACK_CHAIN`](super::MAX_FALLBACK_CHAIN).
    FallbackChainTooLong {
        /// The chain's length.
        length: usize,
    },
    /// A cacheable task declares context writes (its output would not be a function of its
    /// input alone, and a cache hit would skip the writes).
    CacheableWritesContext,
    /// The recovery table can skip, but the task has no default output.
    SkipWithoutDefault,
    /// A handle from another builder (or not yet created) was used.
    ForeignHandle,
    /// Nodes nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH) (the interpreter recurses
    /// once per level, so the bound keeps its stack use bounded).
    TooDeep {
        /// The most levels a graph may nest.
        limit: usize,
    },
    /// More nodes than the node index type holds.
    TooManyNodes {
        /// The most nodes a graph can hold.
        limit: usize,
    },
    /// Two branches of a typed join give the same type, so its reducer could not tell
    /// which fold an output is for (see `TypedBuilder::join`).
    AmbiguousJoin,
}

/// A graph that failed validation: the node and the rule it broke.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, GraphRule};
/// let err = Graph::<u64, ()>::build(|b| b.sequence("empty", &[])).unwrap_err();
/// assert_eq!(err.rule, GraphRule::EmptySequence);
/// assert_eq!(err.node, "empty");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    /// Name of the offending node.
    pub node: String,
    /// The rule it broke.
    pub rule: GraphRule,
}

impl core::error::Error for GraphError {}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}`: ", self.node)?;
        match &self.rule {
            GraphRule::EmptySequence => f.write_str("a sequence needs at least one child"),
            GraphRule::EmptyParallel => f.write_str("a parallel node needs at least one branch"),
            GraphRule::EmptySwitch => f.write_str("a switch node needs at least one arm"),
            GraphRule::DuplicateArm { key } => write!(f, "two arms have key {key}"),
            GraphRule::LoopWithoutBound => {
                f.write_str("a loop needs an iteration bound of at least 1")
            }
            GraphRule::MapWithoutBound => f.write_str("a map needs an item bound of at least 1"),
            GraphRule::ZeroWidth => f.write_str("fan-out width must be at least 1"),
            GraphRule::FallbackNotTask => f.write_str("a fallback must be a task"),
            GraphRule::FallbackCycle => f.write_str("its fallback chain is a cycle"),
            GraphRule::FallbackChainTooLong { length } => {
                write!(
                    f,
                    "fallback chain of {length} exceeds {}",
                    super::MAX_FALLBACK_CHAIN
                )
            }
            GraphRule::CacheableWritesContext => {
                f.write_str("a cacheable task must not write the context")
            }
            GraphRule::SkipWithoutDefault => {
                f.write_str("the recovery table can skip but the task has no default output")
            }
            GraphRule::ForeignHandle => f.write_str("uses a handle from another builder"),
            GraphRule::TooDeep { limit } => write!(f, "nested deeper than {limit} levels"),
            GraphRule::TooManyNodes { limit } => write!(f, "more than {limit} nodes"),
            GraphRule::AmbiguousJoin => {
                f.write_str("two folded branches of a join give the same type")
            }
        }
    }
}
