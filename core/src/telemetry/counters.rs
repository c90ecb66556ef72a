//! Exact per-run counters: a fixed set of named `u64` counts ([`Counters`]).
//!
//! Counts are exact: sampling never applies to them (see [`Sampler`](super::Sampler)).

use core::fmt;

use super::event::{Event, EventKind, StepOutcome};
use crate::policy::BreakerState;

/// One of the engine's counters. `Counter::ALL` lists them in index order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Counter {
    /// Steps started (attempts are counted as [`Retries`](Self::Retries)).
    StepsRun,
    /// Steps that ended with a success.
    StepsSucceeded,
    /// Steps that ended with a failure.
    StepsFailed,
    /// Steps skipped by their recovery table (a default stood in for the output).
    StepsSkipped,
    /// Steps whose run was aborted (usage denied, cancelled).
    StepsAborted,
    /// Retried attempts (not counting the first attempt).
    Retries,
    /// Cache lookups that returned a stored output.
    CacheHits,
    /// Cache lookups that found nothing.
    CacheMisses,
    /// Fallback steps run in place of a failed step.
    FallbacksUsed,
    /// Calls an open circuit breaker refused.
    BreakerRejections,
    /// Circuit breakers that tripped (moved to open).
    BreakerTrips,
    /// Usage reservations the budget denied.
    UsageDenials,
    /// Steps whose reported usage took the budget past a limit (each aborts its run).
    UsageOverruns,
}

impl Counter {
    /// How many counters there are.
    pub const COUNT: usize = 13;

    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::StepsRun,
        Counter::StepsSucceeded,
        Counter::StepsFailed,
        Counter::StepsSkipped,
        Counter::StepsAborted,
        Counter::Retries,
        Counter::CacheHits,
        Counter::CacheMisses,
        Counter::FallbacksUsed,
        Counter::BreakerRejections,
        Counter::BreakerTrips,
        Counter::UsageDenials,
        Counter::UsageOverruns,
    ];

    /// The counter's index in `0 .. COUNT`.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A `snake_case` name for exporters (`"steps_run"`, `"cache_hits"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::StepsRun => "steps_run",
            Counter::StepsSucceeded => "steps_succeeded",
            Counter::StepsFailed => "steps_failed",
            Counter::StepsSkipped => "steps_skipped",
            Counter::StepsAborted => "steps_aborted",
            Counter::Retries => "retries",
            Counter::CacheHits => "cache_hits",
            Counter::CacheMisses => "cache_misses",
            Counter::FallbacksUsed => "fallbacks_used",
            Counter::BreakerRejections => "breaker_rejections",
            Counter::BreakerTrips => "breaker_trips",
            Counter::UsageDenials => "usage_denials",
            Counter::UsageOverruns => "usage_overruns",
        }
    }

    /// The counter an event adds one to, if any.
    pub const fn of_event(kind: EventKind) -> Option<Counter> {
        match kind {
            EventKind::StepStart => Some(Counter::StepsRun),
            EventKind::StepEnd { outcome } => Some(match outcome {
                StepOutcome::Succeeded => Counter::StepsSucceeded,
                StepOutcome::Failed => Counter::StepsFailed,
                StepOutcome::Skipped => Counter::StepsSkipped,
                StepOutcome::Aborted => Counter::StepsAborted,
            }),
            EventKind::Retry { .. } => Some(Counter::Retries),
            EventKind::CacheHit => Some(Counter::CacheHits),
            EventKind::CacheMiss => Some(Counter::CacheMisses),
            EventKind::Fallback { .. } => Some(Counter::FallbacksUsed),
            EventKind::BreakerRejected => Some(Counter::BreakerRejections),
            EventKind::BreakerTransition {
                to: BreakerState::Open,
                ..
            } => Some(Counter::BreakerTrips),
            EventKind::BreakerTransition { .. } => None,
            EventKind::UsageDenied => Some(Counter::UsageDenials),
        }
    }
}

// `COUNT` must match the enum: the last variant's index is `COUNT - 1`.
const _: () = assert!(Counter::UsageOverruns as usize == Counter::COUNT - 1);

/// Exact counts for one run (or merged over many), one `u64` per [`Counter`].
///
/// Counts saturate at `u64::MAX` rather than wrap.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::{Counter, Counters};
///
/// let mut run = Counters::new();
/// run.increment(Counter::StepsRun);
/// run.add_n(Counter::CacheHits, 3);
/// let mut total = Counters::new();
/// total.add(&run);
/// total.add(&run);
/// assert_eq!(total.get(Counter::StepsRun), 2);
/// assert_eq!(total.get(Counter::CacheHits), 6);
/// assert_eq!(total.get(Counter::Retries), 0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    values: [u64; Counter::COUNT],
}

impl Counters {
    /// All counters at zero.
    pub const fn new() -> Self {
        Self {
            values: [0; Counter::COUNT],
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn increment(&mut self, counter: Counter) {
        self.add_n(counter, 1);
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add_n(&mut self, counter: Counter, n: u64) {
        let value = &mut self.values[counter.index()];
        *value = value.saturating_add(n);
    }

    /// Counts `event` (see [`Counter::of_event`]).
    #[inline]
    pub fn count_event(&mut self, event: &Event) {
        if let Some(counter) = Counter::of_event(event.kind) {
            self.increment(counter);
        }
    }

    /// The value of `counter`.
    #[inline]
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter.index()]
    }

    /// Adds every count of `other` to `self`.
    pub fn add(&mut self, other: &Counters) {
        for (mine, theirs) in self.values.iter_mut().zip(other.values) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// Every counter with its value, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// Sets every counter to zero.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (counter, value) in self.iter() {
            map.entry(&counter.name(), &value);
        }
        map.finish()
    }
}
