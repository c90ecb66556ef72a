//! The one swap point for synchronization primitives.
//!
//! Every atomic, `UnsafeCell` and `Arc` in the core comes through this module. Under
//! `cfg(loom)` they are loom's, so the loom models explore every interleaving of the real code;
//! otherwise they are `core`'s and `alloc`'s. Nothing else in the crate imports
//! `core::sync::atomic` directly.
//!
//! `UnsafeCell` follows loom's API (`with` / `with_mut` taking a closure over a raw pointer),
//! so the same code compiles against both.
#![allow(unused_imports, dead_code)]

#[cfg(not(loom))]
pub(crate) use alloc::sync::Arc;
#[cfg(all(not(loom), target_has_atomic = "64"))]
pub(crate) use core::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Process-wide counters in `static`s, which loom cannot model (its atomics are not `const`
/// constructible, and a static outlives every model). Use only for values no model reasons
/// about, such as id sources; always `core`'s type.
pub(crate) mod statics {
    pub(crate) use core::sync::atomic::{AtomicU32, Ordering};
}

/// `core::cell::UnsafeCell` behind loom's closure-based API.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline(always)]
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// Consumes the cell, returning the contents.
    #[inline(always)]
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

/// Spins politely; under loom, yields so the model can schedule another thread.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Pads and aligns a value to a cache line (128 bytes covers adjacent-line prefetch on x86_64
/// and the 128-byte lines of some aarch64 parts), so two hot indices never share a line.
#[derive(Debug, Default)]
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    repr(align(64))
)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
