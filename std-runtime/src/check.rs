//! A differential program for [`PriorityQueues`], for the fuzzer (`fuzz/fuzz_targets/priority_queues.rs`)
//! and the corpus replay test: single-threaded operations against a simple model, three
//! `VecDeque`s with the bounds, the closed flag and the aging rule of the
//! [`queue` module docs](crate::queue).
//!
//! Byte layout: `[cap_high, cap_normal, cap_low, aging, op, …]`. Each capacity is
//! `1 + byte % 4` (1..=4), the aging `byte % 4` (0..=3, 0 is off). Each op is `byte % 8`:
//!
//! | op | queues | model |
//! |---|---|---|
//! | 0, 1, 2 push | `push(next, ALL[op])` | refused `Closed` if closed, else `QueueFull` at the capacity, else `push_back` |
//! | 3, 4 pop | `pop()` | the most starved level if it has an item, else the highest non-empty one; the aging counts as documented |
//! | 5 close | `close()` | closed |
//! | 6 drain | `drain()` | every level front to back, High to Low |
//! | 7 look | `len`, `len_of`, `is_empty`, `is_closed`, `stats` | the same from the model |
//!
//! Items carry a shared `Arc` so that the run checks every item was dropped exactly once: the
//! refused ones by the caller, the taken ones by the caller, the ones left inside by the queues.
//!
//! Only built with the crate feature `check`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::QueueConfig;
use crate::queue::{LevelStats, PriorityQueues};
use crate::Priority;
use crate::Refusal;

/// An item whose clones of `live` count the items in existence.
#[derive(Debug)]
struct Item {
    value: u64,
    _live: Arc<()>,
}

/// The model: what the queues should hold and answer.
struct Model {
    levels: [VecDeque<u64>; 3],
    capacity: [usize; 3],
    aging: u32,
    passed_over: [u32; 3],
    closed: bool,
    stats: [LevelStats; 3],
}

impl Model {
    fn push(&mut self, value: u64, level: usize) -> Result<(), Refusal> {
        let stats = &mut self.stats[level];
        if self.closed {
            stats.rejected_shutting_down += 1;
            Err(Refusal::ShuttingDown)
        } else if self.levels[level].len() >= self.capacity[level] {
            stats.rejected_queue_full += 1;
            Err(Refusal::QueueFull)
        } else {
            stats.pushed += 1;
            self.levels[level].push_back(value);
            Ok(())
        }
    }

    /// The starved level with the largest count, ties to the higher priority.
    fn most_starved(&self) -> Option<usize> {
        if self.aging == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for level in 0..3 {
            let count = self.passed_over[level];
            if count >= self.aging && best.is_none_or(|b| count > self.passed_over[b]) {
                best = Some(level);
            }
        }
        best
    }

    fn pop(&mut self) -> Option<(u64, usize)> {
        let starved = self
            .most_starved()
            .filter(|&level| !self.levels[level].is_empty());
        let level = starved.or_else(|| (0..3).find(|&l| !self.levels[l].is_empty()))?;
        let value = self.levels[level].pop_front()?;
        self.stats[level].popped += 1;
        if self.aging != 0 {
            self.passed_over[level] = 0;
            for other in 0..3 {
                if other != level && !self.levels[other].is_empty() {
                    self.passed_over[other] = self.passed_over[other].saturating_add(1);
                }
            }
        }
        Some((value, level))
    }

    fn drain(&mut self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for level in 0..3 {
            self.stats[level].drained += self.levels[level].len() as u64;
            out.extend(self.levels[level].drain(..).map(|value| (value, level)));
        }
        out
    }

    fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }
}

