//! The `submit_latency` workload and its peers, shared by the criterion group
//! (`peers/w3_w4_runtime.rs`) and the example `submit_latency` (percentiles and CPU cost):
//! a 10-step chain of `x + 1`, submitted from outside the pool and waited for.
//!
//! - flujo: [`Executor::submit`] of a 10-task sequence, then [`wait_flujo`] on the ticket;
//! - `rayon_spawn_channel`: the same 10 steps in plain Rust, through `ThreadPool::spawn`,
//!   the result sent back on a bounded crossbeam channel (capacity 1, one per submitter,
//!   reused, as flujo reuses its ticket cells);
//! - `tokio_spawn`: the same 10 steps in an `async` block, `Runtime::spawn` on a
//!   multi-thread runtime, then `block_on` of the `JoinHandle` from the submitting thread.
#![allow(dead_code)] // each target uses its part

use std::hint::black_box;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use flujo_core::graph::Graph;
use flujo_runtime::ticket::Ticket;
use flujo_runtime::{Executor, Finished, Priority, Rejected};

/// Steps of the chain.
pub const STEPS: u64 = 10;

/// The flujo chain: a sequence of 10 tasks, each `x + 1`.
pub fn chain10() -> Graph<u64, ()> {
    Graph::build(|b| {
        let steps: Vec<_> = (0..STEPS)
            .map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1)))
            .collect();
        b.sequence("chain10", &steps)
    })
    .expect("chain builds")
}

/// How the flujo submitter waits for its ticket: the one place to switch the waiting
/// strategy (`Ticket::wait` today).
#[inline]
pub fn wait_flujo(ticket: Ticket<Finished<u64, ()>>) -> u64 {
    match ticket.wait().expect("the ticket completes") {
        Finished::Ran(done) => done.output.expect("the run succeeds"),
        other => panic!("{other:?}"),
    }
}

/// Submits one run of `graph` on `x` at `Normal` priority and waits for its output.
/// Panics if the submission is refused (see [`try_flujo_submit_wait`]).
pub fn flujo_submit_wait(exec: &Executor<u64, ()>, graph: &Arc<Graph<u64, ()>>, x: u64) -> u64 {
    try_flujo_submit_wait(exec, graph, x).unwrap_or_else(|r| panic!("refused: {:?}", r.reason))
}

/// [`flujo_submit_wait`], handing back a refusal.
pub fn try_flujo_submit_wait(
    exec: &Executor<u64, ()>,
    graph: &Arc<Graph<u64, ()>>,
    x: u64,
) -> Result<u64, Rejected<u64, ()>> {
    let ticket = exec.submit(graph, x, (), Priority::Normal)?;
    Ok(wait_flujo(ticket))
}

/// One step of the peers' chain, called through a pointer the compiler cannot see through.
fn add_one(x: u64) -> u64 {
    x + 1
}

/// The peers' chain: 10 opaque calls of `x + 1`.
pub fn plain_chain(x: u64) -> u64 {
    let mut x = x;
    for _ in 0..STEPS {
        let step: fn(u64) -> u64 = black_box(add_one);
        x = step(black_box(x));
    }
    x
}

/// A submitter's reply channel for the rayon peer: bounded, capacity 1.
pub fn reply_channel() -> (Sender<u64>, Receiver<u64>) {
    crossbeam_channel::bounded(1)
}

/// The rayon peer: spawns the chain on `pool`, which sends the result on `reply`; the
/// submitter blocks on the receiving end.
pub fn rayon_spawn_channel(
    pool: &rayon::ThreadPool,
    reply: &(Sender<u64>, Receiver<u64>),
    x: u64,
) -> u64 {
    let tx = reply.0.clone();
    pool.spawn(move || tx.send(plain_chain(x)).expect("the submitter waits"));
    reply.1.recv().expect("the job replies")
}

/// A multi-thread tokio runtime with `workers` worker threads (0: tokio's default, one
/// per core).
pub fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.build().expect("tokio runtime builds")
}

/// The tokio peer: `Runtime::spawn` of the chain, then `block_on` of its `JoinHandle`.
pub fn tokio_spawn(rt: &tokio::runtime::Runtime, x: u64) -> u64 {
    let handle = rt.spawn(async move { plain_chain(x) });
    rt.block_on(handle).expect("the task completes")
}
