//! Bounded three-level priority queues with aging, on the core's MPMC ring.
//!
//! Each [`Priority`] level is a [`flujo_core::ring::mpmc::Ring`] (Dmitry Vyukov's bounded MPMC
//! queue) behind an exact admission count. [`PriorityQueues::push`] first reserves a place
//! with one CAS on the level's count (which also carries the *closed* bit), then moves the item
//! into the ring; a push that cannot reserve hands the item back as [`Rejected`]. So the bound
//! is the configured capacity exactly (the ring itself is rounded up to a power of two), and
//! [`close`](PriorityQueues::close) is a single atomic step per level: a push either reserved
//! before it (its item will be in the queue for [`drain`](PriorityQueues::drain)) or is
//! rejected with [`Refusal::ShuttingDown`].
//!
//! # Service order
//!
//! Items leave each level in FIFO order. Across levels, [`pop`](PriorityQueues::pop) follows
//! strict priority (High, then Normal, then Low) except where *aging* says otherwise:
//!
//! - every level keeps a *passed-over count*: the number of pops since it was last served that
//!   served another level while it was non-empty;
//! - a level whose count has reached [`QueueConfig::aging`] is *starved*;
//! - a pop serves the starved level with the largest count (ties: the higher priority); when no
//!   level is starved, or that one turns out empty, the highest non-empty level (another
//!   starved level is not tried first: after a [`drain`](PriorityQueues::drain), which leaves
//!   the counts alone, an empty level can be the most starved).
//!
//! Serving a level resets its count to 0. In the steady state with all three levels busy and
//! `aging >= 2` this serves Normal and Low once each in every `aging + 1` pops (High gets the
//! other `aging - 1`; `aging == 1` is round robin); with only High and Low busy, Low is served
//! once in every `aging + 1` pops. `aging == 0` turns aging off (pure strict priority,
//! where a busy higher level can starve a lower one forever).
//!
//! **Bound.** With pops not overlapping in time, a level that stays non-empty is passed over at
//! most `aging + 2` times in a row, so it is served at least once in every `aging + 3` pops.
//! Proof: after `aging` pass-overs it is starved. While it is starved, another level `Y` can be
//! served only if `Y`'s count is at least its own; serving `Y` resets `Y` to 0, and from then on
//! `Y`'s count stays below ours (ours grows by one on every pop that passes us over, `Y`'s by at
//! most one). So each of the two other levels is served at most once before us. When only one
//! other level is busy the bound is `aging + 1` pass-overs. With overlapping pops the counts are
//! updated by independent atomic operations and the bound can be exceeded by about the number of
//! pops in flight at once.
//!
//! # Progress
//!
//! Reserving and counting are lock-free. The ring can fail spuriously while another thread is
//! pre-empted inside it (see its module docs): a pop may then return `None` or serve a lower
//! level although a higher one holds an item, and a push that has reserved its place yields
//! until the pre-empted thread frees the ring slot (the reservation proves the ring has room,
//! so that is the only thing it can be waiting for).

use flujo_core::ring::mpmc::Ring;
use flujo_core::ring::{Full, MAX_CAPACITY};
use std::fmt;

use crate::config::{ConfigError, QueueConfig, MAX_QUEUE_CAPACITY};
use crate::sync::{yield_now, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::{Priority, Refusal};

/// A refused push: the item comes back to the caller.
pub struct Rejected<T> {
    /// The item that was not queued.
    pub item: T,
    /// Why.
    pub reason: Refusal,
    /// The level it was pushed to.
    pub priority: Priority,
}

impl<T> Rejected<T> {
    /// Returns the item that was not queued.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for Rejected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Rejected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Refusal::QueueFull => write!(f, "the {:?} queue is full", self.priority),
            Refusal::OverLimit => f.write_str("the concurrency limit is reached"),
            Refusal::ShuttingDown => f.write_str("the queues are closed"),
            Refusal::Shed => f.write_str("the executor sheds this priority"),
        }
    }
}

impl<T> std::error::Error for Rejected<T> {}

/// Exact counts of one level, since the queues were made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Pushes that queued their item.
    pub pushed: u64,
    /// Items that left through [`PriorityQueues::pop`].
    pub popped: u64,
    /// Items that left through [`PriorityQueues::drain`].
    pub drained: u64,
    /// Pushes refused with [`Refusal::QueueFull`].
    pub rejected_queue_full: u64,
    /// Pushes refused with [`Refusal::ShuttingDown`].
    pub rejected_shutting_down: u64,
}

impl LevelStats {
    /// All refused pushes.
    pub fn rejected(&self) -> u64 {
        self.rejected_queue_full + self.rejected_shutting_down
    }
}

