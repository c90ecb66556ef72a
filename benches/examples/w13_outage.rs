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
use std::time::Duration;

#[path = "../benches/shared/outage.rs"]
mod outage;
use outage::{Mix, Outage, BACKOFF, BATCH, HEALTHY, OUTAGE_EVERY};

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: w13_outage [--batches N]");
    std::process::exit(2)
}

fn parse_batches() -> usize {
    let mut batches = 200;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--batches" => {
                batches = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--batches needs a count of at least 1"))
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    batches
}

/// The `q`-th percentile (0..=100) of sorted durations, in microseconds.
fn pct_us(sorted: &[Duration], q: usize) -> f64 {
    let i = (sorted.len() * q / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

/// What one kind of batch measured.
#[derive(Default)]
struct Kind {
    latencies: Vec<Duration>,
    total: Duration,
    batch_times: Vec<Duration>,
}

impl Kind {
    fn add(&mut self, t: outage::BatchTimes) {
        self.total += t.healthy;
        self.batch_times.push(t.healthy);
        self.latencies.extend(t.latencies);
    }

    fn print(&mut self, name: &str) {
        self.latencies.sort_unstable();
        self.batch_times.sort_unstable();
        let l = &self.latencies;
        println!(
            "{name:<12}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>14.1}",
            pct_us(l, 50),
            pct_us(l, 90),
            pct_us(l, 99),
            l.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
            pct_us(&self.batch_times, 50),
        );
    }
}

fn main() {
    let batches = parse_batches();
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
    let (mut with, mut without) = (Kind::default(), Kind::default());
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
    println!(
        "{:<12}{:>10}{:>10}{:>10}{:>10}{:>14}   (µs)",
        "batches", "p50", "p90", "p99", "max", "batch p50"
    );
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
