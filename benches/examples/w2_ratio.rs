//! W2 against W1 in time, interleaved in one process: 40 rounds, each timing 20,000 runs of
//! W1 then 20,000 of W2 (telemetry on, as in the criterion bench), so a slow spell of the
//! machine hits both alike. Prints the min and median ns per step of each, the ratio of the
//! mins and the median of the per-round ratios (the robust figures on a noisy VM; criterion's
//! separate measurements of the two can land in different spells).
//!
//! `cargo run --release -p flujo-benches --example w2_ratio`

use std::hint::black_box;
use std::time::Instant;

use flujo_benches::TickClock;
use flujo_core::graph::Graph;
use flujo_core::interp::{RunOptions, Runner, RunnerConfig};

#[path = "../benches/shared/w1_w2_w8.rs"]
mod shared;
use shared::{w1_graph, w2_graph, w2_runner, CHAIN};

/// Rounds, and runs of each workload per round.
const ROUNDS: usize = 40;
const RUNS: u64 = 20_000;

/// Nanoseconds per step over `RUNS` runs of `g` (checking every output).
fn ns_per_step(g: &Graph<u64, ()>, runner: &mut Runner<u64, ()>) -> f64 {
    let clock = TickClock::new(0);
    let opts = RunOptions::default();
    let start = Instant::now();
    for i in 0..RUNS {
        clock.advance(1);
        let out = runner.run(g, black_box(i), (), &clock, &opts).output;
        assert_eq!(out, Some(i + CHAIN as u64));
    }
    start.elapsed().as_nanos() as f64 / (RUNS * CHAIN as u64) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let (w1, w2) = (w1_graph(), w2_graph());
    let (mut r1, mut r2) = (Runner::new(RunnerConfig::default()), w2_runner());
    let (mut a, mut b) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        a.push(ns_per_step(&w1, &mut r1));
        b.push(ns_per_step(&w2, &mut r2));
    }
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(w1, w2)| w2 / w1).collect();
    println!("W1 ns/step: min {:.2}, median {:.2}", min(&a), median(&a));
    println!("W2 ns/step: min {:.2}, median {:.2}", min(&b), median(&b));
    println!(
        "W2/W1: ratio of the mins {:.2}, median of the per-round ratios {:.2}",
        min(&b) / min(&a),
        median(&ratios)
    );
}
