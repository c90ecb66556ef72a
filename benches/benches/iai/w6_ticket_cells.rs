//! W6_ticket_cells under callgrind: `OPS` rounds of pair + complete + wait of a `u64` ticket on
//! one thread, through the executor's pool of recycled ticket cells (`ticket::Cells`, what
//! `Executor::submit` uses) and through `ticket::pair` (a fresh cell, one allocation, per
//! round). Setup (the pool and its first cell) is not counted. Both check their sums and
//! `flujo_cells` checks that one cell served every round before it returns.
//!
//! Measured: `flujo_cells` 3,410,356 Ir (341 per round), `pair_alloc` 3,960,159 (396 per
//! round). `flujo_cells`'s limit is 1.15x its count, which is still below `pair_alloc`: the
//! recycled cell must stay cheaper than a fresh one.
#![allow(non_snake_case)] // the group module is named after the workload id

use std::hint::black_box;
use std::sync::Arc;

use flujo_runtime::ticket::{pair, Cells};
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

/// Rounds per bench run: the per-round figure is Ir / OPS.
const OPS: u64 = 10_000;

/// The Ir budget of `flujo_cells`: about 1.15x the measured 2,630,528 (3,410,356 before the
/// ticket's state became one atomic word; `pair_alloc` 3,660,152).
const FLUJO_IR_LIMIT: u64 = 3_026_000;

/// A pool whose one cell has already been made and given back.
fn warm_cells() -> Arc<Cells<u64>> {
    let cells = Cells::new(16);
    let (completer, ticket) = cells.pair();
    completer.complete(0);
    assert_eq!(ticket.wait(), Ok(0));
    assert_eq!((cells.made(), cells.idle()), (1, 1));
    cells
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, FLUJO_IR_LIMIT)]))
)]
#[bench::warm(setup = warm_cells)]
fn flujo_cells(cells: Arc<Cells<u64>>) -> u64 {
    let mut sum = 0;
    for i in 0..OPS {
        let (completer, ticket) = cells.pair();
        completer.complete(black_box(i));
        sum += ticket.wait().expect("completed");
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    assert_eq!(cells.made(), 1, "every round reused the one cell");
    sum
}

#[library_benchmark]
fn pair_alloc() -> u64 {
    let mut sum = 0;
    for i in 0..OPS {
        let (completer, ticket) = pair();
        completer.complete(black_box(i));
        sum += ticket.wait().expect("completed");
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

library_benchmark_group!(name = W6_ticket_cells; benchmarks = flujo_cells, pair_alloc);