/// Runs `data` as an operation program against [`PriorityQueues`] and its model, asserting
/// every answer.
///
/// # Panics
///
/// When the queues and the model disagree (that is the point).
///
/// # Examples
///
/// ```
/// // Capacities 1, 2, 3, aging 1; push High, Normal, Low, pop twice, close, drain, look.
/// flujo_runtime::check::run(&[0, 1, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
/// ```
pub fn run(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut header = || bytes.next().unwrap_or(0);
    let capacity = [0; 3].map(|_| 1 + usize::from(header() % 4));
    let aging = u32::from(header() % 4);
    let queues: PriorityQueues<Item> =
        PriorityQueues::new(QueueConfig { capacity, aging }).expect("capacities in 1..=4");
    let mut model = Model {
        levels: Default::default(),
        capacity,
        aging,
        passed_over: [0; 3],
        closed: false,
        stats: Default::default(),
    };
    let live = Arc::new(());
    let mut next = 0u64;
    for op in bytes {
        match op % 8 {
            level @ 0..=2 => {
                let level = usize::from(level);
                let priority = Priority::ALL[level];
                let item = Item {
                    value: next,
                    _live: Arc::clone(&live),
                };
                let result = queues.push(item, priority);
                match (result, model.push(next, level)) {
                    (Ok(()), Ok(())) => {}
                    (Err(rejected), Err(reason)) => {
                        assert_eq!(rejected.reason, reason, "push {next} at {priority:?}");
                        assert_eq!(rejected.priority, priority);
                        assert_eq!(rejected.item.value, next, "a refusal hands back the item");
                    }
                    (result, expected) => {
                        panic!("push {next} at {priority:?}: {result:?}, expected {expected:?}")
                    }
                }
                next += 1;
            }
            3 | 4 => {
                let got = queues
                    .pop()
                    .map(|(item, priority)| (item.value, priority.index()));
                assert_eq!(
                    got,
                    model.pop(),
                    "pop (aging counts {:?})",
                    model.passed_over
                );
            }
            5 => {
                queues.close();
                model.closed = true;
            }
            6 => {
                let got: Vec<(u64, usize)> = queues
                    .drain()
                    .into_iter()
                    .map(|(item, priority)| (item.value, priority.index()))
                    .collect();
                assert_eq!(got, model.drain());
            }
            _ => {
                assert_eq!(queues.len(), model.len());
                assert_eq!(queues.is_empty(), model.len() == 0);
                assert_eq!(queues.is_closed(), model.closed);
                for priority in Priority::ALL {
                    let level = priority.index();
                    assert_eq!(queues.len_of(priority), model.levels[level].len());
                    assert_eq!(queues.capacity_of(priority), capacity[level]);
                }
                assert_eq!(queues.aging(), aging);
                assert_eq!(queues.stats().levels, model.stats);
            }
        }
        // Every item in existence is inside the queues: the others were dropped on the way.
        assert_eq!(Arc::strong_count(&live), 1 + model.len());
    }
    assert_eq!(queues.stats().levels, model.stats);
    assert_eq!(queues.len(), model.len());
    drop(queues);
    assert_eq!(
        Arc::strong_count(&live),
        1,
        "items left inside dropped with the queues"
    );
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::run;

    #[test]
    fn programs_run_against_the_model() {
        run(&[]);
        run(&[3, 3, 3, 0]);
        // Capacity 1 everywhere, no aging: fill, overfill, strict order, close, refusals.
        run(&[0, 0, 0, 0, 2, 1, 0, 2, 0, 7, 3, 3, 5, 0, 1, 7, 6, 7, 3]);
        // Capacity 4, aging 1: round robin over busy levels.
        let mut busy = vec![3u8, 3, 3, 1];
        for _ in 0..4 {
            busy.extend([0, 1, 2]);
        }
        busy.extend([3, 4, 3, 4, 3, 4, 7, 0, 3, 7]);
        run(&busy);
        // Aging counts survive a drain: a starved level that is empty falls back to priority.
        run(&[3, 3, 3, 2, 0, 0, 2, 3, 3, 6, 0, 1, 3, 3, 3, 7]);
        // A long pseudo-random program over every op.
        let mut long = vec![1u8, 2, 3, 2];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..if cfg!(miri) { 200 } else { 5_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            long.push((x >> 56) as u8);
        }
        run(&long);
    }
}
