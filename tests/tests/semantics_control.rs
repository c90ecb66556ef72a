//! The semantics contract on the core's single-thread interpreter, one test per rule:
//! loops, branches and maps: exit predicates and iteration bounds, arm selection with a
//! default arm, and maps that split, run a body per item and reduce in item order.

mod common;

use common::semantics::{add, check, record, G};
use flujo_core::graph::{LoopOptions, MapOptions};
use flujo_core::interp::{LoopExit, Outcome};

#[test]
fn loop_stops_when_the_exit_predicate_holds_and_records_it() {
    let g = G::build(|b| {
        let body = add(b, "body", 1);
        b.loop_(
            "lp",
            body,
            LoopOptions::new()
                .max_iterations(100)
                .until(|x, _, _| *x >= 5),
        )
    })
    .unwrap();
    let (_, out, _, _, recs) = check(&g, 0);
    assert_eq!(out, Some(5));
    let lp = record(&g, &recs, "lp");
    assert_eq!((lp.attempts, lp.loop_exit), (5, Some(LoopExit::Predicate)));
}

#[test]
fn loop_stops_at_its_iteration_bound_and_records_it() {
    let g = G::build(|b| {
        let body = add(b, "body", 1);
        b.loop_(
            "lp",
            body,
            LoopOptions::new().max_iterations(3).until(|_, _, _| false),
        )
    })
    .unwrap();
    let (outcome, out, _, _, recs) = check(&g, 0);
    assert_eq!((outcome, out), (Outcome::Succeeded, Some(3)));
    let lp = record(&g, &recs, "lp");
    assert_eq!((lp.attempts, lp.loop_exit), (3, Some(LoopExit::Bound)));
    assert_eq!(recs.len(), 4, "three body records, then the loop's");
}

#[test]
fn switch_runs_the_arm_the_selector_picks() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        let c = add(b, "c", 200);
        b.switch("br", |x, _| (*x % 2) as u64, &[(0, a), (1, c)], None)
    })
    .unwrap();
    assert_eq!(check(&g, 4).1, Some(104));
    assert_eq!(check(&g, 5).1, Some(205));
}

#[test]
fn switch_runs_the_default_arm_when_no_key_matches() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        let d = add(b, "d", 900);
        b.switch("br", |x, _| *x as u64, &[(0, a)], Some(d))
    })
    .unwrap();
    assert_eq!(check(&g, 3).1, Some(903));
}

#[test]
fn switch_without_match_or_default_fails_naming_the_key() {
    let g = G::build(|b| {
        let a = add(b, "a", 100);
        b.switch("br", |x, _| *x as u64, &[(0, a)], None)
    })
    .unwrap();
    let (outcome, _, _, err, _) = check(&g, 3);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(
        err.unwrap(),
        "step `br` (node 1): no arm for key 3 and no default arm"
    );
}

fn digits_map(max_items: u32) -> G {
    G::build(|b| {
        let body = b.task("sq", |x, _| Ok(x * x));
        b.map(
            "m",
            |x, _, items| {
                let mut v = x;
                while v > 0 {
                    if items.push(v % 10).is_err() {
                        break;
                    }
                    v /= 10;
                }
                Ok(0)
            },
            body,
            |acc, y| acc * 100 + y,
            MapOptions::new().max_items(max_items),
        )
    })
    .unwrap()
}

#[test]
fn map_splits_runs_the_body_per_item_and_reduces_in_item_order() {
    // Items of 123 are 3, 2, 1 (pushed in that order); squares 9, 4, 1 fold as 9|04|01.
    assert_eq!(check(&digits_map(8), 123).1, Some(90401));
}

#[test]
fn map_with_no_items_returns_the_split_seed() {
    assert_eq!(check(&digits_map(8), 0).1, Some(0));
}

#[test]
fn map_with_more_items_than_its_bound_fails() {
    let (outcome, _, _, err, _) = check(&digits_map(2), 123);
    assert_eq!(outcome, Outcome::Failed);
    assert!(err.unwrap().contains("more than 2 items"));
}
