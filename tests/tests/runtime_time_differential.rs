//! Differential test of time-dependent policies: random graphs whose tasks take time (they
//! advance a manual clock), with attempt timeouts, circuit breakers (failure and slow-call
//! rules, open periods, probes), retries with backoff, fallbacks and run deadlines, run as a
//! sequence of runs with time passing between them. Each host has its own graph (its own
//! breakers) and its own manual clock, all starting at 0, and must decide exactly alike:
//!
//! - the core interpreter with a clock that measures every latency (the reference);
//! - the core interpreter with a clock that measures none (`Clock::measures_latency`);
//! - the runtime's `Executor::run_with`, in every preset, at telemetry levels that sample
//!   some runs and not others, with the fast paths off, and through `submit`.
//!
//! Compared: output, outcome, error, every step record but its latency, and the clock's
//! reading after each run (so every backoff waited alike).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Prng;
use flujo_core::graph::ManualClock;
use flujo_core::graph::{
    Clock, Graph, GraphBuilder, NodeRef, ParallelOptions, StepError, TaskConfig,
};
use flujo_core::interp::StepRecord;
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, RunResult, Runner, RunnerConfig};
use flujo_core::policy::{Backoff, RetryPolicy};
use flujo_core::policy::{Breaker, BreakerConfig, ErrorClass};
use flujo_core::telemetry::StepOutcome;
use flujo_runtime::clock::ticks;
use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
use flujo_runtime::{Executor, Finished, RunSpec, SubmitSpec};

const MS: u64 = 1_000_000;

/// A task of the generated graphs: takes `cost_ms` (one more on its first attempt when
/// `slow_first`), fails when `input % modulus == 0` (on every attempt), with the policies
/// drawn.
#[derive(Clone, Debug)]
enum T {
    Task {
        cost_ms: u64,
        slow_first: bool,
        modulus: u64,
        timeout_ms: Option<u64>,
        breaker: Option<(u64, Option<u64>)>,
        retry: bool,
        fallback: bool,
    },
    Seq(Vec<T>),
    Par(Vec<T>),
}

fn gen(rng: &mut Prng, depth: u32) -> T {
    if depth == 0 || rng.below(3) == 0 {
        return T::Task {
            cost_ms: rng.below(3),
            slow_first: rng.below(3) == 0,
            modulus: [0, 2, 3, 5][rng.below(4) as usize],
            timeout_ms: (rng.below(3) == 0).then(|| rng.below(3) + 1),
            // (open period, slow-call threshold), in ms.
            breaker: (rng.below(2) == 0).then(|| {
                (
                    rng.below(8) + 1,
                    (rng.below(2) == 0).then(|| rng.below(3) + 1),
                )
            }),
            retry: rng.below(3) == 0,
            fallback: rng.below(3) == 0,
        };
    }
    let kids: Vec<T> = (0..rng.below(3) + 1).map(|_| gen(rng, depth - 1)).collect();
    if rng.below(2) == 0 {
        T::Seq(kids)
    } else {
        T::Par(kids)
    }
}

