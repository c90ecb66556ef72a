//! Performance-based selection (`docs/operations.md`): the automatic per-step cache bypass
//! (see [`CacheBypass`](crate::config::CacheBypass)) and the adaptive inline cutoff (see
//! [`InlineCutoff::adaptive`](crate::config::InlineCutoff::adaptive)).
//!
//! ## The cache bypass
//!
//! A fixed table of slots, one per step (graph id, node) met, claimed once with a
//! compare-and-swap and never freed: the hot path is a hash, a probe over a few slots and
//! relaxed atomics, with no lock and no allocation. Each slot counts the lookups and hits of
//! its current window in one word (lookups in the low half, hits in the high half), so one
//! `fetch_add` records a lookup; the caller that brings the window to its size takes it
//! (a compare-and-swap to zero) and judges it, so exactly one caller judges each window and
//! flips the step. Flips are cold: they lock the event list and call the host's callback.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};

use flujo_core::graph::{Clock, NodeId};

use crate::clock::RuntimeClock;
// Loom's under `cfg(loom)`: the model below runs this very code.
use crate::config::{CacheBypass, InlineCutoff};
use crate::monitor::health::{
    BypassRow, SelectionChange, SelectionEvent, SelectionStats, MAX_SELECTION_EVENTS,
};
use crate::sync::Ordering::Relaxed;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, MutexGuard};

/// The host's selection callback.
pub(crate) type OnSelection = Arc<dyn Fn(&SelectionEvent) + Send + Sync>;

/// An empty slot's id (no step has node `u32::MAX`: nodes are indexed from 0 in a graph of
/// at most `u32::MAX` of them).
const EMPTY: u64 = u64::MAX;
/// Slots tried from a step's hash before it counts as untracked.
const PROBE: usize = 16;
/// One lookup in a window word; a hit adds [`HIT`] too.
const LOOKUP: u64 = 1;
const HIT: u64 = 1 << 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One step's state.
struct Slot {
    /// `graph << 32 | node`, or [`EMPTY`].
    id: AtomicU64,
    /// Whether the step is bypassed.
    bypassed: AtomicBool,
    /// The current window: lookups (low 32 bits) and hits (high 32 bits).
    window: AtomicU64,
    /// Executions asked about while bypassed (probes included): the probe schedule.
    asked: AtomicU64,
    /// Lookups and hits of the windows judged so far.
    lookups: AtomicU64,
    hits: AtomicU64,
    probes: AtomicU64,
    taken: AtomicU64,
    undone: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Self {
            id: AtomicU64::new(EMPTY),
            bypassed: AtomicBool::new(false),
            window: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            undone: AtomicU64::new(0),
        }
    }
}

/// The flips kept, and the steps' names (by slot, set once when claimed).
#[derive(Default)]
struct Log {
    events: VecDeque<SelectionEvent>,
    dropped: u64,
    /// Claimed slots in the order claimed, with the step's name.
    claimed: Vec<(usize, String)>,
}

/// What one run's cache bridge needs to ask the table: the settings in force, the graph, its
/// step names (read once per step, when its slot is claimed) and the clock (read at flips).
pub(crate) struct Selecting<'a> {
    pub(crate) table: &'a Selection,
    pub(crate) cfg: &'a CacheBypass,
    pub(crate) graph: u32,
    pub(crate) name: &'a (dyn Fn(NodeId) -> String + Sync),
    pub(crate) clock: &'a RuntimeClock,
}

impl Selecting<'_> {
    #[inline]
    pub(crate) fn wants(&self, node: NodeId) -> bool {
        self.table.wants(self.cfg, self.graph, node, self.name)
    }

    #[inline]
    pub(crate) fn looked_up(&self, node: NodeId, hit: bool) {
        let t = self.table;
        t.looked_up(self.cfg, self.graph, node, hit, self.name, self.clock);
    }
}

/// The per-step table of the automatic cache bypass.
pub(crate) struct Selection {
    slots: Box<[Slot]>,
    /// `slots.len() - 1` (a power of two).
    mask: usize,
    /// Slots claimed, and the most that may be.
    used: AtomicUsize,
    max_steps: usize,
    /// Executions of steps that found no slot.
    untracked: AtomicU64,
    log: Mutex<Log>,
    on_event: Option<OnSelection>,
}

