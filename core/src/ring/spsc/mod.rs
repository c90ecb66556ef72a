//! A bounded, wait-free single-producer single-consumer ring.
//!
//! The algorithm is Lamport's ring buffer ("Specifying Concurrent Program Modules", ACM TOPLAS
//! 1983) with the refinements of folly's `ProducerConsumerQueue` and rtrb: the two indices sit
//! on their own cache lines, and each handle keeps its own index and a cached copy of the other
//! side's, so that the fast path of [`Producer::push`] and [`Consumer::pop`] writes only its own
//! index line and one slot, and reads the other side's line only when the cached copy says the
//! ring is full (producer) or empty (consumer).
//!
//! Indices are free-running `usize` counters that wrap at `usize::MAX`; the slot of index `i`
//! is `i & (capacity - 1)`, which is why the capacity is a power of two (checked by
//! [`channel`]). The number of items inside is `tail.wrapping_sub(head)`, always in
//! `0 ..= capacity`.
//!
//! Progress: every operation finishes in a bounded number of its own steps whatever the other
//! thread does (wait-free). A batch touches at most `capacity` (push) or `max` (pop) slots.
//!
//! Items still inside when both handles are gone are dropped exactly once, by the shared block.
//!
//! # Examples
//!
//! ```
//! use flujo_core::ring::{spsc, Full};
//!
//! let (mut producer, mut consumer) = spsc::channel::<u32>(2).unwrap();
//! assert_eq!(producer.push(1), Ok(()));
//! assert_eq!(producer.push(2), Ok(()));
//! assert_eq!(producer.push(3), Err(Full(3)));
//! assert_eq!(consumer.pop(), Some(1));
//! assert_eq!(consumer.pop(), Some(2));
//! assert_eq!(consumer.pop(), None);
//! ```

use alloc::boxed::Box;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use super::{CapacityError, Full};
use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering, UnsafeCell};

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

/// Creates a ring of `capacity` slots and returns its two handles.
///
/// # Errors
///
/// [`CapacityError`] unless `capacity` is a power of two in `2 ..= MAX_CAPACITY`
/// ([`super::MAX_CAPACITY`]).
///
/// # Examples
///
/// ```
/// use flujo_core::ring::{spsc, CapacityError};
///
/// let (producer, consumer) = spsc::channel::<u64>(1024).unwrap();
/// assert_eq!(producer.capacity(), 1024);
/// assert_eq!(consumer.capacity(), 1024);
/// assert_eq!(spsc::channel::<u64>(3).err(), Some(CapacityError { requested: 3 }));
///
/// // The handles can move to other threads.
/// let worker = std::thread::spawn(move || {
///     let mut consumer = consumer;
///     let mut total = 0;
///     while total < 3 {
///         if let Some(value) = consumer.pop() {
///             total += value;
///         }
///     }
///     total
/// });
/// let mut producer = producer;
/// while producer.push(3).is_err() {}
/// assert_eq!(worker.join().unwrap(), 3);
/// ```
pub fn channel<T>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    channel_at(capacity, 0)
}

/// [`channel`] with both indices starting at `index_start`, so that tests and the differential
/// program can drive the indices across `usize::MAX`.
pub(crate) fn channel_at<T>(
    capacity: usize,
    index_start: usize,
) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    let capacity = CapacityError::check(capacity)?;
    let slots: Box<[UnsafeCell<MaybeUninit<T>>]> = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    debug_assert_eq!(slots.len(), capacity);
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(index_start)),
        tail: CachePadded(AtomicUsize::new(index_start)),
        mask: capacity - 1,
        slots,
    });
    let producer = Producer {
        slots: SlotsView::new(&shared),
        shared: Arc::clone(&shared),
        tail: index_start,
        tail_limit: index_start.wrapping_add(capacity),
    };
    let consumer = Consumer {
        slots: SlotsView::new(&shared),
        shared,
        head: index_start,
        tail_cached: index_start,
    };
    Ok((producer, consumer))
}

