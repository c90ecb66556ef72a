//! A log-linear histogram of `u64` values (latencies in ticks or nanoseconds): the layout,
//! error bound, cost and saturation rule are in [`Histogram`]'s docs.

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

/// Bits of linear sub-bucket resolution under each power of two (`P` in [`Histogram`]'s docs).
pub const SUB_BUCKET_BITS: u32 = 7;

/// Linear sub-buckets per power-of-two row.
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;

/// Buckets summed together by the quantile scan before it walks them one by one.
const BLOCK: usize = 16;

/// The number of buckets: rows for shifts `0 ..= 63 - P`, plus the exact row below `2^P`.
pub const BUCKETS: usize = (65 - SUB_BUCKET_BITS as usize) * SUB_BUCKETS;

// The top value must land in the last bucket, and the rows must tile the bucket array.
const _: () = assert!(bucket_index(u64::MAX) == BUCKETS - 1);
const _: () = assert!(BUCKETS.is_multiple_of(SUB_BUCKETS));
const _: () = assert!(SUB_BUCKETS.is_multiple_of(BLOCK));
const _: () = assert!(SUB_BUCKET_BITS >= 1 && SUB_BUCKET_BITS <= 16);

/// The bucket of `value`: `shift * 2^P + (value >> shift)`, where `shift` is how far the
/// value's leading one sits above bit `P` (zero for values below `2^(P+1)`).
#[inline(always)]
pub(crate) const fn bucket_index(value: u64) -> usize {
    // OR-ing in bit P makes the leading one at least bit P, so the shift is never negative
    // and values below 2^(P+1) index themselves.
    let shift = 63 - (value | SUB_BUCKETS as u64).leading_zeros() - SUB_BUCKET_BITS;
    ((shift as usize) << SUB_BUCKET_BITS) + (value >> shift) as usize
}

/// The smallest value that lands in bucket `index`.
#[inline]
pub(crate) const fn bucket_low(index: usize) -> u64 {
    debug_assert!(index < BUCKETS);
    let row = index >> SUB_BUCKET_BITS;
    if row == 0 {
        return index as u64;
    }
    let shift = row - 1;
    let sub = (index & (SUB_BUCKETS - 1)) | SUB_BUCKETS;
    (sub as u64) << shift
}

/// The largest value that lands in bucket `index`.
#[inline]
pub(crate) const fn bucket_high(index: usize) -> u64 {
    bucket_low(index) + (bucket_width(index) - 1)
}

/// How many distinct values land in bucket `index` (a power of two).
#[inline]
const fn bucket_width(index: usize) -> u64 {
    let row = index >> SUB_BUCKET_BITS;
    if row == 0 {
        1
    } else {
        1 << (row - 1)
    }
}

/// The value reported for bucket `index`: its middle (within half a width of any member).
#[inline]
const fn bucket_middle(index: usize) -> u64 {
    bucket_low(index) + (bucket_width(index) >> 1)
}

/// The rank (1-based) of quantile `numerator / denominator` among `count` values:
/// `max(1, ceil(count * numerator / denominator))`, computed exactly.
#[inline]
fn rank_of(count: u64, numerator: u64, denominator: u64) -> u64 {
    debug_assert!(denominator > 0 && numerator <= denominator);
    let scaled = u128::from(count) * u128::from(numerator);
    let rank = scaled.div_ceil(u128::from(denominator));
    // rank <= count because numerator <= denominator.
    (rank as u64).max(1)
}

/// The answers to p50, p95, p99 and p99.9, from [`Histogram::percentiles`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// The median.
    pub p50: u64,
    /// The 95th percentile.
    pub p95: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
}

/// One non-empty bucket, from [`Histogram::buckets`]: `count` values in `low ..= high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The smallest value of the bucket.
    pub low: u64,
    /// The largest value of the bucket (inclusive).
    pub high: u64,
    /// How many recorded values fell in `low ..= high`.
    pub count: u64,
}

