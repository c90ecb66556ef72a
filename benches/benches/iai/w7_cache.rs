//! `W7_cache_hit` in instructions: a loop of `HITS` hits (key + lookup + output clone) on a
//! warm cache; Ir per hit = total / `HITS`. The cache is built in the setup, which is not
//! counted.
//!
//! `W7_cache_key` (information, no limit): the key alone, ours beside a plain `blake3::hash`
//! of the same 64 bytes, `HITS` times.
// The group ids are the workload ids of BENCHMARKS.md, not snake-case names.
#![allow(non_snake_case)]
use std::hint::black_box;

use flujo_core::cache::{CacheKey, FixedCache, StepFingerprint};
// The bench functions are named after the peers, so the crates are named from the root.
use ::moka::sync::Cache as MokaCache;
use ::quick_cache::unsync::Cache as QuickCache;
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

/// Hits measured per benchmark run. Measured: 709 Ir per hit (flujo), limit about 1.15x.
const HITS: usize = 1000;
const INPUT_COUNT: usize = 256;
const CAPACITY: usize = 4096;

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

fn peer_key(input: &[u8; 64]) -> [u8; 32] {
    *blake3::hash(input).as_bytes()
}

/// The sum of `Output.0[0]` over `HITS` hits cycling through the inputs.
fn expected_sum() -> u64 {
    (0..HITS).map(|i| (i % INPUT_COUNT) as u64).sum()
}

struct FlujoState {
    inputs: Vec<[u8; 64]>,
    fingerprint: StepFingerprint,
    cache: FixedCache<Output>,
}

fn setup_flujo() -> FlujoState {
    let inputs = inputs();
    let fingerprint = StepFingerprint::builder("w7-step", 1)
        .setting("mode", &1u8)
        .build();
    let mut cache = FixedCache::new(CAPACITY).expect("capacity");
    for (index, input) in inputs.iter().enumerate() {
        let evicted = cache.insert(CacheKey::new(&fingerprint, input), output_of(index), 0);
        assert!(evicted.is_none());
    }
    FlujoState {
        inputs,
        fingerprint,
        cache,
    }
}

fn setup_quick_cache() -> (Vec<[u8; 64]>, QuickCache<[u8; 32], Output>) {
    let inputs = inputs();
    let mut cache = QuickCache::new(CAPACITY);
    for (index, input) in inputs.iter().enumerate() {
        cache.insert(peer_key(input), output_of(index));
    }
    (inputs, cache)
}

fn setup_moka() -> (Vec<[u8; 64]>, MokaCache<[u8; 32], Output>) {
    let inputs = inputs();
    let cache = MokaCache::new(CAPACITY as u64);
    for (index, input) in inputs.iter().enumerate() {
        cache.insert(peer_key(input), output_of(index));
    }
    (inputs, cache)
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, 815_000)]))
)]
#[bench::hits(setup_flujo())]
fn flujo(mut state: FlujoState) -> u64 {
    let mut sum = 0;
    for i in 0..HITS {
        let key = CacheKey::new(
            &state.fingerprint,
            black_box(&state.inputs[i % INPUT_COUNT]),
        );
        let output = state.cache.get(&key, 0).cloned().expect("hit");
        sum += output.0[0];
    }
    assert_eq!(sum, expected_sum());
    sum
}

#[library_benchmark]
#[bench::hits(setup_quick_cache())]
fn quick_cache(state: (Vec<[u8; 64]>, QuickCache<[u8; 32], Output>)) -> u64 {
    let (inputs, cache) = state;
    let mut sum = 0;
    for i in 0..HITS {
        let key = peer_key(black_box(&inputs[i % INPUT_COUNT]));
        let output = cache.get(&key).cloned().expect("hit");
        sum += output.0[0];
    }
    assert_eq!(sum, expected_sum());
    sum
}

#[library_benchmark]
#[bench::hits(setup_moka())]
fn moka(state: (Vec<[u8; 64]>, MokaCache<[u8; 32], Output>)) -> u64 {
    let (inputs, cache) = state;
    let mut sum = 0;
    for i in 0..HITS {
        let key = peer_key(black_box(&inputs[i % INPUT_COUNT]));
        let output = cache.get(&key).expect("hit");
        sum += output.0[0];
    }
    assert_eq!(sum, expected_sum());
    sum
}

library_benchmark_group!(
    name = W7_cache_hit;
    benchmarks = flujo, quick_cache, moka
);

fn setup_key() -> (Vec<[u8; 64]>, StepFingerprint) {
    (inputs(), setup_flujo().fingerprint)
}

#[library_benchmark]
#[bench::keys(setup_key())]
fn flujo_key(state: (Vec<[u8; 64]>, StepFingerprint)) -> u8 {
    let (inputs, fingerprint) = state;
    let mut fold = 0u8;
    for i in 0..HITS {
        fold ^= CacheKey::new(&fingerprint, black_box(&inputs[i % INPUT_COUNT])).as_bytes()[0];
    }
    fold
}

#[library_benchmark]
#[bench::keys(inputs())]
fn blake3_key(inputs: Vec<[u8; 64]>) -> u8 {
    let mut fold = 0u8;
    for i in 0..HITS {
        fold ^= peer_key(black_box(&inputs[i % INPUT_COUNT]))[0];
    }
    fold
}

library_benchmark_group!(
    name = W7_cache_key;
    benchmarks = flujo_key, blake3_key
);
