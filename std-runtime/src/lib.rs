//! flujo-runtime: the std layer of flujo-rs.
//!
//! It supplies what the `no_std` core must not touch (threads, clocks, panic capture) and adds
//! no semantics of its own. For now it offers the pieces the foundation needs: a per-thread
//! pool handle cache on top of [`flujo_core::pool`]. The executor arrives with the runtime issue.
#![deny(missing_docs)]

pub use flujo_core as core;

pub mod cache;
