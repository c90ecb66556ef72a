//! Loom models of [`ResultCache`]'s single flight: every interleaving (up to the preemption
//! bound) of the real lookup, wait, completion and abandonment, on loom's `Mutex`, `Condvar`,
//! `Arc` and atomics (through `crate::sync`). A lost wake-up shows as a deadlock, which loom
//! reports; a value computed twice or handed to nobody fails the counts.
//!
//! A timed wait (the flight timeout, a waiter's deadline) is modelled as a wait that may end at
//! any moment (`FlightCell::wait_at_most` under loom), the waiter reading its clock again, a
//! [`ManualClock`] moved by a model thread.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use flujo_core::cache::{CacheKey, StepFingerprint};
use flujo_core::graph::{Clock, ManualClock};

use super::{Lookup, ResultCache};

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

fn key() -> CacheKey {
    CacheKey::new(&StepFingerprint::builder("loom", 1).build(), &7u64)
}

/// One shard (every lookup meets on one lock) on a manual clock, room for the value.
fn cache(clock: &ManualClock, flight_timeout: Option<Duration>) -> Arc<ResultCache<u64>> {
    let mut b = ResultCache::builder(4, 1 << 10)
        .shards(1)
        .clock(clock.clone());
    if let Some(timeout) = flight_timeout {
        b = b.flight_timeout(timeout);
    }
    Arc::new(b.build())
}

/// Two callers of one missing key race: whichever leads computes, and the other either waits
/// for it (a leader that completes while the follower starts waiting: no lost wake-up) or
/// finds the value stored. One computation in all, both get its value.
#[test]
fn loom_cache_single_flight_computes_once() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    static WAITED: StdAtomicUsize = StdAtomicUsize::new(0);
    let key = key();
    builder().check(move || {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let clock = ManualClock::new(0);
        let cache = cache(&clock, None);
        let computed = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let caller = || {
            let (cache, computed) = (Arc::clone(&cache), Arc::clone(&computed));
            thread::spawn(move || {
                cache
                    .get_or_compute(key, || {
                        computed.fetch_add(1, loom::sync::atomic::Ordering::Relaxed);
                        Ok::<_, ()>(42)
                    })
                    .unwrap()
            })
        };
        let (a, b) = (caller(), caller());
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!((a.0, b.0), (42, 42));
        assert!(a.1 != b.1, "exactly one caller computed: {a:?} {b:?}");
        assert_eq!(computed.load(loom::sync::atomic::Ordering::Relaxed), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits + stats.coalesced), (1, 1));
        assert_eq!(stats.inserts, 1);
        assert_eq!(cache.get(&key), Some(42));
        WAITED.fetch_add(stats.coalesced as usize, StdOrdering::Relaxed);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
    // Some interleavings had the follower wait for the leader, others find the value stored.
    let waited = WAITED.load(StdOrdering::Relaxed);
    assert!(0 < waited && waited < ITERATIONS.load(StdOrdering::Relaxed));
}

/// The leader gives up (its computation fails: the flight is dropped, as on a panic) while
/// two followers look the key up: the waiters are woken, exactly one of them becomes the new
/// leader and computes, and the other gets its value (waiting for it, or stored).
#[test]
fn loom_cache_abandoned_flight_is_taken_over_once() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    static WAITED: StdAtomicUsize = StdAtomicUsize::new(0);
    let key = key();
    builder().check(move || {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let clock = ManualClock::new(0);
        let cache = cache(&clock, None);
        let Lookup::Miss(leader) = cache.lookup(key) else {
            panic!("the first lookup of an empty cache misses");
        };
        assert!(leader.is_leader());
        let computed = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let follower = || {
            let (cache, computed) = (Arc::clone(&cache), Arc::clone(&computed));
            thread::spawn(move || {
                cache
                    .get_or_compute(key, || {
                        computed.fetch_add(1, loom::sync::atomic::Ordering::Relaxed);
                        Ok::<_, ()>(7)
                    })
                    .unwrap()
            })
        };
        let (b, c) = (follower(), follower());
        drop(leader);
        let (b, c) = (b.join().unwrap(), c.join().unwrap());
        assert_eq!((b.0, c.0), (7, 7));
        assert!(b.1 != c.1, "exactly one follower computed: {b:?} {c:?}");
        assert_eq!(computed.load(loom::sync::atomic::Ordering::Relaxed), 1);
        let stats = cache.stats();
        // The leader's miss and the new leader's.
        assert_eq!((stats.misses, stats.hits + stats.coalesced), (2, 1));
        assert_eq!(stats.inserts, 1);
        assert_eq!(cache.get(&key), Some(7));
        WAITED.fetch_add(stats.coalesced as usize, StdOrdering::Relaxed);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
    // Some interleavings had the other follower wait for the new leader.
    assert!(WAITED.load(StdOrdering::Relaxed) > 0);
}

/// A follower with a flight timeout of 10 ticks waits for a leader that moves the clock 10
/// ticks on, then completes: the follower gets the leader's value, or, only once the clock has
/// passed its deadline, a flight of its own that leads nobody, whose value it stores (both
/// reached). Never a hang.
#[test]
fn loom_cache_follower_times_out_or_gets_the_value() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    static TIMED_OUT: StdAtomicUsize = StdAtomicUsize::new(0);
    let key = key();
    builder().check(move || {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let clock = ManualClock::new(0);
        let cache = cache(&clock, Some(Duration::from_nanos(10)));
        let Lookup::Miss(leader) = cache.lookup(key) else {
            panic!("the first lookup of an empty cache misses");
        };
        let follower = {
            let (cache, clock) = (Arc::clone(&cache), clock.clone());
            thread::spawn(move || {
                let started = clock.now();
                match cache.lookup(key) {
                    Lookup::Hit(value) => (value, false),
                    Lookup::Miss(own) => {
                        assert!(!own.is_leader(), "the leader's flight is in the map");
                        assert!(clock.now() >= started + 10, "timed out before its deadline");
                        (own.complete(2), true)
                    }
                }
            })
        };
        // The leader's thread moves the clock, then completes (a third thread to move it would
        // need more than two preemptions to let the follower see the clock moved in between).
        clock.advance(10);
        assert_eq!(leader.complete(1), 1);
        let (value, timed_out) = follower.join().unwrap();
        assert_eq!(value, if timed_out { 2 } else { 1 });
        let stats = cache.stats();
        let own = u64::from(timed_out);
        assert_eq!(
            (stats.misses, stats.hits + stats.coalesced),
            (1 + own, 1 - own)
        );
        assert_eq!(stats.inserts, 1 + own);
        TIMED_OUT.fetch_add(usize::from(timed_out), StdOrdering::Relaxed);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
    // Both ends were reached: a follower that timed out, and one that got the value.
    let timed_out = TIMED_OUT.load(StdOrdering::Relaxed);
    assert!(0 < timed_out && timed_out < ITERATIONS.load(StdOrdering::Relaxed));
}