/// A log-linear histogram of `u64` values with a stated relative error bound of `2^-8`.
///
/// Record from one thread; to combine threads or runs, give each its own histogram and
/// [`merge`](Histogram::merge) them.
///
/// The bucket layout is the one of Gil Tene's HdrHistogram: a value's power-of-two magnitude
/// picks a bucket row, and the next `SUB_BUCKET_BITS` bits below its leading one pick one of
/// `2^SUB_BUCKET_BITS` linear sub-buckets in that row. Values below `2^(SUB_BUCKET_BITS + 1)`
/// get a bucket each (they are exact). The rows cover the whole `u64` range, so no value is
/// ever out of range and nothing saturates into a top bucket.
///
/// # Layout and error bound
///
/// With `P = SUB_BUCKET_BITS = 7`, a value `v >= 2^(P+1)` whose leading one is bit `m` lands in
/// a bucket of width `2^(m-P)` whose lower end is at least `2^m`. A quantile is answered with
/// the middle of the bucket that holds the exact answer, clamped to `[min, max]`, so for every
/// quantile the reported value `q'` and the exact value `q` (the `rank`-th smallest recorded
/// value, `rank = max(1, ceil(quantile * count))`) satisfy
///
/// ```text
/// |q' - q| <= q >> (SUB_BUCKET_BITS + 1)      (that is, at most q / 256: 0.39 %)
/// ```
///
/// which the tests check on many distributions. Values below 256 are reported exactly.
///
/// # Cost
///
/// `BUCKETS` = 7,424 counts of 8 bytes (58 KiB), allocated once by [`Histogram::new`].
/// [`Histogram::record`] never allocates: a `leading_zeros`, two shifts and an add find the
/// bucket; min and max are updated with conditional moves. The only branches test whether the
/// histogram is full and the bounds of the index, and both always go the same way.
/// [`Histogram::percentiles`] answers p50, p95, p99 and p99.9 in one pass that sums each row
/// of 128 counts in blocks of 16 (vectorizable) and walks bucket by bucket only the blocks
/// where a rank falls.
///
/// # Saturation
///
/// The histogram counts at most `u64::MAX` values; a value recorded when it is full is
/// ignored (its count, sum, min and max are left alone). The invariant `count() == sum of all
/// bucket counts` holds at all times, so no bucket count can overflow.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::Histogram;
///
/// let mut latency_ns = Histogram::new();
/// for v in 1..=1000u64 {
///     latency_ns.record(v * 1_000);
/// }
/// let p = latency_ns.percentiles().unwrap();
/// // The exact median is 500_000; the answer is within 1/256 of it.
/// assert!(p.p50.abs_diff(500_000) <= 500_000 >> 8);
/// assert_eq!(latency_ns.count(), 1000);
/// assert_eq!(latency_ns.min(), Some(1_000));
/// assert_eq!(latency_ns.max(), Some(1_000_000));
/// assert_eq!(latency_ns.mean(), Some(500_500));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Per-bucket counts. Invariant: they sum to `count`.
    counts: Box<[u64; BUCKETS]>,
    /// How many values were recorded, at most `u64::MAX`.
    count: u64,
    /// Sum of the recorded values; cannot overflow (at most `(2^64 - 1)^2 < 2^128`).
    sum: u128,
    /// Smallest recorded value; `u64::MAX` while empty.
    min: u64,
    /// Largest recorded value; `0` while empty.
    max: u64,
}

