//! Tests of the configuration: presets, validation rules (one case per rule), the switches,
//! the run-time cell, and (feature `serde`) TOML and the `docs/config/` templates.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

fn presets() -> [OptimizationConfig; 3] {
    [
        OptimizationConfig::latency(),
        OptimizationConfig::throughput(),
        OptimizationConfig::low_memory(),
    ]
}

#[test]
fn presets_validate_and_differ() {
    let all = presets();
    for cfg in &all {
        assert_eq!(cfg.validate(), Ok(()), "{cfg:?}");
        for o in Optimization::ALL {
            assert!(cfg.is_on(o), "{o} is off in a preset");
        }
    }
    assert_ne!(all[0], all[1]);
    assert_ne!(all[0], all[2]);
    assert_ne!(all[1], all[2]);
    assert_eq!(OptimizationConfig::default(), OptimizationConfig::latency());
}

#[test]
fn preset_by_name() {
    for (name, cfg) in OptimizationConfig::PRESETS.iter().zip(presets()) {
        assert_eq!(OptimizationConfig::preset(name), Ok(cfg));
    }
    let err = OptimizationConfig::preset("Latency").unwrap_err();
    assert_eq!(
        err,
        ConfigError::UnknownPreset {
            name: "Latency".to_owned()
        }
    );
    assert_eq!(err.field(), None);
    assert_eq!(
        err.to_string(),
        "unknown preset \"Latency\": valid presets are latency, throughput, low_memory"
    );
    assert!(OptimizationConfig::preset("").is_err());
}

#[test]
fn nested_defaults_are_the_default_presets() {
    let d = OptimizationConfig::default();
    assert_eq!(InlineCutoff::default(), d.inline_cutoff);
    assert_eq!(CacheConfig::default(), d.result_cache);
    assert_eq!(TelemetryConfig::default(), d.telemetry);
    assert_eq!(AdmissionConfig::default(), d.adaptive_concurrency);
    assert_eq!(QueueConfig::default(), d.queues);
}

type Edit = fn(&mut OptimizationConfig);

