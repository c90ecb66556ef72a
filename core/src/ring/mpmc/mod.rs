//! A bounded many-producer many-consumer ring: Dmitry Vyukov's bounded MPMC queue.
//!
//! Source: Dmitry Vyukov, "Bounded MPMC queue",
//! <https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>
//! (crossbeam-queue's `ArrayQueue` is the same algorithm). To it this ring adds one-CAS batch
//! claims ([`Ring::push_batch`], [`Ring::pop_batch`]) and a skip mark for positions a batch
//! producer claimed but could not fill.
//!
//! # How it works
//!
//! Producers and consumers count *positions* `0, 1, 2, …` (wrapping at `usize::MAX`, which a
//! power-of-two capacity divides, so `position & mask` stays the right slot across the wrap).
//! `tail` is the next position a producer claims, `head` the next position a consumer claims;
//! a claim is one CAS that moves the index past the claimed positions. Each slot carries a
//! stamp that says, for the position `p` it serves in the current lap:
//!
//! | stamp | meaning |
//! |---|---|
//! | `p` | free: the producer of `p` may write it |
//! | `p + 1` | full: holds the item of `p`, the consumer of `p` may read it |
//! | `p + capacity` | free for the next lap (`p` was consumed, or skipped) |
//!
//! A producer at `tail == t` writes only after its CAS moved `tail` from `t`, and only if the
//! stamp read `t`; it then stores `t + 1` (Release). A consumer at `head == h` reads only after
//! its CAS moved `head` from `h`, and only if the stamp read `h + 1`; it then stores
//! `h + capacity` (Release). The stamp is the only channel that carries the item between
//! threads (Acquire load, Release store), so the index CASes need no ordering of their own for
//! the data; see the field docs for the orderings they do carry.
//!
//! # Progress guarantee
//!
//! No call ever waits for another thread: every call returns after a number of steps bounded
//! by the number of competing operations that succeed meanwhile. Claims are lock-free (a claim
//! CAS fails only because another claim on the same index succeeded, or spuriously on LL/SC
//! hardware).
//!
//! The ring is **not lock-free** in the strict sense, because completing a claim is not: a
//! thread pre-empted between its claim CAS and its stamp store leaves its slot half done, and
//! every operation that reaches that slot fails instead of waiting. While a producer is stalled
//! there, [`Ring::pop`] returns `None` (and `pop_batch` returns 0) for every consumer even if
//! later items are ready; while a consumer is stalled there, [`Ring::push`] returns
//! `Err(Full(value))` one lap later even if the ring is not full. Those failures are
//! *spurious* — the ring was neither empty nor full — and they last until the stalled thread
//! runs again. So the system as a whole can stall behind one suspended thread; what is
//! guaranteed is that nobody blocks: every operation fails rather than waits, and no operation
//! takes a lock. (heapless deprecated its copy of this queue for calling it lock-free.)
//!
//! Spurious failures aside, a pop never misses an item whose push happened before it: it
//! reports the ring empty only if it saw no producer claim at or past the head. So a thread
//! that pushed and then pops never finds the ring empty while every thread pushes before it
//! pops (checked by the threaded test and a loom model, which tell `Empty` from the spurious
//! `Busy`; the model fails if the head's Release/Acquire is weakened to Relaxed).
//!
//! Each push and each pop costs one RMW (the claim CAS) and no fence; nothing cheaper is
//! correct for many producers and consumers sharing `&Ring`, because without an RMW two
//! producers (or two consumers) can take the same position. Batches cost one CAS for up to
//! `capacity` items.
//!
//! Positions are compared by wrapping difference, so a thread that stays suspended between
//! reading an index and its CAS for `usize::MAX + 1` other claims (2^32 on 32-bit targets)
//! could be fooled (ABA); the algorithm shares this with its source.
//!
//! # Examples
//!
//! ```
//! use flujo_core::ring::mpmc::Ring;
//! use std::sync::Arc;
//!
//! let ring = Arc::new(Ring::with_capacity(64).unwrap());
//! let producers: Vec<_> = (0..2u64)
//!     .map(|p| {
//!         let ring = Arc::clone(&ring);
//!         std::thread::spawn(move || {
//!             for i in 0..16 {
//!                 let mut item = p * 100 + i;
//!                 while let Err(full) = ring.push(item) {
//!                     item = full.into_inner();
//!                     std::thread::yield_now();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for p in producers {
//!     p.join().unwrap();
//! }
//! let mut sum = 0;
//! while let Some(item) = ring.pop() {
//!     sum += item;
//! }
//! assert_eq!(sum, (0..16).sum::<u64>() * 2 + 100 * 16);
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::mem::MaybeUninit;

