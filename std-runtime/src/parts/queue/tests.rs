use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::{Priority, PriorityQueues, QueueConfig};
use crate::Refusal;

fn queues<T: Send>(capacity: [usize; 3], aging: u32) -> PriorityQueues<T> {
    PriorityQueues::new(QueueConfig { capacity, aging }).unwrap()
}

/// A non-Copy item that counts its drops.
#[derive(Debug)]
struct Item {
    id: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn fifo_within_a_level() {
    let q = queues_cap(64, 0);
    for i in 0..50 {
        q.push(i, Priority::Normal).unwrap();
    }
    assert_eq!(q.len_of(Priority::Normal), 50);
    for i in 0..50 {
        assert_eq!(q.pop(), Some((i, Priority::Normal)));
    }
    assert_eq!(q.pop(), None);
    assert!(q.is_empty());
}

fn queues_cap<T: Send>(capacity: usize, aging: u32) -> PriorityQueues<T> {
    queues([capacity; 3], aging)
}

#[test]
fn strict_priority_order() {
    for aging in [0, 100] {
        let q = queues_cap(8, aging);
        q.push("l1", Priority::Low).unwrap();
        q.push("n1", Priority::Normal).unwrap();
        q.push("h1", Priority::High).unwrap();
        q.push("l2", Priority::Low).unwrap();
        q.push("h2", Priority::High).unwrap();
        q.push("n2", Priority::Normal).unwrap();
        assert_eq!(q.len(), 6);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                ("h1", Priority::High),
                ("h2", Priority::High),
                ("n1", Priority::Normal),
                ("n2", Priority::Normal),
                ("l1", Priority::Low),
                ("l2", Priority::Low),
            ]
        );
    }
}

/// Pops `pops` times from queues whose `busy` levels are refilled after every pop, and returns
/// the served levels.
fn serve_busy(aging: u32, busy: &[Priority], pops: usize) -> Vec<Priority> {
    let q = queues([4, 4, 4], aging);
    for &p in busy {
        q.push((), p).unwrap();
    }
    (0..pops)
        .map(|_| {
            let ((), served) = q.pop().unwrap();
            q.push((), served).unwrap();
            served
        })
        .collect()
}

/// The longest run of pops that did not serve `level`.
fn longest_pass_over(served: &[Priority], level: Priority) -> usize {
    served
        .split(|&p| p == level)
        .map(<[Priority]>::len)
        .max()
        .unwrap()
}

#[test]
fn aging_exact_sequence() {
    use Priority::{High as H, Low as L, Normal as N};
    assert_eq!(serve_busy(2, &[H, L], 9), [H, H, L, H, H, L, H, H, L]);
    assert_eq!(serve_busy(1, &[H, N, L], 6), [H, N, L, H, N, L]);
    // aging 2, all busy: Normal and Low starve together after two Highs; the tie goes to
    // Normal, then Low (count 3 by then) comes before High (count 2). From then on each level
    // is starved again exactly when its turn comes: a period of aging + 1 = 3.
    assert_eq!(
        serve_busy(2, &[H, N, L], 10),
        [H, H, N, L, H, N, L, H, N, L]
    );
    // aging 3, all busy: period aging + 1 = 4, two Highs in each.
    assert_eq!(
        serve_busy(3, &[H, N, L], 13),
        [H, H, H, N, L, H, H, N, L, H, H, N, L]
    );
}

#[test]
fn aging_bounds_starvation() {
    let pops = if cfg!(miri) { 60 } else { 2_000 };
    for aging in 1..=6u32 {
        let bound = aging as usize + 2;
        let all = serve_busy(aging, &Priority::ALL, pops);
        for level in Priority::ALL {
            let gap = longest_pass_over(&all, level);
            assert!(
                gap <= bound,
                "aging {aging}: {level:?} passed over {gap} times"
            );
        }
        // High is always non-empty: Low is still served at least once every aging + 3 pops.
        for window in all.windows(bound + 1) {
            assert!(window.contains(&Priority::Low), "aging {aging}: {window:?}");
        }
        // With one other busy level the bound is aging + 1.
        let two = serve_busy(aging, &[Priority::High, Priority::Low], pops);
        assert_eq!(longest_pass_over(&two, Priority::Low), aging as usize);
        assert_eq!(longest_pass_over(&two, Priority::High), 1);
    }
}

#[test]
fn no_aging_is_strict() {
    let served = serve_busy(0, &Priority::ALL, 200);
    assert!(served.iter().all(|&p| p == Priority::High));
}

