//! `--scenario spike`: the order pipeline through a load spike, an outage of the remote FX
//! service and a memory squeeze, each followed by calm, with the monitor's rules and three
//! degradation levels watching. Alerts and health moves are printed as they happen; the report
//! (its `alerts` and `health` sections), the windows and the trace show them after; the
//! scenario checks its own counts.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flujo_runtime::config::{
    Action, AlertRule, DegradationLevel, Metric, OptimizationConfig, TelemetryLevel,
};
use flujo_runtime::monitor::health::{Health, HealthEvent};
use flujo_runtime::monitor::AlertEvent;
use flujo_runtime::{Executor, Finished, Priority, Refusal, SubmitSpec};

use super::{build, plan, print_windows, Breaker, BreakerConfig, Ctx, Msg};

/// What the submitters do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Steady,
    Spike,
    Outage,
    Squeeze,
    Done,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Spike => "load spike",
            Phase::Outage => "FX outage",
            Phase::Squeeze => "memory squeeze",
            Phase::Done => "done",
        }
    }
}

const PHASES: [Phase; 5] = [
    Phase::Steady,
    Phase::Spike,
    Phase::Outage,
    Phase::Squeeze,
    Phase::Done,
];

/// Submitter threads: two in steady phases, all of them in the spike.
const SUBMITTERS: usize = 6;
/// The ballast the memory squeeze holds (as another part of the process would).
const BALLAST: usize = 96 << 20;

/// Counts of the submissions, by how they ended.
#[derive(Default)]
struct Counts {
    made: AtomicU64,
    ran: AtomicU64,
    succeeded: AtomicU64,
    shed: AtomicU64,
    over_limit: AtomicU64,
    queue_full: AtomicU64,
    other: AtomicU64,
}

/// The scenario's rules and levels on top of `config`, with a memory budget `budget` bytes.
fn configure(config: &mut OptimizationConfig, budget: u64) {
    let second = Duration::from_secs(1);
    config.telemetry.level = TelemetryLevel::Events;
    config.telemetry.run_sample_period = 256;
    config.monitor.resolution = Duration::from_millis(100);
    config.monitor.windows = vec![second, Duration::from_secs(10), Duration::from_secs(60)];
    config.monitor.rules = vec![
        AlertRule {
            window: second,
            above: 0.005,
            clear_below: 0.001,
            for_windows: 3,
            min_samples: 50,
            ..AlertRule::new("queue-wait-p99", Metric::QueueWait)
        },
        AlertRule {
            step: Some("fx_remote".into()),
            class: Some("transient".into()),
            window: second,
            above: 0.3,
            clear_below: 0.05,
            for_windows: 2,
            min_samples: 50,
            ..AlertRule::new("fx-errors", Metric::ErrorRate)
        },
        AlertRule {
            step: Some("fx_remote".into()),
            class: Some("circuit-open".into()),
            window: second,
            above: 0.3,
            clear_below: 0.05,
            for_windows: 2,
            min_samples: 50,
            ..AlertRule::new("fx-circuit-open", Metric::ErrorRate)
        },
    ];
    config.degradation.enabled = true;
    config.degradation.min_dwell = second;
    config.degradation.memory.budget_bytes = budget;
    config.degradation.levels = vec![
        DegradationLevel {
            name: "busy".into(),
            when: vec!["queue-wait-p99".into()],
            actions: vec![
                Action::ShedLow,
                Action::StopSampling,
                Action::InlineMore { factor: 4 },
            ],
            critical: false,
        },
        DegradationLevel {
            name: "memory".into(),
            when: vec!["memory".into()],
            actions: vec![Action::ShrinkCache { share: 0.25 }, Action::FreeIdleRunners],
            critical: false,
        },
        DegradationLevel {
            name: "outage".into(),
            when: vec!["fx-errors".into(), "fx-circuit-open".into()],
            actions: vec![Action::ShedNormal, Action::TightenAdmission { share: 0.5 }],
            critical: true,
        },
    ];
}

/// Resident memory now, in bytes.
fn rss() -> u64 {
    flujo_runtime::monitor::resources::read()
        .resident_bytes
        .unwrap_or(0)
}