/// The block both handles point to.
struct Shared<T> {
    /// Index of the next slot the consumer reads.
    ///
    /// Written only by the consumer, with `Release`, after it has moved the items before this
    /// index out of their slots; read by the producer with `Acquire`, so that the producer
    /// writes a freed slot only after the consumer's read of it. Free-running (wraps at
    /// `usize::MAX`); `tail.wrapping_sub(head)` is in `0 ..= capacity` at every instant.
    head: CachePadded<AtomicUsize>,
    /// Index of the next slot the producer writes.
    ///
    /// Written only by the producer, with `Release`, after it has written the slots before this
    /// index; read by the consumer with `Acquire`, so that the consumer reads a slot only after
    /// the producer's write of it. Free-running, like `head`.
    tail: CachePadded<AtomicUsize>,
    /// `capacity - 1`, where `capacity == slots.len()` is a power of two: `index & mask` is a
    /// slot position. Never changes.
    mask: usize,
    /// The slots. Those of indices in `head .. tail` (wrapping) hold initialized items owned by
    /// the ring; the others are uninitialized.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

impl<T> Shared<T> {
    /// The number of slots.
    #[inline(always)]
    fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The slot of `index`.
    #[inline(always)]
    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        let position = index & self.mask;
        debug_assert!(position < self.slots.len());
        // SAFETY: `mask == slots.len() - 1` (set at construction, never changed), so
        // `index & mask < slots.len()`.
        unsafe { self.slots.get_unchecked(position) }
    }
}

/// Writes `value` into `slot`.
///
/// # Safety
///
/// The caller is the producer, `slot` is empty (its index is in `tail .. head + capacity`), and
/// the consumer cannot read it before a later `Release` store of `tail` past its index.
#[inline(always)]
unsafe fn write_slot<T>(slot: &UnsafeCell<MaybeUninit<T>>, value: T) {
    slot.with_mut(|slot| {
        // SAFETY: by this function's contract no one else accesses the slot now, and the slot is
        // empty, so overwriting it leaks nothing.
        unsafe { slot.write(MaybeUninit::new(value)) };
    });
}

/// Moves the item out of `slot`, leaving it empty.
///
/// # Safety
///
/// The caller is the consumer, `slot` holds an item (its index is in `head .. tail`, with
/// `tail` read with `Acquire`), and the producer cannot write it before a later `Release` store
/// of `head` past its index. The caller must then publish such a head before anything else
/// reads the slot, so the item is not read twice.
#[inline(always)]
unsafe fn take_slot<T>(slot: &UnsafeCell<MaybeUninit<T>>) -> T {
    slot.with_mut(|slot| {
        // SAFETY: by this function's contract the slot is initialized and no one else accesses
        // it now; the caller treats it as empty from here on.
        unsafe { slot.read().assume_init() }
    })
}

/// A handle's own copy of where the slots are (the shared block's never-changing slot pointer
/// and mask), so that the fast path finds a slot without a load through the `Arc`.
struct SlotsView<T> {
    /// `shared.slots.as_ptr()`. Valid while the handle that holds this view holds its `Arc`,
    /// which is for the handle's whole life: the view is never handed out.
    base: NonNull<UnsafeCell<MaybeUninit<T>>>,
    /// `shared.mask`.
    mask: usize,
}

impl<T> SlotsView<T> {
    fn new(shared: &Shared<T>) -> Self {
        Self {
            base: NonNull::from(&*shared.slots).cast(),
            mask: shared.mask,
        }
    }

    /// The slot of `index`.
    #[inline(always)]
    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        let position = index & self.mask;
        // SAFETY: `base` points to the `mask + 1` slots, kept alive by the handle's `Arc` for as
        // long as `self` lives, and `position <= mask`; the slots are only ever shared
        // (mutation goes through the `UnsafeCell`).
        unsafe { self.base.add(position).as_ref() }
    }
}

impl<T> Drop for Shared<T> {
    /// Drops the items in `head .. tail` (wrapping), each exactly once.
    fn drop(&mut self) {
        if !core::mem::needs_drop::<T>() {
            return;
        }
        // `&mut self`: both handles are gone, and the `Arc` drop that got us here orders their
        // last stores before these loads.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        debug_assert!(tail.wrapping_sub(head) <= self.capacity());
        let mut index = head;
        while index != tail {
            self.slot(index).with_mut(|slot| {
                // SAFETY: `index` is in `head .. tail`, so the slot holds an item that no handle
                // took; each index of the range is visited once, so it is dropped once.
                unsafe { (*slot).assume_init_drop() };
            });
            index = index.wrapping_add(1);
        }
    }
}

/// The producer handle: pushes at the tail.
///
/// `Send` when `T` is, not `Sync`: each side of the ring has one owner.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    slots: SlotsView<T>,
    /// The producer's own index, equal to `shared.tail` between calls (the producer is its only
    /// writer, so it never has to read it back).
    tail: usize,
    /// `head_cached + capacity`, where `head_cached` is `shared.head` as the producer last read
    /// it: the tail at which the ring is full as far as the producer knows. The real head only
    /// moves forward, so the `tail_limit - tail` slots before it are known to be free.
    tail_limit: usize,
}

