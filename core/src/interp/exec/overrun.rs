//! Usage overruns: a step whose *reported* usage takes the budget it runs under past a limit.
//!
//! A reservation is checked before the step runs (a denial, `Exec::usage_denied`); what a
//! step reports is known only once it has run, so it is charged afterwards, and a charge
//! that goes past a limit aborts the run right after that step, before any later step runs:
//! the step's record says how the step itself ended (a success stays a success: its context
//! writes and its usage stand, a cacheable output is cached, its breaker learns a success),
//! the run returns no output, and its error is [`ErrorKind::UsageOverrun`], class usage
//! (never retried, no fallback), naming the step, the limit and the usage reached.
//! [`Counter::UsageOverruns`] counts it. Inside a fan-out the budget is the branch's share,
//! as for reservations, so the outcome does not depend on the order the branches run in.
//!
//! A run without a budget never overruns (`Exec::limited` is false), and a step that reports
//! no usage is never charged: both cost one test of a value already in a register.

use super::Exec;
use crate::context::{Context, Frame};
use crate::graph::Clock;
use crate::interp::host::Host;
use crate::interp::results::{ErrorKind, Stop};
use crate::policy::Usage;
use crate::telemetry::{Counter, EventSink};

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// Whether the step that just reported `reported` took the run's budget past a limit.
    /// Every overrun aborts the run at once, so an exceeded budget here is this step's doing.
    #[inline(always)]
    pub(super) fn overran(&self, reported: Usage) -> bool {
        reported != Usage::ZERO && self.limited && self.budget.exceeded().is_some()
    }

    /// The abort of an overrun by `node`, whose record is written.
    #[cold]
    #[inline(never)]
    pub(super) fn overrun(&mut self, node: u32, reported: Usage) -> Stop {
        self.counters.increment(Counter::UsageOverruns);
        let over = self
            .budget
            .overrun()
            .expect("an exceeded budget names its limit");
        debug_assert!(over.wanted > over.max, "an overrun is past its limit");
        self.fail(node, ErrorKind::UsageOverrun { reported, over }, true)
    }

    /// The abort of an overrun by a task of the stretch loop that succeeded: its context
    /// writes (`written`) are committed first, as they would have been.
    #[cold]
    #[inline(never)]
    pub(super) fn overrun_after(
        &mut self,
        node: u32,
        reported: Usage,
        written: Option<C>,
        frame: &mut Frame<'_, C>,
    ) -> Stop {
        if let Some(w) = written {
            frame.commit(w, &mut self.s.spares);
        }
        self.overrun(node, reported)
    }

    /// A task's result once its record is written: an overrun makes it the run's abort (an
    /// abort already under way stands).
    #[inline(always)]
    pub(super) fn or_overrun<T>(
        &mut self,
        node: u32,
        reported: Usage,
        result: Result<T, Stop>,
    ) -> Result<T, Stop> {
        if !self.overran(reported) {
            return result;
        }
        match result {
            Err(stop) if stop.abort => Err(stop),
            _ => Err(self.overrun(node, reported)),
        }
    }
}