/// Exact counts of all levels; each is exact, a snapshot taken while other threads work is not
/// atomic across counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Per level, indexed by [`Priority::index`].
    pub levels: [LevelStats; 3],
}

impl QueueStats {
    /// The counts of one level.
    pub fn level(&self, priority: Priority) -> &LevelStats {
        &self.levels[priority.index()]
    }
}

/// The top bit of a level's count: set by [`PriorityQueues::close`], never cleared.
const CLOSED: usize = 1 << (usize::BITS - 1);

// Capacities stay below the closed bit, so a count never carries into it.
const _: () = assert!(MAX_CAPACITY < CLOSED);
// Every capacity a `QueueConfig` may hold rounds up to a capacity a ring accepts.
const _: () = assert!(MAX_QUEUE_CAPACITY.next_power_of_two() <= MAX_CAPACITY);

/// The layout of one slot of the core's MPMC ring (`flujo_core::ring::mpmc`'s private
/// `Slot<T>`: an `AtomicUsize` stamp, the size of a `usize`, and an `UnsafeCell<MaybeUninit<T>>`,
/// the size of a `T`), for [`PriorityQueues::held_bytes`]; never built.
#[allow(dead_code)] // only measured with `size_of`
struct SlotLayout<T> {
    stamp: usize,
    value: std::mem::MaybeUninit<T>,
}

/// One level: the ring and its exact admission count.
struct Level<T> {
    /// The items, FIFO.
    ring: Ring<T>,
    /// `CLOSED` bit | the number of reserved places: items in the ring, plus pushes that have
    /// reserved and not yet written, plus pops that have taken an item from the ring and not
    /// yet released its place. The count is in `0..=capacity`: pushes raise it by CAS only below
    /// `capacity` (AcqRel), pops lower it by one (Release) after they took an item.
    reserved: AtomicUsize,
    /// The configured bound, `<= ring.capacity()`.
    capacity: usize,
    /// Pops that served another level while this one was non-empty, since this one was last
    /// served (saturating). Relaxed: it steers fairness, no data travels with it.
    passed_over: AtomicU32,
    /// See [`LevelStats`]; Relaxed counters.
    pushed: AtomicU64,
    /// See [`LevelStats`].
    popped: AtomicU64,
    /// See [`LevelStats`].
    drained: AtomicU64,
    /// See [`LevelStats`].
    rejected_queue_full: AtomicU64,
    /// See [`LevelStats`].
    rejected_shutting_down: AtomicU64,
}

impl<T> Level<T> {
    /// The number of reserved places.
    fn len(&self) -> usize {
        let count = self.reserved.load(Ordering::Acquire) & !CLOSED;
        debug_assert!(
            count <= self.capacity,
            "count {count} over {}",
            self.capacity
        );
        count
    }

    /// Takes the oldest item, releasing its place.
    fn take(&self) -> Option<T> {
        let item = self.ring.pop()?;
        let before = self.reserved.fetch_sub(1, Ordering::Release);
        debug_assert!(before & !CLOSED > 0, "a popped item had no reserved place");
        Some(item)
    }

