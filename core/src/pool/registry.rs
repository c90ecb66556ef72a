//! A typed registry of pools, one per object type, built once and read-only afterwards.
//!
//! Entries are kept sorted by `TypeId`, so a lookup is a binary search over a slice plus one
//! `downcast_ref`: no hashing, no locking, no allocation.

use super::Pool;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::{Any, TypeId};
use core::fmt;

/// One registered pool, type-erased.
struct Entry {
    type_id: TypeId,
    type_name: &'static str,
    /// A `Pool<T>` where `TypeId::of::<T>() == type_id`.
    pool: Box<dyn Any + Send + Sync>,
}

/// The pools a runtime shares, at most one per object type, looked up by type.
///
/// # Examples
///
/// ```
/// use flujo_core::pool::{Pool, PoolConfig, PoolRegistry};
///
/// let bytes = Pool::new(PoolConfig::default(), || [0u8; 64]).unwrap();
/// let words = Pool::new(PoolConfig::default(), Vec::<u64>::new).unwrap();
/// let registry = PoolRegistry::builder().register(bytes).register(words).build().unwrap();
///
/// let pool = registry.get::<[u8; 64]>().expect("registered");
/// assert_eq!(pool.handle().unwrap().get()[0], 0);
/// assert!(registry.get::<String>().is_none());
/// ```
pub struct PoolRegistry {
    /// Sorted by `type_id`, no two equal.
    entries: Box<[Entry]>,
}

impl PoolRegistry {
    /// An empty builder.
    pub fn builder() -> PoolRegistryBuilder {
        PoolRegistryBuilder {
            entries: Vec::new(),
        }
    }

    /// The pool of `T`s, if one was registered.
    pub fn get<T: Send + 'static>(&self) -> Option<&Pool<T>> {
        let wanted = TypeId::of::<T>();
        let index = self
            .entries
            .binary_search_by(|entry| entry.type_id.cmp(&wanted))
            .ok()?;
        let pool = self.entries[index].pool.downcast_ref::<Pool<T>>();
        debug_assert!(pool.is_some(), "entry type id and value disagree");
        pool
    }

    /// The number of registered pools.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pool is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for PoolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.type_name))
            .finish()
    }
}

/// Collects pools for a [`PoolRegistry`]; see [`PoolRegistry::builder`].
pub struct PoolRegistryBuilder {
    entries: Vec<Entry>,
}

impl PoolRegistryBuilder {
    /// Adds the pool of `T`s. A second pool for the same `T` makes [`build`](Self::build) fail.
    pub fn register<T: Send + 'static>(mut self, pool: Pool<T>) -> Self {
        self.entries.push(Entry {
            type_id: TypeId::of::<T>(),
            type_name: core::any::type_name::<T>(),
            pool: Box::new(pool),
        });
        self
    }

    /// Freezes the registry, or names the first type registered twice.
    pub fn build(self) -> Result<PoolRegistry, DuplicatePoolError> {
        let mut entries = self.entries;
        // Stable sort: of two pools for one type, the one registered first comes first.
        entries.sort_by_key(|entry| entry.type_id);
        if let Some(pair) = entries.windows(2).find(|w| w[0].type_id == w[1].type_id) {
            return Err(DuplicatePoolError {
                type_name: pair[1].type_name,
            });
        }
        Ok(PoolRegistry {
            entries: entries.into_boxed_slice(),
        })
    }
}

impl fmt::Debug for PoolRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.type_name))
            .finish()
    }
}

/// Two pools were registered for the same object type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuplicatePoolError {
    /// The object type's name (`core::any::type_name`, for messages only).
    pub type_name: &'static str,
}

impl fmt::Display for DuplicatePoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "two pools registered for type {}", self.type_name)
    }
}

impl core::error::Error for DuplicatePoolError {}
