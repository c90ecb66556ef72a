use flujo_core::graph::NodeId;
use flujo_core::interp::LoopExit;
use flujo_core::policy::Usage;

use super::*;

fn record(node: u32, outcome: StepOutcome, attempts: u32, latency_ticks: u64) -> StepRecord {
    StepRecord {
        node: NodeId(node),
        outcome,
        attempts,
        latency_ticks,
        backoff_ticks: 0,
        cache_hit: false,
        fallback_used: false,
        error_class: None,
        usage: Usage::ZERO,
        loop_exit: None,
    }
}

/// A small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The exact quantile the histogram approximates: the `max(1, ceil(q * n))`-th smallest.
fn exact_quantile(sorted: &[u64], numerator: u64, denominator: u64) -> u64 {
    let n = sorted.len() as u64;
    let rank = (n * numerator).div_ceil(denominator).max(1);
    sorted[rank as usize - 1]
}

/// Asserts the histogram's documented bound: `|q' - q| <= q >> 8`.
fn assert_within_bound(reported: u64, exact: u64, what: &str) {
    assert!(
        reported.abs_diff(exact) <= exact >> 8,
        "{what}: reported {reported}, exact {exact}"
    );
}

/// What the test feeds for one step and expects back.
#[derive(Default)]
struct Expected {
    row: StepRow,
    latencies_ns: Vec<u64>,
}

#[test]
fn counts_are_exact_and_quantiles_within_the_histogram_bound() {
    let mut builder = ReportBuilder::new();
    let mut expected: Vec<Expected> = (0..3)
        .map(|i| Expected {
            row: StepRow {
                step: format!("step-{i}"),
                node: 10 + i,
                ..StepRow::default()
            },
            latencies_ns: Vec::new(),
        })
        .collect();
    let mut rng = Lcg(7);
    let ns_per_tick = 0.5;
    let count = if cfg!(miri) { 50 } else { 1000 };
    for i in 0..count {
        let which = (rng.next() % 3) as usize;
        let e = &mut expected[which];
        let outcome = match rng.next() % 10 {
            0 => StepOutcome::Failed,
            1 => StepOutcome::Skipped,
            2 => StepOutcome::Aborted,
            _ => StepOutcome::Succeeded,
        };
        let attempts = (rng.next() % 4) as u32; // 0 (never ran) ..= 3
                                                // Latencies spread over four decades, in ticks of half a nanosecond.
        let ticks = 2 * ((rng.next() % 1000 + 1) * 10u64.pow((i % 4) as u32));
        let mut rec = record(e.row.node, outcome, attempts, ticks);
        rec.cache_hit = rng.next().is_multiple_of(5);
        rec.fallback_used = rng.next().is_multiple_of(7);
        builder.add_record(&e.row.step, &rec, ns_per_tick);

        let row = &mut e.row;
        row.executions += 1;
        match outcome {
            StepOutcome::Succeeded => row.succeeded += 1,
            StepOutcome::Failed => row.failed += 1,
            StepOutcome::Skipped => row.skipped += 1,
            StepOutcome::Aborted => row.aborted += 1,
        }
        row.retries += u64::from(attempts.saturating_sub(1));
        row.cache_hits += u64::from(rec.cache_hit);
        row.fallbacks += u64::from(rec.fallback_used);
        e.latencies_ns.push(ticks / 2);
    }
    let report = builder.build(1);
    assert_eq!(report.steps.len(), 3);
    let total: u64 = report.steps.iter().map(|r| r.executions).sum();
    assert_eq!(total, count);
    for e in &mut expected {
        let row = report.step(&e.row.step).expect("every step has a row");
        let latency = row.latency;
        assert_eq!(
            StepRow {
                latency: Latency::default(),
                ..row.clone()
            },
            e.row,
            "counts of {}",
            e.row.step
        );
        e.latencies_ns.sort_unstable();
        let sorted = &e.latencies_ns;
        assert_eq!(latency.samples, sorted.len() as u64);
        assert_eq!(latency.min_ns, sorted[0]);
        assert_eq!(latency.max_ns, *sorted.last().unwrap());
        let sum: u64 = sorted.iter().sum();
        assert_eq!(latency.mean_ns, sum / sorted.len() as u64);
        assert_within_bound(latency.p50_ns, exact_quantile(sorted, 50, 100), "p50");
        assert_within_bound(latency.p95_ns, exact_quantile(sorted, 95, 100), "p95");
        assert_within_bound(latency.p99_ns, exact_quantile(sorted, 99, 100), "p99");
        assert_eq!(
            builder.step_histogram(&e.row.step).map(Histogram::count),
            Some(latency.samples)
        );
    }
    assert!(builder.step_histogram("absent").is_none());
}

