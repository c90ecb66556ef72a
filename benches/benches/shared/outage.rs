//! The `W13_outage` workload (issue 16), shared by the criterion group
//! (`peers/w13_outage.rs`) and the example `w13_outage` (per-run percentiles): what runs
//! backing off during an outage cost the healthy runs queued beside them.
//!
//! - An executor of one worker (two in the information variant; the latency preset,
//!   adaptive admission off so that a batch is never refused: its limit is fixed at the
//!   preset's `max_limit`, 256).
//! - A batch of [`BATCH`] runs submitted at once, all [`Priority::High`]: every
//!   [`OUTAGE_EVERY`]-th one (at [`OUTAGE_AT`] within each ten) is an *outage* run, the W1
//!   chain whose middle task fails its first attempt (a transient error) and is retried
//!   after a constant backoff of exactly [`BACKOFF`] (no jitter); the others are *healthy*
//!   runs of the W1 chain itself.
//! - The figure is the healthy runs' time: from the first submission until the last healthy
//!   ticket has completed. The outage tickets are then waited for, unmeasured.
//! - Without the outage (`no_outage`) the same healthy runs are submitted alone, in the same
//!   order.
//!
//! Today a backoff sleeps on the pool thread, so on one worker every healthy run queued
//! behind an outage run waits out its backoff (`docs/waiting.md`). The submitter polls its
//! tickets (`Ticket::try_poll`, yielding between rounds) and never parks, so the wake-up of a
//! parked thread (tens of µs on these VMs) does not enter the figure.
#![allow(dead_code)] // each target uses its part

use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::ticket::Ticket;
use flujo_runtime::{Executor, Finished, Priority};

// The W1 chain (also loaded by other targets of the benches crate).
#[allow(clippy::duplicate_mod)]
#[path = "w1_w2_w8.rs"]
mod w1;
pub use w1::{w1_graph, CHAIN};

/// Runs per batch (healthy and outage together).
pub const BATCH: usize = 100;

/// One run in `OUTAGE_EVERY` is an outage run (10%).
pub const OUTAGE_EVERY: usize = 10;

/// Where the outage run sits within each `OUTAGE_EVERY` runs: healthy runs come before and
/// after every outage run.
pub const OUTAGE_AT: usize = 5;

const _: () = assert!(OUTAGE_AT < OUTAGE_EVERY && BATCH.is_multiple_of(OUTAGE_EVERY));

/// The outage runs' backoff before their second attempt.
pub const BACKOFF: Duration = Duration::from_millis(1);

/// Healthy runs per batch.
pub const HEALTHY: usize = BATCH - BATCH / OUTAGE_EVERY;

/// Whether run `i` of a batch is an outage run.
pub const fn is_outage(i: usize) -> bool {
    i % OUTAGE_EVERY == OUTAGE_AT
}

/// The task of the outage chain that fails its first attempt.
pub const FAILING_TASK: usize = CHAIN / 2;

/// The outage run: the W1 chain (100 `x + 1` tasks) whose task [`FAILING_TASK`] fails its
/// first attempt with a transient error and is retried once after exactly [`BACKOFF`].
pub fn w1_outage_graph() -> Graph<u64, ()> {
    let retry = RetryPolicy::new(
        2,
        Backoff::Constant {
            delay_ticks: ticks(BACKOFF),
        },
    )
    .expect("a valid retry policy");
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| {
                let name = format!("s{i}");
                if i == FAILING_TASK {
                    b.task_with(
                        &name,
                        |x, cx| {
                            if cx.attempt() == 1 {
                                Err(StepError::transient("outage: first attempt fails"))
                            } else {
                                Ok(x + 1)
                            }
                        },
                        TaskConfig::new().retry(retry),
                    )
                } else {
                    b.task(&name, |x, _| Ok(x + 1))
                }
            })
            .collect();
        b.sequence("W1_outage", &steps)
    })
    .expect("the outage chain builds")
}

/// The executor's configuration: the latency preset (the one for request paths, whose
/// latency this workload is about), `workers` workers (1 for the gate), and adaptive
/// admission off so that a whole batch is admitted (the limit is fixed at the preset's
/// `max_limit`, above [`BATCH`]).
pub fn outage_config(workers: usize) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = workers;
    cfg.adaptive_concurrency.enabled = false;
    assert!(cfg.adaptive_concurrency.max_limit as usize >= BATCH);
    assert!(cfg.queues.capacity[Priority::High.index()] >= BATCH);
    cfg
}

/// Which runs a batch submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Healthy and outage runs interleaved (`W13_outage/flujo`).
    Outage,
    /// The healthy runs alone, in the same order (`W13_outage/no_outage`).
    NoOutage,
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

/// The `W13_outage` workload: its executor, its two graphs, and the submitter's buffers
/// (reused from batch to batch).
pub struct Outage {
    exec: Executor<u64, ()>,
    healthy: Arc<Graph<u64, ()>>,
    outage: Arc<Graph<u64, ()>>,
    healthy_tickets: Vec<Pending>,
    outage_tickets: Vec<Pending>,
}

impl Outage {
    /// The workload on a fresh executor of `workers` workers ([`outage_config`]).
    pub fn new(workers: usize) -> Self {
        Self::with_executor(Executor::new(outage_config(workers)).expect("executor builds"))
    }

    /// The workload on `exec`.
    pub fn with_executor(exec: Executor<u64, ()>) -> Self {
        Self {
            exec,
            healthy: Arc::new(w1_graph()),
            outage: Arc::new(w1_outage_graph()),
            healthy_tickets: Vec::with_capacity(BATCH),
            outage_tickets: Vec::with_capacity(BATCH),
        }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor<u64, ()> {
        &self.exec
    }

    /// Runs one batch of `mix`, inputs from `x0` on, and returns its healthy runs' time (and
    /// each healthy run's latency when `latencies`). Checks every run's output, and that each
    /// outage run retried exactly once; panics on a refusal or a wrong answer.
    pub fn batch(&mut self, mix: Mix, x0: u64, latencies: bool) -> BatchTimes {
        self.healthy_tickets.clear();
        self.outage_tickets.clear();
        let start = Instant::now();
        for i in 0..BATCH {
            let outage = is_outage(i);
            if outage && mix == Mix::NoOutage {
                continue;
            }
            let graph = if outage { &self.outage } else { &self.healthy };
            let submitted = Instant::now();
            let ticket = self
                .exec
                .submit(graph, x0 + i as u64, (), Priority::High)
                .unwrap_or_else(|r| panic!("run {i} refused: {}", r.reason));
            let into = if outage {
                &mut self.outage_tickets
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
        // Unmeasured: the outage runs end too, each after exactly one retry.
        poll_all(&mut self.outage_tickets, x0, 1, &mut []);
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
