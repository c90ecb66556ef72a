//! One shard of a [`ResultCache`](super::ResultCache): a hash map, a CLOCK ring and the
//! computations in flight, all under one mutex.
//!
//! # CLOCK (second chance)
//!
//! The ring is a FIFO of `(key, generation)` in insertion order; its front is the clock hand.
//! A hit sets the entry's `referenced` bit. To make room, the hand takes the front: a stale
//! slot (the key was removed or re-inserted since, so the generation differs) is dropped; an
//! expired entry is removed (counted as expired); a referenced entry loses its bit and goes to
//! the back (its second chance); any other entry is evicted. Each live entry is passed over at
//! most once per sweep, so making room ends.
//!
//! Room is made *before* a new entry is pushed, so the new entry is never the victim of its own
//! insert. Removals leave stale slots in the ring; the ring is compacted when it holds more
//! than twice as many slots as live entries (plus a constant), so it stays O(entries).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use flujo_core::cache::CacheKey;

use crate::sync::{Arc, Mutex};

use super::stats::{bump, Counters};
use super::FlightCell;

/// The deadline of an entry without TTL (deadlines past `u64::MAX` ns saturate to it).
pub(super) const NEVER_NS: u64 = u64::MAX;

/// Slack of the ring before it is compacted: a small ring is never worth compacting.
const RING_SLACK: usize = 32;

/// The little-endian `u64` in bytes `8 * word .. 8 * word + 8` of `key`.
///
/// The key is a BLAKE3 output, so each word is uniform: the map hashes word 0 and the shard is
/// picked from word 1, so the keys of one shard still spread over all of its buckets.
#[inline]
pub(super) fn key_word(key: &CacheKey, word: usize) -> u64 {
    let mut bits = [0u8; 8];
    bits.copy_from_slice(&key.as_bytes()[8 * word..8 * word + 8]);
    u64::from_le_bytes(bits)
}

/// A [`CacheKey`] that hashes as its first eight bytes (it is already uniformly random).
/// Equality still compares all 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct MapKey(pub(super) CacheKey);

impl Hash for MapKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(key_word(&self.0, 0));
    }
}

