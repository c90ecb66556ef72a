//! Exact pool statistics without a read-modify-write on the hot path.
//!
//! Every handle owns one slot of a fixed table for as long as it lives and counts its own
//! operations there with a plain load and store (it is the only writer). [`SlotTable::sum`] adds
//! up every slot, owned or free: a slot keeps its counts when its handle goes, and the next
//! handle to take it continues from them, so nothing has to be folded into a shared total when a
//! handle retires and a sum can never count a retiring handle twice.

use crate::sync::{AtomicBool, AtomicUsize, CachePadded, Ordering};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// One handle's operation counts.
///
/// Invariant: written only by the handle that owns the slot (see [`Slot::owned`]), with
/// `Relaxed` plain load + store; read by anyone with `Relaxed` loads. Each count only grows
/// (wrapping at `usize::MAX`; the derived figures use wrapping subtraction, so they stay exact as
/// long as the true values fit in a `usize`).
#[derive(Debug)]
pub(super) struct Counters {
    /// Gets served from the pool (local cache or shared list); the reset hook ran on each.
    pub(super) hits: AtomicUsize,
    /// Gets that called the factory: every object the pool ever created is one miss.
    pub(super) misses: AtomicUsize,
    /// Guards dropped (objects handed back), whether they were kept or dropped on overflow.
    pub(super) returns: AtomicUsize,
    /// Returns that found no idle room and were dropped.
    pub(super) overflow_drops: AtomicUsize,
    /// Guards detached: the object left the pool's accounting.
    pub(super) detached: AtomicUsize,
}

impl Counters {
    fn new() -> Self {
        Self {
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            returns: AtomicUsize::new(0),
            overflow_drops: AtomicUsize::new(0),
            detached: AtomicUsize::new(0),
        }
    }
}

/// Adds one to a counter that only the calling thread writes.
///
/// A load and a store, not a `fetch_add`: the owner is the only writer, so no increment can be
/// lost, and on x86_64 this is three plain instructions instead of a locked one. `Relaxed` is
/// enough: a reader that needs exact figures synchronizes with the owner by other means (it
/// joined the owner's thread, or took over the slot with an `Acquire`).
#[inline(always)]
pub(super) fn bump(counter: &AtomicUsize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// A table slot: a handle's counters and whether a handle owns them.
#[derive(Debug)]
pub(super) struct Slot {
    /// `true` while a handle owns the slot. Taken with an `Acquire` CAS and given back with a
    /// `Release` store, so a new owner sees the counts its predecessor left.
    owned: AtomicBool,
    pub(super) counters: Counters,
}

/// Sums of every slot's counts (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) hits: usize,
    pub(super) misses: usize,
    pub(super) returns: usize,
    pub(super) overflow_drops: usize,
    pub(super) detached: usize,
}

/// The fixed table of handle slots; its length is the pool's `max_handles`.
#[derive(Debug)]
pub(super) struct SlotTable {
    slots: Box<[CachePadded<Slot>]>,
}

impl SlotTable {
    /// A table of `count` free slots with zero counts.
    pub(super) fn new(count: usize) -> Self {
        let slots: Vec<CachePadded<Slot>> = (0..count)
            .map(|_| {
                CachePadded(Slot {
                    owned: AtomicBool::new(false),
                    counters: Counters::new(),
                })
            })
            .collect();
        Self {
            slots: slots.into_boxed_slice(),
        }
    }

    /// Takes a free slot and returns its index, or `None` when every slot is owned. Lock-free.
    pub(super) fn acquire(&self) -> Option<usize> {
        self.slots.iter().position(|slot| {
            !slot.owned.load(Ordering::Relaxed)
                && slot
                    .owned
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// The counters of slot `index`.
    pub(super) fn counters(&self, index: usize) -> &Counters {
        &self.slots[index].counters
    }

    /// Gives back slot `index`; its counts stay for the next owner.
    pub(super) fn release(&self, index: usize) {
        let was_owned = self.slots[index].owned.swap(false, Ordering::Release);
        debug_assert!(was_owned, "released a slot that was not owned");
    }

    /// Sums every slot's counts (`Relaxed` loads; see [`Counters`] for when this is exact).
    pub(super) fn sum(&self) -> Totals {
        let load = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        self.slots.iter().fold(Totals::default(), |t, slot| {
            let c = &slot.counters;
            Totals {
                hits: t.hits.wrapping_add(load(&c.hits)),
                misses: t.misses.wrapping_add(load(&c.misses)),
                returns: t.returns.wrapping_add(load(&c.returns)),
                overflow_drops: t.overflow_drops.wrapping_add(load(&c.overflow_drops)),
                detached: t.detached.wrapping_add(load(&c.detached)),
            }
        })
    }

    /// Handles alive now (slots owned).
    pub(super) fn owned_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.owned.load(Ordering::Relaxed))
            .count()
    }
}
