//! flujo-runtime: the std layer of flujo-rs, an [`Executor`] that runs `flujo-core` graphs on
//! a rayon pool.
//!
//! It supplies what the `no_std` core must not touch (threads, clocks, panic capture) and adds
//! no semantics of its own: a graph gives the same results here as under the core interpreter.
//! A run executes on the calling thread ([`Executor::run`]), forking fan-outs above the inline
//! cutoff onto the pool, or is submitted ([`Executor::submit`]) through an adaptive admission
//! limit and three priority queues, and comes back through a [`ticket::Ticket`]. What the runs
//! did is kept per worker and read as a [`report::Report`] (exact counts, sampled latencies) or
//! a Chrome trace ([`Executor::write_trace`]). The knobs are in [`config::OptimizationConfig`].
//! See `docs/runtime.md` for how it works.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//!
//! use flujo_core::graph::{Graph, ParallelOptions, StepCx, StepError, TaskConfig};
//! use flujo_core::interp::Outcome;
//! use flujo_runtime::config::OptimizationConfig;
//! use flujo_runtime::{Drain, Executor, Finished, Priority};
//!
//! let g = Graph::<u64, ()>::build(|b| {
//!     let fallback = b.task("half", |x, _| Ok(x / 2));
//!     let flaky = TaskConfig::new().fallback(fallback);
//!     let even = |x: u64, _: &mut StepCx<'_, ()>| match x % 2 {
//!         0 => Ok(x),
//!         _ => Err(StepError::permanent("odd")),
//!     };
//!     let a = b.task_with("a", even, flaky);
//!     let c = b.task("c", |x, _| Ok(x * 10));
//!     b.parallel("both", &[a, c], |x, y| x + y, ParallelOptions::new())
//! })
//! .unwrap();
//! let ex = Executor::new(OptimizationConfig::latency()).unwrap();
//!
//! // On this thread.
//! let done = ex.run(&g, 4, ()).unwrap();
//! assert_eq!((done.outcome, done.output), (Outcome::Succeeded, Some(4 + 40)));
//!
//! // Submitted: a refused submission gives its input back.
//! let g = Arc::new(g);
//! let ticket = match ex.submit(&g, 5, (), Priority::Normal) {
//!     Ok(ticket) => ticket,
//!     Err(back) => panic!("refused ({}), input {}", back.reason, back.input),
//! };
//! match ticket.wait().unwrap() {
//!     Finished::Ran(done) => assert_eq!(done.output, Some(5 / 2 + 50)), // the fallback ran
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(ex.shutdown(Drain::Finish).finished, 1);
//! let report = ex.report();
//! assert_eq!((report.runs.completed, report.runs.succeeded), (2, 2));
//! ```
#![deny(missing_docs)]
// Under loom only the models of the queues, the limiter, the cache and the dispatcher protocol
// are built (the rest of the executor is left out), so what only the executor uses is unused
// there.
#![cfg_attr(loom, allow(dead_code))]

/// The core crate, re-exported so that a host needs one dependency and the two can never
/// disagree on its version: `flujo_runtime::flujo_core::graph::GraphBuilder` is
/// `flujo_core::graph::GraphBuilder`. (Under its own name: `core` would shadow the language's
/// `core` crate in a `use flujo_runtime::*` scope.)
pub use flujo_core;
// Not under loom: the pool's protocol is a plain Mutex + Condvar, tested by its unit tests.
#[cfg(not(loom))]
pub mod blocking;
pub mod breakers;
#[cfg(feature = "check")]
#[doc(hidden)] // the fuzz target's and the corpus replay's entry, not an API
pub mod check;
pub mod clock;
pub mod config;
// Not under loom: the core's `Arc` is loom's then, and the executor shares `Arc<Breaker>`s
// with it (the loom models cover the queues and the limiter only).
#[cfg(not(loom))]
mod exec;
// Under loom the executor is left out, but its dispatcher protocol is built, for its model.
#[cfg(loom)]
#[path = "exec/dispatch.rs"]
mod dispatch;
// And the selection table (the automatic cache bypass's), for its model.
#[cfg(loom)]
#[path = "exec/select.rs"]
mod select;
#[cfg(not(loom))]
pub use exec::{
    BuildError, Completed, Drain, Executor, ExecutorBuilder, Finished, Panicked, Rejected,
    RunFailure, RunSpec, ShutdownReport, ShutdownSpec, SubmitFuture, SubmitSpec, TryRunError,
    WAITERS_MAX,
};

/// Whether this build catches panics: `true` with `panic = "unwind"` (Rust's default), so a
/// panicking step is a failed step of class `Panic` and a panic outside a step ends its run
/// as `Panicked`, the executor staying healthy. A host built with `panic = "abort"` gets
/// `false`: nothing can catch a panic there, so any panic in a step, processor, validator,
/// reducer, splitter, selector or merge aborts the whole process. Such hosts should return
/// errors from their steps instead, and can check this at start-up (the demo prints it).
pub const PANICS_CAUGHT: bool = cfg!(panic = "unwind");
#[cfg(not(loom))]
mod lend;
#[cfg(all(feature = "prometheus", not(loom)))]
pub mod metrics;
// Built under loom too (the configuration and the report name its types); its store is a
// plain Mutex, tested by its unit tests, not a loom model.
pub mod monitor;
pub mod parts;
// Their short paths inside the crate (`crate::queue`, ...); under loom only the queue's and
// the limiter's models are built.
#[cfg_attr(loom, allow(unused_imports))]
use parts::{admission, cache, queue};
mod priority;
pub use priority::Priority;
mod refusal;
pub use refusal::Refusal;
pub mod report;
// The executor's waiting submissions; built under loom too, for its model.
#[cfg_attr(loom, allow(dead_code))]
mod room;
mod sync;
pub mod ticket;
pub mod trace;
// `tracing` spans and events (feature `tracing`).
#[cfg(all(feature = "tracing", not(loom)))]
mod tracing_spans;

/// The runtime guide (`docs/runtime.md`); its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/runtime.md")]
pub struct RuntimeGuide;

/// The operations guide (`docs/operations.md`); its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/operations.md")]
pub struct OperationsGuide;