#[test]
fn rejection_returns_the_very_item() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = queues([1, 3, 1], 4);
    let item = |id| Item {
        id,
        drops: Arc::clone(&drops),
    };
    // A capacity that is not a power of two is exact.
    for id in 0..3 {
        q.push(item(id), Priority::Normal).unwrap();
    }
    let rejected = q.push(item(99), Priority::Normal).unwrap_err();
    assert_eq!(rejected.reason, Refusal::QueueFull);
    assert_eq!(rejected.priority, Priority::Normal);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the rejected item is alive"
    );
    let back = rejected.into_inner();
    assert_eq!(back.id, 99);
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Other levels are bounded independently.
    q.push(item(10), Priority::High).unwrap();
    assert_eq!(q.push(item(11), Priority::High).unwrap_err().item.id, 11);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    let stats = q.stats();
    assert_eq!(stats.level(Priority::Normal).pushed, 3);
    assert_eq!(stats.level(Priority::Normal).rejected_queue_full, 1);
    assert_eq!(stats.level(Priority::High).rejected(), 1);
    assert_eq!(stats.level(Priority::Low), &Default::default());
    // Popping frees a place.
    assert_eq!(q.pop().map(|(item, _)| item.id), Some(10));
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    q.push(item(12), Priority::High).unwrap();
    // The four items still queued are dropped with the queues, once each.
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 7);
}

#[test]
fn close_rejects_pushes_and_keeps_pops() {
    let q = queues_cap(4, 2);
    q.push(1, Priority::Low).unwrap();
    q.push(2, Priority::High).unwrap();
    q.push(3, Priority::High).unwrap();
    assert!(!q.is_closed());
    q.close();
    q.close();
    assert!(q.is_closed());
    for p in Priority::ALL {
        let rejected = q.push(7, p).unwrap_err();
        assert_eq!((rejected.item, rejected.reason), (7, Refusal::ShuttingDown));
    }
    assert_eq!(q.pop(), Some((2, Priority::High)));
    assert_eq!(q.drain(), vec![(3, Priority::High), (1, Priority::Low)]);
    assert_eq!(q.pop(), None);
    assert_eq!(q.drain(), vec![]);
    let stats = q.stats();
    assert_eq!(stats.level(Priority::High).popped, 1);
    assert_eq!(stats.level(Priority::High).drained, 1);
    assert_eq!(stats.level(Priority::Low).drained, 1);
    for p in Priority::ALL {
        assert_eq!(stats.level(p).rejected_shutting_down, 1);
        assert_eq!(stats.level(p).rejected_queue_full, 0);
    }
    // A full level that is closed says Closed.
    let q = queues_cap(1, 0);
    q.push(0, Priority::Normal).unwrap();
    assert_eq!(
        q.push(1, Priority::Normal).unwrap_err().reason,
        Refusal::QueueFull
    );
    q.close();
    assert_eq!(
        q.push(1, Priority::Normal).unwrap_err().reason,
        Refusal::ShuttingDown
    );
    assert_eq!(q.len(), 1);
}

#[test]
fn drain_without_close_takes_what_is_there() {
    let q = queues_cap(4, 1);
    q.push('a', Priority::Low).unwrap();
    q.push('b', Priority::Normal).unwrap();
    assert_eq!(
        q.drain(),
        vec![('b', Priority::Normal), ('a', Priority::Low)]
    );
    q.push('c', Priority::High).unwrap();
    assert_eq!(q.pop(), Some(('c', Priority::High)));
}

#[test]
fn config_errors_name_the_level() {
    let err = PriorityQueues::<u8>::new(QueueConfig {
        capacity: [4, 0, 4],
        aging: 1,
    })
    .unwrap_err();
    assert_eq!(err.field(), Some("queues.capacity[1]"));
    assert!(err.to_string().contains("capacity[1]"), "{err}");
    assert!(err.to_string().contains("normal-priority"), "{err}");
    let err = PriorityQueues::<u8>::new(QueueConfig {
        capacity: [4, 4, usize::MAX],
        aging: 1,
    })
    .unwrap_err();
    assert_eq!(err.field(), Some("queues.capacity[2]"));
    let q = PriorityQueues::<u8>::new(QueueConfig {
        capacity: [1024; 3],
        aging: 8,
    })
    .unwrap();
    assert_eq!(q.capacity_of(Priority::Low), 1024);
    assert_eq!(q.aging(), 8);
    assert!(format!("{q:?}").contains("closed: false"));
}

