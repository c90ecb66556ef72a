//! What the `W13_*` workloads (issue 16) share: an executor whose admission never refuses a
//! batch, a batch of [`BATCH`] `High` runs submitted at once, every [`EVERY`]-th one (at
//! [`AT`] within each ten) *special* (a run backing off in `W13_outage`, a run holding a
//! blocking step in `W13_blocking`) and the others *healthy* runs of the W1 chain, and the
//! submitter that measures the healthy runs (`shared/outage.rs`, `shared/blocking.rs`).
//!
//! - The figure is the healthy runs' time: from the first submission until the last healthy
//!   ticket has completed, and each healthy run's latency when asked for. The special
//!   tickets are then waited for, unmeasured.
//! - Without the special runs the same healthy runs are submitted alone, in the same order.
//! - The submitter polls its tickets (`Ticket::try_poll`, yielding between rounds) and never
//!   parks, so the wake-up of a parked thread (tens of µs on these VMs) does not enter the
//!   figure.
//!
//! [`Summary`] gathers many batches' latencies for the examples (`w13_outage`,
//! `w13_blocking`).
#![allow(dead_code)] // each target uses its part

use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::graph::Graph;
use flujo_core::telemetry::Counter;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::ticket::Ticket;
use flujo_runtime::{Executor, Finished, Priority};

// The W1 chain (also loaded by other targets of the benches crate).
#[allow(clippy::duplicate_mod)]
#[path = "w1_w2_w8.rs"]
mod w1;
pub use w1::{w1_graph, CHAIN};

/// Runs per batch (healthy and special together).
pub const BATCH: usize = 100;

/// One run in `EVERY` is special (10%).
pub const EVERY: usize = 10;

/// Where the special run sits within each `EVERY` runs: healthy runs come before and after
/// every special run.
pub const AT: usize = 5;

const _: () = assert!(AT < EVERY && BATCH.is_multiple_of(EVERY));

/// Healthy runs per batch.
pub const HEALTHY: usize = BATCH - BATCH / EVERY;

/// Special runs per batch.
pub const SPECIAL: usize = BATCH / EVERY;

/// Whether run `i` of a batch is special.
pub const fn is_special(i: usize) -> bool {
    i % EVERY == AT
}

/// The executor's configuration: the latency preset (the one for request paths, whose
/// latency these workloads are about), `workers` workers, and adaptive admission off so that
/// a whole batch is admitted (the limit is fixed at the preset's `max_limit`, above
/// [`BATCH`]).
pub fn config(workers: usize) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = workers;
    cfg.adaptive_concurrency.enabled = false;
    assert!(cfg.adaptive_concurrency.max_limit as usize >= BATCH);
    assert!(cfg.queues.capacity[Priority::High.index()] >= BATCH);
    cfg
}

/// The times of one batch.
#[derive(Clone, Debug, Default)]
pub struct BatchTimes {
    /// From the first submission until the last healthy ticket completed.
    pub healthy: Duration,
    /// Per healthy run, in submission order: from just before its submission until its
    /// ticket was seen completed (filled only when asked for).
    pub latencies: Vec<Duration>,
}

/// A ticket the submitter polls: the run's index in the batch, when it was submitted, and
/// the ticket (`None` once completed).
struct Pending {
    index: usize,
    submitted: Instant,
    ticket: Option<Ticket<Finished<u64, ()>>>,
}

/// An executor, the healthy and the special graph, and the submitter's buffers (reused from
/// batch to batch).
pub struct Batches {
    exec: Executor<u64, ()>,
    healthy: Arc<Graph<u64, ()>>,
    special: Arc<Graph<u64, ()>>,
    special_retries: u64,
    healthy_tickets: Vec<Pending>,
    special_tickets: Vec<Pending>,
}

