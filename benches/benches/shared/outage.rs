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
//! - Every measured batch, of either kind, starts right after a batch with outage runs has
//!   ended: [`Outage::batch`] runs one first, unmeasured, when the last batch had none. A
//!   batch with outage runs ends with a tail of about [`BACKOFF`] (its healthy runs long
//!   done) that leaves the worker parked and its caches cold; criterion's back-to-back
//!   `no_outage` iterations would otherwise start hot, and the comparison would charge that
//!   cold start to the outage (measured: a 1.30-1.86 ratio back to back, noisy, against
//!   1.09-1.15 when both kinds start after a tail, in the example).
//!
//! A backoff lends the waiting worker to queued runs of its priority or higher
//! (`docs/waiting.md`): the healthy runs queued behind an outage run are run by the worker
//! it waits on, and an outage run it picks up waits there in turn, nested (10 per batch,
//! below the nesting bound of 32). When a backoff slept on the worker instead, every
//! healthy run queued behind an outage run waited out its backoff (98-137x). The submitter polls its
//! tickets (`Ticket::try_poll`, yielding between rounds) and never parks, so the wake-up of a
//! parked thread (tens of µs on these VMs) does not enter the figure. The batch and its
//! submitter are `shared/batch.rs` (shared with `W13_blocking`).
#![allow(dead_code)] // each target uses its part

use std::time::Duration;

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::Executor;

// The batch, its submitter and the W1 chain (also loaded by other targets of the benches
// crate).
#[allow(clippy::duplicate_mod)]
#[path = "batch.rs"]
mod batch;
#[allow(unused_imports)] // each target uses its part
pub use batch::{parse_batches, w1_graph, BatchTimes, Batches, Summary, BATCH, CHAIN, HEALTHY};

/// One run in `OUTAGE_EVERY` is an outage run (10%).
pub const OUTAGE_EVERY: usize = batch::EVERY;

/// Where the outage run sits within each `OUTAGE_EVERY` runs: healthy runs come before and
/// after every outage run.
pub const OUTAGE_AT: usize = batch::AT;

/// The outage runs' backoff before their second attempt.
pub const BACKOFF: Duration = Duration::from_millis(1);

/// Whether run `i` of a batch is an outage run.
pub const fn is_outage(i: usize) -> bool {
    batch::is_special(i)
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
    batch::config(workers)
}

/// Which runs a batch submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Healthy and outage runs interleaved (`W13_outage/flujo`).
    Outage,
    /// The healthy runs alone, in the same order (`W13_outage/no_outage`).
    NoOutage,
}

/// The `W13_outage` workload: its executor, its two graphs, and the submitter's buffers
/// (reused from batch to batch).
pub struct Outage {
    batches: Batches,
    /// Whether the last batch had outage runs (see the module docs).
    after_outage: bool,
}

impl Outage {
    /// The workload on a fresh executor of `workers` workers ([`outage_config`]).
    pub fn new(workers: usize) -> Self {
        Self::with_executor(Executor::new(outage_config(workers)).expect("executor builds"))
    }

    /// The workload on `exec`.
    pub fn with_executor(exec: Executor<u64, ()>) -> Self {
        Self {
            batches: Batches::new(exec, w1_outage_graph(), 1),
            after_outage: false,
        }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor<u64, ()> {
        self.batches.executor()
    }

    /// Runs one batch of `mix`, inputs from `x0` on, and returns its healthy runs' time (and
    /// each healthy run's latency when `latencies`). Checks every run's output, and that each
    /// outage run retried exactly once; panics on a refusal or a wrong answer.
    pub fn batch(&mut self, mix: Mix, x0: u64, latencies: bool) -> BatchTimes {
        if !self.after_outage {
            // Unmeasured: a batch with outage runs first, so that every measured batch, of
            // either kind, starts right after one's tail (see the module docs).
            self.batches.batch(true, x0, false);
        }
        self.after_outage = mix == Mix::Outage;
        self.batches.batch(mix == Mix::Outage, x0, latencies)
    }
}