impl Selection {
    /// A table for `cfg.max_steps` steps (twice as many slots, so probes stay short).
    pub(crate) fn new(cfg: &CacheBypass, on_event: Option<OnSelection>) -> Self {
        let max_steps = cfg.max_steps.max(1);
        let len = (max_steps * 2).next_power_of_two();
        let slots: Box<[Slot]> = (0..len).map(|_| Slot::new()).collect();
        Self {
            slots,
            mask: len - 1,
            used: AtomicUsize::new(0),
            max_steps,
            untracked: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
            on_event,
        }
    }

    /// The slot of step (`graph`, `node`), claimed on first sight (`name` names it then);
    /// `None` when the table is full.
    #[inline]
    fn slot(&self, graph: u32, node: NodeId, name: &dyn Fn(NodeId) -> String) -> Option<&Slot> {
        let id = u64::from(graph) << 32 | u64::from(node.0);
        let start = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        for i in 0..PROBE {
            let at = (start + i) & self.mask;
            let slot = &self.slots[at];
            match slot.id.load(Relaxed) {
                found if found == id => return Some(slot),
                EMPTY => return self.claim(at, id, node, name),
                _ => {}
            }
        }
        self.untracked.fetch_add(1, Relaxed);
        None
    }

    /// Claims the empty slot `at` for `id` (or finds `id` there or further on, if another
    /// thread was quicker). Cold: once per step.
    #[cold]
    fn claim(
        &self,
        at: usize,
        id: u64,
        node: NodeId,
        name: &dyn Fn(NodeId) -> String,
    ) -> Option<&Slot> {
        let mut log = lock(&self.log);
        // Under the log's lock, claims are one at a time: look again from `at`.
        for i in 0..PROBE {
            let k = (at + i) & self.mask;
            let slot = &self.slots[k];
            match slot.id.load(Relaxed) {
                found if found == id => return Some(slot),
                EMPTY => {
                    if self.used.load(Relaxed) >= self.max_steps {
                        break;
                    }
                    self.used.fetch_add(1, Relaxed);
                    log.claimed.push((k, name(node)));
                    slot.id.store(id, Relaxed);
                    return Some(slot);
                }
                _ => {}
            }
        }
        drop(log);
        self.untracked.fetch_add(1, Relaxed);
        None
    }

    /// Whether this execution of step (`graph`, `node`) uses the cache: `false` while the
    /// step is bypassed, except for every `probe_every`-th execution (a probe).
    #[inline]
    pub(crate) fn wants(
        &self,
        cfg: &CacheBypass,
        graph: u32,
        node: NodeId,
        name: &dyn Fn(NodeId) -> String,
    ) -> bool {
        let Some(slot) = self.slot(graph, node, name) else {
            return true;
        };
        if !slot.bypassed.load(Relaxed) {
            return true;
        }
        let asked = slot.asked.fetch_add(1, Relaxed) + 1;
        let probe = asked.is_multiple_of(u64::from(cfg.probe_every.max(2)));
        if probe {
            slot.probes.fetch_add(1, Relaxed);
        }
        probe
    }

    /// Learns a lookup's result; judges the window it completes.
    #[inline]
    pub(crate) fn looked_up(
        &self,
        cfg: &CacheBypass,
        graph: u32,
        node: NodeId,
        hit: bool,
        name: &dyn Fn(NodeId) -> String,
        clock: &RuntimeClock,
    ) {
        let Some(slot) = self.slot(graph, node, name) else {
            return;
        };
        let add = LOOKUP + if hit { HIT } else { 0 };
        let mut now = slot.window.fetch_add(add, Relaxed) + add;
        let bypassed = slot.bypassed.load(Relaxed);
        let size = u64::from(if bypassed { cfg.probes } else { cfg.window }.max(1));
        // The caller whose swap to zero succeeds takes the window and judges it.
        while now & (HIT - 1) >= size {
            match slot.window.compare_exchange_weak(now, 0, Relaxed, Relaxed) {
                Ok(_) => return self.judge(cfg, slot, graph, node, now, bypassed, clock),
                Err(seen) => now = seen,
            }
        }
    }