use super::{CapacityError, Full};
use crate::sync::{AtomicUsize, CachePadded, Ordering, UnsafeCell};

#[cfg(test)]
mod tests;

/// One cell of the ring: an item and the stamp that says whose turn it is.
struct Slot<T> {
    /// For the position `p` this slot serves: `p` (free), `p + 1` (full) or `p + capacity`
    /// (free for the next lap). Written by the one thread that owns the slot's current claim,
    /// always with Release after the item is written or read; read with Acquire.
    stamp: AtomicUsize,
    /// The item, initialized exactly while the stamp reads `p + 1`.
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    /// Moves `value` into the slot.
    ///
    /// # Safety
    ///
    /// The caller owns a producer claim on this slot's position and has not published it:
    /// nobody else reads or writes the value, and it holds no item.
    #[inline(always)]
    unsafe fn write(&self, value: T) {
        // SAFETY: the caller's claim gives it exclusive access to the value (see `# Safety`).
        self.value
            .with_mut(|cell| unsafe { cell.write(MaybeUninit::new(value)) });
    }

    /// Moves the item out of the slot.
    ///
    /// # Safety
    ///
    /// The caller owns a consumer claim on this slot's position (or `&mut` of the ring) and the
    /// stamp showed the item published: the value is initialized, nobody else touches it, and
    /// the caller reads it once.
    #[inline(always)]
    unsafe fn read(&self) -> T {
        // SAFETY: the item is initialized and ours alone to move out (see `# Safety`).
        self.value.with(|cell| unsafe { cell.read().assume_init() })
    }
}

/// Why a pop found no item. `Ring::pop` folds both into `None`; the tests tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vacant {
    /// The tail was at the head: no producer had claimed the head position.
    Empty,
    /// A producer had claimed the head position but, as far as this thread could see, not yet
    /// published it: a spurious failure.
    Busy,
}

/// A bounded ring that many threads push into and pop from, sharing it by reference or `Arc`.
///
/// Capacity is a power of two in `2..=`[`MAX_CAPACITY`](super::MAX_CAPACITY). A push into a
/// full ring hands the value back as [`Full`]; items still inside when the ring is dropped are
/// dropped exactly once. See the [module docs](self) for the algorithm and its exact progress
/// guarantee (it fails spuriously, never blocks, and is not strictly lock-free).
///
/// # Examples
///
/// ```
/// use flujo_core::ring::mpmc::Ring;
///
/// let ring = Ring::with_capacity(2).unwrap();
/// assert_eq!(ring.push("a"), Ok(()));
/// assert_eq!(ring.push("b"), Ok(()));
/// assert_eq!(ring.push("c").unwrap_err().into_inner(), "c");
/// assert_eq!(ring.pop(), Some("a"));
/// assert_eq!(ring.pop(), Some("b"));
/// assert_eq!(ring.pop(), None);
/// ```
pub struct Ring<T> {
    /// The next position a consumer claims. Only moves forward, by consumer CASes (one per pop
    /// or batch, plus one per skipped position). Success is Release and loads are Acquire so
    /// that reading `head == h` shows every producer claim below `h`: that makes `len` never
    /// negative and lets a pop that finds `tail == head` report the ring truly empty.
    head: CachePadded<AtomicUsize>,
    /// The next position a producer claims. Only moves forward, by producer CASes (Relaxed:
    /// the item travels through the slot stamp). `tail - head` is in `0..=capacity` except
    /// after a skip, until consumers step over the skipped position.
    tail: CachePadded<AtomicUsize>,
    /// The slots, `mask + 1` of them; read-only after construction, apart from inside a slot.
    slots: Box<[Slot<T>]>,
    /// `capacity - 1`: `position & mask` is a position's slot.
    mask: usize,
}

