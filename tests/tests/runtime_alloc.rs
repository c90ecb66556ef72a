//! The runtime adds no heap allocation per run to the core's: after warm-up, inline runs
//! through `Executor::run_with` allocate nothing, forked fan-outs allocate a small, fixed
//! number of blocks per run, and a burst of submissions allocates a bound set by the pool's
//! threads, not by the burst (counted on every thread: the counting allocator is global).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use std::sync::Arc;

use flujo_core::graph::{Graph, ParallelOptions};
use flujo_core::telemetry::Counter;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::{Executor, Finished, Priority, RunSpec};

mod workloads;
use workloads::{w1, w2};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

/// Counting on every thread, for forked runs.
static COUNTING_ALL: AtomicBool = AtomicBool::new(false);
static ALLOCS_ALL: AtomicUsize = AtomicUsize::new(0);

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
    if COUNTING_ALL.load(Ordering::Relaxed) {
        ALLOCS_ALL.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; the counters are a const-initialized
// thread-local and static atomics, so counting never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests run one at a time: the all-threads count must not see another test's work.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

/// Allocations made by `f` on every thread.
fn allocations_everywhere(f: impl FnOnce()) -> usize {
    ALLOCS_ALL.store(0, Ordering::SeqCst);
    COUNTING_ALL.store(true, Ordering::SeqCst);
    f();
    COUNTING_ALL.store(false, Ordering::SeqCst);
    ALLOCS_ALL.load(Ordering::SeqCst)
}

/// An executor whose pool threads are joined when it is dropped: a pool thread that exits
/// allocates (crossbeam-epoch hands its thread's garbage over), which must not land in the
/// next test's count.
struct Pooled {
    ex: Option<Executor<u64, ()>>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

fn pooled(cfg: OptimizationConfig) -> Pooled {
    let threads = Arc::new(Mutex::new(Vec::new()));
    let handles = Arc::clone(&threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.workers)
        .spawn_handler(move |thread| {
            let handle = std::thread::Builder::new().spawn(|| thread.run())?;
            handles.lock().unwrap().push(handle);
            Ok(())
        })
        .build()
        .unwrap();
    Pooled {
        ex: Some(Executor::builder(cfg).pool(pool).build().unwrap()),
        threads,
    }
}

impl std::ops::Deref for Pooled {
    type Target = Executor<u64, ()>;
    fn deref(&self) -> &Executor<u64, ()> {
        self.ex.as_ref().unwrap()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // The pool stops once the executor's last user (maybe a dispatcher on its way out)
        // lets it go; its threads then end.
        drop(self.ex.take());
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn runs() -> u64 {
    if cfg!(miri) {
        3
    } else {
        1000
    }
}

fn config(level: TelemetryLevel) -> OptimizationConfig {
    let mut cfg = OptimizationConfig::latency();
    cfg.workers = 2;
    cfg.telemetry.level = level;
    assert!(cfg.pooling);
    cfg
}

fn inline_runs_allocate_nothing(g: &Graph<u64, ()>, level: TelemetryLevel) {
    let ex = pooled(config(level));
    let spec = RunSpec::default();
    for i in 0..3 {
        let out = ex.run_with(g, i, (), &spec, |r| r.output).unwrap();
        assert_eq!(out, Some(i + 100));
    }
    let n = allocations(|| {
        for i in 0..runs() {
            let out = ex.run_with(g, i, (), &spec, |r| r.output).unwrap();
            assert_eq!(out, Some(i + 100));
        }
    });
    assert_eq!(n, 0, "{level:?}");
    let report = ex.report();
    assert_eq!(report.runs.succeeded, runs() + 3);
    if level >= TelemetryLevel::Counters {
        assert_eq!(report.counter(Counter::StepsSucceeded), 100 * (runs() + 3));
    }
}

#[test]
fn w1_through_the_executor_allocates_nothing_per_run_after_warm_up() {
    let _serial = serial();
    let g = w1();
    inline_runs_allocate_nothing(&g, TelemetryLevel::Off);
    inline_runs_allocate_nothing(&g, TelemetryLevel::Counters);
}

#[test]
fn w2_through_the_executor_allocates_nothing_per_run_after_warm_up() {
    let _serial = serial();
    let g = w2();
    inline_runs_allocate_nothing(&g, TelemetryLevel::Off);
    inline_runs_allocate_nothing(&g, TelemetryLevel::Counters);
}

#[test]
fn forked_fan_outs_allocate_nothing_per_run_but_rayons_injector_blocks() {
    let _serial = serial();
    let mut cfg = config(TelemetryLevel::Counters);
    cfg.inline_cutoff.enabled = false;
    let ex = pooled(cfg);
    let g = Graph::<u64, ()>::build(|b| {
        let kids: Vec<_> = (0..4)
            .map(|i| b.task(&format!("k{i}"), move |x, _| Ok(x + i)))
            .collect();
        let par = b.parallel("par", &kids, |a, x| a + x, ParallelOptions::new());
        let tail = b.task("tail", |x, _| Ok(x + 1));
        b.sequence("root", &[par, tail])
    })
    .unwrap();
    let spec = RunSpec::default();
    let want = |i: u64| Some(4 * i + 6 + 1);
    let run = |i: u64| {
        assert_eq!(
            ex.run_with(&g, i, (), &spec, |r| r.output).unwrap(),
            want(i)
        )
    };
    (0..64).for_each(run);
    // Measured (debug, 2 workers): nothing per run, but about one allocation per 63 runs,
    // plus about 10 once if a thread needs a pooled runner of its own for the first time (at
    // most one per thread: the calling thread and the 2 workers).
    // - The core reuses a forked fan-out's branch list, cancel flags and record buffers
    //   (the runner's scratch keeps them), so a fork allocates nothing once warm.
    // - The one per 63 runs is rayon's: `ThreadPool::install` from outside the pool pushes
    //   a job into the pool's injector, a crossbeam-deque `Injector` that allocates a block
    //   of 63 slots as its tail moves on.
    // - A pooled runner (core runner, stacks, report) is made lazily per thread and then
    //   reused.
    let many: u64 = if cfg!(miri) { 3 } else { 630 };
    let states_before = ex.report().pool.pool_misses;
    let n = allocations_everywhere(|| (0..many).for_each(run)) as u64;
    let states_made = ex.report().pool.pool_misses - states_before;
    assert!(states_made <= 3, "{states_made}");
    assert!(
        n <= many / 63 + 2 + 32 * states_made,
        "{n} allocations in {many} forked runs ({states_made} pooled runners made)"
    );
}

/// Held shut while a burst is submitted, so the dispatchers are busy (in the first runs) for
/// all of it: how many start is then fixed, not a race with the submitter.
static GATE: AtomicBool = AtomicBool::new(false);

/// Opens the gate when dropped (also when a failed assert unwinds).
struct Opener;

impl Drop for Opener {
    fn drop(&mut self) {
        GATE.store(true, Ordering::Release);
    }
}

/// Submits `n` runs of `g` across the three priorities with the gate shut, opens it, waits
/// for every ticket and checks each output. `tickets` is kept (cleared) between calls so its
/// buffer is not counted.
fn burst(
    ex: &Executor<u64, ()>,
    g: &Arc<Graph<u64, ()>>,
    n: u64,
    tickets: &mut Vec<(u64, flujo_runtime::ticket::Ticket<Finished<u64, ()>>)>,
) {
    GATE.store(false, Ordering::Release);
    let opener = Opener;
    for i in 0..n {
        let priority = Priority::ALL[(i % 3) as usize];
        let ticket = ex.submit(g, i, (), priority).expect("admitted");
        tickets.push((i, ticket));
    }
    drop(opener);
    for (i, ticket) in tickets.drain(..) {
        match ticket.wait() {
            Ok(Finished::Ran(done)) => assert_eq!(done.output, Some(i + 10 + 1)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_burst_of_submissions_allocates_per_dispatcher_not_per_submission() {
    let _serial = serial();
    let mut cfg = config(TelemetryLevel::Counters);
    // Every submission of the burst is admitted and queued at once.
    cfg.adaptive_concurrency.enabled = false;
    cfg.adaptive_concurrency.max_limit = 4096;
    cfg.adaptive_concurrency.initial_limit = 4096;
    cfg.queues.capacity = [1024; 3];
    let ex = pooled(cfg);
    let threads = ex.threads();
    assert_eq!(threads, 2);
    let g = Arc::new(
        Graph::<u64, ()>::build(|b| {
            let gate = b.task("gate", |x, _| {
                while !GATE.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                Ok(x + 1)
            });
            let mut steps = vec![gate];
            steps.extend((0..10).map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1))));
            b.sequence("gated", &steps)
        })
        .unwrap(),
    );
    let n: u64 = if cfg!(miri) { 20 } else { 2000 };
    // Warm-up: more tickets alive at once than measured, so the executor's ticket cells,
    // pooled runners and report rows are all made. More, because a cell goes back to the
    // pool when its last side is dropped: a waiter that spins sees its value at once, and
    // the worker may still be about to drop the completer when the next burst begins; the
    // spare cells cover those stragglers.
    let warm = n + n / 8;
    let mut tickets = Vec::with_capacity(warm as usize);
    burst(&ex, &g, warm, &mut tickets);
    burst(&ex, &g, warm, &mut tickets);
    let states_before = ex.report().pool.pool_misses;
    let allocations = allocations_everywhere(|| burst(&ex, &g, n, &mut tickets));
    let states_made = ex.report().pool.pool_misses - states_before;
    // Measured (debug, 2 threads, n = 2000): 1 or 2; 4032 when every submission allocated its
    // ticket cell and spawned its own rayon job. The bound and why:
    // - one boxed rayon job per dispatcher started: the first `threads` submissions each
    //   start one at most (fewer when a dispatcher of the last burst is still on its way
    //   out and takes the new work on), and every later one finds all places taken (the
    //   dispatchers are held in the gated step until the whole burst is queued);
    // - rayon's injector (a job spawned from outside the pool) allocates a block of 63 slots
    //   as its tail moves on: at most 1 here;
    // - ticket cells: none, the warm-up left at least `n` free cells in the executor's pool;
    // - a pooled runner if a thread borrows one for the first time (24 allocations measured
    //   for the first run of an 11-step chain: the runner, its scratch, its tallies' rows):
    //   the warm-up should have made them, counted in case it did not (a dispatcher of the
    //   last burst still on its way out can take a whole burst on, leaving the other thread
    //   without a runner).
    // Without the reuse it would be at least 2 per submission (a ticket cell and a job).
    // Usually 0; CI has seen up to 4 under load (on Rust 1.88): a thread that finds the free
    // list empty makes a runner. Bounded, and each one is budgeted below.
    assert!(states_made <= 8, "{states_made}");
    assert!(
        allocations as u64 <= threads as u64 + 1 + 32 * states_made,
        "{allocations} allocations for a burst of {n} submissions ({states_made} runners made)"
    );
    let report = ex.report();
    assert_eq!(report.runs.submitted, 2 * warm + n);
    assert_eq!(report.runs.succeeded, 2 * warm + n);
}
