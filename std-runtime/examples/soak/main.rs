//! The sustained stress suite (issue 20): a time-based soak of the executor under high
//! concurrency, memory pressure, CPU-heavy steps, heavy-tailed latency and injected faults,
//! checking the engine's accounting and bounds throughout and its heap after shutdown.
//!
//! ```text
//! cargo run --release -p flujo-runtime --features prometheus --example soak -- \
//!     [--secs 60] [--warm-up-secs 3] [--no-fault-secs S] [--rate 5000] [--submitters 16] \
//!     [--workers 2] [--seed N] [--reconfigure-ms 2000] [--poll-ms 100] [--ratio-max 3]
//! ```
//!
//! 16 submitter threads (12 waiting for room with `SubmitSpec::wait`, 4 plain `submit`s
//! whose refusals are counted; half wait for results with `Ticket::wait`, which spins
//! first, half with `Ticket::wait_parked`) submit a seeded mix of five graphs (`work.rs`)
//! at three priorities to a 2-worker executor, at `--rate` submissions a second shared
//! between them: a warm-up (`--warm-up-secs`, not in the figures), a no-fault phase (a
//! quarter of `--secs` unless `--no-fault-secs`), then a fault phase with injected transient
//! and permanent errors, panics, and Pareto-distributed latencies of blocking and waiting
//! steps.
//! Throughout, the main thread polls `report()` (and, with the feature `prometheus`, the
//! metrics' cache readings) every `--poll-ms`, samples RSS and the live heap, and
//! reconfigures the executor every `--reconfigure-ms` through six configurations (the three
//! presets, some with optimizations off; none changes a result).
//!
//! It fails (exit 1, each failure on a `FAILED:` line) unless every submission ended exactly
//! once, as itself, with the result its plan calls for; the report's identities held at every
//! poll and its counts match the submitters' at the end; the result cache stayed within its
//! budget and the run arenas within their bound; the live heap came back to within 1 MiB of
//! its baseline after shutdown; the healthy High-priority runs' p99 in the fault phase was at
//! most `--ratio-max` times their p99 in the no-fault phase; and no panic happened outside
//! the injected ones. `docs/soak.md` has what it prints and a run's figures.

mod alloc;
mod sys;
mod work;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use flujo_core::interp::{ErrorKind, Outcome};
use flujo_core::policy::ErrorClass;
use flujo_core::telemetry::{Counter, Histogram};
use flujo_runtime::blocking::{BlockingConfig, BlockingPool};
use flujo_runtime::config::{CacheConfig, Optimization, OptimizationConfig};
use flujo_runtime::report::Report;
use flujo_runtime::{Drain, Executor, Finished, Refusal, SubmitSpec};

use work::{Ctx, Fault, Graphs, Job, Kind, Plan, Rng};

#[global_allocator]
static HEAP: alloc::Counting = alloc::Counting;

/// How far above its baseline the live heap may end.
const HEAP_SLACK_BYTES: u64 = 1 << 20;
/// The result cache's budget (bytes, entries) and shards: far less than the payloads' key
/// space holds (2048 keys of 4 KiB - 1 MiB, about 300 MiB), so the cache evicts all along.
const CACHE_BYTES_MAX: usize = 32 << 20;
const CACHE_ENTRIES_MAX: usize = 4096;
const CACHE_SHARDS: usize = 16;
/// How long a waiting submitter waits for room before its submission is refused.
const ROOM_WAIT: Duration = Duration::from_millis(200);
/// Submitters with an index below this wait for room; the others submit plainly.
const WAITING_SUBMITTERS_OF_16: usize = 12;
/// Failures kept for printing (the count is exact).
const FAILURES_KEPT: usize = 20;

/// The phases, in the order they run: warm-up (no faults; checked, not in the figures),
/// no-fault, fault; then stop.
const PHASE_NO_FAULT: u8 = 0;
const PHASE_FAULT: u8 = 1;
const PHASE_WARM_UP: u8 = 2;
const PHASE_STOP: u8 = 3;
const PHASES: usize = 3;
const PHASE_NAMES: [&str; PHASES] = ["no-fault", "fault", "warm-up"];

struct Args {
    secs: f64,
    no_fault_secs: Option<f64>,
    warm_up_secs: f64,
    submitters: usize,
    workers: usize,
    seed: u64,
    reconfigure_ms: u64,
    poll_ms: u64,
    ratio_max: f64,
    /// Submissions per second, shared by the submitters (0: each submits as soon as its
    /// last submission ended).
    rate: u64,
}

fn usage() -> String {
    "usage: soak [--secs S] [--warm-up-secs S] [--no-fault-secs S] [--rate N] \
     [--submitters N] [--workers N] [--seed N] [--reconfigure-ms MS] [--poll-ms MS] \
     [--ratio-max X]"
        .into()
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        secs: 60.0,
        no_fault_secs: None,
        warm_up_secs: 3.0,
        submitters: 16,
        workers: 2,
        seed: 20,
        reconfigure_ms: 2000,
        poll_ms: 100,
        ratio_max: 3.0,
        rate: 5000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(usage());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: not a number: {value}");
        match flag.as_str() {
            "--secs" => a.secs = value.parse().map_err(|_| bad())?,
            "--no-fault-secs" => a.no_fault_secs = Some(value.parse().map_err(|_| bad())?),
            "--warm-up-secs" => a.warm_up_secs = value.parse().map_err(|_| bad())?,
            "--submitters" => a.submitters = value.parse().map_err(|_| bad())?,
            "--workers" => a.workers = value.parse().map_err(|_| bad())?,
            "--seed" => a.seed = value.parse().map_err(|_| bad())?,
            "--reconfigure-ms" => a.reconfigure_ms = value.parse().map_err(|_| bad())?,
            "--poll-ms" => a.poll_ms = value.parse().map_err(|_| bad())?,
            "--ratio-max" => a.ratio_max = value.parse().map_err(|_| bad())?,
            "--rate" => a.rate = value.parse().map_err(|_| bad())?,
            other => return Err(format!("unknown argument `{other}`\n{}", usage())),
        }
    }
    let no_fault = a.no_fault_secs.unwrap_or(a.secs / 4.0);
    let phases_ok = no_fault > 0.0 && a.warm_up_secs >= 0.0 && a.warm_up_secs + no_fault < a.secs;
    if !(a.secs > 0.0 && a.secs <= 7.0 * 86_400.0 && phases_ok) {
        return Err(
            "--secs must be in (0, 1 week], --no-fault-secs above 0, --warm-up-secs at least 0, \
             and the two less than --secs"
                .into(),
        );
    }
    if !(1..=1024).contains(&a.submitters) || !(1..=64).contains(&a.workers) {
        return Err("--submitters in 1..=1024, --workers in 1..=64".into());
    }
    if a.poll_ms == 0 || a.reconfigure_ms == 0 || a.ratio_max.is_nan() || a.ratio_max <= 0.0 {
        return Err("--poll-ms and --reconfigure-ms at least 1, --ratio-max above 0".into());
    }
    a.no_fault_secs = Some(no_fault);
    Ok(a)
}

