//! Submit-to-completion of a 10-step chain (the `submit_latency` workload), flujo beside its
//! peers, in one process. Two parts:
//!
//! - latency: for 1 and 2 workers, one submitter times each submit-then-wait of flujo
//!   (`Executor::submit` + `Ticket::wait`), `rayon_spawn_channel` (`ThreadPool::spawn` + a
//!   bounded crossbeam channel) and `tokio_spawn` (`Runtime::spawn` + `block_on` of the
//!   `JoinHandle`), in rounds of 200 runs of each (the first peer of a round rotates), so a
//!   slow spell of the machine hits all three alike. Prints p50/p90/p99 per peer and pool
//!   size, and flujo/rayon at p50 and p99.
//! - cpu: 16 submitter threads doing submit-then-wait on 2 workers for a fixed time, per
//!   peer; prints runs/s and the process's CPU time per run (utime + stime from
//!   `/proc/self/stat`), so what waiting costs in CPU shows beside what it saves in latency.
//!   flujo runs with adaptive admission off here (a fixed limit of 256 in flight), so no
//!   submission is refused: the figure is the hand-off alone.
//!
//! `cargo run --release -p flujo-benches --example submit_latency [-- --samples N]
//! [--warmup N] [--cpu-secs S] [--submitters N] [--mode all|latency|cpu]`
//!
//! Defaults: 20,000 timed samples per peer and pool size after 2,000 of warm-up, 3 s per
//! peer in the cpu part: about 10-20 s in all on a 2-core VM (11 s here). Two-thread figures on a
//! shared VM are noisy: run it several times.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use flujo_runtime::Executor;

#[path = "../benches/shared/w3_w4.rs"]
mod shared;
#[path = "../benches/shared/submit.rs"]
mod submit;
use shared::{exec_config, rayon_pool};
use submit::{
    chain10, flujo_submit_wait, rayon_spawn_channel, reply_channel, tokio_runtime, tokio_spawn,
    try_flujo_submit_wait, STEPS,
};

/// Timed runs of one peer per round, before the next peer's.
const BATCH: usize = 200;

/// The peers, in the order of the table.
const PEERS: [&str; 3] = ["flujo_submit", "rayon_spawn_channel", "tokio_spawn"];

