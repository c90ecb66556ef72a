//! Tickets awaited in a real async runtime (tokio, multi-threaded): thousands of executor
//! tickets awaited at once under every preset (all registered before any run ends), tickets
//! from bare `ticket::pair()` completed or abandoned from plain threads, and futures dropped
//! while their runs go on. A lost wake-up would hang a task: every wait is bounded by a
//! timeout that fails the test instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use flujo_core::graph::Graph;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::ticket::{pair, Completer, Ticket, TicketError};
use flujo_runtime::{Drain, Executor, Finished, Priority};

/// Tickets alive at once in each test.
const TICKETS: usize = 5_000;

/// Generous: only a lost wake-up (or a broken executor) comes near it.
const LIMIT: Duration = Duration::from_secs(120);

/// A future that counts its first poll, then is the ticket.
struct Counted<T> {
    ticket: Ticket<T>,
    first: bool,
    polled: Arc<AtomicUsize>,
}

impl<T> Future for Counted<T> {
    type Output = Result<T, TicketError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.first {
            self.first = false;
            self.polled.fetch_add(1, Ordering::SeqCst);
        }
        Pin::new(&mut self.ticket).poll(cx)
    }
}

fn counted<T>(ticket: Ticket<T>, polled: &Arc<AtomicUsize>) -> Counted<T> {
    Counted {
        ticket,
        first: true,
        polled: Arc::clone(polled),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Until `count` reaches `n` (bounded by [`LIMIT`]).
async fn until(count: &AtomicUsize, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while count.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("every task polled its ticket in time");
}

/// A 3-task chain whose first task holds until `gate` opens, adding 1 per task.
fn gated_chain(gate: &Arc<AtomicBool>) -> Arc<Graph<u64, ()>> {
    let gate = Arc::clone(gate);
    Arc::new(
        Graph::build(move |b| {
            let gate = Arc::clone(&gate);
            let first = b.task("gate", move |x: u64, _| {
                // Bounded: the test opens the gate once every task awaits.
                while !gate.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_micros(200));
                }
                Ok(x + 1)
            });
            let second = b.task("two", |x: u64, _| Ok(x + 1));
            let third = b.task("three", |x: u64, _| Ok(x + 1));
            b.sequence("gated", &[first, second, third])
        })
        .expect("chain builds"),
    )
}

/// A preset with room for every ticket at once: admission fixed at a limit above
/// [`TICKETS`], queues as deep, at `level`.
fn roomy(
    name: &str,
    mut cfg: OptimizationConfig,
    level: TelemetryLevel,
) -> (String, OptimizationConfig) {
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.max_limit = 2 * TICKETS as u32;
    cfg.adaptive_concurrency.initial_limit = cfg.adaptive_concurrency.max_limit;
    cfg.queues.capacity = [TICKETS; 3];
    cfg.telemetry.level = level;
    (format!("{name}/{level:?}"), cfg)
}

fn setups() -> Vec<(String, OptimizationConfig)> {
    let mut v = Vec::new();
    for level in [TelemetryLevel::Off, TelemetryLevel::Counters] {
        v.push(roomy("latency", OptimizationConfig::latency(), level));
        v.push(roomy("throughput", OptimizationConfig::throughput(), level));
        v.push(roomy("low_memory", OptimizationConfig::low_memory(), level));
    }
    v
}

const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

#[test]
fn thousands_of_executor_tickets_awaited_at_once() {
    let rt = runtime();
    for (name, cfg) in setups() {
        let ex = Executor::new(cfg).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let gate = Arc::new(AtomicBool::new(false));
        let g = gated_chain(&gate);
        let polled = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TICKETS)
            .map(|i| {
                let ticket = ex
                    .submit(&g, i as u64, (), PRIORITIES[i % 3])
                    .unwrap_or_else(|r| panic!("{name}: submission {i} refused: {}", r.reason));
                let fut = counted(ticket, &polled);
                rt.spawn(async move { tokio::time::timeout(LIMIT, fut).await })
            })
            .collect();
        rt.block_on(async {
            // Every task waits on its ticket before any run can end.
            until(&polled, TICKETS).await;
            gate.store(true, Ordering::Release);
            for (i, task) in tasks.into_iter().enumerate() {
                let finished = task
                    .await
                    .expect("the task did not panic")
                    .unwrap_or_else(|_| panic!("{name}: ticket {i} never woke its task"))
                    .unwrap_or_else(|e| panic!("{name}: ticket {i}: {e}"));
                match finished {
                    Finished::Ran(done) => assert_eq!(done.output, Some(i as u64 + 3), "{name}"),
                    other => panic!("{name}: ticket {i}: {other:?}"),
                }
            }
        });
        let report = ex.shutdown(Drain::Finish);
        assert_eq!(report.finished, TICKETS as u64, "{name}");
    }
}