/// One case per rule: an edit of a valid preset that breaks it, the field the error must name,
/// and a fragment of the rule it must state.
const INVALID: &[(Edit, &str, &str)] = &[
    (
        |c| c.inline_cutoff.max_cost = 0,
        "inline_cutoff.max_cost",
        "must be > 0 when enabled",
    ),
    (
        |c| c.result_cache.max_entries = 0,
        "result_cache.max_entries",
        "must be > 0 when enabled",
    ),
    (
        |c| c.result_cache.max_bytes = 0,
        "result_cache.max_bytes",
        "must be > 0 when enabled",
    ),
    (
        |c| c.result_cache.max_entries = MAX_SIZE + 1,
        "result_cache.max_entries",
        "must be <= 9223372036854775807",
    ),
    (
        |c| c.result_cache.max_bytes = usize::MAX,
        "result_cache.max_bytes",
        "must be <= 9223372036854775807",
    ),
    (
        |c| c.result_cache.ttl = Some(Duration::ZERO),
        "result_cache.ttl",
        "must be > 0 when set (\"none\": no expiry) (is 0s)",
    ),
    (
        |c| c.result_cache.flight_timeout = Some(Duration::ZERO),
        "result_cache.flight_timeout",
        "must be > 0 when set",
    ),
    (
        |c| c.result_cache.shards = 3,
        "result_cache.shards",
        "shards must be a power of two",
    ),
    (
        |c| c.result_cache.shards = 0,
        "result_cache.shards",
        "shards must be a power of two",
    ),
    (
        |c| c.result_cache.shards = 2048,
        "result_cache.shards",
        "in 1..=1024",
    ),
    (
        |c| {
            c.result_cache.max_entries = 8;
            c.result_cache.shards = 16;
        },
        "result_cache.shards",
        "must be <= max_entries",
    ),
    (
        |c| c.telemetry.run_sample_period = 0,
        "telemetry.run_sample_period",
        "must be >= 1",
    ),
    (
        |c| {
            c.telemetry.level = TelemetryLevel::Events;
            c.telemetry.ring_capacity = 1000;
        },
        "telemetry.ring_capacity",
        "must be a power of two in 16..=1048576 when level is histograms or events",
    ),
    (
        |c| {
            // The ring is built at `histograms` too, so its capacity is checked there.
            c.telemetry.level = TelemetryLevel::Histograms;
            c.telemetry.ring_capacity = 0;
        },
        "telemetry.ring_capacity",
        "power of two in 16..=",
    ),
    (
        |c| {
            c.telemetry.level = TelemetryLevel::Off;
            c.telemetry.ring_capacity = usize::MAX;
        },
        "telemetry.ring_capacity",
        "must be <= 9223372036854775807",
    ),
    (
        |c| {
            c.telemetry.level = TelemetryLevel::Events;
            c.telemetry.ring_capacity = 8;
        },
        "telemetry.ring_capacity",
        "power of two in 16..=",
    ),
    (
        |c| {
            c.telemetry.level = TelemetryLevel::Events;
            c.telemetry.ring_capacity = 1 << 21;
        },
        "telemetry.ring_capacity",
        "power of two in 16..=",
    ),
    (
        |c| c.adaptive_concurrency.min_limit = 0,
        "adaptive_concurrency.min_limit",
        "must be >= 1",
    ),
    (
        |c| {
            c.adaptive_concurrency.min_limit = 10;
            c.adaptive_concurrency.max_limit = 5;
        },
        "adaptive_concurrency.max_limit",
        "min_limit <= initial_limit <= max_limit",
    ),
    (
        |c| {
            c.adaptive_concurrency.min_limit = 10;
            c.adaptive_concurrency.initial_limit = 9;
        },
        "adaptive_concurrency.initial_limit",
        "min_limit <= initial_limit <= max_limit",
    ),
    (
        |c| c.adaptive_concurrency.initial_limit = c.adaptive_concurrency.max_limit + 1,
        "adaptive_concurrency.initial_limit",
        "min_limit <= initial_limit <= max_limit",
    ),
    (
        |c| c.adaptive_concurrency.aimd_increase = 0,
        "adaptive_concurrency.aimd_increase",
        "`aimd_increase` must be at least 1, got 0",
    ),
    (
        |c| c.adaptive_concurrency.aimd_backoff_ratio = 1.0,
        "adaptive_concurrency.aimd_backoff_ratio",
        "must be in (0, 1), got 1",
    ),
    (
        |c| c.adaptive_concurrency.aimd_backoff_ratio = 0.0,
        "adaptive_concurrency.aimd_backoff_ratio",
        "must be in (0, 1), got 0",
    ),
    (
        |c| c.adaptive_concurrency.gradient_smoothing = 0.0,
        "adaptive_concurrency.gradient_smoothing",
        "must be in (0, 1], got 0",
    ),
    (
        |c| c.adaptive_concurrency.gradient_smoothing = 1.01,
        "adaptive_concurrency.gradient_smoothing",
        "must be in (0, 1], got 1.01",
    ),
    (
        |c| c.adaptive_concurrency.gradient_tolerance = 0.99,
        "adaptive_concurrency.gradient_tolerance",
        "must be a finite number >= 1, got 0.99",
    ),
    (
        |c| c.adaptive_concurrency.gradient_tolerance = f64::INFINITY,
        "adaptive_concurrency.gradient_tolerance",
        "must be a finite number >= 1, got inf",
    ),
    (
        |c| c.adaptive_concurrency.aimd_backoff_ratio = f64::NAN,
        "adaptive_concurrency.aimd_backoff_ratio",
        "must be in (0, 1), got NaN",
    ),
    (
        |c| c.queues.capacity[0] = 0,
        "queues.capacity[0]",
        "high-priority",
    ),
    (
        |c| c.queues.capacity[1] = 0,
        "queues.capacity[1]",
        "normal-priority",
    ),
    (
        |c| c.queues.capacity[2] = 1 << 25,
        "queues.capacity[2]",
        "low-priority",
    ),
    (|c| c.workers = 1025, "workers", "must be <= 1024"),
    (
        |c| c.max_records = 0,
        "max_records",
        "must be in 1..=1048576",
    ),
    (
        |c| c.max_records = MAX_RECORDS + 1,
        "max_records",
        "must be in 1..=1048576 (is 1048577)",
    ),
];

#[test]
fn each_invalid_field_is_named() {
    for base in presets() {
        for (i, &(edit, field, rule)) in INVALID.iter().enumerate() {
            let mut cfg = base.clone();
            edit(&mut cfg);
            let err = cfg
                .validate()
                .expect_err(&format!("case {i} ({field}) validated"));
            assert_eq!(err.field(), Some(field), "case {i}: {err}");
            let ConfigError::Invalid { rule: got, .. } = &err else {
                panic!("case {i}: not Invalid: {err:?}");
            };
            assert!(got.contains(rule), "case {i}: {got:?} lacks {rule:?}");
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("invalid config: {field}: ")),
                "{shown}"
            );
            // The error is also a std error whose text is the Display one.
            let dynamic: &dyn std::error::Error = &err;
            assert_eq!(dynamic.to_string(), shown);
        }
    }
}

