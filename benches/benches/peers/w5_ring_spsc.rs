//! W5_ring_spsc: push+pop of a `u64` through a single-producer single-consumer ring of
//! capacity 1024, single thread; and, as information only, W5_ring_spsc_2thread: 10M items
//! from a producer thread to a consumer thread.
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use flujo_core::ring::spsc;

/// Ring capacity for both groups (heapless holds `N - 1` items, so it gets `N = CAPACITY`).
const CAPACITY: usize = 1024;
/// Items sent from thread to thread per iteration of the 2-thread group.
const ITEMS_2THREAD: u64 = 10_000_000;

/// Waits politely after a failed push or pop: on a machine with more runnable threads than
/// cores, spinning would burn the time slice the other side needs.
fn back_off(failures: &mut u32) {
    *failures += 1;
    if *failures < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Pushes `values` through `push` and `pop` one at a time and checks each popped value, so a
/// broken ring fails before it is measured.
fn check_round_trip(mut push: impl FnMut(u64) -> bool, mut pop: impl FnMut() -> Option<u64>) {
    for value in 0..(3 * CAPACITY as u64) {
        assert!(push(value), "push into an empty ring failed");
        assert_eq!(pop(), Some(value));
        assert_eq!(pop(), None);
    }
    // Fill to capacity, then drain in order.
    let mut pushed = 0;
    while push(pushed) {
        pushed += 1;
    }
    assert!(pushed as usize >= CAPACITY - 1);
    for value in 0..pushed {
        assert_eq!(pop(), Some(value));
    }
    assert_eq!(pop(), None);
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5_ring_spsc");

    let (mut producer, mut consumer) = spsc::channel::<u64>(CAPACITY).expect("power of two");
    check_round_trip(|v| producer.push(v).is_ok(), || consumer.pop());
    group.bench_function("flujo", |b| {
        let mut value = 0u64;
        b.iter(|| {
            value = value.wrapping_add(1);
            let pushed = producer.push(black_box(value));
            let popped = consumer.pop();
            assert!(pushed.is_ok() && popped == Some(value));
            black_box(popped)
        });
    });

    let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    check_round_trip(|v| producer.push(v).is_ok(), || consumer.pop().ok());
    group.bench_function("rtrb", |b| {
        let mut value = 0u64;
        b.iter(|| {
            value = value.wrapping_add(1);
            let pushed = producer.push(black_box(value));
            let popped = consumer.pop().ok();
            assert!(pushed.is_ok() && popped == Some(value));
            black_box(popped)
        });
    });

    let mut queue = Box::new(heapless::spsc::Queue::<u64, CAPACITY>::new());
    let (mut producer, mut consumer) = queue.split();
    check_round_trip(|v| producer.enqueue(v).is_ok(), || consumer.dequeue());
    group.bench_function("heapless", |b| {
        let mut value = 0u64;
        b.iter(|| {
            value = value.wrapping_add(1);
            let pushed = producer.enqueue(black_box(value));
            let popped = consumer.dequeue();
            assert!(pushed.is_ok() && popped == Some(value));
            black_box(popped)
        });
    });
    group.finish();
}

/// Sends `0 .. ITEMS_2THREAD` from a spawned producer thread to this thread, checks order and
/// count, and returns the time taken.
fn two_threads_flujo() -> Duration {
    let (mut producer, mut consumer) = spsc::channel::<u64>(CAPACITY).expect("power of two");
    let start = Instant::now();
    let producer_thread = std::thread::spawn(move || {
        let mut failures = 0;
        for value in 0..ITEMS_2THREAD {
            while producer.push(value).is_err() {
                back_off(&mut failures);
            }
            failures = 0;
        }
    });
    let mut expected = 0;
    let mut failures = 0;
    while expected < ITEMS_2THREAD {
        if let Some(value) = consumer.pop() {
            assert_eq!(value, expected);
            expected += 1;
            failures = 0;
        } else {
            back_off(&mut failures);
        }
    }
    let elapsed = start.elapsed();
    producer_thread.join().expect("producer thread");
    elapsed
}

/// [`two_threads_flujo`] with rtrb.
fn two_threads_rtrb() -> Duration {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    let start = Instant::now();
    let producer_thread = std::thread::spawn(move || {
        let mut failures = 0;
        for value in 0..ITEMS_2THREAD {
            while producer.push(value).is_err() {
                back_off(&mut failures);
            }
            failures = 0;
        }
    });
    let mut expected = 0;
    let mut failures = 0;
    while expected < ITEMS_2THREAD {
        if let Ok(value) = consumer.pop() {
            assert_eq!(value, expected);
            expected += 1;
            failures = 0;
        } else {
            back_off(&mut failures);
        }
    }
    let elapsed = start.elapsed();
    producer_thread.join().expect("producer thread");
    elapsed
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("W5_ring_spsc_2thread");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("flujo", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| two_threads_flujo()).sum())
    });
    group.bench_function("rtrb", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| two_threads_rtrb()).sum())
    });
    group.finish();
}

/// Both W5_ring_spsc groups.
pub fn benches(c: &mut Criterion) {
    single_thread(c);
    two_threads(c);
}
