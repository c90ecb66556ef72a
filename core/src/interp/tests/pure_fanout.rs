//! Pure fan-outs: parallel nodes of plain tasks laid out as programs at build time, and
//! run by them with the general path's results.

use std::format;
use std::string::ToString;
use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::graph::{FailureStrategy, ParallelOptions, TaskConfig};
use crate::telemetry::{Counter, StepOutcome};

/// A tree of parallel nodes `depth` deep, `width` branches each (the strategy alternating
/// with the level), over leaves `x * 2 + j` that fail as `class` when `(x + j) % fail_every`
/// is 0 and report usage `j` when `j % 3 == 0`. Reduces `a * 3 + x` (order matters).
fn pure_tree(
    b: &mut B<'_>,
    depth: u32,
    width: u32,
    j: &mut i64,
    fail: (i64, ErrorClass),
) -> NodeRef {
    *j += 1;
    let me = *j;
    if depth == 0 {
        let (every, class) = fail;
        return b.task(&format!("l{me}"), move |x, cx| {
            if me % 3 == 0 {
                cx.report_usage(Usage::new(me as u64, 0));
            }
            if (x + me).rem_euclid(every) == 0 {
                return Err(StepError::new(class, "leaf failed"));
            }
            Ok(x * 2 + me)
        });
    }
    let kids: Vec<_> = (0..width)
        .map(|_| pure_tree(b, depth - 1, width, j, fail))
        .collect();
    let failure = if depth.is_multiple_of(2) {
        FailureStrategy::Ignore
    } else {
        FailureStrategy::Propagate
    };
    b.parallel(
        &format!("p{me}"),
        &kids,
        |a, x| a.wrapping_mul(3).wrapping_add(x),
        ParallelOptions::new().failure(failure),
    )
}

/// The span of the program of parallel node `name`, if it has one.
fn program(g: &G, name: &str) -> Option<crate::graph::Span> {
    let id = g.find(name).unwrap();
    g.pars[g.slot[id.index()] as usize].program
}

#[test]
fn a_pure_fan_out_is_laid_out_once_and_its_inner_fan_outs_inside_it() {
    let g = G::build(|b| pure_tree(b, 3, 2, &mut 0, (1000, ErrorClass::Permanent))).unwrap();
    // The root (`p1`) holds every node of the tree, one op each.
    let root = program(&g, "p1").expect("the root is pure");
    assert_eq!((root.start, root.len as usize), (0, g.len()));
    assert_eq!(g.pure_ops.len(), g.len(), "each node laid out once");
    // An inner fan-out's program is its own subtree, inside the root's.
    let inner = program(&g, "p2").expect("an inner fan-out is pure");
    assert_eq!((inner.start, inner.len), (1, 7));
    let ops = &g.pure_ops[inner.start as usize..][..inner.len as usize];
    assert_eq!(ops[0].node, g.find("p2").unwrap().0);
    assert_eq!(ops[0].branches(), 2);
    assert!(!ops[0].propagates(), "p2 (depth 2) ignores failures");
    assert!(g.pure_ops[0].propagates(), "p1 (depth 3) propagates them");
}

#[test]
fn a_writer_a_policy_or_a_non_task_keeps_a_fan_out_on_the_general_path() {
    let g = G::build(|b| {
        let (x, y) = (add(b, "x", 1), add(b, "y", 2));
        let pure = b.parallel("pure", &[x, y], |a, v| a + v, ParallelOptions::new());
        let (w, z) = (set_a(b, "w", 1), add(b, "z", 3));
        let writes = b.parallel("writes", &[w, z], |a, v| a + v, ParallelOptions::new());
        let v = b.task_with("v", |x, _| Ok(x), TaskConfig::new().validate(|_, _| Ok(())));
        let u = add(b, "u", 4);
        let policy = b.parallel("policy", &[v, u], |a, v| a + v, ParallelOptions::new());
        let s1 = add(b, "s1", 5);
        let seq = b.sequence("seq", &[s1]);
        let t = add(b, "t", 6);
        let nested = b.parallel("nested", &[seq, t], |a, v| a + v, ParallelOptions::new());
        b.parallel(
            "top",
            &[pure, writes, policy, nested],
            |a, v| a + v,
            ParallelOptions::new(),
        )
    })
    .unwrap();
    assert!(program(&g, "pure").is_some());
    for general in ["writes", "policy", "nested", "top"] {
        assert!(program(&g, general).is_none(), "{general}");
    }
    // The general path hands the pure fan-out to its program: results as ever.
    let (outcome, out, _, _, recs) = check(&g, 0);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(3 + 3 + 4 + 11)));
    assert_eq!(recs.len(), 8);
}

