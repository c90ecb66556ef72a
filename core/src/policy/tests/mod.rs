//! Tests of the task policies: table-driven state machines with an injected clock, property
//! programs and std-thread smoke tests (the breaker's loom models are in `policy/loom.rs`).

#[cfg(not(loom))]
mod breaker;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod retry;
#[cfg(not(loom))]
mod rng;
#[cfg(not(loom))]
mod usage;
