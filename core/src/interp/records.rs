//! Step records: what happened to one task execution or loop ([`StepRecord`]), and the
//! bounded per-run buffer the interpreter writes them into (`Records`).

use core::mem::MaybeUninit;
use core::slice;

use crate::arena::RunArena;
use crate::graph::NodeId;
use crate::policy::{ErrorClass, Usage};
use crate::telemetry::StepOutcome;

/// Why a loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    /// The exit predicate held.
    Predicate,
    /// The iteration bound was hit.
    Bound,
}

/// What happened to one task execution (or one loop), written when it ends.
///
/// Laid out (`repr(C)`) so that the record of a plain task that succeeded, written once per
/// step by the interpreter's fast path, is a few wide stores: the latency and the node
/// first, then the usage, then the constant rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct StepRecord {
    /// Ticks from its start to its end (fallback and backoff included).
    pub latency_ticks: u64,
    /// The task (or loop) node.
    pub node: NodeId,
    /// Attempts made (0 when it never ran: breaker open, cache hit, denied, stopped); for a
    /// loop, the iterations done.
    pub attempts: u32,
    /// Usage reported by its attempts.
    pub usage: Usage,
    /// Ticks of backoff between attempts.
    pub backoff_ticks: u64,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Whether the output came from the cache.
    pub cache_hit: bool,
    /// Whether the fallback ran.
    pub fallback_used: bool,
    /// Class of the last error met, if any.
    pub error_class: Option<ErrorClass>,
    /// For a loop: why it stopped.
    pub loop_exit: Option<LoopExit>,
}

impl StepRecord {
    /// The record of a plain task that succeeded in its one attempt.
    #[inline(always)]
    pub(crate) fn plain(node: u32, latency_ticks: u64, usage: Usage) -> Self {
        Self {
            node: NodeId(node),
            outcome: StepOutcome::Succeeded,
            attempts: 1,
            latency_ticks,
            backoff_ticks: 0,
            cache_hit: false,
            fallback_used: false,
            error_class: None,
            usage,
            loop_exit: None,
        }
    }

    #[inline(always)]
    pub(crate) fn new(node: u32) -> Self {
        Self {
            node: NodeId(node),
            outcome: StepOutcome::Succeeded,
            attempts: 0,
            latency_ticks: 0,
            backoff_ticks: 0,
            cache_hit: false,
            fallback_used: false,
            error_class: None,
            usage: Usage::ZERO,
            loop_exit: None,
        }
    }
}

/// The step records of one run: a bounded buffer in the runner's [`RunArena`] (taken
/// afresh after the arena's reset at the start of each run), counting what does not fit.
#[derive(Debug)]
pub(crate) struct Records<'a> {
    /// `..len` are this run's records (initialized); the rest are free slots.
    pub(crate) buf: &'a mut [MaybeUninit<StepRecord>],
    pub(crate) len: usize,
    pub(crate) dropped: u32,
}

impl<'a> Records<'a> {
    /// `max_records` slots from `arena` (presized by the runner, so this never calls the
    /// global allocator). Should the arena refuse (it cannot: its limit is exactly this
    /// request), the buffer is empty and every record is counted as dropped.
    pub(super) fn new(arena: &'a RunArena, max_records: usize) -> Self {
        let buf = arena
            .try_alloc_uninit_slice(max_records)
            .unwrap_or_default();
        Self {
            buf,
            len: 0,
            dropped: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, rec: StepRecord) {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                slot.write(rec);
                self.len += 1;
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    /// Accounts for `written` records put in the free slots after `len` (in order, each
    /// slot written) and `dropped` that did not fit.
    #[inline(always)]
    pub(crate) fn settle(&mut self, written: usize, dropped: u32) {
        self.len += written;
        debug_assert!(self.len <= self.buf.len());
        self.dropped = self.dropped.saturating_add(dropped);
    }

    pub(super) fn into_slice(self) -> &'a [StepRecord] {
        let (initialized, _free) = self.buf.split_at_mut(self.len);
        // SAFETY: `buf[..len]` are initialized: `len` grows only in `push` after a slot was
        // written, and in `settle` by the number of free slots the stretch loop wrote in
        // order; `MaybeUninit<StepRecord>` has the layout of `StepRecord`.
        unsafe { slice::from_raw_parts(initialized.as_ptr().cast::<StepRecord>(), self.len) }
    }
}
