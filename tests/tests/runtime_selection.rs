//! Performance-based selection through the public API: the automatic per-step cache bypass
//! (`degradation.cache_bypass`). A step whose keys never repeat is bypassed (counted, raised
//! as an event), probes on schedule, and stays bypassed; a step with repeating keys keeps its
//! hits and is never bypassed; a step that starts repeating gets its bypass undone. The
//! decisions count executions, so they are the same under every preset and telemetry level,
//! on the real clock and on a manual one; outputs are the same with selection on and off.

#[path = "common/matrix.rs"]
mod matrix;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, ManualClock, TaskConfig};
use flujo_core::telemetry::Counter;
use flujo_runtime::clock::RuntimeClock;
use flujo_runtime::config::{CacheBypass, OptimizationConfig};
use flujo_runtime::monitor::health::{SelectionChange, SelectionEvent};
use flujo_runtime::Executor;

/// The settings of these tests: windows of 50 lookups, bypass below a 10 % hit rate, one
/// probe in 10 executions, judged by 5.
fn bypass() -> CacheBypass {
    CacheBypass {
        enabled: true,
        window: 50,
        min_hit_rate: 0.10,
        probe_every: 10,
        probes: 5,
        ..CacheBypass::default()
    }
}

fn with_bypass(mut cfg: OptimizationConfig, on: bool) -> OptimizationConfig {
    cfg.result_cache.enabled = true;
    cfg.degradation.cache_bypass = CacheBypass {
        enabled: on,
        ..bypass()
    };
    cfg
}

/// A graph whose one step is cacheable and counts its executions in `calls`.
fn cached(calls: &Arc<AtomicU64>) -> Arc<Graph<u64, ()>> {
    let calls = Arc::clone(calls);
    Arc::new(
        Graph::build(|b| {
            b.task_with(
                "double",
                move |x: u64, _: &mut _| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(x * 2)
                },
                TaskConfig::new().cacheable(StepFingerprint::builder("double", 1).build()),
            )
        })
        .unwrap(),
    )
}

/// What a sequence of inputs did: the outputs, hits and misses (summed from each run's
/// counters), executions of the step, and the flips raised to the callback.
#[derive(Debug, PartialEq)]
struct Seen {
    outputs: Vec<u64>,
    hits: u64,
    misses: u64,
    calls: u64,
    flips: Vec<SelectionChange>,
}

struct Harness {
    ex: Executor<u64, ()>,
    g: Arc<Graph<u64, ()>>,
    calls: Arc<AtomicU64>,
    events: mpsc::Receiver<SelectionEvent>,
}

impl Harness {
    fn new(cfg: OptimizationConfig, clock: RuntimeClock) -> Self {
        let (tx, events) = mpsc::channel();
        let ex = Executor::builder(cfg)
            .clock(clock)
            .on_selection(move |e| tx.send(e.clone()).unwrap())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let g = cached(&calls);
        Self {
            ex,
            g,
            calls,
            events,
        }
    }

    fn feed(&self, inputs: impl IntoIterator<Item = u64>) -> Seen {
        let before = self.calls.load(Ordering::SeqCst);
        let mut seen = Seen {
            outputs: Vec::new(),
            hits: 0,
            misses: 0,
            calls: 0,
            flips: Vec::new(),
        };
        for x in inputs {
            let done = self.ex.run(&self.g, x, ()).unwrap();
            seen.outputs.push(done.output.unwrap());
            seen.hits += done.counters.get(Counter::CacheHits);
            seen.misses += done.counters.get(Counter::CacheMisses);
        }
        seen.calls = self.calls.load(Ordering::SeqCst) - before;
        seen.flips = self.events.try_iter().map(|e| e.change).collect();
        seen
    }
}

/// Every preset at every telemetry level, on the real clock and on a manual one.
fn each(check: impl Fn(&str, OptimizationConfig, RuntimeClock)) {
    for (name, cfg) in matrix::presets_at_levels() {
        check(
            &format!("{name}/real"),
            cfg.clone(),
            RuntimeClock::default(),
        );
        let manual = ManualClock::new(7_000_000_000);
        check(&format!("{name}/manual"), cfg, manual.into());
    }
}

