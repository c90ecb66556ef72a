//! Bounded ring buffers: a wait-free single-producer single-consumer ring ([`spsc`]) and a
//! many-producer many-consumer sequence ring ([`mpmc`]).
//!
//! Both hand ownership back when they cannot take a value ([`Full`]) and drop the items still
//! inside exactly once when the last handle goes.

use core::fmt;

pub mod mpmc;
pub mod spsc;

/// A push into a full ring: the value is handed back to the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// Returns the value that did not fit.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is full")
    }
}

impl<T> core::error::Error for Full<T> {}

/// A ring capacity that is not a power of two in `2 ..= MAX_CAPACITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError {
    /// The capacity that was asked for.
    pub requested: usize,
}

/// The largest capacity a ring accepts (keeps index arithmetic far from overflow).
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 2);

impl CapacityError {
    /// Checks `capacity`: a power of two in `2 ..= MAX_CAPACITY`.
    pub(crate) fn check(capacity: usize) -> Result<usize, Self> {
        if (2..=MAX_CAPACITY).contains(&capacity) && capacity.is_power_of_two() {
            Ok(capacity)
        } else {
            Err(Self {
                requested: capacity,
            })
        }
    }
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ring capacity {} is not a power of two in 2..={}",
            self.requested, MAX_CAPACITY
        )
    }
}

impl core::error::Error for CapacityError {}
