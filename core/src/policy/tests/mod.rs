//! Tests of the task policies: table-driven state machines with an injected clock, property
//! programs, std-thread smoke tests, and (under `cfg(loom)`) the breaker's loom models.

#[cfg(not(loom))]
mod breaker;
#[cfg(not(loom))]
mod error;
#[cfg(loom)]
mod loom;
#[cfg(not(loom))]
mod retry;
#[cfg(not(loom))]
mod rng;
#[cfg(not(loom))]
mod usage;
