//! `W7_cache_hit`: the hit path of a cacheable step with a 64-byte input: compute the key,
//! look it up, clone the (small) output. Ours: `flujo` (keyed BLAKE3 `CacheKey` +
//! `FixedCache`) and `flujo_fast` (`FastKey`: ahash digest, the canonical bytes compared in
//! full + `FixedCache`). Peers: a BLAKE3 hash of the same input bytes as the key +
//! `quick_cache::unsync::Cache` (`quick_cache`) or `moka::sync::Cache` (`moka`), and
//! `quick_cache::unsync::Cache` keyed by the input itself, hashed with ahash
//! (`quick_cache_ahash`, the peer of `flujo_fast`).
//!
//! `W7_cache_key` (information): the key alone, ours (`CacheKey::new`: keyed BLAKE3 of the
//! canonical input; `FastKey::new`) beside a plain `blake3::hash` of the same 64 bytes.
//!
//! `W7_runtime_cache`: the runtime's sharded `ResultCache` (configured from the default
//! preset's `CacheConfig`, as the executor builds it) looked up as the executor's cache bridge
//! does (`lookup_until(key, deadline)`, a `Hit` is the output), against
//! `quick_cache::sync::Cache` and `moka::sync::Cache` keyed by the same `CacheKey`s; one
//! thread, keys computed beforehand.
use std::hint::black_box;

use criterion::Criterion;
use flujo_core::cache::{CacheKey, FastKey, FixedCache, StepFingerprint};
use flujo_runtime::config::CacheConfig;
use flujo_runtime::parts::cache::{Lookup, ResultCache};
use quick_cache::unsync::DefaultLifecycle;
use quick_cache::UnitWeighter;

/// Distinct inputs cycled through, all present in every cache.
const INPUT_COUNT: usize = 256;
/// Capacity of every cache: comfortably above `INPUT_COUNT`, so nothing is evicted.
const CAPACITY: usize = 4096;

/// The step's output: small, cloned on every hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Output([u64; 4]);

fn inputs() -> Vec<[u8; 64]> {
    (0..INPUT_COUNT)
        .map(|i| std::array::from_fn(|j| (i * 131 + j * 7) as u8 ^ (i >> 3) as u8))
        .collect()
}

fn output_of(index: usize) -> Output {
    Output([index as u64, 1, 2, 3])
}

fn fingerprint() -> StepFingerprint {
    StepFingerprint::builder("w7-step", 1)
        .setting("mode", &1u8)
        .build()
}

fn peer_key(input: &[u8; 64]) -> [u8; 32] {
    *blake3::hash(input).as_bytes()
}

/// The executor's result cache as `Executor::builder` makes it from `config`.
fn runtime_cache(config: &CacheConfig) -> ResultCache<Output> {
    let mut builder = ResultCache::builder(config.max_entries, config.max_bytes)
        .shards(config.shards.clamp(1, config.max_entries));
    if let Some(ttl) = config.ttl {
        builder = builder.ttl(ttl);
    }
    if let Some(timeout) = config.flight_timeout {
        builder = builder.flight_timeout(timeout);
    }
    builder.build()
}

pub fn benches(c: &mut Criterion) {
    cache_hit(c);
    runtime_cache_hit(c);
}