/// Rules that apply only when their group is enabled (or events are recorded) do not fire
/// otherwise: a switched-off group may hold any sizes.
#[test]
fn disabled_groups_are_not_held_to_their_sizes() {
    let mut cfg = OptimizationConfig::latency();
    cfg.inline_cutoff = InlineCutoff {
        enabled: false,
        max_cost: 0,
        ..InlineCutoff::default()
    };
    cfg.result_cache.enabled = false;
    cfg.result_cache.max_entries = 0;
    cfg.result_cache.max_bytes = 0;
    cfg.telemetry.level = TelemetryLevel::Counters; // no ring is built below `histograms`
    cfg.telemetry.ring_capacity = 0;
    assert_eq!(cfg.validate(), Ok(()));
    // The structural shard rule holds even when the cache is off.
    cfg.result_cache.shards = 6;
    assert_eq!(
        cfg.validate().unwrap_err().field(),
        Some("result_cache.shards")
    );
}

#[test]
fn bounds_are_inclusive() {
    let mut cfg = OptimizationConfig::low_memory();
    cfg.workers = MAX_WORKERS;
    cfg.result_cache.shards = 256;
    cfg.result_cache.max_entries = 256;
    cfg.result_cache.ttl = Some(Duration::MAX);
    cfg.result_cache.flight_timeout = Some(Duration::from_nanos(1));
    cfg.max_records = MAX_RECORDS;
    cfg.queues.capacity = [1, MAX_QUEUE_CAPACITY, 1];
    cfg.telemetry.level = TelemetryLevel::Events;
    cfg.telemetry.ring_capacity = MIN_RING_CAPACITY;
    cfg.adaptive_concurrency.min_limit = 7;
    cfg.adaptive_concurrency.initial_limit = 7;
    cfg.adaptive_concurrency.max_limit = 7;
    cfg.adaptive_concurrency.aimd_increase = 1;
    cfg.adaptive_concurrency.gradient_smoothing = 1.0;
    cfg.adaptive_concurrency.gradient_tolerance = 1.0;
    assert_eq!(cfg.validate(), Ok(()));
    // The open ends of the ratios: anything strictly inside is accepted.
    cfg.adaptive_concurrency.aimd_backoff_ratio = f64::MIN_POSITIVE;
    cfg.adaptive_concurrency.gradient_smoothing = f64::MIN_POSITIVE;
    assert_eq!(cfg.validate(), Ok(()));
    cfg.adaptive_concurrency.aimd_backoff_ratio = 1.0 - f64::EPSILON;
    cfg.adaptive_concurrency.aimd_increase = u32::MAX;
    cfg.adaptive_concurrency.gradient_tolerance = f64::MAX;
    assert_eq!(cfg.validate(), Ok(()));
    cfg.telemetry.ring_capacity = MAX_RING_CAPACITY;
    cfg.result_cache.shards = MAX_CACHE_SHARDS;
    cfg.result_cache.max_entries = MAX_CACHE_SHARDS;
    assert_eq!(cfg.validate(), Ok(()));
    cfg.result_cache.max_entries = MAX_SIZE;
    cfg.result_cache.max_bytes = MAX_SIZE;
    cfg.telemetry.level = TelemetryLevel::Histograms;
    assert_eq!(cfg.validate(), Ok(()));
    cfg.telemetry.level = TelemetryLevel::Counters;
    cfg.telemetry.ring_capacity = MAX_SIZE;
    assert_eq!(cfg.validate(), Ok(()));
}

/// Validation and use agree on the event ring: every level that builds one checks its
/// capacity, and the levels below do not.
#[test]
fn ring_capacity_is_checked_exactly_where_a_ring_is_built() {
    for level in [
        TelemetryLevel::Off,
        TelemetryLevel::Counters,
        TelemetryLevel::Histograms,
        TelemetryLevel::Events,
    ] {
        let mut cfg = OptimizationConfig::latency();
        cfg.telemetry.level = level;
        cfg.telemetry.ring_capacity = 3;
        let builds = level >= TelemetryLevel::Histograms;
        assert_eq!(cfg.telemetry.builds_ring(), builds, "{level:?}");
        assert_eq!(cfg.validate().is_err(), builds, "{level:?}");
    }
}

/// The configuration as one debug string per field group, in declaration order.
fn groups(c: &OptimizationConfig) -> [String; 11] {
    [
        format!("{:?}", c.pooling),
        format!("{:?}", c.copy_on_write),
        format!("{:?}", c.fast_paths),
        format!("{:?}", c.inline_cutoff),
        format!("{:?}", c.result_cache),
        format!("{:?}", c.telemetry),
        format!("{:?}", c.breakers),
        format!("{:?}", c.adaptive_concurrency),
        format!("{:?}", c.queues),
        format!("{:?}", c.workers),
        format!("{:?}", c.max_records),
    ]
}