/// Four threads push (with random levels) and pop; small capacities force rejections. Every
/// item ends exactly once: popped, rejected back, drained, or dropped with the queues.
#[test]
fn conservation_four_threads() {
    const THREADS: usize = 4;
    let per_thread = if cfg!(miri) { 50 } else { 20_000 };
    let drops = Arc::new(AtomicUsize::new(0));
    let q = Arc::new(queues::<Item>([4, 3, 2], 2));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (q, drops, seen) = (Arc::clone(&q), Arc::clone(&drops), Arc::clone(&seen));
            thread::spawn(move || {
                let mut mine = Vec::new();
                let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for i in 0..per_thread {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let id = t * per_thread + i;
                    let priority = Priority::ALL[(rng % 3) as usize];
                    let item = Item {
                        id,
                        drops: Arc::clone(&drops),
                    };
                    if let Err(rejected) = q.push(item, priority) {
                        assert_eq!(rejected.reason, Refusal::QueueFull);
                        assert_eq!(rejected.item.id, id);
                        mine.push(("rejected", id));
                    }
                    if rng & 8 == 0 {
                        if let Some((item, _)) = q.pop() {
                            mine.push(("popped", item.id));
                        }
                    }
                    if t == 0 && i % 64 == 63 {
                        mine.extend(q.drain().into_iter().map(|(item, _)| ("drained", item.id)));
                    }
                }
                seen.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let mut seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    // The main thread pops a couple more.
    for _ in 0..2 {
        if let Some((item, _)) = q.pop() {
            seen.push(("popped", item.id));
        }
    }
    let stats = q.stats();
    let queued = q.len();
    let total = THREADS * per_thread;
    let pushed: u64 = stats.levels.iter().map(|l| l.pushed).sum();
    let popped: u64 = stats.levels.iter().map(|l| l.popped + l.drained).sum();
    let rejected: u64 = stats.levels.iter().map(|l| l.rejected()).sum();
    assert_eq!(pushed + rejected, total as u64);
    assert_eq!(pushed, popped + queued as u64);
    let rejected_seen = seen.iter().filter(|(what, _)| *what == "rejected").count();
    assert_eq!(rejected_seen as u64, rejected);
    assert_eq!(seen.len() as u64, popped + rejected);

    // Whatever is still queued (up to 9 items) is left to the queues' drop.
    q.close();
    assert!(q.len() <= 9);
    let mut ids = HashSet::new();
    for &(_, id) in &seen {
        assert!(ids.insert(id), "item {id} ended twice");
    }
    let remaining = q.len();
    drop(seen);
    assert_eq!(drops.load(Ordering::SeqCst), total - remaining);
    drop(q);
    // Every item was dropped exactly once: by its popper or pusher, the drain, or the queues.
    assert_eq!(drops.load(Ordering::SeqCst), total);
    assert_eq!(ids.len() + remaining, total);
}

/// Pushers race a close; `close(); drain()` then finds every item whose push was accepted.
#[test]
fn close_then_drain_finds_every_accepted_push() {
    let rounds = if cfg!(miri) { 2 } else { 50 };
    let per_pusher: usize = if cfg!(miri) { 100 } else { 1_000 };
    // Room for every push (a third of them per level): only the close refuses.
    let capacity = per_pusher.next_power_of_two() * 4;
    for _ in 0..rounds {
        let q = Arc::new(queues_cap::<usize>(capacity, 3));
        let pushers: Vec<_> = (0..3)
            .map(|t| {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let mut accepted = 0;
                    for i in 0..per_pusher {
                        match q.push(t * per_pusher + i, Priority::ALL[i % 3]) {
                            Ok(()) => accepted += 1,
                            Err(rejected) => {
                                assert_eq!(rejected.reason, Refusal::ShuttingDown);
                                break;
                            }
                        }
                    }
                    accepted
                })
            })
            .collect();
        thread::yield_now();
        q.close();
        let drained = q.drain().len();
        assert!(q.is_empty());
        let accepted: usize = pushers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(drained, accepted);
        assert_eq!(q.pop(), None);
    }
}

