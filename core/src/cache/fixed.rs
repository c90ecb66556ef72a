//! A fixed-capacity, set-associative result cache with LRU eviction within a set.
//!
//! The slots are allocated once, at construction, and never grow (a cache keyed by
//! [`FastKey`] also keeps a table of its steps' fingerprints; see [`FixedCache`]). They are
//! grouped into sets of [`FixedCache::WAYS`] slots. The last set is padded to a whole set, and
//! its slots past the capacity are never filled, so the capacity is exactly what was asked for
//! while every lookup scans a whole set (no bounds to work out on the hit path). A key's set is
//! chosen from 64 index bits by multiply-shift range reduction (Lemire's "fastrange"):
//! `(bits * set_count) >> 64`. The bits are the first eight bytes of a [`CacheKey`] (uniform
//! BLAKE3 output) or the ahash digest of a [`FastKey`], so no further hashing is needed.
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
    use super::super::fast::{KeptFast, Steps};
    use super::{CacheKey, FastKey};

    /// What the cache needs of a key; outside the public API.
    pub trait Sealed: Eq + Sized {
        /// What a slot keeps of a key.
        type Kept: Copy;
        /// What the cache keeps beside its slots for this key type.
        type Side: Default;
        /// What an empty slot keeps (never compared: the slot has no value).
        const VACANT: Self::Kept;
        /// 64 uniform bits the key's set is chosen from.
        fn index_bits(&self) -> u64;
        /// Whether `kept`, kept by an occupied slot, is this key.
        fn is(&self, kept: &Self::Kept, side: &Self::Side) -> bool;
        /// What a slot keeps of this key; `Err(self)` when `side` cannot grow to keep it.
        fn keep(self, side: &mut Self::Side) -> Result<Self::Kept, Self>;
        /// The key `kept` stands for, as its slot gives it up.
        fn release(kept: &Self::Kept, side: &mut Self::Side) -> Self;
        /// Every slot gave its key up.
        fn clear(side: &mut Self::Side);
    }

    impl Sealed for CacheKey {
        type Kept = CacheKey;
        type Side = ();
        const VACANT: CacheKey = CacheKey::from_bytes([0; 32]);

        #[inline(always)]
        fn index_bits(&self) -> u64 {
            CacheKey::index_bits(self)
        }

        #[inline(always)]
        fn is(&self, kept: &CacheKey, (): &()) -> bool {
            self == kept
        }

        #[inline(always)]
        fn keep(self, (): &mut ()) -> Result<CacheKey, CacheKey> {
            Ok(self)
        }

        #[inline(always)]
        fn release(kept: &CacheKey, (): &mut ()) -> CacheKey {
            *kept
        }

        fn clear((): &mut ()) {}
    }

    impl Sealed for FastKey {
        type Kept = KeptFast;
        type Side = Steps;
        const VACANT: KeptFast = KeptFast::VACANT;

        #[inline(always)]
        fn index_bits(&self) -> u64 {
            self.digest()
        }

        #[inline(always)]
        fn is(&self, kept: &KeptFast, steps: &Steps) -> bool {
            kept.is(self, steps)
        }

        fn keep(self, steps: &mut Steps) -> Result<KeptFast, FastKey> {
            steps.keep(self)
        }

        fn release(kept: &KeptFast, steps: &mut Steps) -> FastKey {
            steps.release(kept)
        }

        fn clear(steps: &mut Steps) {
            steps.clear();
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

/// One slot of a set. Invariant: `key` and `used_stamp` (and the slot's entry in the cache's
/// `inserted_at_ticks`) describe the entry only while `value` is `Some`.
///
/// The time of insertion is kept apart, and only with a time-to-live, so that a `FastKey`
/// slot with a value of up to 32 bytes is 128 bytes: two cache lines, as its set is aligned to
/// one.
#[repr(C)]
struct Slot<V, K: FixedKey> {
    /// What the slot keeps of the entry's key.
    key: K::Kept,
    value: Option<V>,
    /// The cache's `stamp_next` when this entry was last inserted or hit: larger is more
    /// recent. Unique among occupied slots.
    used_stamp: u64,
}

impl<V, K: FixedKey> Slot<V, K> {
    const EMPTY: Self = Self {
        key: K::VACANT,
        value: None,
        used_stamp: 0,
    };

    /// Whether this slot holds the entry of `key`.
    #[inline(always)]
    fn holds(&self, key: &K, side: &K::Side) -> bool {
        // The comparison of the whole key is its verification. The key first: it starts the
        // slot, so another key's slot is told apart in the slot's first cache line.
        key.is(&self.key, side) && self.value.is_some()
    }
}

// A `FastKey` slot with a 32-byte value (`Option` of it: 40 bytes) fills two cache lines.
const _: () = assert!(core::mem::size_of::<Slot<[u64; 4], FastKey>>() == 128);
const _: () = assert!(core::mem::align_of::<Set<[u64; 4], FastKey>>() == 64);
// ... and its set is 17 lines, not 16 (see `Set`).
const _: () = assert!(core::mem::size_of::<Set<[u64; 4], FastKey>>() == 17 * 64);

/// The [`WAYS`] slots of a set, aligned to a cache line, so that a slot whose size is a
/// multiple of 64 bytes never straddles one more line than it fills.
///
/// Then one line of padding: without it, sets of slots whose size is a power of two (a
/// `FastKey` slot with a value of up to 32 bytes: 128 bytes, so 1 KiB sets) would start a
/// power of two apart, and the first ways of all sets, where most entries live, would map to
/// a handful of the CPU cache's sets and evict each other (a 64-set L1 would hold 64 lines of
/// them). With it, the sets start 17 lines apart, and their first ways spread over every CPU
/// cache set: in `W7_cache_hit/flujo_fast`, the share of samples stalled on a slot's first
/// line fell from 28% to 20% (`perf record`). Sets of other sizes pay the line too (a tenth of
/// a `CacheKey` set with a small value).
#[repr(C, align(64))]
struct Set<V, K: FixedKey> {
    slots: [Slot<V, K>; WAYS],
    /// Padding: a stride of an odd number of lines.
    _stride: Line,
}

/// One cache line of padding.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Line(#[allow(dead_code)] [u8; 64]);

/// A fixed-capacity result cache keyed by [`CacheKey`] (by default) or [`FastKey`], usable
/// without `std`.
///
/// - capacity fixed at construction: the slots are allocated once and never grow (they are
///   rounded up to whole sets of [`WAYS`](Self::WAYS) slots; the few slots past the capacity
///   stay empty); with a time-to-live, one more array holds each slot's time of insertion;
/// - keyed by [`FastKey`], a slot keeps the key but for its step's fingerprint, which the cache
///   keeps once per step in a table beside the slots (a 32-byte value and its key then fill
///   two cache lines). The table gains a row when an insert brings a step that has no entries,
///   reuses the rows of steps whose entries are gone, and never has more rows than the
///   capacity plus one; an insert that needs a new row and cannot allocate it is handed back
///   at once (counted as an insert and an eviction);
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
    sets: Box<[Set<V, K>]>,
    /// `sets.len()`: `capacity.div_ceil(WAYS)`, at least 1.
    set_count: usize,
    /// The number of slots that may hold entries, in `1 ..= MAX_CAPACITY`.
    capacity: usize,
    ttl_ticks: Option<NonZeroU64>,
    /// The `now_ticks` of the insert that stored each slot's entry, by slot index; empty
    /// without a time-to-live.
    inserted_at_ticks: Box<[u64]>,
    /// What the key type keeps beside the slots (the steps' fingerprints of `FastKey`s).
    side: K::Side,
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
        let alloc_failed = |_| CacheError::AllocFailed {
            requested: capacity,
        };
        let mut sets = Vec::new();
        sets.try_reserve_exact(set_count).map_err(alloc_failed)?;
        sets.extend((0..set_count).map(|_| Set {
            slots: [Slot::EMPTY; WAYS],
            _stride: Line([0; 64]),
        }));
        let mut inserted_at_ticks = Vec::new();
        if ttl_ticks.is_some() {
            inserted_at_ticks
                .try_reserve_exact(set_count * WAYS)
                .map_err(alloc_failed)?;
            inserted_at_ticks.resize(set_count * WAYS, 0);
        }
        Ok(Self {
            sets: sets.into_boxed_slice(),
            set_count,
            capacity,
            ttl_ticks,
            inserted_at_ticks: inserted_at_ticks.into_boxed_slice(),
            side: K::Side::default(),
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
    #[inline(always)]
    pub fn get(&mut self, key: &K, now_ticks: u64) -> Option<&V> {
        let set = self.set_of(key);
        let (ttl_ticks, inserted_at_ticks, side) =
            (self.ttl_ticks, &self.inserted_at_ticks, &self.side);
        // One pass over the set, the found slot borrowed once.
        let found = self.sets[set]
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.holds(key, side))
            .filter(|&(way, _)| {
                ttl_ticks
                    .is_none_or(|ttl| is_fresh(ttl, inserted_at_ticks[set * WAYS + way], now_ticks))
            });
        let Some((_, slot)) = found else {
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
    /// used expired entry if there is one, else the least recently used entry). An insert by
    /// [`FastKey`] whose step needs a new row in the cache's table of fingerprints, when the
    /// allocator refuses it, is handed back itself (counted as an insert and an eviction).
    pub fn insert(&mut self, key: K, value: V, now_ticks: u64) -> Option<(K, V)> {
        self.stats.inserts += 1;
        let stamp = self.next_stamp();
        let (index, outcome) = self.place(&key, now_ticks);
        let displaced = match outcome {
            // The slot keeps what it keeps: the keys are equal.
            Place::Replace => self
                .slot_mut(index)
                .value
                .replace(value)
                .map(|old| (key, old)),
            Place::Empty | Place::Evict => {
                let kept = match key.keep(&mut self.side) {
                    Ok(kept) => kept,
                    // The side table could not grow: the insert is handed back at once.
                    Err(key) => {
                        self.stats.evictions += 1;
                        return Some((key, value));
                    }
                };
                let slot = &mut self.sets[index / WAYS].slots[index % WAYS];
                let old_kept = core::mem::replace(&mut slot.key, kept);
                let old = slot.value.replace(value);
                old.map(|old| (K::release(&old_kept, &mut self.side), old))
            }
        };
        self.slot_mut(index).used_stamp = stamp;
        if let Some(inserted_at) = self.inserted_at_ticks.get_mut(index) {
            *inserted_at = now_ticks;
        }
        match outcome {
            Place::Replace => self.stats.replacements += 1,
            Place::Empty => self.len += 1,
            Place::Evict => self.stats.evictions += 1,
        }
        debug_assert_eq!(displaced.is_some(), !matches!(outcome, Place::Empty));
        debug_assert!(displaced.as_ref().is_none_or(|(old_key, _)| {
            old_key.is(&self.slot(index).key, &self.side) == matches!(outcome, Place::Replace)
        }));
        debug_assert!(self.len <= self.capacity());
        displaced
    }

    /// Takes the entry of `key` out (even an expired one) and returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let index = self.find(key)?;
        let slot = &mut self.sets[index / WAYS].slots[index % WAYS];
        let value = slot.value.take();
        debug_assert!(value.is_some());
        K::release(&slot.key, &mut self.side);
        self.len -= 1;
        self.stats.removals += 1;
        value
    }

    /// Drops every entry. The counts are kept; each dropped entry counts as a removal.
    pub fn clear(&mut self) {
        for slot in self.sets.iter_mut().flat_map(|set| &mut set.slots) {
            if slot.value.take().is_some() {
                self.stats.removals += 1;
            }
        }
        K::clear(&mut self.side);
        self.len = 0;
    }

    /// The slot with index `index` (`set * WAYS + way`).
    #[inline(always)]
    fn slot(&self, index: usize) -> &Slot<V, K> {
        &self.sets[index / WAYS].slots[index % WAYS]
    }

    /// [`slot`](Self::slot), mutably.
    #[inline(always)]
    fn slot_mut(&mut self, index: usize) -> &mut Slot<V, K> {
        &mut self.sets[index / WAYS].slots[index % WAYS]
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
            .slots
            .iter()
            .position(|slot| slot.holds(key, &self.side))
            .map(|way| set * WAYS + way)
    }

    /// Whether the occupied slot `index` is live at `now_ticks`.
    #[inline(always)]
    fn is_live(&self, index: usize, now_ticks: u64) -> bool {
        debug_assert!(self.slot(index).value.is_some());
        self.ttl_ticks
            .is_none_or(|ttl| is_fresh(ttl, self.inserted_at_ticks[index], now_ticks))
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
            if key.is(&slot.key, &self.side) {
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

#[cfg(test)]
impl<V> FixedCache<V, FastKey> {
    /// The rows of the cache's table of step fingerprints, free ones included.
    pub(super) fn step_rows(&self) -> usize {
        self.side.rows()
    }
}

/// Whether an entry inserted at `inserted_at_ticks` is live at `now_ticks` under `ttl_ticks`.
#[inline(always)]
fn is_fresh(ttl_ticks: NonZeroU64, inserted_at_ticks: u64, now_ticks: u64) -> bool {
    // A clock that went backwards gives an age of 0: the entry is fresh, not expired.
    now_ticks.saturating_sub(inserted_at_ticks) < ttl_ticks.get()
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
