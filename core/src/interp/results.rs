//! What a run returns: how it ended ([`Outcome`], [`RunResult`]), why it failed
//! ([`ErrorKind`], [`RunError`]), and the interpreter's eight-byte internal failure (`Stop`).

use core::fmt;

use super::records::StepRecord;
use crate::graph::{NodeId, StepError};
use crate::policy::{ErrorClass, Usage, UsageDenied};
use crate::telemetry::Counters;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The root produced an output.
    Succeeded,
    /// A step (or a composite rule) failed and nothing recovered it.
    Failed,
    /// The run was stopped: usage denied or overrun, cancelled, or its deadline passed.
    /// Results so far (records, context, usage) are returned.
    Aborted,
}

/// Why a run failed or aborted. New reasons may come (`#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A step's error that recovery did not absorb (its class says which kind).
    Step(StepError),
    /// The usage budget denied a step's estimate.
    UsageDenied {
        /// The step's estimate.
        requested: Usage,
        /// The limit in the way, its value and what the run would have reached.
        denied: UsageDenied,
    },
    /// The usage this step reported took the budget it ran under (the run's, or in a fan-out
    /// its branch's share) past a limit. The step itself ended (its record says how, its
    /// context writes and its usage stand); the run aborts after it, without its output.
    UsageOverrun {
        /// The usage the step reported.
        reported: Usage,
        /// The limit passed, its value and the usage reached (`wanted`).
        over: UsageDenied,
    },
    /// The run was cancelled before this step.
    Cancelled,
    /// The run's deadline passed before this step.
    DeadlineExceeded,
    /// No arm of a switch matched and it has no default.
    NoArmMatched {
        /// The selector's key.
        key: u64,
    },
    /// A map's split produced more items than the map's bound.
    TooManyItems {
        /// The bound.
        limit: u32,
    },
    /// Two branches changed the same context part under error-on-conflict.
    MergeConflict {
        /// The part.
        part: &'static str,
        /// The later of the two branches (0-based position).
        branch: u32,
    },
    /// A user merge failed.
    MergeFailed(StepError),
    /// Every branch of a parallel node with the ignore strategy failed.
    AllBranchesFailed {
        /// Number of branches.
        branches: u32,
    },
}

impl ErrorKind {
    /// The error class.
    pub fn class(&self) -> ErrorClass {
        match self {
            ErrorKind::Step(e) | ErrorKind::MergeFailed(e) => e.class(),
            ErrorKind::UsageDenied { .. } | ErrorKind::UsageOverrun { .. } => ErrorClass::Usage,
            ErrorKind::Cancelled => ErrorClass::Cancelled,
            ErrorKind::DeadlineExceeded => ErrorClass::Timeout,
            ErrorKind::NoArmMatched { .. }
            | ErrorKind::TooManyItems { .. }
            | ErrorKind::MergeConflict { .. }
            | ErrorKind::AllBranchesFailed { .. } => ErrorClass::Permanent,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Step(e) => write!(f, "{e}"),
            ErrorKind::UsageDenied { requested, denied } => {
                write!(f, "estimate {requested:?} denied: {denied}")
            }
            ErrorKind::UsageOverrun { reported, over } => write!(
                f,
                "reported usage {reported:?} took the budget past {} of {}: usage reached {}",
                over.limit.as_str(),
                over.max,
                over.wanted
            ),
            ErrorKind::Cancelled => f.write_str("run cancelled"),
            ErrorKind::DeadlineExceeded => f.write_str("run deadline passed"),
            ErrorKind::NoArmMatched { key } => write!(f, "no arm for key {key} and no default arm"),
            ErrorKind::TooManyItems { limit } => {
                write!(f, "split produced more than {limit} items")
            }
            ErrorKind::MergeConflict { part, branch } => {
                write!(
                    f,
                    "context part `{part}` changed by branch {branch} and an earlier branch"
                )
            }
            ErrorKind::MergeFailed(e) => write!(f, "user merge failed: {e}"),
            ErrorKind::AllBranchesFailed { branches } => {
                write!(f, "all {branches} branches failed")
            }
        }
    }
}

impl core::error::Error for ErrorKind {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ErrorKind::Step(e) | ErrorKind::MergeFailed(e) => Some(e),
            ErrorKind::UsageDenied { denied, .. } => Some(denied),
            ErrorKind::UsageOverrun { over, .. } => Some(over),
            _ => None,
        }
    }
}

/// A run's error: the step (node) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError<'r> {
    /// The node that failed.
    pub node: NodeId,
    /// Its name.
    pub step: &'r str,
    /// Why.
    pub kind: ErrorKind,
}

impl core::error::Error for RunError<'_> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl fmt::Display for RunError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step `{}` (node {}): {}",
            self.step, self.node.0, self.kind
        )
    }
}

/// The interpreter's internal failure: the node, the error class, and whether it aborts the
/// run. Eight bytes, so a `Result<P, Stop>` of a small payload comes back in registers; the
/// full reason ([`ErrorKind`]) waits in the runner's error slot (`Scratch::error`), written
/// when the stop is made. The stop a run ends with is always the last one made: a failure is
/// either returned at once or dropped for good (an ignored branch) before another is made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop {
    pub(crate) node: u32,
    pub(crate) class: ErrorClass,
    pub(crate) abort: bool,
}

/// What a run returns. Records borrow the runner's arena (valid until its next run, which
/// resets it).
#[derive(Debug)]
pub struct RunResult<'r, P, C> {
    /// The root's output, when the run succeeded.
    pub output: Option<P>,
    /// How the run ended.
    pub outcome: Outcome,
    /// The error, when it did not succeed.
    pub error: Option<RunError<'r>>,
    /// The final context (writes of failed attempts and failed branches excluded).
    pub context: C,
    /// One record per task execution and per loop, in the order they ended.
    pub records: &'r [StepRecord],
    /// Records that did not fit the buffer (`RunnerConfig::max_records`), counted exactly.
    pub records_dropped: u32,
    /// Usage reported by every step of the run.
    pub usage: Usage,
    /// Exact counts of what the run's tasks did (never sampled). Every task record is one
    /// step run and one outcome: `steps_run == succeeded + failed + skipped + aborted`.
    pub counters: Counters,
}
