//! The per-thread side of the pool: a [`PoolHandle`] with its local cache, and the [`Pooled`]
//! guard that hands an object back to it.
//!
//! The fast paths (a get served by the local cache, a return into spare local room) touch only
//! the handle and its counter slot: no atomic read-modify-write, no fence. The slow paths move
//! batches between the local cache and the shared [`BatchStack`](super::stack::BatchStack) and
//! claim or release idle room (see `README.md` beside this file).

use super::stack::BATCH_CAPACITY;
use super::stats::{bump, Counters};
use super::{HandleLimitError, Shared};
use crate::sync::Arc;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use crossbeam_epoch::LocalHandle;

/// The most idle room a handle claims at once when its credit runs out. Small, so that a few
/// handles cannot hold the whole `max_idle` budget as unused credit; large enough that a
/// handle growing its cache pays one CAS per eight returns.
pub const CREDIT_CHUNK: usize = 8;

/// One thread's access to a [`Pool`](super::Pool): a small local cache of idle objects in front
/// of the pool's shared free list, and the thread's registration with the pool's epoch
/// collector.
///
/// Get objects with [`get`](Self::get); dropping the [`Pooled`] guard hands the object back to
/// this handle's cache. A handle is neither `Send` nor `Sync` (its epoch registration belongs
/// to the thread that made it): make one per thread. Dropping the handle (or calling
/// [`flush`](Self::flush)) moves its cached objects to the shared list and gives back its idle
/// room.
///
/// # Examples
///
/// ```
/// use flujo_core::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::default(), || [0u8; 64]).unwrap();
/// let handle = pool.handle().unwrap();
/// {
///     let mut buf = handle.get(); // a miss: the factory makes the object
///     buf[0] = 7;
/// } // the guard hands the object back to the handle's cache
/// let buf = handle.get(); // a hit: the same object again
/// assert_eq!(buf[0], 7); // (no reset hook was given)
/// drop(buf);
/// let stats = pool.stats();
/// assert_eq!((stats.hits, stats.misses, stats.idle), (1, 1, 1));
/// ```
///
/// A handle stays on its thread:
///
/// ```compile_fail
/// use flujo_core::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::default(), || 0u8).unwrap();
/// let handle = pool.handle().unwrap();
/// std::thread::spawn(move || drop(handle.get())); // error: `PoolHandle` is not `Send`
/// ```
pub struct PoolHandle<T> {
    /// The local cache: `cache[..len]` are owned idle objects (`Box::into_raw` pointers), the
    /// most recently returned last. `cache.len()` is the configured `local_capacity`.
    cache: Box<[Cell<*mut T>]>,
    /// Idle objects in the cache. Invariant: `len <= credit`.
    len: Cell<usize>,
    /// Idle room this handle has claimed from the pool's budget: its cached objects plus room
    /// for more returns without touching shared state. Invariant: `credit <= cache.len()`.
    credit: Cell<usize>,
    /// This handle's counters, in the pool's slot table (kept alive by `shared`).
    counters: NonNull<Counters>,
    /// Index of this handle's slot in the table.
    slot: usize,
    /// A copy of the pool's reset hook, so the hit path reads it from the handle.
    reset: Option<fn(&mut T)>,
    /// This thread's registration with the pool's collector (makes the handle `!Send`).
    epoch: LocalHandle,
    shared: Arc<Shared<T>>,
    /// The handle owns objects of type `T` (through raw pointers).
    _owns: PhantomData<Box<T>>,
}

impl<T> PoolHandle<T> {
    /// Registers a new handle with `shared`: takes a counter slot and an epoch registration.
    pub(super) fn new(shared: Arc<Shared<T>>) -> Result<Self, HandleLimitError> {
        let slot = shared.slots.acquire().ok_or(HandleLimitError {
            max_handles: shared.config.max_handles,
        })?;
        let counters = NonNull::from(shared.slots.counters(slot));
        let cache: Vec<Cell<*mut T>> = (0..shared.config.local_capacity)
            .map(|_| Cell::new(ptr::null_mut()))
            .collect();
        Ok(Self {
            cache: cache.into_boxed_slice(),
            len: Cell::new(0),
            credit: Cell::new(0),
            counters,
            slot,
            reset: shared.reset,
            epoch: shared.collector.register(),
            shared,
            _owns: PhantomData,
        })
    }