#[test]
fn never_repeating_keys_are_bypassed_and_probed() {
    each(|name, cfg, clock| {
        let h = Harness::new(with_bypass(cfg, true), clock);
        // The first window: 50 misses, judged at its 50th lookup.
        let first = h.feed(0..50);
        assert_eq!(
            (first.hits, first.misses, first.calls),
            (0, 50, 50),
            "{name}"
        );
        assert_eq!(first.flips, [SelectionChange::BypassTaken], "{name}");
        // Bypassed: 200 executions, of which every 10th probes (20 probes, all missing: 4
        // probe windows judged, the bypass holds); the rest count neither hit nor miss.
        let then = h.feed(1000..1200);
        assert_eq!((then.hits, then.misses, then.calls), (0, 20, 200), "{name}");
        assert!(then.flips.is_empty(), "{name}: {:?}", then.flips);
        let report = h.ex.report();
        let row = &report.health.selection.steps[0];
        assert_eq!(row.step, "double", "{name}");
        assert_eq!(
            (
                row.bypassed,
                row.lookups,
                row.hits,
                row.bypassed_runs,
                row.probes
            ),
            (true, 70, 0, 180, 20),
            "{name}"
        );
        assert_eq!((row.taken, row.undone), (1, 0), "{name}");
        let text = report.to_string();
        assert!(text.contains("selection"), "{name}: {text}");
        assert!(
            text.contains("cache BYPASSED, 70 lookups"),
            "{name}: {text}"
        );
        // Outputs are those of the step: a bypassed step runs as if uncached.
        let expected: Vec<u64> = (1000..1200).map(|x| x * 2).collect();
        assert_eq!(then.outputs, expected, "{name}");
    });
}

#[test]
fn repeating_keys_keep_their_hits_and_are_never_bypassed() {
    each(|name, cfg, clock| {
        let h = Harness::new(with_bypass(cfg, true), clock);
        let seen = h.feed((0..500).map(|i| i % 4));
        assert_eq!((seen.hits, seen.misses, seen.calls), (496, 4, 4), "{name}");
        assert!(seen.flips.is_empty(), "{name}");
        let row = &h.ex.report().health.selection.steps[0];
        assert_eq!(
            (
                row.bypassed,
                row.lookups,
                row.hits,
                row.bypassed_runs,
                row.taken
            ),
            (false, 500, 496, 0, 0),
            "{name}"
        );
    });
}

#[test]
fn a_step_that_starts_repeating_gets_its_bypass_undone() {
    each(|name, cfg, clock| {
        let h = Harness::new(with_bypass(cfg, true), clock);
        assert_eq!(
            h.feed(0..50).flips,
            [SelectionChange::BypassTaken],
            "{name}"
        );
        // The same input from now on: the first probe (10th execution) misses and stores
        // it, the next four hit; the fifth probe's window (4 hits in 5) undoes the bypass.
        let back = h.feed(std::iter::repeat_n(1000, 50));
        assert_eq!(back.flips, [SelectionChange::BypassUndone], "{name}");
        assert_eq!((back.hits, back.misses, back.calls), (4, 1, 46), "{name}");
        // Cached again: every execution hits.
        let after = h.feed(std::iter::repeat_n(1000, 20));
        assert_eq!(
            (after.hits, after.misses, after.calls),
            (20, 0, 0),
            "{name}"
        );
        let row = &h.ex.report().health.selection.steps[0];
        assert_eq!(
            (row.bypassed, row.taken, row.undone),
            (false, 1, 1),
            "{name}"
        );
        assert_eq!((row.probes, row.bypassed_runs), (5, 45), "{name}");
    });
}

#[test]
fn results_are_the_same_with_selection_on_and_off() {
    // Unique keys, then repeating ones, then unique again.
    let inputs: Vec<u64> = (0..120)
        .chain((0..200).map(|i| i % 3))
        .chain(500..620)
        .collect();
    each(|name, cfg, clock| {
        let on = Harness::new(with_bypass(cfg.clone(), true), clock.clone());
        let off = Harness::new(with_bypass(cfg, false), clock);
        let (a, b) = (on.feed(inputs.clone()), off.feed(inputs.clone()));
        assert_eq!(a.outputs, b.outputs, "{name}");
        assert!(b.flips.is_empty() && !a.flips.is_empty(), "{name}");
        assert!(off.ex.report().health.selection.steps.is_empty(), "{name}");
    });
}