impl Histogram {
    /// An empty histogram; allocates its `BUCKETS` (7,424) counts (58 KiB, zeroed) once.
    pub fn new() -> Self {
        let counts: Box<[u64]> = vec![0u64; BUCKETS].into_boxed_slice();
        let counts: Box<[u64; BUCKETS]> = match counts.try_into() {
            Ok(counts) => counts,
            Err(_) => unreachable!("the vector has BUCKETS elements"),
        };
        Self {
            counts,
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one `value`. Never allocates; ignored once `count()` is `u64::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = flujo_core::telemetry::Histogram::new();
    /// h.record(42);
    /// assert_eq!(h.quantile(0.5), Some(42));
    /// ```
    #[inline]
    pub fn record(&mut self, value: u64) {
        if self.count == u64::MAX {
            return;
        }
        self.counts[bucket_index(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Records `value` `n` times. Counts past `u64::MAX` in total are ignored.
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        let n = n.min(u64::MAX - self.count);
        if n == 0 {
            return;
        }
        self.counts[bucket_index(value)] += n;
        self.count += n;
        self.sum += u128::from(value) * u128::from(n);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// How many values were recorded (exact, up to `u64::MAX`).
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no value was recorded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest recorded value (exact), or `None` when empty.
    #[inline]
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest recorded value (exact), or `None` when empty.
    #[inline]
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The exact sum of the recorded values.
    #[inline]
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// The mean of the recorded values, rounded down (exact), or `None` when empty.
    #[inline]
    pub fn mean(&self) -> Option<u64> {
        // The mean of u64 values is a u64.
        (self.count > 0).then(|| (self.sum / u128::from(self.count)) as u64)
    }

    /// The value at `quantile` (in `0.0 ..= 1.0`), within the bound of the module docs, or
    /// `None` when empty. The exact answer it approximates is the `rank`-th smallest value with
    /// `rank = max(1, ceil(quantile * count))`.
    ///
    /// # Panics
    ///
    /// If `quantile` is not in `0.0 ..= 1.0` (NaN included).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = flujo_core::telemetry::Histogram::new();
    /// for v in 1..=100u64 {
    ///     h.record(v);
    /// }
    /// assert_eq!(h.quantile(0.0), Some(1));
    /// assert_eq!(h.quantile(0.99), Some(99));
    /// assert_eq!(h.quantile(1.0), Some(100));
    /// ```
    pub fn quantile(&self, quantile: f64) -> Option<u64> {
        assert!(
            (0.0..=1.0).contains(&quantile),
            "quantile {quantile} is not in 0.0..=1.0"
        );
        if self.count == 0 {
            return None;
        }
        let scaled = quantile * self.count as f64;
        // ceil without libm: the cast truncates (scaled >= 0), then round up a fraction.
        let mut rank = scaled as u64;
        if (rank as f64) < scaled {
            rank += 1;
        }
        Some(self.values_at_ranks([rank.clamp(1, self.count)])[0])
    }

    /// The value at quantile `numerator / denominator` (integer arithmetic only), or `None`
    /// when empty; `quantile_ratio(999, 1000)` is p99.9.
    ///
    /// # Panics
    ///
    /// If `denominator` is 0 or `numerator > denominator`.
    pub fn quantile_ratio(&self, numerator: u64, denominator: u64) -> Option<u64> {
        assert!(
            denominator > 0 && numerator <= denominator,
            "quantile {numerator}/{denominator} is not in 0..=1"
        );
        if self.count == 0 {
            return None;
        }
        let rank = rank_of(self.count, numerator, denominator);
        Some(self.values_at_ranks([rank])[0])
    }

    /// p50, p95, p99 and p99.9 in one pass over the buckets, or `None` when empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = flujo_core::telemetry::Histogram::new();
    /// for v in 1..=1000u64 {
    ///     h.record(v);
    /// }
    /// let p = h.percentiles().unwrap();
    /// assert!(p.p50.abs_diff(500) <= 500 >> 8);
    /// assert!(p.p999.abs_diff(999) <= 999 >> 8);
    /// ```
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.count == 0 {
            return None;
        }
        let ranks = [
            rank_of(self.count, 50, 100),
            rank_of(self.count, 95, 100),
            rank_of(self.count, 99, 100),
            rank_of(self.count, 999, 1000),
        ];
        let [p50, p95, p99, p999] = self.values_at_ranks(ranks);
        Some(Percentiles {
            p50,
            p95,
            p99,
            p999,
        })
    }

    /// The reported values of the `ranks`-th smallest values (ascending, each in
    /// `1 ..= count`), found in one pass from min's row: each row's counts are summed in blocks
    /// of [`BLOCK`] (vectorizable), a row that holds no rank is skipped whole, and in a row that
    /// holds one only the block where the rank falls is walked bucket by bucket.
    fn values_at_ranks<const N: usize>(&self, ranks: [u64; N]) -> [u64; N] {
        debug_assert!(self.count > 0);
        debug_assert!(ranks.windows(2).all(|w| w[0] <= w[1]));
        debug_assert!(ranks.iter().all(|&r| (1..=self.count).contains(&r)));
        let mut values = [0u64; N];
        let mut next = 0;
        // How many values lie in the buckets before the one being looked at. No value lies
        // below min's row, so the scan starts there. No overflow: all counts sum to `count`.
        let mut below: u64 = 0;
        let first_row = bucket_index(self.min) / SUB_BUCKETS;
        for (row, counts) in self
            .counts
            .chunks_exact(SUB_BUCKETS)
            .enumerate()
            .skip(first_row)
        {
            let mut block_counts = [0u64; SUB_BUCKETS / BLOCK];
            for (block_count, block) in block_counts.iter_mut().zip(counts.chunks_exact(BLOCK)) {
                *block_count = block.iter().sum();
            }
            let row_count: u64 = block_counts.iter().sum();
            if below + row_count < ranks[next] {
                below += row_count;
                continue;
            }
            for (block, &block_count) in block_counts.iter().enumerate() {
                if below + block_count < ranks[next] {
                    below += block_count;
                    continue;
                }
                let first = row * SUB_BUCKETS + block * BLOCK;
                for (index, &count) in (first..).zip(&self.counts[first..first + BLOCK]) {
                    below += count;
                    while below >= ranks[next] {
                        values[next] = self.reported(index, ranks[next]);
                        next += 1;
                        if next == N {
                            return values;
                        }
                    }
                }
            }
        }
        unreachable!("ranks are at most count, so the scan finds them all")
    }

    /// The value reported for `rank`, which falls in bucket `index`: the exact min or max for
    /// the first and last ranks, otherwise the bucket's middle clamped to `[min, max]` (which
    /// can only move it closer to any recorded value of the bucket).
    #[inline]
    fn reported(&self, index: usize, rank: u64) -> u64 {
        if rank == self.count {
            self.max
        } else if rank == 1 {
            self.min
        } else {
            bucket_middle(index).clamp(self.min, self.max)
        }
    }

    /// Adds every value of `other` to `self`, as if they had been recorded here. Counts past
    /// `u64::MAX` in total are ignored (from the highest buckets of `other`).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::telemetry::Histogram;
    ///
    /// let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
    /// for v in 0..100u64 {
    ///     if v % 3 == 0 { a.record(v * 7) } else { b.record(v * 7) }
    ///     both.record(v * 7);
    /// }
    /// a.merge(&b);
    /// assert_eq!(a, both);
    /// ```
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        let room = u64::MAX - self.count;
        if other.count <= room {
            // No bucket can overflow: every bucket is at most the total, which fits. Only
            // `other`'s used buckets can be non-zero.
            let used = other.used();
            let theirs = &other.counts[used.clone()];
            for (mine, theirs) in self.counts[used].iter_mut().zip(theirs) {
                *mine += *theirs;
            }
            self.count += other.count;
            self.sum += other.sum;
        } else {
            self.merge_saturating(other, room);
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        debug_assert_eq!(self.count, self.counts.iter().sum::<u64>());
    }

    /// The buckets that can be non-zero: every value recorded (or merged in) lies in
    /// `min ..= max` and [`bucket_index`] never decreases, so every bucket outside this range
    /// is 0. Merging and resetting touch only these, which for latencies that cluster is a
    /// few hundred of the 7,000-odd buckets.
    #[inline]
    fn used(&self) -> core::ops::Range<usize> {
        if self.count == 0 {
            0..0
        } else {
            bucket_index(self.min)..bucket_index(self.max) + 1
        }
    }

    /// The cold path of [`merge`](Self::merge): takes `other`'s counts from the lowest
    /// bucket up until `room` is used. The sum then counts the taken values at their buckets'
    /// lower ends, since their exact values are gone.
    #[cold]
    fn merge_saturating(&mut self, other: &Histogram, mut room: u64) {
        for (index, (mine, &theirs)) in self.counts.iter_mut().zip(other.counts.iter()).enumerate()
        {
            let taken = theirs.min(room);
            *mine += taken;
            room -= taken;
            self.count += taken;
            self.sum = self
                .sum
                .saturating_add(u128::from(bucket_low(index)) * u128::from(taken));
        }
        debug_assert_eq!(self.count, u64::MAX);
    }

    /// Forgets every value; keeps the allocation.
    pub fn reset(&mut self) {
        let used = self.used();
        self.counts[used].fill(0);
        debug_assert!(
            self.counts.iter().all(|&c| c == 0),
            "only used buckets hold counts"
        );
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// The non-empty buckets in ascending order (for exporters: Prometheus buckets, HDR logs).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut h = flujo_core::telemetry::Histogram::new();
    /// h.record_n(1_000_000, 3);
    /// let b: Vec<_> = h.buckets().collect();
    /// assert_eq!(b.len(), 1);
    /// assert!(b[0].low <= 1_000_000 && 1_000_000 <= b[0].high);
    /// assert_eq!(b[0].count, 3);
    /// ```
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(index, &count)| Bucket {
                low: bucket_low(index),
                high: bucket_high(index),
                count,
            })
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("mean", &self.mean())
            .finish_non_exhaustive()
    }
}
