//! Epoch-reclaimed object pool: per-thread caches in front of a lock-free shared free list, with
//! an exact bound on idle objects and exact statistics.
//!
//! A [`Pool<T>`] makes objects with a factory (only on a miss), resets them with a hook on reuse,
//! and keeps at most [`PoolConfig::max_idle`] of them idle; a return beyond that bound frees
//! the object and counts an overflow drop. Each thread works through a [`PoolHandle`]: a small
//! local cache served without any atomic read-modify-write, refilled from and spilled to the
//! shared list (a Treiber stack of batches whose nodes are reclaimed through the pool's own
//! crossbeam-epoch [`Collector`]) a batch at a time. [`PoolRegistry`] holds one pool per type
//! for the runtime.
//!
//! The design (the idle-room budget that makes the bound exact, the counter slots that make the
//! statistics exact) is explained in `core/src/pool/README.md`.
//!
//! # Examples
//!
//! ```
//! use flujo_core::pool::{Pool, PoolConfig};
//!
//! let config = PoolConfig { max_idle: 2, ..PoolConfig::default() };
//! let pool = Pool::with_reset(config, || Vec::<u8>::with_capacity(64), Vec::clear).unwrap();
//! let handle = pool.handle().unwrap();
//! let (a, b, c) = (handle.get(), handle.get(), handle.get()); // three misses
//! drop((a, b, c)); // two kept idle, the third is over `max_idle` and freed
//! let stats = pool.stats();
//! assert_eq!((stats.misses, stats.returns, stats.idle, stats.overflow_drops), (3, 3, 2, 1));
//! assert!(handle.get().is_empty()); // a hit, cleared by the reset hook
//! ```

use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering};
use alloc::boxed::Box;
use core::fmt;
use crossbeam_epoch::Collector;

mod local;
mod registry;
mod stack;
mod stats;

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub use local::{PoolHandle, Pooled};
pub use registry::{DuplicatePoolError, PoolRegistry, PoolRegistryBuilder};

pub use local::CREDIT_CHUNK;
pub use stack::BATCH_CAPACITY;

/// The largest [`PoolConfig::local_capacity`] accepted.
pub const MAX_LOCAL_CAPACITY: usize = 4096;
/// The largest [`PoolConfig::max_handles`] accepted.
pub const MAX_HANDLES: usize = 4096;

/// A pool's bounds. Checked by [`Pool::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most idle objects the pool keeps, over all local caches and the shared list. A
    /// return that finds no room is dropped and counted in [`PoolStats::overflow_drops`].
    /// `0` turns pooling off (every get is a miss, every return a drop) without changing any
    /// result.
    pub max_idle: usize,
    /// Slots in each handle's local cache, in `1 ..= MAX_LOCAL_CAPACITY`. A full cache spills
    /// its older half (at most 32 objects) to the shared list.
    pub local_capacity: usize,
    /// The most handles alive at once, in `1 ..= MAX_HANDLES` (each has a counter slot, one
    /// cache line, allocated with the pool).
    pub max_handles: usize,
}

impl Default for PoolConfig {
    /// `max_idle` 1024, `local_capacity` 64, `max_handles` 64.
    fn default() -> Self {
        Self {
            max_idle: 1024,
            local_capacity: 64,
            max_handles: 64,
        }
    }
}

impl PoolConfig {
    /// Checks the bounds, returning the config unchanged if they hold.
    pub fn validate(self) -> Result<Self, PoolConfigError> {
        if !(1..=MAX_LOCAL_CAPACITY).contains(&self.local_capacity) {
            return Err(PoolConfigError::LocalCapacity(self.local_capacity));
        }
        if !(1..=MAX_HANDLES).contains(&self.max_handles) {
            return Err(PoolConfigError::MaxHandles(self.max_handles));
        }
        Ok(self)
    }
}

/// A [`PoolConfig`] field out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolConfigError {
    /// `local_capacity` (the value given) is not in `1 ..= MAX_LOCAL_CAPACITY`.
    LocalCapacity(usize),
    /// `max_handles` (the value given) is not in `1 ..= MAX_HANDLES`.
    MaxHandles(usize),
}

impl fmt::Display for PoolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LocalCapacity(n) => write!(
                f,
                "pool local_capacity {n} is not in 1..={MAX_LOCAL_CAPACITY}"
            ),
            Self::MaxHandles(n) => {
                write!(f, "pool max_handles {n} is not in 1..={MAX_HANDLES}")
            }
        }
    }
}

impl core::error::Error for PoolConfigError {}

/// [`Pool::handle`] found all `max_handles` handle slots in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandleLimitError {
    /// The pool's configured bound.
    pub max_handles: usize,
}

impl fmt::Display for HandleLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all {} pool handles are in use", self.max_handles)
    }
}

impl core::error::Error for HandleLimitError {}

/// A pool's counts.
///
/// Exact whenever no pool operation is in flight and the reader has synchronized with the
/// threads that did the operations (joined them, or got a message from them after their last
/// one); a handle's own thread always sees its own operations. Taken while other threads
/// work, it mixes moments, and the derived `live` and `idle` can be off (even wrap).
/// The counts wrap at `usize::MAX`; `live` and `idle` are computed with wrapping subtraction,
/// so they stay exact while their true values fit.
///
/// Identities: `hits + misses` = gets; `misses` = objects created;
/// `live = hits + misses - returns - detached`; `idle = returns - overflow_drops - hits`;
/// so `misses = live + idle + overflow_drops + detached` (every created object is in use,
/// idle, dropped on overflow or detached), and `idle <= max_idle` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Gets served with a pooled object (reset hook applied).
    pub hits: usize,
    /// Gets that made a new object with the factory.
    pub misses: usize,
    /// Guards dropped (objects handed back), kept or not.
    pub returns: usize,
    /// Returns freed because the pool already held `max_idle` idle objects.
    pub overflow_drops: usize,
    /// Guards detached with [`Pooled::detach`]: their objects left the pool.
    pub detached: usize,
    /// Objects handed out and not yet returned or detached.
    pub live: usize,
    /// Objects idle in the local caches and the shared list.
    pub idle: usize,
}

