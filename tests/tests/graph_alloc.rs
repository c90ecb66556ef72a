//! W11: runs of a built graph allocate nothing on the heap after warm-up. A counting global
//! allocator counts the allocations made by this thread while a flag is up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flujo_core::context::{Context, MergeStrategy};
use flujo_core::graph::{
    Graph, LoopOptions, ManualClock, MapOptions, NoClock, ParallelOptions, StepError, TaskConfig,
};
use flujo_core::interp::{Outcome, RunOptions, Runner, RunnerConfig, Telemetry};
use flujo_core::policy::Usage;
use flujo_core::telemetry::{Counter, Sampler, VecSink};

mod workloads;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the counter is thread-local and
// const-initialized, so counting never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

fn runs() -> usize {
    if cfg!(miri) {
        3
    } else {
        1000
    }
}

#[test]
fn the_counting_allocator_counts() {
    let n = allocations(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(n, 1);
}

#[test]
fn w1_plain_chain_allocates_nothing_per_run_after_warm_up() {
    let g = workloads::w1();
    let mut runner = Runner::new(RunnerConfig::default());
    let opts = RunOptions::default();
    assert_eq!(runner.run(&g, 0, (), &NoClock, &opts).output, Some(100));
    let n = allocations(|| {
        for i in 0..runs() as u64 {
            let r = runner.run(&g, i, (), &NoClock, &opts);
            assert_eq!(r.output, Some(i + 100));
            assert_eq!(r.records.len(), 100);
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn w2_chain_with_policies_allocates_nothing_per_run_after_warm_up() {
    let g = workloads::w2();
    // Telemetry on: every step sampled, events into a bounded sink (full after warm-up, so
    // later events are counted as dropped, never stored by allocating).
    let telemetry = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
    let mut runner = Runner::with_telemetry(RunnerConfig::default(), telemetry);
    let clock = ManualClock::new(0);
    let opts = RunOptions::default();
    assert_eq!(runner.run(&g, 0, (), &clock, &opts).output, Some(100));
    let n = allocations(|| {
        for i in 0..runs() as u64 {
            clock.advance(1);
            let r = runner.run(&g, i, (), &clock, &opts);
            assert_eq!(r.output, Some(i + 100));
            assert_eq!(r.counters.get(Counter::StepsSucceeded), 100);
        }
    });
    assert_eq!(n, 0);
}

/// A context owning heap memory, with a `clone_from` that reuses it.
#[derive(Debug, Default, PartialEq)]
struct Ctx {
    total: u64,
    seen: Vec<u64>,
}

impl Clone for Ctx {
    fn clone(&self) -> Self {
        Ctx {
            total: self.total,
            seen: self.seen.clone(),
        }
    }
    fn clone_from(&mut self, src: &Self) {
        self.total = src.total;
        self.seen.clone_from(&src.seen);
    }
}

impl Context for Ctx {
    const PARTS: usize = 2;
    fn part_name(index: usize) -> &'static str {
        ["total", "seen"][index]
    }
    fn part_eq(&self, other: &Self, index: usize) -> bool {
        match index {
            0 => self.total == other.total,
            _ => self.seen == other.seen,
        }
    }
    fn copy_part(&mut self, from: &Self, index: usize) {
        match index {
            0 => self.total = from.total,
            _ => self.seen.clone_from(&from.seen),
        }
    }
}

#[test]
fn context_writes_merges_maps_and_loops_allocate_nothing_per_run_after_warm_up() {
    let g = Graph::<u64, Ctx>::build(|b| {
        let add_total = b.task_with(
            "total",
            |x, cx| {
                cx.ctx_mut()?.total += x;
                Ok(x)
            },
            TaskConfig::new().writes_context(),
        );
        let note = b.task_with(
            "note",
            |x, cx| {
                let c = cx.ctx_mut()?;
                c.seen.clear();
                c.seen.push(x);
                Ok(x + 1)
            },
            TaskConfig::new().writes_context(),
        );
        let read = b.task("read", |x, cx| Ok(x + cx.ctx().total));
        let par = b.parallel(
            "par",
            &[add_total, note, read],
            |a, x| a + x,
            ParallelOptions::new(),
        );
        let item = b.task("item", |x, _| Ok(x * 2));
        let map = b.map(
            "map",
            |x, _, items| {
                for i in 0..4 {
                    let _ = items.push(x + i);
                }
                Ok(0)
            },
            item,
            |a, x| a + x,
            MapOptions::new().max_items(4).merge(MergeStrategy::NoMerge),
        );
        let body = b.task("body", |x, _| Ok(x + 1));
        let lp = b.loop_(
            "lp",
            body,
            LoopOptions::new()
                .max_iterations(8)
                .until(|x, _, _| x % 4 == 0),
        );
        b.sequence("root", &[par, map, lp])
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    // A budget, so the fan-outs lend shares (from the runner's reused share stack).
    let opts = RunOptions {
        budget: Some(Usage {
            cost: u64::MAX / 2,
            tokens: u64::MAX / 2,
        }),
        ..RunOptions::default()
    };
    let mut ctx = Ctx {
        total: 0,
        seen: Vec::with_capacity(4),
    };
    for _ in 0..3 {
        let r = runner.run(&g, 1, ctx, &NoClock, &opts);
        assert_eq!(r.outcome, Outcome::Succeeded);
        ctx = r.context;
    }
    let n = allocations(|| {
        for _ in 0..runs() {
            let r = runner.run(&g, 1, std::mem::take(&mut ctx), &NoClock, &opts);
            assert_eq!(r.outcome, Outcome::Succeeded);
            ctx = r.context;
        }
    });
    assert_eq!(n, 0);
    assert_eq!(ctx.seen, vec![1]);
}

/// Three differently typed stages over one payload enum (the W14 chain's shape).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Line(u64);

#[derive(Clone, Copy, Debug, PartialEq)]
struct Event {
    id: u32,
    value: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Enriched {
    value: u64,
    weight: u64,
}

flujo_core::payload! {
    #[derive(Clone, Debug, PartialEq)]
    enum Msg {
        Line(Line),
        Event(Event),
        Enriched(Enriched),
        Score(u64),
    }
}

#[test]
fn typed_graphs_allocate_nothing_per_run_after_warm_up() {
    let g = Graph::<Msg, ()>::build_typed(|b| {
        let parse = b.task("parse", |l: Line, _| {
            Ok(Event {
                id: (l.0 >> 32) as u32,
                value: l.0 as u32,
            })
        });
        let enrich = b.task("enrich", |e: Event, _| {
            Ok(Enriched {
                value: u64::from(e.value),
                weight: u64::from(e.id % 7) + 1,
            })
        });
        let score = b.task("score", |e: Enriched, _| Ok(e.value * e.weight));
        let chain = b.sequence("chain", parse.then(enrich).then(score));
        // A typed fan-out with a fallible reducer and a typed map with a typed splitter.
        let half = b.task("half", |x: u64, _| Ok(x / 2));
        let third = b.task("third", |x: u64, _| Ok(x / 3));
        let both = b.parallel(
            "both",
            &[half, third],
            |a: u64, x: u64| {
                a.checked_add(x)
                    .ok_or_else(|| StepError::permanent("overflow"))
            },
            ParallelOptions::new(),
        );
        let item = b.task("item", |x: u64, _| Ok(Line(x << 32 | x)));
        let count = b.map(
            "digits",
            |x: u64, _, items| {
                for d in 0..4 {
                    let _ = items.push(x + d);
                }
                Ok(0u64)
            },
            item,
            |n: u64, l: Line| Ok(n + (l.0 & 0xff)),
            MapOptions::new().max_items(4),
        );
        b.sequence("root", chain.then(both).then(count))
    })
    .unwrap();
    let mut runner = Runner::new(RunnerConfig::default());
    let opts = RunOptions::default();
    let expect = |i: u64| {
        let s = i * (i % 7 + 1);
        let f = s / 2 + s / 3;
        (0..4).map(|d| (f + d) & 0xff).sum::<u64>()
    };
    let input = |i: u64| Msg::Line(Line(i << 32 | i));
    assert_eq!(
        runner.run(&g, input(5), (), &NoClock, &opts).output,
        Some(Msg::Score(expect(5)))
    );
    let n = allocations(|| {
        for i in 0..runs() as u64 {
            let r = runner.run(&g, input(i), (), &NoClock, &opts);
            assert_eq!(r.output, Some(Msg::Score(expect(i))));
        }
    });
    assert_eq!(n, 0);
}
