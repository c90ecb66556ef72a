//! Loom models of the spsc ring: every interleaving (up to the preemption bound) of a producer
//! and a consumer thread on a ring of capacity 2, with the full and empty paths both taken.

// The iteration counters are real atomics, outside loom's model: they count the model's runs.
#![allow(clippy::std_instead_of_core)]

use loom::sync::atomic::AtomicUsize as LoomAtomicUsize;
use loom::sync::Arc as LoomArc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

use super::channel;
use crate::sync::spin_hint;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// Asserts that the model explored more than one interleaving, and says how many.
fn assert_explored(iterations: &AtomicUsize) {
    let count = iterations.load(Ordering::Relaxed);
    std::eprintln!("loom explored {count} interleavings");
    assert!(count > 1, "the model ran a single interleaving");
}

#[test]
fn loom_single_items_arrive_once_in_order() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let (mut producer, mut consumer) = channel::<usize>(2).unwrap();
        let producer_thread = loom::thread::spawn(move || {
            for i in 0..3 {
                let mut value = i;
                while let Err(full) = producer.push(value) {
                    value = full.into_inner();
                    spin_hint();
                }
            }
        });
        let consumer_thread = loom::thread::spawn(move || {
            let mut expected = 0;
            while expected < 3 {
                match consumer.pop() {
                    Some(value) => {
                        assert_eq!(value, expected);
                        expected += 1;
                    }
                    None => spin_hint(),
                }
            }
            assert_eq!(consumer.pop(), None);
        });
        producer_thread.join().unwrap();
        consumer_thread.join().unwrap();
    });
    assert_explored(&ITERATIONS);
}

#[test]
fn loom_batches_arrive_once_in_order() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let (mut producer, mut consumer) = channel::<usize>(2).unwrap();
        let producer_thread = loom::thread::spawn(move || {
            let mut items = (0..3).peekable();
            while items.peek().is_some() {
                if producer.push_batch(&mut items) == 0 {
                    spin_hint();
                }
            }
        });
        let consumer_thread = loom::thread::spawn(move || {
            let mut popped = Vec::new();
            while popped.len() < 3 {
                if consumer.pop_batch(2, |value| popped.push(value)) == 0 {
                    spin_hint();
                }
            }
            assert_eq!(popped, [0, 1, 2]);
        });
        producer_thread.join().unwrap();
        consumer_thread.join().unwrap();
    });
    assert_explored(&ITERATIONS);
}

/// An item that counts its drops in a loom atomic, so the count is ordered like the real code.
struct Counted(LoomArc<LoomAtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, loom::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn loom_leftovers_are_dropped_once_by_the_last_handle() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let drops = LoomArc::new(LoomAtomicUsize::new(0));
        let (mut producer, mut consumer) = channel::<Counted>(2).unwrap();
        let producer_drops = LoomArc::clone(&drops);
        let producer_thread = loom::thread::spawn(move || {
            for _ in 0..2 {
                assert!(producer
                    .push(Counted(LoomArc::clone(&producer_drops)))
                    .is_ok());
            }
            // The producer is dropped here, racing with the consumer's pop and drop.
        });
        let consumer_thread = loom::thread::spawn(move || {
            // Pops at most one item: zero, one or two are left for the last handle to drop.
            let popped = consumer.pop();
            drop(popped);
        });
        producer_thread.join().unwrap();
        consumer_thread.join().unwrap();
        assert_eq!(drops.load(loom::sync::atomic::Ordering::Relaxed), 2);
    });
    assert_explored(&ITERATIONS);
}
