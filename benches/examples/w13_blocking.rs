//! The `W13_blocking` workload (issue 16) run many times in one process, for what criterion's
//! batch times do not show: each healthy run's latency, and its p99 against the goal.
//!
//! Two-worker executor (latency preset, adaptive admission off) and a blocking pool of 10
//! threads; per batch 100 `High` runs submitted at once, 90 healthy runs of the W1 chain
//! and, in the `blocking` batches, 10 blocking runs interleaved (the W1 chain whose middle
//! task is a blocking step holding a blocking-pool thread for 50 ms, while the worker it
//! waits on lends itself to queued runs). `no_blocking` batches submit the same healthy runs
//! alone. The two kinds alternate, so a slow spell of the machine hits both alike, and each
//! measured batch starts right after a batch with blocking runs has ended (one is run,
//! unmeasured, before each measured `blocking` batch: `shared/blocking.rs` says why). Prints,
//! for each kind, the healthy runs' latency (from just before a run's submission until its
//! ticket was seen completed; the submitter polls and never parks) at p50/p90/p99/max, the
//! ratio of the p99s (the goal: at most 2, information on this VM's two threads) and
//! of the total healthy times (first submission to last healthy completion, summed over
//! batches: what the criterion group `W13_blocking` measures), the executor's waits and the
//! blocking pool's counts.
//!
//! `cargo run --release -p flujo-benches --example w13_blocking [-- --batches N]`
//! (default 100 batches of each kind, after 5 of warm-up: about 11 s, as a batch with
//! blocking runs lasts at least 50 ms and a round of the two kinds runs three). The p99
//! pools every batch's 90 healthy runs, so one slow batch in a hundred (a spell of the
//! machine) moves it; more batches make it steadier. The median batch's healthy time (its
//! slowest healthy run) is printed beside it.
#[path = "../benches/shared/blocking.rs"]
mod blocking;
use blocking::{
    pct_us, Blocking, Mix, Summary, BATCH, BLOCKING_EVERY, HEALTHY, HOLD, POOL_THREADS, WORKERS,
};

/// Warm-up batches of each kind.
const WARM_UP: usize = 5;

fn main() {
    let batches = blocking::parse_batches("w13_blocking", 100);
    println!(
        "W13_blocking: healthy runs' latency on a {WORKERS}-worker executor (latency preset, \
         adaptive admission off), blocking pool of {POOL_THREADS} threads"
    );
    println!(
        "per batch: {BATCH} High runs submitted at once, {HEALTHY} healthy W1 chains; \
         `blocking` adds 1 in {BLOCKING_EVERY} runs holding a blocking step for {} ms",
        HOLD.as_millis()
    );
    println!(
        "{batches} batches of each kind, alternating, after {WARM_UP} of warm-up; latency = \
         submission to completion, per healthy run"
    );
    let mut w = Blocking::new();
    let mut x = 0u64;
    for _ in 0..WARM_UP {
        w.batch(Mix::Blocking, x, false);
        w.batch(Mix::NoBlocking, x, false);
        x += BATCH as u64;
    }
    let (mut with, mut without) = (Summary::default(), Summary::default());
    for _ in 0..batches {
        with.add(w.batch(Mix::Blocking, x, true));
        without.add(w.batch(Mix::NoBlocking, x, true));
        x += BATCH as u64;
    }
    let waits = w.executor().report().waits;
    println!(
        "waits: {} lent their worker, {} held it, {} runs helped",
        waits.lent, waits.held, waits.helped
    );
    let s = w.pool().stats();
    println!(
        "blocking pool: {} calls accepted, {} completed, {} refused (full), {} panicked, {} \
         abandoned; {} threads alive",
        s.accepted, s.completed, s.refused_full, s.panicked, s.abandoned, s.threads
    );
    println!();
    Summary::print_header("batches");
    with.print("blocking");
    without.print("no_blocking");
    println!();
    println!(
        "healthy p99: blocking {:.1} µs, no_blocking {:.1} µs, ratio {:.2} (goal: <= 2, \
         information)",
        with.latency_us(99),
        without.latency_us(99),
        with.latency_us(99) / without.latency_us(99)
    );
    println!(
        "median batch's healthy time: blocking {:.1} µs, no_blocking {:.1} µs, ratio {:.2}",
        pct_us(&with.batch_times, 50),
        pct_us(&without.batch_times, 50),
        pct_us(&with.batch_times, 50) / pct_us(&without.batch_times, 50)
    );
    println!(
        "total healthy time: blocking {:.1} ms, no_blocking {:.1} ms, ratio {:.2}",
        with.total.as_secs_f64() * 1e3,
        without.total.as_secs_f64() * 1e3,
        with.total.as_secs_f64() / without.total.as_secs_f64()
    );
}
