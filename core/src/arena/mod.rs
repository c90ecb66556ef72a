//! Per-run scratch memory: [`RunArena`], a byte-limited bump arena on [`bumpalo`].
//!
//! # Hazard: values in a `RunArena` are never dropped
//!
//! A [`RunArena`] hands out references into memory that it frees all at once, in
//! [`RunArena::reset`] or when the arena itself is dropped, and it never runs a destructor. A
//! `String`, `Vec`, `Box` or `Arc` placed there would leak its heap memory (or its reference
//! count) for good. So that this cannot happen by mistake, every allocating method rejects **at
//! compile time** a type that needs dropping ([`core::mem::needs_drop`]):
//!
//! ```compile_fail,E0080
//! use flujo_core::arena::RunArena;
//!
//! let arena = RunArena::with_capacity_and_limit(1024, 4096).unwrap();
//! let leaked = arena.try_alloc(String::from("never freed")); // error: `String` needs drop
//! ```
//!
//! The same call with a type that has no drop glue compiles:
//!
//! ```
//! use flujo_core::arena::RunArena;
//!
//! let arena = RunArena::with_capacity_and_limit(1024, 4096).unwrap();
//! let kept: &mut &str = arena.try_alloc("borrowed, nothing to free").unwrap();
//! assert_eq!(*kept, "borrowed, nothing to free");
//! ```
//!
//! The check is `const { assert!(!needs_drop::<T>()) }` inside each generic method rather than
//! a `T: Copy` bound. `needs_drop` is exactly the property that matters (a value without drop
//! glue loses nothing when its destructor is skipped) and it admits the types the step graph
//! wants to put in an arena that are not `Copy`: `&mut [u8]`, `Cell<u32>`, plain structs
//! without a `Copy` derive. `needs_drop` may answer `true` for a type that does not really
//! need dropping (it is documented as conservative), which would reject a harmless type, never
//! admit a harmful one. The cost is that the error appears when the generic code is
//! monomorphized (`cargo build`, not `cargo check`) and a generic caller cannot state it as a
//! bound. [`RunArena::try_alloc_slice_copy`] keeps bumpalo's `T: Copy` bound, which implies no
//! drop glue. The one way past the check is explicit: `ManuallyDrop<String>` has no drop glue,
//! and putting one in the arena leaks it exactly as `mem::forget` would.
//!
//! # Lifetimes: reset cannot leave a dangling reference
//!
//! Allocating borrows the arena shared (`&self`) and returns a reference with that borrow's
//! lifetime; [`RunArena::reset`] takes `&mut self`. The borrow checker therefore refuses a
//! reset while any reference into the arena is alive:
//!
//! ```compile_fail,E0502
//! use flujo_core::arena::RunArena;
//!
//! let mut arena = RunArena::with_capacity_and_limit(1024, 4096).unwrap();
//! let x = arena.try_alloc(7_u32).unwrap();
//! arena.reset(); // error: `arena` is still borrowed by `x`
//! assert_eq!(*x, 7);
//! ```
//!
//! # The byte limit: what a caller can rely on
//!
//! The arena keeps its own count, [`RunArena::allocated_bytes`]: the sum of the sizes
//! (`size_of_val`) of the values allocated since the last reset. Alignment padding and
//! bumpalo's chunk rounding are **not** counted, so the count depends only on the sequence of
//! requests, never on addresses. A request for `n` bytes:
//!
//! - fails with [`ArenaError::LimitExceeded`], changing nothing, if and only if
//!   `allocated_bytes + n > limit_bytes` (a size that overflows `usize` counts as over);
//! - otherwise succeeds, unless the global allocator refuses a new chunk, which is reported as
//!   [`ArenaError::OutOfMemory`] (never an abort, never a panic).
//!
//! So a request that brings the count to exactly `limit_bytes` succeeds and one byte more
//! fails, whatever the chunk layout. Zero-sized values cost 0 bytes and always succeed.
//!
//! bumpalo's own [`set_allocation_limit`](bumpalo::Bump::set_allocation_limit) is not that
//! limit: it counts the capacity of the chunks (requests are rounded up to power-of-two or
//! page-sized chunks and the chunk limit is only checked when a new chunk is needed), so a
//! request well under it can be refused and memory already in a chunk is handed out past it.
//! The arena uses it only as a backstop on memory: the chunk capacity it holds never exceeds
//! [`RunArena::memory_bound_bytes`], `4 * limit_bytes + 16 KiB` (saturating). The bound is
//! chosen so that the backstop never refuses a request within the byte limit. Every value's
//! footprint (size plus alignment padding; the padding is smaller than the alignment, which
//! divides the size) is less than twice its size. A chunk is abandoned only when a request does
//! not fit, so its unused tail is smaller than the footprint of that request, which becomes the
//! first value of the next chunk. Hence when a request of `s` bytes needs a new chunk, the
//! chunks held total less than `4 * (limit_bytes - s) + 2 * s`, and the smallest chunk bumpalo
//! 3 will try for it is less than `2 * s + 5 KiB`. (This follows bumpalo 3.20's growth policy;
//! the differential program in `check::arena` asserts that no request within the limit fails.)
//!
//! # Reset and steady state
//!
//! [`RunArena::reset`] makes all the memory reusable without touching the values (nothing is
//! dropped, see above). bumpalo keeps the most recently allocated chunk and frees the others;
//! a new chunk is at least twice the size of the one before it (unless the memory bound or the
//! global allocator forces a smaller one), so the kept chunk is the largest. With one chunk
//! (the steady state) a reset is O(1) and frees nothing. [`RunArena::with_capacity_and_limit`]
//! makes that chunk up front, so a run whose values fit in `capacity_bytes` (padding included,
//! see [`ArenaStats::chunk_used_bytes`]) never calls the global allocator. Started smaller,
//! every run that outgrows the kept chunk at least doubles it, so runs of the same shape stop
//! growing the arena after a few of them (two in the tests).
//!
//! # Examples
//!
//! ```
//! use flujo_core::arena::{ArenaError, RunArena};
//!
//! let mut arena = RunArena::with_capacity_and_limit(4096, 8192).unwrap();
//! for run in 0..3_u32 {
//!     let ids = arena.try_alloc_slice_fill_with(100, |i| i as u32 + run).unwrap();
//!     let name = arena.try_alloc_str("step-a").unwrap();
//!     assert_eq!(ids[99], 99 + run);
//!     assert_eq!(name, "step-a");
//!     assert_eq!(arena.allocated_bytes(), 400 + 6);
//!
//!     let too_big = arena.try_alloc_slice_copy(&[0_u8; 8000]);
//!     assert_eq!(
//!         too_big.err(),
//!         Some(ArenaError::LimitExceeded {
//!             requested_bytes: 8000,
//!             limit_bytes: 8192,
//!             allocated_bytes: 406,
//!         })
//!     );
//!     arena.reset();
//! }
//! let stats = arena.stats();
//! assert_eq!((stats.resets, stats.limit_rejections), (3, 3));
//! assert_eq!(arena.chunk_count(), 1); // the pre-sized chunk served every run
//! ```

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::mem::{self, MaybeUninit};
use core::slice;