pub(super) fn run(preset: &str, trace: &str) -> bool {
    let mut config = match OptimizationConfig::preset(preset) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--preset: {e}");
            return false;
        }
    };
    let rss0 = rss();
    let budget = rss0 + (BALLAST as u64) * 2 / 3;
    configure(&mut config, budget);
    let started = Instant::now();
    let at = move || started.elapsed().as_secs_f64();
    let moves: Arc<Mutex<Vec<(f64, HealthEvent)>>> = Arc::default();
    let alerts = Arc::new(AtomicU64::new(0));
    let (m, a) = (Arc::clone(&moves), Arc::clone(&alerts));
    let executor = Executor::<Msg, Ctx>::builder(config)
        .on_alert(move |e: &AlertEvent| {
            a.fetch_add(1, Ordering::Relaxed);
            println!(
                "[{:6.2} s] alert {} {}: {:.4} (threshold {:.4}, {} samples)",
                at(),
                e.rule,
                e.state.as_str(),
                e.value,
                e.threshold,
                e.samples
            );
        })
        .on_health(move |e: &HealthEvent| {
            println!(
                "[{:6.2} s] health {} -> {} (level {}; triggers [{}]); took [{}], undid [{}]",
                at(),
                e.from.as_str(),
                e.to.as_str(),
                e.level.as_deref().unwrap_or("-"),
                e.triggers.join(", "),
                e.taken.join(", "),
                e.undone.join(", ")
            );
            m.lock().unwrap().push((at(), e.clone()));
        })
        .build()
        .expect("a valid configuration");
    println!(
        "scenario spike: preset {preset}, resident {:.1} MiB at start, memory budget {:.1} MiB",
        rss0 as f64 / 1048576.0,
        budget as f64 / 1048576.0
    );
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 5,
            window_calls: 100,
            failure_rate_percent_to_open: 50,
            window_calls_min: 20,
            slow_call_ticks: 0,
            open_ticks: flujo_runtime::clock::ticks(Duration::from_millis(50)),
            half_open_probes_max: 3,
            half_open_successes_to_close: 2,
        })
        .expect("a valid breaker"),
    );
    let graph = Arc::new(build(breaker));
    let phase = AtomicU8::new(Phase::Steady as u8);
    let counts = Counts::default();
    let next_id = AtomicU64::new(1);
    let mut ok = true;
    std::thread::scope(|s| {
        for t in 0..SUBMITTERS {
            let (executor, graph, phase, counts, next_id) =
                (&executor, &graph, &phase, &counts, &next_id);
            s.spawn(move || submitter(t, executor, graph, phase, counts, next_id));
        }
        // Steady, then each pressure followed by calm until the health is back.
        for p in PHASES {
            let calm = |what: &str| {
                phase.store(Phase::Steady as u8, Ordering::Relaxed);
                let since = Instant::now();
                while since.elapsed() < Duration::from_millis(1500)
                    || executor.health() != Health::Healthy
                {
                    if since.elapsed() > Duration::from_secs(20) {
                        eprintln!("no recovery within 20 s after the {what}");
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                true
            };
            println!("[{:6.2} s] phase: {}", at(), p.name());
            match p {
                Phase::Steady => std::thread::sleep(Duration::from_secs(2)),
                Phase::Done => {}
                Phase::Squeeze => {
                    phase.store(p as u8, Ordering::Relaxed);
                    // Another part of the process takes memory, page by page, and gives it
                    // back after a while.
                    let mut ballast = vec![0u8; BALLAST];
                    for page in ballast.chunks_mut(4096) {
                        page[0] = 1;
                    }
                    std::hint::black_box(&ballast);
                    std::thread::sleep(Duration::from_millis(2500));
                    drop(ballast);
                    ok &= calm(p.name());
                }
                _ => {
                    phase.store(p as u8, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_secs(3));
                    ok &= calm(p.name());
                }
            }
        }
        phase.store(Phase::Done as u8, Ordering::Relaxed);
    });
    let shutdown = executor.shutdown(flujo_runtime::Drain::Finish);
    std::thread::sleep(Duration::from_millis(110));
    let windows = executor.windows();
    let report = executor.report();
    println!("{report}");
    print_windows(&windows);
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "scenario: {} submissions: ran {} (succeeded {}), shed {}, over limit {}, queue full {}",
        c(&counts.made),
        c(&counts.ran),
        c(&counts.succeeded),
        c(&counts.shed),
        c(&counts.over_limit),
        c(&counts.queue_full)
    );
    if let Err(e) =
        std::fs::File::create(trace).and_then(|f| executor.write_trace(std::io::BufWriter::new(f)))
    {
        eprintln!("trace: {trace}: {e}");
        ok = false;
    } else {
        println!("trace: {trace} (alerts and health moves on the `flujo monitor` thread)");
    }

    let mut check = |what: &str, holds: bool| {
        if !holds {
            eprintln!("MISMATCH: {what}");
            ok = false;
        }
    };
    let moves = moves.lock().unwrap();
    let reached = |h: fn(&Health) -> bool| moves.iter().any(|(_, e)| h(&e.to));
    check(
        "every submission ended once",
        c(&counts.made)
            == c(&counts.ran) + c(&counts.shed) + c(&counts.over_limit) + c(&counts.queue_full)
            && c(&counts.other) == 0,
    );
    check(
        "the report's runs = the runs seen",
        report.runs.completed == c(&counts.ran) && report.runs.panicked == 0,
    );
    check(
        "the report's shed refusals = the Shed refusals seen",
        report.runs.rejected_shed == c(&counts.shed),
    );
    check(
        "shutdown finished every accepted submission",
        shutdown.finished == c(&counts.ran) && shutdown.handed_back == 0,
    );
    check(
        "the spike degraded the health",
        reached(|h| *h == Health::Degraded(1)),
    );
    check(
        "the outage made it critical",
        reached(|h| *h == Health::Critical),
    );
    check(
        "the squeeze took the memory level",
        moves
            .iter()
            .any(|(_, e)| e.level.as_deref() == Some("memory")),
    );
    check(
        "the health came back",
        report.health.health == Health::Healthy
            && moves.last().is_some_and(|(_, e)| e.to == Health::Healthy),
    );
    check(
        "every action taken was undone, and counted",
        report
            .health
            .actions
            .iter()
            .all(|a| !a.active && a.taken >= 1 && a.taken == a.undone),
    );
    check(
        "every alert reached the callback, and resolved",
        c(&alerts) == report.alerts.fired + report.alerts.resolved
            && report.alerts.fired == report.alerts.resolved
            && report.alerts.firing.is_empty(),
    );
    if ok {
        println!("scenario spike: all counts add up; every pressure was met and undone");
    }
    ok
}

