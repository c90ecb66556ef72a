//! Telemetry events and the sinks they go to.
//!
//! An [`Event`] is a small `Copy` record (24 bytes) of what happened to a step and when (a
//! tick the caller supplies: the core never reads a clock). An [`EventSink`] takes events and
//! may refuse them when full; a refused event is counted, exactly, by the sink
//! ([`EventSink::dropped`]) and the engine goes on: telemetry never blocks a run.
//!
//! Sinks: [`NullSink`] (telemetry off), [`VecSink`] (bounded, for tests and small hosts) and
//! [`RingSink`] (an adapter over any [`TryPush`] producer, such as a ring buffer's producer
//! drained by an exporter thread).

use alloc::vec::Vec;

use crate::policy::BreakerState;

/// How one step (or loop) ended: in its step record
/// ([`StepRecord::outcome`](crate::interp::StepRecord::outcome)) and its
/// [`EventKind::StepEnd`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// It produced an output (by itself, from the cache, or through its fallback).
    Succeeded,
    /// It failed (after its retries and fallback).
    Failed,
    /// The recovery table skipped it; the default output was used.
    Skipped,
    /// It aborted the run (usage denied, cancelled, deadline passed).
    Aborted,
}

/// What happened, as carried by an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A step began.
    StepStart,
    /// A step ended.
    StepEnd {
        /// How it ended.
        outcome: StepOutcome,
    },
    /// A step starts another attempt.
    Retry {
        /// The attempt about to run: 2 for the first retry.
        attempt: u32,
    },
    /// A cacheable step's output came from the cache.
    CacheHit,
    /// A cacheable step's lookup found nothing; the step runs.
    CacheMiss,
    /// A step's circuit breaker changed state.
    BreakerTransition {
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
    },
    /// An open breaker refused the call.
    BreakerRejected,
    /// A failed step hands over to its fallback step.
    Fallback {
        /// The fallback step's id.
        to_step: u32,
    },
    /// The run's budget denied the step's usage reservation.
    UsageDenied,
}

/// One telemetry event: `kind` happened to step `step` at `tick`.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::{Event, EventKind, StepOutcome};
///
/// let e = Event::new(7, 1_000, EventKind::StepEnd { outcome: StepOutcome::Succeeded });
/// assert_eq!((e.step, e.tick), (7, 1_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// When, in the caller's ticks (nanoseconds, cycles, ...).
    pub tick: u64,
    /// The step's id in its graph.
    pub step: u32,
    /// What happened.
    pub kind: EventKind,
}

// Events travel by value through rings: keep them small.
const _: () = assert!(core::mem::size_of::<Event>() <= 24);

impl Event {
    /// An event of `kind` for `step` at `tick`.
    #[inline]
    pub const fn new(step: u32, tick: u64, kind: EventKind) -> Self {
        Self { tick, step, kind }
    }
}

/// Where events go. A sink never blocks and never allocates on `emit`.
pub trait EventSink {
    /// Offers `event`: `true` if the sink took it, `false` if it was dropped because the sink
    /// is full (and then counted in [`dropped`](Self::dropped)).
    fn emit(&mut self, event: Event) -> bool;

    /// How many events this sink dropped, exactly (saturating at `u64::MAX`).
    fn dropped(&self) -> u64;
}

impl<S: EventSink + ?Sized> EventSink for &mut S {
    #[inline]
    fn emit(&mut self, event: Event) -> bool {
        (**self).emit(event)
    }

    #[inline]
    fn dropped(&self) -> u64 {
        (**self).dropped()
    }
}

/// A sink that discards every event: telemetry off. It is never full, so it drops nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NullSink;

impl EventSink for NullSink {
    #[inline(always)]
    fn emit(&mut self, _event: Event) -> bool {
        true
    }

    #[inline(always)]
    fn dropped(&self) -> u64 {
        0
    }
}

