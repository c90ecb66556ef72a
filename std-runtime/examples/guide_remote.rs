//! docs/guide.md, "Steps that call flaky remote services": a `quote` step that asks a remote
//! service (a thread here) and waits for its answer with `StepCx::wait_until`, behind a
//! retry with exponential backoff, an attempt timeout, a circuit breaker and a fallback;
//! then a `ledger` step that blocks, run on a `BlockingPool`. Phases: healthy with flaky
//! first attempts, an outage (the breaker opens, the fallback answers), recovery (a probe
//! closes it), a run deadline, and one worker freed by a waiting run. It checks every output
//! and count, and exits non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_remote`

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use flujo_core::graph::{Graph, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::{Backoff, BreakerConfig, RetryPolicy};
use flujo_runtime::blocking::{BlockingConfig, BlockingPool};
use flujo_runtime::breakers::{BreakerRegistry, DEFAULT_CONFIG};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::{Executor, Finished, Priority, RunSpec, SubmitSpec};

/// Inputs from here on are answered only when the host calls `Service::release`.
const HELD: u64 = 1_000_000;
/// What the fallback adds to the remote's answer: a stale quote, told apart in the checks.
const STALE: u64 = 5;

type Reply = Arc<OnceLock<Result<u64, ()>>>;

/// The remote service: one thread answering requests; down or up; a flaky first attempt for
/// inputs with `x % 7 == 3`; requests for `x >= HELD` wait for `release`.
#[derive(Default)]
struct Service {
    down: AtomicBool,
    calls: AtomicU64,
    held: Mutex<Vec<(u64, Reply)>>,
}

impl Service {
    fn start(self: &Arc<Self>) -> Sender<(u64, u32, Reply)> {
        let (tx, rx) = channel::<(u64, u32, Reply)>();
        let me = Arc::clone(self);
        thread::spawn(move || {
            for (x, attempt, reply) in rx {
                me.calls.fetch_add(1, Ordering::SeqCst);
                if x >= HELD {
                    me.held.lock().unwrap().push((x, reply));
                } else if me.down.load(Ordering::SeqCst) || (x % 7 == 3 && attempt == 1) {
                    let _ = reply.set(Err(())); // a 503, or a connection reset
                } else {
                    let _ = reply.set(Ok(x * 10));
                }
            }
        });
        tx
    }

    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    fn release(&self) {
        for (x, reply) in self.held.lock().unwrap().drain(..) {
            let _ = reply.set(Ok(x * 10));
        }
    }
}

fn graph(remote: Sender<(u64, u32, Reply)>, breaker_cfg: BreakerConfig) -> Graph<u64, ()> {
    let breakers = BreakerRegistry::new(16);
    let breaker = breakers
        .get_or_create("quotes", breaker_cfg)
        .expect("a valid breaker");
    let ledger_pool = BlockingPool::new(BlockingConfig {
        threads: 4,
        queue: 64,
    })
    .unwrap();
    Graph::build(move |b| {
        let cached = b.task("quote_cached", |x: u64, _| Ok(x * 10 + STALE));
        let quote_cfg = TaskConfig::new()
            // Each attempt may take 200 ms; its `wait_until` gives up at the earlier of this
            // and the run's deadline.
            .timeout(ticks(Duration::from_millis(200)))
            // 3 attempts, 1 ms then 2 ms apart (at most 4 ms): the backoff lends its thread.
            .retry(
                RetryPolicy::new(
                    3,
                    Backoff::Exponential {
                        base_ticks: ticks(Duration::from_millis(1)),
                        factor: 2,
                        delay_ticks_max: ticks(Duration::from_millis(4)),
                    },
                )
                .unwrap(),
            )
            .breaker(breaker)
            .fallback(cached);
        let quote = b.task_with(
            "quote",
            move |x: u64, cx| {
                let reply: Reply = Arc::default();
                remote
                    .send((x, cx.attempt(), Arc::clone(&reply)))
                    .map_err(|_| StepError::permanent("quote service gone"))?;
                // The worker runs other queued runs while the answer is on its way.
                if !cx.wait_until(|| reply.get().is_some()) {
                    return Err(StepError::timeout("quote: no answer in time"));
                }
                match reply.get() {
                    Some(Ok(v)) => Ok(*v),
                    _ => Err(StepError::transient("quote: 503")),
                }
            },
            quote_cfg,
        );
        // A blocking call (a database write, say): it runs on a blocking thread, never on a
        // compute worker.
        let ledger = ledger_pool.step(|q: u64, _call| {
            thread::sleep(Duration::from_micros(200));
            Ok(q + 1)
        });
        let ledger = b.step(
            "ledger",
            ledger,
            TaskConfig::new().timeout(ticks(Duration::from_secs(1))),
        );
        b.sequence("order", &[quote, ledger])
    })
    .expect("a valid graph")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guide_remote: MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let service = Arc::new(Service::default());
    let breaker_cfg = BreakerConfig {
        consecutive_failures_to_open: 5,
        // Long enough that the outage's 35 fast-failing runs end inside it on a loaded machine.
        open_ticks: ticks(Duration::from_millis(500)),
        half_open_probes_max: 1,
        half_open_successes_to_close: 1,
        ..DEFAULT_CONFIG
    };
    let g = Arc::new(graph(service.start(), breaker_cfg));
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 1; // one compute worker: the last phase shows a waiting run freeing it
    let ex = Executor::<u64, ()>::new(cfg).map_err(|e| e.to_string())?;
    let run = |x: u64| ex.run(&g, x, ()).map_err(|p| format!("run {x}: {p:?}"));
    let breaker_state = || {
        let r = ex.report();
        r.breakers
            .iter()
            .find(|b| b.step == "quote")
            .map(|b| (b.to_open, b.to_closed))
    };

    // 1. Healthy, with flaky first attempts: each is retried and answered by the remote.
    for x in 0..200 {
        let done = run(x)?;
        if done.output != Some(x * 10 + 1) {
            return Err(format!("healthy run {x}: {:?}", done.output));
        }
    }
    let flaky = (0..200).filter(|x| x % 7 == 3).count() as u64;
    let retries = ex.report().step("quote").map(|s| s.retries);
    if retries != Some(flaky) {
        return Err(format!("retries {retries:?}, want {flaky}"));
    }

    // 2. An outage: every run still succeeds, with the stale quote. The breaker learns each
    //    step's outcome after its retries: 5 failed steps (3 calls each) open it, and the
    //    other 35 runs fail fast to the fallback without calling the remote.
    service.down.store(true, Ordering::SeqCst);
    let calls_before = service.calls.load(Ordering::SeqCst);
    for x in 200..240 {
        let done = run(x)?;
        if done.output != Some(x * 10 + STALE + 1) {
            return Err(format!("outage run {x}: {:?}", done.output));
        }
    }
    let outage_calls = service.calls.load(Ordering::SeqCst) - calls_before;
    if outage_calls != 5 * 3 {
        return Err(format!(
            "{outage_calls} remote calls in the outage, want 15"
        ));
    }
    if breaker_state().map(|s| s.0) != Some(1) {
        return Err(format!(
            "breaker transitions {:?}, want one opening",
            breaker_state()
        ));
    }

    // 3. Recovery: once the open period (500 ms) has passed, one probe closes the breaker.
    service.down.store(false, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(550));
    for x in 240..300 {
        let done = run(x)?;
        if done.output != Some(x * 10 + 1) {
            return Err(format!("recovered run {x}: {:?}", done.output));
        }
    }
    if breaker_state() != Some((1, 1)) {
        return Err(format!(
            "breaker (opened, closed) {:?}, want (1, 1)",
            breaker_state()
        ));
    }

    // 4. A run deadline (20 ms): the answer is held past it. The attempt's `wait_until` gives
    //    up at the deadline (not at the 200 ms timeout) and the run is aborted in the quote
    //    step: the fallback's stale answer is not given after the deadline.
    let spec = RunSpec::default().deadline(Duration::from_millis(20));
    let done = ex
        .run_with(&g, HELD, (), &spec, |r| flujo_runtime::Completed::from(r))
        .map_err(|p| format!("deadline run: {p:?}"))?;
    let deadline_error = done
        .error
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let kind = done.error.map(|e| e.kind);
    if done.outcome != Outcome::Aborted || kind != Some(ErrorKind::DeadlineExceeded) {
        return Err(format!(
            "the deadline run: {:?} {deadline_error}",
            done.outcome
        ));
    }
    service.release();

    // 5. A waiting run frees the one worker: a Low run waits for a held answer; 50 Normal
    //    runs submitted meanwhile complete on the same worker before the answer is released.
    let helped_before = ex.report().waits.helped;
    let spec = SubmitSpec::default()
        .priority(Priority::Low)
        .deadline(Duration::from_secs(10));
    let slow = ex
        .submit_with(&g, HELD + 1, (), &spec)
        .map_err(|r| format!("{:?}", r.reason))?;
    while service.held() == 0 {
        thread::yield_now(); // until the slow run's request reached the remote
    }
    for x in 300..350 {
        let ticket = ex
            .submit(&g, x, (), Priority::Normal)
            .map_err(|r| format!("{:?}", r.reason))?;
        match ticket.wait_timeout(Duration::from_secs(10)) {
            Ok(Finished::Ran(done)) if done.output == Some(x * 10 + 1) => {}
            Ok(other) => return Err(format!("helped run {x}: {other:?}")),
            Err(_) => return Err(format!("helped run {x} did not end: the worker was held")),
        }
    }
    service.release();
    match slow.wait() {
        Ok(Finished::Ran(done)) if done.output == Some((HELD + 1) * 10 + 1) => {}
        other => return Err(format!("the slow run: {other:?}")),
    }
    let helped = ex.report().waits.helped - helped_before;
    if helped < 50 {
        return Err(format!(
            "the waiting run helped {helped} runs, want 50 or more"
        ));
    }

    let report = ex.report();
    println!(
        "guide_remote: {} runs; {} quote retries; outage answered by the fallback with {} \
         remote calls; breaker opened and closed once; the deadline run ended with `{}`; \
         a waiting run ran {} queued runs on the one worker",
        report.runs.completed,
        report.step("quote").map_or(0, |s| s.retries),
        outage_calls,
        deadline_error,
        helped,
    );
    Ok(())
}
