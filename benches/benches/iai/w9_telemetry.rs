//! W9 under callgrind: `W9_telemetry` records 4096 precomputed latencies (Ir per record =
//! total / 4096) and `W9_quantile` answers p50+p95+p99 ten times from a histogram of 1M values
//! (Ir per query = total / 10). Setup (building the histograms) is not counted.
// The group modules are named by the workload ids of BENCHMARKS.md (`W9_telemetry`).
#![allow(non_snake_case)]
use flujo_benches::latencies_ns;
use std::hint::black_box;

use flujo_core::telemetry::Histogram;
use iai_callgrind::LibraryBenchmarkConfig;
use iai_callgrind::{library_benchmark, library_benchmark_group, Callgrind, EventKind};

/// Records per `W9_telemetry` bench.
const RECORDS: usize = 4096;
/// Queries per `W9_quantile` bench.
const QUERIES: usize = 10;
/// Values in the `W9_quantile` histograms.
const QUANTILE_VALUES: usize = 1_000_000;

type Hdr = hdrhistogram::Histogram<u64>;

fn hdr() -> Hdr {
    Hdr::new_with_bounds(1, u64::MAX, 2).expect("valid hdrhistogram bounds")
}

/// A hard instruction limit for our benches (about 1.15x the measured count).
fn limit(ir: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, ir)]));
    config
}

fn setup_record_flujo() -> (Histogram, Vec<u64>) {
    (Histogram::new(), latencies_ns(RECORDS, 1))
}

fn setup_record_hdr() -> (Hdr, Vec<u64>) {
    (hdr(), latencies_ns(RECORDS, 1))
}

#[library_benchmark]
#[bench::flujo(setup = setup_record_flujo, config = limit(RECORD_IR_LIMIT))]
fn record_flujo((mut h, values): (Histogram, Vec<u64>)) -> Histogram {
    for &v in &values {
        h.record(black_box(v));
    }
    assert_eq!(h.count(), RECORDS as u64);
    h
}

#[library_benchmark]
#[bench::hdrhistogram(setup = setup_record_hdr)]
fn record_hdrhistogram((mut h, values): (Hdr, Vec<u64>)) -> Hdr {
    for &v in &values {
        h.saturating_record(black_box(v));
    }
    assert_eq!(h.len(), RECORDS as u64);
    h
}

fn setup_quantile_flujo() -> Histogram {
    let mut h = Histogram::new();
    for v in latencies_ns(QUANTILE_VALUES, 2) {
        h.record(v);
    }
    h
}

fn setup_quantile_hdr() -> Hdr {
    let mut h = hdr();
    for v in latencies_ns(QUANTILE_VALUES, 2) {
        h.saturating_record(v);
    }
    h
}

#[library_benchmark]
#[bench::flujo(setup = setup_quantile_flujo, config = limit(QUANTILE_IR_LIMIT))]
fn quantile_flujo(h: Histogram) -> u64 {
    let mut p50 = 0;
    for _ in 0..QUERIES {
        let p = black_box(&h).percentiles().expect("not empty");
        p50 = black_box([p.p50, p.p95, p.p99])[0];
    }
    // The median of the log-normal latencies is near 20 µs.
    assert!((19_000..21_000).contains(&p50), "p50 {p50}");
    p50
}

#[library_benchmark]
#[bench::hdrhistogram(setup = setup_quantile_hdr)]
fn quantile_hdrhistogram(h: Hdr) -> u64 {
    let mut p50 = 0;
    for _ in 0..QUERIES {
        let mut out = [0u64; 3];
        for (slot, v) in out
            .iter_mut()
            .zip(black_box(&h).value_at_quantiles([0.5, 0.95, 0.99]))
        {
            *slot = v;
        }
        p50 = black_box(out)[0];
    }
    assert!((19_000..21_000).contains(&p50), "p50 {p50}");
    p50
}

/// Hard Ir limit of `W9_telemetry/flujo` (4096 records): measured 106,670 (26 per record).
const RECORD_IR_LIMIT: u64 = 123_000;
/// Hard Ir limit of `W9_quantile/flujo` (10 queries): measured 54,095 (5.4k per query).
const QUANTILE_IR_LIMIT: u64 = 62_500;

library_benchmark_group!(name = W9_telemetry; benchmarks = record_flujo, record_hdrhistogram);
library_benchmark_group!(name = W9_quantile; benchmarks = quantile_flujo, quantile_hdrhistogram);
