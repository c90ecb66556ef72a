//! Build-time rules: one test per rule, plus step analysis and the frozen layout.

use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::cache::StepFingerprint;
use crate::policy::{
    Backoff, BreakerConfig, ErrorClass, Recovery, RecoveryTable, RetryPolicy, Usage,
};

type B<'a> = GraphBuilder<'a, u64, u64>;

fn inc(b: &mut B<'_>, name: &str) -> NodeRef {
    b.task(name, |x, _| Ok(x + 1))
}

fn rule_of(r: Result<Graph<u64, u64>, GraphError>) -> (std::string::String, GraphRule) {
    let e = r.expect_err("the graph breaks a rule");
    (e.node, e.rule)
}

#[test]
fn empty_sequence_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| b.sequence("seq", &[])));
    assert_eq!((node.as_str(), rule), ("seq", GraphRule::EmptySequence));
}

#[test]
fn empty_parallel_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        b.parallel("par", &[], |a, _| a, ParallelOptions::new())
    }));
    assert_eq!((node.as_str(), rule), ("par", GraphRule::EmptyParallel));
}

#[test]
fn empty_switch_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        let d = inc(b, "d");
        b.switch("br", |_, _| 0, &[], Some(d))
    }));
    assert_eq!((node.as_str(), rule), ("br", GraphRule::EmptySwitch));
}

#[test]
fn switch_with_two_arms_of_one_key_is_a_build_error() {
    let (_, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        let c = inc(b, "c");
        b.switch("br", |_, _| 0, &[(7, a), (7, c)], None)
    }));
    assert_eq!(rule, GraphRule::DuplicateArm { key: 7 });
}

#[test]
fn loop_without_bound_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        let body = inc(b, "body");
        b.loop_("lp", body, LoopOptions::new().until(|x, _, _| *x > 3))
    }));
    assert_eq!((node.as_str(), rule), ("lp", GraphRule::LoopWithoutBound));
    let (_, rule) = rule_of(Graph::build(|b| {
        let body = inc(b, "body");
        b.loop_("lp", body, LoopOptions::new().max_iterations(0))
    }));
    assert_eq!(rule, GraphRule::LoopWithoutBound);
}

#[test]
fn map_without_item_bound_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        let body = inc(b, "body");
        b.map("m", |x, _, _| Ok(x), body, |a, _| a, MapOptions::new())
    }));
    assert_eq!((node.as_str(), rule), ("m", GraphRule::MapWithoutBound));
}

#[test]
fn zero_fan_out_width_is_a_build_error() {
    let (_, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        b.parallel("par", &[a], |a, _| a, ParallelOptions::new().max_width(0))
    }));
    assert_eq!(rule, GraphRule::ZeroWidth);
}

#[test]
fn zero_attempts_cannot_be_configured() {
    // No rule at build time: a retry policy of zero attempts cannot be made at all.
    assert!(RetryPolicy::new(0, Backoff::NONE).is_err());
    assert!(RetryPolicy::new(1, Backoff::NONE).is_ok());
}

#[test]
fn fallback_cycle_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        let c = b.task_with("c", |x, _| Ok(x), TaskConfig::new().fallback(a));
        b.set_fallback(a, c);
        b.sequence("root", &[a, c])
    }));
    assert_eq!((node.as_str(), rule), ("a", GraphRule::FallbackCycle));
}

#[test]
fn fallback_to_itself_is_a_build_error() {
    let (_, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        b.set_fallback(a, a);
        a
    }));
    assert_eq!(rule, GraphRule::FallbackCycle);
}

fn chain(len: usize) -> Result<Graph<u64, u64>, GraphError> {
    Graph::build(|b| {
        let mut next = inc(b, "last");
        for i in 0..len {
            next = b.task_with(
                &std::format!("fb{i}"),
                |x, _| Ok(x),
                TaskConfig::new().fallback(next),
            );
        }
        next
    })
}