#[test]
fn loops_do_not_count_iterations_as_retries() {
    let mut builder = ReportBuilder::new();
    let mut rec = record(1, StepOutcome::Succeeded, 5, 10);
    rec.loop_exit = Some(LoopExit::Bound);
    builder.add_record("loop", &rec, 1.0);
    builder.add_record("task", &record(2, StepOutcome::Succeeded, 5, 10), 1.0);
    let report = builder.build(0);
    assert_eq!(report.step("loop").unwrap().retries, 0);
    assert_eq!(report.step("task").unwrap().retries, 4);
}

#[test]
fn runs_rejections_and_throughput() {
    let mut builder = ReportBuilder::new();
    let mut latencies = Vec::new();
    for i in 0..100u64 {
        let outcome = match i % 10 {
            0 => Outcome::Failed,
            1 | 2 => Outcome::Aborted,
            _ => Outcome::Succeeded,
        };
        builder.add_run(outcome, 1_000 + i);
        latencies.push(1_000 + i);
    }
    for _ in 0..3 {
        builder.rejected(Refusal::QueueFull);
    }
    builder.rejected(Refusal::OverLimit);
    builder.rejected(Refusal::ShuttingDown);
    builder.rejected(Refusal::ShuttingDown);

    // Without submissions counted, every submission has ended or been refused.
    let report = builder.build(4_000_000_000);
    let r = report.runs;
    assert_eq!((r.succeeded, r.failed, r.aborted), (70, 10, 20));
    assert_eq!(r.completed, 100);
    assert_eq!(
        (
            r.rejected_queue_full,
            r.rejected_over_limit,
            r.rejected_shutting_down
        ),
        (3, 1, 2)
    );
    assert_eq!(r.rejected(), 6);
    assert_eq!((r.submitted, r.in_flight), (106, 0));
    assert_eq!(report.throughput_runs_per_s, 25.0);
    let l = report.run_latency;
    assert_eq!(
        (l.samples, l.min_ns, l.max_ns, l.mean_ns),
        (100, 1_000, 1_099, 1_049)
    );
    assert_within_bound(l.p50_ns, exact_quantile(&latencies, 1, 2), "run p50");

    // Counted submissions beyond those are in flight; fewer change nothing.
    builder.add_submitted(110);
    let r = builder.build(0).runs;
    assert_eq!((r.submitted, r.in_flight), (110, 4));
    let mut fewer = ReportBuilder::new();
    fewer.add_run(Outcome::Succeeded, 1);
    fewer.add_submitted(0);
    assert_eq!(fewer.build(0).runs.in_flight, 0);
    assert_eq!(fewer.build(0).throughput_runs_per_s, 0.0);
}

