//! Loom models of the pool. Under `--cfg loom --cfg crossbeam_loom` the atomics of crossbeam-epoch
//! are loom's too, so these explore the epoch reclamation of the stack nodes as well as the
//! idle-room budget and the counter slots.
//!
//! Every participant is a spawned thread; the model's main closure only joins and then checks.
// The iteration and drop counters are the model's bookkeeping: real std atomics, not loom's.
#![allow(clippy::std_instead_of_core)]

use super::*;
use ::loom::thread;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::sync::Arc as StdArc;

/// An object that counts its drops (with a std atomic: the count is the model's bookkeeping,
/// not part of what is explored).
struct Counted {
    drops: StdArc<StdAtomicUsize>,
    value: u8,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, StdOrdering::Relaxed);
    }
}

fn counted_pool(max_idle: usize, local_capacity: usize) -> (Pool<Counted>, StdArc<StdAtomicUsize>) {
    let drops = StdArc::new(StdAtomicUsize::new(0));
    let factory_drops = StdArc::clone(&drops);
    let pool = Pool::with_reset(
        PoolConfig {
            max_idle,
            local_capacity,
            max_handles: 2,
        },
        move || Counted {
            drops: StdArc::clone(&factory_drops),
            value: 0,
        },
        |c| c.value = 0,
    )
    .expect("valid config");
    (pool, drops)
}

fn builder() -> ::loom::model::Builder {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

/// Checks the joined pool's counts and that dropping it frees every object once.
fn check_quiescent(pool: Pool<Counted>, drops: &StdAtomicUsize, gets: usize, max_idle: usize) {
    let s = pool.stats();
    assert_eq!(s.gets(), gets, "{s:?}");
    assert_eq!(s.live, 0, "{s:?}");
    assert_eq!(s.returns, gets, "{s:?}");
    assert!(s.idle <= max_idle, "{s:?}");
    assert_eq!(
        s.misses,
        s.idle + s.overflow_drops + s.detached,
        "conservation: {s:?}"
    );
    assert_eq!(drops.load(StdOrdering::Relaxed), s.overflow_drops, "{s:?}");
    assert_eq!(pool.handles(), 0);
    drop(pool);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        s.misses,
        "every created object dropped once: {s:?}"
    );
}

static SPILL_ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);

/// Two handles on two threads, each holding two objects against `max_idle` 1 and a one-slot
/// cache: returns race for the single unit of room, a full cache spills through the shared
/// stack, flushes push, and refills pop and defer-destroy nodes under the other thread's pins.
#[test]
fn loom_two_handles_spill_flush_refill_under_tiny_max_idle() {
    builder().check(|| {
        SPILL_ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let (pool, drops) = counted_pool(1, 1);
        let workers: std::vec::Vec<_> = (0..2u8)
            .map(|t| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let handle = pool.handle().unwrap();
                    let mut a = handle.get();
                    let b = handle.get();
                    assert_eq!(a.value, 0, "handed-out objects are reset or new");
                    a.value = t + 1;
                    drop(a);
                    drop(b);
                    handle.flush();
                    let c = handle.get();
                    assert_eq!(c.value, 0);
                    drop(c);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        check_quiescent(pool, &drops, 6, 1);
    });
    let iterations = SPILL_ITERATIONS.load(StdOrdering::Relaxed);
    std::eprintln!(
        "loom_two_handles_spill_flush_refill_under_tiny_max_idle: {iterations} iterations"
    );
    assert!(iterations > 1);
}

static HANDOFF_ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);

/// One thread flushes an object to the shared stack while the other takes from it (or misses):
/// a concurrent push, pop and deferred node destruction, and a handle dropped mid-way.
#[test]
fn loom_flush_and_refill_hand_objects_between_threads() {
    builder().check(|| {
        HANDOFF_ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let (pool, drops) = counted_pool(2, 2);
        let giver_pool = pool.clone();
        let giver = thread::spawn(move || {
            let handle = giver_pool.handle().unwrap();
            handle.get().value = 9;
            // Dropping the handle flushes its cache to the shared stack.
        });
        let taker_pool = pool.clone();
        let taker = thread::spawn(move || {
            let handle = taker_pool.handle().unwrap();
            let got = handle.get();
            assert_eq!(got.value, 0, "a reused object is reset");
            drop(got);
            let again = handle.get();
            drop(again);
        });
        giver.join().unwrap();
        taker.join().unwrap();
        check_quiescent(pool, &drops, 3, 2);
    });
    let iterations = HANDOFF_ITERATIONS.load(StdOrdering::Relaxed);
    std::eprintln!("loom_flush_and_refill_hand_objects_between_threads: {iterations} iterations");
    assert!(iterations > 1);
}
