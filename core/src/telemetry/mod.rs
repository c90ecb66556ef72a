//! Telemetry data: events into a sink, exact counters, log-linear latency histograms.
//!
//! Everything here is plain data the engine updates on its hot path; none of it reads a
//! clock (ticks come from the caller), allocates after construction, or blocks.
//!
//! - [`Histogram`]: HdrHistogram-style log-linear buckets over the whole `u64` range, record
//!   in a few instructions, p50/p95/p99/p99.9 in one pass, mergeable; every reported quantile
//!   is within `1/256` of the exact one (see [`Histogram`]).
//! - [`Counters`]: a fixed set of named counts. **Counters are exact:
//!   sampling never applies to them.**
//! - [`Event`] / [`EventSink`]: small `Copy` events offered to a sink that may refuse them
//!   when full and then counts the drop exactly ([`NullSink`], [`VecSink`], [`RingSink`]).
//! - [`Sampler`]: 1-in-N span sampling by counter or seeded hash, thinning events and
//!   histogram samples.

pub(crate) mod counters;
pub(crate) mod event;
pub(crate) mod histogram;
pub(crate) mod sampler;

#[cfg(all(test, not(loom)))]
mod tests;

pub use counters::{Counter, Counters};
pub use event::{Event, EventKind, EventSink, NullSink, RingSink, StepOutcome, TryPush, VecSink};
pub use histogram::{Bucket, Histogram, Percentiles};
pub use sampler::Sampler;