fn build(t: &T, b: &mut GraphBuilder<'_, u64, ()>, clock: &ManualClock, n: &mut u32) -> NodeRef {
    *n += 1;
    let name = format!("n{n}");
    match t {
        T::Task {
            cost_ms,
            slow_first,
            modulus,
            timeout_ms,
            breaker,
            retry,
            fallback,
        } => {
            let mut cfg = TaskConfig::new();
            if let Some(ms) = timeout_ms {
                cfg = cfg.timeout(ms * MS);
            }
            if let Some((open_ms, slow_ms)) = breaker {
                let br = Breaker::new(BreakerConfig {
                    consecutive_failures_to_open: 2,
                    window_calls: 4,
                    failure_rate_percent_to_open: 0,
                    window_calls_min: 1,
                    slow_call_ticks: slow_ms.map_or(0, |ms| ms * MS),
                    open_ticks: open_ms * MS,
                    half_open_probes_max: 1,
                    half_open_successes_to_close: 1,
                })
                .expect("valid");
                cfg = cfg.breaker(Arc::new(br));
            }
            if *retry {
                let backoff = Backoff::Constant { delay_ticks: MS };
                cfg = cfg.retry(RetryPolicy::new(3, backoff).expect("valid"));
            }
            if *fallback {
                cfg = cfg.fallback(b.task(&format!("{name}-fb"), |x, _| Ok(x + 1000)));
            }
            let (cost, slow_first, modulus, clock) =
                (*cost_ms, *slow_first, *modulus, clock.clone());
            b.task_with(
                &name,
                move |x: u64, cx| {
                    let first = u64::from(slow_first && cx.attempt() == 1);
                    clock.advance(ticks(Duration::from_millis(cost + 2 * first)));
                    if modulus != 0 && x.is_multiple_of(modulus) {
                        return Err(StepError::transient("down"));
                    }
                    Ok((x * 3 + 1) % 10_007)
                },
                cfg,
            )
        }
        T::Seq(kids) => {
            let k: Vec<_> = kids.iter().map(|k| build(k, b, clock, n)).collect();
            b.sequence(&name, &k)
        }
        T::Par(kids) => {
            let k: Vec<_> = kids.iter().map(|k| build(k, b, clock, n)).collect();
            b.parallel(
                &name,
                &k,
                |a, x| (a * 31 + x) % 10_007,
                ParallelOptions::new(),
            )
        }
    }
}

/// A step record without its latency.
type Rec = (u32, StepOutcome, u32, bool, Option<ErrorClass>, u64);

fn rec(r: &StepRecord) -> Rec {
    (
        r.node.0,
        r.outcome,
        r.attempts,
        r.fallback_used,
        r.error_class,
        r.backoff_ticks,
    )
}

/// What a run decided, and the clock after it.
#[derive(Debug, PartialEq)]
struct Seen {
    output: Option<u64>,
    outcome: Outcome,
    error: Option<(String, ErrorKind)>,
    records: Vec<Rec>,
    clock_after: u64,
}

fn seen(r: RunResult<'_, u64, ()>, clock: &ManualClock) -> Seen {
    Seen {
        output: r.output,
        outcome: r.outcome,
        error: r.error.map(|e| (e.step.to_string(), e.kind)),
        records: r.records.iter().map(rec).collect(),
        clock_after: clock.now(),
    }
}

/// The core interpreter on a manual clock that measures nothing.
struct Blind(ManualClock);

impl Clock for Blind {
    fn now(&self) -> u64 {
        self.0.now()
    }
    fn wait(&self, ticks: u64) {
        self.0.wait(ticks);
    }
    fn measures_latency(&self) -> bool {
        false
    }
}

/// One host: its graph, its clock, and how it runs one input with a deadline.
struct Host {
    name: String,
    clock: ManualClock,
    graph: Arc<Graph<u64, ()>>,
    kind: Kind,
}

enum Kind {
    /// The core interpreter; whether its clock measures latencies.
    Core(Box<Runner<u64, ()>>, bool),
    Inline(Executor<u64, ()>),
    Submitted(Executor<u64, ()>),
}

impl Host {
    fn new(name: &str, tree: &T, kind: impl FnOnce(&ManualClock) -> Kind) -> Self {
        let clock = ManualClock::new(0);
        let graph = Graph::build(|b| build(tree, b, &clock, &mut 0)).expect("valid");
        Host {
            name: name.to_string(),
            kind: kind(&clock),
            graph: Arc::new(graph),
            clock,
        }
    }

    fn run(&mut self, input: u64, deadline_ms: Option<u64>) -> Seen {
        let clock = &self.clock;
        let g = &self.graph;
        match &mut self.kind {
            Kind::Core(runner, measured) => {
                let opts = RunOptions {
                    deadline: deadline_ms.map(|ms| clock.now() + ms * MS),
                    ..RunOptions::default()
                };
                if *measured {
                    seen(runner.run(g, input, (), clock, &opts), clock)
                } else {
                    seen(
                        runner.run(g, input, (), &Blind(clock.clone()), &opts),
                        clock,
                    )
                }
            }
            Kind::Inline(ex) => {
                let mut spec = RunSpec::default();
                spec.deadline = deadline_ms.map(Duration::from_millis);
                ex.run_with(g, input, (), &spec, |r| seen(r, clock))
                    .expect("no panic")
            }
            Kind::Submitted(ex) => {
                let mut spec = SubmitSpec::default();
                spec.deadline = deadline_ms.map(Duration::from_millis);
                let ticket = ex
                    .submit_with(g, input, (), &spec)
                    .unwrap_or_else(|r| panic!("refused: {}", r.reason));
                let done = match ticket.wait().expect("a result") {
                    Finished::Ran(done) => done,
                    other => panic!("{other:?}"),
                };
                // A submitted run gives no records back: compare the rest, with the core's
                // records in their place.
                Seen {
                    output: done.output,
                    outcome: done.outcome,
                    error: done.error.map(|e| (e.step, e.kind)),
                    records: Vec::new(),
                    clock_after: clock.now(),
                }
            }
        }
    }
}