use bumpalo::Bump;

/// Slack added to the memory backstop for bumpalo's minimum chunk size and its power-of-two and
/// page rounding of chunk sizes (see the module docs).
const MEMORY_BOUND_SLACK_BYTES: usize = 16 * 1024;

/// Multiple of the byte limit allowed as chunk capacity (see the module docs for why 4).
const MEMORY_BOUND_LIMIT_FACTOR: usize = 4;

/// Why an arena request, or building an arena, failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// The request would bring [`RunArena::allocated_bytes`] above the limit. Nothing was
    /// allocated.
    LimitExceeded {
        /// Size of the rejected request (`usize::MAX` if its size overflowed `usize`).
        requested_bytes: usize,
        /// The arena's byte limit.
        limit_bytes: usize,
        /// Bytes already allocated since the last reset, not counting this request.
        allocated_bytes: usize,
    },
    /// The request was within the limit but the global allocator refused a new chunk (or the
    /// size is not a valid `Layout`). Nothing was allocated.
    OutOfMemory {
        /// Size of the failed request.
        requested_bytes: usize,
    },
    /// [`RunArena::with_capacity_and_limit`] was asked for a first chunk larger than the limit.
    CapacityAboveLimit {
        /// The requested capacity.
        capacity_bytes: usize,
        /// The requested limit.
        limit_bytes: usize,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LimitExceeded {
                requested_bytes,
                limit_bytes,
                allocated_bytes,
            } => write!(
                f,
                "arena limit exceeded: {requested_bytes} bytes requested with \
                 {allocated_bytes} of {limit_bytes} bytes allocated"
            ),
            Self::OutOfMemory { requested_bytes } => {
                write!(f, "out of memory allocating {requested_bytes} arena bytes")
            }
            Self::CapacityAboveLimit {
                capacity_bytes,
                limit_bytes,
            } => write!(
                f,
                "arena capacity {capacity_bytes} bytes is above its limit {limit_bytes} bytes"
            ),
        }
    }
}

