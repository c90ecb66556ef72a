//! docs/guide.md, "Memory-tight hosts": the `low_memory` preset, a result cache held to a
//! byte budget by a weigher that sees the payload's heap, and the degradation `memory`
//! trigger, which shrinks the cache and frees idle pooled runners while resident memory is
//! above its budget and undoes both when it falls. It checks the cache's weight against its
//! budget, the hits, and the health moves, and exits non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_low_memory`

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, ManualClock, TaskConfig};
use flujo_runtime::clock::ticks;
use flujo_runtime::config::{Action, DegradationLevel, OptimizationConfig};
use flujo_runtime::monitor::health::Health;
use flujo_runtime::monitor::resources;
use flujo_runtime::Executor;

flujo_core::payload! {
    #[derive(Clone, Debug, PartialEq)]
    enum Flow { Key(u64), Blob(Vec<u8>) }
}

const CACHE_BYTES: usize = 64 * 1024;
/// Keys from here on render a 100 KiB blob: heavier than the cache's whole budget.
const HEAVY: u64 = 1_000;

fn blob(k: u64) -> Vec<u8> {
    let len = if k >= HEAVY { 100 * 1024 } else { 4 * 1024 };
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guide_low_memory: MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // `render` is cacheable on its `u64` input; `renders` counts its real executions.
    let renders = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&renders);
    let g = Graph::<Flow, ()>::build_typed(|b| {
        let cfg =
            TaskConfig::new().cacheable_input::<u64>(StepFingerprint::builder("render", 1).build());
        b.task_with(
            "render",
            move |k: u64, _| {
                r.fetch_add(1, Ordering::Relaxed);
                Ok(blob(k))
            },
            cfg,
        )
    })
    .map_err(|e| e.to_string())?;

    let mut cfg = OptimizationConfig::low_memory(); // 2 workers, small queues, pools, caches
    cfg.result_cache.max_bytes = CACHE_BYTES; // as counted by the weigher below
    cfg.result_cache.shards = 1; // one shard: an output may weigh up to the whole budget
                                 // The memory trigger: a level that shrinks the cache to a quarter and frees the idle
                                 // pooled runners while resident memory is above 90% of the budget (undone below 80%,
                                 // after the level held `min_dwell`). The budget is set below, from what the process uses.
    let rss0 = resources::read().resident_bytes;
    let ballast_bytes: usize = 64 << 20;
    cfg.degradation.enabled = true;
    cfg.degradation.min_dwell = Duration::from_secs(1);
    let budget = rss0.unwrap_or(0) + (ballast_bytes as u64) * 2 / 3;
    cfg.degradation.memory.budget_bytes = budget;
    cfg.degradation.levels = vec![DegradationLevel {
        name: "memory".into(),
        when: vec!["memory".into()],
        actions: vec![Action::ShrinkCache { share: 0.25 }, Action::FreeIdleRunners],
        critical: false,
    }];
    // A manual clock moves the monitor's buckets when the example says so.
    let clock = ManualClock::new(0);
    let ex = Executor::<Flow, ()>::builder(cfg)
        // Without a weigher an output weighs `size_of::<Flow>()`, none of its heap: the
        // budget would hold thousands of 4 KiB blobs.
        .cache_weigher(|out: &Flow| match out {
            Flow::Blob(v) => v.len(),
            Flow::Key(_) => 8,
        })
        .clock(clock.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let render = |k: u64| -> Result<(), String> {
        let out = ex
            .run(&g, Flow::from(k), ())
            .map_err(|p| format!("{p:?}"))?
            .output;
        match out.and_then(Flow::take::<Vec<u8>>) {
            Some(v) if v == blob(k) => Ok(()),
            other => Err(format!("key {k}: {:?}", other.map(|v| v.len()))),
        }
    };
    let weight = || ex.report().memory.cache_weight_bytes;

    // 1. Eight 4 KiB blobs fit: the second pass hits every one.
    for pass in 0..2 {
        for k in 0..8 {
            render(k)?;
        }
        if pass == 0 && weight() != 8 * 4096 {
            return Err(format!(
                "cache weight {} after 8 blobs, want 32768",
                weight()
            ));
        }
    }
    if renders.load(Ordering::Relaxed) != 8 {
        return Err(format!(
            "{} renders for 16 runs of 8 keys",
            renders.load(Ordering::Relaxed)
        ));
    }

    // 2. Many keys: the cache evicts to stay within its budget.
    for k in 0..200 {
        render(k)?;
        if weight() > CACHE_BYTES as u64 {
            return Err(format!(
                "cache weight {} over its budget {CACHE_BYTES}",
                weight()
            ));
        }
    }

    // 3. A blob heavier than the budget is never stored: it renders every time.
    let before = renders.load(Ordering::Relaxed);
    for _ in 0..3 {
        render(HEAVY)?;
    }
    if renders.load(Ordering::Relaxed) - before != 3 {
        return Err("a 100 KiB blob was served from a 64 KiB cache".into());
    }

    // 4. Memory pressure: another part of the process takes 64 MiB (touched, so resident).
    let Some(rss0) = rss0 else {
        println!("guide_low_memory: cache checks passed; no resident-memory reading here, memory trigger skipped");
        return Ok(());
    };
    let ballast = vec![1u8; ballast_bytes];
    clock.advance(ticks(Duration::from_secs(2))); // close the monitor's buckets
    let health = ex.health();
    let shrunk = weight();
    if !matches!(health, Health::Degraded(_)) || shrunk > (CACHE_BYTES / 4) as u64 {
        return Err(format!("under pressure: {health:?}, cache weight {shrunk}"));
    }
    if ex.report().pool.pool_idle != 0 {
        return Err("idle pooled runners were not freed".into());
    }
    drop(ballast); // the pressure falls ...
    clock.advance(ticks(Duration::from_secs(2))); // ... and the level has held `min_dwell`
    let health = ex.health();
    let report = ex.report();
    let undone = report
        .health
        .actions
        .iter()
        .all(|a| !a.active && a.taken == 1 && a.undone == 1);
    if health != Health::Healthy || !undone {
        return Err(format!(
            "after the pressure: {health:?}, actions {:?}",
            report.health.actions
        ));
    }
    for k in 0..200 {
        render(k)?; // the cache may grow back to its configured budget
    }
    println!(
        "guide_low_memory: cache within {CACHE_BYTES} B throughout ({} B now); 8 of 16 runs \
         hit; a 100 KiB blob never stored; resident {:.1} MiB at start, budget {:.1} MiB: \
         under 64 MiB of ballast the memory level shrank the cache to {shrunk} B and freed the \
         idle runners, and undid both when the ballast went",
        weight(),
        rss0 as f64 / 1048576.0,
        budget as f64 / 1048576.0,
    );
    Ok(())
}