    /// Judges a window of `word` (lookups and hits) of a step bypassed or not.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        cfg: &CacheBypass,
        slot: &Slot,
        graph: u32,
        node: NodeId,
        word: u64,
        bypassed: bool,
        clock: &RuntimeClock,
    ) {
        let (lookups, hits) = (word & (HIT - 1), word >> 32);
        slot.lookups.fetch_add(lookups, Relaxed);
        slot.hits.fetch_add(hits, Relaxed);
        let rate = hits as f64 / lookups as f64;
        let flip = if bypassed {
            rate >= cfg.min_hit_rate
        } else {
            rate < cfg.min_hit_rate
        };
        if flip {
            self.flip(slot, graph, node, !bypassed, rate, lookups, clock.now());
        }
    }

    /// Takes (`on`) or undoes a step's bypass: counted, logged, called back. Cold.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn flip(
        &self,
        slot: &Slot,
        graph: u32,
        node: NodeId,
        on: bool,
        hit_rate: f64,
        lookups: u64,
        at_ns: u64,
    ) {
        slot.bypassed.store(on, Relaxed);
        let (change, count) = if on {
            (SelectionChange::BypassTaken, &slot.taken)
        } else {
            (SelectionChange::BypassUndone, &slot.undone)
        };
        count.fetch_add(1, Relaxed);
        let id = u64::from(graph) << 32 | u64::from(node.0);
        let step = lock(&self.log)
            .claimed
            .iter()
            .find(|(k, _)| self.slots[*k].id.load(Relaxed) == id)
            .map_or_else(String::new, |(_, n)| n.clone());
        self.raise(SelectionEvent {
            change,
            step,
            graph,
            node: node.0,
            hit_rate,
            lookups,
            cutoff: (0, 0),
            per_task_ns: 0,
            at_ns,
        });
    }

    /// Keeps `event` (the oldest one goes when the list is full) and calls the host back,
    /// with no lock held. Cold.
    #[cold]
    pub(crate) fn raise(&self, event: SelectionEvent) {
        {
            let mut log = lock(&self.log);
            if log.events.len() == MAX_SELECTION_EVENTS {
                log.events.pop_front();
                log.dropped += 1;
            }
            log.events.push_back(event.clone());
        }
        if let Some(f) = &self.on_event {
            f(&event);
        }
    }

    /// Undoes every bypass in force (a changed configuration), counted and raised; the
    /// windows start again.
    pub(crate) fn reset(&self, at_ns: u64) {
        let claimed: Vec<usize> = lock(&self.log).claimed.iter().map(|(k, _)| *k).collect();
        for k in claimed {
            let slot = &self.slots[k];
            slot.window.store(0, Relaxed);
            if slot.bypassed.load(Relaxed) {
                let id = slot.id.load(Relaxed);
                let (graph, node) = ((id >> 32) as u32, NodeId(id as u32));
                self.flip(slot, graph, node, false, 0.0, 0, at_ns);
            }
        }
    }

    /// The report's view.
    pub(crate) fn stats(&self) -> SelectionStats {
        let log = lock(&self.log);
        let steps = log
            .claimed
            .iter()
            .map(|(k, name)| {
                let s = &self.slots[*k];
                let id = s.id.load(Relaxed);
                let window = s.window.load(Relaxed);
                let asked = s.asked.load(Relaxed);
                let probes = s.probes.load(Relaxed);
                BypassRow {
                    step: name.clone(),
                    graph: (id >> 32) as u32,
                    node: id as u32,
                    bypassed: s.bypassed.load(Relaxed),
                    lookups: s.lookups.load(Relaxed) + (window & (HIT - 1)),
                    hits: s.hits.load(Relaxed) + (window >> 32),
                    bypassed_runs: asked.saturating_sub(probes),
                    probes,
                    taken: s.taken.load(Relaxed),
                    undone: s.undone.load(Relaxed),
                }
            })
            .collect();
        SelectionStats {
            steps,
            untracked: self.untracked.load(Relaxed),
            events: log.events.iter().cloned().collect(),
            events_dropped: log.dropped,
            ..SelectionStats::default()
        }
    }
}

// ## The adaptive inline cutoff
//
// `forks` marks one fan-out in `sample_every` as timed, in a thread-local the `fork` that
// follows on the same thread takes (the interpreter calls `fork` right after a `forks` that
// said yes, running nothing in between). A timed fan-out that was above the cutoff (it
// would have forked anyway) and cost less per task execution than forking raises the cutoff;
// one that was at or below it (a probe: it would have run inline) and cost more lowers it.
// Any other outcome confirms the cutoff. Only the timing is sampled: the counts are exact.

thread_local! {
    /// The fan-out the next `fork` on this thread times: its node, analysed cost, and
    /// whether it is a probe (it would have run inline).
    static TIMED: Cell<Option<(u32, u32, bool)>> = const { Cell::new(None) };
}

/// The adaptive inline cutoff: its value now, and its counts.
pub(crate) struct AdaptiveCutoff {
    /// The cutoff now (before the `inline_more` factor).
    effective: AtomicU32,
    /// The `max_cost` it started from (a reconfiguration that changes it starts again).
    start: AtomicU32,
    /// Fan-outs asked about, for the sampling schedule.
    seen: AtomicU64,
    samples: AtomicU64,
    raised: AtomicU64,
    lowered: AtomicU64,
}

