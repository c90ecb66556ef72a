//! `W7_cache_hit`: the hit path of a cacheable step with a 64-byte input: compute the key,
//! look it up, clone the (small) output. Peers: a BLAKE3 hash of the same input bytes as the
//! key + `quick_cache::unsync::Cache`, and the same key + `moka::sync::Cache`.
//!
//! `W7_cache_key` (information): the key alone, ours (`CacheKey::new`: keyed BLAKE3 of the
//! canonical input) beside a plain `blake3::hash` of the same 64 bytes.
use std::hint::black_box;

use criterion::Criterion;
use flujo_core::cache::{CacheKey, FixedCache, StepFingerprint};

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

pub fn benches(c: &mut Criterion) {
    let inputs = inputs();
    let fingerprint = fingerprint();

    let mut flujo_cache = FixedCache::new(CAPACITY).expect("capacity");
    let mut quick = quick_cache::unsync::Cache::new(CAPACITY);
    let moka = moka::sync::Cache::new(CAPACITY as u64);
    for (index, input) in inputs.iter().enumerate() {
        let evicted = flujo_cache.insert(CacheKey::new(&fingerprint, input), output_of(index), 0);
        assert!(evicted.is_none(), "the warm cache must hold every input");
        quick.insert(peer_key(input), output_of(index));
        moka.insert(peer_key(input), output_of(index));
    }
    // Every implementation hits with the right value before anything is measured.
    for (index, input) in inputs.iter().enumerate() {
        let key = CacheKey::new(&fingerprint, input);
        assert_eq!(flujo_cache.get(&key, 0).cloned(), Some(output_of(index)));
        assert_eq!(quick.get(&peer_key(input)).cloned(), Some(output_of(index)));
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
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            let key = peer_key(black_box(input));
            quick.get(&key).cloned()
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
    group.bench_function("blake3", |b| {
        b.iter(|| {
            let input = &inputs[next % INPUT_COUNT];
            next += 1;
            peer_key(black_box(input))
        })
    });
    group.finish();
}