// SAFETY: the ring owns its items; sending the ring sends them, which `T: Send` allows.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: through `&Ring` a thread only moves whole items in (push) and out (pop), each slot
// access guarded by a claim and the stamp protocol, so sharing the ring shares no `&T`; items
// cross threads by value, which `T: Send` allows.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// Creates an empty ring of `capacity` slots (a power of two in `2..=MAX_CAPACITY`).
    ///
    /// # Errors
    ///
    /// [`CapacityError`] if `capacity` is not such a power of two.
    ///
    /// # Panics
    ///
    /// If the slots cannot be allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// assert_eq!(Ring::<u64>::with_capacity(1024).unwrap().capacity(), 1024);
    /// assert!(Ring::<u64>::with_capacity(1000).is_err());
    /// ```
    pub fn with_capacity(capacity: usize) -> Result<Self, CapacityError> {
        Self::starting_at(capacity, 0)
    }

    /// Creates an empty ring whose first position is `start` (tests start near `usize::MAX`
    /// to cross the index wrap).
    pub(crate) fn starting_at(capacity: usize, start: usize) -> Result<Self, CapacityError> {
        let capacity = CapacityError::check(capacity)?;
        let mask = capacity - 1;
        // Slot `i` serves the first position at or after `start` that maps to it.
        let slots: Vec<Slot<T>> = (0..capacity)
            .map(|index| Slot {
                stamp: AtomicUsize::new(start.wrapping_add(index.wrapping_sub(start) & mask)),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ok(Self {
            head: CachePadded(AtomicUsize::new(start)),
            tail: CachePadded(AtomicUsize::new(start)),
            slots: slots.into_boxed_slice(),
            mask,
        })
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The number of items inside: exact when no other thread is using the ring, otherwise a
    /// snapshot in `0..=capacity` that counts claimed positions (items being written or read
    /// count as inside).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// let ring = Ring::with_capacity(4).unwrap();
    /// assert!(ring.is_empty());
    /// ring.push(1u8).unwrap();
    /// assert_eq!(ring.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Relaxed);
        let claimed = tail.wrapping_sub(head);
        // Reading head with Acquire shows every producer claim below it (see `head`).
        debug_assert!(claimed as isize >= 0, "tail {tail} behind head {head}");
        claimed.min(self.capacity())
    }

    /// Whether the ring holds no item (a snapshot, like [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes `value` at the tail.
    ///
    /// # Errors
    ///
    /// `Err(Full(value))`, handing the value back, if the slot at the tail still holds an
    /// item: the ring is full, or spuriously a consumer one lap back is stalled between
    /// claiming that slot and releasing it (see the [module docs](self)).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// let ring = Ring::with_capacity(2).unwrap();
    /// ring.push(1).unwrap();
    /// ring.push(2).unwrap();
    /// assert_eq!(ring.push(3).unwrap_err().into_inner(), 3);
    /// ```
    #[inline]
    pub fn push(&self, value: T) -> Result<(), Full<T>> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(tail);
            let lag = Self::lag(slot.stamp.load(Ordering::Acquire), tail);
            if lag == 0 {
                match self.tail.compare_exchange_weak(
                    tail,
                    tail.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: our CAS moved the tail from `tail`, so the position is ours,
                        // and its stamp read `tail`: the slot holds no item and nobody else
                        // touches it until we store the stamp below.
                        unsafe { slot.write(value) };
                        slot.stamp.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => tail = now,
                }
            } else if lag < 0 {
                // The slot still holds the item of `tail - capacity` (or is being read).
                return Err(Full(value));
            } else {
                // The stamp is past `tail`: another producer claimed it since we read the tail.
                // The stamp's Acquire shows that claim, so this reload moves forward.
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the item at the head.
    ///
    /// `None` means the ring was empty, or spuriously that the producer of the head position is
    /// stalled between claiming it and publishing it (see the [module docs](self)).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// let ring = Ring::with_capacity(2).unwrap();
    /// assert_eq!(ring.pop(), None::<u8>);
    /// ring.push(7).unwrap();
    /// assert_eq!(ring.pop(), Some(7));
    /// ```
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.try_pop().ok()
    }

    /// Pops the item at the head, or says why there was none.
    #[inline]
    pub(crate) fn try_pop(&self) -> Result<T, Vacant> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let slot = self.slot(head);
            let lag = Self::lag(slot.stamp.load(Ordering::Acquire), head.wrapping_add(1));
            if lag == 0 {
                match self.head.compare_exchange_weak(
                    head,
                    head.wrapping_add(1),
                    Ordering::Release,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // SAFETY: our CAS moved the head from `head`, so the position is ours,
                        // and its stamp read `head + 1`: the item is published and nobody else
                        // touches the slot until we store the stamp below.
                        let value = unsafe { slot.read() };
                        slot.stamp
                            .store(head.wrapping_add(self.capacity()), Ordering::Release);
                        return Ok(value);
                    }
                    Err(now) => head = now,
                }
            } else if lag < 0 {
                return Err(self.vacancy(head));
            } else {
                head = self.step_head(head);
            }
        }
    }

    /// Pushes items from `items` into contiguous free slots at the tail, claimed with one CAS,
    /// and returns how many it moved.
    ///
    /// It claims at most `items.size_hint().0` slots (and at most the free run at the tail),
    /// then pulls exactly that many items, so it never pulls an item it cannot store; an
    /// iterator whose lower bound is 0 moves nothing (push such items one by one). While it
    /// runs `items.next()` the claimed slots are unpublished, so consumers that reach them fail
    /// spuriously: keep the iterator cheap. If the iterator ends early (a lower bound that
    /// lied) or panics, the unfilled positions are marked skipped and consumers step over them.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// let ring = Ring::with_capacity(4).unwrap();
    /// let mut items = 0..6;
    /// assert_eq!(ring.push_batch(&mut items), 4);
    /// assert_eq!(items.next(), Some(4)); // the rest stays in the iterator
    /// ```
    pub fn push_batch<I: Iterator<Item = T>>(&self, items: &mut I) -> usize {
        let wanted = items.size_hint().0.min(self.capacity());
        if wanted == 0 {
            return 0;
        }
        let mut tail = self.tail.load(Ordering::Relaxed);
        let claimed = loop {
            let (free, lag) = self.run(tail, 0, wanted);
            if free == 0 {
                if lag < 0 {
                    return 0;
                }
                tail = self.tail.load(Ordering::Relaxed);
                continue;
            }
            // Claiming the whole run with one CAS is sound: every stamp in it read "free for
            // this position", and a CAS from `tail` succeeds only if no producer claimed any
            // position at or after `tail` since we read it (the tail only moves forward). A
            // free stamp changes only when the producer of that position publishes, and that
            // producer is now us, so the run stays free until we fill it.
            match self.tail.compare_exchange_weak(
                tail,
                tail.wrapping_add(free),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break free,
                Err(now) => tail = now,
            }
        };
        let mut fill = Fill {
            ring: self,
            start: tail,
            claimed,
            written: 0,
        };
        while fill.written < claimed {
            let Some(item) = items.next() else { break };
            let position = tail.wrapping_add(fill.written);
            let slot = self.slot(position);
            // SAFETY: the batch CAS made `position` ours and its stamp read free (see above);
            // it is unpublished until the store below.
            unsafe { slot.write(item) };
            slot.stamp
                .store(position.wrapping_add(1), Ordering::Release);
            fill.written += 1;
        }
        fill.written
        // `fill` drops here and marks any unfilled claimed positions skipped.
    }

    /// Pops up to `max` items from contiguous published slots at the head, claimed with one
    /// CAS, handing each to `f` in order; returns how many.
    ///
    /// Returns 0 when `pop` would return `None`. If `f` panics, the items claimed but not yet
    /// handed over are dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::mpmc::Ring;
    ///
    /// let ring = Ring::with_capacity(8).unwrap();
    /// ring.push_batch(&mut (1..=5));
    /// let mut got = Vec::new();
    /// assert_eq!(ring.pop_batch(3, |x| got.push(x)), 3);
    /// assert_eq!(got, [1, 2, 3]);
    /// ```
    pub fn pop_batch(&self, max: usize, mut f: impl FnMut(T)) -> usize {
        let wanted = max.min(self.capacity());
        if wanted == 0 {
            return 0;
        }
        let mut head = self.head.load(Ordering::Acquire);
        let claimed = loop {
            let (ready, lag) = self.run(head, 1, wanted);
            if ready == 0 {
                if lag < 0 {
                    return 0;
                }
                head = self.step_head(head);
                continue;
            }
            // One CAS for the run, as in `push_batch`: every stamp read "published for this
            // position", the CAS from `head` proves no consumer claimed any of them, and a
            // published stamp changes only when its consumer (now us) releases the slot.
            match self.head.compare_exchange_weak(
                head,
                head.wrapping_add(ready),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break ready,
                Err(now) => head = now,
            }
        };
        let mut drain = Drain {
            ring: self,
            start: head,
            claimed,
            taken: 0,
        };
        while drain.taken < claimed {
            // SAFETY: the batch CAS made the position ours and its stamp read published.
            let value = unsafe { drain.take_next() };
            f(value);
        }
        claimed
    }

    /// The slot of `position`.
    #[inline(always)]
    fn slot(&self, position: usize) -> &Slot<T> {
        let index = position & self.mask;
        debug_assert!(index < self.slots.len());
        // SAFETY: `slots.len() == mask + 1`, so `position & mask` is in bounds.
        unsafe { self.slots.get_unchecked(index) }
    }

    /// How far `stamp` is past `expected`: 0 ready, negative behind (the slot is a lap back),
    /// positive ahead (our index is stale, or the position was skipped). Stamps and indices
    /// are within `2 * capacity <= usize::MAX / 2` of each other, so the signed view is exact.
    #[inline(always)]
    fn lag(stamp: usize, expected: usize) -> isize {
        stamp.wrapping_sub(expected) as isize
    }

    /// Counts the slots from `start` (at most `max`) whose stamps read `position + offset`, and
    /// returns the count and the lag of the first slot that did not (0 if all matched).
    #[inline]
    fn run(&self, start: usize, offset: usize, max: usize) -> (usize, isize) {
        let mut count = 0;
        while count < max {
            let position = start.wrapping_add(count);
            let stamp = self.slot(position).stamp.load(Ordering::Acquire);
            let lag = Self::lag(stamp, position.wrapping_add(offset));
            if lag != 0 {
                return (count, lag);
            }
            count += 1;
        }
        (count, 0)
    }

    /// The head slot had no published item: empty if no producer had claimed it.
    #[cold]
    fn vacancy(&self, head: usize) -> Vacant {
        // `head` was read with Acquire (initial load or failed CAS), which shows every
        // producer claim below it, and each thread sees its own claims, so `tail == head`
        // here means no claim at or past `head` that this thread could know of.
        if self.tail.load(Ordering::Relaxed) == head {
            Vacant::Empty
        } else {
            Vacant::Busy
        }
    }

    /// The head slot's stamp is past `head`: another consumer took `head` (its release of
    /// the slot, which the stamp's Acquire showed, came after its CAS, so the reload moves
    /// forward), or `head` was skipped by a batch producer (the head has not moved), in which
    /// case we move the head past it. Returns the head to retry at.
    fn step_head(&self, head: usize) -> usize {
        let now = self.head.load(Ordering::Acquire);
        if now != head {
            return now;
        }
        match self.head.compare_exchange(
            head,
            head.wrapping_add(1),
            Ordering::Release,
            Ordering::Acquire,
        ) {
            Ok(_) => head.wrapping_add(1),
            Err(now) => now,
        }
    }
}