#[test]
fn fallback_chain_longer_than_ten_is_a_build_error() {
    assert!(
        chain(MAX_FALLBACK_CHAIN).is_ok(),
        "a chain of exactly 10 is allowed"
    );
    let (node, rule) = rule_of(chain(MAX_FALLBACK_CHAIN + 1));
    assert_eq!(node, "fb10");
    assert_eq!(
        rule,
        GraphRule::FallbackChainTooLong {
            length: MAX_FALLBACK_CHAIN + 1
        }
    );
}

#[test]
fn fallback_to_a_non_task_is_a_build_error() {
    let (_, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        let seq = b.sequence("seq", &[a]);
        b.task_with("t", |x, _| Ok(x), TaskConfig::new().fallback(seq))
    }));
    assert_eq!(rule, GraphRule::FallbackNotTask);
}

#[test]
fn cacheable_step_that_writes_the_context_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| {
        let cfg = TaskConfig::new()
            .cacheable(StepFingerprint::builder("step", 1).build())
            .writes_context();
        b.task_with("cached", |x, _| Ok(x), cfg)
    }));
    assert_eq!(
        (node.as_str(), rule),
        ("cached", GraphRule::CacheableWritesContext)
    );
}

#[test]
fn skip_without_default_output_is_a_build_error() {
    let (_, rule) = rule_of(Graph::build(|b| {
        let table = RecoveryTable::DEFAULT.with(ErrorClass::Permanent, Recovery::Skip);
        b.task_with("t", |x, _| Ok(x), TaskConfig::new().recovery(table))
    }));
    assert_eq!(rule, GraphRule::SkipWithoutDefault);
}

#[test]
fn handle_from_another_builder_is_a_build_error() {
    let bump = bumpalo::Bump::new();
    let mut other = B::new_in(&bump);
    let foreign = inc(&mut other, "foreign");
    let (node, rule) = rule_of(Graph::build(|b| {
        let a = inc(b, "a");
        b.sequence("seq", &[a, foreign])
    }));
    assert_eq!((node.as_str(), rule), ("seq", GraphRule::ForeignHandle));
    // As a fallback and as the root too.
    let (_, rule) = rule_of(Graph::build(|b| {
        b.task_with("t", |x, _| Ok(x), TaskConfig::new().fallback(foreign))
    }));
    assert_eq!(rule, GraphRule::ForeignHandle);
    let (_, rule) = rule_of(Graph::build(|b| {
        inc(b, "a");
        foreign
    }));
    assert_eq!(rule, GraphRule::ForeignHandle);
}

#[test]
fn more_nodes_than_the_index_type_holds_is_a_build_error() {
    assert_eq!(
        MAX_NODES,
        u32::MAX as usize - 1,
        "indices are u32 with MAX kept as none"
    );
    let bump = bumpalo::Bump::new();
    let mut b = B::new_in(&bump);
    b.set_node_limit(3);
    let a = inc(&mut b, "a");
    let c = inc(&mut b, "c");
    let s = b.sequence("s", &[a, c]);
    let over = inc(&mut b, "over");
    assert_eq!(b.len(), 3, "the node over the limit is not added");
    let (node, rule) = rule_of(b.freeze(s));
    assert_eq!(
        (node.as_str(), rule),
        ("over", GraphRule::TooManyNodes { limit: 3 })
    );
    let _ = over;
}