/// A hasher that passes a `u64` through: see [`MapKey`].
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, bits: u64) {
        self.0 = bits;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached through MapKey; FNV-1a keeps any other use correct.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A map keyed by [`MapKey`].
pub(super) type KeyMap<T> = HashMap<MapKey, T, BuildHasherDefault<KeyHasher>>;

/// A stored value and its bookkeeping.
struct Entry<V> {
    value: V,
    /// What the weigher said when it was stored; counted in `ShardState::bytes`.
    weight_bytes: usize,
    /// The entry is a miss from this time on; [`NEVER_NS`] if it never expires.
    expires_at_ns: u64,
    /// Set by a hit, cleared by the clock hand: the entry's second chance.
    referenced: bool,
    /// Matches the one ring slot that stands for this entry.
    generation: u64,
}

/// What a probe of a shard found.
pub(super) enum Probe<V> {
    /// A live value.
    Hit(V),
    /// No live value (an expired one was removed and counted).
    Absent,
}

/// A shard, aligned so that two shards' locks never share a cache line.
#[repr(align(128))]
pub(super) struct Shard<V> {
    pub(super) state: Mutex<ShardState<V>>,
}

/// The state of a shard. Invariants (after every method returns): `map.len() <= max_entries`,
/// `bytes <= max_bytes`, `bytes` is the sum of the entries' `weight_bytes`, every entry has a
/// ring slot with its generation.
pub(super) struct ShardState<V> {
    map: KeyMap<Entry<V>>,
    /// The CLOCK ring: `(key, generation)`, hand at the front. Holds stale slots too.
    ring: VecDeque<(MapKey, u64)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The generation of the next stored entry.
    next_generation: u64,
    /// The computations in flight in this shard, by key: see `ResultCache::lookup`.
    pub(super) flights: KeyMap<Arc<FlightCell<V>>>,
    /// Lookups of this shard answered from a stored value (`CacheStats::hits`), counted under
    /// the shard's lock: a counter shared by every shard would cost each hit one more atomic
    /// read-modify-write, contended across threads. Only grows; `ResultCache::stats` sums the
    /// shards.
    pub(super) hits: u64,
}

impl<V: Clone> ShardState<V> {
    /// An empty shard with these budgets.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: KeyMap::default(),
            ring: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            next_generation: 0,
            flights: KeyMap::default(),
            hits: 0,
        }
    }

    /// The number of entries stored (expired ones not yet seen included).
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The sum of the weights of the entries stored.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes of this shard's slots: its map, CLOCK ring and flight table, each capacity
    /// times its slot size (hash-table control bytes not counted).
    pub(super) fn slot_bytes(&self) -> usize {
        self.map.capacity() * size_of::<(MapKey, Entry<V>)>()
            + self.ring.capacity() * size_of::<(MapKey, u64)>()
            + self.flights.capacity() * size_of::<(MapKey, Arc<FlightCell<V>>)>()
    }

    /// The value of `key` if it is live at `now_ns`; marks it referenced. An expired entry is
    /// removed and counted.
    #[inline]
    pub(super) fn probe(&mut self, key: MapKey, now_ns: u64, counters: &Counters) -> Probe<V> {
        let Some(entry) = self.map.get_mut(&key) else {
            return Probe::Absent;
        };
        if is_expired(entry.expires_at_ns, now_ns) {
            self.take(key);
            bump(&counters.expired);
            return Probe::Absent;
        }
        entry.referenced = true;
        Probe::Hit(entry.value.clone())
    }

    /// Removes `key`'s entry, returning its value if it was live at `now_ns` (an expired one
    /// is counted as expired).
    pub(super) fn remove(&mut self, key: MapKey, now_ns: u64, counters: &Counters) -> Option<V> {
        let entry = self.take(key)?;
        if is_expired(entry.expires_at_ns, now_ns) {
            bump(&counters.expired);
            return None;
        }
        Some(entry.value)
    }

    /// Stores `make()` under `key` with `weight_bytes`, evicting as needed, and returns true;
    /// or returns false without calling `make` when the value does not fit this shard's budget.
    /// Either way the old value of `key` is gone.
    pub(super) fn store(
        &mut self,
        key: MapKey,
        weight_bytes: usize,
        expires_at_ns: u64,
        now_ns: u64,
        counters: &Counters,
        make: impl FnOnce() -> V,
    ) -> bool {
        // The old value goes first, so its room counts and it is never evicted needlessly.
        let old = self.take(key);
        if self.max_entries == 0 || weight_bytes > self.max_bytes {
            bump(&counters.rejected_too_big);
            drop(old);
            return false;
        }
        // Make room first, so the new entry is not its own insert's victim.
        self.evict_until(
            self.max_entries - 1,
            self.max_bytes - weight_bytes,
            now_ns,
            counters,
        );
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = Entry {
            value: make(),
            weight_bytes,
            expires_at_ns,
            referenced: false,
            generation,
        };
        self.map.insert(key, entry);
        self.ring.push_back((key, generation));
        self.bytes += weight_bytes;
        bump(&counters.inserts);
        self.compact_if_sparse();
        debug_assert!(self.map.len() <= self.max_entries, "entry bound broken");
        debug_assert!(self.bytes <= self.max_bytes, "byte bound broken");
        drop(old);
        true
    }

    /// Sets the budgets and evicts down to them.
    pub(super) fn set_budget(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        now_ns: u64,
        counters: &Counters,
    ) {
        self.max_entries = max_entries;
        self.max_bytes = max_bytes;
        self.evict_until(max_entries, max_bytes, now_ns, counters);
        self.compact_if_sparse();
    }

    /// Removes every entry (computations in flight stay); counts nothing.
    pub(super) fn clear(&mut self) {
        // The bookkeeping is reset before the values are dropped (user code that may panic).
        let map = std::mem::take(&mut self.map);
        self.ring.clear();
        self.bytes = 0;
        drop(map);
    }

    /// Removes `key`'s entry and its weight, leaving its ring slot stale.
    fn take(&mut self, key: MapKey) -> Option<Entry<V>> {
        let entry = self.map.remove(&key)?;
        self.bytes -= entry.weight_bytes;
        Some(entry)
    }

    /// Turns the clock hand until at most `entries_max` entries and `bytes_max` bytes remain.
    fn evict_until(&mut self, entries_max: usize, bytes_max: usize, now_ns: u64, c: &Counters) {
        while self.map.len() > entries_max || self.bytes > bytes_max {
            let Some((key, generation)) = self.ring.pop_front() else {
                // Every entry has a slot, so an empty ring means an empty map, within any
                // budget.
                debug_assert!(self.map.is_empty(), "entry without a ring slot");
                return;
            };
            let Some(entry) = self.map.get_mut(&key) else {
                continue; // stale: removed since
            };
            if entry.generation != generation {
                continue; // stale: re-inserted since, its live slot is further back
            }
            if is_expired(entry.expires_at_ns, now_ns) {
                self.take(key);
                bump(&c.expired);
            } else if entry.referenced {
                entry.referenced = false;
                self.ring.push_back((key, generation));
            } else {
                self.take(key);
                bump(&c.evictions);
            }
        }
    }

    /// Drops the stale ring slots once they outnumber the live ones (amortised O(1)).
    fn compact_if_sparse(&mut self) {
        if self.ring.len() <= 2 * self.map.len() + RING_SLACK {
            return;
        }
        let map = &self.map;
        self.ring
            .retain(|(key, generation)| map.get(key).is_some_and(|e| e.generation == *generation));
        debug_assert_eq!(self.ring.len(), self.map.len(), "one live slot per entry");
    }
}

/// Whether an entry with deadline `expires_at_ns` is a miss at `now_ns`.
#[inline]
fn is_expired(expires_at_ns: u64, now_ns: u64) -> bool {
    expires_at_ns != NEVER_NS && now_ns >= expires_at_ns
}
