//! A fixed-capacity, set-associative result cache with LRU eviction within a set.
//!
//! The slots are allocated once, at construction, and never grow. They are grouped into sets of
//! [`FixedCache::WAYS`] slots. The last set is padded to a whole set, and its slots past the
//! capacity are never filled, so the capacity is exactly what was asked for while every
//! lookup scans a whole set (no bounds to work out on the hit path). A key's set is chosen from 64 index bits by multiply-shift range
//! reduction (Lemire's "fastrange"): `(bits * set_count) >> 64`. The bits are the first eight
//! bytes of a [`CacheKey`] (uniform BLAKE3 output) or the ahash digest of a [`FastKey`], so no
//! further hashing is needed.
//!
//! A lookup scans the ways of one set and compares the whole key (all 32 bytes of a
//! [`CacheKey`]; the fingerprint and canonical bytes of a [`FastKey`]): two keys that share a
//! set (or even their index bits) can never return each other's values.
//!
//! Eviction is exact LRU within a set: every hit and insert stamps its slot from a counter, and
//! a full set gives up, in order of preference, an expired entry (the least recently used one)
//! and then its least recently used live entry. The evicted entry is handed back by
//! [`FixedCache::insert`], never dropped behind the caller's back.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::num::NonZeroU64;

use super::fast::FastKey;
use super::key::CacheKey;

/// The key types a [`FixedCache`] can be keyed by: [`CacheKey`] (keyed BLAKE3: stable, for
/// caches shared or persisted) and [`FastKey`] (ahash digest and the canonical bytes: for
/// caches inside one process). Sealed.
pub trait FixedKey: sealed::Sealed {}

impl FixedKey for CacheKey {}
impl FixedKey for FastKey {}

mod sealed {
    use super::{CacheKey, FastKey};

    /// What the cache needs of a key; outside the public API.
    pub trait Sealed: Eq {
        /// 64 uniform bits the key's set is chosen from.
        fn index_bits(&self) -> u64;
        /// The key an empty slot holds (never compared: the slot has no value).
        fn vacant() -> Self;
    }

    impl Sealed for CacheKey {
        #[inline(always)]
        fn index_bits(&self) -> u64 {
            CacheKey::index_bits(self)
        }

        fn vacant() -> Self {
            CacheKey::from_bytes([0; 32])
        }
    }

    impl Sealed for FastKey {
        #[inline(always)]
        fn index_bits(&self) -> u64 {
            self.digest()
        }

        fn vacant() -> Self {
            FastKey::vacant()
        }
    }
}

/// A [`FixedCache`] that cannot be built as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// A capacity of zero: the cache could hold nothing.
    ZeroCapacity,
    /// A capacity above [`FixedCache::MAX_CAPACITY`].
    CapacityTooLarge {
        /// The capacity that was asked for.
        requested: usize,
        /// The largest capacity accepted.
        max: usize,
    },
    /// The allocator could not provide the slots.
    AllocFailed {
        /// The capacity that was asked for.
        requested: usize,
    },
    /// A time-to-live of zero ticks: every entry would be expired as soon as it was stored.
    ZeroTtl,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCapacity => f.write_str("cache capacity must be at least 1"),
            Self::CapacityTooLarge { requested, max } => {
                write!(f, "cache capacity {requested} is above the maximum {max}")
            }
            Self::AllocFailed { requested } => {
                write!(f, "could not allocate a cache of capacity {requested}")
            }
            Self::ZeroTtl => f.write_str("cache time-to-live must be at least 1 tick"),
        }
    }
}

impl core::error::Error for CacheError {}

/// Exact counts of what a [`FixedCache`] did.
///
/// Conservation: `len == inserts - replacements - evictions - removals` at all times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that returned a value.
    pub hits: u64,
    /// Lookups that returned nothing (the key was absent or its entry had expired).
    pub misses: u64,
    /// Values stored by [`FixedCache::insert`].
    pub inserts: u64,
    /// Inserts that replaced the value of the same key (handed back to the caller).
    pub replacements: u64,
    /// Entries of other keys pushed out by inserts into a full set (handed back to the caller).
    pub evictions: u64,
    /// Entries taken out by [`FixedCache::remove`] or [`FixedCache::clear`].
    pub removals: u64,
}

