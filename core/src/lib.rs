//! flujo-core: the `no_std` heart of flujo-rs.
//!
//! A step-graph execution engine's core: lock-free ring buffers and per-run arenas (this
//! crate's foundation), on which the arena-built step graphs,
//! task policies and the single-thread interpreter stand. The core never reads a clock,
//! spawns a thread or touches the OS: time comes in as ticks from the caller.
//!
//! See `docs/architecture.md` for the map of the crate.
#![no_std]
#![deny(missing_docs, missing_debug_implementations)]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]
// Under loom the lock-free structures are built for their models; what only a runner uses is
// unused there.
#![cfg_attr(loom, allow(dead_code))]

extern crate alloc;
#[cfg(any(test, loom))]
extern crate std;

pub mod arena;
pub mod cache;
#[cfg(feature = "check")]
pub mod check;
pub mod context;
pub mod graph;
pub mod interp;
pub mod policy;
pub mod ring;
mod step_error;
mod sync;
pub mod telemetry;

/// The concepts guide (`docs/concepts.md`); its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/concepts.md")]
pub struct ConceptsGuide;

/// The README (its first example is a typed pipeline); its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;