#[test]
fn step_analysis_records_what_each_task_needs() {
    let breaker = Arc::new(
        Breaker::new(BreakerConfig {
            consecutive_failures_to_open: 3,
            open_ticks: 10,
            ..BreakerConfig::DEFAULT
        })
        .unwrap(),
    );
    let g = Graph::<u64, u64>::build(|b| {
        let plain = b.task("plain", |x, _| Ok(x));
        let writer = b.task_with("writer", |x, _| Ok(x), TaskConfig::new().writes_context());
        let fb = inc(b, "fb");
        let cfg = TaskConfig::new()
            .retry(RetryPolicy::new(2, Backoff::NONE).unwrap())
            .pre(|x, _| Ok(x))
            .post(|x, _| Ok(x))
            .validate(|_, _| Ok(()))
            .fallback(fb)
            .breaker(breaker.clone())
            .usage_estimate(Usage { cost: 1, tokens: 0 });
        let full = b.task_with("full", |x, _| Ok(x), cfg);
        let cached = b.task_with(
            "cached",
            |x, _| Ok(x),
            TaskConfig::new()
                .cacheable(StepFingerprint::builder("step", 9).build())
                .no_context(),
        );
        b.sequence("root", &[plain, writer, full, cached])
    })
    .unwrap();
    let flags = |n: &str| g.step_flags(g.find(n).unwrap()).unwrap();
    assert!(flags("plain").is_plain());
    assert_eq!(flags("plain"), StepFlags::READS_CONTEXT);
    assert!(
        flags("writer").is_plain(),
        "context writes stay on the fast path"
    );
    assert!(flags("writer").contains(StepFlags::WRITES_CONTEXT));
    let full = flags("full");
    for bit in [
        StepFlags::RETRY,
        StepFlags::PRE_PROCESSORS,
        StepFlags::POST_PROCESSORS,
        StepFlags::VALIDATORS,
        StepFlags::FALLBACK,
        StepFlags::BREAKER,
        StepFlags::USAGE,
    ] {
        assert!(full.contains(bit), "{bit:?} in {full:?}");
    }
    assert!(!full.contains(StepFlags::CACHE));
    assert_eq!(flags("cached"), StepFlags::CACHE);
    assert_eq!(g.step_flags(g.find("root").unwrap()), None);
}

#[test]
fn a_sequence_of_tasks_is_frozen_as_a_task_run_with_its_plain_stretches() {
    let g = Graph::<u64, u64>::build(|b| {
        let a = inc(b, "a");
        let c = inc(b, "c");
        let plain = b.sequence("plain", &[a, c]);
        let v = b.task_with("v", |x, _| Ok(x), TaskConfig::new().validate(|_, _| Ok(())));
        b.sequence("mixed", &[plain, v])
    })
    .unwrap();
    let run = g.seqs[0].tasks.expect("all children are tasks");
    assert_eq!(run.len, 2);
    let stretches: Vec<u32> = g.chains[run.range()].iter().map(|t| t.stretch).collect();
    assert_eq!(
        stretches,
        [2, 1],
        "each plain task knows how many plain tasks start with it"
    );
    assert!(g.seqs[1].tasks.is_none(), "a child is a sequence");
    assert_eq!(
        g.policies.len(),
        1,
        "only the task with policies has a policy entry"
    );
    assert_eq!(g.task_policy[0], NO_POLICY);
}

#[test]
fn frozen_graph_is_send_sync_and_shareable_behind_an_arc() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Graph<u64, u64>>();
    assert_send_sync::<Graph<std::string::String, crate::context::Whole<Vec<u8>>>>();
    let g = Arc::new(Graph::<u64, u64>::build(|b| inc(b, "a")).unwrap());
    let g2 = Arc::clone(&g);
    let h = std::thread::spawn(move || g2.len());
    assert_eq!(h.join().unwrap(), 1);
    assert_eq!(g.name(g.root()), "a");
    assert_eq!(g.kind(g.root()), NodeKind::Task);
}

#[test]
fn width_bounds_default_to_the_fan_out_and_can_be_lowered() {
    let g = Graph::<u64, u64>::build(|b| {
        let a = inc(b, "a");
        let c = inc(b, "c");
        let p = b.parallel("p", &[a, c], |x, y| x + y, ParallelOptions::new());
        let q = b.parallel(
            "q",
            &[a, c],
            |x, y| x + y,
            ParallelOptions::new().max_width(1),
        );
        let m = b.map(
            "m",
            |x, _, _| Ok(x),
            a,
            |x, _| x,
            MapOptions::new().max_items(8),
        );
        b.sequence("root", &[p, q, m])
    })
    .unwrap();
    assert_eq!(g.max_width(g.find("p").unwrap()), Some(2));
    assert_eq!(g.max_width(g.find("q").unwrap()), Some(1));
    assert_eq!(g.max_width(g.find("m").unwrap()), Some(8));
    assert_eq!(g.max_width(g.find("a").unwrap()), None);
}