    /// Counts one more pass-over, saturating.
    fn pass_over(&self) {
        let _ = self
            .passed_over
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    fn stats(&self) -> LevelStats {
        LevelStats {
            pushed: self.pushed.load(Ordering::Relaxed),
            popped: self.popped.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
            rejected_queue_full: self.rejected_queue_full.load(Ordering::Relaxed),
            rejected_shutting_down: self.rejected_shutting_down.load(Ordering::Relaxed),
        }
    }
}

/// Three bounded FIFO levels served by priority with aging; shared by reference or `Arc`
/// between any number of pushing and popping threads.
///
/// Items still queued when the queues are dropped are dropped exactly once.
///
/// # Examples
///
/// ```
/// use flujo_runtime::config::QueueConfig;
/// use flujo_runtime::parts::queue::PriorityQueues;
/// use flujo_runtime::{Priority, Refusal};
///
/// let queues = PriorityQueues::new(QueueConfig { capacity: [2, 2, 1], aging: 2 }).unwrap();
/// queues.push("low", Priority::Low).unwrap();
/// queues.push("high", Priority::High).unwrap();
///
/// // A full level hands the item back.
/// let rejected = queues.push("late", Priority::Low).unwrap_err();
/// assert_eq!((rejected.item, rejected.reason), ("late", Refusal::QueueFull));
///
/// assert_eq!(queues.pop(), Some(("high", Priority::High)));
/// queues.close();
/// assert_eq!(queues.push("x", Priority::High).unwrap_err().reason, Refusal::ShuttingDown);
/// assert_eq!(queues.drain(), vec![("low", Priority::Low)]);
/// assert_eq!(queues.stats().level(Priority::Low).rejected_queue_full, 1);
/// ```
pub struct PriorityQueues<T> {
    /// Indexed by [`Priority::index`].
    levels: [Level<T>; 3],
    /// The pass-over count at which a level is starved; 0 turns aging off.
    aging: u32,
}

impl<T: Send> PriorityQueues<T> {
    /// Makes empty queues.
    ///
    /// # Errors
    ///
    /// The [`QueueConfig::validate`] error (a [`ConfigError`] naming the level's field,
    /// `queues.capacity[1]`) when a capacity is 0 or above [`MAX_QUEUE_CAPACITY`].
    ///
    /// # Panics
    ///
    /// If the rings cannot be allocated.
    pub fn new(config: QueueConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let level = |priority: Priority| -> Level<T> {
            let capacity = config.capacity[priority.index()];
            let ring_capacity = capacity.max(2).next_power_of_two();
            let ring = Ring::with_capacity(ring_capacity)
                .expect("a validated capacity rounds up to a ring capacity (asserted below)");
            Level {
                ring,
                reserved: AtomicUsize::new(0),
                capacity,
                passed_over: AtomicU32::new(0),
                pushed: AtomicU64::new(0),
                popped: AtomicU64::new(0),
                drained: AtomicU64::new(0),
                rejected_queue_full: AtomicU64::new(0),
                rejected_shutting_down: AtomicU64::new(0),
            }
        };
        Ok(Self {
            levels: [
                level(Priority::High),
                level(Priority::Normal),
                level(Priority::Low),
            ],
            aging: config.aging,
        })
    }

