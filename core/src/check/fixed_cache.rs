//! The `FixedCache` program: random gets, inserts, removes and clears against a model that is a
//! plain `Vec` of entries with the same eviction rule (LRU within a set, expired entries first).
//!
//! Layout of the bytes:
//! - byte 0: capacity `1 + b % 40` (one to five sets, the last one often partial);
//! - byte 1: bit 7 set = a time-to-live of `1 + (b & 0x0f)` ticks, bit 6 set = the clock starts
//!   64 ticks before `u64::MAX` (it saturates there), bit 5 set = keys are [`FastKey`]s of four
//!   steps (the cache's table of fingerprints in play), else [`CacheKey`]s;
//! - then two bytes per operation: `op = b0 & 7`, `key id = b0 >> 3` (32 keys), and
//!   `b1 & 3` ticks of time passing before it. Key ids with equal low three bits share their
//!   index bits exactly, so they always collide in a set and only the full key comparison
//!   tells them apart (as fast keys, they are the same input under four steps: only the
//!   fingerprint tells them apart).
//!
//! Every answer (the value found, the entry handed back, `len`, every count) is asserted.

use alloc::vec::Vec;

use crate::cache::{
    set_count_for, set_len, set_of, CacheKey, CacheStats, FastKey, FixedCache, FixedKey,
    StepFingerprint,
};

/// One entry of the model.
#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    key: K,
    value: u32,
    used_stamp: u64,
    inserted_at_ticks: u64,
}

/// The model: a list of entries, with the cache's placement rule spelled out by brute force.
struct Model<K> {
    entries: Vec<Entry<K>>,
    capacity: usize,
    ttl_ticks: Option<u64>,
    stamp_next: u64,
    stats: CacheStats,
}

impl<K: FixedKey + Copy> Model<K> {
    fn is_live(&self, entry: &Entry<K>, now_ticks: u64) -> bool {
        self.ttl_ticks
            .is_none_or(|ttl| now_ticks.saturating_sub(entry.inserted_at_ticks) < ttl)
    }

    fn stamp(&mut self) -> u64 {
        let stamp = self.stamp_next;
        self.stamp_next += 1;
        stamp
    }

    fn position(&self, key: &K) -> Option<usize> {
        self.entries.iter().position(|entry| entry.key == *key)
    }

    fn get(&mut self, key: &K, now_ticks: u64) -> Option<u32> {
        let live = self
            .position(key)
            .filter(|&index| self.is_live(&self.entries[index], now_ticks));
        let Some(index) = live else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        let stamp = self.stamp();
        self.entries[index].used_stamp = stamp;
        Some(self.entries[index].value)
    }

    fn insert(&mut self, key: K, value: u32, now_ticks: u64) -> Option<(K, u32)> {
        self.stats.inserts += 1;
        let entry = Entry {
            key,
            value,
            used_stamp: self.stamp(),
            inserted_at_ticks: now_ticks,
        };
        if let Some(index) = self.position(&key) {
            self.stats.replacements += 1;
            let old = core::mem::replace(&mut self.entries[index], entry);
            return Some((old.key, old.value));
        }
        let set_count = set_count_for(self.capacity);
        let set = set_of(&key, set_count);
        let same_set: Vec<usize> = (0..self.entries.len())
            .filter(|&index| set_of(&self.entries[index].key, set_count) == set)
            .collect();
        let mut displaced = None;
        if same_set.len() == set_len(set, self.capacity) {
            let victim = same_set
                .into_iter()
                .min_by_key(|&index| {
                    let entry = &self.entries[index];
                    (self.is_live(entry, now_ticks), entry.used_stamp)
                })
                .expect("a full set is not empty");
            let old = self.entries.swap_remove(victim);
            self.stats.evictions += 1;
            displaced = Some((old.key, old.value));
        }
        self.entries.push(entry);
        displaced
    }