#[test]
fn flips_carry_the_clock_tick_and_show_in_the_trace() {
    let clock = ManualClock::new(0);
    let h = Harness::new(
        with_bypass(OptimizationConfig::latency(), true),
        clock.clone().into(),
    );
    h.feed(0..49);
    clock.advance(5_000_000_000);
    h.feed([49]);
    let report = h.ex.report();
    let e = &report.health.selection.events[0];
    assert_eq!(
        (e.change, e.step.as_str(), e.at_ns, e.lookups, e.hit_rate),
        (
            SelectionChange::BypassTaken,
            "double",
            5_000_000_000,
            50,
            0.0
        )
    );
    let mut trace = Vec::new();
    h.ex.write_trace(&mut trace).unwrap();
    let trace = String::from_utf8(trace).unwrap();
    assert!(trace.contains("selection bypass_taken double"), "{trace}");
}

#[test]
fn reconfiguring_the_bypass_undoes_it() {
    let h = Harness::new(
        with_bypass(OptimizationConfig::throughput(), true),
        RuntimeClock::default(),
    );
    assert_eq!(h.feed(0..50).flips, [SelectionChange::BypassTaken]);
    let mut cfg = (*h.ex.config()).clone();
    cfg.degradation.cache_bypass.min_hit_rate = 0.2;
    h.ex.reconfigure(cfg).unwrap();
    assert_eq!(h.feed([]).flips, [SelectionChange::BypassUndone]);
    // Judged afresh: a new window of misses takes it again.
    let seen = h.feed(100..150);
    assert_eq!((seen.misses, seen.flips.len()), (50, 1));
    let row = &h.ex.report().health.selection.steps[0];
    assert_eq!((row.taken, row.undone), (2, 1));
}

#[test]
fn the_table_bound_leaves_later_steps_cached() {
    let mut cfg = with_bypass(OptimizationConfig::latency(), true);
    cfg.degradation.cache_bypass.max_steps = 1;
    let h = Harness::new(cfg, RuntimeClock::default());
    let calls = Arc::new(AtomicU64::new(0));
    let other = cached(&calls);
    h.feed(0..50);
    // Another fingerprint's keys: no hit on what `double` stored.
    for x in 10_000..10_060 {
        let done = h.ex.run(&other, x, ()).unwrap();
        assert_eq!(done.counters.get(Counter::CacheMisses), 1, "never bypassed");
    }
    let s = h.ex.report().health.selection;
    assert_eq!((s.steps.len(), s.untracked), (1, 120));
}

