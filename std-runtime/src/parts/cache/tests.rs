//! Tests of the result cache: bounds against a model, CLOCK order, TTL, resizing, single
//! flight (coalescing, abandonment, panics, timeouts) and poisoning.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::cache::{CacheKey, StepFingerprint};

use super::shard::MapKey;
use super::{lock, CacheStats, Lookup, ResultCache};
use crate::clock::ticks;
use flujo_core::graph::ManualClock;

/// A manual clock reading `ns` nanoseconds.
fn manual_at(ns: u64) -> ManualClock {
    ManualClock::new(ns)
}

/// Sets `clock` to `ns` nanoseconds.
fn set_ns(clock: &ManualClock, ns: u64) {
    clock.set(ns);
}

/// The key of input `n` of a test step: uniform, like every real key.
fn key(n: u64) -> CacheKey {
    CacheKey::new(&StepFingerprint::builder("test-step", 1).build(), &n)
}

/// xorshift64*: a seeded generator for operation programs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The number of callers waiting for `key`'s flight (0 if none is in flight).
fn waiters<V: Clone + Send + Sync>(cache: &ResultCache<V>, key: CacheKey) -> usize {
    let state = lock(&cache.shard(&key).state);
    state
        .flights
        .get(&MapKey(key))
        .map_or(0, |cell| Arc::strong_count(cell) - 2) // minus the map's and the leader's
}

/// Spins until `count` callers wait for `key`'s flight (they are already on their way).
fn wait_for_waiters<V: Clone + Send + Sync>(cache: &ResultCache<V>, key: CacheKey, count: usize) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while waiters(cache, key) < count {
        assert!(Instant::now() < give_up, "waiters never arrived");
        thread::yield_now();
    }
}

/// Entries lost to the cache's own decisions (not to the caller's removals).
fn losses(stats: CacheStats) -> u64 {
    stats.evictions + stats.expired
}

fn weight(value: u64) -> usize {
    (value % 64) as usize
}