/// The runtime's configurations: each preset as it is, and at levels that sample some runs
/// (one in 3) and not others; the fast paths off.
fn configs() -> Vec<(String, OptimizationConfig)> {
    let mut v = Vec::new();
    for preset in OptimizationConfig::PRESETS {
        let mut cfg = OptimizationConfig::preset(preset).unwrap();
        cfg.workers = 1;
        v.push((preset.to_string(), cfg.clone()));
        for level in [TelemetryLevel::Histograms, TelemetryLevel::Events] {
            let mut c = cfg.clone();
            c.telemetry.level = level;
            c.telemetry.run_sample_period = 3;
            v.push((format!("{preset} at {level:?}, one run in 3 sampled"), c));
        }
    }
    let mut slow = OptimizationConfig::latency();
    slow.workers = 1;
    slow.fast_paths = false;
    v.push(("latency without fast paths".to_string(), slow));
    v
}

#[test]
fn time_dependent_policies_decide_alike_on_every_host() {
    let graphs = 60;
    let runs = 16;
    let mut rng = Prng(0x713E_D1FF);
    let mut seen_timeouts = 0;
    let mut seen_open = 0;
    let mut seen_deadlines = 0;
    for _ in 0..graphs {
        let tree = gen(&mut rng, 3);
        let mut hosts = vec![
            Host::new("core", &tree, |_| {
                Kind::Core(Box::new(Runner::new(RunnerConfig::default())), true)
            }),
            Host::new("core, unmeasured clock", &tree, |_| {
                Kind::Core(Box::new(Runner::new(RunnerConfig::default())), false)
            }),
        ];
        for (name, cfg) in configs() {
            hosts.push(Host::new(&name, &tree, |c| {
                let ex = Executor::builder(cfg.clone()).clock(c.clone()).build();
                Kind::Inline(ex.expect("valid"))
            }));
        }
        hosts.push(Host::new("submitted, throughput", &tree, |c| {
            let mut cfg = OptimizationConfig::throughput();
            cfg.workers = 1;
            let ex = Executor::builder(cfg).clock(c.clone()).build();
            Kind::Submitted(ex.expect("valid"))
        }));
        for _ in 0..runs {
            let input = rng.below(40);
            let deadline_ms = (rng.below(3) == 0).then(|| rng.below(6));
            let gap = Duration::from_millis(rng.below(6));
            let (reference, others) = hosts.split_first_mut().expect("hosts");
            let want = reference.run(input, deadline_ms);
            for h in others.iter_mut() {
                let mut got = h.run(input, deadline_ms);
                if matches!(h.kind, Kind::Submitted(_)) {
                    got.records.clone_from(&want.records);
                }
                assert_eq!(got, want, "{}: {tree:?} on {input}", h.name);
            }
            for h in hosts.iter() {
                h.clock.advance(ticks(gap));
            }
            seen_timeouts += want
                .records
                .iter()
                .filter(|r| r.4 == Some(ErrorClass::Timeout))
                .count();
            seen_open += want
                .records
                .iter()
                .filter(|r| r.4 == Some(ErrorClass::CircuitOpen))
                .count();
            seen_deadlines +=
                usize::from(matches!(want.error, Some((_, ErrorKind::DeadlineExceeded))));
        }
    }
    // Every time-dependent decision was exercised.
    assert!(
        seen_timeouts > 20 && seen_open > 20 && seen_deadlines > 20,
        "timeouts {seen_timeouts}, open breakers {seen_open}, deadlines {seen_deadlines}"
    );
}
