//! Unit tests of the pool: drop counting, conservation, the reset hook, overflow protection,
//! handle limits, multi-thread stress with exact final counts, and the registry.

use super::*;
// Outside loom, `crate::sync` is `core`'s atomics and `alloc`'s `Arc`.
use crate::sync::{Arc as StdArc, AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use alloc::vec::Vec;

/// An object that counts its drops and its resets.
#[derive(Debug)]
struct Tracked {
    id: usize,
    resets: usize,
    dirty: bool,
    drops: StdArc<StdAtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, StdOrdering::Relaxed);
    }
}

fn reset_tracked(t: &mut Tracked) {
    t.resets += 1;
    t.dirty = false;
}

/// A pool of `Tracked` with sequential ids, and its drop counter.
fn tracked_pool(config: PoolConfig) -> (Pool<Tracked>, StdArc<StdAtomicUsize>) {
    let drops = StdArc::new(StdAtomicUsize::new(0));
    let next_id = StdArc::new(StdAtomicUsize::new(0));
    let factory_drops = StdArc::clone(&drops);
    let pool = Pool::with_reset(
        config,
        move || Tracked {
            id: next_id.fetch_add(1, StdOrdering::Relaxed),
            resets: 0,
            dirty: false,
            drops: StdArc::clone(&factory_drops),
        },
        reset_tracked,
    )
    .expect("valid config");
    (pool, drops)
}

fn config(max_idle: usize, local_capacity: usize, max_handles: usize) -> PoolConfig {
    PoolConfig {
        max_idle,
        local_capacity,
        max_handles,
    }
}

/// Asserts the identities every quiescent snapshot satisfies.
fn assert_identities(s: &PoolStats, max_idle: usize) {
    assert_eq!(
        s.live,
        s.hits + s.misses - s.returns - s.detached,
        "live: {s:?}"
    );
    assert_eq!(s.idle, s.returns - s.overflow_drops - s.hits, "idle: {s:?}");
    assert_eq!(
        s.misses,
        s.live + s.idle + s.overflow_drops + s.detached,
        "conservation: {s:?}"
    );
    assert!(s.idle <= max_idle, "idle above max_idle: {s:?}");
}

fn iterations() -> usize {
    if cfg!(miri) {
        50
    } else {
        100_000
    }
}

#[test]
fn first_get_misses_then_hits_the_same_object() {
    let (pool, drops) = tracked_pool(PoolConfig::default());
    let handle = pool.handle().unwrap();
    let first = handle.get();
    let id = first.id;
    assert_eq!(first.resets, 0, "a new object is not reset");
    drop(first);
    let again = handle.get();
    assert_eq!(again.id, id, "the cached object comes back");
    assert_eq!(again.resets, 1, "a reused object is reset once");
    drop(again);
    let s = pool.stats();
    assert_eq!(
        s,
        PoolStats {
            hits: 1,
            misses: 1,
            returns: 2,
            overflow_drops: 0,
            detached: 0,
            live: 0,
            idle: 1,
        }
    );
    drop(handle);
    assert_eq!(drops.load(StdOrdering::Relaxed), 0, "idle objects are kept");
    drop(pool);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        1,
        "the pool frees its idle object"
    );
}

#[test]
fn reset_hook_runs_on_reuse_only() {
    let (pool, _drops) = tracked_pool(config(8, 4, 2));
    let handle = pool.handle().unwrap();
    let mut guards: Vec<_> = (0..4).map(|_| handle.get()).collect();
    for g in &mut guards {
        assert_eq!(g.resets, 0, "fresh objects are not reset");
        g.dirty = true;
    }
    drop(guards);
    for round in 1..=3 {
        let guards: Vec<_> = (0..4).map(|_| handle.get()).collect();
        for g in &guards {
            assert!(!g.dirty, "a reused object is reset before it is handed out");
            assert_eq!(g.resets, round);
        }
    }
    // A fifth object in a round is new again, and so not reset.
    let guards: Vec<_> = (0..5).map(|_| handle.get()).collect();
    assert_eq!(guards.iter().filter(|g| g.resets == 0).count(), 1);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses), (16, 5));
}

#[test]
fn reset_hook_also_runs_on_objects_from_the_shared_list() {
    let (pool, _drops) = tracked_pool(config(8, 4, 2));
    let a = pool.handle().unwrap();
    let b = pool.handle().unwrap();
    let ids: Vec<usize> = {
        let guards: Vec<_> = (0..3).map(|_| a.get()).collect();
        guards.iter().map(|g| g.id).collect()
    };
    a.flush();
    assert_eq!(a.cached(), 0);
    let got: Vec<_> = (0..3).map(|_| b.get()).collect();
    let mut got_ids: Vec<usize> = got.iter().map(|g| g.id).collect();
    got_ids.sort_unstable();
    assert_eq!(got_ids, ids, "b takes a's flushed objects");
    assert!(got.iter().all(|g| g.resets == 1));
    drop(got);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.idle, s.live), (3, 3, 3, 0));
}

