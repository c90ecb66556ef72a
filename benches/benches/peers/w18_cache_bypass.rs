//! `W18_cache_bypass` (see `shared/w18_cache_bypass.rs`): one run of a graph whose cacheable
//! step never sees the same input twice, with caching on, off, and on with the automatic
//! cache bypass in force. Goal: `bypass` within 10 % of `cache_off`.
use std::hint::black_box;

use criterion::Criterion;

#[path = "../shared/w18_cache_bypass.rs"]
mod shared;
use shared::{w18_expected, w18_warmed, SETUPS};

pub fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("W18_cache_bypass");
    for name in SETUPS {
        // Past the bypass's first window (1,000 lookups) and its first probe.
        let (ex, g) = w18_warmed(name, 2_000);
        let mut x = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                x += 1;
                let done = ex.run(&g, black_box(x), ()).expect("no panic");
                debug_assert_eq!(done.output, Some(w18_expected(x)));
                done.output
            })
        });
        if name == "bypass" {
            let row = &ex.report().health.selection.steps[0];
            assert!(row.bypassed && row.taken == 1, "stayed bypassed: {row:?}");
        }
    }
    group.finish();
}
