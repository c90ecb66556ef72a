//! flujo-runtime: the std layer of flujo-rs.
//!
//! It supplies what the `no_std` core must not touch (threads, clocks, panic capture) and adds
//! no semantics of its own. For now it offers the pieces the foundation needs: a per-thread
//! pool handle cache on top of [`flujo_core::pool`]. The executor arrives with the runtime issue.
#![deny(missing_docs)]

pub use flujo_core as core;
pub mod admission;
pub mod cache;
pub mod clock;
pub mod config;
mod exec;
pub use exec::{
    BuildError, Completed, Drain, Executor, Finished, Panicked, Priority, Refusal, Rejected,
    RunFailure, RunSpec, ShutdownReport,
};
pub mod queue;
pub mod report;
pub mod ticket;
pub mod trace;
