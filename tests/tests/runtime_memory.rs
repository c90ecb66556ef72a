//! The memory the engine holds, as the report counts it (`report::MemoryStats`), through the
//! public API: the result cache's weight follows every insert and eviction exactly and never
//! passes its budget, the arenas, runners and queues are what the configuration implies, the
//! trace part grows with sampled runs and falls to zero when the trace is taken, under each
//! preset; and the process readings are in the report.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::arena::RunArena;
use flujo_core::cache::{CacheKey, StepFingerprint};
use flujo_core::graph::{Graph, TaskConfig};
use flujo_core::interp::StepRecord;
use flujo_core::telemetry::Event;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::parts::cache::ResultCache;
use flujo_runtime::report::Report;
use flujo_runtime::{Executor, Finished, Priority};

/// The bytes of one core latency histogram's counts (7,424 of 8 bytes).
const HISTOGRAM_BYTES: u64 = 7_424 * 8;

/// Each preset, by name.
fn presets() -> impl Iterator<Item = (&'static str, OptimizationConfig)> {
    OptimizationConfig::PRESETS
        .into_iter()
        .map(|name| (name, OptimizationConfig::preset(name).unwrap()))
}

/// A graph of two plain steps.
fn two_steps() -> Graph<u64, ()> {
    Graph::build(|b| {
        let a = b.task("a", |x, _| Ok(x + 1));
        let c = b.task("c", |x, _| Ok(x * 2));
        b.sequence("s", &[a, c])
    })
    .unwrap()
}

#[test]
fn the_cache_weight_follows_inserts_and_evictions_exactly_and_stays_in_budget() {
    const BUDGET: usize = 10_000;
    let cache: ResultCache<Vec<u8>> = ResultCache::builder(64, BUDGET)
        .weigher(|payload: &Vec<u8>| payload.len())
        .shards(1)
        .build();
    let step = StepFingerprint::builder("blob", 1).build();
    let key = |i: u64| CacheKey::new(&step, &i);
    let empty = cache.memory();
    assert_eq!((empty.entries, empty.weight_bytes), (0, 0));
    assert!(empty.slot_bytes > 0);
    // The keys stored, with their weights, as the cache should hold them.
    let mut model: Vec<(u64, usize)> = Vec::new();
    let mut evicted_any = false;
    for i in 0..120u64 {
        // Payloads grow: 50, 60, 70, ... bytes, past the budget at the end.
        let weight = 50 + 100 * i as usize;
        let before = cache.memory();
        let evictions = cache.stats().evictions;
        match cache.insert(key(i), vec![7; weight]) {
            Ok(()) => assert!(weight <= BUDGET),
            Err(back) => {
                // Too heavy for the shard: handed back whole, nothing else changes.
                assert!(weight > BUDGET);
                assert_eq!(back.len(), weight);
                assert_eq!(cache.memory(), before);
                continue;
            }
        }
        let after = cache.memory();
        let still: Vec<(u64, usize)> = model
            .iter()
            .copied()
            .filter(|&(k, _)| cache.get(&key(k)).is_some())
            .collect();
        let gone: usize =
            model.iter().map(|e| e.1).sum::<usize>() - still.iter().map(|e| e.1).sum::<usize>();
        evicted_any |= gone > 0;
        model = still;
        model.push((i, weight));
        // Exactly: what was there, plus the new payload, minus what was evicted for it.
        assert_eq!(
            after.weight_bytes,
            before.weight_bytes + weight - gone,
            "insert {i}"
        );
        assert_eq!(after.weight_bytes, model.iter().map(|e| e.1).sum::<usize>());
        assert_eq!(after.entries, model.len());
        assert!(
            after.weight_bytes <= BUDGET,
            "{} over the budget",
            after.weight_bytes
        );
        assert_eq!(
            cache.stats().evictions - evictions,
            (before.entries + 1 - after.entries) as u64
        );
    }
    assert!(evicted_any, "the payloads outgrew the budget");
    // A removal takes exactly its weight off.
    let (k, w) = model[0];
    let before = cache.memory();
    assert_eq!(cache.remove(&key(k)).map(|v| v.len()), Some(w));
    assert_eq!(cache.memory().weight_bytes, before.weight_bytes - w);
    // Shrinking the budget evicts down to it; clearing empties the weight, not the slots.
    cache.set_capacity(64, 2_000);
    assert!(cache.memory().weight_bytes <= 2_000);
    cache.clear();
    let cleared = cache.memory();
    assert_eq!((cleared.entries, cleared.weight_bytes), (0, 0));
    assert!(cleared.slot_bytes >= empty.slot_bytes);
}