// SAFETY: the producer only writes slots the consumer cannot read (outside `head .. tail`) and
// hands items over through `tail`'s Release/Acquire pair, so moving it to another thread only
// moves `T` values across threads, which `T: Send` allows. The shared block is reached by at
// most the two handles, each touching only its own slots and index.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Pushes `value` at the tail, or hands it back in [`Full`] if every slot is taken.
    ///
    /// Wait-free.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::{spsc, Full};
    ///
    /// let (mut producer, _consumer) = spsc::channel(2).unwrap();
    /// assert!(producer.push("a").is_ok());
    /// assert!(producer.push("b").is_ok());
    /// assert_eq!(producer.push("c"), Err(Full("c")));
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        let tail = self.tail;
        if tail == self.tail_limit && self.refresh_free() == 0 {
            return Err(Full(value));
        }
        // SAFETY: there is a free slot (`tail - head < capacity`), so the slot of `tail` is
        // empty, and the consumer will not read it before the Release store below.
        unsafe { write_slot(self.slots.slot(tail), value) };
        self.tail = tail.wrapping_add(1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves items from `items` into the ring while there is room, publishes them with one
    /// store, and returns how many moved.
    ///
    /// It never takes an item it cannot store: the items that did not fit are still in `items`.
    /// Wait-free: it takes at most `capacity` items (the consumer cannot free the slots of
    /// items this call has not published yet).
    ///
    /// If `items` panics, the items taken before the panic are published.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::spsc;
    ///
    /// let (mut producer, mut consumer) = spsc::channel(4).unwrap();
    /// let mut items = 0..6;
    /// assert_eq!(producer.push_batch(&mut items), 4);
    /// assert_eq!(items.next(), Some(4)); // Nothing was lost.
    /// assert_eq!(consumer.pop(), Some(0));
    /// ```
    #[inline]
    pub fn push_batch<I: Iterator<Item = T>>(&mut self, items: &mut I) -> usize {
        let capacity = self.shared.capacity();
        let tail_start = self.tail;
        let mut free = self.tail_limit.wrapping_sub(tail_start);
        debug_assert!(free <= capacity);
        // The guard publishes `tail` on the way out, also when `items.next()` panics, so the
        // items taken so far belong to the ring and are dropped once.
        let guard = TailPublish {
            producer: self,
            tail_start,
        };
        loop {
            if free == 0 {
                free = guard.producer.refresh_free();
                if free == 0 {
                    break;
                }
            }
            // Checked free space first: the item taken here has a slot.
            let Some(value) = items.next() else {
                break;
            };
            let tail = guard.producer.tail;
            // SAFETY: `free > 0`, so the slot of `tail` is empty, and the consumer will not read
            // it before the guard's Release store.
            unsafe { write_slot(guard.producer.slots.slot(tail), value) };
            guard.producer.tail = tail.wrapping_add(1);
            free -= 1;
        }
        let moved = guard.producer.tail.wrapping_sub(tail_start);
        debug_assert!(moved <= capacity);
        drop(guard);
        moved
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// The number of items in the ring. The consumer may pop concurrently, so the true number
    /// can only be smaller by the time this returns.
    pub fn len(&self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        let len = self.tail.wrapping_sub(head);
        debug_assert!(len <= self.capacity());
        len
    }

    /// Whether the ring holds no items (it may become empty concurrently, never non-empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of free slots: a lower bound, since the consumer may free more concurrently.
    pub fn free_slots(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Whether every slot is taken, as of the consumer's last published pop.
    pub fn is_full(&self) -> bool {
        self.free_slots() == 0
    }

    /// Whether the consumer is gone. Once `true`, it stays `true`; pushes still succeed until
    /// the ring is full, and the items are dropped with the producer.
    pub fn is_abandoned(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// Re-reads the consumer's head and returns the number of free slots.
    #[inline]
    fn refresh_free(&mut self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        let capacity = self.shared.capacity();
        debug_assert!(self.tail.wrapping_sub(head) <= capacity, "head passed tail");
        self.tail_limit = head.wrapping_add(capacity);
        self.tail_limit.wrapping_sub(self.tail)
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .field("tail_limit", &self.tail_limit)
            .finish_non_exhaustive()
    }
}

/// Publishes the producer's `tail` when dropped, if it moved.
struct TailPublish<'a, T> {
    producer: &'a mut Producer<T>,
    /// The tail when the batch began (the value `shared.tail` holds until the guard drops).
    tail_start: usize,
}

impl<T> Drop for TailPublish<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let producer = &mut *self.producer;
        // Skips the store when nothing moved: it would only invalidate the consumer's copy of
        // the tail line for nothing.
        if producer.tail != self.tail_start {
            producer.shared.tail.store(producer.tail, Ordering::Release);
        }
    }
}

