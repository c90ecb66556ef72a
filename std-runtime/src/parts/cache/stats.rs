//! Exact event counters of a [`ResultCache`](super::ResultCache).

use crate::sync::{AtomicU64, Ordering};

/// A snapshot of a [`ResultCache`](super::ResultCache)'s counters.
///
/// Every counter is exact: each event adds one, exactly once. A snapshot reads the counters
/// one after another, so under concurrent use it may mix moments; once the cache is quiet it
/// is exact. Every [`lookup`](super::ResultCache::lookup) and [`get`](super::ResultCache::get)
/// adds one to exactly one of `hits`, `misses` and `coalesced`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from a stored value (without waiting for a computation).
    pub hits: u64,
    /// Lookups that found no value: a `get` that returned `None`, or a `lookup` that returned
    /// a [`Flight`](super::Flight) (a leader, a leader taking over an abandoned computation,
    /// or a waiter that timed out).
    pub misses: u64,
    /// Lookups that waited for another caller's computation and got its value (or, rarely,
    /// found the value stored when they woke).
    pub coalesced: u64,
    /// Values stored (by `insert` or `Flight::complete`), replacing an old value or not.
    pub inserts: u64,
    /// Live entries removed to keep the cache within its bounds (on insert or `set_capacity`).
    pub evictions: u64,
    /// Entries removed because their TTL had passed, found by a lookup, `remove` or the
    /// eviction hand.
    pub expired: u64,
    /// Values not stored because they do not fit their shard's budget (heavier than its byte
    /// budget, or the shard may hold no entries).
    pub rejected_too_big: u64,
}

/// The live counters behind [`CacheStats`]: Relaxed `fetch_add`s, since no other memory is
/// published through them. The hits are not here: each shard counts its own under its lock
/// (`ShardState::hits`), and `ResultCache::stats` fills them in.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) misses: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) inserts: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) rejected_too_big: AtomicU64,
}

/// Adds one to `counter`.
#[inline]
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Reads every counter once; `hits` is left 0 for the caller to fill in from the shards.
    pub(super) fn snapshot(&self) -> CacheStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: 0,
            misses: read(&self.misses),
            coalesced: read(&self.coalesced),
            inserts: read(&self.inserts),
            evictions: read(&self.evictions),
            expired: read(&self.expired),
            rejected_too_big: read(&self.rejected_too_big),
        }
    }
}
