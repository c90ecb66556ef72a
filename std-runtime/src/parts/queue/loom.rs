//! Loom models of [`PriorityQueues`]: every interleaving (up to the preemption bound) of the
//! real code, the core's ring included.

use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

use loom::sync::Arc;
use loom::thread;

use super::{Priority, PriorityQueues, QueueConfig};
use crate::Refusal;

/// A builder that honours `LOOM_MAX_PREEMPTIONS` and bounds preemptions at 2 without it.
fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    builder
}

fn queues(capacity: usize, aging: u32) -> Arc<PriorityQueues<u32>> {
    Arc::new(
        PriorityQueues::new(QueueConfig {
            capacity: [capacity; 3],
            aging,
        })
        .unwrap(),
    )
}

/// Two producers push to one capacity-1 level while a third thread closes and drains. Every
/// push is either accepted, and its item is then drained exactly once, or handed back
/// (`QueueFull` only when the other push holds the one place, else `Closed`); the bound holds
/// at every point a thread looks; after `close(); drain()` the queues are empty and stay so;
/// the counters conserve.
#[test]
fn loom_two_pushes_race_close_and_drain() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let q = queues(1, 1);
        let pusher = |id: u32| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let result = q.push(id, Priority::Normal);
                assert!(q.len_of(Priority::Normal) <= 1, "over the bound");
                result.err().map(|rejected| {
                    assert_eq!((rejected.item, rejected.priority), (id, Priority::Normal));
                    rejected.reason
                })
            })
        };
        let first = pusher(1);
        let second = pusher(2);
        let closer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                q.close();
                let drained = q.drain();
                assert!(q.is_empty(), "close(); drain() left an item");
                drained
            })
        };
        let outcomes = [(1, first.join().unwrap()), (2, second.join().unwrap())];
        let drained = closer.join().unwrap();

        assert!(q.is_closed());
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
        let accepted: Vec<u32> = outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_none())
            .map(|&(id, _)| id)
            .collect();
        // Nothing leaves before the close, so the one place admits at most one push.
        assert!(accepted.len() <= 1, "{outcomes:?}");
        for (id, outcome) in outcomes {
            if outcome == Some(Refusal::QueueFull) {
                assert_eq!(
                    accepted.len(),
                    1,
                    "item {id} was refused as full by nothing"
                );
            }
        }
        let found: Vec<u32> = drained
            .iter()
            .map(|&(id, priority)| {
                assert_eq!(priority, Priority::Normal);
                id
            })
            .collect();
        assert_eq!(found, accepted, "an accepted item lost or duplicated");

        let stats = q.stats();
        let normal = stats.level(Priority::Normal);
        assert_eq!(normal.pushed, accepted.len() as u64);
        assert_eq!(normal.drained, normal.pushed);
        assert_eq!(normal.popped, 0);
        assert_eq!(normal.pushed + normal.rejected(), 2);
        let full = outcomes
            .iter()
            .filter(|(_, o)| *o == Some(Refusal::QueueFull))
            .count();
        assert_eq!(normal.rejected_queue_full, full as u64);
        assert_eq!(stats.level(Priority::High), &Default::default());
        assert_eq!(stats.level(Priority::Low), &Default::default());
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}

/// A pusher and a popper on a capacity-1 level: the items come out in push order, each
/// accepted one exactly once (popped, or drained at the end), and the counters conserve.
#[test]
fn loom_push_pop_capacity_one_is_fifo() {
    static ITERATIONS: StdAtomicUsize = StdAtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, StdOrdering::Relaxed);
        let q = queues(1, 0);
        let pusher = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for id in 1..=3 {
                    match q.push(id, Priority::Low) {
                        Ok(()) => accepted.push(id),
                        Err(rejected) => {
                            assert_eq!(rejected.reason, Refusal::QueueFull);
                            assert_eq!(rejected.item, id);
                        }
                    }
                    assert!(q.len_of(Priority::Low) <= 1, "over the bound");
                }
                accepted
            })
        };
        let popper = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut popped = Vec::new();
                for _ in 0..3 {
                    if let Some((id, priority)) = q.pop() {
                        assert_eq!(priority, Priority::Low);
                        popped.push(id);
                    }
                }
                popped
            })
        };
        let accepted = pusher.join().unwrap();
        let popped = popper.join().unwrap();

        let drained: Vec<u32> = q.drain().into_iter().map(|(id, _)| id).collect();
        assert!(q.is_empty());
        let mut out = popped.clone();
        out.extend(&drained);
        assert_eq!(out, accepted, "lost, duplicated or out of order");
        assert!(!accepted.is_empty(), "the first push always finds room");

        let low = q.stats().levels[Priority::Low.index()];
        assert_eq!(low.pushed, accepted.len() as u64);
        assert_eq!(low.popped, popped.len() as u64);
        assert_eq!(low.drained, drained.len() as u64);
        assert_eq!(low.pushed + low.rejected_queue_full, 3);
        assert_eq!(low.rejected_shutting_down, 0);
    });
    assert!(ITERATIONS.load(StdOrdering::Relaxed) > 1);
}
