//! What `Ticket::wait`'s spin buys and costs, on the 10-task chain of the `submit_latency`
//! bench.
//!
//! `cargo run --release -p flujo-runtime --example ticket_spin_cost -- latency [rounds]`:
//! submit-then-wait on a 1-worker executor, round-robin in blocks of 200 over the wait
//! flavours (`wait`, with the default spin; `wait_parked`, none; `wait_with_spin` of each bound
//! in the `TURNS` variable, in µs, comma-separated, default `256,1024`), beside
//! `rayon::ThreadPool::spawn` answering through a bounded `std::sync::mpsc` channel (a rough
//! stand-in for the bench's rayon + crossbeam peer: std's channel is crossbeam's algorithm).
//! Prints the median, 90th percentile and mean of each.
//!
//! `cargo run --release -p flujo-runtime --example ticket_spin_cost -- cpu [seconds]`: 16
//! submitter threads do submit-then-wait on a 2-worker executor for `seconds` (default 3) per
//! flavour, and print runs per second and the process's CPU time per run (utime + stime from
//! `/proc/self/stat`, Linux only, in 10 ms ticks).
//!
//! On a machine shared with other busy processes the figures say more about the neighbours
//! than about the ticket; `chrt -f 10` (as root) runs the process ahead of them, as on a
//! dedicated machine.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::graph::Graph;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::ticket::{Ticket, SPIN_TURNS};
use flujo_runtime::{Executor, Finished, Priority};

type Out = Ticket<Finished<u64, ()>>;

/// The `submit_latency` chain: ten tasks adding 1 each.
fn chain10() -> Arc<Graph<u64, ()>> {
    Arc::new(
        Graph::build(|b| {
            let steps: Vec<_> = (0..10)
                .map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1)))
                .collect();
            b.sequence("chain10", &steps)
        })
        .expect("chain builds"),
    )
}

/// The bench's executor: the latency preset, telemetry off, inline cutoff 64.
fn executor(workers: usize) -> Executor<u64, ()> {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = workers;
    cfg.telemetry.level = TelemetryLevel::Off;
    cfg.inline_cutoff.max_cost = 64;
    Executor::new(cfg).expect("executor builds")
}

fn output(finished: Finished<u64, ()>) -> u64 {
    match finished {
        Finished::Ran(done) => done.output.expect("the run succeeds"),
        other => panic!("{other:?}"),
    }
}

/// Submits a run of the chain on `x` and waits with `turns` of spin (`None`: `wait`).
fn submit_wait(ex: &Executor<u64, ()>, g: &Arc<Graph<u64, ()>>, x: u64, turns: Option<u32>) -> u64 {
    let ticket: Out = ex
        .submit(g, x, (), Priority::Normal)
        .unwrap_or_else(|_| panic!("admitted"));
    output(
        match turns {
            None => ticket.wait(),
            Some(turns) => ticket.wait_with_spin(Duration::from_micros(turns.into())),
        }
        .expect("completes"),
    )
}

/// The process's CPU time (user + system), from `/proc/self/stat` in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command's closing parenthesis; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn latency(rounds: usize) {
    let g = chain10();
    let ex = executor(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let flavours: Vec<(String, Option<u32>)> = [
        ("wait (default spin)".to_string(), None),
        ("wait_parked".to_string(), Some(0)),
    ]
    .into_iter()
    .chain(
        tune_turns()
            .into_iter()
            .map(|t| (format!("spin {t} µs"), Some(t))),
    )
    .collect();
    let n = flavours.len() + 1;
    let mut samples: Vec<Vec<u32>> = vec![Vec::with_capacity(rounds); n];
    const BLOCK: usize = 200;
    for block in 0..rounds.div_ceil(BLOCK) {
        for (f, (_, turns)) in flavours.iter().enumerate() {
            for i in 0..BLOCK {
                let x = (block * BLOCK + i) as u64;
                let t = Instant::now();
                assert_eq!(submit_wait(&ex, &g, x, *turns), x + 10);
                samples[f].push(t.elapsed().as_nanos() as u32);
            }
        }
        // The peer: spawn on a 1-thread rayon pool, answer through a bounded channel.
        let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
        for i in 0..BLOCK {
            let x = (block * BLOCK + i) as u64;
            let t = Instant::now();
            let tx = tx.clone();
            pool.spawn(move || {
                let mut y = x;
                for _ in 0..10 {
                    y = std::hint::black_box(y + 1);
                }
                tx.send(y).unwrap();
            });
            assert_eq!(rx.recv().unwrap(), x + 10);
            samples[n - 1].push(t.elapsed().as_nanos() as u32);
        }
    }
    println!(
        "submit-then-wait, 10-task chain, 1 worker ({} rounds each; SPIN_TURNS = {SPIN_TURNS}):",
        samples[0].len()
    );
    let names = flavours
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(["rayon spawn + sync_channel"]);
    for (name, s) in names.zip(&mut samples) {
        s.sort_unstable();
        let mean = s.iter().map(|&v| u64::from(v)).sum::<u64>() / s.len() as u64;
        println!(
            "  {name:28} p50 {:>8.2} µs  p90 {:>8.2} µs  mean {:>8.2} µs",
            f64::from(s[s.len() / 2]) / 1e3,
            f64::from(s[s.len() * 9 / 10]) / 1e3,
            mean as f64 / 1e3
        );
    }
}

fn cpu(seconds: u64) {
    let g = chain10();
    let ex = Arc::new(executor(2));
    println!("16 submitters, 2 workers, {seconds} s each:");
    let mut flavours = vec![
        ("wait (spin)".to_string(), None),
        ("wait_parked".to_string(), Some(0)),
    ];
    flavours.extend(
        tune_turns()
            .into_iter()
            .map(|t| (format!("spin {t} µs"), Some(t))),
    );
    for (name, turns) in flavours {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (ex, g, stop, runs) = (
                    Arc::clone(&ex),
                    Arc::clone(&g),
                    Arc::clone(&stop),
                    Arc::clone(&runs),
                );
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // A refusal (over the limit) is retried: count only the runs.
                        if let Ok(ticket) = ex.submit(&g, n, (), Priority::Normal) {
                            let finished = match turns {
                                None => ticket.wait(),
                                Some(t) => ticket.wait_with_spin(Duration::from_micros(t.into())),
                            };
                            assert_eq!(output(finished.expect("completes")), n + 10);
                            n += 1;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    runs.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (cpu_time() - cpu0).as_secs_f64();
        let runs = runs.load(Ordering::Relaxed) as f64;
        println!(
            "  {name:12} {:>9.0} runs/s  CPU {:>5.2} s of {:.2} s wall  {:>6.2} µs CPU per run",
            runs / wall,
            cpu,
            wall,
            cpu / runs * 1e6
        );
    }
}

fn tune_turns() -> Vec<u32> {
    std::env::var("TURNS")
        .map(|v| v.split(',').map(|t| t.parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![256, 1024])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(|s| s.parse::<u64>().expect("a number"));
    match args.get(1).map(String::as_str) {
        Some("latency") => latency(arg(2).unwrap_or(20_000) as usize),
        Some("cpu") | None => cpu(arg(2).unwrap_or(3)),
        Some(other) => panic!("unknown mode {other}: latency or cpu"),
    }
}
