//! Tests of the mpmc ring: unit and threaded tests on std, loom models under `cfg(loom)`.

// Drop and iteration counters stay outside loom's model (std's atomics, whose `new` is
// const, under loom); on std they are the crate's own, which are `core`'s.
#[cfg(not(loom))]
use crate::sync::{AtomicUsize as Counter, Ordering as CounterOrdering};
#[cfg(loom)]
use std::sync::atomic::{AtomicUsize as Counter, Ordering as CounterOrdering};

/// An item that counts its drops in a counter of its test's own (tests run in parallel).
#[derive(Debug)]
struct Tracked {
    value: u64,
    drops: &'static Counter,
}

impl Tracked {
    fn new(value: u64, drops: &'static Counter) -> Self {
        Self { value, drops }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, CounterOrdering::Relaxed);
    }
}

#[cfg(not(loom))]
mod unit {
    use super::super::{Ring, Vacant};
    use super::Tracked;
    use crate::ring::{CapacityError, Full, MAX_CAPACITY};
    use crate::sync::{AtomicUsize, Ordering};
    use core::panic::AssertUnwindSafe;
    use std::panic::catch_unwind;
    use std::sync::{Arc, Barrier};
    use std::vec::Vec;

    fn count() -> u64 {
        if cfg!(miri) {
            50
        } else {
            100_000
        }
    }

    #[test]
    fn capacity_must_be_a_power_of_two_from_two() {
        for bad in [0, 1, 3, 6, 1000, MAX_CAPACITY + 1, usize::MAX] {
            assert_eq!(
                Ring::<u8>::with_capacity(bad).unwrap_err(),
                CapacityError { requested: bad }
            );
        }
        for good in [2, 4, 1024] {
            let ring = Ring::<u8>::with_capacity(good).unwrap();
            assert_eq!(ring.capacity(), good);
            assert_eq!(ring.len(), 0);
            assert!(ring.is_empty());
        }
    }