#[test]
fn graph_error_display_names_the_node_and_the_rule() {
    let e = Graph::<u64, u64>::build(|b| b.sequence("steps", &[])).unwrap_err();
    let text = std::format!("{e}");
    assert!(
        text.contains("`steps`") && text.contains("at least one child"),
        "{text}"
    );
}

/// Nests `levels` levels: composites of every kind around one task.
fn nested(b: &mut B<'_>, levels: usize) -> NodeRef {
    let mut node = inc(b, "leaf");
    for level in 1..levels {
        let name = std::format!("level{level}");
        node = match level % 5 {
            0 => b.sequence(&name, &[node]),
            1 => b.parallel(&name, &[node], |a, _| a, ParallelOptions::new()),
            2 => b.loop_(&name, node, LoopOptions::new().max_iterations(1)),
            3 => b.switch(&name, |_, _| 0, &[(0, node)], None),
            _ => b.map(
                &name,
                |x, _, items| {
                    let _ = items.push(x);
                    Ok(0)
                },
                node,
                |a, x| a + x,
                MapOptions::new().max_items(1),
            ),
        };
    }
    node
}

#[test]
fn nesting_deeper_than_max_depth_is_a_build_error() {
    let (node, rule) = rule_of(Graph::build(|b| nested(b, MAX_DEPTH + 1)));
    assert_eq!(rule, GraphRule::TooDeep { limit: MAX_DEPTH });
    assert_eq!(
        node,
        std::format!("level{MAX_DEPTH}"),
        "the first node too deep"
    );
    // A shallow root beside a too-deep unused node is still an error: every node is checked.
    let (_, rule) = rule_of(Graph::build(|b| {
        let _ = nested(b, MAX_DEPTH + 1);
        inc(b, "root")
    }));
    assert_eq!(rule, GraphRule::TooDeep { limit: MAX_DEPTH });
}

#[test]
fn nesting_max_depth_levels_builds_and_runs() {
    let g = Graph::<u64, u64>::build(|b| nested(b, MAX_DEPTH)).unwrap();
    let mut runner = crate::interp::Runner::new(Default::default());
    let r = runner.run(&g, 1, 0, &NoClock, &crate::interp::RunOptions::default());
    assert_eq!(r.output, Some(2), "one increment through every level");
}

#[test]
fn waiting_until_ready_or_a_tick_polls_and_moves_a_manual_clock_by_no_time() {
    use core::cell::Cell;
    let manual = ManualClock::new(5);
    assert!(manual.wait_until(u64::MAX, &|| true));
    assert!(!manual.wait_until(5, &|| false), "the tick has come");
    assert_eq!(
        manual.now(),
        5,
        "waiting for something moves no manual time"
    );
    // Ready after a few polls.
    let polls = Cell::new(0);
    assert!(manual.wait_until(u64::MAX, &|| {
        polls.set(polls.get() + 1);
        polls.get() == 3
    }));
    assert_eq!((polls.get(), manual.now()), (3, 5));

    /// A clock whose backoff waits count themselves and move it by their ticks.
    struct Counting(Cell<u64>, Cell<u32>);
    impl Clock for Counting {
        fn now(&self) -> u64 {
            self.0.get()
        }
        fn wait(&self, ticks: u64) {
            self.1.set(self.1.get() + 1);
            self.0.set(self.0.get() + ticks);
        }
    }
    // The default waits a tick between polls, until `until`.
    let c = Counting(Cell::new(0), Cell::new(0));
    assert!(!c.wait_until(4, &|| false));
    assert_eq!((c.now(), c.1.get()), (4, 4));
    assert!(c.wait_until(100, &|| c.now() >= 6));
    assert_eq!(c.now(), 6);
}