#[test]
fn bounds_hold_under_random_ops_against_a_model() {
    const KEYS: u64 = 64;
    const SHARDS: usize = 4;
    let ops = if cfg!(miri) { 300 } else { 10_000 };
    let capacities = [
        (24, 600),
        (8, 100),
        (0, 0),
        (40, 2_000),
        (4, 4_000),
        (24, 40),
    ];
    let cache = ResultCache::<u64>::builder(24, 600)
        .weigher(|value: &u64| weight(*value))
        .shards(SHARDS)
        .build();
    let keys: Vec<CacheKey> = (0..KEYS).map(key).collect();
    // Key index -> (last value stored, losses when it was stored).
    let mut model: HashMap<usize, (u64, u64)> = HashMap::new();
    let (mut max_entries, mut max_bytes) = (24, 600);
    let mut probes = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;

    // Checks a value the cache returned (or did not) for key `k` against the model.
    let check = |model: &mut HashMap<usize, (u64, u64)>, k: usize, got: Option<u64>| {
        let now_lost = losses(cache.stats());
        match (got, model.get(&k).copied()) {
            (Some(value), Some((expected, _))) => assert_eq!(value, expected, "wrong value"),
            (Some(value), None) => panic!("value {value} for a key never stored or removed"),
            (None, Some((_, lost_at))) => {
                assert!(now_lost > lost_at, "key {k} lost without an eviction");
                model.remove(&k);
            }
            (None, None) => {}
        }
    };

    for _ in 0..ops {
        let r = next(&mut seed);
        let k = ((r >> 8) % KEYS) as usize;
        match r % 16 {
            0..=6 => {
                let value = next(&mut seed);
                let fits_everywhere = max_entries >= SHARDS && weight(value) <= max_bytes / SHARDS;
                match cache.insert(keys[k], value) {
                    Ok(()) => {
                        model.insert(k, (value, losses(cache.stats())));
                    }
                    Err(back) => {
                        assert_eq!(back, value, "a rejected value comes back");
                        assert!(!fits_everywhere, "a value that fits was rejected");
                        model.remove(&k);
                    }
                }
            }
            7..=11 => {
                probes += 1;
                let got = cache.get(&keys[k]);
                check(&mut model, k, got);
            }
            12 => {
                let got = cache.remove(&keys[k]);
                check(&mut model, k, got);
                model.remove(&k);
            }
            13 => {
                probes += 1;
                match cache.lookup(keys[k]) {
                    Lookup::Hit(value) => check(&mut model, k, Some(value)),
                    Lookup::Miss(flight) => {
                        check(&mut model, k, None);
                        assert!(flight.is_leader());
                        if r & (1 << 20) == 0 {
                            let value = next(&mut seed);
                            assert_eq!(flight.complete(value), value);
                            // Read it back rather than guess whether it fitted.
                            probes += 1;
                            match cache.get(&keys[k]) {
                                Some(stored) => {
                                    assert_eq!(stored, value);
                                    model.insert(k, (value, losses(cache.stats())));
                                }
                                None => {
                                    model.remove(&k);
                                }
                            }
                        } else {
                            drop(flight); // a failed computation stores nothing
                            assert_eq!(waiters(&cache, keys[k]), 0);
                        }
                    }
                }
            }
            14 => {
                (max_entries, max_bytes) = capacities[(r >> 32) as usize % capacities.len()];
                cache.set_capacity(max_entries, max_bytes);
                assert_eq!(cache.capacity(), (max_entries, max_bytes));
            }
            _ => {
                cache.clear();
                model.clear();
                assert!(cache.is_empty());
            }
        }
        assert!(cache.len() <= max_entries, "entry bound broken");
        assert!(cache.bytes() <= max_bytes, "byte bound broken");
    }

    // What remains is exactly the model's keys still stored, with their weights.
    let mut len = 0;
    let mut bytes = 0;
    for (k, key) in keys.iter().enumerate() {
        probes += 1;
        let got = cache.get(key);
        if let Some(value) = got {
            len += 1;
            bytes += weight(value);
        }
        check(&mut model, k, got);
    }
    assert_eq!((cache.len(), cache.bytes()), (len, bytes));
    let stats = cache.stats();
    assert_eq!(stats.hits + stats.misses, probes, "one count per probe");
    assert_eq!(stats.coalesced, 0, "nobody waited");
    assert!(stats.evictions > 0 && stats.rejected_too_big > 0 && stats.inserts > 0);
    assert_eq!(stats.expired, 0, "no TTL");
}

#[test]
fn clock_gives_hit_entries_a_second_chance() {
    let cache = ResultCache::<u64>::builder(3, 1 << 10).shards(1).build();
    for n in 0..3 {
        cache.insert(key(n), n).unwrap();
    }
    assert_eq!(cache.get(&key(0)), Some(0)); // 0 is referenced
    cache.insert(key(3), 3).unwrap(); // the hand passes 0 and evicts 1
    assert_eq!(cache.get(&key(1)), None);
    for n in [0, 2, 3] {
        assert_eq!(cache.get(&key(n)), Some(n));
    }
    assert_eq!(cache.stats().evictions, 1);
    assert_eq!(cache.len(), 3);
}

#[test]
fn a_value_too_big_for_its_shard_is_rejected() {
    // Two shards of 50 bytes each.
    let cache = ResultCache::<Vec<u8>>::builder(10, 100)
        .shards(2)
        .weigher(Vec::len)
        .build();
    assert_eq!(cache.shard_count(), 2);
    cache.insert(key(1), vec![0; 50]).unwrap();
    assert_eq!(cache.bytes(), 50);
    assert_eq!(cache.insert(key(1), vec![1; 51]), Err(vec![1; 51]));
    assert_eq!(cache.get(&key(1)), None, "the replaced value is gone too");
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    let stats = cache.stats();
    assert_eq!((stats.inserts, stats.rejected_too_big), (1, 1));
}

