//! The single-thread interpreter: runs any frozen graph on the calling thread.
//!
//! A [`Runner`] owns the scratch a run needs (the per-run [`RunArena`] its step records live
//! in, reset at the start of each run; spare context copies,
//! the map item stack, the step cache, the seeded generator) and reuses it run after run, so
//! after warm-up a run of plain tasks allocates nothing. Parallel branches and map items run
//! one after another, in declaration order.
//!
//! Task policies apply in the contract's order on every execution: circuit breaker, cache,
//! usage reservation, attempts (pre-processors, step, post-processors, validators; a failed
//! attempt's context writes discarded; its error is the next attempt's feedback; backoff
//! between attempts reported to [`Clock::wait`]), classification by
//! the recovery table, fallback, and finally the step record (and the breaker learns the
//! outcome). Tasks that the build-time analysis found *plain* skip all of it.
//!
//! A sequence whose children are all tasks is frozen as a *task run* and runs in
//! *stretches*: one loop runs consecutive plain tasks and *lean* policy tasks (no cache, no
//! usage estimate) with one step context, one clock read per task and the record cursor in
//! locals; a lean task's first attempt (breaker permit, processors, step, validators) runs in
//! the loop, and only a failure or an open breaker leaves it for the recovery path. Other
//! policy tasks run alone through the full pipeline. Both paths give the same results
//! (`lean_and_full_paths_give_the_same_results`).
//!
//! Policies are `crate::policy`'s: the atomic [`Breaker`](crate::policy::Breaker) (a cache hit
//! or a usage denial gives its permit back with `release`, never an outcome), the retry state
//! machine and recovery table, and the [`UsageBudget`]: a parallel node or a map lends each
//! branch (item) an equal share of what is left (`split`), and what a branch does not use
//! comes back when it ends (`merge`), so branches cannot together overspend whatever order a
//! concurrent runtime runs them in. A run without a budget skips the splitting. Usage a
//! step reports is charged when it ends; a charge past the budget (the run's, or a branch's
//! share) aborts the run right after that step ([`ErrorKind::UsageOverrun`]). Cacheable
//! tasks go through a [`FixedCache`] of the runner keyed by [`CacheKey`](crate::cache::CacheKey).
//!
//! Every run returns exact [`Counters`] (never sampled). A runner made
//! [`with_telemetry`](Runner::with_telemetry) also feeds a [`Telemetry`]: per task execution, a
//! sampling decision, a latency in its histogram and events into its sink; a runner without
//! it runs step loops that have no telemetry code at all.
//!
//! A failure travels up as an eight-byte `Stop` (node, class, abort), so a small payload's
//! `Result` comes back in registers; its reason waits in the runner's error slot.
//!
//! Recursion: the interpreter recurses once per nesting level, which building bounds at
//! [`MAX_DEPTH`](crate::graph::MAX_DEPTH), plus at most
//! [`MAX_FALLBACK_CHAIN`](crate::graph::MAX_FALLBACK_CHAIN) fallback hops inside a task.
//!
//! The paths a task can take, why each exists and what each saves (in iai instructions) are in
//! `README.md` beside this file, with a map of the files.
//!
//! Architecture invariant: the interpreter allocates nothing per run once its buffers have
//! grown to the graph's needs (the record arena is presized to `RunnerConfig::max_records`
//! and its reset is O(1); spares and the item stack keep their memory).
//!
//! [`RunArena`]: crate::arena::RunArena
//! [`Clock::wait`]: crate::graph::Clock::wait
//! [`UsageBudget`]: crate::policy::UsageBudget
//! [`FixedCache`]: crate::cache::FixedCache
//! [`Counters`]: crate::telemetry::Counters

mod config;
mod exec;
mod host;
mod records;
mod results;
mod runner;
mod scratch;
mod telemetry;

pub use config::{RunOptions, RunnerConfig};
pub use host::{Fan, Host, Inline, Lane, SharedCache};
pub use records::{LoopExit, StepRecord};
pub use results::{ErrorKind, Outcome, RunError, RunResult};
pub use runner::Runner;
pub use telemetry::Telemetry;

#[cfg(all(test, not(loom)))]
mod tests;