#[test]
fn every_submission_is_in_one_line_of_the_identity() {
    let mut b = ReportBuilder::new();
    b.add_run(Outcome::Succeeded, 1);
    b.add_run(Outcome::Aborted, 1);
    b.add_panicked(3);
    b.add_handed_back(4);
    b.add_rejected(Refusal::OverLimit, 5);
    b.add_rejected(Refusal::QueueFull, 0);
    b.rejected(Refusal::OverLimit);
    b.add_inline(1);
    // Nothing counted as submitted: every submission has ended.
    let r = b.build(0).runs;
    assert_eq!((r.submitted, r.in_flight), (2 + 3 + 4 + 6, 0));
    assert_eq!((r.rejected_over_limit, r.rejected_queue_full), (6, 0));
    b.add_submitted(20);
    let mut merged = ReportBuilder::new();
    merged.merge(&b);
    for r in [b.build(0).runs, merged.build(0).runs] {
        assert_eq!((r.panicked, r.handed_back, r.inline), (3, 4, 1));
        assert_eq!((r.submitted, r.in_flight), (20, 5));
        assert_eq!(
            r.submitted,
            r.completed + r.panicked + r.handed_back + r.rejected() + r.in_flight
        );
    }
}

fn transition(step: u32, to: BreakerState) -> Event {
    Event::new(
        step,
        0,
        EventKind::BreakerTransition {
            from: BreakerState::Closed,
            to,
        },
    )
}