impl AdaptiveCutoff {
    pub(crate) fn new(cfg: &InlineCutoff) -> Self {
        Self {
            effective: AtomicU32::new(cfg.max_cost),
            start: AtomicU32::new(cfg.max_cost),
            seen: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            raised: AtomicU64::new(0),
            lowered: AtomicU64::new(0),
        }
    }

    /// The cutoff to use under `cfg`: the adaptive one when `adaptive`, else `max_cost`.
    #[inline]
    pub(crate) fn current(&self, cfg: &InlineCutoff) -> u32 {
        if cfg.adaptive {
            self.effective.load(Relaxed)
        } else {
            cfg.max_cost
        }
    }

    /// A new configuration: a changed `max_cost` (or adaptation switched off) starts the
    /// cutoff again from `max_cost`; a lower `adaptive_max` caps it.
    pub(crate) fn reconfigure(&self, cfg: &InlineCutoff) {
        if !cfg.adaptive || self.start.swap(cfg.max_cost, Relaxed) != cfg.max_cost {
            self.effective.store(cfg.max_cost, Relaxed);
        } else {
            self.effective.fetch_min(cfg.adaptive_max, Relaxed);
        }
    }

    pub(crate) fn stats(&self, cfg: &InlineCutoff, into: &mut SelectionStats) {
        into.inline_cutoff = cfg.adaptive.then(|| self.effective.load(Relaxed));
        into.cutoff_samples = self.samples.load(Relaxed);
        into.cutoff_raised = self.raised.load(Relaxed);
        into.cutoff_lowered = self.lowered.load(Relaxed);
    }
}

/// What a run's host needs to adapt the cutoff: the settings, the state, the graph, its node
/// names (read at changes), the clock and where events go.
pub(crate) struct Adapting<'a> {
    pub(crate) state: &'a AdaptiveCutoff,
    pub(crate) cfg: &'a InlineCutoff,
    pub(crate) events: &'a Selection,
    pub(crate) graph: u32,
    pub(crate) name: &'a (dyn Fn(NodeId) -> String + Sync),
    pub(crate) clock: &'a RuntimeClock,
}

impl Adapting<'_> {
    /// Whether fan-out `node` of analysed `cost` is timed, against the cutoff `max` in force:
    /// one in `sample_every`. A timed one forks (a probe when `cost <= max`).
    #[inline]
    pub(crate) fn times(&self, node: NodeId, cost: u32, max: u32) -> bool {
        let seen = self.state.seen.fetch_add(1, Relaxed);
        if !seen.is_multiple_of(u64::from(self.cfg.sample_every.max(1))) {
            return false;
        }
        TIMED.set(Some((node.0, cost, cost <= max)));
        true
    }

    /// The fan-out the `fork` starting on this thread times, if any (taken).
    #[inline]
    pub(crate) fn take_timed() -> Option<(u32, u32, bool)> {
        TIMED.take()
    }

    /// Learns that the timed fan-out (`node`, `cost`, `probe`) took `took_ns` over all its
    /// branches, and moves the cutoff if it was wrong about it.
    pub(crate) fn learn(&self, (node, cost, probe): (u32, u32, bool), took_ns: u64) {
        let s = self.state;
        s.samples.fetch_add(1, Relaxed);
        let per_task = took_ns / u64::from(cost.max(1));
        let fork = u64::try_from(self.cfg.fork_cost.as_nanos()).unwrap_or(u64::MAX);
        let from = s.effective.load(Relaxed);
        let (to, change, count) = if !probe && per_task < fork {
            let to = from.saturating_mul(2).min(self.cfg.adaptive_max).max(1);
            (to, SelectionChange::CutoffRaised, &s.raised)
        } else if probe && per_task > fork {
            (
                (from / 2).max(1),
                SelectionChange::CutoffLowered,
                &s.lowered,
            )
        } else {
            return;
        };
        // A concurrent change wins; this sample is then dropped.
        if to == from
            || s.effective
                .compare_exchange(from, to, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        count.fetch_add(1, Relaxed);
        self.events.raise(SelectionEvent {
            change,
            step: (self.name)(NodeId(node)),
            graph: self.graph,
            node,
            hit_rate: 0.0,
            lookups: 0,
            cutoff: (from, to),
            per_task_ns: per_task,
            at_ns: self.clock.now(),
        });
    }
}

#[cfg(all(test, loom))]
#[path = "select/loom.rs"]
mod loom;
