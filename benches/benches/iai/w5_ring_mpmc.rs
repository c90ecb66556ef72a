//! W5_ring_mpmc in instructions: `OPS` push+pop round trips of a `u64` through a
//! many-producer many-consumer ring of capacity 1024, single thread; and W5_ring_mpmc_batch:
//! the same `OPS` items in batches of `BATCH` (flujo's `push_batch`/`pop_batch` against
//! crossbeam one at a time). Only the `flujo` benches have hard limits; crossbeam's
//! `ArrayQueue` is for comparison.
#![allow(non_snake_case)] // The group is named after the workload id.

use std::hint::black_box;

use crossbeam_queue::ArrayQueue;
use flujo_core::ring::mpmc::Ring;
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

/// Ring capacity.
const CAPACITY: usize = 1024;
/// Round trips per bench, so setup is noise: Ir per operation is the total over `OPS`.
const OPS: u64 = 100_000;
/// The Ir budget of the `flujo` bench: about 1.15x the 5,300,180 measured (53 Ir per round
/// trip including the loop and its checks; crossbeam measured 11,300,571).
const FLUJO_IR_LIMIT: u64 = 6_100_000;

/// Items per batch in W5_ring_mpmc_batch.
const BATCH: u64 = 64;
/// The Ir budget of the `flujo` batch bench: 1.15x its count when it was added, 5,147,112
/// (51 Ir per item moved, loop and checks included; crossbeam one at a time: 6,237,702).
const FLUJO_BATCH_IR_LIMIT: u64 = 5_920_000;

fn flujo_ring() -> Ring<u64> {
    Ring::with_capacity(CAPACITY).expect("power of two")
}

fn crossbeam_queue() -> ArrayQueue<u64> {
    ArrayQueue::new(CAPACITY)
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, FLUJO_IR_LIMIT)]))
)]
#[bench::push_pop(setup = flujo_ring)]
fn flujo(ring: Ring<u64>) -> u64 {
    let mut sum = 0u64;
    for value in 0..OPS {
        assert!(ring.push(black_box(value)).is_ok());
        let popped = ring.pop();
        assert_eq!(popped, Some(value));
        sum = sum.wrapping_add(black_box(popped).unwrap_or(0));
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

#[library_benchmark]
#[bench::push_pop(setup = crossbeam_queue)]
fn crossbeam(queue: ArrayQueue<u64>) -> u64 {
    let mut sum = 0u64;
    for value in 0..OPS {
        assert!(queue.push(black_box(value)).is_ok());
        let popped = queue.pop();
        assert_eq!(popped, Some(value));
        sum = sum.wrapping_add(black_box(popped).unwrap_or(0));
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

library_benchmark_group!(name = W5_ring_mpmc; benchmarks = flujo, crossbeam);

/// The sum of `0 .. OPS`, which every bench checks.
const OPS_SUM: u64 = OPS * (OPS - 1) / 2;

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, FLUJO_BATCH_IR_LIMIT)]))
)]
#[bench::batches(setup = flujo_ring)]
fn flujo_batch(ring: Ring<u64>) -> u64 {
    let mut sum = 0u64;
    for from in (0..OPS).step_by(BATCH as usize) {
        let mut items = from..(from + BATCH).min(OPS);
        let n = (items.end - items.start) as usize;
        assert_eq!(ring.push_batch(black_box(&mut items)), n);
        assert_eq!(ring.pop_batch(n, |v| sum = sum.wrapping_add(v)), n);
    }
    assert_eq!(sum, OPS_SUM);
    sum
}

#[library_benchmark]
#[bench::batches(setup = crossbeam_queue)]
fn crossbeam_batch(queue: ArrayQueue<u64>) -> u64 {
    let mut sum = 0u64;
    for from in (0..OPS).step_by(BATCH as usize) {
        let end = (from + BATCH).min(OPS);
        for v in from..end {
            assert!(queue.push(black_box(v)).is_ok());
        }
        for _ in from..end {
            sum = sum.wrapping_add(queue.pop().expect("pushed"));
        }
    }
    assert_eq!(sum, OPS_SUM);
    sum
}

library_benchmark_group!(name = W5_ring_mpmc_batch; benchmarks = flujo_batch, crossbeam_batch);