impl core::error::Error for ArenaError {}

/// Sizes of a [`RunArena`]: the first chunk it allocates and its byte limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaConfig {
    /// Bytes of the first chunk, allocated when the arena is built. At most `limit_bytes`.
    pub capacity_bytes: usize,
    /// Most bytes that may be allocated between two resets.
    pub limit_bytes: usize,
}

/// A snapshot of a [`RunArena`]'s counters. Every count is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaStats {
    /// Bytes allocated since the last reset, as counted against the limit: the sum of the
    /// values' sizes, without padding. 0 right after a reset.
    pub allocated_bytes: usize,
    /// The arena's byte limit.
    pub limit_bytes: usize,
    /// Chunk bytes consumed since the last reset: `allocated_bytes` plus alignment padding plus
    /// the unused tail of any chunk left behind because a request did not fit. With one chunk
    /// this is the capacity a run needs to never grow the arena.
    pub chunk_used_bytes: usize,
    /// Total capacity of the chunks the arena holds (bumpalo's `allocated_bytes`, without its
    /// per-chunk footer). Unchanged by a run that fits, and kept by a reset.
    pub chunk_capacity_bytes: usize,
    /// Calls to [`RunArena::reset`].
    pub resets: u64,
    /// Requests rejected with [`ArenaError::LimitExceeded`].
    pub limit_rejections: u64,
    /// Requests that failed with [`ArenaError::OutOfMemory`].
    pub out_of_memory_failures: u64,
}

/// A per-run scratch arena: bump allocation with an exact byte limit and an O(1) reset.
///
/// Values allocated here are **never dropped**; types that need dropping are rejected at
/// compile time. See the [module docs](self) for that rule, the exact meaning of the limit and
/// the reset guarantees.
///
/// `RunArena` is `Send` but not `Sync`: one run owns it at a time.
pub struct RunArena {
    bump: Bump,
    /// Sum of the sizes of the requests admitted since the last reset. Invariant:
    /// `allocated_bytes <= limit_bytes`. Raised *before* bumpalo is called so that a fill
    /// closure which allocates in the same arena sees the outer request already counted.
    allocated_bytes: Cell<usize>,
    limit_bytes: usize,
    resets: u64,
    limit_rejections: Cell<u64>,
    out_of_memory_failures: Cell<u64>,
}

