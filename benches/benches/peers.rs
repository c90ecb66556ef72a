//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "peers/w9_telemetry.rs"]
mod w9_telemetry;

fn placeholder(_c: &mut Criterion) {}

criterion_group!(benches, placeholder, w9_telemetry::benches);
criterion_main!(benches);