fn cache_hit(c: &mut Criterion) {
    let inputs = inputs();
    let fingerprint = fingerprint();

    let mut flujo_cache = FixedCache::new(CAPACITY).expect("capacity");
    let mut fast_cache: FixedCache<Output, FastKey> = FixedCache::new(CAPACITY).expect("capacity");
    let mut quick = quick_cache::unsync::Cache::new(CAPACITY);
    let mut quick_ahash: quick_cache::unsync::Cache<[u8; 64], Output, _, ahash::RandomState> =
        quick_cache::unsync::Cache::with(
            CAPACITY,
            CAPACITY as u64,
            UnitWeighter,
            // Fixed seeds, as in the iai twin.
            ahash::RandomState::with_seeds(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344),
            DefaultLifecycle::default(),
        );
    let moka = moka::sync::Cache::new(CAPACITY as u64);
    for (index, input) in inputs.iter().enumerate() {
        let evicted = flujo_cache.insert(CacheKey::new(&fingerprint, input), output_of(index), 0);
        assert!(evicted.is_none(), "the warm cache must hold every input");
        let evicted = fast_cache.insert(FastKey::new(&fingerprint, input), output_of(index), 0);
        assert!(evicted.is_none(), "the warm cache must hold every input");
        quick.insert(peer_key(input), output_of(index));
        quick_ahash.insert(*input, output_of(index));
        moka.insert(peer_key(input), output_of(index));
    }
    // Every implementation hits with the right value before anything is measured.
    for (index, input) in inputs.iter().enumerate() {
        let key = CacheKey::new(&fingerprint, input);
        assert_eq!(flujo_cache.get(&key, 0).cloned(), Some(output_of(index)));
        let key = FastKey::new(&fingerprint, input);
        assert_eq!(key.canonical_bytes(), Some(&input[..]));
        assert_eq!(fast_cache.get(&key, 0).cloned(), Some(output_of(index)));
        assert_eq!(quick.get(&peer_key(input)).cloned(), Some(output_of(index)));
        assert_eq!(quick_ahash.get(input).cloned(), Some(output_of(index)));
        assert_eq!(moka.get(&peer_key(input)), Some(output_of(index)));
    }

    let mut group = c.benchmark_group("W7_cache_hit");
    let mut next = 0usize;
    group.bench_function("flujo", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            let key = CacheKey::new(&fingerprint, black_box(input));
            flujo_cache.get(&key, 0).cloned()
        })
    });
    group.bench_function("flujo_fast", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            let key = FastKey::new(&fingerprint, black_box(input));
            fast_cache.get(&key, 0).cloned()
        })
    });
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            let key = peer_key(black_box(input));
            quick.get(&key).cloned()
        })
    });
    group.bench_function("quick_cache_ahash", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            quick_ahash.get(black_box(input)).cloned()
        })
    });
    group.bench_function("moka", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            let key = peer_key(black_box(input));
            moka.get(&key)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("W7_cache_key");
    group.bench_function("flujo", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            CacheKey::new(&fingerprint, black_box(input))
        })
    });
    group.bench_function("flujo_fast", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            FastKey::new(&fingerprint, black_box(input))
        })
    });
    group.bench_function("blake3", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            peer_key(black_box(input))
        })
    });
    group.finish();
}

fn runtime_cache_hit(c: &mut Criterion) {
    let fingerprint = fingerprint();
    let keys: Vec<CacheKey> = inputs()
        .iter()
        .map(|input| CacheKey::new(&fingerprint, input))
        .collect();
    let ours = runtime_cache(&CacheConfig::default());
    let quick = quick_cache::sync::Cache::new(CAPACITY);
    let moka = moka::sync::Cache::new(CAPACITY as u64);
    for (index, key) in keys.iter().enumerate() {
        assert!(ours.insert(*key, output_of(index)).is_ok());
        quick.insert(*key, output_of(index));
        moka.insert(*key, output_of(index));
    }
    // The bridge's lookup: a run without a deadline.
    let bridge_lookup = |cache: &ResultCache<Output>, key: &CacheKey| -> Option<Output> {
        match cache.lookup_until(*key, black_box(None)) {
            Lookup::Hit(output) => Some(output),
            Lookup::Miss(flight) => {
                // The bridge keeps the flight to fill it; here a miss is a failure.
                drop(flight);
                None
            }
        }
    };
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(bridge_lookup(&ours, key), Some(output_of(index)));
        assert_eq!(quick.get(key), Some(output_of(index)));
        assert_eq!(moka.get(key), Some(output_of(index)));
    }

    let mut group = c.benchmark_group("W7_runtime_cache");
    let mut next = 0usize;
    group.bench_function("flujo", |b| {
        b.iter(|| {
            let key = &keys[next % INPUT_COUNT];
            next += 1;
            bridge_lookup(&ours, black_box(key))
        })
    });
    group.bench_function("quick_cache_sync", |b| {
        b.iter(|| {
            let key = &keys[next % INPUT_COUNT];
            next += 1;
            quick.get(black_box(key))
        })
    });
    group.bench_function("moka_sync", |b| {
        b.iter(|| {
            let key = &keys[next % INPUT_COUNT];
            next += 1;
            moka.get(black_box(key))
        })
    });
    group.finish();
}