/// One slot of a set. Invariant: `key`, `used_stamp` and `inserted_at_ticks` describe the
/// entry only while `value` is `Some`.
struct Slot<V, K> {
    key: K,
    /// The cache's `stamp_next` when this entry was last inserted or hit: larger is more
    /// recent. Unique among occupied slots.
    used_stamp: u64,
    /// The `now_ticks` of the insert that stored this entry.
    inserted_at_ticks: u64,
    value: Option<V>,
}

impl<V, K: FixedKey> Slot<V, K> {
    fn empty() -> Self {
        Self {
            key: K::vacant(),
            used_stamp: 0,
            inserted_at_ticks: 0,
            value: None,
        }
    }

    /// Whether this slot holds the entry of `key`.
    #[inline(always)]
    fn holds(&self, key: &K) -> bool {
        // The comparison of the whole key is its verification.
        self.value.is_some() && self.key == *key
    }

    /// Whether this occupied slot's entry is live at `now_ticks` under `ttl_ticks`.
    #[inline(always)]
    fn is_live(&self, ttl_ticks: Option<NonZeroU64>, now_ticks: u64) -> bool {
        debug_assert!(self.value.is_some());
        match ttl_ticks {
            None => true,
            // A clock that went backwards gives an age of 0: the entry is fresh, not expired.
            Some(ttl) => now_ticks.saturating_sub(self.inserted_at_ticks) < ttl.get(),
        }
    }
}

/// A fixed-capacity result cache keyed by [`CacheKey`] (by default) or [`FastKey`], usable
/// without `std`.
///
/// - capacity fixed at construction: one allocation, never grows (it is rounded up to whole
///   sets of [`WAYS`](Self::WAYS) slots; the few slots past the capacity stay empty);
/// - set-associative ([`WAYS`](Self::WAYS) ways per set), exact LRU within a set;
/// - every lookup compares the whole key, so a collision of index bits is harmless (see
///   [`FixedKey`] for the two key types);
/// - optional time-to-live in caller-supplied ticks (the core never reads a clock): an entry
///   inserted at tick `t` is live while `now_ticks - t < ttl_ticks`;
/// - what an insert pushes out is handed back; the counts in [`CacheStats`] are exact.
///
/// An expired entry is invisible to [`get`](Self::get) but keeps its slot (and counts in
/// [`len`](Self::len)) until an insert into its set reuses the slot (handing the entry back),
/// or [`remove`](Self::remove) or [`clear`](Self::clear) takes it.
///
/// # Examples
///
/// ```
/// use flujo_core::cache::{CacheKey, FixedCache, StepFingerprint};
///
/// let fingerprint = StepFingerprint::builder("square", 1).build();
/// let mut cache = FixedCache::with_ttl(64, 100).unwrap();
/// let key = CacheKey::new(&fingerprint, &12u32);
///
/// assert_eq!(cache.insert(key, 144u32, 0), None);
/// assert_eq!(cache.get(&key, 99), Some(&144));
/// assert_eq!(cache.get(&key, 100), None); // expired after 100 ticks
/// assert_eq!(cache.remove(&key), Some(144)); // still handed back
/// ```
pub struct FixedCache<V, K: FixedKey = CacheKey> {
    /// `set_count` sets; slot `w` of set `s` is slot `s * WAYS + w`. Slots from `capacity` on
    /// (the last set's padding) stay empty.
    sets: Box<[[Slot<V, K>; WAYS]]>,
    /// `sets.len()`: `capacity.div_ceil(WAYS)`, at least 1.
    set_count: usize,
    /// The number of slots that may hold entries, in `1 ..= MAX_CAPACITY`.
    capacity: usize,
    ttl_ticks: Option<NonZeroU64>,
    /// The next LRU stamp; incremented by every hit and insert, and by nothing else, so the
    /// hits are `stamp_next - stats.inserts` (`stats.hits` is not kept apart: a hit pays one
    /// increment, not two). At 2^64 operations it would wrap, which takes centuries.
    stamp_next: u64,
    /// Occupied slots, in `0 ..= capacity`.
    len: usize,
    /// The counts, but for `hits` (0 here): see `stamp_next`.
    stats: CacheStats,
}

/// The number of sets of a cache of `capacity` slots.
pub(crate) const fn set_count_for(capacity: usize) -> usize {
    capacity.div_ceil(WAYS)
}

/// The set of `key` in a cache of `set_count` sets (multiply-shift range reduction).
#[inline(always)]
pub(crate) fn set_of<K: FixedKey>(key: &K, set_count: usize) -> usize {
    ((u128::from(key.index_bits()) * set_count as u128) >> 64) as usize
}