#[test]
fn the_report_counts_the_executor_cache_by_its_weigher_under_each_preset() {
    const BUDGET: usize = 20_000;
    for (name, mut cfg) in presets() {
        cfg.result_cache.enabled = true;
        (cfg.result_cache.max_entries, cfg.result_cache.max_bytes) = (1_000, BUDGET);
        cfg.result_cache.shards = 1;
        // Each output weighs its value in bytes.
        let ex = Executor::<u64, ()>::builder(cfg)
            .cache_weigher(|out: &u64| *out as usize)
            .build()
            .unwrap();
        let g = Graph::build(|b| {
            let fp = StepFingerprint::builder("scale", 1).build();
            b.task_with(
                "scale",
                |x: u64, _: &mut _| Ok(x * 100),
                TaskConfig::new().cacheable(fp),
            )
        })
        .unwrap();
        // No hits (every input is new), so CLOCK evicts the oldest first: a FIFO model.
        let mut model: VecDeque<usize> = VecDeque::new();
        for x in 1..=60u64 {
            let weight = (x * 100) as usize;
            assert_eq!(ex.run(&g, x, ()).unwrap().output, Some(x * 100));
            while model.iter().sum::<usize>() + weight > BUDGET {
                model.pop_front();
            }
            model.push_back(weight);
            let m = ex.report().memory;
            assert_eq!(
                m.cache_weight_bytes,
                model.iter().sum::<usize>() as u64,
                "{name} {x}"
            );
            assert_eq!(m.cache_entries, model.len() as u64, "{name} {x}");
            assert!(m.cache_weight_bytes <= BUDGET as u64, "{name}");
            assert!(m.cache_slot_bytes > 0);
            assert_eq!(m.cache_bytes(), m.cache_weight_bytes + m.cache_slot_bytes);
        }
    }
}

/// The chunk memory of a runner's record arena under `cfg`.
fn record_arena_bytes(cfg: &OptimizationConfig) -> u64 {
    let bytes = cfg.max_records * size_of::<StepRecord>();
    let arena = RunArena::with_capacity_and_limit(bytes, bytes).unwrap();
    arena.stats().chunk_capacity_bytes as u64
}

#[test]
fn arenas_and_runners_are_what_the_config_implies_under_each_preset() {
    let g = two_steps();
    for (name, cfg) in presets() {
        let figures = |level: TelemetryLevel| {
            let mut cfg = cfg.clone();
            cfg.telemetry.level = level;
            cfg.telemetry.run_sample_period = 1 << 20; // no run sampled: no scratch
            let ex = Executor::<u64, ()>::new(cfg).unwrap();
            let idle = ex.report().memory;
            assert_eq!(
                (idle.arena_bytes, idle.runner_bytes),
                (0, 0),
                "{name}: no runner yet"
            );
            ex.run(&g, 1, ()).unwrap();
            let report = ex.report();
            assert_eq!(
                report.pool.pool_live, 1,
                "{name}: one step chain, one runner"
            );
            report.memory
        };
        let counters = figures(TelemetryLevel::Counters);
        let histograms = figures(TelemetryLevel::Histograms);
        assert_eq!(counters.arena_bytes, record_arena_bytes(&cfg), "{name}");
        assert_eq!(histograms.arena_bytes, counters.arena_bytes, "{name}");
        assert!(counters.runner_bytes > 0);
        // From level `histograms` up a runner has an event ring: exactly its slots more.
        let ring = (cfg.telemetry.ring_capacity * size_of::<Event>()) as u64;
        assert_eq!(
            histograms.runner_bytes - counters.runner_bytes,
            ring,
            "{name}"
        );
    }
}

