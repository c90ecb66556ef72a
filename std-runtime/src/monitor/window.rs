//! The monitor's window data: a compact latency histogram, and the cell of counts one series
//! (a graph, a step) keeps per bucket of time.
//!
//! A bucket is `resolution` ticks long (one second by default). Each pooled runner counts the
//! runs it ends into its *open* bucket, without sharing anything; when a run ends in a later
//! bucket (or the monitor polls), the open bucket is handed to the monitor, which merges the
//! runners' parts by bucket index. A window is the merge of its last buckets, on read.

use flujo_core::policy::ErrorClass;

/// Sub-buckets per doubling, as a power of two: 8, so a bin is at most 1/8 of its lower
/// bound wide and a bin's midpoint is within 6.25% of any value in it.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values below this have a bin each.
const EXACT: u64 = 2 * SUB as u64;
/// The largest exponent binned; larger values share the last bin (2^41 ns is 36 minutes).
const MAX_EXP: u32 = 40;
/// Bins of a [`WinHist`].
pub(crate) const BINS: usize = EXACT as usize + (MAX_EXP as usize - SUB_BITS as usize) * SUB;

/// The bin of `v`.
#[inline]
pub(crate) fn bin(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    if e > MAX_EXP {
        return BINS - 1;
    }
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    EXACT as usize + (e - SUB_BITS - 1) as usize * SUB + sub
}

/// The smallest value of bin `i`, and its width.
pub(crate) fn bin_range(i: usize) -> (u64, u64) {
    if i < EXACT as usize {
        return (i as u64, 1);
    }
    let e = (i - EXACT as usize) / SUB + SUB_BITS as usize + 1;
    let sub = ((i - EXACT as usize) % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS as usize);
    ((SUB as u64 + sub) * width, width)
}

/// A compact latency histogram (nanoseconds): 8 bins per doubling up to 2^41, exact count,
/// sum, least and greatest value. Dense, for the counting side.
#[derive(Clone)]
pub(crate) struct WinHist {
    bins: Box<[u32; BINS]>,
    pub(crate) count: u64,
    pub(crate) sum: u128,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

impl Default for WinHist {
    fn default() -> Self {
        Self {
            bins: Box::new([0; BINS]),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl WinHist {
    /// Records `v`.
    #[inline]
    pub(crate) fn record(&mut self, v: u64) {
        let b = &mut self.bins[bin(v)];
        *b = b.saturating_add(1);
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Its non-empty bins, and empties it.
    pub(crate) fn take(&mut self) -> Sparse {
        let bins = self
            .bins
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u16, n))
            .collect();
        let out = Sparse {
            bins,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
        };
        if self.count > 0 {
            self.bins.fill(0);
            (self.count, self.sum, self.min, self.max) = (0, 0, u64::MAX, 0);
        }
        out
    }

    /// Adds `s`.
    pub(crate) fn add(&mut self, s: &Sparse) {
        for &(i, n) in &s.bins {
            let b = &mut self.bins[i as usize];
            *b = b.saturating_add(n);
        }
        self.count += s.count;
        self.sum += s.sum;
        self.min = self.min.min(s.min);
        self.max = self.max.max(s.max);
    }

    /// The value at quantile `q` in `(0, 1]`: the midpoint of the bin holding the
    /// `ceil(q * count)`-th value, kept within the least and greatest recorded; `None` when
    /// empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let (low, width) = bin_range(i);
                let mid = low + width / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// A [`WinHist`]'s non-empty bins: how a closed bucket keeps it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sparse {
    bins: Vec<(u16, u32)>,
    pub(crate) count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Sparse {
    /// Adds `other` (bins sorted by index on both sides).
    pub(crate) fn merge(&mut self, other: &Sparse) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let mut out = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (self.bins.iter().peekable(), other.bins.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(i, n)), Some(&&(j, m))) => {
                    if i == j {
                        out.push((i, n.saturating_add(m)));
                        a.next();
                        b.next();
                    } else if i < j {
                        out.push((i, n));
                        a.next();
                    } else {
                        out.push((j, m));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    out.push(y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.bins = out;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Bytes it holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<(u16, u32)>()
    }

    /// Its values as the change-point detector's window: each value taken at its bin's
    /// midpoint (kept within the least and greatest recorded), so its logarithm is within
    /// `ln(17/16)` of the value's.
    pub(crate) fn ln_window(&self) -> crate::monitor::detect::LatencyWindow {
        let mut w = crate::monitor::detect::LatencyWindow::new();
        for &(i, n) in &self.bins {
            let (low, width) = bin_range(i as usize);
            let mid = (low + width / 2).clamp(self.min, self.max).max(1) as f64;
            let ln = mid.ln();
            let n = u64::from(n);
            w.n += n;
            w.sum_ln += ln * n as f64;
            w.sum_ln2 += ln * ln * n as f64;
        }
        w
    }
}

/// Error classes a cell counts apart.
pub(crate) const CLASSES: usize = ErrorClass::ALL.len();

/// What one series did in one bucket: exact counts, and latencies.
///
/// For a graph: `ended` runs, of which `failed` did not succeed, each failed run's error class
/// in `classes`, cache hits and misses of its steps, the latency of every run and the queue
/// wait of every submitted one. For a step: `ended` executions, of which `failed` failed or
/// aborted, the class of the last error each execution met (also one recovered by a retry or a
/// fallback) in `classes`, cache hits, and the latencies of sampled runs' executions, also as
/// the sums of their logarithms (for the change-point detector).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cell {
    pub(crate) ended: u64,
    pub(crate) failed: u64,
    pub(crate) classes: [u64; CLASSES],
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) latency: Sparse,
    pub(crate) queue: Sparse,
}

impl Cell {
    /// Adds `other`.
    pub(crate) fn merge(&mut self, other: &Cell) {
        self.ended += other.ended;
        self.failed += other.failed;
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            *a += b;
        }
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.latency.merge(&other.latency);
        self.queue.merge(&other.queue);
    }

    /// Bytes it holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.latency.heap_bytes() + self.queue.heap_bytes()
    }
}

/// A graph's open cell on the counting side: dense histograms.
#[derive(Default)]
pub(crate) struct OpenCell {
    pub(crate) ended: u64,
    pub(crate) failed: u64,
    pub(crate) classes: [u64; CLASSES],
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) latency: WinHist,
    pub(crate) queue: Option<WinHist>,
}

