//! The `W17_spike` scenario (issue 19, "Adaptive resources"): which admission algorithm keeps
//! a saturated resource serving through a load spike. One process runs every variant,
//! interleaved in rounds (the first variant of a round rotates), so a slow spell of the
//! machine hits them alike.
//!
//! The server: a 2-worker executor (latency preset, telemetry off) running a one-step graph
//! whose step sleeps a service time that grows with the runs in flight (admitted, not yet
//! ended: queued ones included), a simulated saturated resource (memory, locks, a backend):
//! `BASE` while at most `KNEE` are in flight, plus `SLOPE` of `BASE` for each run above the
//! knee. So its capacity is `WORKERS / BASE` (4,000 runs/s) at the knee and falls as the
//! queue grows: admitting more than the knee only slows everyone.
//!
//! The load: one submitter, open loop (evenly spaced submissions, never waiting for room),
//! 1 `High` : 6 `Normal` : 3 `Low`, each with a deadline of `DEADLINE` (a run still queued at
//! its deadline is aborted, which the limiters see as a drop). `STEADY` runs/s for 1 s, then
//! `--factor` times that (default 8) for 2 s, then `STEADY` again for 3 s.
//!
//! The variants: adaptive admission with the gradient, BBR and AIMD algorithms (the latency
//! preset's bounds, 1..=256 from 16; `bbr` with the presets' headroom 1, TCP BBR's
//! congestion-window gain of 2, and window 256; `bbr_h0.5` with headroom 0.5; `bbr_min8` with
//! a floor of 8, room for a scheduling stall's arrivals at light load), and admission off
//! (`fixed_256`: a fixed limit of 256, what the latency preset admits with it off).
//!
//! Per variant and round it measures: `High` p50/p99 latency of the runs submitted during the
//! spike (submission to the step's end), goodput (runs of any priority submitted during the
//! spike that ended within their deadline, per second of spike), refusals (of the spike's
//! submissions, and of the others: refusals at light load), aborted runs (deadline passed),
//! the mean limit during the spike, and the recovery time: from the end of the spike to the
//! start of the first of `CALM` 50 ms buckets in a row (by submission time) each with no
//! abort and a p99 within twice the steady phase's p99 (and at least within 5 ms). The table
//! gives each figure's median over the rounds and its spread (min..max).
//!
//! `cargo run --release -p flujo-benches --example w17_spike [-- --rounds N] [--factor F]`
//! (default 3 rounds, factor 8: about 110 s). Timings of two threads on a shared VM are noisy,
//! sleeps overshoot by tens of µs: read the spread, and run it more than once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::Graph;
use flujo_runtime::config::{Algorithm, OptimizationConfig, TelemetryLevel};
use flujo_runtime::ticket::Ticket;
use flujo_runtime::{Executor, Finished, Priority, SubmitSpec};

/// Worker threads of the executor.
const WORKERS: usize = 2;
/// Service time at or below the knee.
const BASE: Duration = Duration::from_micros(500);
/// Runs in flight the resource takes without slowing.
const KNEE: usize = 4;
/// Service time added per run in flight above the knee, as a share of `BASE`.
const SLOPE: f64 = 0.1;
/// Each run's deadline, from its submission; goodput counts the runs that end within it.
const DEADLINE: Duration = Duration::from_millis(50);
/// Submissions per second outside the spike (a fifth of the capacity at the knee).
const STEADY: f64 = 800.0;
/// Phase lengths: steady, spike, steady again.
const PHASES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
];
/// Width of the recovery buckets.
const BUCKET: Duration = Duration::from_millis(50);
/// Buckets in a row that must be calm for the recovery to count.
const CALM: usize = 4;

/// The variants, in the order of the table.
const VARIANTS: [&str; 6] = [
    "gradient",
    "bbr",
    "bbr_h0.5",
    "bbr_min8",
    "aimd",
    "fixed_256",
];

/// What became of a submission.
const REFUSED: u64 = 1;
const RAN: u64 = 2;
const ABORTED: u64 = 3;

struct Args {
    rounds: usize,
    factor: f64,
    /// Only this variant (`--only`).
    only: Option<String>,
    /// Print each run's limit samples and recovery buckets (`--trace`).
    trace: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: w17_spike [--rounds N] [--factor F] [--only VARIANT] [--trace]\n\
         variants: {VARIANTS:?}"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        rounds: 3,
        factor: 8.0,
        only: None,
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--trace" {
            a.trace = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--rounds" => a.rounds = value.parse().unwrap_or_else(|_| usage("--rounds N")),
            "--factor" => a.factor = value.parse().unwrap_or_else(|_| usage("--factor F")),
            "--only" if VARIANTS.contains(&value.as_str()) => a.only = Some(value),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.rounds == 0 || !(1.0..=50.0).contains(&a.factor) {
        usage("--rounds must be at least 1, --factor in 1..=50");
    }
    a
}

