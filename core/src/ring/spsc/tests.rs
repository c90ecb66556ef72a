//! Unit tests of the spsc ring: ownership (drop counting), conservation and order across two
//! threads, linearizability consequences, capacity checks, batches and index wrap-around.

use core::panic::AssertUnwindSafe;
use std::boxed::Box;
use std::panic;
use std::string::String;
use std::sync::Arc as StdArc;
use std::thread;
use std::vec::Vec;

use super::{channel, channel_at, Consumer, Producer};
use crate::ring::{CapacityError, Full, MAX_CAPACITY};
use crate::sync::{AtomicUsize, Ordering};

const COUNT: usize = if cfg!(miri) { 50 } else { 100_000 };

/// Waits after a failed push or pop: spins a little, then yields, so that on a machine with
/// more runnable threads than cores the other side gets to run.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn wait(&mut self) {
        self.failures += 1;
        if self.failures < 100 {
            core::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// An item that counts its drops in a per-test static counter.
#[derive(Debug)]
struct Counted {
    id: usize,
    drops: &'static AtomicUsize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

fn counted(
    drops: &'static AtomicUsize,
    ids: core::ops::Range<usize>,
) -> impl Iterator<Item = Counted> {
    ids.map(move |id| Counted { id, drops })
}

#[test]
fn drops_popped_and_leftover_items_exactly_once() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(8).unwrap();
    for item in counted(&DROPS, 0..6) {
        assert!(producer.push(item).is_ok());
    }
    let first = consumer.pop().unwrap();
    assert_eq!(first.id, 0);
    assert_eq!(DROPS.load(Ordering::Relaxed), 0);
    drop(first);
    assert_eq!(DROPS.load(Ordering::Relaxed), 1);
    drop(producer);
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        1,
        "leftovers live while a handle does"
    );
    drop(consumer);
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        6,
        "5 leftovers dropped once each"
    );
}

#[test]
fn drops_leftovers_across_the_slot_wrap() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(4).unwrap();
    // Moves head and tail to slot 3, so the leftovers straddle the end of the slot array.
    for item in counted(&DROPS, 0..3) {
        assert!(producer.push(item).is_ok());
    }
    assert_eq!(consumer.pop_batch(3, drop), 3);
    assert_eq!(DROPS.load(Ordering::Relaxed), 3);
    assert_eq!(producer.push_batch(&mut counted(&DROPS, 3..7)), 4);
    drop(consumer);
    drop(producer);
    assert_eq!(DROPS.load(Ordering::Relaxed), 7);
}

#[test]
fn leftovers_stay_poppable_after_the_producer_is_dropped() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(4).unwrap();
    assert!(!consumer.is_abandoned());
    assert_eq!(producer.push_batch(&mut counted(&DROPS, 0..3)), 3);
    drop(producer);
    assert!(consumer.is_abandoned());
    assert_eq!(DROPS.load(Ordering::Relaxed), 0);
    for id in 0..3 {
        let item = consumer.pop().unwrap();
        assert_eq!(item.id, id);
    }
    assert!(consumer.pop().is_none());
    assert_eq!(DROPS.load(Ordering::Relaxed), 3);
    drop(consumer);
    assert_eq!(DROPS.load(Ordering::Relaxed), 3);
}

#[test]
fn producer_keeps_pushing_after_the_consumer_is_dropped() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, consumer) = channel::<Counted>(2).unwrap();
    assert!(!producer.is_abandoned());
    drop(consumer);
    assert!(producer.is_abandoned());
    let mut items = counted(&DROPS, 0..3);
    assert!(producer.push(items.next().unwrap()).is_ok());
    assert!(producer.push(items.next().unwrap()).is_ok());
    let Err(Full(rejected)) = producer.push(items.next().unwrap()) else {
        panic!("push into a full ring succeeded");
    };
    assert_eq!(rejected.id, 2);
    drop(rejected);
    assert_eq!(DROPS.load(Ordering::Relaxed), 1);
    drop(producer);
    assert_eq!(DROPS.load(Ordering::Relaxed), 3);
}

#[test]
fn full_push_returns_the_same_value() {
    let (mut producer, mut consumer) = channel::<Box<u64>>(2).unwrap();
    assert!(producer.push(Box::new(1)).is_ok());
    assert!(producer.push(Box::new(2)).is_ok());
    assert!(producer.is_full());
    let value = Box::new(3);
    let address = &*value as *const u64;
    let Err(Full(back)) = producer.push(value) else {
        panic!("push into a full ring succeeded");
    };
    assert_eq!(
        &*back as *const u64, address,
        "the very same allocation came back"
    );
    assert_eq!(*back, 3);
    assert_eq!(consumer.pop().as_deref(), Some(&1));
    assert!(producer.push(back).is_ok());
    assert_eq!(consumer.pop().as_deref(), Some(&2));
    assert_eq!(consumer.pop().as_deref(), Some(&3));
    assert_eq!(consumer.pop(), None);
}