/// Failures, counted exactly, the first few kept with their message.
#[derive(Default)]
struct Failures {
    count: u64,
    kept: Vec<String>,
}

impl Failures {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.kept.len() < FAILURES_KEPT {
            self.kept.push(what);
        }
    }
    fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.add(what());
        }
    }
    fn absorb(&mut self, other: Failures) {
        self.count += other.count;
        for f in other.kept {
            if self.kept.len() < FAILURES_KEPT {
                self.kept.push(f);
            }
        }
    }
}

/// Submissions made and ended, across the submitters: a submission is counted made before
/// its submit call and ended after its ending (refusal or ticket result) came back, so any
/// report must count at least the endings counted before it began, and at most the
/// submissions counted after it returned.
static MADE: AtomicU64 = AtomicU64::new(0);
static ENDED: AtomicU64 = AtomicU64::new(0);

/// Panics seen by the hook: the injected ones (in `gate`) and any other.
static PANICS_INJECTED: AtomicU64 = AtomicU64::new(0);
static PANICS_OTHER: AtomicU64 = AtomicU64::new(0);

fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() == Some(&work::INJECTED_PANIC) {
            PANICS_INJECTED.fetch_add(1, Ordering::Relaxed);
        } else {
            PANICS_OTHER.fetch_add(1, Ordering::Relaxed);
            default_hook(info);
        }
    }));
}

/// What one submitter saw in one phase.
struct PhaseTally {
    /// Submit-to-result latency of every run that ran, and of the healthy High runs (probes).
    latency: Histogram,
    latency_probe: Histogram,
    /// How long a probe's `submit_with` took (waiting for room included).
    room_probe: Histogram,
    /// Runs that ran, refusals, CPU time of this thread in the phase.
    ran: u64,
    refused: u64,
    probes_refused: u64,
    /// Runs stopped by their deadline.
    aborted: u64,
    cpu: Duration,
}

impl PhaseTally {
    fn new() -> Self {
        Self {
            latency: Histogram::new(),
            latency_probe: Histogram::new(),
            room_probe: Histogram::new(),
            ran: 0,
            refused: 0,
            probes_refused: 0,
            aborted: 0,
            cpu: Duration::ZERO,
        }
    }
    fn merge(&mut self, o: &PhaseTally) {
        self.latency.merge(&o.latency);
        self.latency_probe.merge(&o.latency_probe);
        self.room_probe.merge(&o.room_probe);
        self.ran += o.ran;
        self.refused += o.refused;
        self.probes_refused += o.probes_refused;
        self.aborted += o.aborted;
        self.cpu += o.cpu;
    }
}

/// What one submitter saw in all.
struct Tally {
    made: u64,
    refused: [u64; 4],
    ran: u64,
    succeeded: u64,
    failed: u64,
    aborted: u64,
    handed_back: u64,
    panicked_outside: u64,
    /// Runs failed with a panic-class error (the injected panics that ran).
    step_panics: u64,
    faults_planned: [u64; 4],
    by_kind: [u64; 5],
    /// Runs whose output the submitter recomputed and compared.
    outputs_checked: u64,
    phases: [PhaseTally; PHASES],
    failures: Failures,
}

impl Tally {
    fn new() -> Self {
        Self {
            made: 0,
            refused: [0; 4],
            ran: 0,
            succeeded: 0,
            failed: 0,
            aborted: 0,
            handed_back: 0,
            panicked_outside: 0,
            step_panics: 0,
            faults_planned: [0; 4],
            by_kind: [0; 5],
            outputs_checked: 0,
            phases: [PhaseTally::new(), PhaseTally::new(), PhaseTally::new()],
            failures: Failures::default(),
        }
    }
    fn merge(&mut self, o: Tally) {
        self.made += o.made;
        for (mine, theirs) in self.refused.iter_mut().zip(o.refused) {
            *mine += theirs;
        }
        self.ran += o.ran;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.aborted += o.aborted;
        self.handed_back += o.handed_back;
        self.panicked_outside += o.panicked_outside;
        self.step_panics += o.step_panics;
        for i in 0..4 {
            self.faults_planned[i] += o.faults_planned[i];
        }
        for i in 0..5 {
            self.by_kind[i] += o.by_kind[i];
        }
        self.outputs_checked += o.outputs_checked;
        for (p, q) in self.phases.iter_mut().zip(&o.phases) {
            p.merge(q);
        }
        self.failures.absorb(o.failures);
    }
}

fn fault_index(f: Fault) -> usize {
    match f {
        Fault::None => 0,
        Fault::Transient(_) => 1,
        Fault::Permanent => 2,
        Fault::Panic => 3,
    }
}

/// How each submitter submits and waits.
#[derive(Clone, Copy)]
struct Style {
    /// `SubmitSpec::wait(ROOM_WAIT)`, or a plain submission refused at once.
    wait_for_room: bool,
    /// `Ticket::wait` (spins first) or `Ticket::wait_parked`.
    spin: bool,
}

struct Env<'a> {
    ex: &'a Executor<Job, Ctx>,
    graphs: &'a Graphs,
    phase: &'a AtomicU8,
    rounds_per_us: u64,
    ticks_per_s: u64,
    pacer: Pacer,
}