#[test]
fn every_object_is_dropped_exactly_once() {
    let (pool, drops) = tracked_pool(config(5, 3, 4));
    let mut detached = Vec::new();
    {
        let a = pool.handle().unwrap();
        let b = pool.handle().unwrap();
        for i in 0..iterations().min(2_000) {
            let x = a.get();
            let y = b.get();
            let z = a.get();
            match i % 4 {
                0 => detached.push(y.detach()),
                1 => a.flush(),
                2 => b.flush(),
                _ => {}
            }
            drop((z, x));
        }
        assert_identities(&pool.stats(), 5);
        // `a` and `b` drop here, flushing their caches to the shared list.
    }
    let s = pool.stats();
    assert_identities(&s, 5);
    assert_eq!(s.live, 0);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        s.overflow_drops,
        "only overflow drops so far"
    );
    let detached_count = detached.len();
    assert_eq!(s.detached, detached_count);
    drop(detached);
    drop(pool);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        s.misses,
        "every created object is dropped once"
    );
}

#[test]
fn pool_outliving_handles_and_handles_outliving_pool_both_free_everything() {
    let (pool, drops) = tracked_pool(config(64, 8, 2));
    let handle = pool.handle().unwrap();
    let guards: Vec<_> = (0..20).map(|_| handle.get()).collect();
    drop(guards); // 8 stay local, 12 spill in batches to the shared list
    drop(pool); // the handle keeps the shared state alive
    assert_eq!(drops.load(StdOrdering::Relaxed), 0);
    let s = handle.pool().stats();
    assert_eq!((s.misses, s.idle, s.live), (20, 20, 0));
    drop(handle);
    assert_eq!(drops.load(StdOrdering::Relaxed), 20);
}

#[test]
fn returns_beyond_max_idle_are_dropped_and_counted() {
    let (pool, drops) = tracked_pool(config(3, 2, 2));
    let handle = pool.handle().unwrap();
    let guards: Vec<_> = (0..10).map(|_| handle.get()).collect();
    for (returned, g) in guards.into_iter().enumerate() {
        drop(g);
        let s = pool.stats();
        assert!(s.idle <= 3, "idle {} above max_idle", s.idle);
        assert_eq!(
            s.idle,
            (returned + 1).min(3),
            "a single handle fills max_idle"
        );
        assert_eq!(s.overflow_drops, (returned + 1).saturating_sub(3));
    }
    assert_eq!(drops.load(StdOrdering::Relaxed), 7);
    let s = pool.stats();
    assert_eq!((s.returns, s.overflow_drops, s.idle, s.live), (10, 7, 3, 0));
    assert_identities(&s, 3);
}

#[test]
fn max_idle_zero_turns_pooling_off() {
    let (pool, drops) = tracked_pool(config(0, 4, 1));
    let handle = pool.handle().unwrap();
    for _ in 0..10 {
        let g = handle.get();
        assert_eq!(g.resets, 0);
    }
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.overflow_drops, s.idle), (0, 10, 10, 0));
    assert_eq!(drops.load(StdOrdering::Relaxed), 10);
}

#[test]
fn idle_never_exceeds_max_idle_across_handles() {
    let max_idle = 7;
    let (pool, _drops) = tracked_pool(config(max_idle, 4, 3));
    let handles: Vec<_> = (0..3).map(|_| pool.handle().unwrap()).collect();
    for round in 0..iterations().min(500) {
        let guards: Vec<_> = handles
            .iter()
            .flat_map(|h| (0..(round % 6)).map(move |_| h.get()))
            .collect();
        drop(guards);
        if round % 7 == 0 {
            handles[round % 3].flush();
        }
        let s = pool.stats();
        assert_identities(&s, max_idle);
    }
}

#[test]
fn spill_and_refill_move_batches_through_the_shared_list() {
    let cap = 2 * BATCH_CAPACITY + 6;
    let (pool, _drops) = tracked_pool(config(1000, cap, 2));
    let a = pool.handle().unwrap();
    let b = pool.handle().unwrap();
    let guards: Vec<_> = (0..200).map(|_| a.get()).collect();
    drop(guards);
    assert!(a.cached() <= cap);
    let s = pool.stats();
    assert_eq!((s.idle, s.overflow_drops), (200, 0));
    // b finds everything a spilled, a batch at a time, all as hits.
    let spilled = 200 - a.cached();
    let got: Vec<_> = (0..spilled).map(|_| b.get()).collect();
    assert!(got.iter().all(|g| g.resets == 1));
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.live), (spilled, 200, spilled));
    // One more get on b misses: the shared list is empty and a's cache is a's.
    let extra = b.get();
    assert_eq!(extra.resets, 0);
    assert_eq!(pool.stats().misses, 201);
    drop((got, extra));
    a.flush();
    b.flush();
    assert_eq!((a.cached(), b.cached()), (0, 0));
    assert_identities(&pool.stats(), 1000);
}