impl OpenCell {
    /// Its counts as a closed [`Cell`], and empties it (keeping its histograms' room).
    pub(crate) fn take(&mut self) -> Cell {
        let cell = Cell {
            ended: self.ended,
            failed: self.failed,
            classes: self.classes,
            cache_hits: self.cache_hits,
            cache_misses: self.cache_misses,
            latency: self.latency.take(),
            queue: self.queue.as_mut().map(WinHist::take).unwrap_or_default(),
        };
        self.ended = 0;
        self.failed = 0;
        self.classes = [0; CLASSES];
        self.cache_hits = 0;
        self.cache_misses = 0;
        cell
    }

    /// Whether it counted nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.ended == 0
            && self.latency.count == 0
            && self.queue.as_ref().is_none_or(|q| q.count == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_value_in_order_within_an_eighth() {
        let mut last = 0;
        for (n, v) in (0..20_000u64)
            .chain((1..64).map(|e| (1u64 << e) - 1))
            .enumerate()
        {
            let i = bin(v);
            assert!(i < BINS);
            let (low, width) = bin_range(i);
            if i < BINS - 1 {
                assert!(
                    low <= v && v < low + width,
                    "{v} in bin {i} = [{low}, +{width})"
                );
                assert!(
                    width == 1 || width * 8 <= low,
                    "{v}: width {width} low {low}"
                );
            }
            if n < 20_000 {
                assert!(i >= last);
                last = i;
            }
        }
        assert_eq!(bin(u64::MAX), BINS - 1);
    }

    #[test]
    fn quantiles_are_within_a_sixteenth_and_merges_add() {
        let mut h = WinHist::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0), (1.0, 10_000_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() <= want / 16.0, "q {q}: {got} vs {want}");
        }
        let s = h.take();
        assert_eq!(h.count, 0);
        assert_eq!(h.quantile(0.5), None);
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.count, 20_000);
        let mut d = WinHist::default();
        d.add(&m);
        assert_eq!(d.count, 20_000);
        assert_eq!(d.max, 10_000_000);
        assert_eq!(d.min, 1000);
        assert_eq!(d.sum, 2 * 1000 * 10_000 * 10_001 / 2);
    }
}
