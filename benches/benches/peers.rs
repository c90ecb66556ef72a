//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "peers/w10_breaker.rs"]
mod w10_breaker;

fn placeholder(_c: &mut Criterion) {}

criterion_group!(benches, placeholder, w10_breaker::benches);
criterion_main!(benches);