#[test]
fn counters_cache_rate_breakers_and_readings() {
    let mut builder = ReportBuilder::new();
    let empty = builder.build(0);
    assert_eq!(empty.cache_hit_rate, None);
    assert!(empty.breakers.is_empty());

    let mut run = Counters::new();
    for (i, counter) in Counter::ALL.into_iter().enumerate() {
        run.add_n(counter, 1 + i as u64);
    }
    builder.add_counters(&run);
    builder.add_counters(&run);
    builder.add_record("guarded", &record(4, StepOutcome::Failed, 1, 5), 1.0);
    builder.name_step(9, "named");
    let events = [
        transition(4, BreakerState::Open),
        transition(4, BreakerState::HalfOpen),
        transition(4, BreakerState::Open),
        Event::new(4, 0, EventKind::BreakerRejected),
        transition(9, BreakerState::Closed),
        Event::new(2, 0, EventKind::BreakerRejected),
        Event::new(2, 0, EventKind::StepStart),
        Event::new(2, 0, EventKind::CacheHit),
    ];
    builder.add_events(&events);
    builder.add_events_dropped(5);
    builder.add_records_dropped(6);
    builder.set_run_sample_period(8);
    let pool = PoolStats {
        pool_hits: 1,
        pool_misses: 2,
        pool_live: 3,
        pool_idle: 4,
        arena_bytes_used: 5,
        arena_bytes_reserved: 6,
        pool_idle_max: 7,
        pool_freed: 8,
        arena_bytes_reserved_idle_max: 9,
    };
    builder.set_pool(pool);
    builder.observe_limit(8);
    builder.observe_limit(3);
    builder.observe_limit(20);
    builder.observe_limit(10);

    let report = builder.build(0);
    for (i, counter) in Counter::ALL.into_iter().enumerate() {
        assert_eq!(report.counter(counter), 2 * (1 + i as u64), "{counter:?}");
    }
    let (hits, misses) = (
        report.counter(Counter::CacheHits),
        report.counter(Counter::CacheMisses),
    );
    assert_eq!(
        report.cache_hit_rate,
        Some(hits as f64 / (hits + misses) as f64)
    );
    let rows: Vec<(u32, &str, u64, u64, u64, u64)> = report
        .breakers
        .iter()
        .map(|b| {
            let step = b.step.as_str();
            (
                b.step_id,
                step,
                b.to_open,
                b.to_half_open,
                b.to_closed,
                b.rejected,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (2, "#2", 0, 0, 0, 1),
            (4, "guarded", 2, 1, 0, 1),
            (9, "named", 0, 0, 1, 0),
        ]
    );
    let t = report.telemetry;
    assert_eq!(
        (
            t.events_recorded,
            t.events_dropped,
            t.records_dropped,
            t.run_sample_period
        ),
        (8, 5, 6, 8)
    );
    assert_eq!(report.pool, pool);
    let a = report.admission;
    assert_eq!(
        (a.limit_current, a.limit_min_seen, a.limit_max_seen),
        (10, 3, 20)
    );
    let set = AdmissionStats {
        limit_current: 1,
        limit_min_seen: 1,
        limit_max_seen: 2,
    };
    builder.set_admission(set);
    assert_eq!(builder.build(0).admission, set);
    builder.observe_limit(7);
    let a = builder.build(0).admission;
    assert_eq!(
        (a.limit_current, a.limit_min_seen, a.limit_max_seen),
        (7, 1, 7)
    );
}

/// A builder fed a bit of everything, with step names that test the table.
fn sample_builder() -> ReportBuilder {
    let mut builder = ReportBuilder::new();
    let names = [
        "fetch",
        "parse \"json\"",
        "a-very-long-step-name-that-goes-on-and-on-and-on",
    ];
    for i in 0..30u64 {
        let node = (i % 3) as u32;
        let outcome = if i % 4 == 0 {
            StepOutcome::Failed
        } else {
            StepOutcome::Succeeded
        };
        let mut rec = record(node, outcome, 1 + (i % 2) as u32, 1_000 * (i + 1));
        rec.cache_hit = i % 5 == 0;
        rec.fallback_used = i % 6 == 0;
        builder.add_record(names[node as usize], &rec, 1.0);
        builder.add_run(Outcome::Succeeded, 2_000 * (i + 1));
    }
    let mut counters = Counters::new();
    counters.add_n(Counter::CacheHits, 3);
    counters.add_n(Counter::CacheMisses, 1);
    counters.add_n(Counter::StepsRun, 30);
    builder.add_counters(&counters);
    builder.add_events(&[transition(1, BreakerState::Open)]);
    builder.rejected(Refusal::OverLimit);
    builder.set_run_sample_period(1);
    builder.observe_limit(16);
    builder
}

#[test]
fn the_table_has_its_header_and_a_row_per_step() {
    let report = sample_builder().build(3_000_000_000);
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "flujo run report");
    assert_eq!(
        lines[1].split_whitespace().take(2).collect::<Vec<_>>(),
        ["panics", "caught"],
        "this build unwinds"
    );

    // The step table's header: "step", then every column name, aligned to the rows.
    let header_at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("step ") && l.contains("executions"))
        .expect("the step table has a header");
    let header = lines[header_at];
    let mut from = 0;
    for column in STEP_COLUMNS {
        let at = header[from..].find(column).expect("every column is named") + from;
        from = at + column.len();
    }
    for (i, row) in report.steps.iter().enumerate() {
        let line = lines[header_at + 1 + i];
        assert_eq!(line.chars().count(), header.chars().count(), "{line}");
        let cut = cell_name(&row.step, NAME_WIDTH_MAX);
        assert!(line.trim_start().starts_with(&cut), "{line}");
        let l = row.latency;
        let expected: Vec<String> = [
            row.executions,
            row.succeeded,
            row.failed,
            row.skipped,
            row.aborted,
            row.retries,
            row.cache_hits,
            row.fallbacks,
        ]
        .iter()
        .map(u64::to_string)
        .chain([l.p50_ns, l.p95_ns, l.p99_ns].map(|ns| Micros(ns).to_string()))
        .collect();
        let numbers: Vec<&str> = line.split_whitespace().rev().take(11).collect();
        let numbers: Vec<&str> = numbers.into_iter().rev().collect();
        assert_eq!(numbers, expected, "{line}");
    }
    // The long name is cut to the widest name column.
    let long = &report.steps[2];
    assert!(long.step.chars().count() > NAME_WIDTH_MAX);
    assert!(text.contains(&format!("{}~", &long.step[..NAME_WIDTH_MAX - 1])));
    assert!(!text.contains(&long.step));

    for expected in [
        "  wall time               3.000000000 s",
        "  completed               30",
        "  throughput              10.000 runs/s",
        "  steps_run               30",
        "  cache hit rate          75.00 %",
        "  rejections              1",
        "  limit current           16",
        "  sampling                1 in 1",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
    }
    let breaker_header = lines
        .iter()
        .position(|l| l.contains("to half-open"))
        .expect("the breaker table has a header");
    let breaker_line = lines[breaker_header + 1];
    assert_eq!(
        breaker_line.chars().count(),
        lines[breaker_header].chars().count()
    );
    let breaker: Vec<&str> = breaker_line.split_whitespace().collect();
    assert_eq!(breaker, ["parse", "\"json\"", "1", "0", "0", "0"]);

    let empty = ReportBuilder::new().build(0).to_string();
    assert!(empty.contains("cache hit rate          n/a (no lookups)"));
    assert!(empty.contains("(no transitions or refusals in the events seen)"));
}