impl fmt::Debug for RunArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunArena")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RunArena {
    /// Builds an arena from `config`; see [`RunArena::with_capacity_and_limit`].
    ///
    /// # Errors
    ///
    /// As [`RunArena::with_capacity_and_limit`].
    pub fn new(config: ArenaConfig) -> Result<Self, ArenaError> {
        Self::with_capacity_and_limit(config.capacity_bytes, config.limit_bytes)
    }

    /// Builds an arena whose first chunk holds at least `capacity_bytes` and that admits at
    /// most `limit_bytes` between resets.
    ///
    /// `capacity_bytes == 0` allocates nothing until the first request.
    ///
    /// # Errors
    ///
    /// [`ArenaError::CapacityAboveLimit`] if `capacity_bytes > limit_bytes`;
    /// [`ArenaError::OutOfMemory`] if the global allocator refuses the first chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::{ArenaError, RunArena};
    ///
    /// let arena = RunArena::with_capacity_and_limit(1024, 4096).unwrap();
    /// assert!(arena.stats().chunk_capacity_bytes >= 1024);
    /// assert_eq!(
    ///     RunArena::with_capacity_and_limit(4097, 4096).err(),
    ///     Some(ArenaError::CapacityAboveLimit { capacity_bytes: 4097, limit_bytes: 4096 })
    /// );
    /// ```
    pub fn with_capacity_and_limit(
        capacity_bytes: usize,
        limit_bytes: usize,
    ) -> Result<Self, ArenaError> {
        if capacity_bytes > limit_bytes {
            return Err(ArenaError::CapacityAboveLimit {
                capacity_bytes,
                limit_bytes,
            });
        }
        let bump =
            Bump::try_with_capacity(capacity_bytes).map_err(|_| ArenaError::OutOfMemory {
                requested_bytes: capacity_bytes,
            })?;
        let arena = Self {
            bump,
            allocated_bytes: Cell::new(0),
            limit_bytes,
            resets: 0,
            limit_rejections: Cell::new(0),
            out_of_memory_failures: Cell::new(0),
        };
        // bumpalo ignores its limit once the chunks already exceed it, so the first chunk must
        // be within the backstop; it is at most about twice `capacity_bytes`.
        debug_assert!(arena.bump.allocated_bytes() <= arena.memory_bound_bytes());
        arena
            .bump
            .set_allocation_limit(Some(arena.memory_bound_bytes()));
        Ok(arena)
    }

    /// The byte limit between resets.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Bytes allocated since the last reset, as counted against the limit (sizes of the
    /// values, without padding).
    pub fn allocated_bytes(&self) -> usize {
        self.allocated_bytes.get()
    }

    /// Bytes that may still be allocated before the next reset.
    pub fn remaining_bytes(&self) -> usize {
        self.limit_bytes - self.allocated_bytes.get()
    }

    /// The most chunk capacity this arena will ever hold: `4 * limit_bytes + 16 KiB`,
    /// saturating. Set as bumpalo's allocation limit; see the module docs for why it never
    /// refuses a request within the byte limit.
    pub fn memory_bound_bytes(&self) -> usize {
        self.limit_bytes
            .saturating_mul(MEMORY_BOUND_LIMIT_FACTOR)
            .saturating_add(MEMORY_BOUND_SLACK_BYTES)
    }

    /// A snapshot of the arena's counters.
    pub fn stats(&self) -> ArenaStats {
        let chunk_capacity_bytes = self.bump.allocated_bytes();
        // Total capacity minus what is still free in the current chunk: everything handed out,
        // padded, or left behind in an earlier chunk.
        let chunk_used_bytes = chunk_capacity_bytes - self.bump.chunk_capacity();
        ArenaStats {
            allocated_bytes: self.allocated_bytes.get(),
            limit_bytes: self.limit_bytes,
            chunk_used_bytes,
            chunk_capacity_bytes,
            resets: self.resets,
            limit_rejections: self.limit_rejections.get(),
            out_of_memory_failures: self.out_of_memory_failures.get(),
        }
    }

    /// Number of chunks the arena holds (1 in the steady state; 0 before the first chunk).
    ///
    /// Takes `&mut self` because bumpalo walks its chunk list only without live allocations.
    pub fn chunk_count(&mut self) -> usize {
        self.bump.iter_allocated_chunks().count()
    }

    /// Makes all of the arena's memory reusable. Nothing is dropped (see the module docs).
    ///
    /// Keeps the most recent chunk and frees the others, so it is O(1) once the arena holds one
    /// chunk. Afterwards `allocated_bytes() == 0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::RunArena;
    ///
    /// let mut arena = RunArena::with_capacity_and_limit(256, 256).unwrap();
    /// let first = arena.try_alloc(1_u64).unwrap() as *mut u64;
    /// arena.reset();
    /// assert_eq!(arena.allocated_bytes(), 0);
    /// let again = arena.try_alloc(2_u64).unwrap() as *mut u64;
    /// assert_eq!(first, again); // the same memory, reused
    /// ```
    pub fn reset(&mut self) {
        self.bump.reset();
        self.allocated_bytes.set(0);
        self.resets += 1;
        debug_assert_eq!(self.bump.allocated_bytes(), self.bump.chunk_capacity());
    }

    /// Moves `value` into the arena and returns a reference to it.
    ///
    /// `T` must not need dropping (checked at compile time, see the module docs). On error
    /// `value` is dropped here, which does nothing since it has no drop glue.
    ///
    /// # Errors
    ///
    /// [`ArenaError::LimitExceeded`] if `size_of::<T>()` more bytes would pass the limit;
    /// [`ArenaError::OutOfMemory`] if the global allocator refuses a new chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::{ArenaError, RunArena};
    ///
    /// let arena = RunArena::with_capacity_and_limit(0, 12).unwrap();
    /// let a = arena.try_alloc(1_u64).unwrap();
    /// *a += 1;
    /// assert_eq!(*a, 2);
    /// assert!(matches!(arena.try_alloc(3_u64), Err(ArenaError::LimitExceeded { .. })));
    /// assert_eq!(*arena.try_alloc(4_u32).unwrap(), 4); // exactly at the limit
    /// ```
    pub fn try_alloc<T>(&self, value: T) -> Result<&mut T, ArenaError> {
        const { assert_no_drop_glue::<T>() };
        let requested_bytes = self.reserve(Some(mem::size_of::<T>()))?;
        self.finish(requested_bytes, self.bump.try_alloc(value))
    }

    /// Copies `src` into the arena and returns the copy.
    ///
    /// # Errors
    ///
    /// As [`RunArena::try_alloc`], for `size_of_val(src)` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::RunArena;
    ///
    /// let arena = RunArena::with_capacity_and_limit(64, 64).unwrap();
    /// let copy = arena.try_alloc_slice_copy(&[1_u16, 2, 3]).unwrap();
    /// copy[0] = 9;
    /// assert_eq!(copy, &[9, 2, 3]);
    /// assert_eq!(arena.allocated_bytes(), 6);
    /// ```
    pub fn try_alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&mut [T], ArenaError> {
        let requested_bytes = self.reserve(Some(mem::size_of_val(src)))?;
        self.finish(requested_bytes, self.bump.try_alloc_slice_copy(src))
    }

    /// Allocates a slice of `len` values, the `i`-th being `fill(i)`.
    ///
    /// `T` must not need dropping (checked at compile time). The bytes are counted before
    /// `fill` runs, so `fill` may itself allocate in this arena; if `fill` panics they stay
    /// counted until the next reset.
    ///
    /// # Errors
    ///
    /// As [`RunArena::try_alloc`], for `len * size_of::<T>()` bytes (`fill` is not called).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::RunArena;
    ///
    /// let arena = RunArena::with_capacity_and_limit(64, 64).unwrap();
    /// let squares = arena.try_alloc_slice_fill_with(4, |i| (i * i) as u32).unwrap();
    /// assert_eq!(squares, &[0, 1, 4, 9]);
    /// ```
    pub fn try_alloc_slice_fill_with<T, F>(
        &self,
        len: usize,
        fill: F,
    ) -> Result<&mut [T], ArenaError>
    where
        F: FnMut(usize) -> T,
    {
        const { assert_no_drop_glue::<T>() };
        let requested_bytes = self.reserve(mem::size_of::<T>().checked_mul(len))?;
        self.finish(
            requested_bytes,
            self.bump.try_alloc_slice_fill_with(len, fill),
        )
    }

    /// Copies `src` into the arena.
    ///
    /// # Errors
    ///
    /// As [`RunArena::try_alloc`], for `src.len()` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::RunArena;
    ///
    /// let arena = RunArena::with_capacity_and_limit(64, 64).unwrap();
    /// let name = arena.try_alloc_str("fetch").unwrap();
    /// name.make_ascii_uppercase();
    /// assert_eq!(name, "FETCH");
    /// ```
    pub fn try_alloc_str(&self, src: &str) -> Result<&mut str, ArenaError> {
        let requested_bytes = self.reserve(Some(src.len()))?;
        self.finish(requested_bytes, self.bump.try_alloc_str(src))
    }

    /// Room for `len` values of `T`, left uninitialized: nothing is written, so the cost
    /// does not grow with `len` (a fill of `MaybeUninit::uninit()` may still copy bytes).
    ///
    /// # Errors
    ///
    /// As [`RunArena::try_alloc`], for `len * size_of::<T>()` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::arena::RunArena;
    ///
    /// let arena = RunArena::with_capacity_and_limit(64, 64).unwrap();
    /// let slots = arena.try_alloc_uninit_slice::<u64>(8).unwrap();
    /// slots[3].write(7);
    /// assert_eq!(slots.len(), 8);
    /// assert!(arena.try_alloc_uninit_slice::<u64>(1).is_err(), "the limit is reached");
    /// ```
    #[allow(clippy::mut_from_ref)] // fresh, disjoint room from the bump arena, as bumpalo's own
    pub fn try_alloc_uninit_slice<T>(
        &self,
        len: usize,
    ) -> Result<&mut [MaybeUninit<T>], ArenaError> {
        const { assert_no_drop_glue::<T>() };
        let requested_bytes = self.reserve(mem::size_of::<T>().checked_mul(len))?;
        let layout = Layout::array::<T>(len).map_err(|_| bumpalo::AllocErr);
        let block = self.finish(
            requested_bytes,
            layout.and_then(|l| self.bump.try_alloc_layout(l)),
        )?;
        // SAFETY: `block` is a fresh allocation from the bump arena with the layout of `len`
        // `T`s (so aligned for `T` and `MaybeUninit<T>`, which share a layout), borrowed for
        // as long as `&self` keeps the arena from being reset; `MaybeUninit<T>` has no
        // validity requirement, so uninitialized bytes are valid values.
        Ok(unsafe { slice::from_raw_parts_mut(block.as_ptr().cast::<MaybeUninit<T>>(), len) })
    }

    /// Counts `requested_bytes` against the limit, or rejects it (`None` means the size
    /// overflowed `usize`, which is over any limit).
    fn reserve(&self, requested_bytes: Option<usize>) -> Result<usize, ArenaError> {
        let allocated_bytes = self.allocated_bytes.get();
        debug_assert!(allocated_bytes <= self.limit_bytes);
        let total_bytes = requested_bytes.and_then(|bytes| allocated_bytes.checked_add(bytes));
        match (requested_bytes, total_bytes) {
            (Some(bytes), Some(total)) if total <= self.limit_bytes => {
                self.allocated_bytes.set(total);
                Ok(bytes)
            }
            _ => {
                self.limit_rejections.set(self.limit_rejections.get() + 1);
                Err(ArenaError::LimitExceeded {
                    requested_bytes: requested_bytes.unwrap_or(usize::MAX),
                    limit_bytes: self.limit_bytes,
                    allocated_bytes,
                })
            }
        }
    }

    /// Maps bumpalo's answer for a reserved request; a refusal gives the reservation back.
    fn finish<R>(
        &self,
        requested_bytes: usize,
        result: Result<R, bumpalo::AllocErr>,
    ) -> Result<R, ArenaError> {
        result.map_err(|_| {
            // A fill closure may have allocated in between, so subtract rather than restore.
            let allocated_bytes = self.allocated_bytes.get();
            debug_assert!(allocated_bytes >= requested_bytes);
            self.allocated_bytes.set(allocated_bytes - requested_bytes);
            self.out_of_memory_failures
                .set(self.out_of_memory_failures.get() + 1);
            ArenaError::OutOfMemory { requested_bytes }
        })
    }
}

/// Fails const evaluation (a compile error at the call site's monomorphization) if `T` has drop
/// glue, which the arena would silently skip.
const fn assert_no_drop_glue<T>() {
    assert!(
        !mem::needs_drop::<T>(),
        "RunArena never drops its values, so it rejects types that need drop \
         (see flujo_core::arena)"
    );
}

#[cfg(all(test, not(loom)))]
mod tests;