/// The number of slots of set `set` in a cache of `capacity` slots.
#[cfg(any(test, feature = "check"))]
pub(crate) fn set_len(set: usize, capacity: usize) -> usize {
    let start = set * WAYS;
    debug_assert!(start < capacity);
    (capacity - start).min(WAYS)
}

/// Ways per set (see [`FixedCache::WAYS`]).
const WAYS: usize = 8;
const _: () = assert!(WAYS.is_power_of_two());

impl<V, K: FixedKey> FixedCache<V, K> {
    /// The number of slots in a set: a key can live in any of the `WAYS` slots of its set.
    pub const WAYS: usize = WAYS;

    /// The largest capacity accepted (2^30 entries).
    pub const MAX_CAPACITY: usize = 1 << 30;

    /// Creates a cache of exactly `capacity` entries whose entries never expire.
    ///
    /// # Errors
    ///
    /// [`CacheError::ZeroCapacity`], [`CacheError::CapacityTooLarge`] above
    /// [`MAX_CAPACITY`](Self::MAX_CAPACITY), [`CacheError::AllocFailed`] when the allocator
    /// refuses.
    pub fn new(capacity: usize) -> Result<Self, CacheError> {
        Self::build(capacity, None)
    }

    /// Creates a cache of exactly `capacity` entries that live for `ttl_ticks` ticks.
    ///
    /// # Errors
    ///
    /// Those of [`new`](Self::new), and [`CacheError::ZeroTtl`].
    pub fn with_ttl(capacity: usize, ttl_ticks: u64) -> Result<Self, CacheError> {
        let ttl_ticks = NonZeroU64::new(ttl_ticks).ok_or(CacheError::ZeroTtl)?;
        Self::build(capacity, Some(ttl_ticks))
    }

    fn build(capacity: usize, ttl_ticks: Option<NonZeroU64>) -> Result<Self, CacheError> {
        if capacity == 0 {
            return Err(CacheError::ZeroCapacity);
        }
        if capacity > Self::MAX_CAPACITY {
            return Err(CacheError::CapacityTooLarge {
                requested: capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        let set_count = set_count_for(capacity);
        debug_assert!(set_count >= 1 && (set_count - 1) * WAYS < capacity);
        debug_assert!(set_count * WAYS >= capacity);
        let mut sets = Vec::new();
        sets.try_reserve_exact(set_count)
            .map_err(|_| CacheError::AllocFailed {
                requested: capacity,
            })?;
        sets.extend((0..set_count).map(|_| core::array::from_fn(|_| Slot::empty())));
        Ok(Self {
            sets: sets.into_boxed_slice(),
            set_count,
            capacity,
            ttl_ticks,
            stamp_next: 0,
            len: 0,
            stats: CacheStats::default(),
        })
    }

    /// The number of entries the cache holds at most.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of entries held, expired ones not yet reclaimed included.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The time-to-live of entries, if they expire.
    #[inline]
    pub fn ttl_ticks(&self) -> Option<u64> {
        self.ttl_ticks.map(NonZeroU64::get)
    }

    /// The exact counts so far.
    #[inline]
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.stamp_next.wrapping_sub(self.stats.inserts),
            ..self.stats
        }
    }

    /// Looks up `key` at time `now_ticks`: the value if its entry is present and live.
    ///
    /// A hit marks the entry most recently used. Counts a hit or a miss.
    #[inline]
    pub fn get(&mut self, key: &K, now_ticks: u64) -> Option<&V> {
        let set = self.set_of(key);
        let ttl_ticks = self.ttl_ticks;
        // One pass over the set, the found slot borrowed once: the hit path works out no
        // index.
        let found = self.sets[set]
            .iter_mut()
            .find(|slot| slot.holds(key))
            .filter(|slot| slot.is_live(ttl_ticks, now_ticks));
        let Some(slot) = found else {
            self.stats.misses += 1;
            return None;
        };
        // The stamp counts the hit (see `stamp_next`).
        slot.used_stamp = self.stamp_next;
        self.stamp_next = self.stamp_next.wrapping_add(1);
        slot.value.as_ref()
    }

    /// Stores `value` under `key` at time `now_ticks`, as the most recently used entry of its
    /// set.
    ///
    /// Returns what the insert pushed out: the previous value of `key` (a replacement, expired
    /// or not), or, when the set was full, the evicted entry of another key (the least recently
    /// used expired entry if there is one, else the least recently used entry).
    pub fn insert(&mut self, key: K, value: V, now_ticks: u64) -> Option<(K, V)> {
        self.stats.inserts += 1;
        let stamp = self.next_stamp();
        let (index, outcome) = self.place(&key, now_ticks);
        let slot = self.slot_mut(index);
        let old_value = slot.value.replace(value);
        let old_key = core::mem::replace(&mut slot.key, key);
        let displaced = old_value.map(|old| (old_key, old));
        slot.used_stamp = stamp;
        slot.inserted_at_ticks = now_ticks;
        match outcome {
            Place::Replace => self.stats.replacements += 1,
            Place::Empty => self.len += 1,
            Place::Evict => self.stats.evictions += 1,
        }
        debug_assert_eq!(displaced.is_some(), !matches!(outcome, Place::Empty));
        debug_assert!(displaced.as_ref().is_none_or(|(old_key, _)| {
            (*old_key == self.slot(index).key) == matches!(outcome, Place::Replace)
        }));
        debug_assert!(self.len <= self.capacity());
        displaced
    }

    /// Takes the entry of `key` out (even an expired one) and returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let index = self.find(key)?;
        let value = self.slot_mut(index).value.take();
        debug_assert!(value.is_some());
        self.len -= 1;
        self.stats.removals += 1;
        value
    }

