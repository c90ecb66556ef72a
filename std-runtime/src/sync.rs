//! The one swap point for the runtime's synchronization primitives.
//!
//! The queues, the admission limit, the tickets, the result cache and the dispatchers take
//! their atomics, locks and yield from here. Under `cfg(loom)` they are loom's, so the loom
//! models explore every interleaving of the real code (the core's rings switch to loom's
//! atomics under the same flag); otherwise they are `std`'s. `flujo_core::sync` is
//! crate-private, hence this small copy.
#![allow(unused_imports)]

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

/// Gives up the CPU while waiting on another thread; under loom, lets the model schedule
/// another thread (a spin loop without it never ends in a model).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// One turn of a bounded spin-wait: a CPU hint; under loom, a yield to the model's scheduler.
#[allow(dead_code)]
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// What [`current_cpu`] returns when it cannot tell.
pub(crate) const NO_CPU: u32 = u32::MAX;

/// The CPU the calling thread runs on now, or [`NO_CPU`] (not Linux, an error, or under
/// loom or Miri): a hint only, since the thread may move at any moment. A waiter spins for
/// another thread only while they run on different CPUs: on one CPU, the thread it waits for
/// cannot run until the waiter gives the CPU up (the kernel sometimes wakes a pool thread on
/// its submitter's CPU and leaves them together for a while). glibc answers from the
/// thread's `rseq` area or the vDSO, without a system call.
#[inline]
pub(crate) fn current_cpu() -> u32 {
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
        let cpu = unsafe { libc::sched_getcpu() };
        u32::try_from(cpu).unwrap_or(NO_CPU)
    }
    #[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
    {
        NO_CPU
    }
}

/// Whether `a` and `b` are one known CPU.
#[inline]
pub(crate) fn same_cpu(a: u32, b: u32) -> bool {
    a == b && a != NO_CPU
}

/// `core::cell::UnsafeCell` behind loom's closure-based API (loom's own under `cfg(loom)`), for
/// the ticket's value slot.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

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

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// `T` alone on its own 128 bytes (two cache lines: x86's adjacent-line prefetch pairs
/// them), so that a value written by one thread does not share a line with values written
/// by another.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
