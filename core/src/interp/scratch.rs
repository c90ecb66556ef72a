//! The scratch a run needs, owned by a runner and reused run after run.

use alloc::vec::Vec;

use super::host::Lane;
use super::records::StepRecord;
use super::results::ErrorKind;
use crate::cache::FixedCache;
use crate::context::Spares;
use crate::graph::CancelFlag;
use crate::policy::{Rng, UsageBudget};

/// The scratch a run needs, reused run after run.
#[derive(Debug)]
pub(crate) struct Scratch<P, C> {
    pub(crate) spares: Spares<C>,
    pub(crate) items: Vec<P>,
    /// The step-output cache (`None` when `RunnerConfig::cache_capacity` is 0).
    pub(crate) cache: Option<FixedCache<P>>,
    pub(crate) rng: Rng,
    /// Usage sub-budgets of the parallel branches and map items under way (a stack: nested
    /// fan-outs push above and pop theirs before returning).
    pub(crate) shares: Vec<UsageBudget>,
    /// The reason of the last [`Stop`] made.
    pub(crate) error: Option<ErrorKind>,
    /// Record buffers of forked branches, kept for reuse.
    pub(crate) record_bufs: Vec<Vec<StepRecord>>,
    /// Branch lists and cancel flags of forked fan-outs, kept for reuse (a stack: nested
    /// fan-outs take their own).
    pub(crate) fan_bufs: Vec<Vec<Lane<P, C>>>,
    pub(crate) flag_bufs: Vec<Vec<CancelFlag>>,
    /// `RunnerConfig::fast_paths`.
    pub(crate) fast_paths: bool,
    /// `RunnerConfig::copy_on_write`.
    pub(crate) copy_on_write: bool,
    /// `RunnerConfig::breakers`.
    pub(crate) breakers: bool,
}
