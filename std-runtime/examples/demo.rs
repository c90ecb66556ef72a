//! An order pipeline run many times on the executor, with injected faults.
//!
//! parse -> enrich (a typed join: a flaky remote FX call behind retry + breaker + fallback, a
//! cacheable customer-tier lookup, a scoring step) -> validate -> price every line (a map) ->
//! aggregate. Every step is typed (`String -> Order`, `Order -> Tier`, `Line -> Cents`, ...)
//! and the builder checks each joint at compile time. Runs are submitted at the three
//! priorities, each waiting for room when the admission limit is reached
//! (`SubmitSpec::wait`); a seeded generator decides each run's fault (transient errors, outages, panics inside a step, slow calls, invalid orders),
//! plus a burst of outages every 20 000 runs that trips the breaker.
//!
//! ```text
//! cargo run --release -p flujo-runtime --example demo -- \
//!     [--runs N] [--faults RATE] [--preset latency|throughput|low_memory] [--trace PATH]
//! ```
//!
//! With the crate feature `metrics-http` (`--features metrics-http`), `--metrics-addr
//! 127.0.0.1:PORT` serves the executor's Prometheus metrics at `GET /metrics` while the demo
//! runs, and `--linger-secs N` keeps serving them for N seconds after its work is done (its
//! final state: nothing changes any more), after printing one line with its own report's
//! figures to compare with a scrape:
//! `metrics-report runs_completed=C runs_submitted=S parse_latency_samples=P`.

use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo_core::cache::StepFingerprint;
use flujo_core::graph::{Graph, Join, MapOptions, ParallelOptions, StepCx, StepError, TaskConfig};
use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::{Backoff, Breaker, BreakerConfig, ErrorClass, RetryPolicy};
use flujo_core::telemetry::Counter;
use flujo_runtime::breakers::BreakerRegistry;
use flujo_runtime::clock::ticks;
use flujo_runtime::config::{AlertRule, Metric, OptimizationConfig, TelemetryLevel};
use flujo_runtime::monitor::{AlertEvent, Windows};
use flujo_runtime::{Executor, Finished, Priority, Refusal, SubmitSpec};

/// Units a valid order may hold in all (the validator's rule).
const UNITS_MAX: u32 = 100;
/// Lines a map may split an order into.
const LINES_MAX: u32 = 16;
/// With faults on, runs `k * OUTAGE_EVERY .. k * OUTAGE_EVERY + OUTAGE_RUNS` meet an outage.
const OUTAGE_EVERY: u64 = 20_000;
/// The length of an outage burst, in runs.
const OUTAGE_RUNS: u64 = 50;
/// Distinct customers (so the tier lookup has something to cache).
const CUSTOMERS: u64 = 64;

/// What a run does wrong, decided per run by the seeded generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// The remote call fails once or twice (transient), then answers: retried.
    Flaky,
    /// The remote call always fails: the fallback answers.
    Outage,
    /// The scoring step panics: the run fails with a panic-class error.
    Panic,
    /// Pricing one line takes 200 µs - 1 ms.
    Slow,
    /// Too many units: the validator refuses the order and the run fails.
    Invalid,
}

impl Fault {
    fn tag(self) -> &'static str {
        match self {
            Fault::None => "",
            Fault::Flaky => "flaky",
            Fault::Outage => "outage",
            Fault::Panic => "panic",
            Fault::Slow => "slow",
            Fault::Invalid => "invalid",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        [
            Fault::Flaky,
            Fault::Outage,
            Fault::Panic,
            Fault::Slow,
            Fault::Invalid,
        ]
        .into_iter()
        .find(|f| f.tag() == tag)
    }
}

/// One order line.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    sku: u32,
    units: u32,
    unit_cents: u64,
    /// Nanoseconds this line's pricing sleeps (a slow call).
    slow_ns: u64,
}

/// A parsed order, enriched on its way.
#[derive(Clone, Debug, PartialEq)]
struct Order {
    id: u64,
    customer: u64,
    lines: Vec<Line>,
    fault: Fault,
    /// FX rate to EUR in basis points (from the remote call or the fallback).
    fx_bp: u32,
    fx_from_fallback: bool,
    tier: u32,
    score: u32,
    total_cents: u64,
}

