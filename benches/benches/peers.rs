//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
use criterion::{criterion_group, criterion_main};

#[path = "peers/w7_cache.rs"]
mod w7_cache;

criterion_group!(benches, w7_cache::benches);
criterion_main!(benches);