#[test]
fn entries_expire_after_their_ttl() {
    let clock = manual_at(1_000);
    let cache = ResultCache::<u32>::builder(16, 1 << 10)
        .ttl(Duration::from_nanos(100))
        .clock(clock.clone())
        .shards(1)
        .build();
    cache.insert(key(1), 7).unwrap();
    set_ns(&clock, 1_099);
    assert_eq!(cache.get(&key(1)), Some(7));
    set_ns(&clock, 1_100);
    assert_eq!(cache.get(&key(1)), None);
    assert_eq!(cache.stats().expired, 1);
    assert_eq!(cache.len(), 0, "removed when seen");

    // A lookup of an expired entry leads a new computation, whose value lives a new TTL.
    cache.insert(key(2), 8).unwrap(); // expires at 1_200
    set_ns(&clock, 1_300);
    let Lookup::Miss(flight) = cache.lookup(key(2)) else {
        panic!("expired entries are misses");
    };
    assert_eq!(flight.complete(9), 9);
    set_ns(&clock, 1_399);
    assert_eq!(cache.get(&key(2)), Some(9));

    // remove() of an expired entry returns nothing and counts it.
    set_ns(&clock, 1_400);
    assert_eq!(cache.remove(&key(2)), None);
    let stats = cache.stats();
    assert_eq!((stats.expired, stats.evictions), (3, 0));
}

#[test]
fn the_clock_hand_counts_expired_entries_as_expired() {
    let clock = manual_at(0);
    let cache = ResultCache::<u32>::builder(4, 1 << 10)
        .ttl(Duration::from_nanos(10))
        .clock(clock.clone())
        .shards(1)
        .build();
    for n in 0..4 {
        cache.insert(key(n), 1).unwrap();
    }
    clock.advance(ticks(Duration::from_nanos(10)));
    cache.insert(key(4), 2).unwrap();
    let stats = cache.stats();
    assert_eq!((stats.expired, stats.evictions), (1, 0));
    assert_eq!(cache.len(), 4);
}

#[test]
fn deadlines_past_the_end_of_time_saturate_to_never() {
    let clock = manual_at(u64::MAX - 10);
    let cache = ResultCache::<u32>::builder(4, 1 << 10)
        .ttl(Duration::from_nanos(100))
        .clock(clock.clone())
        .build();
    cache.insert(key(1), 1).unwrap();
    set_ns(&clock, u64::MAX);
    assert_eq!(cache.get(&key(1)), Some(1));
    assert_eq!(cache.stats().expired, 0);
}

#[test]
fn set_capacity_shrinks_at_once_and_keeps_referenced_entries() {
    let cache = ResultCache::<u64>::builder(100, 100 * 8).shards(1).build();
    for n in 0..100 {
        cache.insert(key(n), n).unwrap();
    }
    assert_eq!((cache.len(), cache.bytes()), (100, 800));
    for n in 0..3 {
        assert_eq!(cache.get(&key(n)), Some(n));
    }
    cache.set_capacity(3, 800);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.stats().evictions, 97);
    for n in 0..3 {
        assert_eq!(cache.get(&key(n)), Some(n), "referenced entries survive");
    }

    // By bytes: 2 entries of 8 bytes fit in 20.
    cache.set_capacity(100, 20);
    assert_eq!((cache.len(), cache.bytes()), (2, 16));

    // To nothing: everything goes and nothing is stored.
    cache.set_capacity(0, 0);
    assert!(cache.is_empty());
    assert_eq!(cache.insert(key(1), 1), Err(1));

    // Growing again stores again.
    cache.set_capacity(10, 80);
    cache.insert(key(1), 1).unwrap();
    assert_eq!(cache.get(&key(1)), Some(1));
}

#[test]
fn set_capacity_splits_budgets_exactly_over_shards() {
    let cache = ResultCache::<u64>::builder(1_000, 8_000).shards(8).build();
    for n in 0..1_000 {
        cache.insert(key(n), n).unwrap();
    }
    for (entries, bytes) in [(13, 1 << 20), (1_000, 61), (7, 7), (1, 8), (0, 1_000)] {
        cache.set_capacity(entries, bytes);
        assert!(cache.len() <= entries, "{} > {entries}", cache.len());
        assert!(cache.bytes() <= bytes, "{} > {bytes}", cache.bytes());
    }
}

