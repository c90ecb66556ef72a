//! The one swap point for the synchronization primitives of the lock-free parts.
//!
//! [`queue`](crate::queue) and [`admission`](crate::admission) take their atomics, their
//! `Mutex` and their yield from here. Under `cfg(loom)` they are loom's, so the loom models
//! explore every interleaving of the real code (the core's rings switch to loom's atomics under
//! the same flag); otherwise they are `std`'s. `flujo_core::sync` is crate-private, hence this
//! small copy.
#![allow(unused_imports)]

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Gives up the CPU while waiting on another thread; under loom, lets the model schedule
/// another thread (a spin loop without it never ends in a model).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