#[test]
fn capacity_must_be_a_power_of_two_in_range() {
    for bad in [
        0,
        1,
        3,
        6,
        1000,
        MAX_CAPACITY + 1,
        MAX_CAPACITY * 2,
        usize::MAX,
    ] {
        assert_eq!(
            channel::<u8>(bad).err(),
            Some(CapacityError { requested: bad }),
            "capacity {bad}"
        );
    }
    for good in [2, 4, 64, 1024] {
        let (producer, consumer) = channel::<u8>(good).unwrap();
        assert_eq!(producer.capacity(), good);
        assert_eq!(consumer.capacity(), good);
        assert_eq!(producer.free_slots(), good);
        assert!(producer.is_empty() && consumer.is_empty());
    }
}

#[test]
fn len_and_free_slots_follow_pushes_and_pops() {
    let (mut producer, mut consumer) = channel::<u32>(4).unwrap();
    for n in 0..4u32 {
        assert_eq!(producer.len(), n as usize);
        assert_eq!(consumer.len(), n as usize);
        assert_eq!(producer.free_slots(), 4 - n as usize);
        assert!(!producer.is_full());
        producer.push(n).unwrap();
    }
    assert!(producer.is_full());
    assert!(!consumer.is_empty());
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(producer.len(), 3);
    assert_eq!(producer.free_slots(), 1);
}

#[test]
fn push_then_pop_is_never_empty_single_thread() {
    let (mut producer, mut consumer) = channel::<usize>(2).unwrap();
    for i in 0..COUNT {
        producer.push(i).unwrap();
        assert_eq!(consumer.pop(), Some(i));
        assert_eq!(consumer.pop(), None);
    }
}

#[test]
fn a_completed_push_is_visible_to_a_later_pop() {
    // Linearizability consequence: if the consumer learns (through `pushed`) that a push
    // completed, its next pop cannot find the ring empty.
    let (mut producer, mut consumer) = channel::<usize>(4).unwrap();
    let pushed = StdArc::new(AtomicUsize::new(0));
    let pushed_by_producer = StdArc::clone(&pushed);
    let producer_thread = thread::spawn(move || {
        let mut backoff = Backoff::default();
        for i in 0..COUNT {
            while producer.push(i).is_err() {
                backoff.wait();
            }
            backoff.reset();
            pushed_by_producer.store(i + 1, Ordering::Release);
        }
    });
    let mut popped = 0;
    let mut backoff = Backoff::default();
    while popped < COUNT {
        if pushed.load(Ordering::Acquire) > popped {
            assert_eq!(
                consumer.pop(),
                Some(popped),
                "a completed push was not visible"
            );
            popped += 1;
            backoff.reset();
        } else {
            backoff.wait();
        }
    }
    producer_thread.join().unwrap();
    assert_eq!(consumer.pop(), None);
}

#[test]
fn two_threads_conserve_every_item_in_order() {
    let (mut producer, mut consumer) = channel::<usize>(16).unwrap();
    let producer_thread = thread::spawn(move || {
        let mut backoff = Backoff::default();
        for i in 0..COUNT {
            let mut value = i;
            loop {
                match producer.push(value) {
                    Ok(()) => break,
                    Err(Full(back)) => {
                        assert_eq!(back, i);
                        value = back;
                        backoff.wait();
                    }
                }
            }
            backoff.reset();
        }
    });
    let mut expected = 0;
    let mut sum = 0usize;
    let mut backoff = Backoff::default();
    while expected < COUNT {
        match consumer.pop() {
            Some(value) => {
                assert_eq!(value, expected, "FIFO order");
                sum = sum.wrapping_add(value);
                expected += 1;
                backoff.reset();
            }
            None => backoff.wait(),
        }
    }
    producer_thread.join().unwrap();
    assert_eq!(consumer.pop(), None);
    assert_eq!(sum, (0..COUNT).fold(0usize, usize::wrapping_add));
}

#[test]
fn two_threads_conserve_every_item_in_batches() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(8).unwrap();
    let producer_thread = thread::spawn(move || {
        let mut items = counted(&DROPS, 0..COUNT).peekable();
        let mut backoff = Backoff::default();
        while items.peek().is_some() {
            if producer.push_batch(&mut items) == 0 {
                backoff.wait();
            } else {
                backoff.reset();
            }
        }
    });
    let mut expected = 0;
    let mut backoff = Backoff::default();
    while expected < COUNT {
        let popped = consumer.pop_batch(5, |item| {
            assert_eq!(item.id, expected, "FIFO order");
            expected += 1;
        });
        assert!(popped <= 5);
        if popped == 0 {
            backoff.wait();
        } else {
            backoff.reset();
        }
    }
    producer_thread.join().unwrap();
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        COUNT,
        "each item dropped once"
    );
    drop(consumer);
    assert_eq!(DROPS.load(Ordering::Relaxed), COUNT);
}

