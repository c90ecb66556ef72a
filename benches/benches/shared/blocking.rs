//! The `W13_blocking` workload (issue 16), shared by the criterion group
//! (`peers/w13_blocking.rs`) and the example `w13_blocking` (per-run percentiles): what runs
//! holding a blocking step cost the healthy runs queued beside them.
//!
//! - An executor of [`WORKERS`] workers (the latency preset, adaptive admission off so that
//!   a batch is never refused: its limit is fixed at the preset's `max_limit`, 256).
//! - A [`BlockingPool`] of [`POOL_THREADS`] threads and no queue (see [`pool_config`]).
//! - A batch of [`BATCH`] runs submitted at once, all `Priority::High`: every
//!   [`BLOCKING_EVERY`]-th one (at [`BLOCKING_AT`] within each ten) is a *blocking* run, the
//!   W1 chain whose task [`BLOCKING_TASK`] is a blocking step ([`BlockingPool::step`]) that
//!   holds its blocking thread for [`HOLD`]; the others are *healthy* runs of the W1 chain
//!   itself.
//! - The figure is the healthy runs' time: from the first submission until the last healthy
//!   ticket has completed (and each healthy run's latency, for the example). The blocking
//!   tickets are then waited for, unmeasured (at least [`HOLD`] per batch).
//! - Without the blocking runs (`no_blocking`) the same healthy runs are submitted alone, in
//!   the same order.
//! - Every measured batch, of either kind, starts right after a batch with blocking runs
//!   has ended: [`Blocking::batch`] runs one first, unmeasured, when the last batch had
//!   none. A batch's start depends on what came before it on these VMs, and a batch with
//!   blocking runs ends after a 50 ms tail (its healthy runs long done) that leaves the
//!   workers parked. Measured on the 2-thread VM (`no_blocking`, batch median, noisy):
//!   80-120 µs right after another `no_blocking` batch (workers still spinning, caches
//!   warm), 140-165 µs after a blocking batch's tail, 190-330 µs after 50 ms of sleep. Left
//!   to criterion's back-to-back iterations, the comparison would charge the tail's cold
//!   start to the blocking runs.
//!
//! A blocking step hands its call to the pool and waits for it with `StepCx::wait_until`,
//! which lends the waiting worker to queued runs of its priority or higher (`docs/waiting.md`):
//! the healthy runs queued behind a blocking run are run by the worker it waits on, and a
//! blocking run it picks up waits there in turn, nested (10 per batch, below the nesting
//! bound of 32). Were the call made on the worker itself, two blocking runs would hold both
//! workers for [`HOLD`]. The batch and its submitter are `shared/batch.rs` (shared with
//! `W13_outage`).
#![allow(dead_code)] // each target uses its part

use std::time::{Duration, Instant};

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_runtime::blocking::{BlockingConfig, BlockingPool, CallCx};
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::Executor;

// The batch, its submitter and the W1 chain (also loaded by other targets of the benches
// crate).
#[allow(clippy::duplicate_mod)]
#[path = "batch.rs"]
mod batch;
#[allow(unused_imports)] // each target uses its part
pub use batch::{
    parse_batches, pct_us, w1_graph, BatchTimes, Batches, Summary, BATCH, CHAIN, HEALTHY,
};

/// The executor's workers (the two).
pub const WORKERS: usize = 2;

/// One run in `BLOCKING_EVERY` is a blocking run (10%).
pub const BLOCKING_EVERY: usize = batch::EVERY;

/// Where the blocking run sits within each `BLOCKING_EVERY` runs: healthy runs come before
/// and after every blocking run.
pub const BLOCKING_AT: usize = batch::AT;

/// Blocking runs per batch.
pub const BLOCKING: usize = batch::SPECIAL;

/// How long a blocking step holds its blocking thread.
pub const HOLD: Duration = Duration::from_millis(50);

/// How often a blocking call looks at its stop flag while it holds its thread.
pub const STOP_POLL: Duration = Duration::from_millis(1);

/// The task of the blocking chain that is a blocking step.
pub const BLOCKING_TASK: usize = CHAIN / 2;

/// Threads of the blocking pool: one per blocking run of a batch.
pub const POOL_THREADS: usize = BLOCKING;

/// Whether run `i` of a batch is a blocking run.
pub const fn is_blocking(i: usize) -> bool {
    batch::is_special(i)
}