/// Submits orders while the phase is not `Done`: thread 0 and 1 always, the others in the
/// spike; faults by phase; mixed priorities; no waiting for room (a refusal is counted).
fn submitter(
    t: usize,
    executor: &Executor<Msg, Ctx>,
    graph: &Arc<flujo_core::graph::Graph<Msg, Ctx>>,
    phase: &AtomicU8,
    counts: &Counts,
    next_id: &AtomicU64,
) {
    let mut pending = std::collections::VecDeque::new();
    let priorities = [
        Priority::High,
        Priority::Normal,
        Priority::Normal,
        Priority::Low,
        Priority::Low,
    ];
    let wait_one = |pending: &mut std::collections::VecDeque<flujo_runtime::ticket::Ticket<_>>| {
        if let Some(ticket) = pending.pop_front() {
            match ticket.wait() {
                Ok(Finished::Ran(done)) => {
                    counts.ran.fetch_add(1, Ordering::Relaxed);
                    if done.outcome == flujo_core::interp::Outcome::Succeeded {
                        counts.succeeded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    loop {
        let p = match phase.load(Ordering::Relaxed) {
            0 => Phase::Steady,
            1 => Phase::Spike,
            2 => Phase::Outage,
            3 => Phase::Squeeze,
            _ => break,
        };
        if t >= 2 && p != Phase::Spike {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let mut text = plan(id, 0.0).text;
        match p {
            Phase::Spike => text += " !slow:300000",
            Phase::Outage => text += " !outage",
            _ => {}
        }
        let priority = priorities[(id % 5) as usize];
        let spec = SubmitSpec::default()
            .priority(priority)
            .deadline(Duration::from_secs(5));
        counts.made.fetch_add(1, Ordering::Relaxed);
        match executor.submit_with(graph, Msg::Text(text), Ctx::default(), &spec) {
            Ok(ticket) => pending.push_back(ticket),
            Err(back) => {
                let c = match back.reason {
                    Refusal::Shed => &counts.shed,
                    Refusal::OverLimit => &counts.over_limit,
                    Refusal::QueueFull => &counts.queue_full,
                    _ => &counts.other,
                };
                c.fetch_add(1, Ordering::Relaxed);
                // A client refused backs off a little before its next request.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if pending.len() > 128 {
            wait_one(&mut pending);
        }
        if p != Phase::Spike {
            // About 2,000 submissions a second per steady submitter.
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    while !pending.is_empty() {
        wait_one(&mut pending);
    }
}