/// The executor's configuration for a variant.
fn config(variant: &str) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = WORKERS;
    cfg.telemetry.level = TelemetryLevel::Off;
    let a = &mut cfg.adaptive_concurrency;
    match variant {
        "gradient" => a.algorithm = Algorithm::Gradient,
        "bbr" => a.algorithm = Algorithm::Bbr,
        "bbr_h0.5" => {
            a.algorithm = Algorithm::Bbr;
            a.bbr_headroom = 0.5;
        }
        "bbr_min8" => {
            a.algorithm = Algorithm::Bbr;
            a.min_limit = 8;
        }
        "aimd" => a.algorithm = Algorithm::Aimd,
        "fixed_256" => a.enabled = false,
        other => unreachable!("{other}"),
    }
    cfg
}

/// Per-submission records, indexed by the run's input.
struct Records {
    start: Instant,
    /// Submission time, ns from `start`.
    submitted: Vec<AtomicU64>,
    /// End of the step, ns from `start`; 0 if it never ran to the end.
    done: Vec<AtomicU64>,
    /// `REFUSED`, `RAN` or `ABORTED`; 0 while open.
    fate: Vec<AtomicU64>,
    /// The run's step has ended (so the collector does not count it out again).
    stepped: Vec<AtomicBool>,
    /// Runs in flight: counted in before the submission, out at the step's end or, for a
    /// run that did not reach it, when its ticket is seen completed.
    in_flight: AtomicUsize,
}