/// Rounds a queue capacity to its ring's slots.
fn ring_slots(capacity: [usize; 3]) -> u64 {
    capacity
        .iter()
        .map(|&c| c.max(2).next_power_of_two() as u64)
        .sum()
}

#[test]
fn queue_bytes_follow_the_configured_capacities_under_each_preset() {
    for (name, cfg) in presets() {
        let bytes = |capacity: [usize; 3]| {
            let mut cfg = cfg.clone();
            cfg.queues.capacity = capacity;
            Executor::<u64, ()>::new(cfg)
                .unwrap()
                .report()
                .memory
                .queue_bytes
        };
        // bytes = fixed + slots * slot size: two configurations fix both, a third is predicted.
        let (small, large) = ([1, 1, 1], [5, 3, 9]);
        let (a, b) = (bytes(small), bytes(large));
        let slots = ring_slots(large) - ring_slots(small);
        assert_eq!((b - a) % slots, 0, "{name}");
        let slot = (b - a) / slots;
        assert!(
            slot >= (size_of::<usize>() + size_of::<u64>()) as u64,
            "{name}: slot {slot}"
        );
        let fixed = a - ring_slots(small) * slot;
        let own = cfg.queues.capacity;
        assert_eq!(bytes(own), fixed + ring_slots(own) * slot, "{name}");
    }
}