#[test]
fn flush_gives_back_room_to_other_handles() {
    // One idle slot in total: a claims it, flush hands it on.
    let (pool, _drops) = tracked_pool(config(1, 4, 2));
    let a = pool.handle().unwrap();
    let b = pool.handle().unwrap();
    drop(a.get());
    assert_eq!(pool.stats().idle, 1);
    drop(b.get()); // b misses, and its return finds no room
    assert_eq!(pool.stats().overflow_drops, 1);
    a.flush();
    let g = b.get(); // b takes a's object from the shared list
    assert_eq!(g.resets, 1);
    drop(g); // and keeps it: the room came with the object
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.overflow_drops, s.idle), (1, 2, 1, 1));
}

#[test]
fn detach_takes_the_object_out_of_the_accounting() {
    let (pool, drops) = tracked_pool(config(4, 2, 1));
    let handle = pool.handle().unwrap();
    let mut g = handle.get();
    g.dirty = true;
    let boxed = g.detach();
    assert!(boxed.dirty);
    let s = pool.stats();
    assert_eq!(
        (s.misses, s.detached, s.live, s.idle, s.returns),
        (1, 1, 0, 0, 0)
    );
    assert_eq!(drops.load(StdOrdering::Relaxed), 0);
    drop(boxed);
    assert_eq!(drops.load(StdOrdering::Relaxed), 1);
    assert_identities(&pool.stats(), 4);
}

#[test]
fn handle_limit_is_enforced_and_slots_are_reused_with_their_counts() {
    let (pool, _drops) = tracked_pool(config(4, 2, 2));
    let a = pool.handle().unwrap();
    let b = pool.handle().unwrap();
    assert_eq!(pool.handles(), 2);
    assert_eq!(
        pool.handle().unwrap_err(),
        HandleLimitError { max_handles: 2 }
    );
    drop(a.get());
    drop(a);
    assert_eq!(pool.handles(), 1);
    let c = pool.handle().expect("a slot was freed");
    drop(c.get()); // a hit: a's object went to the shared list when a dropped
    let s = pool.stats();
    assert_eq!(
        (s.hits, s.misses, s.returns),
        (1, 1, 2),
        "a's counts survive"
    );
    drop((b, c));
    assert_eq!(pool.handles(), 0);
}

#[test]
fn config_is_validated() {
    let ok = PoolConfig::default();
    assert_eq!(ok.validate(), Ok(ok));
    let cases = [
        (config(1, 0, 1), PoolConfigError::LocalCapacity(0)),
        (
            config(1, MAX_LOCAL_CAPACITY + 1, 1),
            PoolConfigError::LocalCapacity(MAX_LOCAL_CAPACITY + 1),
        ),
        (config(1, 1, 0), PoolConfigError::MaxHandles(0)),
        (
            config(1, 1, MAX_HANDLES + 1),
            PoolConfigError::MaxHandles(MAX_HANDLES + 1),
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(bad.validate(), Err(expected));
        assert_eq!(Pool::new(bad, || 0u8).unwrap_err(), expected);
    }
    assert!(config(0, 1, 1).validate().is_ok(), "max_idle 0 is allowed");
    assert!(config(0, MAX_LOCAL_CAPACITY, MAX_HANDLES)
        .validate()
        .is_ok());
    assert!(alloc::format!("{}", PoolConfigError::MaxHandles(0)).contains("max_handles"));
}

#[test]
fn factory_panic_counts_nothing() {
    let calls = StdArc::new(StdAtomicUsize::new(0));
    let factory_calls = StdArc::clone(&calls);
    let pool = Pool::new(config(4, 2, 1), move || {
        if factory_calls.fetch_add(1, StdOrdering::Relaxed) == 0 {
            panic!("first construction fails");
        }
        7u32
    })
    .unwrap();
    let handle = pool.handle().unwrap();
    let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        drop(handle.get());
    }));
    assert!(result.is_err());
    assert_eq!(pool.stats(), PoolStats::default());
    assert_eq!(*handle.get(), 7);
    let s = pool.stats();
    assert_eq!((s.misses, s.live), (1, 0));
}

