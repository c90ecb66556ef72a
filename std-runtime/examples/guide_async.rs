//! docs/guide.md, "An async service awaiting tickets": a tokio service whose request
//! handlers submit runs and await them. `submit_async` waits for room (the spec's `wait`)
//! instead of being refused, and a `Ticket` is a `Future`. A wait bounded by tokio's timer
//! hands the input back with `give_up`. It checks every answer and count, and exits non-zero
//! on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_async`

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flujo_core::graph::{Graph, StepError};
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Executor, Finished, Priority, Refusal, SubmitSpec};

const REQUESTS: u64 = 2_000;

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guide_async: MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    // The pipeline: a gate (open unless the example closes it; a closed gate holds its run in
    // `wait_until`), then the "work".
    let open = Arc::new(AtomicBool::new(true));
    let o = Arc::clone(&open);
    let g = Arc::new(
        Graph::<u64, ()>::build(move |b| {
            let o = Arc::clone(&o);
            let gate = b.task("gate", move |x: u64, cx| {
                if cx.wait_until(|| o.load(Ordering::Acquire)) {
                    Ok(x)
                } else {
                    Err(StepError::timeout("gate stayed closed"))
                }
            });
            let work = b.task("work", |x: u64, _| Ok(x * 3 + 1));
            b.sequence("handle", &[gate, work])
        })
        .map_err(|e| e.to_string())?,
    );

    // A fixed limit of 8 runs in flight, so that the 2000 requests below must wait for room.
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 2;
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.max_limit = 8;
    cfg.adaptive_concurrency.initial_limit = 8;
    cfg.adaptive_concurrency.min_limit = 1;
    let ex = Arc::new(Executor::<u64, ()>::new(cfg).map_err(|e| e.to_string())?);

    // 1. 2000 concurrent handlers, each waiting up to 10 s for room, then awaiting its ticket.
    let wait = SubmitSpec::default()
        .priority(Priority::High)
        .wait(Duration::from_secs(10));
    let handlers: Vec<_> = (0..REQUESTS)
        .map(|x| {
            let (ex, g) = (Arc::clone(&ex), Arc::clone(&g));
            tokio::spawn(async move {
                let ticket = ex
                    .submit_async(&g, x, (), &wait)
                    .await
                    .map_err(|r| format!("{x}: {:?}", r.reason))?;
                // A `Ticket` is a `Future`; bound the await with the runtime's timer.
                match tokio::time::timeout(Duration::from_secs(30), ticket).await {
                    Ok(Ok(Finished::Ran(done))) if done.output == Some(x * 3 + 1) => Ok(()),
                    other => Err(format!("request {x}: {other:?}")),
                }
            })
        })
        .collect();
    for h in handlers {
        h.await.map_err(|e| e.to_string())??;
    }
    let runs = ex.report().runs;
    if (
        runs.completed,
        runs.rejected_over_limit,
        runs.rejected_queue_full,
    ) != (REQUESTS, 0, 0)
    {
        return Err(format!(
            "runs {runs:?}: want every request run and none refused"
        ));
    }

    // 2. A bounded wait: close the gate, fill the 8 places, and ask for a ninth with a wait
    //    that tokio's timer cuts at 50 ms. `give_up` hands the input back.
    open.store(false, Ordering::Release);
    let mut held = Vec::new();
    for x in 0..8 {
        held.push(
            ex.submit_async(&g, x, (), &wait)
                .await
                .map_err(|r| format!("{:?}", r.reason))?,
        );
    }
    let mut ninth = ex.submit_async(&g, 42, (), &wait);
    let refused = match tokio::time::timeout(Duration::from_millis(50), &mut ninth).await {
        Ok(r) => {
            return Err(format!(
                "the ninth got an answer while 8 runs held the limit: {:?}",
                r.is_ok()
            ))
        }
        Err(_elapsed) => match ninth.give_up() {
            Some(Err(rejected)) => rejected,
            other => return Err(format!("give_up: {:?}", other.map(|r| r.is_ok()))),
        },
    };
    if (refused.input, refused.reason) != (42, Refusal::OverLimit) {
        return Err(format!(
            "handed back {} for {:?}",
            refused.input, refused.reason
        ));
    }
    open.store(true, Ordering::Release);
    for (x, ticket) in (0u64..).zip(held) {
        match ticket.await {
            Ok(Finished::Ran(done)) if done.output == Some(x * 3 + 1) => {}
            other => return Err(format!("held run {x}: {other:?}")),
        }
    }
    let runs = ex.report().runs;
    println!(
        "guide_async: {REQUESTS} concurrent requests over a limit of 8, awaited: every one ran \
         ({} completed, {} refused over the limit: the one handed back by give_up)",
        runs.completed, runs.rejected_over_limit
    );
    Ok(())
}
