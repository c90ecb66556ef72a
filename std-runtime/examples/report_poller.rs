//! What a report poller costs a run: W1 (a 100-task `x + 1` chain) through `Executor::run` on
//! the calling thread, timed alone and while a second thread calls `Executor::report()` every
//! millisecond, in interleaved rounds (alone, then polled, each round) so a slow spell of the
//! machine hits both alike (as `benches/examples/w2_ratio.rs` does). A third timing per round
//! has the second thread wake every millisecond and do nothing: on a VM, a second busy vCPU
//! alone slows the first, and that part is not the report's. Prints, per preset, the min and
//! median ns per run of each, their ratios and the median of the per-round ratios, and how
//! long the reports took. The goal is a slowdown under 5%; on a shared 2-core VM the figures
//! are noisy, so this is information, not a gate.
//!
//! `cargo run --release -p flujo-runtime --example report_poller [-- --rounds 20 --runs 20000]`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::graph::Graph;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::Executor;

/// Tasks in the chain.
const CHAIN: u64 = 100;

/// How often the poller asks for a report.
const POLL_PERIOD: Duration = Duration::from_millis(1);

/// W1: a chain of `CHAIN` tasks, each `x + 1`.
fn w1_graph() -> Graph<u64, ()> {
    Graph::build(|b| {
        let tasks: Vec<_> = (0..CHAIN)
            .map(|i| b.task(&format!("t{i}"), |x: u64, _: &mut _| Ok(x + 1)))
            .collect();
        b.sequence("w1", &tasks)
    })
    .expect("a valid graph")
}

/// Nanoseconds per run over `runs` runs of `g` (checking every output).
fn ns_per_run(ex: &Executor<u64, ()>, g: &Graph<u64, ()>, runs: u64) -> f64 {
    let start = Instant::now();
    for i in 0..runs {
        let out = ex.run(g, black_box(i), ()).expect("no panic").output;
        assert_eq!(out, Some(i + CHAIN));
    }
    start.elapsed().as_nanos() as f64 / runs as f64
}

/// What the poller saw: reports taken and how long each took, in ns.
struct Polled {
    report_ns: Vec<f64>,
}

/// Times `runs` runs while another thread wakes every [`POLL_PERIOD`] and, when `report`,
/// calls `report()`.
fn polled(
    ex: &Arc<Executor<u64, ()>>,
    g: &Graph<u64, ()>,
    runs: u64,
    report: bool,
) -> (f64, Polled) {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (ex, stop) = (Arc::clone(ex), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut report_ns = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if report {
                    let start = Instant::now();
                    black_box(ex.report());
                    report_ns.push(start.elapsed().as_nanos() as f64);
                }
                std::thread::sleep(POLL_PERIOD);
            }
            Polled { report_ns }
        })
    };
    let ns = ns_per_run(ex, g, runs);
    stop.store(true, Ordering::Relaxed);
    (ns, poller.join().expect("the poller does not panic"))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// The value of `--name N` in the arguments, or `default`.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let rounds = arg("--rounds", 20) as usize;
    let runs = arg("--runs", 20_000);
    let g = w1_graph();
    println!(
        "W1 through Executor::run, {rounds} rounds x {runs} runs, alone then polled every 1 ms"
    );
    for (name, cfg) in [
        ("latency", OptimizationConfig::latency()),
        ("throughput", OptimizationConfig::throughput()),
    ] {
        let ex = Arc::new(Executor::new(cfg).expect("a preset is valid"));
        ns_per_run(&ex, &g, runs / 10 + 1); // warm-up
        let (mut alone, mut woken, mut with) = (Vec::new(), Vec::new(), Vec::new());
        let mut report_ns = Vec::new();
        for _ in 0..rounds {
            alone.push(ns_per_run(&ex, &g, runs));
            woken.push(polled(&ex, &g, runs, false).0);
            let (ns, p) = polled(&ex, &g, runs, true);
            with.push(ns);
            report_ns.extend(p.report_ns);
        }
        let ratios: Vec<f64> = alone.iter().zip(&with).map(|(a, w)| w / a).collect();
        let own: Vec<f64> = woken.iter().zip(&with).map(|(o, w)| w / o).collect();
        println!("{name}:");
        println!(
            "  alone   ns/run: min {:.0}, median {:.0}",
            min(&alone),
            median(&alone)
        );
        println!(
            "  woken   ns/run: min {:.0}, median {:.0}   (a second thread waking, no report)",
            min(&woken),
            median(&woken)
        );
        println!(
            "  polled  ns/run: min {:.0}, median {:.0}",
            min(&with),
            median(&with)
        );
        println!(
            "  polled/alone: ratio of the mins {:.3}, of the medians {:.3}, median per-round {:.3}",
            min(&with) / min(&alone),
            median(&with) / median(&alone),
            median(&ratios)
        );
        println!(
            "  polled/woken (the report's own cost): median per-round {:.3}",
            median(&own)
        );
        println!(
            "  reports: {} taken, median {:.1} µs, max {:.1} µs",
            report_ns.len(),
            median(&report_ns) / 1e3,
            max(&report_ns) / 1e3
        );
        let runs_seen = ex.report().runs;
        assert_eq!(runs_seen.in_flight, 0);
        assert_eq!(runs_seen.completed, runs_seen.inline);
    }
}