/// A customer's tier (from the cacheable lookup).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tier(u32);

/// An order's score.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(u32);

/// A priced line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cents(u64);

flujo_core::payload! {
    /// The payload passed between steps: one variant per stage type. The typed builder
    /// checks every joint at compile time and projects each step's input and output.
    #[derive(Clone, Debug, PartialEq)]
    enum Msg {
        /// The order as text: `order <id> cust=<n> lines=<sku>x<units>@<cents>,... [!fault[:arg]]`.
        Text(String),
        Order(Order),
        /// The key of the tier lookup (a customer id).
        Customer(u64),
        Tier(Tier),
        Score(Score),
        Line(Line),
        Cents(Cents),
    }
}

/// The run context: two parts, each written by one step.
#[derive(Clone, Debug, Default, PartialEq)]
struct Ctx {
    /// Remote FX calls that answered (written by `fx_remote`).
    remote_answers: u32,
    /// Lines priced (written by `aggregate`).
    lines_priced: u32,
}
flujo_core::context!(Ctx {
    remote_answers,
    lines_priced
});

fn parse(text: &str) -> Result<Order, StepError> {
    let bad = |why: &str| StepError::permanent(format!("parse: {why}: {text}"));
    let mut words = text.split_whitespace();
    if words.next() != Some("order") {
        return Err(bad("no `order`"));
    }
    let id = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| bad("id"))?;
    let mut o = Order {
        id,
        customer: 0,
        lines: Vec::new(),
        fault: Fault::None,
        fx_bp: 0,
        fx_from_fallback: false,
        tier: 0,
        score: 0,
        total_cents: 0,
    };
    let mut slow_ns = 0;
    for w in words {
        if let Some(c) = w.strip_prefix("cust=") {
            o.customer = c.parse().map_err(|_| bad("customer"))?;
        } else if let Some(ls) = w.strip_prefix("lines=") {
            for l in ls.split(',') {
                let (sku, rest) = l.split_once('x').ok_or_else(|| bad("line"))?;
                let (units, cents) = rest.split_once('@').ok_or_else(|| bad("line"))?;
                o.lines.push(Line {
                    sku: sku.parse().map_err(|_| bad("sku"))?,
                    units: units.parse().map_err(|_| bad("units"))?,
                    unit_cents: cents.parse().map_err(|_| bad("price"))?,
                    slow_ns: 0,
                });
            }
        } else if let Some(f) = w.strip_prefix('!') {
            let (tag, arg) = f.split_once(':').unwrap_or((f, "0"));
            o.fault = Fault::from_tag(tag).ok_or_else(|| bad("fault"))?;
            slow_ns = arg.parse().map_err(|_| bad("fault argument"))?;
        } else {
            return Err(bad("unknown field"));
        }
    }
    if let Some(first) = o.lines.first_mut() {
        first.slow_ns = slow_ns;
    }
    Ok(o)
}

