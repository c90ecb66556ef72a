//! Loom models of the shared counters: every update is counted exactly once, also across
//! concurrent `take`s.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

use loom::sync::Arc;

use super::{AtomicCounters, Counter, Counters};

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

#[test]
fn loom_concurrent_increments_are_all_counted() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let shared = Arc::new(AtomicCounters::new());
        let threads: std::vec::Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    shared.increment(Counter::StepsRun);
                    shared.add_n(Counter::Retries, 2);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snapshot = shared.snapshot();
        assert_eq!(snapshot.get(Counter::StepsRun), 2);
        assert_eq!(snapshot.get(Counter::Retries), 4);
    });
    let iterations = ITERATIONS.load(StdOrdering::Relaxed);
    std::eprintln!("explored {iterations} interleavings");
    assert!(iterations > 1);
}

#[test]
fn loom_take_neither_loses_nor_doubles_an_update() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let shared = Arc::new(AtomicCounters::new());
        let writer = {
            let shared = shared.clone();
            loom::thread::spawn(move || {
                shared.increment(Counter::CacheHits);
                shared.increment(Counter::CacheHits);
            })
        };
        let taker = {
            let shared = shared.clone();
            loom::thread::spawn(move || shared.take())
        };
        writer.join().unwrap();
        let mut total: Counters = taker.join().unwrap();
        assert!(total.get(Counter::CacheHits) <= 2);
        total.add(&shared.take());
        assert_eq!(total.get(Counter::CacheHits), 2);
    });
    let iterations = ITERATIONS.load(StdOrdering::Relaxed);
    std::eprintln!("explored {iterations} interleavings");
    assert!(iterations > 1);
}
