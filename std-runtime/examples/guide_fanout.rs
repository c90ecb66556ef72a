//! docs/guide.md, "Wide fan-outs and maps": a wide map (2048 items, 3 steps each) and a small
//! one (16 items), run with the inline cutoff at the latency preset's 4096, raised to the
//! throughput preset's 16384, and switched off. The cutoff decides whether a fan-out forks
//! onto the pool or runs on the calling thread; the outputs are the same every time. It
//! checks every output against plain Rust and which threads ran the items, and exits
//! non-zero on a mismatch.
//!
//! `cargo run --release -p flujo-runtime --example guide_fanout`

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use flujo_core::graph::{Graph, MapOptions, NodeRef, StepError};
use flujo_runtime::config::OptimizationConfig;
use flujo_runtime::Executor;

/// One round of a 64-bit mix (SplitMix64's finaliser): each item's CPU work.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The threads that ran a map's items, reset by the host between phases.
type Seen = Arc<Mutex<HashSet<ThreadId>>>;

/// A map over `items` items of `x * 10_000 + i`, each through `depth` mixing steps, summed.
fn map_graph(items: u32, depth: u32, seen: &Seen) -> Graph<u64, ()> {
    let seen = Arc::clone(seen);
    Graph::build(move |b| {
        let seen = Arc::clone(&seen);
        let first = b.task("note_thread", move |z: u64, _| {
            seen.lock().unwrap().insert(thread::current().id());
            Ok(mix(z))
        });
        let mut body: Vec<NodeRef> = vec![first];
        body.extend((1..depth).map(|i| b.task(&format!("mix{i}"), |z: u64, _| Ok(mix(z)))));
        let body = b.sequence("item", &body);
        b.map(
            "fan",
            move |x: u64, _, out| {
                for i in 0..u64::from(items) {
                    out.push(x * 10_000 + i)
                        .map_err(|_| StepError::permanent("too many"))?;
                }
                Ok(0) // the reduce's seed
            },
            body,
            |sum: u64, y: u64| sum.wrapping_add(y),
            // `max_items` is the map's bound (and its cost factor); `max_width` how many
            // items run at once when it forks (a wave), so a huge map holds a bounded number
            // of pooled runners.
            MapOptions::new().max_items(items).max_width(64),
        )
    })
    .expect("a valid graph")
}

fn expected(x: u64, items: u32, depth: u32) -> u64 {
    (0..u64::from(items)).fold(0u64, |sum, i| {
        sum.wrapping_add((0..depth).fold(x * 10_000 + i, |z, _| mix(z)))
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guide_fanout: MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let seen: Seen = Arc::default();
    let wide = map_graph(2048, 3, &seen);
    let small = map_graph(16, 1, &seen);
    // The analysed cost: every task execution the fan-out can make.
    if (wide.cost(wide.root()), small.cost(small.root())) != (6144, 16) {
        return Err("the costs are not 2048 x 3 and 16 x 1".into());
    }

    let mut cfg = OptimizationConfig::latency(); // inline_cutoff.max_cost = 4096
    cfg.workers = 2;
    // A run keeps one step record per task execution, up to `max_records` (1024 in the
    // preset); the wide map makes 6144. Records past the bound are dropped and counted, and
    // the report's per-step counts come from the records: size it for the widest run.
    cfg.max_records = 8192;
    let ex = Executor::<u64, ()>::new(cfg.clone()).map_err(|e| e.to_string())?;
    let me = thread::current().id();

    // Runs `g` on `x` and says whether its items ran on this thread only (inline) or on the
    // pool's threads only (forked).
    let run_on = |g: &Graph<u64, ()>, x: u64, items: u32, depth: u32| -> Result<bool, String> {
        seen.lock().unwrap().clear();
        let out = ex.run(g, x, ()).map_err(|p| format!("{p:?}"))?.output;
        if out != Some(expected(x, items, depth)) {
            return Err(format!("map of {items} on {x}: {out:?}"));
        }
        let threads = seen.lock().unwrap().clone();
        match (threads.contains(&me), threads.len()) {
            (true, 1) => Ok(true),
            (false, _) => Ok(false),
            (true, _) => Err(format!(
                "items of one run on this thread and others: {threads:?}"
            )),
        }
    };

    // 1. Latency preset: the wide map (6144 > 4096) forks, the small one (16) runs inline.
    for x in 0..20 {
        if run_on(&wide, x, 2048, 3)? || !run_on(&small, x, 16, 1)? {
            return Err(format!("latency preset, run {x}: wrong fork decision"));
        }
    }

    // 2. The throughput preset's cutoff (16384), changed while running: both run inline.
    //    On a host whose every worker is already busy with other runs, forking buys nothing.
    let mut inline_more = cfg.clone();
    inline_more.inline_cutoff.max_cost = 16_384;
    ex.reconfigure(inline_more).map_err(|e| e.to_string())?;
    for x in 0..20 {
        if !run_on(&wide, x, 2048, 3)? || !run_on(&small, x, 16, 1)? {
            return Err(format!("cutoff 16384, run {x}: wrong fork decision"));
        }
    }

    // 3. The cutoff switched off: every fan-out forks, even the 16-item one.
    let mut always_fork = cfg;
    always_fork.inline_cutoff.enabled = false;
    ex.reconfigure(always_fork).map_err(|e| e.to_string())?;
    for x in 0..20 {
        if run_on(&wide, x, 2048, 3)? || run_on(&small, x, 16, 1)? {
            return Err(format!("cutoff off, run {x}: a fan-out did not fork"));
        }
    }

    let report = ex.report();
    let executions = report.step("note_thread").map_or(0, |s| s.executions);
    let want = 3 * 20 * (2048 + 16);
    if executions != want || report.telemetry.records_dropped != 0 {
        return Err(format!(
            "{executions} item executions, want {want}; {} records dropped",
            report.telemetry.records_dropped
        ));
    }
    println!(
        "guide_fanout: 120 runs, {executions} items, the same sums whether forked or inline; \
         cutoff 4096: wide forked, small inline; 16384: both inline; off: both forked; \
         {} pooled runners alive",
        report.pool.pool_live
    );
    Ok(())
}