#[test]
fn with_off_changes_exactly_one_group() {
    for base in presets() {
        for (index, o) in Optimization::ALL.into_iter().enumerate() {
            let off = base.clone().with_off(o);
            let changed: Vec<usize> = groups(&base)
                .iter()
                .zip(groups(&off))
                .enumerate()
                .filter(|(_, (a, b))| **a != *b)
                .map(|(i, _)| i)
                .collect();
            // ALL is in field order and the switches are the first 8 groups.
            assert_eq!(changed, [index], "{o}");
            assert!(!off.is_on(o));
            for other in Optimization::ALL.into_iter().filter(|&x| x != o) {
                assert!(off.is_on(other), "turning {o} off turned {other} off");
            }
            assert_eq!(off.validate(), Ok(()), "{o}");
            assert_eq!(off.clone().with_off(o), off, "{o}: not idempotent");
        }
    }
    // Within a group, only the switch moves.
    let base = OptimizationConfig::throughput();
    let off = base.clone().with_off(Optimization::ResultCache);
    assert_eq!(
        off.result_cache,
        CacheConfig {
            enabled: false,
            ..base.result_cache
        }
    );
    let off = base.clone().with_off(Optimization::Telemetry);
    assert_eq!(off.telemetry.level, TelemetryLevel::Off);
    assert_eq!(off.telemetry.ring_capacity, base.telemetry.ring_capacity);
}

#[test]
fn optimization_names() {
    let names: Vec<&str> = Optimization::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(
        names,
        [
            "pooling",
            "copy_on_write",
            "fast_paths",
            "inline_cutoff",
            "result_cache",
            "telemetry",
            "breakers",
            "adaptive_concurrency"
        ]
    );
    for o in Optimization::ALL {
        assert_eq!(Optimization::from_name(o.name()), Some(o));
        assert_eq!(o.to_string(), o.name());
        assert_eq!(o.changes_results(), o == Optimization::Breakers);
    }
    assert_eq!(Optimization::from_name("Pooling"), None);
}

#[test]
fn cell_store_validates_and_counts_generations() {
    let cell = ConfigCell::new(OptimizationConfig::low_memory()).unwrap();
    assert_eq!(cell.load_with_generation().1, 0);
    assert_eq!(*cell.load(), OptimizationConfig::low_memory());
    assert_eq!(cell.store(OptimizationConfig::throughput()), Ok(1));
    let mut bad = OptimizationConfig::latency();
    bad.max_records = 0;
    let err = cell.store(bad.clone()).unwrap_err();
    assert_eq!(err.field(), Some("max_records"));
    assert_eq!(cell.update(|_| bad.clone()).unwrap_err(), err);
    assert_eq!(cell.load_with_generation(), (cell.load(), 1));
    assert_eq!(*cell.load(), OptimizationConfig::throughput());
    assert_eq!(ConfigCell::new(bad).unwrap_err(), err);
    let fresh = ConfigCell::default();
    assert_eq!(*fresh.load(), OptimizationConfig::default());
    assert_eq!(fresh.generation(), 0);
}

/// One writer stores a known sequence while three readers load in a loop: every snapshot a
/// reader sees is exactly the one stored at the generation read with it (so one of the stored
/// configurations, whole), and generations never go back.
#[test]
fn cell_readers_see_whole_configs() {
    let stores = if cfg!(miri) { 20 } else { 2_000 };
    let mut kinds: Vec<OptimizationConfig> = presets().to_vec();
    for o in Optimization::ALL {
        kinds.push(OptimizationConfig::throughput().with_off(o));
    }
    // seq[g] is the configuration of generation g.
    let seq: Vec<OptimizationConfig> = (0..=stores)
        .map(|g| kinds[g % kinds.len()].clone())
        .collect();
    let cell = ConfigCell::new(seq[0].clone()).unwrap();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut last = 0;
                    let mut loads = 0_usize;
                    loop {
                        // Read `done` first: a load after the writer finished sees the last.
                        let finished = done.load(Ordering::Acquire);
                        let (cfg, generation) = cell.load_with_generation();
                        assert!(generation >= last, "generation went back");
                        assert_eq!(*cfg, seq[generation as usize]);
                        assert!(kinds.contains(&*cell.load()));
                        last = generation;
                        loads += 1;
                        if finished {
                            assert_eq!(generation as usize, stores);
                            return loads;
                        }
                    }
                })
            })
            .collect();
        for (g, cfg) in seq.iter().enumerate().skip(1) {
            assert_eq!(cell.store(cfg.clone()), Ok(g as u64));
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() >= 1);
        }
    });
    assert_eq!(cell.generation(), stores as u64);
    assert_eq!(*cell.load(), seq[stores]);
}