fn build(breaker: Arc<Breaker>) -> Graph<Msg, Ctx> {
    Graph::build_typed(move |b| {
        let parse = b.task("parse", |t: String, _| parse(&t));

        // Enrichment 1: the flaky remote call, its fallback a stale local rate.
        let fx_cached = b.task("fx_cached", |mut o: Order, _| {
            (o.fx_bp, o.fx_from_fallback) = (9_100, true);
            Ok(o)
        });
        let retry = RetryPolicy::new(
            3,
            Backoff::Exponential {
                base_ticks: ticks(Duration::from_micros(50)),
                factor: 2,
                delay_ticks_max: ticks(Duration::from_micros(200)),
            },
        )
        .expect("a valid retry policy");
        let fx_cfg = TaskConfig::new()
            .writes_context()
            .retry(retry)
            .breaker(breaker)
            .fallback(fx_cached.node());
        let fx_remote = b.task_with(
            "fx_remote",
            |mut o: Order, cx: &mut StepCx<'_, Ctx>| {
                match (o.fault, cx.attempt()) {
                    (Fault::Outage, _) => return Err(StepError::transient("fx: 503")),
                    (Fault::Flaky, a) if a <= 1 + (o.id % 2) as u32 => {
                        return Err(StepError::transient("fx: connection reset"))
                    }
                    _ => {}
                }
                cx.ctx_mut()?.remote_answers += 1;
                o.fx_bp = 9_200 + (o.id % 7) as u32;
                Ok(o)
            },
            fx_cfg,
        );

        // Enrichment 2: the customer's tier, cacheable by customer (keyed on the `u64` id
        // alone: only the lookup's input type needs a canonical encoding).
        let key = b.task("customer_key", |o: Order, _| Ok(o.customer));
        let tier_cfg =
            TaskConfig::new().cacheable_input::<u64>(StepFingerprint::builder("tier", 1).build());
        let tier = b.task_with(
            "tier_lookup",
            |c: u64, _| Ok(Tier((c % 3) as u32 + 1)),
            tier_cfg,
        );
        let tier = b.sequence("tier", key.then(tier));

        // Enrichment 3: a score over the lines.
        let score = b.task("score", |o: Order, _| {
            if o.fault == Fault::Panic {
                panic!("injected panic in `score` for order {}", o.id);
            }
            let units: u32 = o.lines.iter().map(|l| l.units).sum();
            Ok(Score(units * 10 + o.lines.len() as u32))
        });

        // The three run in parallel; the tier and the score fold into the order.
        let enrichments = Join::new(fx_remote)
            .fold(tier, |mut o: Order, Tier(t)| {
                o.tier = t;
                Ok(o)
            })
            .fold(score, |mut o: Order, Score(s)| {
                o.score = s;
                Ok(o)
            });
        let enrich = b.join("enrich", enrichments, ParallelOptions::new());

        let check_cfg = TaskConfig::new().validate_output(|o: &Order, _| {
            if o.lines.is_empty() {
                Err(StepError::validation("no lines"))
            } else if o.lines.iter().map(|l| l.units).sum::<u32>() > UNITS_MAX {
                Err(StepError::validation("too many units"))
            } else if o.tier == 0 || o.fx_bp == 0 {
                Err(StepError::validation("not enriched"))
            } else {
                Ok(())
            }
        });
        let check = b.task_with("check", |o: Order, _| Ok(o), check_cfg);

        // Per-line pricing: split the order into lines, price each, sum.
        let price = b.task("price_line", |l: Line, _| {
            if l.slow_ns > 0 {
                std::thread::sleep(Duration::from_nanos(l.slow_ns));
            }
            Ok(Cents(u64::from(l.units) * l.unit_cents))
        });
        let lines = b.map(
            "lines",
            |mut o: Order, _, items| {
                for l in o.lines.iter().cloned() {
                    if items.push(l).is_err() {
                        break; // the map fails with TooManyItems
                    }
                }
                o.total_cents = 0;
                Ok(o)
            },
            price,
            |mut o: Order, Cents(c)| {
                o.total_cents += c;
                Ok(o)
            },
            MapOptions::new().max_items(LINES_MAX),
        );

        let aggregate = b.task_with(
            "aggregate",
            |o: Order, cx: &mut StepCx<'_, Ctx>| {
                cx.ctx_mut()?.lines_priced += o.lines.len() as u32;
                Ok(o)
            },
            TaskConfig::new().writes_context(),
        );
        // String -> Order -> Order (enriched) -> Order (checked) -> Order (priced) -> Order.
        b.sequence(
            "order",
            parse.then(enrich).then(check).then(lines).then(aggregate),
        )
    })
    .expect("the order graph is valid")
}

/// SplitMix64: a small seeded generator (no dependency needed).
#[path = "demo/spike.rs"]
mod spike;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// One generated order: its text, what a correct run outputs, and its fault.
struct Planned {
    text: String,
    total_cents: u64,
    lines: u32,
    fault: Fault,
}

