//! 1-in-N span sampling.
//!
//! Sampling thins what is expensive to keep (events, histogram samples); it never applies to
//! counters, which stay exact. A [`Sampler`] decides either by a counter (every N-th span,
//! starting with the first) or by a seeded hash of a key such as a run id (so every process
//! that sees the same key with the same seed makes the same choice).

/// Decides which spans are kept: one in `period`.
///
/// `period == 0` keeps none, `period == 1` keeps all.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::Sampler;
///
/// let mut s = Sampler::one_in(3);
/// let kept: Vec<bool> = (0..6).map(|_| s.sample()).collect();
/// assert_eq!(kept, [true, false, false, true, false, false]);
///
/// let by_key = Sampler::one_in(4).with_seed(7);
/// assert_eq!(by_key.sample_key(12345), by_key.sample_key(12345));
/// assert!(Sampler::one_in(1).sample_key(99));
/// assert!(!Sampler::one_in(0).sample_key(99));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    /// Keep one span in `period` (0: none).
    period: u32,
    /// Spans to skip before the next kept one, in `0 .. max(period, 1)`.
    countdown: u32,
    /// Mixed into every key by [`sample_key`](Self::sample_key).
    seed: u64,
}

impl Sampler {
    /// A sampler that keeps one span in `period` (0: none, 1: all), with seed 0.
    pub const fn one_in(period: u32) -> Self {
        Self {
            period,
            countdown: 0,
            seed: 0,
        }
    }

    /// Keeps every span.
    pub const fn always() -> Self {
        Self::one_in(1)
    }

    /// Keeps no span.
    pub const fn never() -> Self {
        Self::one_in(0)
    }

    /// The same sampler with `seed` for [`sample_key`](Self::sample_key).
    pub const fn with_seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// The period: one span in `period` is kept.
    pub const fn period(&self) -> u32 {
        self.period
    }

    /// Spans to skip before the next kept one.
    #[inline]
    pub(crate) fn countdown(&self) -> u32 {
        self.countdown
    }

    /// Sets what [`countdown`](Self::countdown) gave, advanced as [`sample`](Self::sample)
    /// would have.
    #[inline]
    pub(crate) fn set_countdown(&mut self, countdown: u32) {
        debug_assert!(countdown < self.period.max(1));
        self.countdown = countdown;
    }

    /// Counter sampling: keeps the first span, then every `period`-th after it.
    #[inline]
    pub fn sample(&mut self) -> bool {
        self.period != 0 && Self::decide(&mut self.countdown, self.period)
    }

    /// One counter decision for a `period` of 1 or more: keeps the span when `countdown` is
    /// 0 (and starts it over), else counts it down. `countdown` stays in `0 .. period`. A
    /// step loop holds `countdown` in a local and calls this for each span.
    #[inline(always)]
    pub(crate) fn decide(countdown: &mut u32, period: u32) -> bool {
        debug_assert!(period != 0 && *countdown < period);
        let kept = *countdown == 0;
        *countdown = if kept { period - 1 } else { *countdown - 1 };
        kept
    }

    /// Hash sampling: keeps `key` when `mix(key ^ seed) < 2^64 / period` (probability
    /// `1 / period` over keys, the same answer for the same key and seed every time).
    #[inline]
    pub fn sample_key(&self, key: u64) -> bool {
        // Multiply-high maps the hash uniformly onto 0 .. period without a division; 0 is kept.
        // With period 0 the product is 0 too, so that case is excluded first.
        self.period != 0
            && (u128::from(mix64(key ^ self.seed)) * u128::from(self.period)) >> 64 == 0
    }
}

impl Default for Sampler {
    /// Keeps every span.
    fn default() -> Self {
        Self::always()
    }
}

/// The SplitMix64 finalizer (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): a bijection of `u64` whose output bits all depend on every input bit.
#[inline]
pub(crate) const fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