/// Concurrent read-modify-writes through `update` lose no change.
#[test]
fn cell_updates_do_not_lose_changes() {
    let per_thread = if cfg!(miri) { 10 } else { 200 };
    let cell = ConfigCell::new(OptimizationConfig::latency()).unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let generation = cell
                        .update(|c| OptimizationConfig {
                            max_records: c.max_records + 1,
                            ..c.clone()
                        })
                        .unwrap();
                    assert!(generation >= 1);
                }
            });
        }
    });
    let (cfg, generation) = cell.load_with_generation();
    assert_eq!(generation, 2 * per_thread);
    assert_eq!(cfg.max_records, 1024 + 2 * per_thread as usize);
}

#[cfg(feature = "serde")]
mod toml_tests {
    use super::*;

    const TEMPLATES: [(&str, &str); 3] = [
        ("latency", include_str!("../../../docs/config/latency.toml")),
        (
            "throughput",
            include_str!("../../../docs/config/throughput.toml"),
        ),
        (
            "low_memory",
            include_str!("../../../docs/config/low_memory.toml"),
        ),
    ];

    #[test]
    fn templates_equal_their_presets() {
        for (name, text) in TEMPLATES {
            assert_eq!(
                OptimizationConfig::from_toml_str(text),
                OptimizationConfig::preset(name),
                "docs/config/{name}.toml drifted from its preset"
            );
        }
    }