#[test]
fn concurrent_misses_on_one_key_compute_once() {
    const THREADS: usize = 8;
    let cache = ResultCache::<u64>::new(64, 1 << 10);
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let results: Vec<(u64, bool)> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache
                        .get_or_compute(key(42), || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(2));
                            Ok::<_, ()>(42)
                        })
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "computed exactly once");
    assert!(results.iter().all(|&(value, _)| value == 42));
    assert_eq!(results.iter().filter(|&&(_, hit)| !hit).count(), 1);
    let stats = cache.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.coalesced, THREADS as u64 - 1);
    assert_eq!(stats.inserts, 1);
    assert_eq!(waiters(&cache, key(42)), 0);
}

#[test]
fn a_dropped_flight_hands_the_computation_to_a_waiter() {
    let cache = ResultCache::<u64>::new(64, 1 << 10);
    let runs = AtomicUsize::new(0);
    let Lookup::Miss(flight) = cache.lookup(key(1)) else {
        panic!("empty cache");
    };
    let results: Vec<(u64, bool)> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    cache
                        .get_or_compute(key(1), || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, ()>(7)
                        })
                        .unwrap()
                })
            })
            .collect();
        wait_for_waiters(&cache, key(1), 2);
        drop(flight); // the leader failed
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one waiter took over");
    let mut results = results;
    results.sort_unstable();
    assert_eq!(results, [(7, false), (7, true)]);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.inserts), (2, 1, 1));
    assert_eq!(cache.get(&key(1)), Some(7));
}

#[test]
fn waiters_get_the_value_even_when_it_is_too_big_to_store() {
    let cache = ResultCache::<Vec<u8>>::builder(8, 16)
        .shards(1)
        .weigher(Vec::len)
        .build();
    let Lookup::Miss(flight) = cache.lookup(key(1)) else {
        panic!("empty cache");
    };
    let got = thread::scope(|s| {
        let waiter = s.spawn(|| match cache.lookup(key(1)) {
            Lookup::Hit(value) => value,
            Lookup::Miss(_) => panic!("the leader completed"),
        });
        wait_for_waiters(&cache, key(1), 1);
        assert_eq!(flight.complete(vec![1; 100]).len(), 100);
        waiter.join().unwrap()
    });
    assert_eq!(got, vec![1; 100]);
    let stats = cache.stats();
    assert_eq!((stats.coalesced, stats.rejected_too_big), (1, 1));
    assert!(cache.is_empty());
}

#[test]
fn a_failed_computation_stores_nothing() {
    let cache = ResultCache::<u64>::new(64, 1 << 10);
    assert_eq!(cache.get_or_compute(key(1), || Err("down")), Err("down"));
    assert!(cache.is_empty());
    assert_eq!(
        cache.get_or_compute(key(1), || Ok::<_, ()>(3)),
        Ok((3, false))
    );
    assert_eq!(
        cache.get_or_compute(key(1), || Ok::<_, ()>(4)),
        Ok((3, true))
    );
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.inserts), (2, 1, 1));
}

#[test]
fn a_panicking_computation_does_not_break_the_cache() {
    let cache = ResultCache::<u64>::new(64, 1 << 10);
    let runs = AtomicUsize::new(0);
    let results = thread::scope(|s| {
        let leader = s.spawn(|| {
            catch_unwind(AssertUnwindSafe(|| {
                cache.get_or_compute(key(1), || -> Result<u64, ()> {
                    wait_for_waiters(&cache, key(1), 1);
                    panic!("the step panicked")
                })
            }))
        });
        let waiter = s.spawn(|| {
            // Join only once the leader leads, so that this caller waits.
            while !leader_started(&cache, key(1)) {
                thread::yield_now();
            }
            cache.get_or_compute(key(1), || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(9)
            })
        });
        (leader.join().unwrap(), waiter.join().unwrap())
    });
    assert!(results.0.is_err(), "the leader's panic reached its caller");
    assert_eq!(results.1, Ok((9, false)), "the waiter took over");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(waiters(&cache, key(1)), 0);
    assert_eq!(
        cache.get_or_compute(key(1), || Ok::<_, ()>(0)),
        Ok((9, true))
    );

    // With nobody waiting, a later caller computes.
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_compute(key(2), || -> Result<u64, ()> { panic!("again") })
    }));
    assert!(panicked.is_err());
    assert_eq!(
        cache.get_or_compute(key(2), || Ok::<_, ()>(5)),
        Ok((5, false))
    );
}