#[test]
fn dropped_futures_leave_their_runs_going() {
    let rt = runtime();
    for (name, cfg) in setups().into_iter().take(3) {
        let ex = Executor::new(cfg).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let gate = Arc::new(AtomicBool::new(false));
        let g = gated_chain(&gate);
        let polled = Arc::new(AtomicUsize::new(0));
        let n = TICKETS / 5;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let ticket = ex
                    .submit(&g, i as u64, (), PRIORITIES[i % 3])
                    .unwrap_or_else(|r| panic!("{name}: submission {i} refused: {}", r.reason));
                let fut = counted(ticket, &polled);
                rt.spawn(async move { tokio::time::timeout(LIMIT, fut).await })
            })
            .collect();
        rt.block_on(async {
            until(&polled, n).await;
            // Every other task is given up while its run waits behind the gate.
            let mut kept = Vec::new();
            for (i, task) in tasks.into_iter().enumerate() {
                if i % 2 == 1 {
                    task.abort();
                    assert!(task.await.unwrap_err().is_cancelled());
                } else {
                    kept.push((i, task));
                }
            }
            gate.store(true, Ordering::Release);
            for (i, task) in kept {
                match task.await.unwrap().unwrap().unwrap() {
                    Finished::Ran(done) => assert_eq!(done.output, Some(i as u64 + 3), "{name}"),
                    other => panic!("{name}: ticket {i}: {other:?}"),
                }
            }
        });
        // The given-up runs ran too (not cancelled): every submission finished.
        let report = ex.shutdown(Drain::Finish);
        assert_eq!(report.finished, n as u64, "{name}");
    }
}

#[test]
fn thousands_of_bare_tickets_completed_and_abandoned_from_threads() {
    let rt = runtime();
    let polled = Arc::new(AtomicUsize::new(0));
    let mut completers: Vec<(usize, Completer<String>)> = Vec::with_capacity(TICKETS);
    let tasks: Vec<_> = (0..TICKETS)
        .map(|i| {
            let (completer, ticket) = pair::<String>();
            completers.push((i, completer));
            let fut = counted(ticket, &polled);
            rt.spawn(async move { tokio::time::timeout(LIMIT, fut).await })
        })
        .collect();
    rt.block_on(until(&polled, TICKETS));
    // Four plain threads complete the tickets, abandoning every seventh, in an order of their
    // own while the tasks wait.
    let mut shares: Vec<Vec<(usize, Completer<String>)>> = (0..4).map(|_| Vec::new()).collect();
    for (i, c) in completers {
        shares[i % 4].push((i, c));
    }
    let threads: Vec<_> = shares
        .into_iter()
        .map(|share| {
            thread::spawn(move || {
                for (i, completer) in share.into_iter().rev() {
                    if i % 7 == 0 {
                        drop(completer);
                    } else {
                        completer.complete(format!("v{i}"));
                    }
                }
            })
        })
        .collect();
    rt.block_on(async {
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task
                .await
                .expect("the task did not panic")
                .unwrap_or_else(|_| panic!("ticket {i} never woke its task"));
            if i % 7 == 0 {
                assert_eq!(got, Err(TicketError::Abandoned), "ticket {i}");
            } else {
                assert_eq!(got, Ok(format!("v{i}")), "ticket {i}");
            }
        }
    });
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_bare_ticket_awaited_after_completion_and_mixed_with_blocking_waits() {
    let rt = runtime();
    // Completed before the await: ready at the first poll.
    let (completer, ticket) = pair();
    completer.complete(1u8);
    assert_eq!(rt.block_on(ticket), Ok(1));
    // Half awaited in tasks, half waited for on blocking threads (spin, then park).
    let (tx, rx) = std::sync::mpsc::channel::<Completer<u64>>();
    let completing = thread::spawn(move || {
        for (i, c) in rx.into_iter().enumerate() {
            c.complete(i as u64);
        }
    });
    let mut waits = Vec::new();
    for i in 0..1_000u64 {
        let (completer, ticket) = pair::<u64>();
        tx.send(completer).unwrap();
        if i % 2 == 0 {
            waits.push(rt.spawn(ticket));
        } else {
            waits.push(rt.spawn_blocking(move || ticket.wait()));
        }
    }
    drop(tx);
    rt.block_on(async {
        for (i, w) in waits.into_iter().enumerate() {
            let got = tokio::time::timeout(LIMIT, w)
                .await
                .expect("woken")
                .unwrap();
            assert_eq!(got, Ok(i as u64));
        }
    });
    completing.join().unwrap();
}