    /// Every field of a template carries a comment (the line before it, or on its line), and
    /// every field of the configuration is in each template.
    #[test]
    fn templates_comment_every_field() {
        // Every field is written (an unset duration as "none"), so this names all of them.
        let full = OptimizationConfig::low_memory().to_toml_string().unwrap();
        let keys: Vec<&str> = full
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .collect();
        assert_eq!(keys.len(), 58, "{full}");
        for (name, text) in TEMPLATES {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                    continue;
                }
                let commented =
                    line.contains('#') || (i > 0 && lines[i - 1].trim().starts_with('#'));
                assert!(commented, "{name}.toml: {line:?} has no comment");
            }
            for key in &keys {
                let present = lines.iter().any(|l| {
                    let l = l.trim().trim_start_matches("# ");
                    l.starts_with(&format!("{key} = "))
                });
                assert!(present, "{name}.toml lacks {key}");
            }
        }
    }

    /// The keys of a TOML text, qualified by their table (`monitor.detector.warmup` for
    /// `warmup` under `[monitor.detector]`), each with its value as written, in order.
    /// Comment lines are skipped, so the templates' commented-out examples do not count.
    fn qualified_keys(text: &str) -> Vec<(String, &str)> {
        let mut table = "";
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                table = line.trim_matches(|c: char| c == '[' || c == ']');
                continue;
            }
            if let Some((key, value)) = line.split_once(" = ") {
                let key = if table.is_empty() {
                    key.to_string()
                } else {
                    format!("{table}.{key}")
                };
                keys.push((key, value));
            }
        }
        keys
    }

    /// docs/configuration.md's "Every setting" table has one row per TOML key, qualified by
    /// its table, in the order `to_toml_string` writes them, and each preset's cell holds
    /// that preset's template value: the table cannot lose a setting or drift from a preset.
    #[test]
    fn the_configuration_doc_has_a_row_for_every_setting() {
        const DOC: &str = include_str!("../../../docs/configuration.md");
        // The columns: setting | unit | range | latency | throughput | low_memory | trade-off.
        // Split on '|', a row has an empty piece before the first column and after the last.
        const PIECES: usize = 9;
        const FIRST_PRESET: usize = 4;

        let (_, section) = DOC
            .split_once("\n## Every setting\n")
            .expect("docs/configuration.md has a \"## Every setting\" section");
        let section = section.split_once("\n## ").map_or(section, |(s, _)| s);
        // Every field is written (an unset duration as "none"), so this names all of them.
        let full = OptimizationConfig::low_memory().to_toml_string().unwrap();
        let keys: Vec<String> = qualified_keys(&full).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 58, "{full}");
        for key in &keys {
            let row = format!("| `{key}` |");
            assert!(
                section.lines().any(|l| l.starts_with(&row)),
                "docs/configuration.md, \"Every setting\": no row starts with {row:?}"
            );
        }

        let rows: Vec<Vec<&str>> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        for row in &rows {
            assert_eq!(
                row.len(),
                PIECES,
                "a row of 7 columns, no '|' inside: {row:?}"
            );
        }
        let row_keys: Vec<&str> = rows.iter().map(|r| r[1].trim_matches('`')).collect();
        assert_eq!(row_keys, keys, "one row per key, in to_toml_string's order");

        for (column, (name, text)) in TEMPLATES.iter().enumerate() {
            let values = qualified_keys(text);
            for row in &rows {
                let key = row[1].trim_matches('`');
                let (_, value) = values
                    .iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("{name}.toml lacks {key}"));
                assert_eq!(
                    row[FIRST_PRESET + column],
                    format!("`{value}`"),
                    "docs/configuration.md, \"Every setting\", {key}: the {name} cell is not \
                     docs/config/{name}.toml's value"
                );
            }
        }
    }

    #[test]
    fn toml_round_trips() {
        let mut all: Vec<OptimizationConfig> = presets().to_vec();
        for o in Optimization::ALL {
            all.push(OptimizationConfig::low_memory().with_off(o));
        }
        for cfg in all {
            let text = cfg.to_toml_string().unwrap();
            assert_eq!(OptimizationConfig::from_toml_str(&text), Ok(cfg), "{text}");
        }
    }

    #[test]
    fn missing_fields_take_the_default_preset() {
        assert_eq!(
            OptimizationConfig::from_toml_str(""),
            Ok(OptimizationConfig::default())
        );
        let cfg = OptimizationConfig::from_toml_str(
            "pooling = false\n[result_cache]\nttl = \"500ms\"\n[queues]\ncapacity = [1, 2, 3]\n",
        )
        .unwrap();
        let mut want = OptimizationConfig::latency();
        want.pooling = false;
        want.result_cache.ttl = Some(Duration::from_millis(500));
        want.queues.capacity = [1, 2, 3];
        assert_eq!(cfg, want);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_errors() {
        let cases = [
            ("turbo = true", "turbo"),
            ("[result_cache]\nsize = 3", "size"),
            ("[telemetry]\nlevel = \"verbose\"", "verbose"),
            ("[adaptive_concurrency]\nalgorithm = \"vegas\"", "vegas"),
            ("workers = \"four\"", "workers"),
            ("[queues]\ncapacity = [1, 2]", "capacity"),
            ("workers = -1", "workers"),
            ("pooling = ", "pooling"),
        ];
        for (text, mentions) in cases {
            let err = OptimizationConfig::from_toml_str(text).unwrap_err();
            let ConfigError::Toml { message } = &err else {
                panic!("{text:?}: {err:?}");
            };
            assert!(message.contains(mentions), "{text:?}: {message}");
            assert!(err.to_string().starts_with("invalid config TOML: "));
            assert_eq!(err.field(), None);
        }
    }

    #[test]
    fn durations_are_strings_with_units() {
        let cfg = OptimizationConfig::from_toml_str(
            "[result_cache]\nttl = \"1.5s\"\nflight_timeout = \"none\"\n",
        )
        .unwrap();
        assert_eq!(cfg.result_cache.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(cfg.result_cache.flight_timeout, None);
        let text = cfg.to_toml_string().unwrap();
        assert!(text.contains("ttl = \"1500ms\""), "{text}");
        assert!(text.contains("flight_timeout = \"none\""), "{text}");
        assert_eq!(OptimizationConfig::from_toml_str(&text), Ok(cfg));
        for (field, value, reason) in [
            ("ttl", "\"30\"", "missing unit"),
            ("ttl", "\"-1s\"", "negative"),
            ("ttl", "\"3 days\"", "unknown unit"),
            ("flight_timeout", "\"1.5ns\"", "finer than one nanosecond"),
            ("flight_timeout", "\"99999999999999999999h\"", "too long"),
        ] {
            let text = format!("[result_cache]\n{field} = {value}\n");
            let err = OptimizationConfig::from_toml_str(&text).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("result_cache.{field}: invalid duration")),
                "{message}"
            );
            assert!(message.contains(reason), "{message}");
        }
        // A number is not a duration: the unit must be written.
        for number in ["500", "1.5"] {
            let text = format!("[result_cache]\nttl = {number}\n");
            let err = OptimizationConfig::from_toml_str(&text).unwrap_err();
            assert!(matches!(err, ConfigError::Toml { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(&format!(
                    "result_cache.ttl: invalid duration {number}: missing unit"
                )),
                "{message}"
            );
        }
        let err = OptimizationConfig::from_toml_str("[result_cache]\nttl = true\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("result_cache.ttl: a duration with a unit"),
            "{err}"
        );
        // Zero parses and is then refused by validation, naming the field.
        let err = OptimizationConfig::from_toml_str("[result_cache]\nttl = \"0ms\"\n").unwrap_err();
        assert_eq!(err.field(), Some("result_cache.ttl"));
    }

    #[test]
    fn parsed_config_is_validated() {
        let err = OptimizationConfig::from_toml_str("[adaptive_concurrency]\nmin_limit = 0\n")
            .unwrap_err();
        assert_eq!(err.field(), Some("adaptive_concurrency.min_limit"));
        let err = OptimizationConfig::from_toml_str(
            "[telemetry]\nlevel = \"events\"\nring_capacity = 100\n",
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("telemetry.ring_capacity"));
        // The admission tuning too, whichever algorithm is chosen.
        for (line, field) in [
            ("aimd_increase = 0", "adaptive_concurrency.aimd_increase"),
            (
                "aimd_backoff_ratio = 1.5",
                "adaptive_concurrency.aimd_backoff_ratio",
            ),
            (
                "gradient_smoothing = 0.0",
                "adaptive_concurrency.gradient_smoothing",
            ),
            (
                "gradient_tolerance = 0.5",
                "adaptive_concurrency.gradient_tolerance",
            ),
            (
                "gradient_tolerance = inf",
                "adaptive_concurrency.gradient_tolerance",
            ),
            (
                "aimd_backoff_ratio = nan",
                "adaptive_concurrency.aimd_backoff_ratio",
            ),
        ] {
            for algorithm in ["aimd", "gradient"] {
                let text = format!("[adaptive_concurrency]\nalgorithm = \"{algorithm}\"\n{line}\n");
                let err = OptimizationConfig::from_toml_str(&text).unwrap_err();
                assert_eq!(err.field(), Some(field), "{text}: {err}");
            }
        }
        let cfg = OptimizationConfig::from_toml_str(
            "[adaptive_concurrency]\naimd_increase = 3\naimd_backoff_ratio = 0.5\n\
             gradient_smoothing = 1.0\ngradient_tolerance = 2.0\n",
        )
        .unwrap();
        let a = cfg.adaptive_concurrency;
        assert_eq!(
            (
                a.aimd_increase,
                a.aimd_backoff_ratio,
                a.gradient_smoothing,
                a.gradient_tolerance
            ),
            (3, 0.5, 1.0, 2.0)
        );
    }

    #[test]
    fn enum_spellings() {
        for (text, level) in [
            ("off", TelemetryLevel::Off),
            ("counters", TelemetryLevel::Counters),
            ("histograms", TelemetryLevel::Histograms),
            ("events", TelemetryLevel::Events),
        ] {
            let cfg =
                OptimizationConfig::from_toml_str(&format!("[telemetry]\nlevel = \"{text}\""))
                    .unwrap();
            assert_eq!(cfg.telemetry.level, level);
        }
        for (text, algorithm) in [("aimd", Algorithm::Aimd), ("gradient", Algorithm::Gradient)] {
            let cfg = OptimizationConfig::from_toml_str(&format!(
                "[adaptive_concurrency]\nalgorithm = \"{text}\""
            ))
            .unwrap();
            assert_eq!(cfg.adaptive_concurrency.algorithm, algorithm);
        }
    }
}

#[test]
fn a_cell_hands_out_whole_snapshots() {
    let cell = ConfigCell::new(OptimizationConfig::latency()).unwrap();
    assert_eq!(cell.generation(), 0);
    let before = cell.load();

    let generation = cell
        .update(|c| c.clone().with_off(Optimization::ResultCache))
        .unwrap();
    assert_eq!(generation, 1);
    assert!(!cell.load().result_cache.enabled);
    assert!(before.result_cache.enabled); // an old snapshot is unchanged

    let mut bad = OptimizationConfig::latency();
    bad.workers = usize::MAX;
    assert!(cell.store(bad).is_err());
    assert_eq!(cell.generation(), 1); // a refused store changes nothing
}

/// The monitor's section in TOML: rules read and round-trip, and every bad value is refused
/// naming its field.
#[cfg(feature = "serde")]
mod monitor_toml {
    use std::time::Duration;

    use crate::config::{Metric, OptimizationConfig};

    const RULE: &str = r#"
[monitor]
resolution = "500ms"
windows = ["1s", "5s"]

[[monitor.rules]]
name = "parse-errors"
metric = "error_rate"
step = "parse"
class = "transient"
window = "5s"
above = 0.05
clear_below = 0.02
for_windows = 3
min_samples = 20
"#;

    #[test]
    fn a_rule_reads_and_round_trips() {
        let cfg = OptimizationConfig::from_toml_str(RULE).unwrap();
        let m = &cfg.monitor;
        assert_eq!(m.resolution, Duration::from_millis(500));
        assert_eq!(m.windows, [Duration::from_secs(1), Duration::from_secs(5)]);
        let r = &m.rules[0];
        assert_eq!(r.metric, Metric::ErrorRate);
        assert_eq!(r.step.as_deref(), Some("parse"));
        assert_eq!(
            r.error_class(),
            Some(flujo_core::policy::ErrorClass::Transient)
        );
        assert_eq!(
            (r.above, r.clear_below, r.for_windows, r.min_samples),
            (0.05, 0.02, 3, 20)
        );
        assert_eq!(r.quantile, 0.99, "left out: the default");
        let again = OptimizationConfig::from_toml_str(&cfg.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn bad_monitor_values_name_their_field() {
        let cases = [
            (
                "clear_below = 0.02",
                "clear_below = 0.5",
                "monitor.rules.clear_below",
            ),
            (
                "min_samples = 20",
                "min_samples = 0",
                "monitor.rules.min_samples",
            ),
            (
                "for_windows = 3",
                "for_windows = 0",
                "monitor.rules.for_windows",
            ),
            (
                "windows = [\"1s\", \"5s\"]",
                "windows = [\"0s\", \"5s\"]",
                "monitor.windows",
            ),
            (
                "windows = [\"1s\", \"5s\"]",
                "windows = [\"1s\", \"1250ms\"]",
                "monitor.windows",
            ),
            (
                "windows = [\"1s\", \"5s\"]",
                "windows = []",
                "monitor.windows",
            ),
            (
                "resolution = \"500ms\"",
                "resolution = \"0s\"",
                "monitor.resolution",
            ),
            ("window = \"5s\"", "window = \"2s\"", "monitor.rules.window"),
            (
                "class = \"transient\"",
                "class = \"flaky\"",
                "monitor.rules.class",
            ),
            ("above = 0.05", "above = -1.0", "monitor.rules.above"),
            (
                "metric = \"error_rate\"",
                "metric = \"queue_wait\"",
                "monitor.rules.step",
            ),
            (
                "name = \"parse-errors\"",
                "name = \"\"",
                "monitor.rules.name",
            ),
        ];
        for (from, to, field) in cases {
            let text = RULE.replace(from, to);
            let err = OptimizationConfig::from_toml_str(&text).unwrap_err();
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        // Text that is no duration, and an unknown metric, are refused by the reader.
        for (from, to, field) in [
            ("window = \"5s\"", "window = \"5\"", "monitor.rules.window"),
            (
                "windows = [\"1s\", \"5s\"]",
                "windows = [\"1 sec\"]",
                "monitor.windows",
            ),
            ("metric = \"error_rate\"", "metric = \"errors\"", "metric"),
        ] {
            let err = OptimizationConfig::from_toml_str(&RULE.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
        let two = format!(
            "{RULE}\n{}",
            &RULE[RULE.find("[[monitor.rules]]").unwrap()..]
        );
        let err = OptimizationConfig::from_toml_str(&two).unwrap_err();
        assert!(err.to_string().contains("must be unique"), "{err}");
    }
}

/// The degradation section in TOML: levels and tagged actions read and round-trip; bad
/// values name their field.
#[cfg(feature = "serde")]
mod degradation_toml {
    use crate::config::{Action, OptimizationConfig};

    const LEVELS: &str = r#"
[[monitor.rules]]
name = "errors"
metric = "error_rate"
window = "10s"
above = 0.5
clear_below = 0.1

[degradation]
enabled = true
min_dwell = "3s"

[[degradation.levels]]
name = "busy"
when = ["errors"]
actions = [{ kind = "shed_low" }, { kind = "inline_more", factor = 4 }]

[[degradation.levels]]
name = "overload"
when = ["memory"]
critical = true
actions = [{ kind = "shrink_cache", share = 0.25 }, { kind = "free_idle_runners" }]

[degradation.memory]
budget_bytes = 1073741824
"#;

    #[test]
    fn levels_read_and_round_trip() {
        let cfg = OptimizationConfig::from_toml_str(LEVELS).unwrap();
        let d = &cfg.degradation;
        assert!(d.enabled);
        assert_eq!(d.min_dwell, std::time::Duration::from_secs(3));
        assert_eq!(
            d.levels[0].actions,
            [Action::ShedLow, Action::InlineMore { factor: 4 }]
        );
        assert!(d.levels[1].critical);
        assert_eq!(d.memory.budget_bytes, 1 << 30);
        let again = OptimizationConfig::from_toml_str(&cfg.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn bad_degradation_values_name_their_field() {
        for (from, to, field) in [
            (
                "when = [\"errors\"]",
                "when = [\"nope\"]",
                "degradation.levels.when",
            ),
            (
                "when = [\"errors\"]",
                "when = []",
                "degradation.levels.when",
            ),
            (
                "share = 0.25",
                "share = 1.5",
                "degradation.levels.actions.share",
            ),
            (
                "factor = 4",
                "factor = 1",
                "degradation.levels.actions.factor",
            ),
            (
                "{ kind = \"free_idle_runners\" }",
                "{ kind = \"shed_low\" }",
                "degradation.levels.actions",
            ),
            (
                "name = \"overload\"",
                "name = \"busy\"",
                "degradation.levels.name",
            ),
            (
                "budget_bytes = 1073741824",
                "budget_bytes = 1\nhigh = 0.5\nlow = 0.7",
                "degradation.memory.low",
            ),
            (
                "min_dwell = \"3s\"",
                "min_dwell = \"3\"",
                "degradation.min_dwell",
            ),
            ("{ kind = \"shed_low\" }", "{ kind = \"panic\" }", "kind"),
        ] {
            let err = OptimizationConfig::from_toml_str(&LEVELS.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
    }
}