#[test]
fn settings_are_validated() {
    let field = |f: &dyn Fn(&mut CacheBypass)| {
        let mut cfg = OptimizationConfig::latency();
        f(&mut cfg.degradation.cache_bypass);
        cfg.validate()
            .err()
            .and_then(|e| e.field().map(str::to_string))
    };
    assert_eq!(field(&|_| {}), None);
    type Edit<'a> = &'a dyn Fn(&mut CacheBypass);
    let bad: [(Edit<'_>, &str); 6] = [
        (&|c| c.window = 0, "window"),
        (&|c| c.min_hit_rate = 0.0, "min_hit_rate"),
        (&|c| c.min_hit_rate = 1.5, "min_hit_rate"),
        (&|c| c.probe_every = 1, "probe_every"),
        (&|c| c.probes = c.window + 1, "probes"),
        (&|c| c.max_steps = 0, "max_steps"),
    ];
    for (f, name) in bad {
        assert_eq!(
            field(f).as_deref(),
            Some(format!("degradation.cache_bypass.{name}").as_str())
        );
    }
}

#[cfg(feature = "serde")]
#[test]
fn the_bypass_reads_from_toml() {
    let cfg = OptimizationConfig::from_toml_str(
        "[degradation.cache_bypass]\nenabled = true\nwindow = 200\nprobe_every = 7\n",
    )
    .unwrap();
    let b = cfg.degradation.cache_bypass;
    assert_eq!((b.enabled, b.window, b.probe_every), (true, 200, 7));
    assert_eq!(b.min_hit_rate, CacheBypass::default().min_hit_rate);
    let err = OptimizationConfig::from_toml_str("[degradation.cache_bypass]\nprobes = 0\n");
    assert!(err.is_err());
}

#[test]
fn counts_are_conserved_under_concurrent_runs() {
    let mut cfg = with_bypass(OptimizationConfig::throughput(), true);
    cfg.workers = 4;
    let h = Harness::new(cfg, RuntimeClock::default());
    let (hits, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (ex, g, hits, misses) = (&h.ex, &h.g, &hits, &misses);
            s.spawn(move || {
                for i in 0..500 {
                    // Unique keys, with one in twenty repeating a few hot keys.
                    let x = if i % 20 == 0 { i % 3 } else { t << 32 | i };
                    let done = ex.run(g, x, ()).unwrap();
                    assert_eq!(done.output, Some(x * 2));
                    hits.fetch_add(done.counters.get(Counter::CacheHits), Ordering::Relaxed);
                    misses.fetch_add(done.counters.get(Counter::CacheMisses), Ordering::Relaxed);
                }
            });
        }
    });
    let s = h.ex.report().health.selection;
    let row = &s.steps[0];
    let (hits, misses) = (hits.into_inner(), misses.into_inner());
    // Every execution either looked up (a hit or a miss) or was bypassed.
    assert_eq!(row.lookups + row.bypassed_runs, 2000);
    assert_eq!((row.lookups, row.hits), (hits + misses, hits));
    assert!(row.taken >= 1, "a hit rate of about 5 %: below 10 %");
    assert_eq!(row.taken - row.undone, u64::from(row.bypassed));
    assert_eq!(s.events.len() as u64, row.taken + row.undone);
}

// The adaptive inline cutoff.

/// A fan-out of `width` branches (each a task, cost 1), each letting `per_branch` pass on
/// `time`, reduced by sum: `x * width + sum(0..width)`.
fn fan(width: u64, time: matrix::Time, per_branch: std::time::Duration) -> Graph<u64, ()> {
    Graph::build(|b| {
        let branches: Vec<_> = (0..width)
            .map(|i| {
                let time = time.clone();
                b.task(&format!("b{i}"), move |x: u64, _| {
                    if !per_branch.is_zero() {
                        time.pass(per_branch);
                    }
                    Ok(x + i)
                })
            })
            .collect();
        b.parallel(
            "fan",
            &branches,
            |a, x| a + x,
            flujo_core::graph::ParallelOptions::new(),
        )
    })
    .unwrap()
}

/// Adaptive from `start`, up to `max`, timing every fan-out, forking weighed at `fork_cost`.
fn adaptive(
    mut cfg: OptimizationConfig,
    start: u32,
    max: u32,
    fork_cost: std::time::Duration,
) -> OptimizationConfig {
    cfg.workers = 2;
    cfg.inline_cutoff.enabled = true;
    cfg.inline_cutoff.max_cost = start;
    cfg.inline_cutoff.adaptive = true;
    cfg.inline_cutoff.adaptive_max = max;
    cfg.inline_cutoff.fork_cost = fork_cost;
    cfg.inline_cutoff.sample_every = 1;
    cfg
}

/// Both clocks for each preset and level: `(name, config, time)`.
fn each_time(check: impl Fn(&str, OptimizationConfig, matrix::Time)) {
    for (name, cfg) in matrix::presets_at_levels() {
        check(&format!("{name}/real"), cfg.clone(), matrix::Time::Real);
        let manual = matrix::Time::Manual(ManualClock::new(0));
        check(&format!("{name}/manual"), cfg, manual);
    }
}

