//! W5_ring_mpmc: push+pop of a `u64` through a many-producer many-consumer ring of capacity
//! 1024, single thread, flujo beside crossbeam's `ArrayQueue`; W5_ring_mpmc_batch: `BATCH`
//! items in and out, flujo's `push_batch`/`pop_batch` (one claim per side per batch) beside
//! crossbeam pushing and popping one at a time; and, as information only,
//! W5_ring_mpmc_2thread: 1M items from a producer thread to a consumer thread.
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use crossbeam_queue::ArrayQueue;
use flujo_core::ring::mpmc::Ring;

/// Ring capacity for both groups.
const CAPACITY: usize = 1024;
/// Items per batch in W5_ring_mpmc_batch.
const BATCH: u64 = 64;
/// Items sent from thread to thread per iteration of the 2-thread group.
const ITEMS_2THREAD: u64 = 1_000_000;

/// Pushes values through `push` and `pop` one at a time and checks each popped value, then
/// fills to capacity and drains, so a broken ring fails before it is measured.
fn check_round_trip(push: impl Fn(u64) -> bool, pop: impl Fn() -> Option<u64>) {
    for value in 0..(3 * CAPACITY as u64) {
        assert!(push(value), "push into an empty ring failed");
        assert_eq!(pop(), Some(value));
        assert_eq!(pop(), None);
    }
    let mut pushed = 0;
    while push(pushed) {
        pushed += 1;
    }
    assert_eq!(pushed as usize, CAPACITY);
    for value in 0..pushed {
        assert_eq!(pop(), Some(value));
    }
    assert_eq!(pop(), None);
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5_ring_mpmc");

    let ring = Ring::<u64>::with_capacity(CAPACITY).expect("power of two");
    check_round_trip(|v| ring.push(v).is_ok(), || ring.pop());
    group.bench_function("flujo", |b| {
        let mut value = 0u64;
        b.iter(|| {
            value = value.wrapping_add(1);
            let pushed = ring.push(black_box(value));
            let popped = ring.pop();
            assert!(pushed.is_ok() && popped == Some(value));
            black_box(popped)
        });
    });

    let queue = ArrayQueue::<u64>::new(CAPACITY);
    check_round_trip(|v| queue.push(v).is_ok(), || queue.pop());
    group.bench_function("crossbeam", |b| {
        let mut value = 0u64;
        b.iter(|| {
            value = value.wrapping_add(1);
            let pushed = queue.push(black_box(value));
            let popped = queue.pop();
            assert!(pushed.is_ok() && popped == Some(value));
            black_box(popped)
        });
    });
    group.finish();
}

/// Moves `BATCH` values starting at `from` in and out of `ring` in two batch calls; returns
/// their sum.
fn flujo_batch(ring: &Ring<u64>, from: u64) -> u64 {
    let pushed = ring.push_batch(&mut (from..from + BATCH));
    let mut sum = 0u64;
    let popped = ring.pop_batch(BATCH as usize, |v| sum = sum.wrapping_add(v));
    assert!(pushed == BATCH as usize && popped == BATCH as usize);
    sum
}

/// [`flujo_batch`] through crossbeam's queue, one item at a time.
fn crossbeam_batch(queue: &ArrayQueue<u64>, from: u64) -> u64 {
    for v in from..from + BATCH {
        assert!(queue.push(v).is_ok());
    }
    let mut sum = 0u64;
    for _ in 0..BATCH {
        sum = sum.wrapping_add(queue.pop().expect("pushed"));
    }
    sum
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5_ring_mpmc_batch");
    let want = |from: u64| BATCH * from + BATCH * (BATCH - 1) / 2;
    let ring = Ring::<u64>::with_capacity(CAPACITY).expect("power of two");
    assert_eq!(flujo_batch(&ring, 5), want(5));
    group.bench_function("flujo", |b| b.iter(|| flujo_batch(&ring, black_box(5))));
    let queue = ArrayQueue::<u64>::new(CAPACITY);
    assert_eq!(crossbeam_batch(&queue, 5), want(5));
    group.bench_function("crossbeam_one_at_a_time", |b| {
        b.iter(|| crossbeam_batch(&queue, black_box(5)))
    });
    group.finish();
}

/// Sends `0 .. ITEMS_2THREAD` from a spawned producer thread to this thread through `push`
/// and `pop` on a shared queue, checks order and count, and returns the time taken.
fn two_threads<Q: Send + Sync + 'static>(
    queue: Q,
    push: fn(&Q, u64) -> bool,
    pop: fn(&Q) -> Option<u64>,
) -> Duration {
    let queue = std::sync::Arc::new(queue);
    let start = Instant::now();
    let producer = {
        let queue = std::sync::Arc::clone(&queue);
        std::thread::spawn(move || {
            for value in 0..ITEMS_2THREAD {
                while !push(&queue, value) {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut expected = 0;
    while expected < ITEMS_2THREAD {
        if let Some(value) = pop(&queue) {
            assert_eq!(value, expected);
            expected += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer thread");
    elapsed
}

fn two_threads_flujo() -> Duration {
    two_threads(
        Ring::<u64>::with_capacity(CAPACITY).expect("power of two"),
        |r, v| r.push(v).is_ok(),
        Ring::pop,
    )
}

fn two_threads_crossbeam() -> Duration {
    two_threads(
        ArrayQueue::<u64>::new(CAPACITY),
        |q, v| q.push(v).is_ok(),
        ArrayQueue::pop,
    )
}

/// A bench id and the run it measures.
type Case = (&'static str, fn() -> Duration);

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5_ring_mpmc_2thread");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let cases: [Case; 2] = [
        ("flujo", two_threads_flujo),
        ("crossbeam", two_threads_crossbeam),
    ];
    for (id, run) in cases {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
        });
    }
    group.finish();
}

/// The W5_ring_mpmc groups.
pub fn benches(c: &mut Criterion) {
    single_thread(c);
    batch(c);
    contended(c);
}