/// The submitters' shared schedule: submission slots `1 / rate` apart, each taken by
/// whichever submitter is free, so the offered load is the same in both phases as long as
/// some submitter is free when a slot comes (a submitter waiting for a slow run leaves its
/// slots to the others). A slot missed is not made up: the schedule restarts from now.
struct Pacer {
    origin: Instant,
    period_ns: u64,
    /// The next free slot, in nanoseconds after `origin`.
    next_ns: AtomicU64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Self {
            origin: Instant::now(),
            period_ns: 1_000_000_000u64.checked_div(rate).unwrap_or(0),
            next_ns: AtomicU64::new(0),
        }
    }

    /// Sleeps until this submitter's slot (at once with no rate).
    fn wait_turn(&self) {
        if self.period_ns == 0 {
            return;
        }
        let now = self.origin.elapsed().as_nanos() as u64;
        let mut cur = self.next_ns.load(Ordering::Relaxed);
        let slot = loop {
            let slot = cur.max(now);
            match self.next_ns.compare_exchange_weak(
                cur,
                slot + self.period_ns,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break slot,
                Err(seen) => cur = seen,
            }
        };
        if slot > now {
            std::thread::sleep(Duration::from_nanos(slot - now));
        }
    }
}

/// One submitter thread: submits, waits, checks, until the phase says stop.
fn submitter(env: &Env<'_>, index: usize, style: Style, seed: u64) -> Tally {
    let mut t = Tally::new();
    let mut rng = Rng::new(seed);
    let mut phase = env.phase.load(Ordering::Acquire);
    let mut cpu_mark = sys::thread_cpu(env.ticks_per_s).unwrap_or_default();
    let mut seq = 0u64;
    while phase != PHASE_STOP {
        env.pacer.wait_turn();
        let faults = phase == PHASE_FAULT;
        let plan = Plan::draw(&mut rng, faults, env.rounds_per_us);
        let id = ((index as u64) << 40) | seq;
        seq += 1;
        t.made += 1;
        MADE.fetch_add(1, Ordering::SeqCst);
        t.faults_planned[fault_index(plan.job.fault)] += 1;
        let mut spec = SubmitSpec::default()
            .priority(plan.priority)
            .deadline(plan.deadline);
        if style.wait_for_room {
            spec = spec.wait(ROOM_WAIT);
        }
        let graph = env.graphs.of(plan.kind);
        let pt = &mut t.phases[phase as usize];
        let start = Instant::now();
        match env
            .ex
            .submit_with(graph, plan.job.clone(), Ctx { id }, &spec)
        {
            Err(back) => {
                ENDED.fetch_add(1, Ordering::SeqCst);
                t.refused[back.reason.index()] += 1;
                pt.refused += 1;
                if plan.kind == Kind::Probe {
                    pt.probes_refused += 1;
                }
                t.failures
                    .check(back.context.id == id && back.input == plan.job, || {
                        format!(
                            "refused submission {id:#x} came back as {:#x}",
                            back.context.id
                        )
                    });
                t.failures.check(back.reason != Refusal::ShuttingDown, || {
                    format!("submission {id:#x} refused ShuttingDown before the shutdown")
                });
                if !style.wait_for_room {
                    // A plain submitter backs off a little before its next submission.
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Ok(ticket) => {
                let submitted = start.elapsed();
                let done = if style.spin {
                    ticket.wait()
                } else {
                    ticket.wait_parked()
                };
                let latency_ns = start.elapsed().as_nanos() as u64;
                ENDED.fetch_add(1, Ordering::SeqCst);
                match done {
                    Ok(Finished::Ran(c)) => {
                        t.ran += 1;
                        pt.ran += 1;
                        t.by_kind[plan.kind.index()] += 1;
                        pt.latency.record(latency_ns);
                        if plan.kind == Kind::Probe {
                            pt.latency_probe.record(latency_ns);
                            pt.room_probe.record(submitted.as_nanos() as u64);
                        }
                        t.failures.check(c.context.id == id, || {
                            format!("submission {id:#x} ended as {:#x}", c.context.id)
                        });
                        let sample = seq.is_multiple_of(32);
                        let late = Duration::from_nanos(latency_ns) >= plan.deadline;
                        if judge(&plan, c, sample, late, &mut t) == Outcome::Aborted {
                            t.phases[phase as usize].aborted += 1;
                        }
                    }
                    Ok(Finished::HandedBack(back)) => {
                        t.handed_back += 1;
                        t.failures.add(format!(
                            "submission {id:#x} handed back ({}) before the shutdown, as {:#x}",
                            back.reason, back.context.id
                        ));
                    }
                    Ok(Finished::Panicked(p)) => {
                        t.panicked_outside += 1;
                        t.failures.add(format!(
                            "submission {id:#x} panicked outside a step: {}",
                            p.message
                        ));
                    }
                    Ok(_) => t
                        .failures
                        .add(format!("submission {id:#x}: an unknown ending")),
                    Err(e) => t
                        .failures
                        .add(format!("submission {id:#x}: ticket error {e:?}")),
                }
            }
        }
        let now_phase = env.phase.load(Ordering::Acquire);
        if now_phase != phase {
            let cpu = sys::thread_cpu(env.ticks_per_s).unwrap_or_default();
            t.phases[phase as usize].cpu += cpu.saturating_sub(cpu_mark);
            cpu_mark = cpu;
            phase = now_phase;
        }
    }
    t
}

/// Checks a run's ending against its plan. `late`: the run's deadline had passed when its
/// ticket answered (then, and only then, it may have been stopped by it: aborted, or a
/// `remote` or `poll` attempt failed as a timeout).
fn judge(
    plan: &Plan,
    c: flujo_runtime::Completed<Job, Ctx>,
    sample: bool,
    late: bool,
    t: &mut Tally,
) -> Outcome {
    let kind = plan.kind;
    let id = c.context.id;
    let class = match c.error.as_ref().map(|e| &e.kind) {
        Some(ErrorKind::Step(e)) => Some(e.class()),
        _ => None,
    };
    let slow_tail = late && kind.is_slow_kind();
    let outcome = c.outcome;
    match outcome {
        Outcome::Succeeded => {
            t.succeeded += 1;
            let expected_success = matches!(plan.job.fault, Fault::None | Fault::Transient(_));
            let out = c.output.as_ref();
            let right_shape = out.is_some_and(|o| o.kind == kind && o.blob.is_empty());
            let expected = plan.expected_acc(sample);
            if expected.is_some() {
                t.outputs_checked += 1;
            }
            let right_acc = match expected {
                Some(acc) => out.is_some_and(|o| o.acc == acc),
                None => true,
            };
            t.failures
                .check(expected_success && right_shape && right_acc, || {
                    format!(
                    "run {id:#x} ({}, fault {:?}) succeeded with {:?}, expected acc {expected:?}",
                    kind.name(),
                    plan.job.fault,
                    out.map(|o| o.acc)
                )
                });
        }
        Outcome::Failed => {
            t.failed += 1;
            if class == Some(ErrorClass::Panic) {
                t.step_panics += 1;
            }
            let step = c.error.as_ref().map_or("", |e| e.step.as_str());
            let expected = match plan.job.fault {
                Fault::Permanent => class == Some(ErrorClass::Permanent) && step.ends_with("_gate"),
                Fault::Panic => class == Some(ErrorClass::Panic) && step.ends_with("_gate"),
                // A slow call past the run's deadline fails its attempt as a timeout.
                _ => slow_tail && class == Some(ErrorClass::Timeout),
            };
            t.failures.check(expected, || {
                format!(
                    "run {id:#x} ({}, fault {:?}, slow {} µs) failed: {:?}",
                    kind.name(),
                    plan.job.fault,
                    plan.job.slow_ns / 1000,
                    c.error
                )
            });
        }
        Outcome::Aborted => {
            t.aborted += 1;
            let deadline = matches!(
                c.error.as_ref().map(|e| &e.kind),
                Some(ErrorKind::DeadlineExceeded)
            );
            t.failures.check(late && deadline, || {
                format!(
                    "run {id:#x} ({}, fault {:?}, slow {} µs) aborted: {:?}",
                    kind.name(),
                    plan.job.fault,
                    plan.job.slow_ns / 1000,
                    c.error
                )
            });
        }
    }
    outcome
}

/// The configurations the soak cycles through: the three presets, some with optimizations
/// off (none changes a result), each with the soak's workers and result cache.
fn configs(workers: usize) -> Vec<(&'static str, OptimizationConfig)> {
    let named = [
        ("latency", OptimizationConfig::latency()),
        ("throughput", OptimizationConfig::throughput()),
        ("low_memory", OptimizationConfig::low_memory()),
        (
            "latency, pooling off",
            OptimizationConfig::latency().with_off(Optimization::Pooling),
        ),
        (
            "throughput, fast paths and copy-on-write off",
            OptimizationConfig::throughput()
                .with_off(Optimization::FastPaths)
                .with_off(Optimization::CopyOnWrite),
        ),
        (
            "low_memory, inline cutoff and telemetry off",
            OptimizationConfig::low_memory()
                .with_off(Optimization::InlineCutoff)
                .with_off(Optimization::Telemetry),
        ),
    ];
    named
        .into_iter()
        .map(|(name, mut c)| {
            c.workers = workers;
            c.result_cache = cache_config();
            (name, c)
        })
        .collect()
}

fn cache_config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        max_entries: CACHE_ENTRIES_MAX,
        max_bytes: CACHE_BYTES_MAX,
        ttl: None,
        flight_timeout: Some(Duration::from_millis(50)),
        shards: CACHE_SHARDS,
    }
}

