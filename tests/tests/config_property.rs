//! Property test of the configuration: every `OptimizationConfig` that `validate()` accepts
//! builds an executor that runs a small graph (a sequence, a parallel node and a cacheable
//! step) to the right output, and (feature `serde`) writes as TOML that reads back equal and
//! builds too; every configuration `validate()` refuses fails `Executor::new` with the same
//! `BuildError::Config`.
//!
//! Configurations are drawn from a seeded generator over every field, mostly from each field's
//! edge values (0, 1, the bounds and one past them, each telemetry level, each algorithm,
//! every switch on and off) and now and then from values that break a rule.

mod common;

use std::time::Duration;

use common::Prng;
use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, TaskConfig};
use flujo_core::interp::Outcome;
use flujo_runtime::config::{
    Algorithm, OptimizationConfig, TelemetryLevel, MAX_CACHE_SHARDS, MAX_RECORDS,
    MAX_RING_CAPACITY, MAX_SIZE, MAX_WORKERS,
};
use flujo_runtime::{BuildError, Executor};

/// Configurations drawn.
const ITERATIONS: usize = 300;

/// Picks one of `valid`, or one of `invalid` once in 16 draws (when there are any).
fn pick<T: Copy>(rng: &mut Prng, valid: &[T], invalid: &[T]) -> T {
    if !invalid.is_empty() && rng.below(16) == 0 {
        invalid[rng.below(invalid.len() as u64) as usize]
    } else {
        valid[rng.below(valid.len() as u64) as usize]
    }
}

fn coin(rng: &mut Prng) -> bool {
    rng.below(2) == 0
}

/// A duration setting: unset, the smallest, ordinary ones, the largest; zero breaks the rule.
fn duration(rng: &mut Prng) -> Option<Duration> {
    let valid = [
        None,
        Some(Duration::from_nanos(1)),
        Some(Duration::from_micros(100)),
        Some(Duration::from_millis(50)),
        Some(Duration::from_millis(1500)),
        Some(Duration::from_secs(3600)),
        Some(Duration::MAX),
    ];
    pick(rng, &valid, &[Some(Duration::ZERO)])
}

/// A configuration drawn over every field.
fn gen_config(rng: &mut Prng) -> OptimizationConfig {
    let mut c = OptimizationConfig::latency();
    c.pooling = coin(rng);
    c.copy_on_write = coin(rng);
    c.fast_paths = coin(rng);
    c.breakers = coin(rng);
    c.inline_cutoff.enabled = coin(rng);
    c.inline_cutoff.max_cost = pick(rng, &[1, 2, 4096, u32::MAX], &[0]);
    gen_cache(rng, &mut c);
    gen_telemetry(rng, &mut c);
    gen_admission(rng, &mut c);
    // The largest queue capacity (2^24 per queue) is left out: the queues' rings are
    // allocated up front, gigabytes at that bound, on a machine shared with other builds.
    for capacity in &mut c.queues.capacity {
        *capacity = pick(rng, &[1, 2, 3, 1024, 1 << 16], &[0, (1 << 24) + 1]);
    }
    c.queues.aging = pick(rng, &[0, 1, 8, u32::MAX], &[]);
    // Small pools keep the test fast; 0 (one thread per core) is drawn rarely.
    c.workers = if rng.below(8) == 0 {
        0
    } else {
        pick(rng, &[1, 2], &[MAX_WORKERS + 1])
    };
    c.max_records = pick(rng, &[1, 2, 64, MAX_RECORDS], &[0, MAX_RECORDS + 1]);
    c
}

fn gen_cache(rng: &mut Prng, c: &mut OptimizationConfig) {
    let r = &mut c.result_cache;
    r.enabled = coin(rng);
    r.max_entries = pick(
        rng,
        &[1, 2, 64, MAX_CACHE_SHARDS, MAX_SIZE],
        &[0, MAX_SIZE + 1],
    );
    r.max_bytes = pick(rng, &[1, 8, 64, 1 << 20, MAX_SIZE], &[0, usize::MAX]);
    r.shards = pick(
        rng,
        &[1, 2, 16, MAX_CACHE_SHARDS],
        &[0, 3, 2 * MAX_CACHE_SHARDS],
    );
    r.ttl = duration(rng);
    r.flight_timeout = duration(rng);
}

