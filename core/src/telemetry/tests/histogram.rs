use std::vec::Vec;

use super::Rng;
use crate::telemetry::histogram::{
    bucket_high, bucket_index, bucket_low, Histogram, BUCKETS, SUB_BUCKET_BITS,
};

/// Scales work under Miri.
fn scaled(miri: usize, native: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// The exact answer the histogram approximates: the `rank`-th smallest value.
fn exact(sorted: &[u64], rank: u64) -> u64 {
    sorted[usize::try_from(rank).unwrap() - 1]
}

fn exact_quantile(sorted: &[u64], numerator: u64, denominator: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (u128::from(n) * u128::from(numerator)).div_ceil(u128::from(denominator)) as u64;
    exact(sorted, rank.max(1))
}

/// Asserts the stated bound: `|reported - exact| <= exact >> (P + 1)`.
fn assert_within(reported: u64, exact: u64, what: &str) {
    let bound = exact >> (SUB_BUCKET_BITS + 1);
    assert!(
        reported.abs_diff(exact) <= bound,
        "{what}: reported {reported}, exact {exact}, bound {bound}"
    );
}

/// Records `values` and checks every statistic against the sorted values.
fn check_distribution(values: &[u64], what: &str) -> Histogram {
    let mut h = Histogram::new();
    for &v in values {
        h.record(v);
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    assert_eq!(h.count(), n, "{what}: count");
    assert_eq!(h.min(), Some(sorted[0]), "{what}: min");
    assert_eq!(h.max(), Some(*sorted.last().unwrap()), "{what}: max");
    let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
    assert_eq!(h.sum(), sum, "{what}: sum");
    assert_eq!(h.mean(), Some((sum / u128::from(n)) as u64), "{what}: mean");

    let p = h.percentiles().unwrap();
    assert_within(p.p50, exact_quantile(&sorted, 50, 100), what);
    assert_within(p.p95, exact_quantile(&sorted, 95, 100), what);
    assert_within(p.p99, exact_quantile(&sorted, 99, 100), what);
    assert_within(p.p999, exact_quantile(&sorted, 999, 1000), what);
    // The one-pass answers are the single-quantile answers.
    assert_eq!(Some(p.p50), h.quantile_ratio(1, 2), "{what}: p50 one pass");
    assert_eq!(
        Some(p.p999),
        h.quantile_ratio(999, 1000),
        "{what}: p999 one pass"
    );

    for &(num, den) in &[(0, 1), (1, 1000), (1, 4), (9, 10), (1, 1), (7, 13)] {
        let reported = h.quantile_ratio(num, den).unwrap();
        assert_within(reported, exact_quantile(&sorted, num, den), what);
    }
    for &q in &[0.0, 0.001, 0.1, 0.5, 0.75, 0.99, 0.9999, 1.0] {
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let reported = h.quantile(q).unwrap();
        assert_within(reported, exact(&sorted, rank), what);
    }
    // Extremes are exact thanks to the clamp to [min, max].
    assert_eq!(h.quantile(0.0), h.min(), "{what}: q0");
    assert_eq!(h.quantile(1.0), h.max(), "{what}: q1");
    // The buckets hold every value.
    assert_eq!(
        h.buckets().map(|b| b.count).sum::<u64>(),
        n,
        "{what}: buckets"
    );
    h
}

/// Draws one value of a distribution.
type Draw = fn(&mut Rng) -> u64;

/// Named value generators.
fn distributions() -> Vec<(&'static str, Draw)> {
    std::vec![
        ("uniform", |r| r.below(1_000_000)),
        ("uniform_u64", |r| r.next_u64()),
        ("log_uniform", |r| r.next_u64() >> r.below(64)),
        ("exponential", |r| (-r.unit().ln() * 50_000.0) as u64),
        ("bimodal", |r| {
            let jitter = r.below(200) + r.below(200);
            if r.below(10) < 9 {
                800 + jitter
            } else {
                2_000_000 + jitter * 1_000
            }
        }),
        ("constant", |_| 123_456_789),
        ("small", |r| r.below(300)),
        ("near_max", |r| u64::MAX - r.below(1 << 20)),
        ("zero", |_| 0),
        ("pareto", |r| (1_000.0 / r.unit().powf(1.5)) as u64),
    ]
}

#[test]
fn quantiles_are_within_the_stated_bound_on_many_distributions_and_seeds() {
    let seeds = scaled(2, 60) as u64;
    let len = scaled(40, 3_000);
    for (name, draw) in distributions() {
        for seed in 0..seeds {
            let mut rng = Rng::new(seed ^ 0xF1u64 << 32);
            let values: Vec<u64> = (0..len).map(|_| draw(&mut rng)).collect();
            check_distribution(&values, name);
        }
    }
}

#[test]
fn random_lengths_including_one_value() {
    let mut rng = Rng::new(7);
    for _ in 0..scaled(3, 300) {
        let len = 1 + rng.below(scaled(5, 200) as u64) as usize;
        let shift = rng.below(64);
        let values: Vec<u64> = (0..len).map(|_| rng.next_u64() >> shift).collect();
        check_distribution(&values, "random_length");
    }
}

#[test]
fn constant_and_extreme_values_are_exact() {
    for &v in &[0, 1, 255, 256, 1_000_003, u64::MAX - 1, u64::MAX] {
        let mut h = Histogram::new();
        h.record_n(v, 5);
        let p = h.percentiles().unwrap();
        assert_eq!([p.p50, p.p95, p.p99, p.p999], [v; 4]);
        assert_eq!(h.mean(), Some(v));
        assert_eq!(h.sum(), u128::from(v) * 5);
    }
}

#[test]
fn values_below_256_are_exact() {
    let mut h = Histogram::new();
    for v in 0..256u64 {
        h.record(v);
    }
    for rank in 1..=256u64 {
        assert_eq!(h.quantile_ratio(rank, 256), Some(rank - 1));
    }
}

#[test]
fn buckets_tile_the_u64_range_in_order() {
    assert_eq!(bucket_low(0), 0);
    assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    let step = scaled(97, 1);
    for index in (0..BUCKETS - 1).step_by(step) {
        assert!(bucket_low(index) <= bucket_high(index));
        assert_eq!(
            bucket_high(index) + 1,
            bucket_low(index + 1),
            "gap after {index}"
        );
        assert_eq!(bucket_index(bucket_low(index)), index);
        assert_eq!(bucket_index(bucket_high(index)), index);
        // The width is what the bound needs: at most low >> P.
        let width = bucket_high(index) - bucket_low(index) + 1;
        assert!(width == 1 || width <= bucket_low(index) >> SUB_BUCKET_BITS);
    }
}

#[test]
fn every_value_lands_in_its_bucket() {
    let mut rng = Rng::new(11);
    for _ in 0..scaled(200, 200_000) {
        let v = rng.next_u64() >> rng.below(64);
        let index = bucket_index(v);
        assert!(index < BUCKETS);
        assert!(bucket_low(index) <= v && v <= bucket_high(index), "{v}");
    }
}

#[test]
fn merge_equals_recording_everything_into_one() {
    let mut rng = Rng::new(3);
    for _ in 0..scaled(2, 100) {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        let shift = rng.below(64);
        for _ in 0..scaled(30, 1_000) {
            let v = rng.next_u64() >> shift;
            if rng.below(2) == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            both.record(v);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        assert_eq!(ab, both);
        b.merge(&a);
        assert_eq!(b, both, "merge is commutative");
    }
}

#[test]
fn merge_of_and_into_empty() {
    let mut h = Histogram::new();
    h.record(5);
    h.record(70_000);
    let before = h.clone();
    h.merge(&Histogram::new());
    assert_eq!(h, before);
    let mut empty = Histogram::new();
    empty.merge(&before);
    assert_eq!(empty, before);
}

#[test]
fn record_n_equals_n_records() {
    let mut rng = Rng::new(5);
    let (mut once, mut many) = (Histogram::new(), Histogram::new());
    for _ in 0..scaled(10, 500) {
        let v = rng.next_u64() >> rng.below(64);
        let n = rng.below(20);
        once.record_n(v, n);
        for _ in 0..n {
            many.record(v);
        }
    }
    assert_eq!(once, many);
}

#[test]
fn empty_histogram_has_no_statistics() {
    let h = Histogram::new();
    assert!(h.is_empty());
    assert_eq!(h.count(), 0);
    assert_eq!((h.min(), h.max(), h.mean()), (None, None, None));
    assert_eq!(h.quantile(0.5), None);
    assert_eq!(h.quantile_ratio(1, 2), None);
    assert_eq!(h.percentiles(), None);
    assert_eq!(h.buckets().count(), 0);
}

#[test]
fn reset_forgets_everything() {
    let mut h = Histogram::new();
    h.record_n(1 << 40, 3);
    h.record(1);
    h.reset();
    assert_eq!(h, Histogram::new());
    assert!(h.is_empty());
}

#[test]
fn merge_and_reset_touch_only_the_used_buckets_yet_lose_nothing() {
    // Merging and resetting visit only the buckets between the min and the max: check that
    // every count still arrives and every bucket is cleared, far apart and saturating too.
    let mut a = Histogram::new();
    let mut b = Histogram::new();
    let mut whole = Histogram::new();
    for v in [0, 1, 255, 1_000, 65_535] {
        a.record(v);
        whole.record(v);
    }
    for v in [1 << 30, 1 << 50, u64::MAX] {
        b.record_n(v, 2);
        whole.record_n(v, 2);
    }
    a.merge(&b);
    assert_eq!(a, whole);
    a.reset();
    assert_eq!(a, Histogram::new());

    let mut full = Histogram::new();
    full.record_n(7, u64::MAX - 1);
    full.merge(&b); // saturating: takes one of b's values
    assert_eq!(full.count(), u64::MAX);
    full.reset();
    assert_eq!(full, Histogram::new());
}

#[test]
fn counts_saturate_without_breaking_the_invariant() {
    let mut h = Histogram::new();
    h.record_n(1_000, u64::MAX - 1);
    h.record(2_000);
    assert_eq!(h.count(), u64::MAX);
    h.record(3_000); // full: ignored
    h.record_n(4_000, 9); // full: ignored
    assert_eq!(h.count(), u64::MAX);
    assert_eq!(h.max(), Some(2_000));
    assert_eq!(
        h.buckets().map(|b| u128::from(b.count)).sum::<u128>(),
        u128::from(u64::MAX)
    );
    let p = h.percentiles().unwrap();
    assert_within(p.p999, 1_000, "saturated p999");
    assert_eq!(h.quantile(1.0), Some(2_000));

    // Merging past the top keeps the lowest buckets of the other histogram.
    let mut a = Histogram::new();
    a.record_n(10, u64::MAX - 2);
    let mut b = Histogram::new();
    b.record_n(5, 1);
    b.record_n(1 << 50, 4);
    a.merge(&b);
    assert_eq!(a.count(), u64::MAX);
    let buckets: Vec<_> = a.buckets().collect();
    assert_eq!(buckets.len(), 3);
    assert_eq!((buckets[0].low, buckets[0].count), (5, 1));
    assert_eq!((buckets[1].low, buckets[1].count), (10, u64::MAX - 2));
    assert_eq!(buckets[2].count, 1);
}

#[test]
#[should_panic(expected = "not in 0.0..=1.0")]
fn quantile_above_one_panics() {
    let mut h = Histogram::new();
    h.record(1);
    let _ = h.quantile(1.5);
}

#[test]
#[should_panic(expected = "not in 0.0..=1.0")]
fn quantile_nan_panics() {
    let _ = Histogram::new().quantile(f64::NAN);
}

#[test]
#[should_panic(expected = "not in 0..=1")]
fn quantile_ratio_above_one_panics() {
    let _ = Histogram::new().quantile_ratio(3, 2);
}
