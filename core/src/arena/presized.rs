//! [`PresizedBuf`]: a `Vec` whose capacity is fixed when it is built, for the per-run objects
//! that need dropping (and so cannot go in a [`RunArena`](super::RunArena)).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use core::ops::{Deref, DerefMut};

/// A `Vec<T>` with a capacity fixed at construction: it allocates once, when built, and never
/// again. A push onto a full buffer hands the value back.
///
/// Unlike the arena, it owns its values and drops them normally: in [`clear`](Self::clear)
/// (which keeps the memory for the next run), [`pop`](Self::pop), or when the buffer is dropped.
/// It dereferences to a slice.
///
/// # Examples
///
/// ```
/// use flujo_core::arena::PresizedBuf;
///
/// let mut records: PresizedBuf<String> = PresizedBuf::with_capacity(2);
/// for run in 0..3 {
///     assert_eq!(records.push(format!("run {run} step a")), Ok(()));
///     assert_eq!(records.push(format!("run {run} step b")), Ok(()));
///     let rejected = records.push(String::from("one too many"));
///     assert_eq!(rejected, Err(String::from("one too many")));
///     assert_eq!(records.len(), 2);
///     records.clear(); // drops the strings, keeps the memory
/// }
/// ```
pub struct PresizedBuf<T> {
    /// Invariant: `items.len() <= capacity <= items.capacity()`, and `items.capacity()` never
    /// changes after construction (so the buffer never reallocates).
    items: Vec<T>,
    capacity: usize,
}

impl<T: fmt::Debug> fmt::Debug for PresizedBuf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresizedBuf")
            .field("capacity", &self.capacity)
            .field("items", &self.items)
            .finish()
    }
}

impl<T> PresizedBuf<T> {
    /// Allocates room for exactly `capacity` values.
    ///
    /// # Panics
    ///
    /// Like [`Vec::with_capacity`], if the size overflows `isize::MAX` bytes; the global
    /// allocator's failure handler runs if it refuses. Use
    /// [`try_with_capacity`](Self::try_with_capacity) to get an error instead.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            items: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Allocates room for exactly `capacity` values, or reports why it cannot.
    ///
    /// # Errors
    ///
    /// The [`TryReserveError`] of [`Vec::try_reserve_exact`].
    pub fn try_with_capacity(capacity: usize) -> Result<Self, TryReserveError> {
        let mut items = Vec::new();
        items.try_reserve_exact(capacity)?;
        Ok(Self { items, capacity })
    }

    /// Appends `value`, or hands it back if the buffer is full. Never allocates.
    ///
    /// # Errors
    ///
    /// `Err(value)` when `len() == capacity()`.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.items.len() == self.capacity {
            return Err(value);
        }
        // `len < capacity <= items.capacity()`, so `Vec::push` cannot reallocate.
        debug_assert!(self.items.len() < self.items.capacity());
        self.items.push(value);
        Ok(())
    }

    /// Removes and returns the last value, if any.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop()
    }

    /// Drops every value and keeps the memory for reuse.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The fixed capacity given at construction.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a push would hand its value back.
    pub fn is_full(&self) -> bool {
        self.items.len() == self.capacity
    }

    /// The values, in push order.
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// The values, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items
    }
}

impl<T> Deref for PresizedBuf<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> DerefMut for PresizedBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}
