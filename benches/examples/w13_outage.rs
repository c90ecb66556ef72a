//! The `W13_outage` workload (issue 16) run many times in one process, for what criterion's
//! batch times do not show: each healthy run's latency.
//!
//! One-worker executor (latency preset, adaptive admission off); per batch 100 `High` runs
//! submitted at once, 90 healthy runs of the W1 chain and, in the `outage` batches, 10
//! outage runs interleaved (the W1 chain whose middle task fails its first attempt and
//! backs off 1 ms). `no_outage` batches submit the same healthy runs alone. The two kinds
//! alternate, so a slow spell of the machine hits both alike. Prints, for each kind, the
//! healthy runs' latency (from just before a run's submission until its ticket was seen
//! completed; the submitter polls and never parks) at p50/p90/p99/max, and the ratio of the
//! total healthy times (first submission to last healthy completion, summed over batches:
//! what the criterion gate `W13_outage/flujo <= 1.5 x no_outage` compares).
//!
//! `cargo run --release -p flujo-benches --example w13_outage [-- --batches N]`
//! (default 200 batches of each kind, after 10 of warm-up).
#[path = "../benches/shared/outage.rs"]
mod outage;
use outage::{Mix, Outage, Summary, BACKOFF, BATCH, HEALTHY, OUTAGE_EVERY};

fn main() {
    let batches = outage::parse_batches("w13_outage", 200);
    println!(
        "W13_outage: healthy runs' latency on a 1-worker executor (latency preset, adaptive \
         admission off)"
    );
    println!(
        "per batch: {BATCH} High runs submitted at once, {HEALTHY} healthy W1 chains; `outage` \
         adds 1 in {OUTAGE_EVERY} runs failing a first attempt and backing off {} µs",
        BACKOFF.as_micros()
    );
    println!(
        "{batches} batches of each kind, alternating, after 10 of warm-up; latency = \
         submission to completion, per healthy run"
    );
    let mut w = Outage::new(1);
    let mut x = 0u64;
    for _ in 0..10 {
        w.batch(Mix::Outage, x, false);
        w.batch(Mix::NoOutage, x, false);
        x += BATCH as u64;
    }
    let (mut with, mut without) = (Summary::default(), Summary::default());
    for _ in 0..batches {
        with.add(w.batch(Mix::Outage, x, true));
        without.add(w.batch(Mix::NoOutage, x, true));
        x += BATCH as u64;
    }
    let waits = w.executor().report().waits;
    println!(
        "waits: {} lent their worker, {} held it, {} runs helped",
        waits.lent, waits.held, waits.helped
    );
    println!();
    Summary::print_header("batches");
    with.print("outage");
    without.print("no_outage");
    println!();
    println!(
        "total healthy time: outage {:.1} ms, no_outage {:.1} ms, ratio {:.2} (gate: <= 1.5)",
        with.total.as_secs_f64() * 1e3,
        without.total.as_secs_f64() * 1e3,
        with.total.as_secs_f64() / without.total.as_secs_f64()
    );
}
