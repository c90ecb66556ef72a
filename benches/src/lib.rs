//! Shared workloads of the flujo-rs benchmarks: each builds the same input for the criterion
//! bench (`peers`) and the instruction-count bench (`iai`), and checks its result.

/// W9's input: log-normal step latencies in nanoseconds (median 20 µs, most between 1 µs and
/// 1 ms), from a seeded SplitMix64 so every run of either bench measures the same values.
pub fn latencies_ns(n: usize, seed: u64) -> Vec<u64> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (1.0 - next(), next());
            let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (20_000.0 * normal.exp()) as u64
        })
        .collect()
}

/// The W1, W2 and W8 benches' clock: a host's own one-thread tick counter, as a simulation
/// loop would pass one (the core's `ManualClock` is shared across threads, one more load per
/// read). It keeps those counts measuring the engine alone.
#[derive(Debug, Default)]
pub struct TickClock(std::cell::Cell<u64>);

impl TickClock {
    /// A clock reading `start`.
    pub const fn new(start: u64) -> Self {
        Self(std::cell::Cell::new(start))
    }

    /// Moves the clock forward by `ticks` (saturating).
    #[inline]
    pub fn advance(&self, ticks: u64) {
        self.0.set(self.0.get().saturating_add(ticks));
    }
}

impl flujo_core::graph::Clock for TickClock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.get()
    }

    #[inline]
    fn wait(&self, ticks: u64) {
        self.advance(ticks);
    }
}
