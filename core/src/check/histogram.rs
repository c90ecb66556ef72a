//! The histogram program: records, merges, resets and quantile queries on two
//! [`Histogram`]s, each against a model that keeps every value in a `Vec` and sorts it to
//! answer. Every answer must be exact (count, min, max, sum, mean) or within the stated bound
//! `|reported - exact| <= exact >> 8` (quantiles).

use alloc::vec::Vec;

use super::Bytes;
use crate::telemetry::Histogram;

/// Operations per program, so that a long input cannot make one run quadratic.
const MAX_OPS: usize = 256;

/// A value spread over the whole `u64` range: eight bytes shifted right by 0..=63 bits.
fn value(input: &mut Bytes<'_>) -> u64 {
    let bytes: [u8; 8] = core::array::from_fn(|_| input.next());
    u64::from_le_bytes(bytes) >> (input.next() % 64)
}

/// A histogram beside its model.
struct Pair {
    histogram: Histogram,
    model: Vec<u64>,
}

impl Pair {
    fn new() -> Self {
        Self {
            histogram: Histogram::new(),
            model: Vec::new(),
        }
    }

    fn record_n(&mut self, value: u64, n: u64) {
        if n == 1 {
            self.histogram.record(value);
        } else {
            self.histogram.record_n(value, n);
        }
        self.model.extend((0..n).map(|_| value));
    }

    /// Checks every statistic and the quantile `numerator / denominator`.
    fn check(&self, numerator: u64, denominator: u64) {
        let h = &self.histogram;
        let mut sorted = self.model.clone();
        sorted.sort_unstable();
        assert_eq!(h.count(), sorted.len() as u64);
        assert_eq!(h.min(), sorted.first().copied());
        assert_eq!(h.max(), sorted.last().copied());
        let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        assert_eq!(h.sum(), sum);
        assert_eq!(h.buckets().map(|b| b.count).sum::<u64>(), h.count());
        if sorted.is_empty() {
            assert_eq!(h.percentiles(), None);
            assert_eq!(h.quantile_ratio(numerator, denominator), None);
            return;
        }
        assert_eq!(h.mean(), Some((sum / sorted.len() as u128) as u64));
        let exact = |num: u64, den: u64| {
            let rank = (sorted.len() as u128 * u128::from(num)).div_ceil(u128::from(den));
            sorted[(rank as usize).max(1) - 1]
        };
        let within = |reported: u64, exact: u64| {
            assert!(
                reported.abs_diff(exact) <= exact >> 8,
                "reported {reported}, exact {exact}"
            );
        };
        within(
            h.quantile_ratio(numerator, denominator).unwrap(),
            exact(numerator, denominator),
        );
        let p = h.percentiles().unwrap();
        within(p.p50, exact(50, 100));
        within(p.p95, exact(95, 100));
        within(p.p99, exact(99, 100));
        within(p.p999, exact(999, 1000));
    }
}

/// Runs `data` as an operation program against two histograms and their models.
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let (mut a, mut b) = (Pair::new(), Pair::new());
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.next() % 6 {
            0 => {
                let v = value(&mut input);
                a.record_n(v, 1);
            }
            1 => {
                let v = value(&mut input);
                let n = u64::from(input.next() % 8);
                a.record_n(v, n);
            }
            2 => {
                let v = value(&mut input);
                let n = u64::from(input.next() % 4);
                b.record_n(v, n);
            }
            3 => {
                a.histogram.merge(&b.histogram);
                a.model.extend_from_slice(&b.model);
            }
            4 => {
                let (x, y) = (u64::from(input.next()), u64::from(input.next()));
                let (numerator, denominator) = (x.min(y), x.max(y).max(1));
                a.check(numerator, denominator);
            }
            _ => {
                a.histogram.reset();
                a.model.clear();
            }
        }
    }
    a.check(1, 2);
    b.check(1, 1);
}