/// Whether a computation of `key` is in flight.
fn leader_started<V: Clone + Send + Sync>(cache: &ResultCache<V>, key: CacheKey) -> bool {
    lock(&cache.shard(&key).state)
        .flights
        .contains_key(&MapKey(key))
}

#[test]
fn a_panicking_weigher_abandons_the_flight() {
    let cache = ResultCache::<u64>::builder(8, 1 << 10)
        .weigher(|value: &u64| {
            assert_ne!(*value, 13, "unlucky");
            8
        })
        .build();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_compute(key(1), || Ok::<_, ()>(13))
    }));
    assert!(panicked.is_err());
    assert!(!leader_started(&cache, key(1)), "the flight ended");
    assert_eq!(
        cache.get_or_compute(key(1), || Ok::<_, ()>(1)),
        Ok((1, false))
    );
}

/// A value whose clone panics on demand, to poison a shard lock.
#[derive(Debug)]
struct Fragile {
    value: u64,
    explode: Arc<AtomicBool>,
}

impl Clone for Fragile {
    fn clone(&self) -> Self {
        assert!(!self.explode.load(Ordering::SeqCst), "clone exploded");
        Self {
            value: self.value,
            explode: Arc::clone(&self.explode),
        }
    }
}

#[test]
fn a_poisoned_shard_lock_is_recovered() {
    let explode = Arc::new(AtomicBool::new(false));
    let cache = ResultCache::<Fragile>::builder(8, 1 << 10)
        .shards(1)
        .build();
    let fragile = |value| Fragile {
        value,
        explode: Arc::clone(&explode),
    };
    cache.insert(key(1), fragile(1)).unwrap();
    explode.store(true, Ordering::SeqCst);
    assert!(catch_unwind(AssertUnwindSafe(|| cache.get(&key(1)))).is_err());
    assert!(cache.shards[0].state.is_poisoned());
    explode.store(false, Ordering::SeqCst);
    assert_eq!(cache.get(&key(1)).map(|f| f.value), Some(1));
    cache.insert(key(2), fragile(2)).unwrap();
    assert_eq!(cache.len(), 2);
}

#[test]
fn a_waiter_that_times_out_computes_on_its_own() {
    let cache = ResultCache::<u64>::builder(8, 1 << 10)
        .flight_timeout(Duration::from_millis(1))
        .build();
    let Lookup::Miss(leader) = cache.lookup(key(1)) else {
        panic!("empty cache");
    };
    assert!(leader.is_leader());
    let Lookup::Miss(second) = cache.lookup(key(1)) else {
        panic!("nothing stored yet");
    };
    assert!(!second.is_leader());
    assert_eq!(second.key(), key(1));
    assert_eq!(second.complete(3), 3);
    assert_eq!(cache.get(&key(1)), Some(3));
    assert!(leader_started(&cache, key(1)), "the leader still leads");
    assert_eq!(leader.complete(4), 4);
    assert_eq!(cache.get(&key(1)), Some(4));
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.inserts), (2, 0, 2));
}

/// A waiter's own deadline ends its wait even without a flight timeout, and the earlier of
/// the two bounds wins.
#[test]
fn a_waiters_deadline_bounds_its_wait() {
    use flujo_core::graph::Clock;
    let cache = ResultCache::<u64>::builder(8, 1 << 10)
        .flight_timeout(Duration::from_secs(60))
        .build();
    let Lookup::Miss(leader) = cache.lookup(key(1)) else {
        panic!("empty cache");
    };
    let clock = crate::clock::MonoClock::new();
    let started = Instant::now();
    let deadline = clock.now() + 5_000_000; // 5 ms
    let Lookup::Miss(own) = cache.lookup_until(key(1), Some(deadline)) else {
        panic!("the leader has not completed");
    };
    let waited = started.elapsed();
    assert!(!own.is_leader());
    assert!(waited >= Duration::from_millis(5), "{waited:?}");
    assert!(
        waited < Duration::from_secs(30),
        "{waited:?}: the flight timeout ruled"
    );
    // A deadline already passed does not wait at all.
    let Lookup::Miss(late) = cache.lookup_until(key(1), Some(0)) else {
        panic!("the leader has not completed");
    };
    assert!(!late.is_leader());
    drop((own, late));
    assert_eq!(leader.complete(1), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced), (3, 0));
}