/// The blocking pool's bounds: [`POOL_THREADS`] threads and no queue.
///
/// A batch's blocking calls all run at once (submitted together, each held for [`HOLD`]),
/// and batches never overlap (a batch ends when its blocking runs have), so at most
/// [`BLOCKING`] calls are in flight: a thread for each means no call waits for a thread (a
/// queued call would lengthen its blocking run, not the figure) and none is refused. With no
/// queue, a call beyond that bound would be refused at once, fail its step and the run (which
/// the batch's check of every output catches) rather than hide as a longer wait.
pub fn pool_config() -> BlockingConfig {
    BlockingConfig {
        threads: POOL_THREADS,
        queue: 0,
    }
}

/// The executor's configuration: the latency preset (the one for request paths, whose
/// latency this workload is about), [`WORKERS`] workers, and adaptive admission off so that
/// a whole batch is admitted (the limit is fixed at the preset's `max_limit`, above
/// [`BATCH`]).
pub fn blocking_config() -> OptimizationConfig {
    batch::config(WORKERS)
}

/// The blocking call: holds its blocking thread for [`HOLD`] (sleeping in slices of
/// [`STOP_POLL`], stopping early when told to), then answers `x + 1`.
fn hold(x: u64, cx: &CallCx<'_>) -> Result<u64, StepError> {
    let until = Instant::now() + HOLD;
    loop {
        if cx.should_stop() {
            return Err(StepError::transient("blocking call told to stop"));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(x + 1);
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
}

/// The blocking run: the W1 chain (100 `x + 1` tasks) whose task [`BLOCKING_TASK`] is a
/// blocking step on `pool` that holds a blocking thread for [`HOLD`] (no retry, no timeout).
pub fn w1_blocking_graph(pool: &BlockingPool) -> Graph<u64, ()> {
    Graph::build(|b| {
        let steps: Vec<_> = (0..CHAIN)
            .map(|i| {
                let name = format!("s{i}");
                if i == BLOCKING_TASK {
                    b.step(&name, pool.step(hold), TaskConfig::new())
                } else {
                    b.task(&name, |x, _| Ok(x + 1))
                }
            })
            .collect();
        b.sequence("W1_blocking", &steps)
    })
    .expect("the blocking chain builds")
}

/// Which runs a batch submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Healthy and blocking runs interleaved (`W13_blocking/flujo`).
    Blocking,
    /// The healthy runs alone, in the same order (`W13_blocking/no_blocking`).
    NoBlocking,
}

/// The `W13_blocking` workload: its executor, its blocking pool, its two graphs, and the
/// submitter's buffers (reused from batch to batch).
pub struct Blocking {
    batches: Batches,
    pool: BlockingPool,
    /// Whether the last batch had blocking runs.
    after_blocking: bool,
}

impl Blocking {
    /// The workload on a fresh executor ([`blocking_config`]) and a fresh blocking pool
    /// ([`pool_config`]).
    pub fn new() -> Self {
        let pool = BlockingPool::new(pool_config()).expect("the blocking pool builds");
        let exec = Executor::new(blocking_config()).expect("executor builds");
        Self {
            batches: Batches::new(exec, w1_blocking_graph(&pool), 0),
            pool,
            after_blocking: false,
        }
    }

    /// The executor.
    pub fn executor(&self) -> &Executor<u64, ()> {
        self.batches.executor()
    }

    /// The blocking pool.
    pub fn pool(&self) -> &BlockingPool {
        &self.pool
    }

    /// Runs one batch of `mix`, inputs from `x0` on, and returns its healthy runs' time (and
    /// each healthy run's latency when `latencies`). Checks every run's output, and that no
    /// run retried (a refused blocking call would fail its run); panics on a refusal or a
    /// wrong answer.
    pub fn batch(&mut self, mix: Mix, x0: u64, latencies: bool) -> BatchTimes {
        if !self.after_blocking {
            // Unmeasured: a batch with blocking runs first, so that every measured batch, of
            // either kind, starts right after one's tail (see the module docs).
            self.batches.batch(true, x0, false);
        }
        self.after_blocking = mix == Mix::Blocking;
        self.batches.batch(mix == Mix::Blocking, x0, latencies)
    }
}

impl Default for Blocking {
    fn default() -> Self {
        Self::new()
    }
}
