//! W5_ring_spsc in instructions: `OPS` push+pop round trips of a `u64` through a ring of
//! capacity 1024, single thread. Only `flujo` has a hard limit; the peers are for comparison.
#![allow(non_snake_case)] // The group is named after the workload id.

use std::hint::black_box;

use flujo_core::ring::spsc;
use iai_callgrind::{
    library_benchmark, library_benchmark_group, Callgrind, EventKind, LibraryBenchmarkConfig,
};

/// Ring capacity (heapless holds `N - 1` items, so it gets `N = CAPACITY`).
const CAPACITY: usize = 1024;
/// Round trips per bench, so setup is noise: Ir per operation is the total over `OPS`.
const OPS: u64 = 100_000;
/// The Ir budget of the `flujo` bench: 1.15x the 4_501_051 Ir measured (45 Ir per round trip,
/// about 20 of them the ring's, the rest this loop's checks and `black_box` spills).
const FLUJO_IR_LIMIT: u64 = 5_180_000;

fn flujo_ring() -> (spsc::Producer<u64>, spsc::Consumer<u64>) {
    spsc::channel(CAPACITY).expect("power of two")
}

fn rtrb_ring() -> (::rtrb::Producer<u64>, ::rtrb::Consumer<u64>) {
    ::rtrb::RingBuffer::new(CAPACITY)
}

fn heapless_queue() -> Box<::heapless::spsc::Queue<u64, CAPACITY>> {
    Box::new(::heapless::spsc::Queue::new())
}

#[library_benchmark(
    config = LibraryBenchmarkConfig::default()
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, FLUJO_IR_LIMIT)]))
)]
#[bench::push_pop(setup = flujo_ring)]
fn flujo(ring: (spsc::Producer<u64>, spsc::Consumer<u64>)) -> u64 {
    let (mut producer, mut consumer) = ring;
    let mut sum = 0u64;
    for value in 0..OPS {
        assert!(producer.push(black_box(value)).is_ok());
        let popped = consumer.pop();
        assert_eq!(popped, Some(value));
        sum = sum.wrapping_add(black_box(popped).unwrap_or(0));
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

#[library_benchmark]
#[bench::push_pop(setup = rtrb_ring)]
fn rtrb(ring: (::rtrb::Producer<u64>, ::rtrb::Consumer<u64>)) -> u64 {
    let (mut producer, mut consumer) = ring;
    let mut sum = 0u64;
    for value in 0..OPS {
        assert!(producer.push(black_box(value)).is_ok());
        let popped = consumer.pop().ok();
        assert_eq!(popped, Some(value));
        sum = sum.wrapping_add(black_box(popped).unwrap_or(0));
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

#[library_benchmark]
#[bench::push_pop(setup = heapless_queue)]
fn heapless(mut queue: Box<::heapless::spsc::Queue<u64, CAPACITY>>) -> u64 {
    let (mut producer, mut consumer) = queue.split();
    let mut sum = 0u64;
    for value in 0..OPS {
        assert!(producer.enqueue(black_box(value)).is_ok());
        let popped = consumer.dequeue();
        assert_eq!(popped, Some(value));
        sum = sum.wrapping_add(black_box(popped).unwrap_or(0));
    }
    assert_eq!(sum, OPS * (OPS - 1) / 2);
    sum
}

library_benchmark_group!(name = W5_ring_spsc; benchmarks = flujo, rtrb, heapless);
