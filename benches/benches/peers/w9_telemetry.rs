//! W9: record one step latency (`W9_telemetry`) and p50+p95+p99 from a histogram of 1M values
//! (`W9_quantile`): flujo's `Histogram` against `hdrhistogram`.
//!
//! hdrhistogram is configured for the same resolution as ours (2 significant digits: 128
//! linear sub-buckets per power of two) over the same range (`1 ..= u64::MAX`), with
//! `saturating_record`, its infallible record. Its quantile query is `value_at_quantiles`,
//! its one-pass form; ours is `percentiles()`, which also answers p99.9 in the same pass.
use flujo_benches::latencies_ns;
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use flujo_core::telemetry::Histogram;

/// How many precomputed latencies the record bench cycles through (a power of two).
const LATENCIES: usize = 4096;
/// How many values the quantile bench's histograms hold.
const QUANTILE_VALUES: usize = 1_000_000;

type Hdr = hdrhistogram::Histogram<u64>;

fn hdr() -> Hdr {
    Hdr::new_with_bounds(1, u64::MAX, 2).expect("valid hdrhistogram bounds")
}

/// Asserts both histograms answer p50/p95/p99 near the exact values: ours within its stated
/// bound (`exact >> 8`), hdrhistogram within its bucket width (`exact >> 7`, plus one).
fn check_quantiles(ours: &Histogram, hdr: &Hdr, values: &[u64]) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    let p = ours.percentiles().expect("values were recorded");
    assert_eq!(ours.count(), n);
    assert_eq!(hdr.len(), n);
    for (q, num, den, ours_q) in [
        (0.5, 50, 100, p.p50),
        (0.95, 95, 100, p.p95),
        (0.99, 99, 100, p.p99),
    ] {
        let rank = (n * num).div_ceil(den).max(1);
        let exact = sorted[rank as usize - 1];
        let hdr_q = hdr.value_at_quantile(q);
        assert!(
            ours_q.abs_diff(exact) <= exact >> 8,
            "flujo p{q}: {ours_q} vs {exact}"
        );
        assert!(
            hdr_q.abs_diff(exact) <= (exact >> 7) + 1,
            "hdr p{q}: {hdr_q} vs {exact}"
        );
    }
}

fn record(c: &mut Criterion) {
    let values: Box<[u64; LATENCIES]> = latencies_ns(LATENCIES, 1)
        .into_boxed_slice()
        .try_into()
        .expect("LATENCIES values");
    let (mut ours, mut theirs) = (Histogram::new(), hdr());
    for &v in values.iter() {
        ours.record(v);
        theirs.saturating_record(v);
    }
    check_quantiles(&ours, &theirs, &values[..]);

    let mut group = c.benchmark_group("W9_telemetry");
    group.throughput(Throughput::Elements(1));
    group.bench_function("flujo", |b| {
        let mut h = Histogram::new();
        let mut i = 0usize;
        b.iter(|| {
            h.record(black_box(values[i % LATENCIES]));
            i = i.wrapping_add(1);
        });
        assert_eq!(h.count(), i as u64);
    });
    group.bench_function("hdrhistogram", |b| {
        let mut h = hdr();
        let mut i = 0usize;
        b.iter(|| {
            h.saturating_record(black_box(values[i % LATENCIES]));
            i = i.wrapping_add(1);
        });
        assert_eq!(h.len(), i as u64);
    });
    group.finish();
}

fn quantile(c: &mut Criterion) {
    let values = latencies_ns(QUANTILE_VALUES, 2);
    let (mut ours, mut theirs) = (Histogram::new(), hdr());
    for &v in &values {
        ours.record(v);
        theirs.saturating_record(v);
    }
    check_quantiles(&ours, &theirs, &values);

    let mut group = c.benchmark_group("W9_quantile");
    group.bench_function("flujo", |b| {
        b.iter(|| {
            let p = black_box(&ours).percentiles().expect("not empty");
            black_box([p.p50, p.p95, p.p99])
        });
    });
    group.bench_function("hdrhistogram", |b| {
        b.iter(|| {
            let mut out = [0u64; 3];
            let answers = black_box(&theirs).value_at_quantiles([0.5, 0.95, 0.99]);
            for (slot, v) in out.iter_mut().zip(answers) {
                *slot = v;
            }
            black_box(out)
        });
    });
    group.finish();
}

/// Both W9 groups.
pub fn benches(c: &mut Criterion) {
    record(c);
    quantile(c);
}
