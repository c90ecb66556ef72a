//! `W13_outage` (issue 16): healthy `High` runs of the W1 chain on a one-worker executor,
//! interleaved with `High` outage runs (10%) that fail their first attempt and back off
//! 1 ms (the workload: `shared/outage.rs`).
//!
//! - `flujo`: one batch of 100 runs (90 healthy, 10 outage) per iteration; the time is the
//!   healthy runs' (first submission to the last healthy ticket completed).
//! - `no_outage`: the same 90 healthy runs alone, in the same order.
//! - `W13_outage_2thread`: the same on two workers (information).
//!
//! The gate (`.ci/check_ratio.py`, run by `.ci/run`): `W13_outage/flujo <= 1.5 x
//! W13_outage/no_outage`, on criterion's medians. Per-run percentiles:
//! `cargo run --release -p flujo-benches --example w13_outage`.
use std::time::Duration;

use criterion::{Criterion, SamplingMode};

#[path = "../shared/outage.rs"]
mod outage;
use outage::{Mix, Outage};

/// `W13_outage` (one worker, the gate) and `W13_outage_2thread` (two, information).
pub fn benches(c: &mut Criterion) {
    group(c, "W13_outage", 1);
    group(c, "W13_outage_2thread", 2);
}

fn group(c: &mut Criterion, name: &str, workers: usize) {
    let mut group = c.benchmark_group(name);
    // A batch takes about 0.1 ms without the outage, and 10 ms or more while backoffs hold
    // the worker: few samples, flat sampling, and short phases keep each function to a few
    // seconds (CI runs the one-worker group).
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut w = Outage::new(workers);
    // Checked before measuring: every output right, each outage run retried once (`batch`
    // checks both on every batch).
    w.batch(Mix::Outage, 0, false);
    w.batch(Mix::NoOutage, 0, false);
    for (id, mix) in [("flujo", Mix::Outage), ("no_outage", Mix::NoOutage)] {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|i| w.batch(mix, i * outage::BATCH as u64, false).healthy)
                    .sum()
            })
        });
    }
    group.finish();
}