struct Args {
    samples: usize,
    warmup: usize,
    cpu_secs: f64,
    submitters: usize,
    latency: bool,
    cpu: bool,
    /// `--mode cycle`: the peer whose cycle is run untimed (for `strace -c`, `perf stat`,
    /// callgrind: counts per cycle).
    cycle: Option<usize>,
    workers: usize,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: submit_latency [--samples N] [--warmup N] [--cpu-secs S] \
         [--submitters N] [--mode all|latency|cpu|cycle] [--peer NAME] [--workers N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        samples: 20_000,
        warmup: 2_000,
        cpu_secs: 3.0,
        submitters: 16,
        latency: true,
        cpu: true,
        cycle: None,
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--samples" => a.samples = value().parse().unwrap_or_else(|_| usage("--samples N")),
            "--warmup" => a.warmup = value().parse().unwrap_or_else(|_| usage("--warmup N")),
            "--cpu-secs" => a.cpu_secs = value().parse().unwrap_or_else(|_| usage("--cpu-secs S")),
            "--submitters" => {
                a.submitters = value().parse().unwrap_or_else(|_| usage("--submitters N"))
            }
            "--mode" => match value().as_str() {
                "all" => (a.latency, a.cpu) = (true, true),
                "latency" => (a.latency, a.cpu) = (true, false),
                "cpu" => (a.latency, a.cpu) = (false, true),
                "cycle" => (a.latency, a.cpu) = (false, false),
                other => usage(&format!("unknown mode {other}")),
            },
            "--peer" => {
                let peer = value();
                a.cycle = Some(
                    PEERS
                        .iter()
                        .position(|p| *p == peer)
                        .unwrap_or_else(|| usage(&format!("unknown peer {peer}"))),
                );
            }
            "--workers" => a.workers = value().parse().unwrap_or_else(|_| usage("--workers N")),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if !a.latency && !a.cpu && a.cycle.is_none() {
        usage("--mode cycle needs --peer flujo_submit|rayon_spawn_channel|tokio_spawn");
    }
    if a.samples == 0 || a.submitters == 0 || !(a.cpu_secs > 0.0 && a.cpu_secs <= 600.0) {
        usage("--samples and --submitters must be at least 1, --cpu-secs in (0, 600]");
    }
    a
}

/// The `q`-th percentile (0..=100) of sorted nanoseconds, in microseconds.
fn pct_us(sorted: &[u64], q: usize) -> f64 {
    let i = (sorted.len() * q / 100).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

/// Times `runs` calls of `f` on fresh inputs (checking each output), appending nanoseconds
/// to `out` when it is given.
fn time_runs(
    f: &mut dyn FnMut(u64) -> u64,
    next: &mut u64,
    runs: usize,
    out: Option<&mut Vec<u64>>,
) {
    let mut out = out;
    for _ in 0..runs {
        let x = *next;
        *next += 1;
        let start = Instant::now();
        let y = f(x);
        let ns = start.elapsed().as_nanos() as u64;
        assert_eq!(y, x + STEPS, "the chain's output");
        if let Some(v) = out.as_deref_mut() {
            v.push(ns);
        }
    }
}

fn latency(args: &Args) {
    println!(
        "latency: one submitter, {} timed runs per peer and pool size after {} of warm-up, \
         interleaved in rounds of {BATCH}",
        args.samples, args.warmup
    );
    println!(
        "{:<22}{:>8}{:>10}{:>10}{:>10}   (µs)",
        "peer", "workers", "p50", "p90", "p99"
    );
    let graph = Arc::new(chain10());
    for workers in [1usize, 2] {
        let exec: Executor<u64, ()> =
            Executor::new(exec_config(workers, Some(64))).expect("executor builds");
        let pool = rayon_pool(workers);
        let reply = reply_channel();
        let rt = tokio_runtime(workers);
        let mut runs: [Box<dyn FnMut(u64) -> u64 + '_>; 3] = [
            Box::new(|x| flujo_submit_wait(&exec, &graph, x)),
            Box::new(|x| rayon_spawn_channel(&pool, &reply, x)),
            Box::new(|x| tokio_spawn(&rt, x)),
        ];
        let mut next = 0u64;
        for f in runs.iter_mut() {
            time_runs(f.as_mut(), &mut next, args.warmup, None);
        }
        let mut samples: [Vec<u64>; 3] = Default::default();
        for v in samples.iter_mut() {
            v.reserve_exact(args.samples);
        }
        let mut round = 0;
        while samples[0].len() < args.samples {
            let n = BATCH.min(args.samples - samples[0].len());
            for k in 0..3 {
                let p = (round + k) % 3;
                time_runs(runs[p].as_mut(), &mut next, n, Some(&mut samples[p]));
            }
            round += 1;
        }
        drop(runs);
        drop((exec, pool, rt));
        settle();
        let mut p50 = [0.0; 3];
        let mut p99 = [0.0; 3];
        for (p, v) in samples.iter_mut().enumerate() {
            v.sort_unstable();
            p50[p] = pct_us(v, 50);
            p99[p] = pct_us(v, 99);
            println!(
                "{:<22}{:>8}{:>10.2}{:>10.2}{:>10.2}",
                PEERS[p],
                workers,
                p50[p],
                pct_us(v, 90),
                p99[p]
            );
        }
        println!(
            "{:<22}{:>8}{:>10.2}{:>10}{:>10.2}   (ratio)",
            "flujo/rayon",
            workers,
            p50[0] / p50[1],
            "",
            p99[0] / p99[1]
        );
    }
}

/// The process's CPU time so far (user + system), in seconds, from `/proc/self/stat`.
fn process_cpu_secs(ticks_per_sec: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / ticks_per_sec
}

/// `getconf CLK_TCK` (100 when it cannot be run).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs `submitters` threads, each calling `run` (with fresh inputs) until `secs` pass.
/// Returns (runs, refusals, wall seconds, process CPU seconds).
fn load<F>(submitters: usize, secs: f64, tck: f64, run: F) -> (u64, u64, f64, f64)
where
    F: Fn(u64) -> Option<u64> + Sync,
{
    let stop = AtomicBool::new(false);
    let start = Barrier::new(submitters + 1);
    let (runs, refused, wall, cpu) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..submitters as u64)
            .map(|t| {
                let (stop, start, run) = (&stop, &start, &run);
                s.spawn(move || {
                    let (mut runs, mut refused) = (0u64, 0u64);
                    let mut x = t << 40;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        match run(x) {
                            Some(y) => {
                                assert_eq!(y, x + STEPS, "the chain's output");
                                runs += 1;
                                x += 1;
                            }
                            None => {
                                refused += 1;
                                std::thread::yield_now();
                            }
                        }
                    }
                    (runs, refused)
                })
            })
            .collect();
        start.wait();
        let (t0, c0) = (Instant::now(), process_cpu_secs(tck));
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let mut total = (0, 0);
        for h in handles {
            let (r, f) = h.join().expect("a submitter panicked");
            total = (total.0 + r, total.1 + f);
        }
        (
            total.0,
            total.1,
            t0.elapsed().as_secs_f64(),
            process_cpu_secs(tck) - c0,
        )
    });
    (runs, refused, wall, cpu)
}

