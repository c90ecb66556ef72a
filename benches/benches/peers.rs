//! Criterion benches: every workload of `shared/BENCHMARKS.md`, ours beside the peers.
//! `cargo bench -p flujo-benches --bench peers -- <workload id>` runs one workload.
use criterion::{criterion_group, criterion_main};

#[path = "peers/w10_breaker.rs"]
mod w10_breaker;
#[path = "peers/w13_blocking.rs"]
mod w13_blocking;
#[path = "peers/w13_outage.rs"]
mod w13_outage;
#[path = "peers/w14_typed_chain.rs"]
mod w14_typed_chain;
#[cfg(feature = "metrics")]
#[path = "peers/w16_metrics.rs"]
mod w16_metrics;
#[path = "peers/w18_cache_bypass.rs"]
mod w18_cache_bypass;
#[path = "peers/w1_w2_w8.rs"]
mod w1_w2_w8;
#[path = "peers/w3_w4_runtime.rs"]
mod w3_w4_runtime;
#[path = "peers/w5_ring_mpmc.rs"]
mod w5_ring_mpmc;
#[path = "peers/w5_ring_spsc.rs"]
mod w5_ring_spsc;
#[path = "peers/w7_cache.rs"]
mod w7_cache;
#[path = "peers/w9_telemetry.rs"]
mod w9_telemetry;

criterion_group!(
    benches,
    // First: `w1_w2_w8` panics when its `W2_chain_policies/flujo` is filtered out.
    w3_w4_runtime::benches,
    w1_w2_w8::benches,
    w5_ring_spsc::benches,
    w5_ring_mpmc::benches,
    w7_cache::benches,
    w9_telemetry::benches,
    w10_breaker::benches,
    w13_outage::benches,
    w13_blocking::benches,
    w14_typed_chain::benches,
    w18_cache_bypass::benches,
    w16_metrics,
);

/// `W16_metrics_render`, built with the feature `metrics` only (flujo-runtime's `prometheus`):
/// `cargo bench -p flujo-benches --features metrics --bench peers -- W16_metrics_render`.
fn w16_metrics(c: &mut criterion::Criterion) {
    #[cfg(feature = "metrics")]
    w16_metrics::benches(c);
    #[cfg(not(feature = "metrics"))]
    let _ = c;
}
criterion_main!(benches);