    /// Takes an object: from the local cache if it has one (a hit, reset hook applied), else a
    /// batch from the shared list (a hit), else a new one from the factory (a miss).
    ///
    /// The local-cache path is a few plain loads and stores: no atomic read-modify-write.
    #[inline]
    pub fn get(&self) -> Pooled<'_, T> {
        let len = self.len.get();
        if len > 0 {
            let len = len - 1;
            self.len.set(len);
            debug_assert!(len < self.cache.len());
            // SAFETY: `len < self.len <= credit <= cache.len()`, so the index is in bounds.
            let object = unsafe { self.cache.get_unchecked(len) }.get();
            self.hit(object)
        } else {
            self.get_slow()
        }
    }

    /// Moves every cached object to the shared list and gives back this handle's unused idle
    /// room, so other handles can use both. The statistics do not change.
    pub fn flush(&self) {
        let len = self.len.get();
        if len > 0 {
            for batch in self.cache[..len].chunks(BATCH_CAPACITY) {
                self.shared.stack.push(batch);
            }
        }
        self.len.set(0);
        // The flushed objects take their claimed room with them to the shared list; the rest of
        // the credit goes back to the budget.
        let spare = self.credit.get() - len;
        self.credit.set(0);
        self.shared.give_room(spare);
    }

    /// Idle objects in this handle's local cache.
    pub fn cached(&self) -> usize {
        self.len.get()
    }

    /// The pool this handle draws from.
    pub fn pool(&self) -> super::Pool<T> {
        super::Pool {
            shared: Arc::clone(&self.shared),
        }
    }

    #[inline(always)]
    fn counters(&self) -> &Counters {
        // SAFETY: `counters` points into `shared.slots`, which lives as long as `shared`, and
        // this handle owns that slot (only this handle writes it) until it drops.
        unsafe { self.counters.as_ref() }
    }

    /// Hands out an idle object: counts a hit, then applies the reset hook.
    #[inline(always)]
    fn hit(&self, object: *mut T) -> Pooled<'_, T> {
        bump(&self.counters().hits);
        // The guard exists before the hook runs: if the hook panics, the guard's drop still
        // hands the object back and the counts stay consistent.
        let mut guard = Pooled::new(object, self);
        if let Some(reset) = self.reset {
            reset(&mut guard);
        }
        guard
    }

    /// The local cache is empty: take a batch from the shared list, or make a new object.
    #[cold]
    #[inline(never)]
    fn get_slow(&self) -> Pooled<'_, T> {
        debug_assert_eq!(self.len.get(), 0);
        let taken = {
            let guard = self.epoch.pin();
            self.shared.stack.pop(&self.cache, &guard)
        };
        if taken > 0 {
            // The batch brings the room it held on the shared list. Keep as credit the larger
            // of the old credit (all unused: the cache was empty) and the batch, and give the
            // rest back, so a refill never grows a handle's claim beyond what it holds.
            let credit = self.credit.get();
            let kept = credit.max(taken);
            debug_assert!(kept <= self.cache.len());
            self.credit.set(kept);
            self.shared.give_room(credit + taken - kept);
            let len = taken - 1;
            self.len.set(len);
            return self.hit(self.cache[len].get());
        }
        // The factory may panic: count the miss only once the object exists.
        let object = Box::new((self.shared.factory)());
        bump(&self.counters().misses);
        Pooled::new(Box::into_raw(object), self)
    }

    /// Takes back an object from a dropped guard.
    #[inline(always)]
    fn put(&self, object: *mut T) {
        bump(&self.counters().returns);
        let len = self.len.get();
        if len < self.credit.get() {
            // SAFETY: `len < credit <= cache.len()`, so the index is in bounds.
            unsafe { self.cache.get_unchecked(len) }.set(object);
            self.len.set(len + 1);
        } else {
            self.put_slow(object);
        }
    }

    /// No claimed room is left (`len == credit`): spill half the cache if it is full, then claim
    /// more room, or drop the object if the pool's idle budget is used up.
    #[cold]
    #[inline(never)]
    fn put_slow(&self, object: *mut T) {
        debug_assert_eq!(self.len.get(), self.credit.get());
        if self.len.get() == self.cache.len() {
            self.spill();
        }
        let credit = self.credit.get();
        let want = (self.cache.len() - credit).min(CREDIT_CHUNK);
        debug_assert!(want > 0);
        let got = self.shared.take_room(want);
        if got == 0 {
            bump(&self.counters().overflow_drops);
            // SAFETY: `object` came from `Box::into_raw` and its guard gave it to us; it is in
            // no cache or batch, so this is its only drop.
            drop(unsafe { Box::from_raw(object) });
            return;
        }
        self.credit.set(credit + got);
        let len = self.len.get();
        self.cache[len].set(object);
        self.len.set(len + 1);
    }

    /// Moves the older half of the full cache (at most one batch) to the shared list, with the
    /// room it held.
    fn spill(&self) {
        let len = self.len.get();
        let moved = (len - len / 2).min(BATCH_CAPACITY);
        self.shared.stack.push(&self.cache[..moved]);
        for i in moved..len {
            self.cache[i - moved].set(self.cache[i].get());
        }
        self.len.set(len - moved);
        self.credit.set(self.credit.get() - moved);
    }
}