fn plan(id: u64, faults: f64) -> Planned {
    let mut rng = Rng(id.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xF1u64);
    let fault = if faults > 0.0 && id % OUTAGE_EVERY < OUTAGE_RUNS {
        // A burst of outages in a row: enough to trip the breaker.
        Fault::Outage
    } else if rng.chance(faults) {
        [
            Fault::Flaky,
            Fault::Outage,
            Fault::Panic,
            Fault::Slow,
            Fault::Invalid,
        ][rng.below(5) as usize]
    } else {
        Fault::None
    };
    let n = 1 + rng.below(6) as u32;
    let mut total_cents = 0;
    let mut lines = Vec::new();
    for i in 0..n {
        let units = if fault == Fault::Invalid && i == 0 {
            UNITS_MAX + 1
        } else {
            1 + rng.below(5) as u32
        };
        let cents = 100 + rng.below(9_900);
        total_cents += u64::from(units) * cents;
        lines.push(format!("{}x{units}@{cents}", 1_000 + rng.below(9_000)));
    }
    let mut text = format!(
        "order {id} cust={} lines={}",
        rng.below(CUSTOMERS),
        lines.join(",")
    );
    match fault {
        Fault::None => {}
        Fault::Slow => text += &format!(" !slow:{}", 200_000 + rng.below(800_000)),
        f => text += &format!(" !{}", f.tag()),
    }
    Planned {
        text,
        total_cents,
        lines: n,
        fault,
    }
}