#[test]
fn control_characters_in_names_are_escaped_in_the_table() {
    assert_eq!(cell_name("a\nb\tc", 32), "a\\nb\\tc");
    assert_eq!(cell_name("ünïcødé", 32), "ünïcødé");
    assert_eq!(cell_name("abcdef", 4), "abc~");
    assert_eq!(Micros(1_234_567).to_string(), "1234.567");
    assert_eq!(Micros(5).to_string(), "0.005");
    assert_eq!(Seconds(1_500_000_000).to_string(), "1.500000000 s");
}

#[test]
fn merged_builders_report_what_one_builder_fed_everything_reports() {
    let mut one = ReportBuilder::new();
    let mut parts = [
        ReportBuilder::new(),
        ReportBuilder::new(),
        ReportBuilder::new(),
    ];
    let mut rng = Lcg(99);
    for i in 0..300u64 {
        let part = &mut parts[(rng.next() % 3) as usize];
        let node = (rng.next() % 4) as u32;
        let name = ["a", "b", "c", "d"][node as usize];
        let outcome = [StepOutcome::Succeeded, StepOutcome::Failed][(i % 2) as usize];
        let rec = record(node, outcome, (i % 3) as u32, rng.next() % 10_000);
        let run = [Outcome::Succeeded, Outcome::Failed, Outcome::Aborted][(i % 3) as usize];
        let wall = rng.next() % 50_000;
        let events = [transition((i % 5) as u32, BreakerState::HalfOpen)];
        let mut counters = Counters::new();
        counters.add_n(Counter::CacheHits, i % 3);
        counters.add_n(Counter::CacheMisses, 1);
        for b in [&mut one, part] {
            b.add_record(name, &rec, 1.0);
            b.add_run(run, wall);
            b.add_events(&events);
            b.add_counters(&counters);
            b.add_events_dropped(1);
            b.add_records_dropped(2);
            b.add_submitted(1);
            if i % 50 == 0 {
                b.rejected(Refusal::QueueFull);
            }
        }
    }
    one.set_run_sample_period(4);
    parts[1].set_run_sample_period(4);
    let mut merged = ReportBuilder::new();
    for part in &parts {
        merged.merge(part);
    }
    let (a, b) = (one.build(1_000), merged.build(1_000));
    assert_eq!(a.runs, b.runs);
    assert_eq!(a.counters, b.counters);
    assert_eq!(a.breakers, b.breakers);
    assert_eq!(a.telemetry, b.telemetry);
    assert_eq!(a.run_latency, b.run_latency);
    // Step rows may come in another order.
    assert_eq!(a.steps.len(), b.steps.len());
    for row in &a.steps {
        let other = b.step(&row.step).unwrap();
        assert_eq!(
            (
                row.executions,
                row.succeeded,
                row.failed,
                row.retries,
                row.latency
            ),
            (
                other.executions,
                other.succeeded,
                other.failed,
                other.retries,
                other.latency
            )
        );
    }
}