#[test]
fn queued_items_are_counted_while_the_worker_is_busy_under_each_preset() {
    for (name, mut cfg) in presets() {
        cfg.workers = 1;
        cfg.adaptive_concurrency.enabled = false;
        cfg.adaptive_concurrency.max_limit = cfg.adaptive_concurrency.max_limit.max(16);
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        let (started, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let g = {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            Arc::new(
                Graph::build(move |b| {
                    b.task("hold", move |x: u64, _: &mut _| {
                        if x == 0 {
                            started.store(true, Ordering::SeqCst);
                            while !release.load(Ordering::SeqCst) {
                                thread::sleep(Duration::from_millis(1));
                            }
                        }
                        Ok(x)
                    })
                })
                .unwrap(),
            )
        };
        let queue_bytes = ex.report().memory.queue_bytes;
        let mut tickets = vec![ex.submit(&g, 0, (), Priority::Normal).ok().unwrap()];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "{name}: the first run never started"
            );
            thread::yield_now();
        }
        for x in 1..=5 {
            tickets.push(ex.submit(&g, x, (), Priority::Low).ok().unwrap());
        }
        let busy = ex.report().memory;
        assert_eq!(busy.queued_items, 5, "{name}");
        assert_eq!(
            busy.queue_bytes, queue_bytes,
            "{name}: slots are allocated up front"
        );
        release.store(true, Ordering::SeqCst);
        for (x, ticket) in tickets.into_iter().enumerate() {
            match ticket.wait().unwrap() {
                Finished::Ran(done) => assert_eq!(done.output, Some(x as u64)),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(ex.report().memory.queued_items, 0, "{name}");
    }
}

#[test]
fn the_trace_part_grows_with_sampled_runs_and_falls_to_zero_when_taken_under_each_preset() {
    let g = two_steps();
    for (name, mut cfg) in presets() {
        cfg.telemetry.level = TelemetryLevel::Events;
        cfg.telemetry.run_sample_period = 1;
        let ex = Executor::<u64, ()>::new(cfg.clone()).unwrap();
        assert_eq!(ex.report().memory.trace_bytes, 0, "{name}");
        let mut last = 0;
        for round in 0..3 {
            for x in 0..10 {
                ex.run(&g, x, ()).unwrap();
            }
            let now = ex.report().memory.trace_bytes;
            assert!(now > last, "{name}: round {round}: {now} after {last}");
            last = now;
        }
        // Writing the trace keeps it; taking it frees it.
        ex.write_trace(std::io::sink()).unwrap();
        assert_eq!(ex.report().memory.trace_bytes, last, "{name}");
        let mut json = Vec::new();
        ex.take_trace(&mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(
            json.matches(r#""ph":"X""#).count(),
            3 * 10 * 2,
            "{name}: every span"
        );
        assert_eq!(ex.report().memory.trace_bytes, 0, "{name}");
        // The next take holds only what came after.
        ex.run(&g, 1, ()).unwrap();
        assert!(ex.report().memory.trace_bytes > 0, "{name}");
        let mut json = Vec::new();
        ex.take_trace(&mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert_eq!(json.matches(r#""ph":"X""#).count(), 2, "{name}");

        // Below level `events` nothing is kept for the trace.
        cfg.telemetry.level = TelemetryLevel::Histograms;
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        for x in 0..10 {
            ex.run(&g, x, ()).unwrap();
        }
        assert_eq!(ex.report().memory.trace_bytes, 0, "{name}");
    }
}

#[test]
fn a_new_timed_step_adds_its_histogram_to_the_telemetry_part() {
    for (name, mut cfg) in presets() {
        cfg.telemetry.level = TelemetryLevel::Histograms;
        cfg.telemetry.run_sample_period = 1;
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        let fresh = ex.report().memory.telemetry_bytes;
        // The collected and the retired builders each hold a run-latency histogram.
        assert!(fresh >= 2 * HISTOGRAM_BYTES, "{name}: {fresh}");
        let a = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x))).unwrap();
        ex.run(&a, 1, ()).unwrap();
        let one = ex.report().memory.telemetry_bytes;
        let b = Graph::<u64, ()>::build(|b| b.task("b", |x, _| Ok(x))).unwrap();
        ex.run(&b, 1, ()).unwrap();
        let two = ex.report().memory.telemetry_bytes;
        assert!(two >= one + HISTOGRAM_BYTES, "{name}: {one} -> {two}");
    }
}

/// The parts of a report, by name.
fn parts(report: &Report) -> Vec<(&'static str, u64)> {
    report.memory.parts().to_vec()
}

#[test]
fn the_report_shows_the_parts_their_total_and_the_process() {
    let ex = Executor::<u64, ()>::new(OptimizationConfig::latency()).unwrap();
    ex.run(&two_steps(), 3, ()).unwrap();
    let first = ex.report();
    let second = ex.report();
    let m = &second.memory;
    let names: Vec<&str> = parts(&second).iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        ["cache", "arenas", "runners", "queues", "trace", "telemetry"]
    );
    assert_eq!(m.total(), parts(&second).iter().map(|p| p.1).sum::<u64>());
    assert!(m.total() > 0);
    let table = second.to_string();
    assert!(table.contains("memory (bytes the engine holds)"), "{table}");
    assert!(
        table.contains(&format!("total                   {}", m.total())),
        "{table}"
    );
    assert!(table.contains("process\n"), "{table}");
    if cfg!(target_os = "linux") {
        let p = &m.process;
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.cpu_time_ns.unwrap() >= first.memory.process.cpu_time_ns.unwrap());
        // The first report of an executor has one reading; the next has an interval.
        assert_eq!(first.memory.process.cpu_cores_busy, None);
        assert!(p.cpu_cores_busy.is_some() && p.interval_ns.unwrap() > 0);
        assert!(p.cores_available >= 1);
    }
    let json = second.to_json_string();
    assert!(json.contains(r#""memory":{"cache_entries":"#), "{json}");
    assert_eq!(Report::from_json_str(&json).unwrap(), second);
}