impl Records {
    fn new(n: usize) -> Self {
        Self {
            start: Instant::now(),
            submitted: (0..n).map(|_| AtomicU64::new(0)).collect(),
            done: (0..n).map(|_| AtomicU64::new(0)).collect(),
            fate: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stepped: (0..n).map(|_| AtomicBool::new(false)).collect(),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// The one-step graph: sleeps the service time the in-flight count asks for.
fn graph(rec: &Arc<Records>) -> Arc<Graph<u64, ()>> {
    let rec = Arc::clone(rec);
    Arc::new(
        Graph::build(move |b| {
            let rec = Arc::clone(&rec);
            b.task("resource", move |id, _| {
                let n = rec.in_flight.load(Ordering::Relaxed);
                let over = n.saturating_sub(KNEE) as f64;
                thread::sleep(BASE.mul_f64(1.0 + SLOPE * over));
                let i = id as usize;
                rec.done[i].store(rec.now(), Ordering::Relaxed);
                rec.stepped[i].store(true, Ordering::Release);
                rec.in_flight.fetch_sub(1, Ordering::Relaxed);
                Ok(id)
            })
        })
        .expect("graph builds"),
    )
}

/// The priority of submission `i`: 1 `High`, 6 `Normal`, 3 `Low` in every 10.
fn priority(i: usize) -> Priority {
    match i % 10 {
        0 => Priority::High,
        1..=6 => Priority::Normal,
        _ => Priority::Low,
    }
}

/// Tickets of admitted runs, with their index, handed from the submitter to the collector.
type Pending = Arc<Mutex<Vec<(usize, Ticket<Finished<u64, ()>>)>>>;

/// One variant's figures for one round.
#[derive(Clone, Copy, Default)]
struct Figures {
    high_p50_ms: f64,
    high_p99_ms: f64,
    goodput: f64,
    /// Refused among the spike's submissions.
    refused_spike: f64,
    /// Refused among the submissions outside the spike (light load).
    refused_quiet: f64,
    aborted: f64,
    limit: f64,
    recovery_ms: f64,
}

/// The `q`-th percentile (0..=100) of sorted ns, in ms; NaN when empty.
fn pct_ms(sorted: &[u64], q: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = (sorted.len() * q / 100).min(sorted.len() - 1);
    sorted[i] as f64 / 1e6
}

/// Runs the scenario once for `variant`.
fn run(variant: &str, factor: f64, trace: bool) -> Figures {
    let rates = [STEADY, STEADY * factor, STEADY];
    let counts: Vec<usize> = PHASES
        .iter()
        .zip(rates)
        .map(|(d, r)| (d.as_secs_f64() * r) as usize)
        .collect();
    let total: usize = counts.iter().sum();
    let exec: Executor<u64, ()> = Executor::new(config(variant)).expect("executor builds");
    let rec = Arc::new(Records::new(total));
    let g = graph(&rec);
    let pending: Pending = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let stop = Arc::new(AtomicBool::new(false));
    // The collector: settles every completed ticket, counting out the runs that did not
    // reach their step's end.
    let collector = {
        let (rec, pending, stop) = (Arc::clone(&rec), Arc::clone(&pending), Arc::clone(&stop));
        thread::spawn(move || {
            let mut mine: Vec<(usize, Ticket<Finished<u64, ()>>)> = Vec::new();
            loop {
                let last = stop.load(Ordering::Acquire);
                mine.append(&mut pending.lock().unwrap());
                mine.retain_mut(|(i, ticket)| match ticket.try_poll() {
                    Ok(None) => true,
                    Ok(Some(finished)) => {
                        let ran = matches!(&finished, Finished::Ran(done)
                            if done.outcome == flujo_core::interp::Outcome::Succeeded);
                        rec.fate[*i].store(if ran { RAN } else { ABORTED }, Ordering::Relaxed);
                        if !rec.stepped[*i].load(Ordering::Acquire) {
                            rec.in_flight.fetch_sub(1, Ordering::Relaxed);
                        }
                        false
                    }
                    Err(e) => panic!("ticket: {e:?}"),
                });
                if last && mine.is_empty() {
                    break;
                }
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    // The submitter (this thread), with the limit sampled during the spike.
    let mut limit_sum = 0.0;
    let mut limit_samples = 0u32;
    let mut limits = Vec::new();
    let mut i = 0;
    let mut phase_start = Duration::ZERO;
    for (p, (&count, rate)) in counts.iter().zip(rates).enumerate() {
        for k in 0..count {
            let due = phase_start + Duration::from_secs_f64(k as f64 / rate);
            loop {
                let now = rec.start.elapsed();
                if now >= due {
                    break;
                }
                let ahead = due - now;
                if ahead > Duration::from_micros(300) {
                    thread::sleep(ahead - Duration::from_micros(200));
                } else {
                    thread::yield_now();
                }
            }
            if p == 1 && k % 16 == 0 {
                limit_sum += f64::from(exec.concurrency_limit());
                limit_samples += 1;
            }
            if trace && k % 64 == 0 {
                limits.push(exec.concurrency_limit());
            }
            rec.in_flight.fetch_add(1, Ordering::Relaxed);
            rec.submitted[i].store(rec.now(), Ordering::Relaxed);
            let spec = SubmitSpec::default()
                .priority(priority(i))
                .deadline(DEADLINE);
            match exec.submit_with(&g, i as u64, (), &spec) {
                Ok(ticket) => pending.lock().unwrap().push((i, ticket)),
                Err(_) => {
                    rec.in_flight.fetch_sub(1, Ordering::Relaxed);
                    rec.fate[i].store(REFUSED, Ordering::Relaxed);
                }
            }
            i += 1;
        }
        phase_start += PHASES[p];
    }
    stop.store(true, Ordering::Release);
    collector.join().expect("collector");
    drop(exec);
    if trace {
        println!("{variant} limits (every 64 submissions): {limits:?}");
    }
    figures(
        &rec,
        &counts,
        limit_sum / f64::from(limit_samples.max(1)),
        trace,
    )
}

/// The figures of one run from its records.
fn figures(rec: &Records, counts: &[usize], limit: f64, trace: bool) -> Figures {
    let spike = counts[0]..counts[0] + counts[1];
    let latency = |i: usize| {
        let done = rec.done[i].load(Ordering::Relaxed);
        (rec.fate[i].load(Ordering::Relaxed) == RAN && done > 0)
            .then(|| done - rec.submitted[i].load(Ordering::Relaxed))
    };
    let mut high: Vec<u64> = spike
        .clone()
        .filter(|&i| priority(i) == Priority::High)
        .filter_map(latency)
        .collect();
    high.sort_unstable();
    let deadline = DEADLINE.as_nanos() as u64;
    let good = spike
        .clone()
        .filter(|&i| latency(i).is_some_and(|l| l <= deadline))
        .count();
    let fates = |f: u64| {
        (0..rec.fate.len())
            .filter(|&i| rec.fate[i].load(Ordering::Relaxed) == f)
            .count() as f64
    };
    let refused_spike = spike
        .clone()
        .filter(|&i| rec.fate[i].load(Ordering::Relaxed) == REFUSED)
        .count() as f64;
    // Recovery: buckets by submission time after the spike's end.
    let mut steady: Vec<u64> = (0..counts[0]).filter_map(latency).collect();
    steady.sort_unstable();
    let steady_p99 = pct_ms(&steady, 99);
    let bound = (2.0 * steady_p99).max(5.0);
    let spike_end = (PHASES[0] + PHASES[1]).as_nanos() as u64;
    let after = counts[0] + counts[1]..rec.fate.len();
    let width = BUCKET.as_nanos() as u64;
    let buckets = (PHASES[2].as_nanos() as u64).div_ceil(width) as usize;
    let mut ok = vec![true; buckets];
    // Why a bucket failed, for `--trace`: a aborted, l latency.
    let mut why = vec!['.'; buckets];
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); buckets];
    for i in after {
        let at = rec.submitted[i]
            .load(Ordering::Relaxed)
            .saturating_sub(spike_end);
        let b = ((at / width) as usize).min(buckets - 1);
        match latency(i) {
            Some(l) => lat[b].push(l),
            // A refusal at light load is counted apart (`refused_quiet`); recovery is about
            // the backlog: aborts and latency.
            None if rec.fate[i].load(Ordering::Relaxed) == REFUSED => {}
            None => {
                ok[b] = false;
                why[b] = 'a';
            }
        }
    }
    for (b, l) in lat.iter_mut().enumerate() {
        l.sort_unstable();
        if !l.is_empty() && pct_ms(l, 99) > bound {
            ok[b] = false;
            if why[b] == '.' {
                why[b] = 'l';
            }
        }
    }
    if trace {
        let marks: String = why.iter().collect();
        println!("steady p99 {steady_p99:.2} ms; buckets after the spike: {marks}");
    }
    let first_ok_run = (0..buckets)
        .find(|&b| b + CALM <= buckets && ok[b..b + CALM].iter().all(|&o| o))
        .unwrap_or(buckets);
    Figures {
        high_p50_ms: pct_ms(&high, 50),
        high_p99_ms: pct_ms(&high, 99),
        goodput: good as f64 / PHASES[1].as_secs_f64(),
        refused_spike,
        refused_quiet: fates(REFUSED) - refused_spike,
        aborted: fates(ABORTED),
        limit,
        recovery_ms: (first_ok_run as u64 * width) as f64 / 1e6,
    }
}

/// `median [min..max]` of a figure over the rounds.
fn spread(values: &mut [f64], decimals: usize) -> String {
    values.sort_by(f64::total_cmp);
    let mid = values[values.len() / 2];
    let (lo, hi) = (values[0], values[values.len() - 1]);
    format!("{mid:.decimals$} [{lo:.decimals$}..{hi:.decimals$}]")
}

fn main() {
    let args = parse_args();
    let rates = [STEADY, STEADY * args.factor, STEADY];
    println!(
        "W17_spike: {WORKERS}-worker executor, one step of {} µs while <= {KNEE} runs in \
         flight, +{:.0}% per run above; deadline {} ms; 1 High : 6 Normal : 3 Low",
        BASE.as_micros(),
        SLOPE * 100.0,
        DEADLINE.as_millis()
    );
    println!(
        "load: {:.0}/s for {} s, spike {:.0}/s (x{}) for {} s, {:.0}/s for {} s; {} rounds, \
         variants interleaved",
        rates[0],
        PHASES[0].as_secs(),
        rates[1],
        args.factor,
        PHASES[1].as_secs(),
        rates[2],
        PHASES[2].as_secs(),
        args.rounds
    );
    let mut all: Vec<Vec<Figures>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..args.rounds {
        for k in 0..VARIANTS.len() {
            let v = (round + k) % VARIANTS.len();
            if args.only.as_ref().is_some_and(|o| o != VARIANTS[v]) {
                continue;
            }
            let f = run(VARIANTS[v], args.factor, args.trace);
            eprintln!(
                "round {round} {:<10} high p50 {:.2} ms p99 {:.2} ms, goodput {:.0}/s, \
                 refused {:.0} in the spike, {:.0} outside, aborted {:.0}, limit {:.1}, \
                 recovery {:.0} ms",
                VARIANTS[v],
                f.high_p50_ms,
                f.high_p99_ms,
                f.goodput,
                f.refused_spike,
                f.refused_quiet,
                f.aborted,
                f.limit,
                f.recovery_ms
            );
            all[v].push(f);
        }
    }
    println!();
    println!("median [min..max] over {} rounds", args.rounds);
    println!(
        "{:<10} {:>20} {:>20} {:>20} {:>20} {:>16} {:>16} {:>20} {:>16}",
        "variant",
        "High p50 (ms)",
        "High p99 (ms)",
        "goodput (/s)",
        "refused in spike",
        "refused outside",
        "aborted",
        "limit in spike",
        "recovery (ms)"
    );
    for (v, figs) in all.iter().enumerate() {
        if figs.is_empty() {
            continue;
        }
        let col = |f: fn(&Figures) -> f64, d: usize| {
            let mut xs: Vec<f64> = figs.iter().map(f).collect();
            spread(&mut xs, d)
        };
        println!(
            "{:<10} {:>20} {:>20} {:>20} {:>20} {:>16} {:>16} {:>20} {:>16}",
            VARIANTS[v],
            col(|f| f.high_p50_ms, 2),
            col(|f| f.high_p99_ms, 2),
            col(|f| f.goodput, 0),
            col(|f| f.refused_spike, 0),
            col(|f| f.refused_quiet, 0),
            col(|f| f.aborted, 0),
            col(|f| f.limit, 1),
            col(|f| f.recovery_ms, 0),
        );
    }
}
