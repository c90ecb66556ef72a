//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "peers/w5_ring_spsc.rs"]
mod w5_ring_spsc;

fn placeholder(_c: &mut Criterion) {}

criterion_group!(benches, placeholder, w5_ring_spsc::benches);
criterion_main!(benches);