#[test]
fn reset_panic_hands_the_object_back() {
    fn reset_panics_when_dirty(t: &mut Tracked) {
        assert!(!t.dirty, "reset refuses a dirty object");
        t.resets += 1;
    }
    let drops = StdArc::new(StdAtomicUsize::new(0));
    let factory_drops = StdArc::clone(&drops);
    let pool = Pool::with_reset(
        config(4, 2, 1),
        move || Tracked {
            id: 0,
            resets: 0,
            dirty: false,
            drops: StdArc::clone(&factory_drops),
        },
        reset_panics_when_dirty,
    )
    .unwrap();
    let handle = pool.handle().unwrap();
    handle.get().dirty = true;
    let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
        drop(handle.get());
    }));
    assert!(result.is_err());
    let s = pool.stats();
    assert_eq!(
        (s.hits, s.misses, s.returns, s.live, s.idle),
        (1, 1, 2, 0, 1)
    );
    assert_eq!(drops.load(StdOrdering::Relaxed), 0);
    drop(handle);
    drop(pool);
    assert_eq!(drops.load(StdOrdering::Relaxed), 1);
}

#[test]
fn multi_thread_stress_has_exact_final_counts() {
    let threads = 4;
    let per_thread = if cfg!(miri) { 50 } else { 50_000 };
    let max_idle = 24;
    let (pool, drops) = tracked_pool(config(max_idle, 8, threads));
    let detached_total = StdArc::new(StdAtomicUsize::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let pool = pool.clone();
            let detached_total = StdArc::clone(&detached_total);
            std::thread::spawn(move || {
                let handle = pool.handle().unwrap();
                let mut gets = 0usize;
                let mut held = Vec::new();
                for i in 0..per_thread {
                    let mut g = handle.get();
                    gets += 1;
                    assert!(!g.dirty, "every handed-out object is clean");
                    g.dirty = true;
                    // Hold a varying number of guards so caches fill, spill and refill.
                    held.push(g);
                    if (i + t) % 13 == 0 {
                        held.clear();
                    }
                    if (i + t) % 101 == 0 {
                        if let Some(g) = held.pop() {
                            drop(g.detach());
                            detached_total.fetch_add(1, StdOrdering::Relaxed);
                        }
                    }
                    if i % 997 == 0 {
                        handle.flush();
                    }
                }
                drop(held);
                gets
            })
        })
        .collect();
    let gets: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let s = pool.stats();
    assert_eq!(s.gets(), gets);
    assert_eq!(s.gets(), threads * per_thread);
    assert_eq!(s.returns + s.detached, gets);
    assert_eq!(s.detached, detached_total.load(StdOrdering::Relaxed));
    assert_eq!(s.live, 0);
    assert_identities(&s, max_idle);
    assert_eq!(
        drops.load(StdOrdering::Relaxed),
        s.overflow_drops + s.detached
    );
    assert_eq!(pool.handles(), 0);
    drop(pool);
    assert_eq!(drops.load(StdOrdering::Relaxed), s.misses);
}

#[test]
fn registry_is_typed() {
    let bytes = Pool::new(PoolConfig::default(), || [1u8; 64]).unwrap();
    let words = Pool::new(PoolConfig::default(), || 5u64).unwrap();
    let registry = PoolRegistry::builder()
        .register(bytes.clone())
        .register(words)
        .build()
        .unwrap();
    assert_eq!(registry.len(), 2);
    assert!(!registry.is_empty());
    let got = registry.get::<[u8; 64]>().expect("bytes registered");
    assert_eq!(got.handle().unwrap().get()[0], 1);
    assert_eq!(bytes.stats().misses, 1, "the registry holds the same pool");
    assert_eq!(*registry.get::<u64>().unwrap().handle().unwrap().get(), 5);
    assert!(registry.get::<u32>().is_none());
    assert!(registry.get::<[u8; 32]>().is_none());
    let empty = PoolRegistry::builder().build().unwrap();
    assert!(empty.is_empty() && empty.get::<u64>().is_none());
}

#[test]
fn registry_rejects_a_second_pool_for_one_type() {
    let a = Pool::new(PoolConfig::default(), || 1u64).unwrap();
    let b = Pool::new(PoolConfig::default(), || 2u64).unwrap();
    let c = Pool::new(PoolConfig::default(), || 'c').unwrap();
    let err = PoolRegistry::builder()
        .register(a)
        .register(c)
        .register(b)
        .build()
        .unwrap_err();
    assert_eq!(err, DuplicatePoolError { type_name: "u64" });
    assert!(alloc::format!("{err}").contains("u64"));
}

#[test]
fn pool_and_handle_are_send_sync_as_documented() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool<Tracked>>();
    send_sync::<PoolRegistry>();
    // `PoolHandle` and `Pooled` are neither (checked by the compile_fail doctests on them).
}