    /// Drops every entry. The counts are kept; each dropped entry counts as a removal.
    pub fn clear(&mut self) {
        for slot in self.sets.iter_mut().flatten() {
            if slot.value.take().is_some() {
                self.stats.removals += 1;
            }
        }
        self.len = 0;
    }

    /// The slot with index `index` (`set * WAYS + way`).
    #[inline(always)]
    fn slot(&self, index: usize) -> &Slot<V, K> {
        &self.sets[index / WAYS][index % WAYS]
    }

    /// [`slot`](Self::slot), mutably.
    #[inline(always)]
    fn slot_mut(&mut self, index: usize) -> &mut Slot<V, K> {
        &mut self.sets[index / WAYS][index % WAYS]
    }

    /// The set of `key`.
    #[inline(always)]
    fn set_of(&self, key: &K) -> usize {
        let set = set_of(key, self.set_count);
        debug_assert!(set < self.set_count);
        set
    }

    /// The slot index of the entry of `key`, live or not. The whole set is scanned: the last
    /// set's padding slots are empty, so they never match.
    #[inline(always)]
    fn find(&self, key: &K) -> Option<usize> {
        let set = self.set_of(key);
        self.sets[set]
            .iter()
            .position(|slot| slot.holds(key))
            .map(|way| set * WAYS + way)
    }

    /// Whether the occupied slot `index` is live at `now_ticks`.
    #[inline(always)]
    fn is_live(&self, index: usize, now_ticks: u64) -> bool {
        self.slot(index).is_live(self.ttl_ticks, now_ticks)
    }

    fn next_stamp(&mut self) -> u64 {
        let stamp = self.stamp_next;
        self.stamp_next = stamp.wrapping_add(1);
        stamp
    }

    /// Chooses the slot an insert of `key` goes to, and says what it holds.
    fn place(&self, key: &K, now_ticks: u64) -> (usize, Place) {
        let start = self.set_of(key) * WAYS;
        // The last set's padding slots (from `capacity` on) are never filled.
        let end = (start + WAYS).min(self.capacity);
        let mut empty = None;
        // The victim if the set is full: expired before live, then least recently used.
        let mut victim: Option<(usize, (bool, u64))> = None;
        for index in start..end {
            let slot = self.slot(index);
            if slot.value.is_none() {
                empty = empty.or(Some(index));
                continue;
            }
            if slot.key == *key {
                return (index, Place::Replace);
            }
            let rank = (self.is_live(index, now_ticks), slot.used_stamp);
            if victim.is_none_or(|(_, best)| rank < best) {
                victim = Some((index, rank));
            }
        }
        match (empty, victim) {
            (Some(index), _) => (index, Place::Empty),
            (None, Some((index, _))) => (index, Place::Evict),
            (None, None) => unreachable!("a set has at least one slot"),
        }
    }
}

/// What the slot an insert goes to holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The entry of the same key.
    Replace,
    /// Nothing.
    Empty,
    /// The entry of another key, to be evicted.
    Evict,
}

impl<V, K: FixedKey> fmt::Debug for FixedCache<V, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedCache")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .field("ttl_ticks", &self.ttl_ticks())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
