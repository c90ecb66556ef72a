//! The critical-path split on synthetic records: chains, fan-outs (forked and inline),
//! nesting, the queue, fallbacks, loops, maps, switches; skips; bounds; merge and clear.

use super::*;
use flujo_core::graph::{LoopOptions, MapOptions, NodeRef, ParallelOptions};
use flujo_core::policy::Usage;

type G = Graph<u64, ()>;

fn task(b: &mut flujo_core::graph::GraphBuilder<'_, u64, ()>, name: &str) -> NodeRef {
    b.task(name, |x, _| Ok(x))
}

fn par(
    b: &mut flujo_core::graph::GraphBuilder<'_, u64, ()>,
    name: &str,
    of: &[NodeRef],
) -> NodeRef {
    b.parallel(name, of, |x, y| x + y, ParallelOptions::default())
}

/// A record of `node` of `g` (by name) that took `ns` and ended with `outcome`.
fn rec_as(g: &G, name: &str, ns: u64, outcome: StepOutcome) -> StepRecord {
    StepRecord {
        latency_ticks: ns,
        node: g.find(name).unwrap_or_else(|| panic!("no node {name}")),
        attempts: 1,
        usage: Usage::ZERO,
        backoff_ticks: 0,
        outcome,
        cache_hit: false,
        fallback_used: false,
        error_class: None,
        loop_exit: None,
    }
}

fn rec(g: &G, name: &str, ns: u64) -> StepRecord {
    rec_as(g, name, ns, StepOutcome::Succeeded)
}

/// The rows of one run, as (name, kind, critical ns, share).
fn one_run(g: &G, records: &[StepRecord], wall_ns: u64, queue_ns: u64) -> Vec<BottleneckRow> {
    let mut b = Bottlenecks::default();
    b.add_run(g, records, 0, wall_ns, queue_ns);
    assert_eq!(b.skipped(), 0, "the run matched its graph");
    let rows = b.rows();
    assert_shares_sum_to_one(&rows);
    rows
}

fn assert_shares_sum_to_one(rows: &[BottleneckRow]) {
    let mut by_graph: HashMap<u32, f64> = HashMap::new();
    for r in rows {
        assert!((0.0..=1.0).contains(&r.share), "{r:?}");
        *by_graph.entry(r.graph_id).or_default() += r.share;
    }
    for (g, sum) in by_graph {
        assert!((sum - 1.0).abs() < 1e-9, "graph {g}: shares sum to {sum}");
    }
}

/// (step, kind, critical ns) of each row, in the rows' order.
fn split(rows: &[BottleneckRow]) -> Vec<(&str, BottleneckKind, u64)> {
    rows.iter()
        .map(|r| (r.step.as_str(), r.kind, r.critical_ns))
        .collect()
}

use BottleneckKind::{FanOut, Overhead, Queue, Step};

#[test]
fn a_chain_of_three_steps_holds_its_latencies() {
    let g = G::build(|b| {
        let (a, c, d) = (task(b, "a"), task(b, "b"), task(b, "c"));
        b.sequence("chain", &[a, c, d])
    })
    .unwrap();
    let records = [rec(&g, "a", 10), rec(&g, "b", 30), rec(&g, "c", 60)];
    let rows = one_run(&g, &records, 100, 0);
    assert_eq!(
        split(&rows),
        [("c", Step, 60), ("b", Step, 30), ("a", Step, 10)]
    );
    let shares: Vec<f64> = rows.iter().map(|r| r.share).collect();
    assert_eq!(shares, [0.6, 0.3, 0.1]);
    assert!(rows
        .iter()
        .all(|r| r.runs == 1 && r.graph_runs == 1 && r.graph == "chain"));

    // What the steps do not cover of the run's latency is the run's overhead.
    let rows = one_run(&g, &records, 120, 0);
    assert_eq!(
        split(&rows),
        [
            ("c", Step, 60),
            ("b", Step, 30),
            (OVERHEAD, Overhead, 20),
            ("a", Step, 10)
        ]
    );
    assert_eq!(rows[0].share, 0.5);
}