impl PoolStats {
    /// All gets: `hits + misses`.
    pub fn gets(&self) -> usize {
        self.hits.wrapping_add(self.misses)
    }
}

/// What the pool's handles share.
pub(crate) struct Shared<T> {
    config: PoolConfig,
    factory: Box<dyn Fn() -> T + Send + Sync>,
    reset: Option<fn(&mut T)>,
    /// The shared free list.
    stack: stack::BatchStack<T>,
    /// Idle room nobody has claimed: `max_idle - Σ handle credit - objects on the shared list`.
    /// Range `0 ..= max_idle`. Claimed (CAS, never below 0) before a handle caches more, given
    /// back (`fetch_add`) after a handle drops its claim, so `idle <= max_idle - room` holds at
    /// every moment. `Relaxed`: it orders nothing but itself (objects travel with the stack's
    /// Release/Acquire), and its read-modify-writes are totally ordered.
    room: CachePadded<AtomicUsize>,
    slots: stats::SlotTable,
    /// The pool's own epoch collector (no_std has no default one); reclaims stack nodes.
    collector: Collector,
}

// SAFETY: the shared state owns `T`s only as idle objects (in stack nodes) that move between
// threads (hence `T: Send`); no `&T` is ever reachable through `&Shared`, so `T: Sync` is not
// needed. The factory and the collector are `Send + Sync`, the rest are atomics.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as for `Send`: shared access only reaches atomics, the `Sync` factory and the
// lock-free stack, whose objects are handed over whole (by value) between threads.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Claims up to `want` idle room; returns how much (0 when the budget is used up).
    /// Lock-free.
    fn take_room(&self, want: usize) -> usize {
        let mut room = self.room.load(Ordering::Relaxed);
        loop {
            debug_assert!(room <= self.config.max_idle);
            if room == 0 {
                return 0;
            }
            let got = want.min(room);
            match self.room.compare_exchange_weak(
                room,
                room - got,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return got,
                Err(now) => room = now,
            }
        }
    }

    /// Gives back `amount` idle room. Wait-free.
    fn give_room(&self, amount: usize) {
        if amount > 0 {
            let before = self.room.fetch_add(amount, Ordering::Relaxed);
            debug_assert!(before + amount <= self.config.max_idle);
        }
    }
}

/// A pool of `Box<T>` objects shared by threads, each working through its own [`PoolHandle`].
///
/// Cloning a `Pool` is cheap (it is a reference to shared state). The idle objects are dropped
/// when the last `Pool` and the last handle are gone.
///
/// # Examples
///
/// ```
/// use flujo_core::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(PoolConfig::default(), || 0u64).unwrap();
/// let workers: Vec<_> = (0..2)
///     .map(|_| {
///         let pool = pool.clone();
///         std::thread::spawn(move || {
///             let handle = pool.handle().unwrap(); // one handle per thread
///             for _ in 0..100 {
///                 *handle.get() += 1;
///             }
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// let stats = pool.stats();
/// assert_eq!(stats.gets(), 200);
/// assert_eq!((stats.live, stats.misses), (0, stats.idle + stats.overflow_drops));
/// ```
pub struct Pool<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Pool<T> {
    /// A pool that makes objects with `factory` and hands idle ones out as they are.
    pub fn new(
        config: PoolConfig,
        factory: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<Self, PoolConfigError> {
        Self::build(config, Box::new(factory), None)
    }

    /// A pool that makes objects with `factory` and applies `reset` to an idle object each time
    /// it is handed out again (never to a new one).
    pub fn with_reset(
        config: PoolConfig,
        factory: impl Fn() -> T + Send + Sync + 'static,
        reset: fn(&mut T),
    ) -> Result<Self, PoolConfigError> {
        Self::build(config, Box::new(factory), Some(reset))
    }

    fn build(
        config: PoolConfig,
        factory: Box<dyn Fn() -> T + Send + Sync>,
        reset: Option<fn(&mut T)>,
    ) -> Result<Self, PoolConfigError> {
        let config = config.validate()?;
        let shared = Shared {
            config,
            factory,
            reset,
            stack: stack::BatchStack::new(),
            room: CachePadded(AtomicUsize::new(config.max_idle)),
            slots: stats::SlotTable::new(config.max_handles),
            collector: Collector::new(),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// A new handle for the calling thread, or an error if `max_handles` handles are alive.
    /// Lock-free (a scan of the slot table) apart from its allocations.
    pub fn handle(&self) -> Result<PoolHandle<T>, HandleLimitError> {
        PoolHandle::new(Arc::clone(&self.shared))
    }

    /// The pool's counts (see [`PoolStats`] for when they are exact).
    pub fn stats(&self) -> PoolStats {
        let t = self.shared.slots.sum();
        PoolStats {
            hits: t.hits,
            misses: t.misses,
            returns: t.returns,
            overflow_drops: t.overflow_drops,
            detached: t.detached,
            live: t
                .hits
                .wrapping_add(t.misses)
                .wrapping_sub(t.returns)
                .wrapping_sub(t.detached),
            idle: t
                .returns
                .wrapping_sub(t.overflow_drops)
                .wrapping_sub(t.hits),
        }
    }

    /// The pool's bounds.
    pub fn config(&self) -> PoolConfig {
        self.shared.config
    }

    /// Handles alive now.
    pub fn handles(&self) -> usize {
        self.shared.slots.owned_count()
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