/// A batch producer's claim: publishes nothing itself, but on drop marks the claimed positions
/// it did not fill as skipped, so the ring never keeps a claimed-and-abandoned slot.
struct Fill<'a, T> {
    ring: &'a Ring<T>,
    start: usize,
    claimed: usize,
    written: usize,
}

impl<T> Drop for Fill<'_, T> {
    fn drop(&mut self) {
        for offset in self.written..self.claimed {
            let position = self.start.wrapping_add(offset);
            // "Free for the next lap", with no item: consumers step over it (`step_head`) and
            // the producer one lap on may fill the slot.
            self.ring.slot(position).stamp.store(
                position.wrapping_add(self.ring.capacity()),
                Ordering::Release,
            );
        }
    }
}

/// A batch consumer's claim: hands out the items in order, and on drop (a panicking `f`)
/// takes and drops the ones not handed out, so every claimed slot is released.
struct Drain<'a, T> {
    ring: &'a Ring<T>,
    start: usize,
    claimed: usize,
    taken: usize,
}

impl<T> Drain<'_, T> {
    /// Moves the next claimed item out and releases its slot.
    ///
    /// # Safety
    ///
    /// `taken < claimed`, and the claimed positions are ours and were published.
    #[inline(always)]
    unsafe fn take_next(&mut self) -> T {
        debug_assert!(self.taken < self.claimed);
        let position = self.start.wrapping_add(self.taken);
        let slot = self.ring.slot(position);
        // SAFETY: the caller guarantees the position is ours and published.
        let value = unsafe { slot.read() };
        slot.stamp.store(
            position.wrapping_add(self.ring.capacity()),
            Ordering::Release,
        );
        self.taken += 1;
        value
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        while self.taken < self.claimed {
            // SAFETY: the remaining claimed positions are ours and published, not yet taken.
            drop(unsafe { self.take_next() });
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        if !core::mem::needs_drop::<T>() {
            return;
        }
        // `&mut self`: every operation has finished, so each position in `head..tail` is
        // published (stamp `p + 1`) or was skipped; only the published ones hold an item.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut position = head;
        while position != tail {
            let slot = self.slot(position);
            if slot.stamp.load(Ordering::Relaxed) == position.wrapping_add(1) {
                // SAFETY: we own the ring and the stamp says the item is initialized; the
                // position is visited once, so the item is dropped exactly once.
                drop(unsafe { slot.read() });
            }
            position = position.wrapping_add(1);
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
