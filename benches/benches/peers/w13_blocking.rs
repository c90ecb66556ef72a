//! `W13_blocking` (issue 16): healthy `High` runs of the W1 chain on a two-worker executor,
//! interleaved with `High` blocking runs (10%) whose middle task is a blocking step holding
//! a blocking-pool thread for 50 ms (the workload: `shared/blocking.rs`).
//!
//! - `flujo`: one batch of 100 runs (90 healthy, 10 blocking) per iteration; the time is the
//!   healthy runs' (first submission to the last healthy ticket completed).
//! - `no_blocking`: the same 90 healthy runs alone, in the same order.
//!
//! Each measured batch starts right after a batch with blocking runs has ended (for
//! `no_blocking`, one run unmeasured before it), so that both functions start from the same
//! state (`shared/blocking.rs` says why).
//!
//! Information only, no gate (the issue: "information on this VM's two threads"); its goal,
//! healthy p99 within 2x of `no_blocking`, is printed per run by the example:
//! `cargo run --release -p flujo-benches --example w13_blocking`.
use std::time::Duration;

use criterion::{Criterion, SamplingMode};

#[path = "../shared/blocking.rs"]
mod blocking;
use blocking::{Blocking, Mix};

/// `W13_blocking` (two workers, information).
pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("W13_blocking");
    // An iteration of either function lasts at least 50 ms of wall time (the blocking runs
    // of its batch, or of the unmeasured batch before it, are waited for), of which about
    // 0.2 ms is measured. Criterion sizes its iterations by the wall time of the warm-up, so
    // 10 flat samples in 2 s keep the group to about 6 s (each function: 0.5 s of warm-up
    // and 10 samples of 3 or 4 iterations).
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut w = Blocking::new();
    // Checked before measuring: every output right, no run retried (`batch` checks both on
    // every batch).
    w.batch(Mix::Blocking, 0, false);
    w.batch(Mix::NoBlocking, 0, false);
    for (id, mix) in [("flujo", Mix::Blocking), ("no_blocking", Mix::NoBlocking)] {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|i| w.batch(mix, i * blocking::BATCH as u64, false).healthy)
                    .sum()
            })
        });
    }
    group.finish();
}