#[test]
fn the_slow_branch_of_a_parallel_takes_the_fan_outs_share() {
    let g = G::build(|b| {
        let (fast, slow) = (task(b, "fast"), task(b, "slow"));
        par(b, "p", &[fast, slow])
    })
    .unwrap();
    // Forked: the branches overlapped, the fan-out's fork and join took 5.
    let forked = one_run(&g, &[rec(&g, "fast", 10), rec(&g, "slow", 50)], 55, 0);
    assert_eq!(split(&forked), [("slow", Step, 50), ("p", FanOut, 5)]);
    // Whichever branch is declared first.
    let g2 = G::build(|b| {
        let (slow, fast) = (task(b, "slow"), task(b, "fast"));
        par(b, "p", &[slow, fast])
    })
    .unwrap();
    let first = one_run(&g2, &[rec(&g2, "slow", 50), rec(&g2, "fast", 10)], 50, 0);
    assert_eq!(split(&first), [("slow", Step, 50), ("p", FanOut, 0)]);
    // Inline: the branches ran one after the other; the fast one's time is the fan-out's.
    let inline = one_run(&g, &[rec(&g, "fast", 10), rec(&g, "slow", 50)], 60, 0);
    assert_eq!(split(&inline), [("slow", Step, 50), ("p", FanOut, 10)]);
    // A tie: the later branch finished last.
    let tie = one_run(&g, &[rec(&g, "fast", 30), rec(&g, "slow", 30)], 30, 0);
    assert_eq!(split(&tie), [("slow", Step, 30), ("p", FanOut, 0)]);
}

#[test]
fn nested_fan_outs_follow_the_longest_branch_down() {
    // x, then p1 of [a then p2 of [c, d]] and [e].
    let g = G::build(|b| {
        let x = task(b, "x");
        let (a, c, d, e) = (task(b, "a"), task(b, "c"), task(b, "d"), task(b, "e"));
        let p2 = par(b, "p2", &[c, d]);
        let inner = b.sequence("inner", &[a, p2]);
        let p1 = par(b, "p1", &[inner, e]);
        b.sequence("root", &[x, p1])
    })
    .unwrap();
    let records = [
        rec(&g, "x", 5),
        rec(&g, "a", 10),
        rec(&g, "c", 20),
        rec(&g, "d", 40),
        rec(&g, "e", 30),
    ];
    // p1's critical branch is `inner` (10 + 40 > 30), p2's is d; what is left of the run
    // after x (5) and the critical branch (50) is p1's own.
    let rows = one_run(&g, &records, 62, 0);
    assert_eq!(
        split(&rows),
        [
            ("d", Step, 40),
            ("a", Step, 10),
            ("p1", FanOut, 7),
            ("x", Step, 5),
            ("p2", FanOut, 0)
        ]
    );
    // When e is the longest, the inner fan-out is off the path altogether.
    let records = [
        rec(&g, "x", 5),
        rec(&g, "a", 10),
        rec(&g, "c", 20),
        rec(&g, "d", 40),
        rec(&g, "e", 90),
    ];
    let rows = one_run(&g, &records, 100, 0);
    assert_eq!(
        split(&rows),
        [("e", Step, 90), ("x", Step, 5), ("p1", FanOut, 5)]
    );
}

#[test]
fn two_fan_outs_in_a_sequence_share_what_is_left_by_their_estimates() {
    let g = G::build(|b| {
        let (a, c, d, e) = (task(b, "a"), task(b, "c"), task(b, "d"), task(b, "e"));
        let p = par(b, "p", &[a, c]);
        let q = par(b, "q", &[d, e]);
        b.sequence("root", &[p, q])
    })
    .unwrap();
    // Both inline: p took 10 + 30, q took 10 + 10.
    let records = [
        rec(&g, "a", 10),
        rec(&g, "c", 30),
        rec(&g, "d", 10),
        rec(&g, "e", 10),
    ];
    let rows = one_run(&g, &records, 60, 0);
    // 60 split 30 : 10 between p and q.
    assert_eq!(
        split(&rows),
        [
            ("c", Step, 30),
            ("p", FanOut, 15),
            ("e", Step, 10),
            ("q", FanOut, 5)
        ]
    );
}