/// Every exit of an item, single-threaded: popped, drained before and after a close, refused as
/// full, refused as closed, and left inside when the queues are dropped. Each item is dropped
/// exactly once, and the counters account for every push.
#[test]
fn every_exit_drops_each_item_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let q = queues::<Item>([2, 1, 3], 1);
    let mut next = 0;
    let mut item = || {
        next += 1;
        Item {
            id: next,
            drops: Arc::clone(&drops),
        }
    };
    let mut refused = Vec::new();
    for _ in 0..3 {
        for p in Priority::ALL {
            if let Err(rejected) = q.push(item(), p) {
                assert_eq!(rejected.reason, Refusal::QueueFull);
                refused.push(rejected.into_inner());
            }
        }
    }
    // 2 + 1 + 3 queued, 3 refused as full and still alive in `refused`.
    assert_eq!((q.len(), refused.len()), (6, 3));
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(refused);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    let (popped, _) = q.pop().unwrap();
    drop(popped);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    let drained = q.drain();
    assert_eq!(drained.len(), 5);
    drop(drained);
    assert_eq!(drops.load(Ordering::SeqCst), 9);
    for p in [Priority::High, Priority::Low, Priority::Low] {
        q.push(item(), p).unwrap();
    }
    q.close();
    let closed = q.push(item(), Priority::Normal).unwrap_err();
    assert_eq!(closed.reason, Refusal::ShuttingDown);
    drop(closed);
    assert_eq!(drops.load(Ordering::SeqCst), 10);
    assert_eq!(
        q.pop().map(|(item, p)| (item.id, p)),
        Some((10, Priority::High))
    );
    assert_eq!(drops.load(Ordering::SeqCst), 11);
    // Two items still queued go with the queues.
    let stats = q.stats();
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 13);
    assert_eq!(next, 13);
    let sum = |f: fn(&super::LevelStats) -> u64| stats.levels.iter().map(f).sum::<u64>();
    assert_eq!(sum(|l| l.pushed), 9);
    assert_eq!(sum(|l| l.popped), 2);
    assert_eq!(sum(|l| l.drained), 5);
    assert_eq!(sum(|l| l.rejected_queue_full), 3);
    assert_eq!(sum(|l| l.rejected_shutting_down), 1);
}

/// Three pushers of drop-counted items race a thread that pops, then closes and drains. Every
/// item is dropped exactly once (by its pusher when refused, by whoever took it, or with the
/// queues), every accepted item is taken exactly once, and the counters conserve.
#[test]
fn pushers_race_close_and_drain_with_drop_counts() {
    const PUSHERS: usize = 3;
    let rounds = if cfg!(miri) { 2 } else { 200 };
    let per_thread = if cfg!(miri) { 20 } else { 500 };
    for round in 0..rounds {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Arc::new(queues::<Item>([3, 2, 4], 2));
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|t| {
                let (q, drops) = (Arc::clone(&q), Arc::clone(&drops));
                thread::spawn(move || {
                    let mut accepted = Vec::new();
                    let mut closed = false;
                    for i in 0..per_thread {
                        let id = t * per_thread + i;
                        let item = Item {
                            id,
                            drops: Arc::clone(&drops),
                        };
                        match q.push(item, Priority::ALL[(i + t) % 3]) {
                            Ok(()) => {
                                assert!(!closed, "accepted after a refusal as closed");
                                accepted.push(id);
                            }
                            Err(rejected) => {
                                assert_eq!(rejected.item.id, id);
                                // Once closed, a level never admits again.
                                closed |= rejected.reason == Refusal::ShuttingDown
                                    && rejected.priority == Priority::Low;
                            }
                        }
                    }
                    accepted
                })
            })
            .collect();
        let taker = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut taken = Vec::new();
                for _ in 0..per_thread / 2 + round % 7 {
                    if let Some((item, priority)) = q.pop() {
                        assert!(q.len_of(priority) <= q.capacity_of(priority));
                        taken.push(item.id);
                    }
                }
                q.close();
                taken.extend(q.drain().into_iter().map(|(item, _)| item.id));
                assert!(q.is_empty());
                taken
            })
        };
        let mut accepted: Vec<usize> = pushers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let mut taken = taker.join().unwrap();
        accepted.sort_unstable();
        taken.sort_unstable();
        assert_eq!(taken, accepted, "an accepted item lost or taken twice");
        assert!(q.is_empty());
        let stats = q.stats();
        let sum = |f: fn(&super::LevelStats) -> u64| stats.levels.iter().map(f).sum::<u64>();
        let total = (PUSHERS * per_thread) as u64;
        assert_eq!(sum(|l| l.pushed), accepted.len() as u64);
        assert_eq!(sum(|l| l.pushed) + sum(|l| l.rejected()), total);
        assert_eq!(sum(|l| l.popped) + sum(|l| l.drained), sum(|l| l.pushed));
        drop(q);
        assert_eq!(drops.load(Ordering::SeqCst), PUSHERS * per_thread);
    }
}
