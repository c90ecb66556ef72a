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

/// Moves the calling thread off CPU `cpu`: narrows its affinity to the CPUs it may run on
/// but `cpu`, which makes the kernel move it at once, then restores the affinity it had.
/// `false`, with nothing changed, when it may run on no other CPU, when the kernel refuses,
/// and elsewhere than Linux, and under loom and Miri. Two system calls when it moves (a few
/// microseconds), one when it cannot.
pub(crate) fn move_off(cpu: u32) -> bool {
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    {
        const SIZE: usize = core::mem::size_of::<libc::cpu_set_t>();
        let Ok(cpu) = usize::try_from(cpu) else {
            return false;
        };
        if cpu >= SIZE * 8 {
            return false;
        }
        // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is a valid value.
        let mut allowed: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: `allowed` is a live `cpu_set_t` of `SIZE` bytes, which the call fills.
        if unsafe { libc::sched_getaffinity(0, SIZE, &mut allowed) } != 0 {
            return false;
        }
        // SAFETY: `cpu < SIZE * 8`, within the set; `CPU_ISSET` and `CPU_COUNT` only read it.
        if !unsafe { libc::CPU_ISSET(cpu, &allowed) } || unsafe { libc::CPU_COUNT(&allowed) } < 2 {
            return false;
        }
        let mut others = allowed;
        // SAFETY: `cpu < SIZE * 8`, within the set `others`, which this writes alone.
        unsafe { libc::CPU_CLR(cpu, &mut others) };
        // SAFETY: `others` is a live `cpu_set_t` of `SIZE` bytes, which the call only reads.
        if unsafe { libc::sched_setaffinity(0, SIZE, &others) } != 0 {
            return false;
        }
        // The thread runs on another CPU now; it may come back later, as the kernel sees fit.
        // SAFETY: as above, for `allowed`, the affinity the thread had.
        let restored = unsafe { libc::sched_setaffinity(0, SIZE, &allowed) } == 0;
        debug_assert!(restored, "the thread's affinity is restored");
        true
    }
    #[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
    {
        let _ = cpu;
        false
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

/// The calling thread's CPU affinity, for the tests that place threads (Linux; built under
/// Miri too, which runs none of them).
#[cfg(all(test, target_os = "linux", not(loom)))]
pub(crate) mod affinity {
    use libc::cpu_set_t;

    const SIZE: usize = core::mem::size_of::<cpu_set_t>();

    /// The CPUs the calling thread may run on.
    pub(crate) fn get() -> cpu_set_t {
        // SAFETY: all zeroes is a valid `cpu_set_t` (a bit array).
        let mut set: cpu_set_t = unsafe { core::mem::zeroed() };
        // SAFETY: `set` is a live `cpu_set_t` of `SIZE` bytes, which the call fills.
        assert_eq!(unsafe { libc::sched_getaffinity(0, SIZE, &mut set) }, 0);
        set
    }

    /// Lets the calling thread (and the threads it spawns later) run on `set` only.
    pub(crate) fn set(set: &cpu_set_t) {
        // SAFETY: `set` is a live `cpu_set_t` of `SIZE` bytes, which the call only reads.
        assert_eq!(unsafe { libc::sched_setaffinity(0, SIZE, set) }, 0);
    }

    /// The set of `cpu` alone.
    pub(crate) fn only(cpu: u32) -> cpu_set_t {
        // SAFETY: all zeroes is a valid `cpu_set_t`.
        let mut set: cpu_set_t = unsafe { core::mem::zeroed() };
        let cpu = usize::try_from(cpu).expect("a CPU number");
        assert!(cpu < SIZE * 8, "CPU {cpu} out of a cpu_set_t");
        // SAFETY: `cpu` is within the set, which this frame owns.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        set
    }

    /// The CPUs in `set`.
    pub(crate) fn count(set: &cpu_set_t) -> usize {
        // SAFETY: `CPU_COUNT` only reads the set.
        usize::try_from(unsafe { libc::CPU_COUNT(set) }).expect("a count")
    }

    /// Whether `a` and `b` hold the same CPUs.
    pub(crate) fn same(a: &cpu_set_t, b: &cpu_set_t) -> bool {
        // SAFETY: `CPU_EQUAL` only reads the two sets.
        unsafe { libc::CPU_EQUAL(a, b) }
    }
}

#[cfg(all(test, target_os = "linux", not(loom), not(miri)))]
mod tests {
    use super::{affinity, current_cpu, move_off, NO_CPU};

    #[test]
    fn a_thread_moved_off_its_cpu_runs_elsewhere_with_its_affinity_back() {
        // On a thread of its own, so that its pin ends with it.
        std::thread::spawn(|| {
            let all = affinity::get();
            let here = current_cpu();
            let moved = move_off(here);
            assert_eq!(moved, affinity::count(&all) >= 2, "moves when it may");
            if moved {
                // The kernel moved it before the call returned (it may move it back later,
                // so this is read at once).
                assert_ne!(current_cpu(), here);
            }
            assert!(affinity::same(&affinity::get(), &all), "affinity restored");
            // Pinned to one CPU, or asked about no CPU: nothing changes.
            let pin = affinity::only(current_cpu());
            affinity::set(&pin);
            assert!(!move_off(current_cpu()));
            assert!(!move_off(NO_CPU));
            assert!(affinity::same(&affinity::get(), &pin), "still pinned");
        })
        .join()
        .unwrap();
    }
}