struct Args {
    runs: u64,
    faults: f64,
    preset: String,
    trace: String,
    /// Where to serve the Prometheus metrics (feature `metrics-http`).
    metrics_addr: Option<String>,
    /// How long to keep serving them once the work is done.
    linger_secs: u64,
    /// `spike`: the load spike, outage and memory squeeze scenario instead of the runs.
    scenario: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        runs: 200_000,
        faults: 0.02,
        preset: "latency".into(),
        trace: "target/flujo-trace.json".into(),
        metrics_addr: None,
        linger_secs: 0,
        scenario: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--faults" => a.faults = value()?.parse().map_err(|e| format!("--faults: {e}"))?,
            "--preset" => a.preset = value()?,
            "--trace" => a.trace = value()?,
            "--metrics-addr" => a.metrics_addr = Some(value()?),
            "--scenario" => match value()?.as_str() {
                "spike" => a.scenario = Some("spike".into()),
                other => return Err(format!("--scenario: unknown `{other}` (spike)")),
            },
            "--linger-secs" => {
                a.linger_secs = value()?
                    .parse()
                    .map_err(|e| format!("--linger-secs: {e}"))?
            }
            "-h" | "--help" => {
                return Err("usage: demo [--runs N] [--faults RATE] \
                            [--preset latency|throughput|low_memory] [--trace PATH] \
                            [--metrics-addr HOST:PORT [--linger-secs N]] (metrics: \
                            --features metrics-http) [--scenario spike]"
                    .into())
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if !(0.0..=1.0).contains(&a.faults) {
        return Err("--faults must be in 0..=1".into());
    }
    Ok(a)
}

/// What the runs ended as, counted by the demo from the tickets.
#[derive(Default, Debug)]
struct Totals {
    ran: u64,
    succeeded: u64,
    failed: u64,
    aborted: u64,
    /// Failed runs whose error is a step panic (caught per attempt).
    step_panics: u64,
    /// Runs that panicked outside any step (none expected here).
    escaped_panics: u64,
    handed_back: u64,
    retried_submissions: u64,
    wrong: u64,
    fallbacks: u64,
    remote_answers: u64,
    lines_priced: u64,
}

fn progress(done: u64, total: u64) {
    let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
    let filled = (pct / 5) as usize;
    eprint!(
        "\r[{}{}] {pct:>3}% {done}/{total} runs",
        "#".repeat(filled),
        " ".repeat(20 - filled)
    );
    let _ = std::io::stderr().flush();
}

fn main() -> ExitCode {
    let mut args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !flujo_runtime::PANICS_CAUGHT {
        // Built with `panic = "abort"`: an injected panic would end the process, so the
        // demo runs without faults.
        eprintln!("panic = \"abort\": a panicking step would abort the process; faults off");
        args.faults = 0.0;
    }
    // Injected panics are expected: keep them off the terminal, report any other.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("injected"));
        if !injected {
            default_hook(info);
        }
    }));

    if args.scenario.as_deref() == Some("spike") {
        return if spike::run(&args.preset, &args.trace) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let mut config = match OptimizationConfig::preset(&args.preset) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--preset: {e}");
            return ExitCode::from(2);
        }
    };
    // Events (for the trace), one run in 1024 per worker sampled so the trace stays small.
    config.telemetry.level = TelemetryLevel::Events;
    config.telemetry.run_sample_period = 1024;
    config.telemetry.ring_capacity = config.telemetry.ring_capacity.max(4096);
    // The monitor: 100 ms buckets (the demo lasts a few seconds), and a few alert rules.
    config.monitor.resolution = Duration::from_millis(100);
    config.monitor.rules = demo_rules();
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&alerts_seen);
    let executor = Executor::<Msg, Ctx>::builder(config)
        .on_alert(move |_: &AlertEvent| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("a valid configuration");
    let metrics = match serve_metrics(&executor, args.metrics_addr.as_deref()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("--metrics-addr: {e}");
            return ExitCode::from(2);
        }
    };

    // One breaker for the remote FX service, shared by name: any graph that guards a call
    // to it takes the same one from the registry.
    let breakers = BreakerRegistry::new(16);
    let breaker = breakers
        .get_or_create(
            "fx-service",
            BreakerConfig {
                consecutive_failures_to_open: 5,
                window_calls: 100,
                failure_rate_percent_to_open: 50,
                window_calls_min: 20,
                slow_call_ticks: 0,
                open_ticks: ticks(Duration::from_millis(1)),
                half_open_probes_max: 3,
                half_open_successes_to_close: 2,
            },
        )
        .expect("a valid breaker");
    let graph = Arc::new(build(Arc::clone(&breaker)));

    // One inline run first: the executor's `run` on this thread.
    let first = executor
        .run(&graph, Msg::Text(plan(0, 0.0).text), Ctx::default())
        .expect("no panic outside a step");
    assert_eq!(first.outcome, Outcome::Succeeded);

    let started = Instant::now();
    let mut totals = Totals::default();
    let mut pending: VecDeque<(u64, _)> = VecDeque::new();
    let expected_lines = AtomicU64::new(0);
    let mut last_bar = Instant::now();
    let take_done = |pending: &mut VecDeque<(u64, flujo_runtime::ticket::Ticket<_>)>,
                     totals: &mut Totals| {
        // Tickets end roughly in order; look at the front ones only.
        while let Some((id, ticket)) = pending.front_mut() {
            let done = match ticket.try_poll() {
                Ok(Some(done)) => done,
                Ok(None) => break,
                Err(e) => panic!("ticket {id}: {e:?}"),
            };
            let id = *id;
            pending.pop_front();
            account(id, done, totals, &expected_lines, args.faults);
        }
    };
    let priorities = [Priority::High, Priority::Normal, Priority::Low];
    for id in 1..=args.runs {
        let mut input = Msg::Text(plan(id, args.faults).text);
        let mut ctx = Ctx::default();
        let priority = priorities[(id % 3) as usize];
        let ticket = loop {
            // A submission over the admission limit or into a full queue waits for room
            // (up to 1 s) instead of being refused; one that still finds none comes back
            // with its input and is retried.
            let spec = SubmitSpec::default()
                .priority(priority)
                .deadline(Duration::from_secs(2))
                .wait(Duration::from_secs(1));
            match executor.submit_with(&graph, input, ctx, &spec) {
                Ok(t) => break t,
                Err(back) if back.reason != Refusal::ShuttingDown => {
                    totals.retried_submissions += 1;
                    (input, ctx) = (back.input, back.context);
                    take_done(&mut pending, &mut totals);
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(back) => panic!("refused: {}", back.reason),
            }
        };
        pending.push_back((id, ticket));
        if pending.len() > 64 {
            take_done(&mut pending, &mut totals);
        }
        if last_bar.elapsed() >= Duration::from_millis(100) {
            progress(totals.ran + totals.escaped_panics, args.runs);
            last_bar = Instant::now();
        }
    }
    while !pending.is_empty() {
        take_done(&mut pending, &mut totals);
        if last_bar.elapsed() >= Duration::from_millis(100) {
            progress(totals.ran + totals.escaped_panics, args.runs);
            last_bar = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    progress(totals.ran + totals.escaped_panics, args.runs);
    eprintln!();
    let shutdown = executor.shutdown(flujo_runtime::Drain::Finish);
    // Let the last bucket close, so the windows hold every run.
    std::thread::sleep(Duration::from_millis(110));
    let windows = executor.windows();

    let report = executor.report();
    println!("{report}");
    print_windows(&windows);
    println!(
        "preset {}, {} worker threads, admission limit now {}",
        args.preset,
        executor.threads(),
        executor.concurrency_limit()
    );
    let rate = args.runs as f64 / elapsed.as_secs_f64();
    println!(
        "{} runs in {:.2} s ({rate:.0} runs/s), fault rate {}",
        args.runs,
        elapsed.as_secs_f64(),
        args.faults
    );
    println!(
        "ran {} = succeeded {} + failed {} (step panics {}) + aborted {}; panicked outside a step {}; handed back {}",
        totals.ran,
        totals.succeeded,
        totals.failed,
        totals.step_panics,
        totals.aborted,
        totals.escaped_panics,
        totals.handed_back
    );
    println!(
        "retried submissions {}, FX fallbacks {}, remote answers {}, lines priced {}",
        totals.retried_submissions, totals.fallbacks, totals.remote_answers, totals.lines_priced,
    );
    for b in breakers.snapshot() {
        let t = b.transitions;
        println!(
            "breaker `{}`: {:?} now; opened {} times, half-open {} times, closed {} times",
            b.name,
            b.state,
            t.closed_to_open + t.half_open_to_open,
            t.open_to_half_open,
            t.half_open_to_closed
        );
    }

    let mut ok = true;
    let mut check = |what: &str, holds: bool| {
        if !holds {
            eprintln!("MISMATCH: {what}");
            ok = false;
        }
    };
    check(
        "every submission ended once",
        totals.ran + totals.escaped_panics + totals.handed_back == args.runs,
    );
    check(
        "ran = succeeded + failed + aborted",
        totals.ran == totals.succeeded + totals.failed + totals.aborted,
    );
    check("no panic escaped a step", totals.escaped_panics == 0);
    check("no wrong output or context", totals.wrong == 0);
    check(
        "lines priced = lines of the succeeded orders",
        totals.lines_priced == expected_lines.load(Ordering::Relaxed),
    );
    check(
        "the report's runs = the tickets' runs + 1 inline run",
        report.runs.succeeded + report.runs.failed + report.runs.aborted == totals.ran + 1,
    );
    check(
        "the report's refusals = the retried submissions",
        report.runs.rejected() == totals.retried_submissions,
    );
    check(
        "the report's submissions = accepted + refused (+ the inline run)",
        report.runs.submitted == args.runs + totals.retried_submissions + 1,
    );
    check(
        "shutdown finished every submission",
        shutdown.finished == args.runs && shutdown.handed_back == 0,
    );
    check(
        "every alert event reached the callback and the report",
        alerts_seen.load(Ordering::Relaxed) == report.alerts.fired + report.alerts.resolved
            && report.alerts.events.len() as u64 + report.alerts.events_dropped
                == report.alerts.fired + report.alerts.resolved,
    );
    // The 60 s window holds every run when the demo took less than that.
    if let Some(longest) = windows.windows.last().filter(|_| elapsed.as_secs() < 55) {
        check(
            "the 60 s window's runs = the report's runs",
            longest.total.ended == report.runs.completed,
        );
        check(
            "the 60 s window's queue waits = the submitted runs that started",
            longest.total.queue_wait.samples == report.runs.completed - 1,
        );
        let parse = longest.steps.iter().find(|(s, _)| s == "parse");
        check(
            "the 60 s window's `parse` executions = the report's",
            parse.map(|(_, s)| s.ended) == report.step("parse").map(|s| s.executions),
        );
    }
    // Only this executor's runs use the breaker: its own counts are the runs' counts.
    let fx_row = report.breakers.iter().find(|r| r.step == "fx_remote");
    check(
        "the report's breaker row = the runs' breaker counters",
        fx_row.is_some_and(|row| {
            report.breakers_exact
                && row.rejected == report.counter(Counter::BreakerRejections)
                && row.to_open == report.counter(Counter::BreakerTrips)
        }),
    );

    match std::fs::File::create(&args.trace)
        .and_then(|f| executor.write_trace(std::io::BufWriter::new(f)))
    {
        Ok(()) => {
            let size = std::fs::metadata(&args.trace).map_or(0, |m| m.len());
            println!(
                "trace: {} ({:.1} KiB; open in https://ui.perfetto.dev)",
                args.trace,
                size as f64 / 1024.0
            );
        }
        Err(e) => {
            eprintln!("trace: {}: {e}", args.trace);
            ok = false;
        }
    }
    if ok {
        println!("all counts add up");
    }
    if let Some(server) = metrics {
        // The work is done: a scrape from now on sees these figures.
        println!(
            "metrics-report runs_completed={} runs_submitted={} parse_latency_samples={}",
            report.runs.completed,
            report.runs.submitted,
            report.step("parse").map_or(0, |s| s.latency.samples)
        );
        println!(
            "metrics: serving {} for {} s",
            metrics_url(&server),
            args.linger_secs
        );
        std::thread::sleep(Duration::from_secs(args.linger_secs));
    } // the endpoint stops here, with `server`
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The demo's alert rules: the FX call's error rate, every run's p99, the queue wait's p99 and
/// the refusal rate, each over the 1 s window.
fn demo_rules() -> Vec<AlertRule> {
    let second = Duration::from_secs(1);
    vec![
        AlertRule {
            step: Some("fx_remote".into()),
            window: second,
            above: 0.2,
            clear_below: 0.05,
            for_windows: 2,
            min_samples: 50,
            ..AlertRule::new("fx-errors", Metric::ErrorRate)
        },
        AlertRule {
            window: second,
            above: 0.050,
            clear_below: 0.020,
            for_windows: 2,
            min_samples: 100,
            ..AlertRule::new("run-p99", Metric::Latency)
        },
        AlertRule {
            window: second,
            above: 0.010,
            clear_below: 0.002,
            for_windows: 2,
            min_samples: 100,
            ..AlertRule::new("queue-wait-p99", Metric::QueueWait)
        },
        AlertRule {
            window: second,
            above: 0.2,
            clear_below: 0.05,
            for_windows: 2,
            min_samples: 100,
            ..AlertRule::new("refusals", Metric::RefusalRate)
        },
    ]
}

/// The monitor's windows as a table: every run per window, then the steps with errors.
fn print_windows(w: &Windows) {
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "monitor windows (ending {:.1} s after start, {} ms buckets)",
        w.at_ns as f64 / 1e9,
        w.resolution_ns / 1_000_000
    );
    println!(
        "  {:>6} {:>8} {:>10} {:>8} {:>9} {:>9} {:>10} {:>8}",
        "window", "runs", "runs/s", "errors", "p50 ms", "p99 ms", "queue p99", "refused"
    );
    for win in &w.windows {
        let t = &win.total;
        println!(
            "  {:>5}s {:>8} {:>10.0} {:>7.2}% {:>9.3} {:>9.3} {:>8.3}ms {:>8}",
            win.length_ns / 1_000_000_000,
            t.ended,
            t.rate,
            t.error_rate * 100.0,
            ms(t.latency.p50_ns),
            ms(t.latency.p99_ns),
            ms(t.queue_wait.p99_ns),
            win.refused
        );
    }
    if let Some(win) = w.windows.last() {
        for (step, s) in win.steps.iter().filter(|(_, s)| s.failed > 0) {
            let classes: Vec<String> = s
                .errors_by_class
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            println!(
                "  step {step}: {} of {} failed ({}), p99 {:.3} ms of {} samples",
                s.failed,
                s.ended,
                classes.join(", "),
                ms(s.latency.p99_ns),
                s.latency.samples
            );
        }
    }
    let firing = if w.firing.is_empty() {
        "none".to_string()
    } else {
        w.firing.join(", ")
    };
    println!("  alerts firing now: {firing}");
}

/// The metrics endpoint, served while the demo runs (`None` without `--metrics-addr`).
#[cfg(feature = "metrics-http")]
fn serve_metrics(
    executor: &Executor<Msg, Ctx>,
    addr: Option<&str>,
) -> Result<Option<flujo_runtime::metrics::MetricsServer>, String> {
    addr.map(|addr| {
        executor
            .serve_metrics(addr)
            .map_err(|e| format!("{addr}: {e}"))
    })
    .transpose()
}

#[cfg(feature = "metrics-http")]
fn metrics_url(server: &flujo_runtime::metrics::MetricsServer) -> String {
    format!("http://{}/metrics", server.local_addr())
}

/// Without the feature `metrics-http` there is no endpoint to serve.
#[cfg(not(feature = "metrics-http"))]
struct NoServer;

#[cfg(not(feature = "metrics-http"))]
fn serve_metrics(_: &Executor<Msg, Ctx>, addr: Option<&str>) -> Result<Option<NoServer>, String> {
    match addr {
        None => Ok(None),
        Some(_) => Err(
            "the metrics endpoint needs the crate feature `metrics-http` \
                        (cargo run --release -p flujo-runtime --features metrics-http \
                        --example demo -- --metrics-addr ...)"
                .into(),
        ),
    }
}

#[cfg(not(feature = "metrics-http"))]
fn metrics_url(_: &NoServer) -> String {
    String::new()
}

/// Counts one finished submission and checks its result against its plan.
fn account(
    id: u64,
    done: Finished<Msg, Ctx>,
    t: &mut Totals,
    expected_lines: &AtomicU64,
    faults: f64,
) {
    let planned = plan(id, faults);
    let done = match done {
        Finished::Ran(done) => done,
        Finished::Panicked(_) => {
            t.escaped_panics += 1;
            return;
        }
        Finished::HandedBack(_) => {
            t.handed_back += 1;
            return;
        }
        // `Finished` may gain ways to end (it is `#[non_exhaustive]`); this version has none.
        _ => unreachable!("a run ended neither ran, panicked nor handed back"),
    };
    t.ran += 1;
    t.remote_answers += u64::from(done.context.remote_answers);
    t.lines_priced += u64::from(done.context.lines_priced);
    match done.outcome {
        Outcome::Succeeded => {
            t.succeeded += 1;
            expected_lines.fetch_add(u64::from(planned.lines), Ordering::Relaxed);
            let right = match &done.output {
                Some(Msg::Order(o)) => {
                    if o.fx_from_fallback {
                        t.fallbacks += 1;
                    }
                    o.total_cents == planned.total_cents
                        && o.tier != 0
                        && o.fx_from_fallback == (done.context.remote_answers == 0)
                }
                _ => false,
            };
            let expected_fault = !matches!(planned.fault, Fault::Panic | Fault::Invalid);
            if !right || !expected_fault {
                t.wrong += 1;
            }
        }
        Outcome::Failed => {
            t.failed += 1;
            let class = match done.error.as_ref().map(|e| &e.kind) {
                Some(ErrorKind::Step(e)) => Some(e.class()),
                _ => None,
            };
            if class == Some(ErrorClass::Panic) {
                t.step_panics += 1;
            }
            let expected = match planned.fault {
                Fault::Panic => class == Some(ErrorClass::Panic),
                Fault::Invalid => class == Some(ErrorClass::Validation),
                _ => false,
            };
            // A failed run commits no context of the steps after the failure.
            if !expected || done.context.lines_priced != 0 {
                t.wrong += 1;
            }
        }
        Outcome::Aborted => t.aborted += 1,
    }
}
