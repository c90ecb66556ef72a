//! A small seeded pseudo-random generator: SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014; the constants are those of Vigna's reference
//! `splitmix64.c`).
//!
//! The policies draw their randomness (retry jitter) from here, so a run is reproducible from
//! its seed: the same seed gives the same delays on every target. It is not a cryptographic
//! generator.

/// A SplitMix64 generator: 64 bits of state, every seed valid (zero included), period 2^64.
///
/// # Examples
///
/// ```
/// use flujo_core::policy::Rng;
///
/// let mut a = Rng::new(7);
/// let mut b = Rng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.between(10, 20);
/// assert!((10..=20).contains(&x));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

/// The golden-ratio increment of SplitMix64 (odd, so the state walks all 2^64 values).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `0 .. bound` (`bound >= 1`), without modulo bias: Lemire's
    /// multiply-and-reject method ("Fast random integer generation in an interval", 2019).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound >= 1, "Rng::below needs a bound of at least 1");
        // Values of the low half below `threshold = 2^64 mod bound` would make some results
        // one more likely than others; they are drawn again.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            // The low half is the truncation of the 128-bit product, by intent.
            let low = product as u64;
            if low >= threshold {
                let value = (product >> 64) as u64;
                debug_assert!(value < bound);
                return value;
            }
        }
    }

    /// A uniform value in `low ..= high` (`low <= high`); the full `0 ..= u64::MAX` range is
    /// allowed.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "Rng::between needs low <= high");
        let value = match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            // The span is all of u64: every output is already uniform over it.
            None => self.next_u64(),
        };
        debug_assert!(low <= value && value <= high);
        value
    }
}