fn gen_telemetry(rng: &mut Prng, c: &mut OptimizationConfig) {
    let t = &mut c.telemetry;
    t.level = [
        TelemetryLevel::Off,
        TelemetryLevel::Counters,
        TelemetryLevel::Histograms,
        TelemetryLevel::Events,
    ][rng.below(4) as usize];
    t.run_sample_period = pick(rng, &[1, 2, 64, u32::MAX], &[0]);
    // Unused below `histograms`, where any size up to MAX_SIZE is accepted.
    let unused = if t.level < TelemetryLevel::Histograms {
        [0, 3, MAX_SIZE]
    } else {
        [16, 16, 16]
    };
    t.ring_capacity = match rng.below(3) {
        0 => pick(rng, &unused, &[]),
        _ => pick(
            rng,
            &[16, 32, 4096, MAX_RING_CAPACITY],
            &[0, 8, 1000, 2 * MAX_RING_CAPACITY, usize::MAX],
        ),
    };
}

fn gen_admission(rng: &mut Prng, c: &mut OptimizationConfig) {
    let a = &mut c.adaptive_concurrency;
    a.enabled = coin(rng);
    a.algorithm = [Algorithm::Aimd, Algorithm::Gradient][rng.below(2) as usize];
    let limits = [1, 2, 64, u32::MAX];
    let mut three = [0; 3].map(|_| pick(rng, &limits, &[0]));
    // Mostly ordered (min <= initial <= max), as a valid configuration needs.
    if rng.below(8) != 0 {
        three.sort_unstable();
    }
    (a.min_limit, a.initial_limit, a.max_limit) = (three[0], three[1], three[2]);
    a.aimd_increase = pick(rng, &[1, 2, u32::MAX], &[0]);
    a.aimd_backoff_ratio = pick(rng, &[1e-9, 0.5, 0.9, 0.999], &[0.0, 1.0, -0.5, f64::NAN]);
    a.gradient_smoothing = pick(rng, &[1e-9, 0.2, 1.0], &[0.0, 1.5, f64::NAN]);
    a.gradient_tolerance = pick(rng, &[1.0, 1.5, 1e9], &[0.9, f64::INFINITY, f64::NAN]);
}

/// `a -> a + 1`, then `(a * 2) + (a + 3)` in parallel, then a cacheable `x * x`.
fn graph() -> Graph<u64, ()> {
    Graph::build(|b| {
        let first = b.task("inc", |x, _| Ok(x + 1));
        let double = b.task("double", |x, _| Ok(x * 2));
        let plus3 = b.task("plus3", |x, _| Ok(x + 3));
        let both = b.parallel("both", &[double, plus3], |x, y| x + y, Default::default());
        let fp = StepFingerprint::builder("square", 1).build();
        let square = b.task_with(
            "square",
            |x: u64, _: &mut _| Ok(x * x),
            TaskConfig::new().cacheable(fp),
        );
        b.sequence("s", &[first, both, square])
    })
    .unwrap()
}

/// What [`graph`] gives for `x`.
fn expected(x: u64) -> u64 {
    let a = x + 1;
    let both = a * 2 + a + 3;
    both * both
}

/// Builds an executor of `cfg` and runs the graph on a few inputs, each twice (the second
/// run of an input may be a cache hit).
fn builds_and_runs(cfg: &OptimizationConfig, g: &Graph<u64, ()>, case: usize) {
    let ex = Executor::<u64, ()>::new(cfg.clone())
        .unwrap_or_else(|e| panic!("case {case}: a valid config did not build: {e}\n{cfg:?}"));
    for x in [0, 1, 7, 7, 0] {
        let done = ex.run(g, x, ()).unwrap();
        assert_eq!(done.outcome, Outcome::Succeeded, "case {case}, input {x}");
        assert_eq!(done.output, Some(expected(x)), "case {case}, input {x}");
    }
}