/// The consumer handle: pops at the head.
///
/// `Send` when `T` is, not `Sync`: each side of the ring has one owner.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    slots: SlotsView<T>,
    /// The consumer's own index, equal to `shared.head` between calls (the consumer is its
    /// only writer).
    head: usize,
    /// `shared.tail` as the consumer last read it. The real tail only moves forward from here,
    /// so the items in `head .. tail_cached` are known to be there.
    tail_cached: usize,
}

// SAFETY: the consumer only reads slots in `head .. tail`, which the producer published with
// Release and no longer touches, and frees them through `head`'s Release/Acquire pair; moving it
// to another thread only moves `T` values across threads, which `T: Send` allows.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> Consumer<T> {
    /// Pops the item at the head, or returns `None` if the ring is empty.
    ///
    /// Wait-free.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::spsc;
    ///
    /// let (mut producer, mut consumer) = spsc::channel(2).unwrap();
    /// assert_eq!(consumer.pop(), None);
    /// producer.push(7).unwrap();
    /// assert_eq!(consumer.pop(), Some(7));
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let head = self.head;
        if head == self.tail_cached && self.refresh_available() == 0 {
            return None;
        }
        // SAFETY: `head != tail` with `tail` read with Acquire, so the slot of `head` holds an
        // item the producer published and will not touch before the Release store below, which
        // also marks the slot empty for us.
        let value = unsafe { take_slot(self.slots.slot(head)) };
        self.head = head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Pops up to `max` items, in order, into `f`, publishes the new head with one store, and
    /// returns how many were popped.
    ///
    /// Wait-free. If `f` panics, the items handed to it so far count as popped and the others
    /// stay in the ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::ring::spsc;
    ///
    /// let (mut producer, mut consumer) = spsc::channel(8).unwrap();
    /// assert_eq!(producer.push_batch(&mut (1..=5)), 5);
    /// let mut popped = Vec::new();
    /// assert_eq!(consumer.pop_batch(3, |item| popped.push(item)), 3);
    /// assert_eq!(popped, [1, 2, 3]);
    /// assert_eq!(consumer.pop_batch(usize::MAX, |item| popped.push(item)), 2);
    /// assert_eq!(popped, [1, 2, 3, 4, 5]);
    /// ```
    #[inline]
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut available = self.tail_cached.wrapping_sub(self.head);
        if available < max {
            available = self.refresh_available();
        }
        let count = available.min(max);
        if count == 0 {
            return 0;
        }
        // The guard publishes `head` on the way out, also when `f` panics, so an item moved out
        // of its slot is never dropped again by the ring.
        let guard = HeadPublish { consumer: self };
        for _ in 0..count {
            let head = guard.consumer.head;
            // SAFETY: `head` is in `head_start .. head_start + count`, inside `head .. tail`
            // with `tail` read with Acquire, so the slot holds a published item; the producer
            // will not touch it before the guard's Release store.
            let value = unsafe { take_slot(guard.consumer.slots.slot(head)) };
            // Advance before `f` runs, so a panic in `f` publishes this slot as empty.
            guard.consumer.head = head.wrapping_add(1);
            f(value);
        }
        drop(guard);
        count
    }

    /// The number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// The number of items in the ring. The producer may push concurrently, so the true number
    /// can only be larger by the time this returns.
    pub fn len(&self) -> usize {
        let tail = self.shared.tail.load(Ordering::Acquire);
        let len = tail.wrapping_sub(self.head);
        debug_assert!(len <= self.capacity());
        len
    }

    /// Whether the ring holds no items (it may become non-empty concurrently, never empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer is gone. Once `true`, it stays `true`, and the items still in the
    /// ring can all be popped.
    pub fn is_abandoned(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// Re-reads the producer's tail and returns the number of items available.
    #[inline]
    fn refresh_available(&mut self) -> usize {
        self.tail_cached = self.shared.tail.load(Ordering::Acquire);
        let available = self.tail_cached.wrapping_sub(self.head);
        debug_assert!(available <= self.shared.capacity(), "head passed tail");
        available
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("tail_cached", &self.tail_cached)
            .finish_non_exhaustive()
    }
}

/// Publishes the consumer's `head` when dropped.
struct HeadPublish<'a, T> {
    consumer: &'a mut Consumer<T>,
}

impl<T> Drop for HeadPublish<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.consumer
            .shared
            .head
            .store(self.consumer.head, Ordering::Release);
    }
}