#[test]
fn push_batch_never_takes_an_item_it_cannot_store() {
    let (mut producer, mut consumer) = channel::<u32>(8).unwrap();
    let mut items = 0..10u32;
    assert_eq!(producer.push_batch(&mut items), 8);
    assert_eq!(
        items.clone().next(),
        Some(8),
        "items 8 and 9 stay in the iterator"
    );
    assert_eq!(producer.push_batch(&mut items), 0);
    assert_eq!(items.len(), 2);
    let mut popped = Vec::new();
    assert_eq!(consumer.pop_batch(3, |v| popped.push(v)), 3);
    assert_eq!(popped, [0, 1, 2]);
    // The cached head says full: the batch refreshes it and finds 3 free slots.
    assert_eq!(producer.push_batch(&mut items), 2);
    assert_eq!(items.next(), None);
    assert_eq!(consumer.pop_batch(100, |v| popped.push(v)), 7);
    assert_eq!(popped, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(consumer.pop_batch(100, |v| popped.push(v)), 0);
    assert_eq!(producer.push_batch(&mut core::iter::empty()), 0);
    assert_eq!(consumer.pop_batch(0, |v| popped.push(v)), 0);
}

#[test]
fn batches_wrap_around_the_slots_and_the_index_space() {
    // The indices start 5 short of `usize::MAX`, so they wrap during the test as well as the
    // slot positions.
    let (mut producer, mut consumer) = channel_at::<usize>(8, usize::MAX - 4).unwrap();
    let mut next_in = 0;
    let mut next_out = 0;
    for round in 0..40 {
        let want = (round % 7) + 1;
        let mut items = next_in..next_in + want;
        let moved = producer.push_batch(&mut items);
        assert_eq!(moved + items.len(), want, "nothing lost");
        next_in += moved;
        let expected_next = if moved < want { Some(next_in) } else { None };
        assert_eq!(items.next(), expected_next);
        assert!(producer.len() <= 8);
        let max = (round * 3) % 6;
        let popped = consumer.pop_batch(max, |value| {
            assert_eq!(value, next_out);
            next_out += 1;
        });
        assert!(popped <= max);
        assert_eq!(consumer.len(), next_in - next_out);
    }
    while let Some(value) = consumer.pop() {
        assert_eq!(value, next_out);
        next_out += 1;
    }
    assert_eq!(next_out, next_in);
    assert!(
        next_in > 16,
        "the indices went round the slots several times"
    );
}

#[test]
fn single_push_and_pop_wrap_the_index_space() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel_at::<Counted>(2, usize::MAX - 2).unwrap();
    let mut items = counted(&DROPS, 0..9);
    for expected in 0..8 {
        assert!(producer.push(items.next().unwrap()).is_ok());
        assert_eq!(consumer.pop().map(|item| item.id), Some(expected));
    }
    assert!(producer.push(items.next().unwrap()).is_ok());
    drop((producer, consumer));
    assert_eq!(DROPS.load(Ordering::Relaxed), 9);
}

#[test]
fn a_panicking_pop_batch_callback_drops_nothing_twice() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(8).unwrap();
    assert_eq!(producer.push_batch(&mut counted(&DROPS, 0..6)), 6);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        consumer.pop_batch(5, |item| {
            if item.id == 2 {
                panic!("callback fails on item 2");
            }
        })
    }));
    assert!(result.is_err());
    // Items 0, 1 were dropped by the callback, item 2 during the unwind.
    assert_eq!(DROPS.load(Ordering::Relaxed), 3);
    assert_eq!(consumer.pop().map(|item| item.id), Some(3));
    assert_eq!(DROPS.load(Ordering::Relaxed), 4);
    drop((producer, consumer));
    assert_eq!(DROPS.load(Ordering::Relaxed), 6);
}

#[test]
fn a_panicking_push_batch_iterator_publishes_what_it_took() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    let (mut producer, mut consumer) = channel::<Counted>(8).unwrap();
    let mut items = counted(&DROPS, 0..6).inspect(|item| {
        assert!(item.id != 3, "iterator fails on item 3");
    });
    let result = panic::catch_unwind(AssertUnwindSafe(|| producer.push_batch(&mut items)));
    assert!(result.is_err());
    assert_eq!(
        DROPS.load(Ordering::Relaxed),
        1,
        "only item 3 dropped, in the unwind"
    );
    assert_eq!(consumer.len(), 3);
    assert_eq!(consumer.pop().map(|item| item.id), Some(0));
    drop((producer, consumer));
    assert_eq!(DROPS.load(Ordering::Relaxed), 4);
}

#[test]
fn zero_sized_items_are_counted() {
    let (mut producer, mut consumer) = channel::<()>(4).unwrap();
    assert_eq!(producer.push_batch(&mut core::iter::repeat(())), 4);
    assert_eq!(producer.push(()), Err(Full(())));
    assert_eq!(consumer.pop_batch(10, |()| {}), 4);
    assert_eq!(consumer.pop(), None);
}

#[test]
fn handles_are_send_and_debug() {
    fn assert_send<T: Send>() {}
    assert_send::<Producer<String>>();
    assert_send::<Consumer<String>>();
    let (producer, consumer) = channel::<String>(2).unwrap();
    let text = std::format!("{producer:?} {consumer:?}");
    assert!(text.contains("Producer") && text.contains("Consumer") && text.contains("capacity: 2"));
}
