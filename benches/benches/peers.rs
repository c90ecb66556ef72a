//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
use criterion::{criterion_group, criterion_main};

#[path = "peers/w6_pool.rs"]
mod w6_pool;

criterion_group!(benches, w6_pool::benches);
criterion_main!(benches);