    fn remove(&mut self, key: &K) -> Option<u32> {
        let index = self.position(key)?;
        self.stats.removals += 1;
        Some(self.entries.swap_remove(index).value)
    }

    fn clear(&mut self) {
        self.stats.removals += self.entries.len() as u64;
        self.entries.clear();
    }
}

/// The index bits of key id `id` (`0 .. 32`): from its low three bits.
fn index_bits_of(id: u8) -> u64 {
    u64::from(id & 7) * (u64::MAX / 8)
}

/// The `CacheKey` of id `id`: index bits from the low three bits, the rest from all five.
fn cache_key_of(id: u8) -> CacheKey {
    let mut bytes = [id; 32];
    bytes[..8].copy_from_slice(&index_bits_of(id).to_le_bytes());
    CacheKey::from_bytes(bytes)
}

/// The `FastKey` of id `id`: the input `id & 7` (short, or long enough to be keyed by its
/// `CacheKey` when `id & 4`) under step `id >> 3`, its digest forced to the index bits.
fn fast_key_of(id: u8) -> FastKey {
    let step = StepFingerprint::builder("check", u32::from(id >> 3)).build();
    let input = alloc::vec![id & 7; if id & 4 == 0 { 3 } else { 3 * FastKey::INLINE_MAX }];
    FastKey::new(&step, &input).with_digest(index_bits_of(id))
}

/// Runs `data` as an operation program against the structure and its model.
pub fn run(data: &[u8]) {
    let [capacity_byte, config_byte, ops @ ..] = data else {
        return;
    };
    if config_byte & 0x20 == 0 {
        run_with(*capacity_byte, *config_byte, ops, cache_key_of);
    } else {
        let keys: Vec<FastKey> = (0..32).map(fast_key_of).collect();
        run_with(*capacity_byte, *config_byte, ops, |id| {
            keys[usize::from(id)]
        });
    }
}

/// [`run`] with the keys of `key_of`.
fn run_with<K: FixedKey + Copy + core::fmt::Debug>(
    capacity_byte: u8,
    config_byte: u8,
    ops: &[u8],
    key_of: impl Fn(u8) -> K,
) {
    let capacity = 1 + usize::from(capacity_byte % 40);
    let ttl_ticks = (config_byte & 0x80 != 0).then(|| 1 + u64::from(config_byte & 0x0f));
    let mut now_ticks = if config_byte & 0x40 != 0 {
        u64::MAX - 64
    } else {
        0
    };
    let mut cache = match ttl_ticks {
        None => FixedCache::new(capacity),
        Some(ttl) => FixedCache::with_ttl(capacity, ttl),
    }
    .expect("valid capacity and ttl");
    assert_eq!(cache.capacity(), capacity);
    let mut model = Model {
        entries: Vec::new(),
        capacity,
        ttl_ticks,
        stamp_next: 0,
        stats: CacheStats::default(),
    };

    for (step, op) in ops.chunks_exact(2).enumerate() {
        let key = key_of(op[0] >> 3);
        now_ticks = now_ticks.saturating_add(u64::from(op[1] & 3));
        match op[0] & 7 {
            0 | 1 | 7 => {
                let got = cache.get(&key, now_ticks).copied();
                assert_eq!(got, model.get(&key, now_ticks), "get at step {step}");
            }
            2 | 3 => {
                let value = step as u32;
                let displaced = cache.insert(key, value, now_ticks);
                let expected = model.insert(key, value, now_ticks);
                assert_eq!(displaced, expected, "insert at step {step}");
            }
            4 | 5 => {
                assert_eq!(
                    cache.remove(&key),
                    model.remove(&key),
                    "remove at step {step}"
                );
            }
            _ => {
                cache.clear();
                model.clear();
            }
        }
        assert_eq!(cache.len(), model.entries.len(), "len at step {step}");
        assert_eq!(cache.stats(), model.stats, "stats at step {step}");
    }
}