#[test]
fn a_queue_wait_has_its_share() {
    let g = G::build(|b| {
        let (a, c) = (task(b, "a"), task(b, "b"));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let rows = one_run(&g, &[rec(&g, "a", 30), rec(&g, "b", 70)], 100, 100);
    assert_eq!(
        split(&rows),
        [(QUEUE, Queue, 100), ("b", Step, 70), ("a", Step, 30)]
    );
    assert_eq!(rows[0].share, 0.5);
    assert_eq!(rows[1].share, 0.35);
    // An inline run (no wait) adds no queue row.
    assert!(one_run(&g, &[rec(&g, "a", 30), rec(&g, "b", 70)], 100, 0)
        .iter()
        .all(|r| r.kind != Queue));
}

#[test]
fn a_fallback_holds_its_own_latency_inside_its_tasks() {
    let g = G::build(|b| {
        let fb = task(b, "fb");
        let cfg = flujo_core::graph::TaskConfig::new().fallback(fb);
        let t = b.task_with("t", |x, _| Ok(x), cfg);
        let after = task(b, "after");
        b.sequence("s", &[t, after])
    })
    .unwrap();
    let records = [
        rec(&g, "fb", 40),
        rec_as(&g, "t", 50, StepOutcome::Succeeded),
        rec(&g, "after", 5),
    ];
    let rows = one_run(&g, &records, 55, 0);
    assert_eq!(
        split(&rows),
        [("fb", Step, 40), ("t", Step, 10), ("after", Step, 5)]
    );
}

#[test]
fn a_loops_iterations_and_its_own_time() {
    let g = G::build(|b| {
        let a = task(b, "a");
        b.loop_("l", a, LoopOptions::new().max_iterations(5))
    })
    .unwrap();
    let records = [rec(&g, "a", 10), rec(&g, "a", 20), rec(&g, "l", 35)];
    let rows = one_run(&g, &records, 35, 0);
    assert_eq!(split(&rows), [("a", Step, 30), ("l", Step, 5)]);
    assert_eq!(rows[0].runs, 1, "a run counts once per row");
}

#[test]
fn a_maps_longest_item_is_on_the_path() {
    let g = G::build(|b| {
        let a = task(b, "a");
        b.map(
            "m",
            |x, _, _| Ok(x),
            a,
            |x, y| x + y,
            MapOptions::new().max_items(8),
        )
    })
    .unwrap();
    let records = [rec(&g, "a", 10), rec(&g, "a", 30), rec(&g, "a", 20)];
    let rows = one_run(&g, &records, 35, 0);
    assert_eq!(split(&rows), [("a", Step, 30), ("m", FanOut, 5)]);
    // A map of no items ran no step: its run is all overhead.
    let rows = one_run(&g, &[], 7, 0);
    assert_eq!(split(&rows), [(OVERHEAD, Overhead, 7)]);
}

#[test]
fn a_switch_passes_its_time_to_the_arm_that_ran() {
    let g = G::build(|b| {
        let (x, y) = (task(b, "x"), task(b, "y"));
        let d = task(b, "d");
        b.switch("sw", |v, _| *v, &[(1, x), (2, y)], Some(d))
    })
    .unwrap();
    assert_eq!(
        split(&one_run(&g, &[rec(&g, "y", 20)], 20, 0)),
        [("y", Step, 20)]
    );
    assert_eq!(
        split(&one_run(&g, &[rec(&g, "d", 9)], 9, 0)),
        [("d", Step, 9)]
    );
}

#[test]
fn a_sequence_stops_at_a_failed_step() {
    // s1 = [a, b] and s2 = [b, c] under an ignore-strategy parallel: a fails, so the b
    // that follows is s2's.
    let g = G::build(|b| {
        let (a, bb, c) = (task(b, "a"), task(b, "b"), task(b, "c"));
        let s1 = b.sequence("s1", &[a, bb]);
        let s2 = b.sequence("s2", &[bb, c]);
        par(b, "p", &[s1, s2])
    })
    .unwrap();
    let records = [
        rec_as(&g, "a", 5, StepOutcome::Failed),
        rec(&g, "b", 10),
        rec(&g, "c", 10),
    ];
    let rows = one_run(&g, &records, 25, 0);
    assert_eq!(
        split(&rows),
        [("b", Step, 10), ("c", Step, 10), ("p", FanOut, 5)]
    );
}

#[test]
fn runs_with_dropped_or_unmatched_records_are_skipped() {
    let g = G::build(|b| {
        let (a, c, d) = (task(b, "a"), task(b, "b"), task(b, "c"));
        let p = par(b, "p", &[c, d]);
        b.sequence("s", &[a, p])
    })
    .unwrap();
    let mut b = Bottlenecks::default();
    b.add_run(&g, &[rec(&g, "a", 1)], 1, 10, 0);
    // A record past the graph's end.
    let past = [
        rec(&g, "a", 1),
        rec(&g, "b", 1),
        rec(&g, "c", 1),
        rec(&g, "a", 1),
    ];
    b.add_run(&g, &past, 0, 10, 0);
    // Out of order.
    b.add_run(&g, &[rec(&g, "b", 1), rec(&g, "a", 1)], 0, 10, 0);
    assert_eq!(b.skipped(), 3);
    assert!(b.rows().is_empty());
    b.add_run(&g, &[rec(&g, "a", 1), rec(&g, "b", 1)], 0, 2, 0);
    assert_eq!((b.skipped(), b.rows().len()), (3, 3));

    // A flat graph's records are not matched, but a dropped one still skips its run.
    let flat = G::build(|b| {
        let (a, c) = (task(b, "a"), task(b, "b"));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let mut b = Bottlenecks::default();
    b.add_run(&flat, &[rec(&flat, "a", 1)], 1, 10, 0);
    assert_eq!((b.skipped(), b.rows().len()), (1, 0));
}

#[test]
fn flat_graphs_split_as_the_match_would() {
    // A flat graph (sequences, switches, plain tasks) takes the short path; a graph with a
    // one-branch parallel node around the same tasks takes the match, and splits the same.
    let flat = G::build(|b| {
        let (a, c, d) = (task(b, "a"), task(b, "b"), task(b, "c"));
        let inner = b.sequence("inner", &[c, d]);
        let sw = b.switch("sw", |_, _| 1, &[(1, inner)], None);
        b.sequence("s", &[a, sw])
    })
    .unwrap();
    let matched = G::build(|b| {
        let (a, c, d) = (task(b, "a"), task(b, "b"), task(b, "c"));
        let inner = b.sequence("inner", &[c, d]);
        let sw = b.switch("sw", |_, _| 1, &[(1, inner)], None);
        let s = b.sequence("s", &[a, sw]);
        par(b, "p", &[s])
    })
    .unwrap();
    assert!(is_flat(&flat) && !is_flat(&matched));
    for (wall, queue) in [(60, 0), (75, 20), (10, 5)] {
        let rows = |g: &G| {
            let records = [rec(g, "a", 10), rec(g, "b", 20), rec(g, "c", 30)];
            one_run(g, &records, wall, queue)
                .into_iter()
                .filter(|r| r.kind != FanOut)
                .map(|r| (r.step, r.kind, r.critical_ns, r.runs))
                .collect::<Vec<_>>()
        };
        let (f, m) = (rows(&flat), rows(&matched));
        // The fan-out of the matched graph holds what the flat graph's overhead does.
        let m: Vec<_> = m.into_iter().filter(|r| r.1 != Overhead).collect();
        let f_without: Vec<_> = f.iter().filter(|r| r.1 != Overhead).cloned().collect();
        assert_eq!(f_without, m, "wall {wall}");
        let overhead = f.iter().find(|r| r.1 == Overhead).map_or(0, |r| r.2);
        assert_eq!(overhead, 60u64.max(wall) - 60, "wall {wall}");
    }
}

#[test]
fn a_clock_that_stepped_back_still_gives_shares_that_sum_to_one() {
    let g = G::build(|b| {
        let (a, c) = (task(b, "a"), task(b, "b"));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    // The records sum to more than the run's measured latency.
    let rows = one_run(&g, &[rec(&g, "a", 30), rec(&g, "b", 70)], 50, 0);
    assert_eq!(split(&rows), [("b", Step, 70), ("a", Step, 30)]);
}

#[test]
fn rows_are_bounded_per_graph_and_graphs_are_bounded() {
    let n = MAX_STEP_ROWS + 10;
    let g = G::build(|b| {
        let tasks: Vec<NodeRef> = (0..n).map(|i| task(b, &format!("t{i}"))).collect();
        b.sequence("long", &tasks)
    })
    .unwrap();
    let records: Vec<StepRecord> = (0..n).map(|i| rec(&g, &format!("t{i}"), 1)).collect();
    let rows = one_run(&g, &records, n as u64, 0);
    assert_eq!(rows.len(), MAX_STEP_ROWS);
    let other = rows
        .iter()
        .find(|r| r.step == OTHER_STEPS)
        .expect("the overflow row");
    assert_eq!((other.critical_ns, other.runs), (11, 1));

    let mut b = Bottlenecks::default();
    let graphs: Vec<G> = (0..MAX_GRAPHS + 2)
        .map(|_| G::build(|b| task(b, "t")).unwrap())
        .collect();
    for g in &graphs {
        b.add_run(g, &[rec(g, "t", 1)], 0, 1, 0);
    }
    assert_eq!(b.skipped(), 2);
    assert_eq!(b.rows().len(), MAX_GRAPHS);
}

#[test]
fn merge_adds_and_clear_forgets() {
    let g = G::build(|b| {
        let (a, c) = (task(b, "a"), task(b, "b"));
        b.sequence("s", &[a, c])
    })
    .unwrap();
    let runs = [(10, 30, 5), (20, 10, 0), (5, 5, 50)];
    let mut whole = Bottlenecks::default();
    let mut parts = [Bottlenecks::default(), Bottlenecks::default()];
    for (i, &(a, bb, queue)) in runs.iter().enumerate() {
        let records = [rec(&g, "a", a), rec(&g, "b", bb)];
        whole.add_run(&g, &records, 0, a + bb, queue);
        parts[i % 2].add_run(&g, &records, 0, a + bb, queue);
    }
    parts[0].add_run(&g, &[], 1, 1, 0);
    let mut merged = Bottlenecks::default();
    merged.merge(&parts[0]);
    merged.merge(&parts[1]);
    assert_eq!(merged.rows(), whole.rows());
    assert_eq!(merged.skipped(), 1);
    assert_eq!(whole.rows()[0].graph_runs, 3);
    assert_eq!(merged.top(1), whole.rows()[..1]);

    merged.clear();
    assert!(merged.rows().is_empty());
    assert_eq!(merged.skipped(), 0);
    // A cleared accumulator counts afresh.
    merged.add_run(&g, &[rec(&g, "a", 1), rec(&g, "b", 3)], 0, 4, 0);
    assert_eq!(split(&merged.rows()), [("b", Step, 3), ("a", Step, 1)]);
    assert!(merged
        .rows()
        .iter()
        .all(|r| r.runs == 1 && r.graph_runs == 1));
}

#[test]
fn the_match_is_bounded_on_records_that_keep_a_loop_going() {
    // A loop whose own record never comes: every iteration is matched, then the whole
    // guess is taken back and the run skipped, in work linear in the records.
    let g = G::build(|b| {
        let a = task(b, "a");
        let l = b.loop_("l", a, LoopOptions::new().max_iterations(1_000_000));
        b.sequence("s", &[l])
    })
    .unwrap();
    let records: Vec<StepRecord> = (0..10_000).map(|_| rec(&g, "a", 1)).collect();
    let mut b = Bottlenecks::default();
    b.add_run(&g, &records, 0, 10_000, 0);
    assert_eq!(b.skipped(), 1);
}