    /// Queues `item` at the back of its level.
    ///
    /// # Errors
    ///
    /// [`Rejected`] with the item and [`Refusal::ShuttingDown`] after [`close`](Self::close),
    /// or [`Refusal::QueueFull`] when the level holds its capacity.
    pub fn push(&self, item: T, priority: Priority) -> Result<(), Rejected<T>> {
        let level = &self.levels[priority.index()];
        let mut word = level.reserved.load(Ordering::Acquire);
        loop {
            let (reason, counter) = if word & CLOSED != 0 {
                (Refusal::ShuttingDown, &level.rejected_shutting_down)
            } else if word >= level.capacity {
                (Refusal::QueueFull, &level.rejected_queue_full)
            } else {
                match level.reserved.compare_exchange_weak(
                    word,
                    word + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => {
                        word = now;
                        continue;
                    }
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(Rejected {
                item,
                reason,
                priority,
            });
        }
        // The place is ours: at most `capacity <= ring.capacity()` places are reserved, so a
        // full ring means a thread pre-empted between claiming a slot and releasing it.
        let mut item = item;
        while let Err(Full(back)) = level.ring.push(item) {
            item = back;
            yield_now();
        }
        level.pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes the next item by the service order of the [module docs](self), with its level.
    ///
    /// `None` when every level is empty, or spuriously while a thread is pre-empted inside a
    /// ring (see the module docs).
    #[inline]
    pub fn pop(&self) -> Option<(T, Priority)> {
        self.pop_at_least(Priority::Low)
    }

    /// Takes the next item of priority `lowest` or higher, by the service order of the
    /// [module docs](self) among those levels (a starved level below `lowest` is left for a
    /// later [`pop`](Self::pop)), with its level. `None` as for [`pop`](Self::pop).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::config::QueueConfig;
    /// use flujo_runtime::parts::queue::PriorityQueues;
    /// use flujo_runtime::Priority;
    ///
    /// let queues = PriorityQueues::new(QueueConfig { capacity: [2, 2, 2], aging: 0 }).unwrap();
    /// queues.push("low", Priority::Low).unwrap();
    /// assert_eq!(queues.pop_at_least(Priority::Normal), None);
    /// queues.push("normal", Priority::Normal).unwrap();
    /// assert_eq!(queues.pop_at_least(Priority::Normal), Some(("normal", Priority::Normal)));
    /// assert_eq!(queues.pop_at_least(Priority::Low), Some(("low", Priority::Low)));
    /// ```
    pub fn pop_at_least(&self, lowest: Priority) -> Option<(T, Priority)> {
        if let Some(starved) = self.most_starved() {
            if starved.index() <= lowest.index() {
                if let Some(item) = self.levels[starved.index()].take() {
                    return Some(self.served(item, starved));
                }
            }
        }
        Priority::ALL[..=lowest.index()]
            .iter()
            .find_map(|&priority| {
                let item = self.levels[priority.index()].take()?;
                Some(self.served(item, priority))
            })
    }

    /// The starved level with the largest pass-over count (ties: the higher priority).
    fn most_starved(&self) -> Option<Priority> {
        if self.aging == 0 {
            return None;
        }
        let mut best: Option<(u32, Priority)> = None;
        for priority in Priority::ALL {
            let count = self.levels[priority.index()]
                .passed_over
                .load(Ordering::Relaxed);
            if count >= self.aging && best.is_none_or(|(top, _)| count > top) {
                best = Some((count, priority));
            }
        }
        best.map(|(_, priority)| priority)
    }

    /// Books a pop from `priority`: counts it and updates the aging counts.
    fn served(&self, item: T, priority: Priority) -> (T, Priority) {
        let level = &self.levels[priority.index()];
        level.popped.fetch_add(1, Ordering::Relaxed);
        if self.aging != 0 {
            level.passed_over.store(0, Ordering::Relaxed);
            for other in Priority::ALL {
                let other_level = &self.levels[other.index()];
                if other != priority && other_level.len() > 0 {
                    other_level.pass_over();
                }
            }
        }
        (item, priority)
    }

    /// Takes every queued item, level by level from High to Low, FIFO within a level. Aging
    /// counts are left alone.
    ///
    /// After [`close`](Self::close) it also waits for pushes that reserved a place before the
    /// close to land (and for concurrent pops to release theirs), so once `close(); drain()`
    /// returned, the queues are empty and stay empty. Before a close it takes what it finds.
    pub fn drain(&self) -> Vec<(T, Priority)> {
        let mut out = Vec::with_capacity(self.len());
        loop {
            for priority in Priority::ALL {
                let level = &self.levels[priority.index()];
                while let Some(item) = level.take() {
                    level.drained.fetch_add(1, Ordering::Relaxed);
                    out.push((item, priority));
                }
            }
            if !self.is_closed() || self.is_empty() {
                return out;
            }
            // A push that reserved before the close (or a pre-empted pop) is mid-way.
            yield_now();
        }
    }

    /// Refuses every later push with [`Refusal::ShuttingDown`]; pops and drains go on. Pushes
    /// that reserved their place before it still land. Idempotent.
    pub fn close(&self) {
        for level in &self.levels {
            level.reserved.fetch_or(CLOSED, Ordering::AcqRel);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        // Levels are closed in order, so the last one tells that all are.
        self.levels[2].reserved.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The number of queued items over all levels (a snapshot: pushes and pops in progress
    /// count as queued).
    pub fn len(&self) -> usize {
        self.levels.iter().map(Level::len).sum()
    }

    /// Whether no level holds an item (a snapshot, like [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of items queued at one level (a snapshot, like [`len`](Self::len)).
    pub fn len_of(&self, priority: Priority) -> usize {
        self.levels[priority.index()].len()
    }

    /// The configured capacity of one level.
    pub fn capacity_of(&self, priority: Priority) -> usize {
        self.levels[priority.index()].capacity
    }

    /// The bytes the queues hold, queued or not: their own structure and each level's ring
    /// slots (capacity rounded up to a power of two, times the slot: a stamp word and a `T`),
    /// allocated at construction. What a queued item owns on the heap is not counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::config::QueueConfig;
    /// use flujo_runtime::parts::queue::PriorityQueues;
    ///
    /// let queues = PriorityQueues::<u64>::new(QueueConfig { capacity: [3, 4, 1], aging: 2 }).unwrap();
    /// // Rings of 4, 4 and 2 slots of 16 bytes (a stamp and a u64), beside the structure.
    /// let slots = (4 + 4 + 2) * 16;
    /// assert!(queues.held_bytes() >= slots);
    /// assert_eq!(queues.held_bytes(), size_of_val(&queues) + slots);
    /// ```
    pub fn held_bytes(&self) -> usize {
        let slot = size_of::<SlotLayout<T>>();
        let slots: usize = self.levels.iter().map(|l| l.ring.capacity() * slot).sum();
        size_of::<Self>() + slots
    }

    /// The configured aging threshold (0: off).
    pub fn aging(&self) -> u32 {
        self.aging
    }

    /// The exact counters of every level.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            levels: [
                self.levels[0].stats(),
                self.levels[1].stats(),
                self.levels[2].stats(),
            ],
        }
    }
}

impl<T: Send> fmt::Debug for PriorityQueues<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityQueues")
            .field("len", &Priority::ALL.map(|priority| self.len_of(priority)))
            .field("aging", &self.aging)
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;