/// Lets the threads of a dropped pool finish before the next peer's measurement.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

fn cpu(args: &Args) {
    const WORKERS: usize = 2;
    let tck = clock_ticks();
    println!(
        "\ncpu: {} submitters, submit-then-wait on {WORKERS} workers for {} s per peer; \
         process CPU from /proc/self/stat ({tck} ticks/s)",
        args.submitters, args.cpu_secs
    );
    println!(
        "{:<22}{:>12}{:>12}{:>10}{:>14}{:>12}{:>10}",
        "peer", "runs", "runs/s", "CPU s", "CPU µs/run", "cores busy", "refused"
    );
    let graph = Arc::new(chain10());
    let print = |name: &str, (runs, refused, wall, cpu): (u64, u64, f64, f64)| {
        println!(
            "{:<22}{:>12}{:>12.0}{:>10.2}{:>14.2}{:>12.2}{:>10}",
            name,
            runs,
            runs as f64 / wall,
            cpu,
            cpu * 1e6 / runs.max(1) as f64,
            cpu / wall,
            refused
        );
    };
    let warm = args.warmup.min(1000) as u64;

    let mut cfg = exec_config(WORKERS, Some(64));
    cfg.adaptive_concurrency.enabled = false;
    let exec: Executor<u64, ()> = Executor::new(cfg).expect("executor builds");
    (0..warm).for_each(|x| assert_eq!(flujo_submit_wait(&exec, &graph, x), x + STEPS));
    let r = load(args.submitters, args.cpu_secs, tck, |x| {
        try_flujo_submit_wait(&exec, &graph, x).ok()
    });
    drop(exec);
    settle();
    print(PEERS[0], r);

    let pool = rayon_pool(WORKERS);
    (0..warm).for_each(|x| assert_eq!(rayon_spawn_channel(&pool, &reply_channel(), x), x + STEPS));
    let r = {
        // One reply channel per submitter thread.
        thread_local! {
            static REPLY: (crossbeam_channel::Sender<u64>, crossbeam_channel::Receiver<u64>)
                = reply_channel();
        }
        load(args.submitters, args.cpu_secs, tck, |x| {
            Some(REPLY.with(|reply| rayon_spawn_channel(&pool, reply, x)))
        })
    };
    drop(pool);
    settle();
    print(PEERS[1], r);

    let rt = tokio_runtime(WORKERS);
    (0..warm).for_each(|x| assert_eq!(tokio_spawn(&rt, x), x + STEPS));
    let r = load(args.submitters, args.cpu_secs, tck, |x| {
        Some(tokio_spawn(&rt, x))
    });
    drop(rt);
    settle();
    print(PEERS[2], r);
}

/// The machine's load averages (other processes compete for the cores: say so beside the
/// figures).
fn print_load(when: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("load average {when}: {}", load.join(" "));
}

/// `--mode cycle`: `--warmup` then `--samples` untimed submit-then-wait cycles of one peer on
/// `--workers` workers, for tools that count per cycle: `strace -c -f` (futex calls), `perf
/// stat -e instructions`, `valgrind --tool=callgrind`. Subtract a run with `--samples 0`, or
/// divide the difference of two runs by the difference of their samples.
fn cycle(args: &Args, peer: usize) {
    let graph = Arc::new(chain10());
    let mut next = 0u64;
    let total = args.warmup + args.samples;
    match peer {
        0 => {
            let exec: Executor<u64, ()> =
                Executor::new(exec_config(args.workers, Some(64))).expect("executor builds");
            time_runs(
                &mut |x| flujo_submit_wait(&exec, &graph, x),
                &mut next,
                total,
                None,
            );
        }
        1 => {
            let pool = rayon_pool(args.workers);
            let reply = reply_channel();
            time_runs(
                &mut |x| rayon_spawn_channel(&pool, &reply, x),
                &mut next,
                total,
                None,
            );
        }
        _ => {
            let rt = tokio_runtime(args.workers);
            time_runs(&mut |x| tokio_spawn(&rt, x), &mut next, total, None);
        }
    }
    println!(
        "{} cycles of {} on {} workers",
        total, PEERS[peer], args.workers
    );
}

fn main() {
    let args = parse_args();
    if let Some(peer) = args.cycle.filter(|_| !args.latency && !args.cpu) {
        cycle(&args, peer);
        return;
    }
    print_load("at start");
    if args.latency {
        latency(&args);
    }
    if args.cpu {
        cpu(&args);
    }
    print_load("at end");
}