/// A bounded in-memory sink: keeps the first `capacity` events, counts the rest as dropped.
/// The buffer is allocated once by [`with_capacity`](Self::with_capacity).
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::{Event, EventKind, EventSink, VecSink};
///
/// let mut sink = VecSink::with_capacity(2);
/// for step in 0..5 {
///     sink.emit(Event::new(step, 0, EventKind::StepStart));
/// }
/// assert_eq!(sink.events().len(), 2);
/// assert_eq!(sink.dropped(), 3);
/// ```
#[derive(Clone, Debug)]
pub struct VecSink {
    /// Invariant: `events.len() <= capacity` and `events.capacity() >= capacity`.
    events: Vec<Event>,
    capacity: usize,
    dropped: u64,
}

impl VecSink {
    /// A sink that holds up to `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            events: Vec::with_capacity(capacity),
            capacity,
            dropped: 0,
        }
    }

    /// The events taken, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many events it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the events taken (not the drop count); keeps the allocation.
    pub fn clear(&mut self) {
        self.events.clear();
    }
}

impl EventSink for VecSink {
    #[inline]
    fn emit(&mut self, event: Event) -> bool {
        if self.events.len() < self.capacity {
            // Never reallocates: the vector was created with at least `capacity`.
            self.events.push(event);
            true
        } else {
            self.dropped = self.dropped.saturating_add(1);
            false
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A bounded producer that hands back a value it cannot take: the one method [`RingSink`]
/// needs from a ring buffer's producer.
pub trait TryPush<T> {
    /// Pushes `value`, or gives it back in `Err` when full. Must not block or allocate.
    fn try_push(&mut self, value: T) -> Result<(), T>;
}

impl<T> TryPush<T> for crate::ring::spsc::Producer<T> {
    #[inline]
    fn try_push(&mut self, value: T) -> Result<(), T> {
        self.push(value).map_err(crate::ring::Full::into_inner)
    }
}

impl<T> TryPush<T> for &crate::ring::mpmc::Ring<T> {
    #[inline]
    fn try_push(&mut self, value: T) -> Result<(), T> {
        self.push(value).map_err(crate::ring::Full::into_inner)
    }
}

/// A sink over a ring buffer's producer (or any [`TryPush`]): an exporter drains the other
/// end. When the ring is full the event is dropped and counted.
///
/// # Examples
///
/// ```
/// use flujo_core::ring::spsc;
/// use flujo_core::telemetry::{Event, EventKind, EventSink, RingSink};
///
/// let (producer, mut consumer) = spsc::channel::<Event>(2).unwrap();
/// let mut sink = RingSink::new(producer);
/// assert!(sink.emit(Event::new(1, 10, EventKind::CacheHit)));
/// assert!(sink.emit(Event::new(2, 20, EventKind::CacheMiss)));
/// assert!(!sink.emit(Event::new(3, 30, EventKind::CacheMiss))); // full: dropped, counted
/// assert_eq!(sink.dropped(), 1);
/// assert_eq!(consumer.pop().map(|e| e.step), Some(1));
/// ```
#[derive(Debug)]
pub struct RingSink<P> {
    producer: P,
    dropped: u64,
}

impl<P> RingSink<P> {
    /// A sink that pushes into `producer`.
    pub const fn new(producer: P) -> Self {
        Self {
            producer,
            dropped: 0,
        }
    }

    /// The producer.
    pub fn producer(&self) -> &P {
        &self.producer
    }

    /// The producer, mutably.
    pub fn producer_mut(&mut self) -> &mut P {
        &mut self.producer
    }

    /// Gives the producer back.
    pub fn into_inner(self) -> P {
        self.producer
    }
}

impl<P: TryPush<Event>> EventSink for RingSink<P> {
    #[inline]
    fn emit(&mut self, event: Event) -> bool {
        match self.producer.try_push(event) {
            Ok(()) => true,
            Err(_) => {
                self.dropped = self.dropped.saturating_add(1);
                false
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}