fn build_executor(config: OptimizationConfig) -> Executor<Job, Ctx> {
    Executor::builder(config)
        .cache_weigher(work::weigh)
        .build()
        .expect("a valid configuration")
}

/// The result cache's bytes and entries, read from the metrics exposition (the report does
/// not carry them): `None` without the feature `prometheus`.
#[cfg(feature = "prometheus")]
fn cache_reading(ex: &Executor<Job, Ctx>, text: &mut String) -> Option<(u64, u64)> {
    text.clear();
    ex.render_metrics(text);
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    Some((gauge("flujo_cache_bytes")?, gauge("flujo_cache_entries")?))
}

#[cfg(not(feature = "prometheus"))]
fn cache_reading(_: &Executor<Job, Ctx>, _: &mut String) -> Option<(u64, u64)> {
    None
}

/// The engine's histogram of High runs' queue wait (submission to start), parsed from a
/// rendered exposition: `(le in seconds, cumulative count)` per bucket, `+Inf` last. Empty
/// without the feature `prometheus` (nothing rendered).
fn high_queue_wait(text: &str) -> Vec<(f64, u64)> {
    const PREFIX: &str = "flujo_queue_wait_seconds_bucket{priority=\"high\",le=\"";
    text.lines()
        .filter_map(|l| {
            let (le, count) = l.strip_prefix(PREFIX)?.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The upper edge (µs) of the bucket holding the `q` quantile of the counts added between
/// two readings of [`high_queue_wait`].
fn bucket_quantile_us(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta = |i: usize| after[i].1 - before.get(i).map_or(0, |b| b.1);
    let total = delta(after.len().checked_sub(1)?);
    if total == 0 {
        return None;
    }
    let target = (q * total as f64).ceil() as u64;
    (0..after.len())
        .find(|&i| delta(i) >= target)
        .map(|i| after[i].0 * 1e6)
}

/// The largest run arena one pooled runner reserves under any of `configs` (each one's
/// `max_records`): measured on a throwaway executor per configuration, one run each.
fn arena_bound_per_runner(configs: &[(&str, OptimizationConfig)], graphs: &Graphs) -> u64 {
    let mut most = 0;
    for (_, c) in configs {
        let mut c = c.clone();
        c.workers = 1;
        let ex = build_executor(c);
        let job = Plan::draw(&mut Rng::new(1), false, 1).job;
        let probe = Job {
            kind: Kind::Probe,
            ..job
        };
        ex.run(graphs.of(Kind::Probe), probe, Ctx::default())
            .expect("the probe runs");
        let pool = ex.report().pool;
        most = most.max(pool.arena_bytes_reserved / pool.pool_live.max(1));
    }
    most
}

/// Runs each graph once inline on a throwaway executor (one with an injected panic), so
/// that what the process makes once on first use (the clock's origin, the panic machinery,
/// stdout's buffer) exists before the heap baseline is taken.
fn warm_up(graphs: &Graphs, rounds_per_us: u64) {
    let ex = build_executor(configs(1).remove(0).1);
    let mut rng = Rng::new(7);
    let mut seen = [false; 5];
    while seen.iter().any(|s| !s) {
        let plan = Plan::draw(&mut rng, false, rounds_per_us);
        seen[plan.kind.index()] = true;
        ex.run(graphs.of(plan.kind), plan.job, Ctx::default())
            .expect("no panic outside a step");
    }
    let mut job = Plan::draw(&mut rng, false, rounds_per_us).job;
    job.kind = Kind::Cpu;
    job.fault = Fault::Panic;
    let c = ex
        .run(graphs.of(Kind::Cpu), job, Ctx::default())
        .expect("caught in the step");
    assert_eq!(
        c.outcome,
        Outcome::Failed,
        "the warm-up's injected panic fails its run"
    );
    let _ = ex.report();
}

/// The main thread's readings across the soak.
#[derive(Default)]
struct Readings {
    polls: u64,
    reconfigures: u64,
    rss_min: u64,
    rss_max: u64,
    heap_max: u64,
    cache_bytes_max: u64,
    cache_entries_max: u64,
    cache_read: bool,
    arena_reserved_max: u64,
    arena_used_max: u64,
    /// The bound one pooled runner's arena reserves under any configuration of the cycle.
    arena_per_runner: u64,
    pool_live_max: u64,
    engine_bytes_max: u64,
    in_flight_max: u64,
    limit_min: u64,
    limit_max: u64,
}

/// Checks one report's identities and bounds; notes its readings.
fn poll(
    ex: &Executor<Job, Ctx>,
    arena_per_runner: u64,
    text: &mut String,
    r: &mut Readings,
    failures: &mut Failures,
    page: u64,
    config: &str,
) {
    let ended_before = ENDED.load(Ordering::SeqCst);
    let rep = ex.report();
    let made_after = MADE.load(Ordering::SeqCst);
    check_identities(&rep, failures, "poll");
    let runs = &rep.runs;
    let ended = runs.completed + runs.panicked + runs.handed_back + runs.rejected();
    failures.check(
        ended >= ended_before && runs.submitted <= made_after,
        || {
            format!(
            "a report (configuration: {config}) counts {ended} ended of {} submitted, while the \
             submitters saw {ended_before} end before it and made {made_after} by its end",
            runs.submitted
        )
        },
    );
    let pool = &rep.pool;
    failures.check(pool.arena_bytes_used <= pool.arena_bytes_reserved, || {
        format!(
            "arena bytes used {} above reserved {}",
            pool.arena_bytes_used, pool.arena_bytes_reserved
        )
    });
    let arena_bound = pool.pool_live * arena_per_runner;
    failures.check(pool.arena_bytes_reserved <= arena_bound, || {
        format!(
            "arenas reserve {} bytes, above {} runners x {arena_per_runner}",
            pool.arena_bytes_reserved, pool.pool_live
        )
    });
    let mut engine = pool.arena_bytes_reserved;
    if let Some((bytes, entries)) = cache_reading(ex, text) {
        r.cache_read = true;
        failures.check(bytes <= CACHE_BYTES_MAX as u64, || {
            format!("the result cache holds {bytes} bytes, above its budget {CACHE_BYTES_MAX}")
        });
        failures.check(entries <= CACHE_ENTRIES_MAX as u64, || {
            format!("the result cache holds {entries} entries, above {CACHE_ENTRIES_MAX}")
        });
        r.cache_bytes_max = r.cache_bytes_max.max(bytes);
        r.cache_entries_max = r.cache_entries_max.max(entries);
        engine += bytes;
    }
    r.polls += 1;
    r.engine_bytes_max = r.engine_bytes_max.max(engine);
    r.arena_reserved_max = r.arena_reserved_max.max(pool.arena_bytes_reserved);
    r.arena_used_max = r.arena_used_max.max(pool.arena_bytes_used);
    r.pool_live_max = r.pool_live_max.max(pool.pool_live);
    r.in_flight_max = r.in_flight_max.max(runs.in_flight);
    r.limit_min = r.limit_min.min(rep.admission.limit_current);
    r.limit_max = r.limit_max.max(rep.admission.limit_current);
    if let Some(rss) = sys::rss_bytes(page) {
        r.rss_min = r.rss_min.min(rss);
        r.rss_max = r.rss_max.max(rss);
    }
    r.heap_max = r.heap_max.max(alloc::live_bytes());
}

/// `submitted = completed + panicked + handed_back + rejected + in_flight`, and
/// `completed = succeeded + failed + aborted`.
fn check_identities(rep: &Report, failures: &mut Failures, when: &str) {
    let r = &rep.runs;
    let ended = r.completed + r.panicked + r.handed_back + r.rejected();
    failures.check(
        ended <= r.submitted && r.submitted == ended + r.in_flight,
        || {
            format!(
                "{when}: submitted {} != ended {ended} + in flight {}",
                r.submitted, r.in_flight
            )
        },
    );
    failures.check(r.completed == r.succeeded + r.failed + r.aborted, || {
        format!(
            "{when}: completed {} != succeeded {} + failed {} + aborted {}",
            r.completed, r.succeeded, r.failed, r.aborted
        )
    });
}

/// One row of the phases table: runs, rate, latencies, refusals and CPU over `wall` seconds.
fn phase_row(name: &str, pt: &PhaseTally, wall: f64, cpu: Duration) {
    println!(
        "{:<10}{:>10}{:>10.0}{:>10.0}{:>10.0}{:>12.0}{:>12.0}{:>14.0}{:>10}{:>12.1}{:>12.2}",
        name,
        pt.ran,
        pt.ran as f64 / wall.max(1e-9),
        us(pt.latency.quantile(0.5)),
        us(pt.latency.quantile(0.99)),
        us(pt.latency_probe.quantile(0.5)),
        us(pt.latency_probe.quantile(0.99)),
        us(pt.room_probe.quantile(0.99)),
        pt.refused,
        cpu.as_secs_f64() * 1e6 / pt.ran.max(1) as f64,
        cpu.as_secs_f64() / wall.max(1e-9),
    );
}

fn us(ns: Option<u64>) -> f64 {
    ns.map_or(f64::NAN, |n| n as f64 / 1000.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// What the soak measured, as plain numbers (no histograms: they would count in the heap
/// compared with the baseline).
struct Measured {
    failures: Failures,
    probe_p99_ns: [Option<u64>; 2],
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !flujo_runtime::PANICS_CAUGHT {
        eprintln!("soak: built with panic = \"abort\"; its injected panics need unwinding");
        return ExitCode::from(2);
    }
    install_panic_hook();
    let page = sys::page_bytes();
    let ticks_per_s = sys::clock_ticks_per_s();
    let rounds_per_us = work::calibrate_rounds_per_us();
    println!(
        "soak: {} s ({} s warm-up, {} s no-fault, then faults), {} submitters, {} workers, seed {}; \
         load average {}",
        args.secs,
        args.warm_up_secs,
        args.no_fault_secs.unwrap_or_default(),
        args.submitters,
        args.workers,
        args.seed,
        sys::load_average()
    );
    println!(
        "calibrated work: {rounds_per_us} rounds per µs; offered load: {}",
        if args.rate == 0 {
            "as fast as the submitters go".to_string()
        } else {
            format!("{} submissions/s", args.rate)
        }
    );

    // Warm up on throwaway executors, then take the baselines.
    let arena_per_runner = {
        let blocking = BlockingPool::new(BlockingConfig {
            threads: 2,
            queue: 4,
        })
        .expect("a pool");
        let graphs = Graphs::build(&blocking);
        warm_up(&graphs, rounds_per_us);
        let bound = arena_bound_per_runner(&configs(args.workers), &graphs);
        drop(graphs);
        blocking.shutdown(Duration::from_secs(1));
        bound
    };
    PANICS_INJECTED.store(0, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200)); // the throwaway pools' threads exit
    let threads_before = sys::threads();
    let rss_before = sys::rss_bytes(page);
    let heap_before = alloc::live_bytes();
    alloc::reset_peak();

    let out = soak(&args, rounds_per_us, ticks_per_s, page, arena_per_runner);
    let mut failures = out.failures;

    // Everything the soak made is dropped: the heap should be back at its baseline once the
    // executor's and the blocking pool's threads have exited (they free their thread-locals).
    let settle_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle_until
        && (sys::threads() > threads_before || alloc::live_bytes() > heap_before + HEAP_SLACK_BYTES)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let heap_after = alloc::live_bytes();
    let heap_peak = alloc::peak_bytes();
    let rss_after = sys::rss_bytes(page);
    println!(
        "heap (counting allocator): baseline {:.2} MiB, peak {:.1} MiB, after shutdown {:.2} MiB \
         ({:+} bytes); threads {} before, {} after",
        mib(heap_before),
        mib(heap_peak),
        mib(heap_after),
        heap_after as i64 - heap_before as i64,
        threads_before.map_or("n/a".into(), |t| t.to_string()),
        sys::threads().map_or("n/a".into(), |t| t.to_string()),
    );
    println!(
        "RSS: before {:.1} MiB, after {:.1} MiB",
        mib(rss_before.unwrap_or(0)),
        mib(rss_after.unwrap_or(0))
    );
    failures.check(heap_after <= heap_before + HEAP_SLACK_BYTES, || {
        format!(
            "the live heap ended {} bytes above its baseline (allowed: {HEAP_SLACK_BYTES})",
            heap_after - heap_before
        )
    });
    let others = PANICS_OTHER.load(Ordering::Relaxed);
    failures.check(others == 0, || {
        format!("{others} panics outside the injected ones")
    });

    let [healthy, faulty] = out.probe_p99_ns;
    let ratio = match (healthy, faulty) {
        (Some(h), Some(f)) => f as f64 / h.max(1) as f64,
        _ => f64::NAN,
    };
    println!(
        "healthy High runs (probes), p99: no-fault {:.0} µs, fault {:.0} µs: ratio {ratio:.2} \
         (at most {})",
        us(healthy),
        us(faulty),
        args.ratio_max
    );
    failures.check(ratio <= args.ratio_max, || {
        format!(
            "healthy High p99 in the fault phase is {ratio:.2}x the no-fault phase's (at most {})",
            args.ratio_max
        )
    });
    println!("load average at the end: {}", sys::load_average());
    if failures.count == 0 {
        println!("soak: every check held");
        ExitCode::SUCCESS
    } else {
        for f in &failures.kept {
            eprintln!("FAILED: {f}");
        }
        eprintln!(
            "soak: {} failed checks ({} shown)",
            failures.count,
            failures.kept.len()
        );
        ExitCode::FAILURE
    }
}

/// The soak proper: builds the executor, runs both phases, shuts down and drops everything.
fn soak(
    args: &Args,
    rounds_per_us: u64,
    ticks_per_s: u64,
    page: u64,
    arena_per_runner: u64,
) -> Measured {
    let mut failures = Failures::default();
    let configs = configs(args.workers);
    let ex = build_executor(configs[0].1.clone());
    let blocking = BlockingPool::new(BlockingConfig {
        threads: 8,
        queue: 64,
    })
    .expect("a valid blocking pool");
    let graphs = Graphs::build(&blocking);
    let phase = AtomicU8::new(PHASE_WARM_UP);
    let env = Env {
        ex: &ex,
        graphs: &graphs,
        phase: &phase,
        rounds_per_us,
        ticks_per_s,
        pacer: Pacer::new(args.rate),
    };
    let mut text = String::new();
    let mut r = Readings {
        rss_min: u64::MAX,
        limit_min: u64::MAX,
        arena_per_runner,
        ..Readings::default()
    };
    let waiting_submitters = (args.submitters * WAITING_SUBMITTERS_OF_16).div_ceil(16);
    let warm_up = Duration::from_secs_f64(args.warm_up_secs);
    let no_fault = warm_up + Duration::from_secs_f64(args.no_fault_secs.unwrap_or_default());
    let total = Duration::from_secs_f64(args.secs);
    // The engine's High queue-wait histogram at the end of each phase (by phase index).
    let mut queue_wait_marks: [Vec<(f64, u64)>; PHASES] = Default::default();
    let mut phase_cpu = [Duration::ZERO; PHASES];
    let mut phase_wall = [Duration::ZERO; PHASES];

    let tally = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.submitters)
            .map(|i| {
                let style = Style {
                    wait_for_room: i < waiting_submitters,
                    spin: i % 2 == 0,
                };
                let env = &env;
                let seed = work::mix(args.seed ^ (i as u64 + 1));
                std::thread::Builder::new()
                    .name(format!("submitter-{i}"))
                    .spawn_scoped(s, move || (style, submitter(env, i, style, seed)))
                    .expect("a submitter thread")
            })
            .collect();
        let start = Instant::now();
        let mut cpu_mark = sys::process_cpu(ticks_per_s).unwrap_or_default();
        let mut wall_mark = start;
        let mut next_reconfigure = start + Duration::from_millis(args.reconfigure_ms);
        let mut config_index = 0;
        let mut current = PHASE_WARM_UP;
        loop {
            std::thread::sleep(Duration::from_millis(args.poll_ms));
            poll(
                &ex,
                arena_per_runner,
                &mut text,
                &mut r,
                &mut failures,
                page,
                configs[config_index].0,
            );
            let now = Instant::now();
            if now >= next_reconfigure {
                config_index = (config_index + 1) % configs.len();
                if let Err(e) = ex.reconfigure(configs[config_index].1.clone()) {
                    failures.add(format!("reconfigure to {}: {e}", configs[config_index].0));
                }
                r.reconfigures += 1;
                next_reconfigure = now + Duration::from_millis(args.reconfigure_ms);
            }
            let elapsed = now - start;
            let wanted = if elapsed >= total {
                PHASE_STOP
            } else if elapsed >= no_fault {
                PHASE_FAULT
            } else if elapsed >= warm_up {
                PHASE_NO_FAULT
            } else {
                PHASE_WARM_UP
            };
            if wanted != current {
                // The poll just above rendered the metrics: the queue waits at this boundary.
                queue_wait_marks[usize::from(current)] = high_queue_wait(&text);
                let cpu = sys::process_cpu(ticks_per_s).unwrap_or_default();
                phase_cpu[current as usize] = cpu.saturating_sub(cpu_mark);
                phase_wall[current as usize] = now - wall_mark;
                (cpu_mark, wall_mark) = (cpu, now);
                phase.store(wanted, Ordering::Release);
                current = wanted;
                eprintln!(
                    "[{:.1} s] phase: {}",
                    elapsed.as_secs_f64(),
                    PHASE_NAMES.get(usize::from(wanted)).unwrap_or(&"stop")
                );
            }
            if current == PHASE_STOP {
                break;
            }
        }
        let mut all = Tally::new();
        let mut by_style: [[(u64, Duration); PHASES]; 2] = Default::default(); // [spin][phase]
        for h in handles {
            let (style, t) = h.join().expect("a submitter panicked");
            for (p, pt) in t.phases.iter().enumerate() {
                let cell = &mut by_style[usize::from(style.spin)][p];
                cell.0 += pt.ran + pt.refused;
                cell.1 += pt.cpu;
            }
            all.merge(t);
        }
        (all, by_style)
    });
    let (mut tally, by_style) = tally;

    // Drain: nothing is pending (every submitter waited for its last ticket).
    let shutdown = ex.shutdown(Drain::Finish);
    let rep = ex.report();
    poll(
        &ex,
        arena_per_runner,
        &mut text,
        &mut r,
        &mut failures,
        page,
        "after shutdown",
    );
    check_identities(&rep, &mut failures, "after shutdown");
    failures.check(rep.runs.in_flight == 0, || {
        format!("{} runs in flight after shutdown", rep.runs.in_flight)
    });
    failures.check(
        rep.pool.arena_bytes_reserved <= rep.pool.arena_bytes_reserved_idle_max,
        || {
            format!(
                "idle arenas reserve {} bytes, above their bound {}",
                rep.pool.arena_bytes_reserved, rep.pool.arena_bytes_reserved_idle_max
            )
        },
    );
    failures.absorb(std::mem::take(&mut tally.failures));
    let t = &tally;
    // Every submission ended exactly once: ran, refused or handed back (or panicked).
    let ended = t.ran + t.refused.iter().sum::<u64>() + t.handed_back + t.panicked_outside;
    failures.check(ended == t.made, || {
        format!("{} submissions made, {ended} ended", t.made)
    });
    failures.check(t.ran == t.succeeded + t.failed + t.aborted, || {
        "ran != succeeded + failed + aborted".into()
    });
    // The report's counts are the submitters' counts.
    let runs = &rep.runs;
    let mine = (
        t.made,
        t.ran,
        t.succeeded,
        t.failed,
        t.aborted,
        t.handed_back,
        t.panicked_outside,
    );
    let theirs = (
        runs.submitted,
        runs.completed,
        runs.succeeded,
        runs.failed,
        runs.aborted,
        runs.handed_back,
        runs.panicked,
    );
    failures.check(mine == theirs, || {
        format!(
            "report (submitted, completed, succeeded, failed, aborted, handed back, panicked) \
             {theirs:?} != the submitters' {mine:?}"
        )
    });
    let refused_report = [
        runs.rejected_queue_full,
        runs.rejected_over_limit,
        runs.rejected_shutting_down,
        runs.rejected_shed,
    ];
    let refused_mine = Refusal::ALL.map(|r| t.refused[r.index()]);
    failures.check(refused_report == refused_mine, || {
        format!(
            "refusals (queue full, over limit, shutting down, shed): report {refused_report:?}, \
             submitters {refused_mine:?}"
        )
    });
    failures.check(
        shutdown.finished == t.ran
            && shutdown.handed_back == 0
            && shutdown.cancelled == 0
            && shutdown.still_running == 0,
        || format!("the shutdown's counts are not the submitters': {shutdown:?}"),
    );
    let injected = PANICS_INJECTED.load(Ordering::Relaxed);
    failures.check(injected == t.step_panics, || {
        format!(
            "{injected} injected panics seen by the hook, {} runs failed by a panic",
            t.step_panics
        )
    });
    let bstats = blocking.shutdown(Duration::from_secs(2));
    let b = &bstats.stats;
    failures.check(
        b.accepted
            == b.completed
                + b.panicked
                + b.abandoned
                + b.handed_back
                + b.running as u64
                + b.queued as u64,
        || format!("blocking pool counts do not add up: {b:?}"),
    );

    print_figures(args, t, &rep, &r, &by_style, phase_cpu, phase_wall, b);
    // Where a healthy High run's time goes: the engine's own queue wait of High runs (every
    // High run, probes and the others), from submission to start, per phase.
    let marks = &queue_wait_marks;
    let between = |from: u8, to: u8| {
        bucket_quantile_us(&marks[usize::from(from)], &marks[usize::from(to)], 0.99)
    };
    match (
        between(PHASE_WARM_UP, PHASE_NO_FAULT),
        between(PHASE_NO_FAULT, PHASE_FAULT),
    ) {
        (Some(healthy), Some(faulty)) => println!(
            "High runs' queue wait (the engine's flujo_queue_wait_seconds, submission to start), \
             p99 at most {healthy:.0} µs no-fault, {faulty:.0} µs fault (bucket edges)"
        ),
        _ => println!("High runs' queue wait: not read (build with --features prometheus)"),
    }
    let probe_p99_ns = [0, 1].map(|p| t.phases[p].latency_probe.quantile(0.99));

    drop(graphs);
    drop(ex);
    drop(blocking);
    drop(tally);
    drop(rep);
    drop(text);
    Measured {
        failures,
        probe_p99_ns,
    }
}

#[allow(clippy::too_many_arguments)]
fn print_figures(
    args: &Args,
    t: &Tally,
    rep: &Report,
    r: &Readings,
    by_style: &[[(u64, Duration); PHASES]; 2],
    phase_cpu: [Duration; PHASES],
    phase_wall: [Duration; PHASES],
    b: &flujo_runtime::blocking::BlockingStats,
) {
    println!();
    println!(
        "{:<10}{:>10}{:>10}{:>10}{:>10}{:>12}{:>12}{:>14}{:>10}{:>12}{:>12}",
        "phase",
        "runs",
        "runs/s",
        "p50 µs",
        "p99 µs",
        "High p50",
        "High p99",
        "High room p99",
        "refused",
        "CPU/run µs",
        "cores busy"
    );
    for p in [usize::from(PHASE_WARM_UP), 0, 1] {
        let (name, pt) = (PHASE_NAMES[p], &t.phases[p]);
        phase_row(name, pt, phase_wall[p].as_secs_f64(), phase_cpu[p]);
    }
    let mut all = PhaseTally::new();
    for pt in &t.phases {
        all.merge(pt);
    }
    let wall: f64 = phase_wall.iter().map(Duration::as_secs_f64).sum();
    phase_row("all", &all, wall, phase_cpu.iter().sum());
    println!(
        "(latency: from the submit call to the ticket's result, waiting for room included; \
         High = the probe runs, High and never faulted; room = the probe's submit call)"
    );
    println!();
    println!(
        "submissions {}: ran {} (succeeded {}, failed {}, aborted {}), refused {} (queue full {}, \
         over limit {}, shutting down {}), handed back {}, panicked outside a step {}",
        t.made,
        t.ran,
        t.succeeded,
        t.failed,
        t.aborted,
        t.refused.iter().sum::<u64>(),
        t.refused[Refusal::QueueFull.index()],
        t.refused[Refusal::OverLimit.index()],
        t.refused[Refusal::ShuttingDown.index()],
        t.handed_back,
        t.panicked_outside
    );
    println!(
        "runs stopped by their deadline (50 ms for remote and poll, 5 s for the others): \
         warm-up {}, no-fault {}, fault {}",
        t.phases[usize::from(PHASE_WARM_UP)].aborted,
        t.phases[0].aborted,
        t.phases[1].aborted
    );
    println!(
        "runs by kind: {}; outputs recomputed and compared {}",
        Kind::ALL
            .iter()
            .map(|k| format!("{} {}", k.name(), t.by_kind[k.index()]))
            .collect::<Vec<_>>()
            .join(", "),
        t.outputs_checked
    );
    println!(
        "faults planned: transient {}, permanent {}, panic {} (panics caught in steps {}); \
         retries {}, cache hits {} (hit rate {:.2})",
        t.faults_planned[1],
        t.faults_planned[2],
        t.faults_planned[3],
        t.step_panics,
        rep.counter(Counter::Retries),
        rep.counter(Counter::CacheHits),
        rep.cache_hit_rate.unwrap_or(f64::NAN)
    );
    println!(
        "waits: lent {}, held {}, runs helped {}; blocking pool: accepted {}, completed {}, \
         abandoned {}, refused full {}",
        rep.waits.lent,
        rep.waits.held,
        rep.waits.helped,
        b.accepted,
        b.completed,
        b.abandoned,
        b.refused_full
    );
    println!(
        "report polls {}, reconfigures {} (through {} configurations), admission limit {}..{} \
         (seen {}..{}), runs in flight at most {}",
        r.polls,
        r.reconfigures,
        configs(args.workers).len(),
        r.limit_min,
        r.limit_max,
        rep.admission.limit_min_seen,
        rep.admission.limit_max_seen,
        r.in_flight_max
    );
    println!();
    if r.cache_read {
        println!(
            "result cache: peak {:.1} MiB of its {:.0} MiB budget, peak {} entries of {}",
            mib(r.cache_bytes_max),
            mib(CACHE_BYTES_MAX as u64),
            r.cache_entries_max,
            CACHE_ENTRIES_MAX
        );
    } else {
        println!(
            "result cache: not read (its bytes are in the metrics: build with --features \
             prometheus); its budget was not checked"
        );
    }
    println!(
        "run arenas: peak reserved {:.2} MiB by {} pooled runners at most (bound: {:.1} KiB each, \
         the most any configuration's max_records sets aside), peak used {:.1} KiB; idle after \
         the drain {:.2} MiB (bound {:.2} MiB)",
        mib(r.arena_reserved_max),
        r.pool_live_max,
        r.arena_per_runner as f64 / 1024.0,
        r.arena_used_max as f64 / 1024.0,
        mib(rep.pool.arena_bytes_reserved),
        mib(rep.pool.arena_bytes_reserved_idle_max),
    );
    println!(
        "peak engine memory (cache + arenas, at a poll): {:.1} MiB; peak live heap at a poll {:.1} \
         MiB; RSS {:.1}..{:.1} MiB",
        mib(r.engine_bytes_max),
        mib(r.heap_max),
        mib(if r.rss_min == u64::MAX { 0 } else { r.rss_min }),
        mib(r.rss_max)
    );
    println!();
    // The CPU a ticket's spin costs: submitter threads waiting with `wait` (spins, then
    // parks) against those waiting with `wait_parked`, per submission, per phase (the
    // submitter's own CPU: drawing the plan, submitting, waiting, checking).
    for p in [usize::from(PHASE_WARM_UP), 0, 1] {
        let name = PHASE_NAMES[p];
        let (spin_n, spin_cpu) = by_style[1][p];
        let (park_n, park_cpu) = by_style[0][p];
        let per = |n: u64, cpu: Duration| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
        let (spin_us, park_us) = (per(spin_n, spin_cpu), per(park_n, park_cpu));
        let spin_total = (spin_us - park_us).max(0.0) * spin_n as f64 / 1e6;
        println!(
            "ticket spin, {name}: CPU per submission {spin_us:.1} µs waiting with `wait` ({spin_n} \
             submissions) against {park_us:.1} µs with `wait_parked` ({park_n}): the spin costs \
             {:.1} µs per run, {spin_total:.2} s of CPU in all, {:.1}% of the process's {:.1} s",
            spin_us - park_us,
            100.0 * spin_total / phase_cpu[p].as_secs_f64().max(1e-9),
            phase_cpu[p].as_secs_f64()
        );
    }
}
