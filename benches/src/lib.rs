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