    #[test]
    fn full_push_returns_the_value() {
        let ring = Ring::with_capacity(2).unwrap();
        assert_eq!(ring.push(1u32), Ok(()));
        assert_eq!(ring.push(2), Ok(()));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.push(3), Err(Full(3)));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.pop(), Some(1));
        assert_eq!(ring.push(3), Ok(()));
        assert_eq!(ring.pop(), Some(2));
        assert_eq!(ring.pop(), Some(3));
        assert_eq!(ring.pop(), None);
        assert_eq!(ring.try_pop(), Err(Vacant::Empty));
        assert!(ring.is_empty());
    }

    #[test]
    fn fifo_over_many_laps() {
        let ring = Ring::with_capacity(4).unwrap();
        let mut next_out = 0u64;
        for i in 0..count() {
            ring.push(i).unwrap();
            if i % 3 == 2 {
                // Keep 1..=3 items inside so positions and slots drift apart.
                while ring.len() > 1 {
                    assert_eq!(ring.pop(), Some(next_out));
                    next_out += 1;
                }
            }
        }
        while let Some(v) = ring.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, count());
    }

    #[test]
    fn positions_wrap_past_usize_max() {
        for start in [usize::MAX - 5, usize::MAX, usize::MAX - 1] {
            let ring = Ring::starting_at(4, start).unwrap();
            for round in 0..8u32 {
                for k in 0..3 {
                    ring.push(round * 10 + k).unwrap();
                }
                assert_eq!(ring.len(), 3);
                for k in 0..3 {
                    assert_eq!(ring.pop(), Some(round * 10 + k));
                }
                assert_eq!(ring.try_pop(), Err(Vacant::Empty));
            }
            ring.push_batch(&mut (0..4u32));
            assert_eq!(ring.push(9), Err(Full(9)));
            let mut got = Vec::new();
            assert_eq!(ring.pop_batch(8, |v| got.push(v)), 4);
            assert_eq!(got, [0, 1, 2, 3]);
        }
    }

    #[test]
    fn items_left_inside_are_dropped_once() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        let ring = Ring::with_capacity(4).unwrap();
        for v in 0..4 {
            ring.push(Tracked::new(v, &DROPS)).unwrap();
        }
        let rejected = ring.push(Tracked::new(9, &DROPS)).unwrap_err().into_inner();
        assert_eq!(rejected.value, 9);
        assert_eq!(DROPS.load(Ordering::Relaxed), 0, "the ring dropped nothing");
        drop(rejected);
        assert_eq!(ring.pop().map(|t| t.value), Some(0));
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        // Wrap: positions 4 and 5 reuse slots 0 and 1.
        ring.push(Tracked::new(4, &DROPS)).unwrap();
        assert_eq!(ring.len(), 4);
        drop(ring);
        assert_eq!(DROPS.load(Ordering::Relaxed), 2 + 4);
    }

    #[test]
    fn push_batch_stops_at_the_free_run_and_leaves_the_rest() {
        let ring = Ring::with_capacity(8).unwrap();
        assert_eq!(ring.push_batch(&mut core::iter::empty::<u32>()), 0);
        let mut items = 0..5u32;
        assert_eq!(ring.push_batch(&mut items), 5);
        assert_eq!(items.len(), 0);
        let mut items = 5..20u32;
        assert_eq!(ring.push_batch(&mut items), 3);
        assert_eq!(
            items.next(),
            Some(8),
            "no item pulled that could not be stored"
        );
        assert_eq!(ring.push_batch(&mut items), 0);
        assert_eq!(items.next(), Some(9));
        let mut got = Vec::new();
        while let Some(v) = ring.pop() {
            got.push(v);
        }
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn push_batch_moves_nothing_from_an_iterator_without_a_lower_bound() {
        let ring = Ring::with_capacity(4).unwrap();
        let mut items = (0..3u32).filter(|_| true);
        assert_eq!(ring.push_batch(&mut items), 0);
        assert_eq!(items.next(), Some(0), "nothing pulled");
        assert!(ring.is_empty());
    }

    #[test]
    fn batches_wrap_around_the_slots() {
        let ring = Ring::with_capacity(8).unwrap();
        let mut expected = 0u32;
        let mut produced = 0u32;
        for round in 0..count() {
            let n = (round % 7 + 1) as u32;
            let free = 8 - ring.len() as u32;
            let moved = ring.push_batch(&mut (produced..produced + n)) as u32;
            assert_eq!(moved, n.min(free));
            produced += moved;
            let max = (round % 5 + 1) as usize;
            let before = ring.len();
            let popped = ring.pop_batch(max, |v| {
                assert_eq!(v, expected);
                expected += 1;
            });
            assert_eq!(popped, max.min(before));
        }
        ring.pop_batch(usize::MAX, |v| {
            assert_eq!(v, expected);
            expected += 1;
        });
        assert_eq!(expected, produced);
        assert_eq!(ring.pop_batch(0, |_| unreachable!()), 0);
    }

    /// An iterator whose size hint promises more than it yields.
    struct Liar(u32);

    impl Iterator for Liar {
        type Item = u32;
        fn next(&mut self) -> Option<u32> {
            self.0.checked_sub(1).inspect(|&n| self.0 = n)
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (3, Some(3))
        }
    }

    #[test]
    fn unfilled_batch_positions_are_skipped() {
        let ring = Ring::with_capacity(4).unwrap();
        ring.push(10u32).unwrap();
        // Claims 3, fills 1, skips 2.
        assert_eq!(ring.push_batch(&mut Liar(1)), 1);
        assert_eq!(ring.len(), 4, "skipped positions count until stepped over");
        assert_eq!(ring.push(11), Err(Full(11)));
        assert_eq!(ring.pop(), Some(10));
        assert_eq!(ring.pop(), Some(0));
        // The next lap can use the skipped slots before consumers step over them.
        ring.push(11).unwrap();
        ring.push(12).unwrap();
        ring.push(13).unwrap();
        assert_eq!(ring.pop(), Some(11));
        let mut got = Vec::new();
        ring.pop_batch(8, |v| got.push(v));
        assert_eq!(got, [12, 13]);
        assert_eq!(ring.try_pop(), Err(Vacant::Empty));
        assert!(ring.is_empty());
    }

    #[test]
    fn a_panicking_iterator_leaves_the_ring_usable() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        let ring = Ring::with_capacity(4).unwrap();
        // Promises 3 items and panics on the third.
        let mut items = Liar(3).map(|n| {
            assert!(n > 0, "iterator fails");
            Tracked::new(3 - u64::from(n), &DROPS)
        });
        let result = catch_unwind(AssertUnwindSafe(|| ring.push_batch(&mut items)));
        assert!(result.is_err());
        assert_eq!(ring.pop().map(|t| t.value), Some(1));
        assert_eq!(ring.pop().map(|t| t.value), Some(2));
        assert_eq!(ring.try_pop().map(|t| t.value), Err(Vacant::Empty));
        ring.push(Tracked::new(7, &DROPS)).unwrap();
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        drop(ring);
        assert_eq!(DROPS.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_panicking_consumer_drops_the_rest_of_its_batch() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        let ring = Ring::with_capacity(8).unwrap();
        for v in 0..6 {
            ring.push(Tracked::new(v, &DROPS)).unwrap();
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            ring.pop_batch(4, |t| assert!(t.value < 1, "consumer fails"))
        }));
        assert!(result.is_err());
        assert_eq!(
            DROPS.load(Ordering::Relaxed),
            4,
            "all four claimed items dropped"
        );
        assert_eq!(ring.pop().map(|t| t.value), Some(4));
        assert_eq!(ring.len(), 1);
        drop(ring);
        assert_eq!(DROPS.load(Ordering::Relaxed), 6);
    }

    /// Producer `p` pushes `(p, 0), (p, 1), …`; every item must come out exactly once, and each
    /// consumer must see each producer's items in increasing order.
    fn conservation(batch: bool) {
        const PRODUCERS: u64 = 2;
        const CONSUMERS: usize = 2;
        let per_producer = count();
        let ring = Arc::new(Ring::with_capacity(if batch { 64 } else { 8 }).unwrap());
        let start = Arc::new(Barrier::new(PRODUCERS as usize + CONSUMERS));
        let popped = Arc::new(AtomicUsize::new(0));
        let total = (PRODUCERS * per_producer) as usize;
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (ring, start) = (Arc::clone(&ring), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    let mut seq = 0;
                    while seq < per_producer {
                        let moved = if batch {
                            let end = (seq + 5).min(per_producer);
                            ring.push_batch(&mut (seq..end).map(|s| (p, s))) as u64
                        } else {
                            u64::from(ring.push((p, seq)).is_ok())
                        };
                        if moved == 0 {
                            std::thread::yield_now();
                        }
                        seq += moved;
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let (ring, start) = (Arc::clone(&ring), Arc::clone(&start));
                let popped = Arc::clone(&popped);
                std::thread::spawn(move || {
                    start.wait();
                    let mut last = [None::<u64>; PRODUCERS as usize];
                    let mut seen = Vec::new();
                    let mut take = |(p, s): (u64, u64)| {
                        let last = &mut last[p as usize];
                        assert!(
                            last.is_none_or(|l| l < s),
                            "producer {p}: {s} after {last:?}"
                        );
                        *last = Some(s);
                        seen.push((p, s));
                    };
                    while popped.load(Ordering::Relaxed) < total {
                        let n = if batch {
                            ring.pop_batch(7, &mut take)
                        } else {
                            ring.pop().map(&mut take).map_or(0, |()| 1)
                        };
                        if n == 0 {
                            std::thread::yield_now();
                        }
                        popped.fetch_add(n, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<(u64, u64)> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        assert_eq!(all.len(), total, "every item popped once");
        all.sort_unstable();
        let expected: Vec<_> = (0..PRODUCERS)
            .flat_map(|p| (0..per_producer).map(move |s| (p, s)))
            .collect();
        assert_eq!(all, expected, "no item lost or duplicated");
        assert!(ring.is_empty());
    }

    #[test]
    fn two_producers_two_consumers_conserve_items() {
        conservation(false);
    }

    #[test]
    fn two_batch_producers_two_batch_consumers_conserve_items() {
        conservation(true);
    }

    /// Every thread pushes before it pops, so a pop never finds the ring empty; it may fail
    /// spuriously (`Busy`) while another thread is between claiming and publishing a slot.
    #[test]
    fn a_pop_after_a_push_never_finds_the_ring_empty() {
        const THREADS: usize = 4;
        let rounds = count() / 4;
        let ring = Arc::new(Ring::with_capacity(4).unwrap());
        let start = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ring, start) = (Arc::clone(&ring), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..rounds {
                        let mut item = (t as u64) << 32 | i;
                        // At most THREADS items are inside, so Full is spurious: retry.
                        while let Err(Full(back)) = ring.push(item) {
                            item = back;
                            std::thread::yield_now();
                        }
                        loop {
                            match ring.try_pop() {
                                Ok(_) => break,
                                Err(Vacant::Busy) => std::thread::yield_now(),
                                Err(Vacant::Empty) => panic!("empty after our own push"),
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert!(ring.is_empty());
    }

    #[test]
    fn debug_shows_capacity_and_len() {
        let ring = Ring::with_capacity(4).unwrap();
        ring.push(1u8).unwrap();
        assert_eq!(std::format!("{ring:?}"), "Ring { capacity: 4, len: 1, .. }");
    }
}

/// Loom models: capacity 2, so every run crosses a lap; every participant is spawned and the
/// model's closure only joins, then checks.
#[cfg(loom)]
mod loom {
    use super::super::{Ring, Vacant};
    use super::Tracked;
    use loom::sync::Arc;
    use loom::thread;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::vec::Vec;

    /// Asserts the model explored more than one interleaving, and says how many.
    fn assert_explored(name: &str, iterations: &AtomicUsize) {
        let n = iterations.load(Ordering::Relaxed);
        std::eprintln!("{name}: {n} iterations");
        assert!(n > 1, "{name} explored one interleaving");
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(2);
        }
        builder.check(f);
    }

    /// Checks after the threads joined: what was popped, in which order, and that the items
    /// still inside are dropped exactly once with the ring.
    fn settle(ring: Arc<Ring<Tracked>>, pushed: usize, popped: usize, drops: &'static AtomicUsize) {
        let inside = pushed - popped;
        assert_eq!(ring.len(), inside);
        let before = drops.load(Ordering::Relaxed);
        drop(ring);
        assert_eq!(drops.load(Ordering::Relaxed), before + inside);
    }

    #[test]
    fn loom_two_producers_one_consumer() {
        static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        model(|| {
            ITERATIONS.fetch_add(1, Ordering::Relaxed);
            DROPS.store(0, Ordering::Relaxed);
            let ring = Arc::new(Ring::with_capacity(2).unwrap());
            // Producer 1 pushes 1; producer 2 pushes 20 then 21 (3 items, 2 slots).
            let p1 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || usize::from(ring.push(Tracked::new(1, &DROPS)).is_ok()))
            };
            let p2 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut pushed = 0;
                    for v in [20, 21] {
                        pushed += usize::from(ring.push(Tracked::new(v, &DROPS)).is_ok());
                    }
                    pushed
                })
            };
            let c = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        if let Some(t) = ring.pop() {
                            got.push(t.value);
                        }
                    }
                    got
                })
            };
            let pushed = p1.join().unwrap() + p2.join().unwrap();
            let got = c.join().unwrap();
            assert!(pushed >= 2, "two slots: at most one push is refused");
            let mut seen = got.clone();
            seen.dedup();
            assert_eq!(seen, got, "no item popped twice");
            for pair in got.windows(2) {
                assert!(!(pair[0] == 21 && pair[1] == 20), "producer order kept");
            }
            assert!(got.iter().all(|v| [1, 20, 21].contains(v)));
            let popped = got.len();
            settle(ring, pushed, popped, &DROPS);
            assert_eq!(DROPS.load(Ordering::Relaxed), 3, "every item dropped once");
        });
        assert_explored("loom_two_producers_one_consumer", &ITERATIONS);
    }

    #[test]
    fn loom_one_producer_two_consumers() {
        static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        model(|| {
            ITERATIONS.fetch_add(1, Ordering::Relaxed);
            DROPS.store(0, Ordering::Relaxed);
            let ring = Arc::new(Ring::with_capacity(2).unwrap());
            let p = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut pushed = 0;
                    for v in 1..=3 {
                        pushed += usize::from(ring.push(Tracked::new(v, &DROPS)).is_ok());
                    }
                    pushed
                })
            };
            let consumer = || {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        if let Some(t) = ring.pop() {
                            got.push(t.value);
                        }
                    }
                    got
                })
            };
            let (c1, c2) = (consumer(), consumer());
            let pushed = p.join().unwrap();
            let (g1, g2) = (c1.join().unwrap(), c2.join().unwrap());
            assert!(pushed >= 2);
            for got in [&g1, &g2] {
                assert!(got.windows(2).all(|w| w[0] < w[1]), "FIFO per consumer");
            }
            let mut all: Vec<u64> = g1.iter().chain(&g2).copied().collect();
            all.sort_unstable();
            let len = all.len();
            all.dedup();
            assert_eq!(all.len(), len, "no item popped twice");
            assert!(all.iter().all(|&v| (1..=3).contains(&v)));
            settle(ring, pushed, len, &DROPS);
            assert_eq!(DROPS.load(Ordering::Relaxed), 3);
        });
        assert_explored("loom_one_producer_two_consumers", &ITERATIONS);
    }

    #[test]
    fn loom_batches_across_a_lap() {
        static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        model(|| {
            ITERATIONS.fetch_add(1, Ordering::Relaxed);
            DROPS.store(0, Ordering::Relaxed);
            let ring = Arc::new(Ring::with_capacity(2).unwrap());
            let p = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut items = (1..=3).map(|v| Tracked::new(v, &DROPS));
                    let mut pushed = ring.push_batch(&mut items);
                    pushed += ring.push_batch(&mut items);
                    pushed
                })
            };
            let c1 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    ring.pop_batch(2, |t| got.push(t.value));
                    got
                })
            };
            let c2 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop().map(|t| t.value))
            };
            let pushed = p.join().unwrap();
            let got = c1.join().unwrap();
            let single = c2.join().unwrap();
            assert!((2..=3).contains(&pushed));
            assert!(got.windows(2).all(|w| w[0] < w[1]), "a batch pops in order");
            let mut all: Vec<u64> = got.iter().copied().chain(single).collect();
            all.sort_unstable();
            let expected: Vec<u64> = (1..=all.len() as u64).collect();
            assert_eq!(all, expected, "the consumers took a prefix, each item once");
            settle(ring, pushed, all.len(), &DROPS);
            // Items are made as the batch pulls them: only the pushed ones exist.
            assert_eq!(DROPS.load(Ordering::Relaxed), pushed);
        });
        assert_explored("loom_batches_across_a_lap", &ITERATIONS);
    }

    /// Promises two items and yields one, so a batch that claims two skips one position.
    struct ShortBatch(Option<Tracked>);

    impl Iterator for ShortBatch {
        type Item = Tracked;
        fn next(&mut self) -> Option<Tracked> {
            self.0.take()
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (2, Some(2))
        }
    }

    #[test]
    fn loom_skipped_position_is_stepped_over() {
        static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        model(|| {
            ITERATIONS.fetch_add(1, Ordering::Relaxed);
            DROPS.store(0, Ordering::Relaxed);
            let ring = Arc::new(Ring::with_capacity(2).unwrap());
            let p1 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut items = ShortBatch(Some(Tracked::new(1, &DROPS)));
                    // A slot is always free for it: three positions, two items.
                    assert_eq!(ring.push_batch(&mut items), 1);
                    assert!(items.0.is_none());
                })
            };
            let p2 = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || usize::from(ring.push(Tracked::new(2, &DROPS)).is_ok()))
            };
            let c = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        got.extend(ring.pop().map(|t| t.value));
                    }
                    got
                })
            };
            p1.join().unwrap();
            let pushed = 1 + p2.join().unwrap();
            let got = c.join().unwrap();
            let mut all = got.clone();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), got.len(), "no item popped twice");
            // Everything still inside comes out once, stepping over any skipped position.
            let popped = got.len();
            assert!(ring.len() >= pushed - popped);
            let mut rest = Vec::new();
            while let Some(t) = ring.pop() {
                rest.push(t.value);
            }
            assert_eq!(rest.len(), pushed - popped, "left inside: {rest:?}");
            assert!(ring.is_empty());
            assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        });
        assert_explored("loom_skipped_position_is_stepped_over", &ITERATIONS);
    }

    #[test]
    fn loom_pop_after_push_is_never_empty() {
        static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
        model(|| {
            ITERATIONS.fetch_add(1, Ordering::Relaxed);
            let ring = Arc::new(Ring::with_capacity(2).unwrap());
            let worker = |v: u32| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    ring.push(v).unwrap();
                    let got = ring.try_pop();
                    assert_ne!(got, Err(Vacant::Empty), "empty after our own push");
                    got.ok()
                })
            };
            let (a, b) = (worker(1), worker(2));
            let got = [a.join().unwrap(), b.join().unwrap()];
            let mut all: Vec<u32> = got.into_iter().flatten().collect();
            // A Busy pop leaves an item inside.
            while let Some(v) = ring.pop() {
                all.push(v);
            }
            all.sort_unstable();
            assert_eq!(all, [1, 2]);
        });
        assert_explored("loom_pop_after_push_is_never_empty", &ITERATIONS);
    }
}