/// Under a manual clock the wait ends when the clock is moved past the deadline, however
/// long it takes in real time.
#[test]
fn a_manual_clock_moved_past_the_deadline_ends_the_wait() {
    let clock = manual_at(0);
    let cache = ResultCache::<u64>::builder(8, 1 << 10)
        .clock(clock.clone())
        .flight_timeout(Duration::from_millis(1))
        .build();
    let Lookup::Miss(leader) = cache.lookup(key(1)) else {
        panic!("empty cache");
    };
    let timed_out = AtomicBool::new(false);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let lookup = cache.lookup(key(1));
            timed_out.store(true, Ordering::SeqCst);
            matches!(lookup, Lookup::Miss(ref f) if !f.is_leader())
        });
        wait_for_waiters(&cache, key(1), 1);
        thread::sleep(Duration::from_millis(20)); // real time passes, the clock stands still
        assert!(!timed_out.load(Ordering::SeqCst), "timed out by real time");
        clock.advance(ticks(Duration::from_millis(1)));
        assert!(waiter.join().unwrap(), "the waiter computes on its own");
    });
    drop(leader);
}

#[test]
fn concurrent_random_use_keeps_bounds_and_values() {
    const THREADS: u64 = 4;
    let ops = if cfg!(miri) { 50 } else { 3_000 };
    let cache = ResultCache::<u64>::builder(16, 16 * 8).shards(4).build();
    let lookups = AtomicUsize::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let cache = &cache;
            let lookups = &lookups;
            s.spawn(move || {
                let mut seed = 0x1234_5678 + t;
                for _ in 0..ops {
                    let r = next(&mut seed);
                    let n = (r >> 8) % 40;
                    match r % 8 {
                        0 => {
                            let _ = cache.remove(&key(n));
                        }
                        1 => {
                            lookups.fetch_add(1, Ordering::Relaxed);
                            if let Some(value) = cache.get(&key(n)) {
                                assert_eq!(value, n * 3);
                            }
                        }
                        2 if r & (1 << 30) == 0 => cache.set_capacity(8, 64),
                        2 => cache.set_capacity(16, 128),
                        _ => {
                            lookups.fetch_add(1, Ordering::Relaxed);
                            let (value, _) =
                                cache.get_or_compute(key(n), || Ok::<_, ()>(n * 3)).unwrap();
                            assert_eq!(value, n * 3);
                        }
                    }
                    let (entries, bytes) = (cache.len(), cache.bytes());
                    assert!(entries <= 16 && bytes <= 128);
                }
            });
        }
    });
    let (max_entries, max_bytes) = cache.capacity();
    assert!(cache.len() <= max_entries && cache.bytes() <= max_bytes);
    let stats = cache.stats();
    assert_eq!(
        stats.hits + stats.misses + stats.coalesced,
        lookups.load(Ordering::Relaxed) as u64,
        "one count per lookup"
    );
}

#[test]
fn debug_output_names_the_parts() {
    let cache = ResultCache::<u64>::builder(8, 64).shards(2).build();
    let text = format!("{cache:?}");
    assert!(
        text.contains("ResultCache") && text.contains("shards: 2"),
        "{text}"
    );
    let lookup = cache.lookup(key(1));
    let text = format!("{lookup:?}");
    assert!(
        text.contains("Miss(Flight") && text.contains("leader: true"),
        "{text}"
    );
    let builder = ResultCache::<u64>::builder(8, 64);
    assert!(format!("{builder:?}").contains("max_entries: 8"));
}