#[test]
fn pure_fan_outs_give_the_general_paths_results_records_usage_and_counters() {
    // Optimizations change speed, never results: a pure program against the general path
    // (fast paths off), over trees whose leaves fail (skipped under ignore, ending the
    // fan-out under propagate, aborting the run as usage errors) depending on the input.
    let shapes = [(3, 2), (2, 3), (1, 4), (4, 2)];
    let fails = [
        (1000, ErrorClass::Permanent),
        (7, ErrorClass::Permanent),
        (3, ErrorClass::Transient),
        (11, ErrorClass::Usage),
    ];
    let inputs = if cfg!(miri) { 0..4 } else { 0..24 };
    let mut fast = Runner::new(RunnerConfig::default());
    let mut general = Runner::new(RunnerConfig {
        fast_paths: false,
        ..RunnerConfig::default()
    });
    let mut seen = [0usize; 3];
    for (depth, width) in shapes {
        for fail in fails {
            let g = G::build(|b| pure_tree(b, depth, width, &mut 0, fail)).unwrap();
            assert!(program(&g, "p1").is_some());
            for input in inputs.clone() {
                let a = run_with(&mut fast, &g, input, &RunOptions::default());
                let b = run_with(&mut general, &g, input, &RunOptions::default());
                let at = format!("depth {depth} width {width} {fail:?} input {input}");
                assert_eq!(a.outcome, b.outcome, "{at}");
                assert_eq!(a.output, b.output, "{at}");
                assert_eq!(
                    a.error.as_ref().map(ToString::to_string),
                    b.error.as_ref().map(ToString::to_string),
                    "{at}"
                );
                assert_eq!(a.records, b.records, "{at}");
                assert_eq!(a.usage, b.usage, "{at}");
                assert_eq!(a.counters, b.counters, "{at}");
                seen[a.outcome as usize] += 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "every outcome met: {seen:?}");
}

#[test]
fn a_pure_fan_out_stops_at_a_cancel_raised_by_one_of_its_leaves() {
    let flag = Arc::new(CancelFlag::new());
    let raise = flag.clone();
    let g = G::build(|b| {
        let a = add(b, "a", 1);
        let stopper = b.task("stopper", move |x, _| {
            raise.cancel();
            Ok(x)
        });
        let later = add(b, "later", 2);
        let inner = b.parallel("inner", &[a, stopper], |a, v| a + v, ParallelOptions::new());
        b.parallel(
            "outer",
            &[inner, later],
            |a, v| a + v,
            ParallelOptions::new(),
        )
    })
    .unwrap();
    assert!(program(&g, "outer").is_some());
    let mut runner = Runner::new(RunnerConfig::default());
    let r = run_with(&mut runner, &g, 0, &cancellable(&flag));
    assert_eq!(r.outcome, Outcome::Aborted);
    assert!(r.error.unwrap().to_string().contains("`later`"));
    let later = g.find("later").unwrap();
    let rec = r.records.iter().find(|r| r.node == later).unwrap();
    assert_eq!((rec.outcome, rec.attempts), (StepOutcome::Aborted, 0));
    assert_eq!(r.counters.get(Counter::StepsSucceeded), 2);
}

#[test]
fn a_node_shared_by_many_fan_outs_is_laid_out_within_a_bound() {
    // A DAG: each level is a fan-out over the level below, twice. Laid out in full, the top
    // would take 2^40 ops; fan-outs past the bound keep the general path and still give
    // the right sum.
    let g = G::build(|b| {
        let mut node = add(b, "leaf", 1);
        for level in 0..40 {
            node = b.parallel(
                &format!("p{level}"),
                &[node, node],
                |a, v| a.wrapping_add(v),
                ParallelOptions::new(),
            );
        }
        node
    })
    .unwrap();
    assert!(g.pure_ops.len() <= 2 * g.len() + 64);
    assert!(program(&g, "p39").is_none());
    assert!(program(&g, "p0").is_some());
    let small = G::build(|b| {
        let mut node = add(b, "leaf", 1);
        for level in 0..8 {
            node = b.parallel(
                &format!("p{level}"),
                &[node, node],
                |a, v| a + v,
                ParallelOptions::new(),
            );
        }
        node
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&small, 0);
    assert_eq!(
        (outcome, out, recs.len()),
        (Outcome::Succeeded, Some(256), 256)
    );
}