#[cfg(feature = "serde")]
#[test]
fn json_round_trips_every_field() {
    let mut builder = sample_builder();
    builder.set_pool(PoolStats {
        pool_hits: u64::MAX,
        pool_misses: 2,
        pool_live: 3,
        pool_idle: 4,
        arena_bytes_used: 5,
        arena_bytes_reserved: 6,
        pool_idle_max: 7,
        pool_freed: 8,
        arena_bytes_reserved_idle_max: 9,
    });
    let report = builder.build(7_000_000_001);
    assert!(report.throughput_runs_per_s.fract() != 0.0);
    let json = report.to_json_string();
    let back = Report::from_json_str(&json).unwrap();
    assert_eq!(back, report);

    // The counters are an object by name; unknown names are ignored, missing ones are 0.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["counters"]["steps_run"], 30);
    assert_eq!(value["counters"]["cache_hits"], 3);
    assert_eq!(value["pool"]["pool_hits"], u64::MAX);
    assert_eq!(value["steps"][1]["step"], "parse \"json\"");
    let counters = value["counters"].as_object_mut().unwrap();
    counters.remove("steps_run");
    counters.insert("from_the_future".into(), 1.into());
    let back: Report = serde_json::from_value(value).unwrap();
    assert_eq!(back.counter(Counter::StepsRun), 0);
    assert_eq!(back.counter(Counter::CacheHits), 3);
    assert!(Report::from_json_str("{}").is_err());
}

#[test]
fn a_cleared_builder_counts_nothing_and_keeps_its_sampling() {
    let mut b = ReportBuilder::new();
    b.set_run_sample_period(8);
    b.add_run(Outcome::Failed, 5);
    b.add_latency("s", 0, 10);
    b.add_rejected(Refusal::QueueFull, 2);
    b.add_events_dropped(1);
    let mut sum = ReportBuilder::new();
    sum.merge(&b);
    b.clear();
    let cleared = b.build(0);
    assert_eq!(cleared.runs, Runs::default());
    assert_eq!(cleared.run_latency, Latency::default());
    assert_eq!(cleared.telemetry.events_dropped, 0);
    assert_eq!(
        (b.run_sample_period(), cleared.telemetry.run_sample_period),
        (8, 8)
    );
    assert_eq!(b.step_histogram("s").map(Histogram::count), Some(0));
    // Counting on after a clear: a merge of the deltas is the sum of everything fed in.
    b.add_latency("s", 0, 20);
    sum.merge(&b);
    let total = sum.build(0);
    assert_eq!(total.step("s").map(|s| s.latency.samples), Some(2));
    assert_eq!((total.runs.failed, total.runs.rejected_queue_full), (1, 2));
    // A step counted but never timed has no histogram.
    let mut untimed = ReportBuilder::new();
    untimed.add_step_counts(&StepRow {
        step: "u".into(),
        executions: 3,
        ..StepRow::default()
    });
    assert!(untimed.step_histogram("u").is_none());
    assert_eq!(untimed.build(0).step("u").map(|s| s.executions), Some(3));
}

#[test]
fn node_latencies_land_in_their_steps_rows_across_graphs_and_clears() {
    // Two graphs whose node 0 and 1 have different names, alternating: the remembered rows
    // of one graph never serve the other's nodes.
    let names = [["a0", "a1"], ["b0", "b1"]];
    let mut b = ReportBuilder::new();
    let mut sum = ReportBuilder::new();
    for round in 0..6u64 {
        for (graph, names) in (7u32..).zip(&names) {
            for (node, name) in (0u32..).zip(names) {
                b.add_node_latency(graph, node, name, 100 * u64::from(graph) + round);
            }
        }
        if round == 2 {
            // A cleared builder keeps its rows, so what it remembers stays right.
            sum.merge(&b);
            b.clear();
        }
    }
    sum.merge(&b);
    let report = sum.build(0);
    for (graph, names) in (7u64..).zip(&names) {
        for name in names {
            let l = report
                .step(name)
                .map(|s| s.latency)
                .expect("a row per name");
            assert_eq!(
                (l.samples, l.min_ns, l.max_ns),
                (6, 100 * graph, 100 * graph + 5),
                "{name}"
            );
        }
    }
    assert_eq!(report.steps.len(), 4);
}