impl<T> Drop for PoolHandle<T> {
    fn drop(&mut self) {
        self.flush();
        self.shared.slots.release(self.slot);
    }
}

impl<T> fmt::Debug for PoolHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("slot", &self.slot)
            .field("cached", &self.len.get())
            .field("credit", &self.credit.get())
            .field("capacity", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// An object taken from a pool: derefs to `T`; dropping it hands the object back to the
/// [`PoolHandle`] it came from (or frees it, counted as an overflow drop, when the pool already
/// holds `max_idle` idle objects).
///
/// # Examples
///
/// ```
/// use flujo_core::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::default(), Vec::<u32>::new).unwrap();
/// let handle = pool.handle().unwrap();
/// let mut v = handle.get();
/// v.push(1);
/// let owned: Box<Vec<u32>> = v.detach(); // leaves the pool for good
/// assert_eq!(*owned, [1]);
/// assert_eq!(pool.stats().detached, 1);
/// ```
///
/// A guard goes back to its own handle, on its own thread:
///
/// ```compile_fail
/// use flujo_core::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::default(), || 0u8).unwrap();
/// let handle = pool.handle().unwrap();
/// let guard = handle.get();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: `Pooled` is not `Send`
/// });
/// ```
pub struct Pooled<'h, T> {
    /// Owned object from `Box::into_raw`.
    object: NonNull<T>,
    handle: &'h PoolHandle<T>,
}

impl<'h, T> Pooled<'h, T> {
    #[inline(always)]
    fn new(object: *mut T, handle: &'h PoolHandle<T>) -> Self {
        debug_assert!(!object.is_null());
        Self {
            // SAFETY: every object pointer the pool holds came from `Box::into_raw`: non-null.
            object: unsafe { NonNull::new_unchecked(object) },
            handle,
        }
    }

    /// Takes the object out of the pool: it will not come back, and it is counted as detached
    /// (no longer live).
    pub fn detach(self) -> Box<T> {
        let this = core::mem::ManuallyDrop::new(self);
        bump(&this.handle.counters().detached);
        // SAFETY: the guard owned the object (from `Box::into_raw`) and is forgotten, so the
        // object is not also handed back.
        unsafe { Box::from_raw(this.object.as_ptr()) }
    }
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard owns the object until it drops.
        unsafe { self.object.as_ref() }
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard owns the object until it drops, and `&mut self` is unique.
        unsafe { self.object.as_mut() }
    }
}

impl<T> Drop for Pooled<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.handle.put(self.object.as_ptr());
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}