impl Batches {
    /// Batches on `exec`: healthy runs of the W1 chain, special runs of `special`, which
    /// must answer what the W1 chain answers (`x + CHAIN`), after exactly `special_retries`
    /// retries.
    pub fn new(exec: Executor<u64, ()>, special: Graph<u64, ()>, special_retries: u64) -> Self {
        Self {
            exec,
            healthy: Arc::new(w1_graph()),
            special: Arc::new(special),
            special_retries,
            healthy_tickets: Vec::with_capacity(BATCH),
            special_tickets: Vec::with_capacity(BATCH),
        }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor<u64, ()> {
        &self.exec
    }

    /// Runs one batch, with the special runs when `special`, inputs from `x0` on, and returns
    /// its healthy runs' time (and each healthy run's latency when `latencies`). Checks every
    /// run's output and retry count; panics on a refusal or a wrong answer.
    pub fn batch(&mut self, special: bool, x0: u64, latencies: bool) -> BatchTimes {
        self.healthy_tickets.clear();
        self.special_tickets.clear();
        let start = Instant::now();
        for i in 0..BATCH {
            let is_special = is_special(i);
            if is_special && !special {
                continue;
            }
            let graph = if is_special {
                &self.special
            } else {
                &self.healthy
            };
            let submitted = Instant::now();
            let ticket = self
                .exec
                .submit(graph, x0 + i as u64, (), Priority::High)
                .unwrap_or_else(|r| panic!("run {i} refused: {}", r.reason));
            let into = if is_special {
                &mut self.special_tickets
            } else {
                &mut self.healthy_tickets
            };
            into.push(Pending {
                index: i,
                submitted,
                ticket: Some(ticket),
            });
        }
        let mut times = BatchTimes::default();
        if latencies {
            times
                .latencies
                .resize(self.healthy_tickets.len(), Duration::ZERO);
        }
        let last = poll_all(&mut self.healthy_tickets, x0, 0, &mut times.latencies);
        times.healthy = last.saturating_duration_since(start);
        // Unmeasured: the special runs end too, with their own retry count.
        poll_all(&mut self.special_tickets, x0, self.special_retries, &mut []);
        times
    }
}

/// Polls `pending` until every ticket completed (yielding the CPU between rounds, never
/// parking), checks each output (`x0 + index + CHAIN`) and retry count, writes each run's
/// latency into `latencies` when it is not empty, and returns when the last one was seen.
fn poll_all(pending: &mut [Pending], x0: u64, retries: u64, latencies: &mut [Duration]) -> Instant {
    let mut left = pending.len();
    let mut last = Instant::now();
    while left > 0 {
        for (k, p) in pending.iter_mut().enumerate() {
            let Some(ticket) = p.ticket.as_mut() else {
                continue;
            };
            let Some(finished) = ticket.try_poll().expect("the ticket completes") else {
                continue;
            };
            let now = Instant::now();
            p.ticket = None;
            left -= 1;
            last = now;
            if let Some(l) = latencies.get_mut(k) {
                *l = now.saturating_duration_since(p.submitted);
            }
            match finished {
                Finished::Ran(done) => {
                    let want = x0 + p.index as u64 + CHAIN as u64;
                    assert_eq!(done.output, Some(want), "run {}: {done:?}", p.index);
                    assert_eq!(
                        done.counters.get(Counter::Retries),
                        retries,
                        "run {}",
                        p.index
                    );
                }
                other => panic!("run {}: {other:?}", p.index),
            }
        }
        if left > 0 {
            std::thread::yield_now();
        }
    }
    last
}

/// The `q`-th percentile (0..=100) of sorted durations, in microseconds.
pub fn pct_us(sorted: &[Duration], q: usize) -> f64 {
    let i = (sorted.len() * q / 100).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

/// What one kind of batch measured over many batches (the examples).
#[derive(Default)]
pub struct Summary {
    /// Every healthy run's latency (sorted by [`Summary::sort`]).
    pub latencies: Vec<Duration>,
    /// The sum of the batches' healthy times.
    pub total: Duration,
    /// Each batch's healthy time (sorted by [`Summary::sort`]).
    pub batch_times: Vec<Duration>,
}

impl Summary {
    /// Adds one batch.
    pub fn add(&mut self, t: BatchTimes) {
        self.total += t.healthy;
        self.batch_times.push(t.healthy);
        self.latencies.extend(t.latencies);
    }

    /// Sorts the latencies and batch times (before the percentiles are read).
    pub fn sort(&mut self) {
        self.latencies.sort_unstable();
        self.batch_times.sort_unstable();
    }

    /// The `q`-th percentile of the healthy runs' latency, in microseconds (sorted first).
    pub fn latency_us(&self, q: usize) -> f64 {
        pct_us(&self.latencies, q)
    }

    /// Prints the header of [`Summary::print`]'s lines.
    pub fn print_header(kind: &str) {
        println!(
            "{kind:<12}{:>10}{:>10}{:>10}{:>10}{:>14}   (µs)",
            "p50", "p90", "p99", "max", "batch p50"
        );
    }

    /// Sorts, then prints one line: the latency at p50/p90/p99/max and the median batch's
    /// healthy time, in microseconds.
    pub fn print(&mut self, name: &str) {
        self.sort();
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

/// The `--batches N` argument of the examples (`default` without it); exits with a usage
/// line naming `example` on anything else.
pub fn parse_batches(example: &str, default: usize) -> usize {
    let usage = |msg: &str| -> ! {
        eprintln!("{msg}\nusage: {example} [--batches N]");
        std::process::exit(2)
    };
    let mut batches = default;
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