/// What the drawn valid configurations covered, so the test proves it reached the edges.
#[derive(Default)]
struct Coverage {
    valid: usize,
    invalid: usize,
    levels: [bool; 4],
    algorithms: [bool; 2],
    cache_off: bool,
    inline_off: bool,
    pooling_off: bool,
    admission_off: bool,
    ttl_unset_and_set: [bool; 2],
}

impl Coverage {
    fn note_valid(&mut self, c: &OptimizationConfig) {
        self.valid += 1;
        self.levels[c.telemetry.level as usize] = true;
        self.algorithms[c.adaptive_concurrency.algorithm as usize] = true;
        self.cache_off |= !c.result_cache.enabled;
        self.inline_off |= !c.inline_cutoff.enabled;
        self.pooling_off |= !c.pooling;
        self.admission_off |= !c.adaptive_concurrency.enabled;
        self.ttl_unset_and_set[usize::from(c.result_cache.ttl.is_some())] = true;
    }

    fn assert_broad(&self) {
        assert!(self.valid >= ITERATIONS / 5, "only {} valid", self.valid);
        assert!(
            self.invalid >= ITERATIONS / 10,
            "only {} invalid",
            self.invalid
        );
        assert_eq!(self.levels, [true; 4], "every telemetry level");
        assert_eq!(self.algorithms, [true; 2], "every algorithm");
        assert!(self.cache_off && self.inline_off && self.pooling_off && self.admission_off);
        assert_eq!(self.ttl_unset_and_set, [true; 2]);
    }
}

#[test]
fn every_valid_config_builds_and_runs_and_every_invalid_one_is_refused() {
    let g = graph();
    let mut rng = Prng(0xC0F1_6000_5EED);
    let mut coverage = Coverage::default();
    for case in 0..ITERATIONS {
        let cfg = gen_config(&mut rng);
        match cfg.validate() {
            Ok(()) => {
                coverage.note_valid(&cfg);
                builds_and_runs(&cfg, &g, case);
                #[cfg(feature = "serde")]
                toml_round_trips_and_builds(&cfg, &g, case);
            }
            Err(err) => {
                coverage.invalid += 1;
                match Executor::<u64, ()>::new(cfg.clone()) {
                    Err(BuildError::Config(e)) => assert_eq!(e, err, "case {case}"),
                    Err(other) => panic!("case {case}: {other} instead of {err}"),
                    Ok(_) => panic!("case {case}: built despite {err}"),
                }
                #[cfg(feature = "serde")]
                toml_is_refused_the_same_way(&cfg, &err, case);
            }
        }
    }
    coverage.assert_broad();
}

#[cfg(feature = "serde")]
fn toml_round_trips_and_builds(cfg: &OptimizationConfig, g: &Graph<u64, ()>, case: usize) {
    let text = cfg
        .to_toml_string()
        .unwrap_or_else(|e| panic!("case {case}: a valid config does not write: {e}"));
    let back = OptimizationConfig::from_toml_str(&text)
        .unwrap_or_else(|e| panic!("case {case}: its TOML does not read back: {e}\n{text}"));
    assert_eq!(&back, cfg, "case {case}:\n{text}");
    builds_and_runs(&back, g, case);
}

/// An invalid configuration that can be written as TOML (sizes above `i64::MAX` cannot) reads
/// back as the same validation error.
#[cfg(feature = "serde")]
fn toml_is_refused_the_same_way(
    cfg: &OptimizationConfig,
    err: &flujo_runtime::config::ConfigError,
    case: usize,
) {
    if let Ok(text) = cfg.to_toml_string() {
        assert_eq!(
            OptimizationConfig::from_toml_str(&text).as_ref(),
            Err(err),
            "case {case}:\n{text}"
        );
    }
}