#[test]
fn the_cutoff_rises_for_cheap_branches_up_to_its_bound() {
    each_time(|name, cfg, time| {
        use std::time::Duration;
        // 32 trivial branches (cost 32): forking weighed at 10 ms per task, so each timed
        // fork is too dear: 1 -> 2 -> 4 -> 8, the bound.
        let cfg = adaptive(cfg, 1, 8, Duration::from_millis(10));
        let (tx, rx) = mpsc::channel();
        let ex = Executor::<u64, ()>::builder(cfg)
            .clock(time.clock())
            .on_selection(move |e| tx.send(e.clone()).unwrap())
            .build()
            .unwrap();
        let g = fan(32, time.clone(), Duration::ZERO);
        for x in 0..10 {
            let done = ex.run(&g, x, ()).unwrap();
            assert_eq!(done.output, Some(x * 32 + 496), "{name}");
        }
        let s = ex.report().health.selection;
        assert_eq!(s.inline_cutoff, Some(8), "{name}");
        assert_eq!((s.cutoff_raised, s.cutoff_lowered), (3, 0), "{name}");
        assert_eq!(s.cutoff_samples, 10, "{name}: every fan-out timed");
        let moves: Vec<(u32, u32)> = rx.try_iter().map(|e| e.cutoff).collect();
        assert_eq!(moves, [(1, 2), (2, 4), (4, 8)], "{name}");
        assert!(
            ex.report().to_string().contains("8 now (adaptive)"),
            "{name}"
        );
    });
}

#[test]
fn the_cutoff_falls_for_expensive_branches_down_to_one() {
    each_time(|name, cfg, time| {
        use std::time::Duration;
        // Two branches of 2 ms each (cost 2), inline under the starting cutoff of 64: each
        // probe (forked, timed) finds 2 ms per task, above the 100 us weighed for forking:
        // 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1, where the fan-out forks on its own.
        let cfg = adaptive(cfg, 64, 64, Duration::from_micros(100));
        let (tx, rx) = mpsc::channel();
        let ex = Executor::<u64, ()>::builder(cfg)
            .clock(time.clock())
            .on_selection(move |e| tx.send(e.clone()).unwrap())
            .build()
            .unwrap();
        let g = fan(2, time.clone(), Duration::from_millis(2));
        for x in 0..8 {
            let done = ex.run(&g, x, ()).unwrap();
            assert_eq!(done.output, Some(x * 2 + 1), "{name}");
        }
        let s = ex.report().health.selection;
        assert_eq!(s.inline_cutoff, Some(1), "{name}");
        assert_eq!((s.cutoff_raised, s.cutoff_lowered), (0, 6), "{name}");
        let events: Vec<SelectionEvent> = rx.try_iter().collect();
        assert_eq!(events.len(), 6, "{name}");
        assert!(
            events
                .iter()
                .all(|e| e.change == SelectionChange::CutoffLowered
                    && e.step == "fan"
                    && e.per_task_ns >= 2_000_000),
            "{name}: {events:?}"
        );
    });
}

#[test]
fn adaptive_cutoff_results_equal_the_static_ones() {
    use std::time::Duration;
    let time = matrix::Time::Real;
    let g = fan(6, time, Duration::ZERO);
    let run = |cfg: OptimizationConfig| -> Vec<u64> {
        let ex = Executor::<u64, ()>::new(cfg).unwrap();
        (0..50)
            .map(|x| ex.run(&g, x, ()).unwrap().output.unwrap())
            .collect()
    };
    let on = adaptive(
        OptimizationConfig::latency(),
        1,
        64,
        Duration::from_millis(10),
    );
    let mut off = on.clone();
    off.inline_cutoff.adaptive = false;
    assert_eq!(run(on), run(off));
}

#[test]
fn adaptive_cutoff_settings_are_validated() {
    let mut cfg = adaptive(
        OptimizationConfig::latency(),
        16,
        8,
        std::time::Duration::from_micros(1),
    );
    let field = |c: &OptimizationConfig| c.validate().err().and_then(|e| e.field());
    assert_eq!(field(&cfg), Some("inline_cutoff.adaptive_max"));
    cfg.inline_cutoff.adaptive_max = 16;
    cfg.inline_cutoff.fork_cost = std::time::Duration::ZERO;
    assert_eq!(field(&cfg), Some("inline_cutoff.fork_cost"));
    cfg.inline_cutoff.fork_cost = std::time::Duration::from_micros(1);
    cfg.inline_cutoff.sample_every = 0;
    assert_eq!(field(&cfg), Some("inline_cutoff.sample_every"));
    cfg.inline_cutoff.adaptive = false;
    assert_eq!(field(&cfg), None, "not held to them when off");
}
